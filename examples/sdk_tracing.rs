//! The same application instrumented with `tracing`: `tracing-opentelemetry`
//! turns `tracing` spans into OTel spans, and sluice's span processor carries
//! them to a local `sluice run` agent.
//!
//! Start an agent (`sluice run`, OTLP/gRPC on 127.0.0.1:4317 by default),
//! then: `cargo run --features sdk --example sdk_tracing [http://host:port]`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sluice::sdk::Collector;
use tracing_subscriber::layer::SubscriberExt;

#[tracing::instrument]
fn handle(thread: usize, request: usize) {
    tracing::info_span!("db_query", table = "orders").in_scope(|| {});
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:4317".into());
    let collector = Collector::builder()
        .endpoint(endpoint.as_str())
        .resource([opentelemetry::KeyValue::new("service.name", "sdk-tracing-example")])
        .start()?;
    // One line differs from a batch-processor setup: `with_span_processor`.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collector.span_processor())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")));
    tracing::subscriber::set_global_default(subscriber)?;

    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..1_000 {
                    handle(t, i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker thread");
    }
    collector.shutdown()?;
    println!("{:?}", collector.stats());
    Ok(())
}
