// Sends one span (with an event and a link) and one log record through the
// OpenTelemetry JS SDK's OTLP/JSON exporters to the sluice at argv[2]
// (http://127.0.0.1:PORT), then prints the ids it used as one JSON line.
// The values must match tests/json_fidelity.rs `js_sdk_*` expectations.
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';

const base = process.argv[2];
const resource = resourceFromAttributes({ 'service.name': 'js-fidelity' });

// Doubles the issue reported 1 ULP off, and friends.
const attributes = {
  'd.ulp1': 11.100000000000001,
  'd.ulp2': 3.0000000000000004e-9,
  'd.ulp3': 2.2007250832970862e+129,
  'd.tenth': 0.1,
  'd.big': 1e21,
  'd.tiny': 5e-324,
  'd.max': 1.7976931348623157e308,
  'i.max_safe': 9007199254740991,
  'i.neg': -42,
  's.empty': '',
  's.utf8': 'héllo \u{1F600} "quoted" \\ \n',
  'b.true': true,
  'a.doubles': [0.30000000000000004, 2.5],
  'a.strings': ['x', ''],
};

const traceExporter = new OTLPTraceExporter({ url: `${base}/v1/traces` });
const tracerProvider = new BasicTracerProvider({
  resource,
  spanProcessors: [new SimpleSpanProcessor(traceExporter)],
});
const tracer = tracerProvider.getTracer('fidelity', '1.2.3');
const link = { context: { traceId: '0102030405060708090a0b0c0d0e0f10', spanId: '0102030405060708', traceFlags: 1 } };
const span = tracer.startSpan('js-op', {
  kind: SpanKind.CLIENT,
  startTime: [1700000000, 123456789],
  attributes,
  links: [link],
});
span.addEvent('js-event', { 'e.d': 11.100000000000001 }, [1700000000, 500000000]);
span.setStatus({ code: SpanStatusCode.ERROR, message: 'it failed' });
span.end([1700000001, 987654321]);
await tracerProvider.forceFlush();
await tracerProvider.shutdown();

const logExporter = new OTLPLogExporter({ url: `${base}/v1/logs` });
const loggerProvider = new LoggerProvider({
  resource,
  processors: [new SimpleLogRecordProcessor({ exporter: logExporter })],
});
const logger = loggerProvider.getLogger('fidelity-logs', '4.5.6');
logger.emit({
  timestamp: [1700000002, 7],
  observedTimestamp: [1700000002, 8],
  severityNumber: 17,
  severityText: 'ERROR',
  body: { msg: 'js log', value: 11.100000000000001, n: 7, nested: [1.5, 'x', true] },
  attributes,
});
await loggerProvider.forceFlush();
await loggerProvider.shutdown();

const ctx = span.spanContext();
console.log(JSON.stringify({ traceId: ctx.traceId, spanId: ctx.spanId }));
