//! `sluice::sdk` against opentelemetry_sdk's `BatchSpanProcessor`, in one run,
//! exporting to the same local OTLP/gRPC endpoint (an HTTP/2 server in this
//! process that counts the spans of each request with sluice's validating
//! wire walk, no decode into objects: producers, shard and endpoint share
//! the machine's cores, and an endpoint that decoded every span with prost
//! took more CPU than either side's recording, away from both). For 1, 2
//! and 4 producer threads it reports the
//! cost of one record (ns, p50 / p99 / max, each record timed on its own, so
//! the figures include one `Instant::now()` pair), the recording throughput
//! (records per second of all threads together over the slowest thread's
//! time, from further passes of the same records that are not timed record
//! by record: the median of `SDK_BENCH_PASSES` passes, default 5, each after
//! a flush, because with more producer threads than cores one pass's figure
//! depends on how the scheduler happened to share the cores), what reached
//! the endpoint of all records of all passes, the delivered throughput
//! (records of the untimed passes that reached the endpoint, per second from
//! the first such pass's start until the variant's last flush returned: what
//! a processor sustains end to end, where the recording throughput alone
//! would count records a processor accepted and never delivered), and heap
//! allocations per record (a counting global allocator, armed only around
//! the timed recording loop).
//!
//! At 4 threads the three variants run `SDK_BENCH_ROUNDS` times (default 3)
//! in turn, and the bench ends with the ratio of sluice's native throughput
//! to the batch processor's in each round and their median: on a VM whose
//! speed drifts from minute to minute, each ratio compares runs a few
//! seconds apart.
//!
//! Variants:
//! - `sluice native`: `Recorder::record_span` of a native `Span`.
//! - `sluice otel`: an OTel SDK tracer with `collector.span_processor()`.
//! - `otel batch`: the same tracer with `BatchSpanProcessor` + the tonic
//!   OTLP exporter (its defaults: queue 2048, batch 512).
//!
//! Both sides get buffers with room for every record of the run (sluice: a
//! ring of `SDK_BENCH_RECORDS` per thread; the batch processor: a queue of
//! that times the threads), filled once before the timed run so their pages
//! are touched and flushed, so the figures are the cost of recording, not of
//! refusing; `delivered` says how many of the timed records reached the
//! endpoint after the final flush. Run: `cargo bench --features sdk --bench sdk` (`SDK_BENCH_RECORDS`
//! sets records per thread, default 200000).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Barrier,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use sluice::sdk::{AttrValue, Attrs, Collector, Overflow, Span};

// ---------------------------------------------------------------------------
// counting allocator

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; the armed flag is a
// const-initialised thread-local without destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// the endpoint

/// Counts the spans of one gRPC `Export` request into `received`; the
/// answer is an empty `ExportTraceServiceResponse` with `grpc-status: 0`, or
/// `grpc-status: 3` for a body that is not a valid request.
async fn export(
    req: http::Request<hyper::body::Incoming>,
    received: Arc<AtomicU64>,
) -> Result<http::Response<BoxBody>, hyper::Error> {
    let mut chunks = Vec::new();
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            chunks.push(data);
        }
    }
    let spans = sluice::grpc::unframe(chunks, 256 << 20)
        .ok()
        .and_then(|(compressed, msg)| (!compressed).then_some(msg))
        .and_then(|msg| sluice::wire::scan::scan_chunks(sluice::signal::Signal::Traces, &msg).ok());
    if let Some(s) = &spans {
        received.fetch_add(s.items, Ordering::Relaxed);
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        http::HeaderValue::from_static(if spans.is_some() { "0" } else { "3" }),
    );
    let frames = [
        Ok(http_body::Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_lite::stream::iter(frames)).boxed();
    Ok(http::Response::builder()
        .header("content-type", "application/grpc")
        .body(body)
        .expect("response"))
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// Serves `export` over HTTP/2 (prior knowledge, as both exporters speak).
async fn serve(listener: tokio::net::TcpListener, received: Arc<AtomicU64>) {
    while let Ok((sock, _)) = listener.accept().await {
        let _ = sock.set_nodelay(true);
        let received = received.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| export(req, received.clone()));
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .max_frame_size(1 << 20)
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20)
                .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Native,
    SluiceOtel,
    OtelBatch,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Native => "sluice native",
            Variant::SluiceOtel => "sluice otel",
            Variant::OtelBatch => "otel batch",
        }
    }
}

