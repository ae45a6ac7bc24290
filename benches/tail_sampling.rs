//! Tail sampling costs, on the wire: routing (slicing a 100-span request per
//! owning shard and passing the other shard's part over its SPSC ring, popped
//! on the far side), buffering (slicing per trace and gathering the policies'
//! facts), and deciding (the seed's three policies over a buffered trace,
//! kept spans handed back). Throughput is per span for routing and per trace
//! for deciding. Also prints the accounted memory per buffered span.
//! Run: `cargo bench --bench tail_sampling`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::{
    bench::workload,
    processor::tail_sampling::{instances, mesh, stats::TailStats, TailSampler},
    signal::Signal,
};

const SPANS: usize = 100;
/// The workload puts 8 spans in a trace.
const TRACES_PER_REQUEST: u64 = SPANS.div_ceil(8) as u64;

fn settings(wait: &str) -> sluice::processor::tail_sampling::TailSamplingConfig {
    let yaml = format!(
        "receivers: {{otlp: {{protocols: {{grpc: {{}}}}}}}}
processors:
  tail_sampling:
    decision_wait: {wait}
    num_traces: 1000000
    policies:
      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}
      - {{name: slow, type: latency, latency: {{threshold_ms: 2000}}}}
      - {{name: rest, type: probabilistic, probabilistic: {{sampling_percentage: 10}}}}
exporters: {{nop: {{}}}}
service: {{pipelines: {{traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [nop]}}}}}}
"
    );
    let config = sluice::config::load_str(&yaml).expect("bench config");
    instances(&config).remove(0).1
}

fn tail(c: &mut Criterion) {
    let mut g = c.benchmark_group("tail_sampling");
    let bodies = workload::requests(Signal::Traces, SPANS, 64, 7);
    let policies: Vec<String> = vec!["errors".into(), "slow".into(), "rest".into()];

    // Routing between two shards: shard 0 slices and pushes, shard 1 pops.
    {
        let st = TailStats::new("tail_sampling", &policies, 2);
        let cfg = settings("30s");
        let s0 = TailSampler::new("tail_sampling", &cfg, 0, 2, 0, None);
        let mut m = mesh::mesh(2, 1024);
        let mut far = m[1].from[0].take().expect("ring 0 → 1");
        s0.set_links(std::mem::take(&mut m[0]));
        let mut i = 0;
        g.throughput(Throughput::Elements(SPANS as u64));
        g.bench_function("route_2_shards/per_request_of_100_spans", |b| {
            b.iter(|| {
                i = (i + 1) % bodies.len();
                let local = s0.route(std::slice::from_ref(&bodies[i]), &st).unwrap();
                while let Ok(r) = far.pop() {
                    std::hint::black_box(r);
                }
                local
            })
        });
    }

    // Buffering: slice per trace, gather facts (one shard, no rings).
    {
        let st = TailStats::new("tail_sampling", &policies, 1);
        let cfg = settings("600s");
        // Each iteration buffers 8 requests.
        g.throughput(Throughput::Elements(8 * SPANS as u64));
        g.bench_function("buffer/8_requests_of_100_spans", |b| {
            b.iter_batched(
                || TailSampler::new("tail_sampling", &cfg, 0, 1, 0, None),
                |s| {
                    for body in bodies.iter().take(8) {
                        s.take(std::slice::from_ref(body), &st, Instant::now()).unwrap();
                    }
                    s
                },
                BatchSize::SmallInput,
            )
        });
    }

    // Deciding: buffered traces whose wait has passed, decided and released.
    {
        let st = TailStats::new("tail_sampling", &policies, 1);
        let cfg = settings("1ms");
        let requests = 8u64;
        g.throughput(Throughput::Elements(requests * TRACES_PER_REQUEST));
        g.bench_function("decide/per_trace", |b| {
            b.iter_batched(
                || {
                    let s = TailSampler::new("tail_sampling", &cfg, 0, 1, 0, None);
                    let t0 = Instant::now();
                    for body in bodies.iter().take(requests as usize) {
                        s.take(std::slice::from_ref(body), &st, t0).unwrap();
                    }
                    (s, t0 + Duration::from_secs(1))
                },
                |(s, later)| s.run(&st, later, false).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();

    // Memory per buffered span, as the byte budget accounts it.
    let st = TailStats::new("tail_sampling", &policies, 1);
    let s = TailSampler::new("tail_sampling", &settings("600s"), 0, 1, 0, None);
    let t0 = Instant::now();
    let wire: usize = bodies.iter().map(|b| b.len()).sum();
    for body in &bodies {
        s.take(std::slice::from_ref(body), &st, t0).unwrap();
    }
    let spans = s.buffered_spans();
    println!(
        "memory per buffered span: {:.0} bytes accounted ({:.0} bytes of it the span on the wire), {} spans",
        s.buffered_bytes() as f64 / spans as f64,
        wire as f64 / spans as f64,
        spans
    );
}

criterion_group!(benches, tail);
criterion_main!(benches);
