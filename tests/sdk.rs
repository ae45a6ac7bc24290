//! `sluice::sdk` end to end: application threads record through the in-process
//! collector (per-thread rings → its shard → the exporter `sluice run` uses)
//! into a recording OTLP backend, directly or through a real `sluice run`
//! agent. Ids are compared, overflow counts are checked record by record with
//! a stalled backend, and a counting allocator proves the ring path does not
//! allocate.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::BTreeSet,
    sync::Arc,
    time::Duration,
};

use common::*;
use opentelemetry::{
    logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
    trace::{Span as _, Tracer as _, TracerProvider as _},
};
use opentelemetry_sdk::{logs::SdkLoggerProvider, trace::SdkTracerProvider};
use sluice::{
    exporter::retry::RetrySettings,
    processor::sampling,
    sdk::{AttrValue, Attrs, Collector, LogRecord, Overflow, Protocol, RejectReason, Span},
};

// ---------------------------------------------------------------------------
// a counting allocator: counts allocations of the current thread while armed

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter
// is a const-initialised thread-local without destructor, safe to touch here.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ARMED.try_with(|a| {
            if a.get() {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ARMED.try_with(|a| {
            if a.get() {
                let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    ALLOCS.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, ALLOCS.with(|c| c.get()))
}

// ---------------------------------------------------------------------------
// helpers

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Native span number `seq` of thread `t`: span id `t << 32 | seq`, a
/// well-spread trace id.
fn span(t: u64, seq: u64) -> Span {
    let id = (t << 32) | seq;
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&mix(id).to_be_bytes());
    trace_id[8..].copy_from_slice(&id.to_be_bytes());
    Span {
        trace_id,
        span_id: id.to_be_bytes(),
        name: "op",
        start_unix_nanos: 1_700_000_000_000_000_000,
        end_unix_nanos: 1_700_000_000_000_001_000,
        attrs: Attrs::new().with("seq", AttrValue::I64(seq as i64)),
        ..Default::default()
    }
}

fn hex_span(s: &Span) -> String {
    hex_id(&s.span_id)
}

fn fast_retry() -> RetrySettings {
    RetrySettings {
        enabled: true,
        initial_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(50),
        max_elapsed_time: Duration::ZERO,
        multiplier: 1.5,
        randomization_factor: 0.0,
    }
}

fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

// ---------------------------------------------------------------------------
// delivery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_times_records_arrive_exactly() {
    const THREADS: u64 = 4;
    const PER: u64 = 2_500;
    let backend = Backend::start_new().await;
    let collector = Arc::new(
        Collector::builder()
            .endpoint(format!("http://{}", backend.endpoint()))
            .max_queue_size(1024)
            .max_batch_size(256)
            .flush_interval(Duration::from_millis(50))
            .overflow(Overflow::Backpressure)
            .backpressure_wait(Duration::from_secs(5))
            .retry(fast_retry())
            .start()
            .expect("collector starts"),
    );
    let joins: Vec<_> = (0..THREADS)
        .map(|t| {
            let rec = collector.recorder();
            std::thread::spawn(move || {
                for seq in 0..PER {
                    rec.record_span(span(t, seq)).expect("recorded");
                }
            })
        })
        .collect();
    blocking(|| {
        for j in joins {
            j.join().unwrap();
        }
    });
    let report = blocking(|| collector.shutdown()).expect("shutdown exports everything");
    assert_eq!(report.pending, 0);
    let want: BTreeSet<String> = (0..THREADS)
        .flat_map(|t| (0..PER).map(move |s| hex_span(&span(t, s))))
        .collect();
    assert_eq!(backend.span_count(), THREADS * PER, "no duplicates, nothing missing");
    assert_eq!(received_ids(&backend), want);
    let st = collector.stats();
    assert_eq!((st.received, st.exported, st.lost()), (THREADS * PER, THREADS * PER, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_that_exits_loses_nothing() {
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .max_batch_size(1000)
        .flush_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let rec = collector.recorder();
    // The thread records fewer than a batch and ends: its ring is gone from
    // the application's side before the shard has looked at it.
    blocking(|| {
        std::thread::spawn(move || {
            for seq in 0..37 {
                rec.record_span(span(9, seq)).unwrap();
            }
        })
        .join()
        .unwrap()
    });
    // No flush, no shutdown: the shard drains the orphaned ring on its own.
    assert!(
        backend
            .wait_for(Duration::from_secs(10), |b| b.span_count() >= 37)
            .await,
        "spans of the exited thread arrive"
    );
    let want: BTreeSet<String> = (0..37).map(|s| hex_span(&span(9, s))).collect();
    assert_eq!(received_ids(&backend), want);
    blocking(|| collector.shutdown()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_what_no_timer_would_have_sent() {
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .max_batch_size(100_000)
        .flush_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let rec = collector.recorder();
    for seq in 0..500 {
        rec.record_span(span(1, seq)).unwrap();
        rec.record_log(LogRecord {
            time_unix_nanos: 1,
            severity: 9,
            body: "hello",
            ..Default::default()
        })
        .unwrap();
    }
    let r = blocking(|| collector.shutdown()).expect("shutdown succeeds");
    assert_eq!((r.exported, r.pending, r.failed), (1000, 0, 0));
    assert_eq!(backend.span_count(), 500);
    assert_eq!(backend.log_records(), 500);
    // Closed now: records are refused and counted.
    let e = rec.record_span(span(1, 999)).unwrap_err();
    assert_eq!(e.reason, RejectReason::Closed);
    assert_eq!(collector.stats().after_shutdown, 1);
    assert!(collector.shutdown().is_err(), "a second shutdown says it is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_flush_reports_what_a_dead_backend_did_not_take() {
    let dead = free_port();
    let collector = Collector::builder()
        .endpoint(format!("http://127.0.0.1:{dead}"))
        .retry(fast_retry())
        .shutdown_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let rec = collector.recorder();
    for seq in 0..10 {
        rec.record_span(span(2, seq)).unwrap();
    }
    let err = blocking(|| collector.force_flush(Duration::from_millis(300))).unwrap_err();
    match err {
        sluice::sdk::SdkError::Incomplete(r) => assert_eq!(r.pending, 10, "{r:?}"),
        e => panic!("unexpected {e}"),
    }
    let err = blocking(|| collector.shutdown()).unwrap_err();
    match err {
        sluice::sdk::SdkError::Incomplete(r) => assert_eq!(r.pending + r.failed, 10, "{r:?}"),
        e => panic!("unexpected {e}"),
    }
}

// ---------------------------------------------------------------------------
// overflow, with a stalled backend

/// Records `n` spans from this thread into a collector whose backend is down,
/// then brings the backend up and shuts down; returns (refusals, stats,
/// received span ids).
async fn stalled(policy: Overflow, n: u64) -> (Vec<(u64, RejectReason)>, sluice::sdk::SdkStats, BTreeSet<String>) {
    let backend = Backend::start_new().await;
    backend.stop().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .max_queue_size(64)
        .max_batch_size(16)
        .sending_queue_size(2)
        .flush_interval(Duration::from_millis(20))
        .overflow(policy)
        // DropOldest: how long a producer may wait for the shard to trim;
        // generous, so a descheduled shard on a loaded machine is no refusal.
        .backpressure_wait(if policy == Overflow::DropOldest {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        })
        .retry(fast_retry())
        .shutdown_timeout(Duration::from_secs(10))
        .start()
        .unwrap();
    let rec = collector.recorder();
    let mut refused = Vec::new();
    blocking(|| {
        for seq in 0..n {
            if let Err(e) = rec.record_span(span(3, seq)) {
                assert_eq!(e.record, span(3, seq), "the refused record comes back");
                refused.push((seq, e.reason));
            }
        }
    });
    backend.start().await;
    blocking(|| collector.shutdown()).expect("everything kept is exported after the backend returns");
    (refused, collector.stats(), received_ids(&backend))
}

fn ids(seqs: impl Iterator<Item = u64>) -> BTreeSet<String> {
    seqs.map(|s| hex_span(&span(3, s))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_new_counts_exactly() {
    let n = 2_000;
    let (refused, st, got) = stalled(Overflow::DropNew, n).await;
    assert!(!refused.is_empty(), "the stalled backend made the ring overflow");
    assert!(refused.iter().all(|r| r.1 == RejectReason::Dropped));
    assert_eq!(st.dropped_new, refused.len() as u64);
    let refused: BTreeSet<u64> = refused.iter().map(|r| r.0).collect();
    assert_eq!(got, ids((0..n).filter(|s| !refused.contains(s))));
    assert_eq!(st.exported + st.dropped_new, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_hands_records_back_exactly() {
    let n = 2_000;
    let (refused, st, got) = stalled(Overflow::Backpressure, n).await;
    assert!(!refused.is_empty());
    assert!(refused.iter().all(|r| r.1 == RejectReason::Backpressure));
    assert_eq!(st.backpressure, refused.len() as u64);
    assert_eq!(st.dropped_new, 0);
    let refused: BTreeSet<u64> = refused.iter().map(|r| r.0).collect();
    assert_eq!(got, ids((0..n).filter(|s| !refused.contains(s))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_keeps_by_trace_id_above_the_high_water_mark() {
    let n = 2_000;
    let (refused, st, got) = stalled(Overflow::Sample(30.0), n).await;
    let refused_set: BTreeSet<u64> = refused.iter().map(|r| r.0).collect();
    assert_eq!(st.dropped_new, refused.len() as u64);
    // Accepted but not received: exactly the sampled-out ones, and each of
    // them is one the trace-id hash drops.
    let missing: Vec<u64> = (0..n)
        .filter(|s| !refused_set.contains(s) && !got.contains(&hex_span(&span(3, *s))))
        .collect();
    assert!(st.sampled_out > 0, "sampling happened");
    assert_eq!(missing.len() as u64, st.sampled_out);
    let threshold = sampling::trace_threshold(30.0);
    for s in &missing {
        assert!(
            !sampling::keep_trace(&span(3, *s).trace_id, threshold),
            "seq {s} was kept by the hash"
        );
    }
    assert_eq!(st.exported + st.sampled_out + st.dropped_new, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest() {
    let n = 2_000;
    let (refused, st, got) = stalled(Overflow::DropOldest, n).await;
    assert!(refused.is_empty(), "the producer was not refused: {}", refused.len());
    assert!(st.dropped_oldest > 0);
    assert_eq!(st.exported + st.dropped_oldest, n);
    assert_eq!(got.len() as u64, st.exported);
    // What arrived is the batch that was in flight when the backend stalled
    // (the oldest) and the newest records: at most two contiguous runs of
    // sequence numbers, the second one ending with the last record.
    let seqs: Vec<u64> = (0..n).filter(|s| got.contains(&hex_span(&span(3, *s)))).collect();
    let runs: Vec<(u64, u64)> = seqs.iter().fold(Vec::new(), |mut runs, &s| {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == s => *end = s,
            _ => runs.push((s, s)),
        }
        runs
    });
    assert!(runs.len() <= 2, "received runs {runs:?}");
    let last = runs.last().unwrap();
    assert_eq!(last.1, n - 1, "the newest record arrived");
    assert!(
        last.1 - last.0 + 1 >= 16,
        "at least a batch of the newest arrived: {runs:?}"
    );
}

// ---------------------------------------------------------------------------
// the OpenTelemetry SDK and `tracing`

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_processor_under_the_otel_tracer() {
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .resource([opentelemetry::KeyValue::new("service.name", "sdk-test")])
        .flush_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collector.span_processor())
        .build();
    let joins: Vec<_> = (0..3)
        .map(|t| {
            let tracer = provider.tracer("sdk-test");
            std::thread::spawn(move || {
                (0..200)
                    .map(|i| {
                        let mut s = tracer.start(format!("t{t}-{i}"));
                        s.set_attribute(opentelemetry::KeyValue::new("i", i as i64));
                        let id = hex_id(&s.span_context().span_id().to_bytes());
                        s.end();
                        id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let want: BTreeSet<String> = blocking(|| joins.into_iter().flat_map(|j| j.join().unwrap()).collect());
    blocking(|| provider.force_flush()).expect("provider flush");
    assert_eq!(received_ids(&backend), want);
    assert_eq!(backend.span_count(), 600);
    let traces = backend.traces();
    let rs = &traces[0].resource_spans[0];
    let svc = rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|k| k.key == "service.name");
    assert!(format!("{svc:?}").contains("sdk-test"));
    assert_eq!(rs.scope_spans[0].scope.as_ref().unwrap().name, "sdk-test");
    let _ = blocking(|| provider.shutdown());
    blocking(|| collector.shutdown()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_processor_under_the_otel_logger() {
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .start()
        .unwrap();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(collector.log_processor())
        .build();
    let logger = provider.logger("sdk-logs");
    for i in 0..50 {
        let mut r = logger.create_log_record();
        r.set_severity_number(Severity::Warn);
        r.set_body(LogValue::String(format!("line {i}").into()));
        logger.emit(r);
    }
    blocking(|| collector.shutdown()).unwrap();
    let logs = backend.logs();
    let bodies: BTreeSet<String> = logs
        .iter()
        .flat_map(|r| &r.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| format!("{:?}", l.body.as_ref().unwrap().value.as_ref().unwrap()))
        .collect();
    assert_eq!(bodies.len(), 50);
    assert!(bodies.iter().any(|b| b.contains("line 49")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_spans_through_tracing_opentelemetry() {
    use tracing_subscriber::layer::SubscriberExt;
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .start()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(collector.span_processor())
        .build();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")));
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..20 {
            let outer = tracing::info_span!("request", i);
            let _g = outer.enter();
            tracing::info_span!("db_query").in_scope(|| {});
        }
    });
    blocking(|| collector.shutdown()).unwrap();
    let spans = backend.spans();
    assert_eq!(spans.len(), 40);
    assert_eq!(spans.iter().filter(|s| s.2 == "request").count(), 20);
    assert_eq!(spans.iter().filter(|s| s.2 == "db_query").count(), 20);
    // Each db_query span belongs to its request's trace.
    let traces: BTreeSet<&Vec<u8>> = spans.iter().map(|s| &s.0).collect();
    assert_eq!(traces.len(), 20);
}

// ---------------------------------------------------------------------------
// through a real `sluice run` agent, both protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_local_sluice_agent_grpc_and_http() {
    let backend = Backend::start_new().await;
    let ports = Ports::new();
    let _agent = Sluice::start(&forward_config(&ports, backend.port, "{shards: 1}"));
    for (t, protocol, endpoint) in [
        (5, Protocol::Grpc, ports.grpc_url()),
        (6, Protocol::Http, format!("http://{}", ports.http_addr())),
    ] {
        let collector = Collector::builder()
            .endpoint(endpoint)
            .protocol(protocol)
            .gzip(t == 6)
            .start()
            .unwrap();
        let rec = collector.recorder();
        for seq in 0..300 {
            rec.record_span(span(t, seq)).unwrap();
        }
        blocking(|| collector.shutdown()).unwrap();
    }
    let want: BTreeSet<String> = [5, 6]
        .into_iter()
        .flat_map(|t| (0..300).map(move |s| hex_span(&span(t, s))))
        .collect();
    assert!(
        backend
            .wait_for(Duration::from_secs(10), |b| b.span_count() >= 600)
            .await
    );
    assert_eq!(received_ids(&backend), want);
}

// ---------------------------------------------------------------------------
// allocation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_does_not_allocate() {
    let dead = free_port();
    let collector = Collector::builder()
        .endpoint(format!("http://127.0.0.1:{dead}"))
        .max_queue_size(20_000)
        .shutdown_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let rec = collector.recorder();
    let proc_ = collector.span_processor();
    blocking(|| {
        // First record of the thread creates its ring (allocates once).
        rec.record_span(span(4, 0)).unwrap();
        let (_, n) = allocations(|| {
            for seq in 1..5_000 {
                rec.record_span(span(4, seq)).unwrap();
            }
        });
        assert_eq!(n, 0, "native recording allocated");
        // SpanData built beforehand; `on_end` only moves it into the ring.
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        use opentelemetry_sdk::trace::SpanProcessor as _;
        let data: Vec<_> = (0..2_000u64)
            .map(|i| opentelemetry_sdk::trace::SpanData {
                span_context: SpanContext::new(
                    TraceId::from(u128::from(i) + 1),
                    SpanId::from(i + 1),
                    TraceFlags::SAMPLED,
                    false,
                    TraceState::default(),
                ),
                parent_span_id: SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: opentelemetry::trace::SpanKind::Internal,
                name: "x".into(),
                start_time: std::time::SystemTime::now(),
                end_time: std::time::SystemTime::now(),
                attributes: Vec::new(),
                dropped_attributes_count: 0,
                events: Default::default(),
                links: Default::default(),
                status: opentelemetry::trace::Status::Unset,
                instrumentation_scope: opentelemetry::InstrumentationScope::builder("s").build(),
            })
            .collect();
        let mut it = data.into_iter();
        // The thread's first OTel record creates its OTel ring (a ring of
        // its own kind, beside the native one), allocating once.
        proc_.on_end(it.next().unwrap());
        let (_, n) = allocations(|| {
            for d in it.by_ref() {
                proc_.on_end(d);
            }
        });
        assert_eq!(n, 0, "SpanProcessor::on_end allocated");
    });
    let _ = blocking(|| collector.shutdown());
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let e = Collector::builder().endpoint("https://x:1").start().err().unwrap();
    assert!(e.to_string().contains("http://"), "{e}");
    let e = Collector::builder()
        .endpoint("http://nohostport")
        .start()
        .err()
        .unwrap();
    assert!(e.to_string().contains("port"), "{e}");
    let e = Collector::builder().max_queue_size(0).start().err().unwrap();
    assert!(e.to_string().contains("max_queue_size"), "{e}");
    let e = Collector::builder()
        .overflow(Overflow::Sample(120.0))
        .start()
        .err()
        .unwrap();
    assert!(e.to_string().contains("Sample"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_counters_are_exported_as_otlp_metrics() {
    let backend = Backend::start_new().await;
    let collector = Collector::builder()
        .endpoint(format!("http://{}", backend.endpoint()))
        .max_queue_size(8)
        .overflow(Overflow::DropNew)
        .flush_interval(Duration::from_millis(20))
        .self_metrics_interval(Some(Duration::from_millis(50)))
        .start()
        .unwrap();
    let rec = collector.recorder();
    for seq in 0..5 {
        rec.record_span(span(7, seq)).unwrap();
    }
    // The periodic export reports the 5 exported spans.
    let exported = |b: &Backend| {
        b.metrics()
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "sluice.sdk.records")
            .filter_map(|m| match &m.data {
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => Some(s.data_points.clone()),
                _ => None,
            })
            .flatten()
            .filter(|p| format!("{:?}", p.attributes).contains("\"exported\""))
            .filter_map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    assert!(
        backend.wait_for(Duration::from_secs(10), |b| exported(b) == 5).await,
        "self-metrics report 5 exported spans (got {})",
        exported(&backend)
    );
    blocking(|| collector.shutdown()).unwrap();
    assert_eq!(collector.stats().exported, 5);
}
