//! Records spans with the official OpenTelemetry SDK (batch processor, tonic
//! OTLP/gRPC exporter) on a thread of its own, as an instrumented application
//! would, and shuts the provider down so everything recorded is exported.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;

/// Runs `record` with a tracer named `scope` whose spans, with `resource`,
/// go over OTLP/gRPC to `url`; returns once the provider has shut down.
pub fn record_spans(
    url: String,
    resource: opentelemetry_sdk::Resource,
    scope: &'static str,
    record: impl FnOnce(&opentelemetry_sdk::trace::SdkTracer) + Send + 'static,
) {
    std::thread::spawn(move || {
        // The tonic exporter needs a tokio runtime around when it is built.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        record(&provider.tracer(scope));
        provider.shutdown().unwrap();
    })
    .join()
    .unwrap();
}
