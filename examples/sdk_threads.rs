//! An application recording from several threads into a local `sluice run`
//! agent through `sluice::sdk`: an OTel SDK tracer (with sluice's span
//! processor in place of the batch processor) on some threads and the native
//! hot-path API on others.
//!
//! Start an agent (`sluice run`, OTLP/gRPC on 127.0.0.1:4317 by default),
//! then: `cargo run --features sdk --example sdk_threads [http://host:port]`.

use std::time::Duration;

use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use sluice::sdk::{now_unix_nanos, AttrValue, Attrs, Collector, Overflow, Span, SpanKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4317".into());
    let collector = Collector::builder()
        .endpoint(endpoint.as_str())
        .max_queue_size(4096)
        .max_batch_size(512)
        .flush_interval(Duration::from_millis(200))
        // A full ring makes the recording thread wait up to 50 ms, then
        // hands the record back.
        .overflow(Overflow::Backpressure)
        .backpressure_wait(Duration::from_millis(50))
        .resource([opentelemetry::KeyValue::new("service.name", "sdk-threads-example")])
        .start()?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collector.span_processor())
        .build();

    let mut threads = Vec::new();
    // Two threads instrumented with the OpenTelemetry API.
    for t in 0..2 {
        let tracer = provider.tracer("example");
        threads.push(std::thread::spawn(move || {
            for i in 0..10_000 {
                let mut span = tracer.start("handle_request");
                span.set_attribute(opentelemetry::KeyValue::new("thread", t));
                span.set_attribute(opentelemetry::KeyValue::new("i", i));
                span.end();
            }
        }));
    }
    // Two threads on the native hot path (no OTel span objects, no allocation).
    for t in 0..2u64 {
        let rec = collector.recorder();
        threads.push(std::thread::spawn(move || {
            let mut refused = 0u64;
            for i in 0..10_000u64 {
                let start = now_unix_nanos();
                let id = (t + 1) << 48 | i;
                let span = Span {
                    trace_id: [(id % 251) as u8; 16],
                    span_id: id.to_be_bytes(),
                    name: "tick",
                    kind: SpanKind::Internal,
                    start_unix_nanos: start,
                    end_unix_nanos: now_unix_nanos(),
                    attrs: Attrs::new().with("i", AttrValue::I64(i as i64)),
                    ..Default::default()
                };
                if rec.record_span(span).is_err() {
                    // The caller decides: here it counts; it could retry later.
                    refused += 1;
                }
            }
            if refused > 0 {
                eprintln!("native thread {t}: {refused} spans refused (backpressure)");
            }
        }));
    }
    for t in threads {
        t.join().expect("worker thread");
    }
    collector.shutdown()?;
    println!("{:?}", collector.stats());
    Ok(())
}