struct Row {
    p50: u64,
    p99: u64,
    max: u64,
    per_sec: f64,
    delivered_per_sec: f64,
    delivered: u64,
    recorded: u64,
    allocs_per_record: f64,
}

fn native_span(t: u64, seq: u64) -> Span {
    let id = (t << 40) | seq | 1;
    Span {
        trace_id: [(id & 0xff) as u8; 16],
        span_id: id.to_be_bytes(),
        name: "op",
        start_unix_nanos: 1,
        end_unix_nanos: 2,
        attrs: Attrs::new().with("seq", AttrValue::I64(seq as i64)),
        ..Default::default()
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn run(variant: Variant, threads: usize, per_thread: u64, passes: usize, endpoint: &str, received: &AtomicU64) -> Row {
    let collector = Collector::builder()
        .endpoint(format!("http://{endpoint}"))
        // Room for every record of a thread: the figures are the cost of
        // recording, not of refusing (both sides drop when full).
        .max_queue_size(per_thread as usize)
        .max_batch_size(512)
        .overflow(Overflow::DropNew)
        .self_metrics_interval(None)
        .shutdown_timeout(Duration::from_secs(60))
        .start()
        .expect("collector");
    let provider = match variant {
        Variant::Native => None,
        Variant::SluiceOtel => Some(
            SdkTracerProvider::builder()
                .with_span_processor(collector.span_processor())
                .build(),
        ),
        Variant::OtelBatch => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{endpoint}"))
                .build()
                .expect("otlp exporter");
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(
                        BatchSpanProcessor::builder(exporter)
                            .with_batch_config(
                                BatchConfigBuilder::default()
                                    .with_max_queue_size(per_thread as usize * threads)
                                    .with_max_export_batch_size(512)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
        }
    };
    let barrier = Arc::new(Barrier::new(threads + 1));
    ALLOCS.store(0, Ordering::Relaxed);
    let joins: Vec<_> = (0..threads as u64)
        .map(|t| {
            let rec = collector.recorder();
            let tracer = provider.as_ref().map(|p| p.tracer("bench"));
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(per_thread as usize);
                // Warm up: create this thread's ring and touch all of its
                // pages (and the SDK's queue), then the main thread flushes.
                for seq in 0..per_thread {
                    match &tracer {
                        Some(tr) => tr.start("warm").end(),
                        None => {
                            let _ = rec.record_span(native_span(t, seq));
                        }
                    }
                }
                let record = |seq: u64| match &tracer {
                    Some(tr) => {
                        let mut s = tr.start("op");
                        s.set_attribute(opentelemetry::KeyValue::new("seq", seq as i64));
                        s.end();
                    }
                    None => {
                        let _ = rec.record_span(native_span(t, seq));
                    }
                };
                barrier.wait();
                barrier.wait();
                ARMED.with(|a| a.set(true));
                for seq in 1..per_thread {
                    let t0 = Instant::now();
                    record(seq);
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
                ARMED.with(|a| a.set(false));
                // Throughput: the same records again, not timed one by one
                // (two clock reads per record would be a third of a native
                // record's cost), in `passes` passes, each after the main
                // thread has flushed the one before.
                let mut took = Vec::with_capacity(passes);
                for _ in 0..passes {
                    barrier.wait();
                    barrier.wait();
                    let start = Instant::now();
                    for seq in 1..per_thread {
                        record(seq);
                    }
                    took.push(start.elapsed());
                }
                (lat, took)
            })
        })
        .collect();
    barrier.wait();
    if let Some(p) = &provider {
        let _ = p.force_flush();
    }
    let _ = collector.force_flush(Duration::from_secs(60));
    let before = received.load(Ordering::Relaxed);
    ALLOCS.store(0, Ordering::Relaxed);
    barrier.wait();
    // Timed records done: flush them (and each pass after), then the
    // untimed passes run.
    let mut allocs = 0;
    let (mut pass_start, mut pass_before) = (Instant::now(), 0);
    for pass in 0..passes {
        barrier.wait();
        if pass == 0 {
            allocs = ALLOCS.load(Ordering::Relaxed);
        }
        if let Some(p) = &provider {
            let _ = p.force_flush();
        }
        let _ = collector.force_flush(Duration::from_secs(60));
        if pass == 0 {
            (pass_start, pass_before) = (Instant::now(), received.load(Ordering::Relaxed));
        }
        barrier.wait();
    }
    let mut lat = Vec::new();
    // Per pass, the slowest thread's time.
    let mut slowest = vec![Duration::ZERO; passes];
    for j in joins {
        let (l, took) = j.join().unwrap();
        lat.extend(l);
        for (s, t) in slowest.iter_mut().zip(took) {
            *s = (*s).max(t);
        }
    }
    slowest.sort_unstable();
    if let Some(p) = &provider {
        let _ = p.force_flush();
    }
    let _ = collector.force_flush(Duration::from_secs(60));
    let delivered_per_sec =
        (received.load(Ordering::Relaxed) - pass_before) as f64 / pass_start.elapsed().as_secs_f64();
    if let Some(p) = provider {
        let _ = p.force_flush();
        let _ = p.shutdown();
    }
    let _ = collector.shutdown();
    // Let the endpoint count the last batch.
    std::thread::sleep(Duration::from_millis(200));
    lat.sort_unstable();
    let records = lat.len() as u64;
    Row {
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        max: *lat.last().unwrap_or(&0),
        per_sec: records as f64 / slowest[passes / 2].as_secs_f64(),
        delivered_per_sec,
        recorded: (1 + passes as u64) * records,
        delivered: received.load(Ordering::Relaxed) - before,
        allocs_per_record: allocs as f64 / records as f64,
    }
}

fn main() {
    let per_thread: u64 = std::env::var("SDK_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let passes: usize = std::env::var("SDK_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let rounds: usize = std::env::var("SDK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let received = Arc::new(AtomicU64::new(0));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    rt.spawn(serve(listener, received.clone()));
    let timer = {
        let mut v: Vec<u64> = (0..100_000)
            .map(|_| {
                let t0 = Instant::now();
                t0.elapsed().as_nanos() as u64
            })
            .collect();
        v.sort_unstable();
        percentile(&v, 0.5)
    };
    println!(
        "records per thread: {per_thread}; throughput passes: {passes} (median shown); endpoint: OTLP/gRPC {endpoint}; native records in 64-byte cells (2 per span of this bench), OTel ring slot {} bytes; timer pair p50 {timer} ns (included below)",
        std::mem::size_of::<sluice::sdk::record::Otel>()
    );
    println!(
        "{:<14} {:>7} {:>8} {:>8} {:>10} {:>14} {:>14} {:>15} {:>13}",
        "variant", "threads", "p50 ns", "p99 ns", "max ns", "records/s", "delivered/s", "delivered", "allocs/rec"
    );
    let mut ratios = Vec::new();
    for (threads, _round) in [(1usize, 0), (2, 0)].into_iter().chain((0..rounds).map(|r| (4, r))) {
        let mut native = 0.0;
        for variant in [Variant::Native, Variant::SluiceOtel, Variant::OtelBatch] {
            let r = run(variant, threads, per_thread, passes, &endpoint, &received);
            match variant {
                Variant::Native => native = r.per_sec,
                Variant::OtelBatch if threads == 4 => ratios.push(native / r.per_sec),
                _ => {}
            }
            println!(
                "{:<14} {:>7} {:>8} {:>8} {:>10} {:>14.0} {:>14.0} {:>15} {:>13.3}",
                variant.name(),
                threads,
                r.p50,
                r.p99,
                r.max,
                r.per_sec,
                r.delivered_per_sec,
                format!("{}/{}", r.delivered, r.recorded),
                r.allocs_per_record
            );
        }
    }
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.1}x")).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "4 threads, sluice native / otel batch records/s, per round: {}; median {:.1}x",
        shown.join(" "),
        ratios[ratios.len() / 2]
    );
}
