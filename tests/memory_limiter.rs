//! The memory limiter under an unbounded load of large requests while the
//! backend is down: RSS stays near the limit, clients get retryable refusals
//! (gRPC RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with Retry-After) that
//! the receiver counts, the process stays alive and scrapeable, the health
//! endpoint goes 200 → 503 → 200, and flow resumes once the backend is back.

mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::*;
use prost::Message;

const LIMIT_MIB: u64 = 200;

fn config(p: &Ports, backend: u16, health: u16) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
      http: {{endpoint: 127.0.0.1:{http}}}
processors:
  memory_limiter: {{limit_mib: {LIMIT_MIB}, spike_limit_mib: 50}}
  batch: {{send_batch_size: 8192, timeout: 100ms}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{backend}
    tls: {{insecure: true}}
    compression: none
    # The test backend decodes every export in a debug build; on a loaded
    # machine that can take seconds, and a timed-out export is sent again.
    timeout: 120s
    retry_on_failure: {{initial_interval: 200ms, max_interval: {max_interval}ms, max_elapsed_time: 0}}
extensions:
  health_check: {{endpoint: 127.0.0.1:{health}}}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp]}}
tuning: {{shards: 2}}
",
        grpc = p.grpc,
        http = p.http,
        metrics = p.metrics,
        max_interval = MAX_INTERVAL.as_millis(),
    )
}

/// The exporter's `max_interval` and `randomization_factor` in `config`: a
/// batch waits at most `MAX_INTERVAL * 1.5` between two attempts.
const MAX_INTERVAL: Duration = Duration::from_secs(1);
/// How long the recovery may go without any progress (a new export attempt
/// reaching the backend) before the test gives up: many times the longest
/// legitimate pause (a retry wait, a memory limiter check, a batch timeout),
/// so a loaded machine does not fail it; a stuck sluice still does.
const STALL: Duration = Duration::from_secs(MAX_INTERVAL.as_secs() * 15);

/// An upper bound for any one recovery wait, however much progress is made.
const RECOVERY_CAP: Duration = Duration::from_secs(300);

/// Polls `done` every 100 ms while `progress` keeps changing; gives up once
/// it has not changed for `STALL` (or after `RECOVERY_CAP`). Returns whether
/// `done` held.
async fn wait_with_progress(mut done: impl FnMut() -> bool, mut progress: impl FnMut() -> u64) -> bool {
    let mut last = progress();
    let mut since = Instant::now();
    let cap = Instant::now() + RECOVERY_CAP;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > cap {
            return false;
        }
        let now = progress();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > STALL {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (VmRSS, VmHWM) of a process, bytes.
fn rss_of(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_limit_episode() {
    let backend = Backend::start_new().await;
    backend.stop().await;
    let p = Ports::new();
    let hport = free_port();
    let haddr = SocketAddr::from(([127, 0, 0, 1], hport));
    let mut sluice = Sluice::start(&config(&p, backend.port, hport));
    let pid = sluice.pid();
    assert_eq!(health(haddr), (200, r#"{"status":"ok"}"#.to_string()));

    // ~1.5 MiB requests.
    const SPANS: u64 = 4500;
    let req = traces_request(10, SPANS / 10, 1);
    let size = req.encoded_len();
    assert!(size > 1 << 20, "request is only {size} bytes");

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (stop, accepted, refused, req) = (stop.clone(), accepted.clone(), refused.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = OtlpClients::connect(&p).await;
            while !stop.load(Ordering::Relaxed) {
                match c.traces.export(req.clone()).await {
                    Ok(_) => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(st) => {
                        assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
                        let d = RpcStatus::decode(st.details()).expect("status details");
                        assert!(
                            d.details.iter().any(|x| x.type_url.ends_with("google.rpc.RetryInfo")),
                            "refusal without RetryInfo: {d:?}"
                        );
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    // One HTTP client too: 429 with Retry-After.
    let http_refused = Arc::new(AtomicU64::new(0));
    let http_thread = {
        let (stop, http_refused) = (stop.clone(), http_refused.clone());
        let body = req.encode_to_vec();
        let addr = p.http_addr();
        std::thread::spawn(move || {
            let mut c = HttpConn::connect(addr);
            let mut accepted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = c.post("/v1/traces", "application/x-protobuf", None, &body);
                match r.status {
                    200 => accepted += 1,
                    429 => {
                        assert!(r.header("retry-after").is_some(), "429 without Retry-After");
                        http_refused.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    s => panic!("unexpected HTTP status {s}: {}", r.text()),
                }
            }
            accepted
        })
    };

    // Load until the limiter has refused for a while (at least 8 s; longer
    // on a loaded machine, up to a cap far beyond what an idle one needs);
    // watch RSS and health.
    let started = Instant::now();
    let mut saw_503 = false;
    let mut saw_state = false;
    let mut peak = 0u64;
    while started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_of(pid).0);
        let (code, body) = health(haddr);
        if code == 503 {
            assert!(body.contains(r#""status":"memory_limited""#), "{body}");
            saw_503 = true;
            // The state gauge says the same while it lasts (it may be over
            // by the time the load has stopped).
            if !saw_state {
                let s = scrape_samples(p.metrics_addr());
                saw_state = labelled(&s, "sluice_memory_limiter_state", &[]) >= 1.0;
            }
        }
        if saw_503 && saw_state && refused.load(Ordering::Relaxed) > 20 && http_refused.load(Ordering::Relaxed) > 5 {
            // Keep pushing a little longer while refusing.
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let http_accepted = http_thread.join().unwrap();
    let (_, hwm) = rss_of(pid);
    let limit = LIMIT_MIB << 20;
    eprintln!(
        "load ran {:?}: peak RSS {} MiB (VmHWM {} MiB); grpc accepted {} refused {}; http accepted {http_accepted} refused {}",
        started.elapsed(),
        peak >> 20,
        hwm >> 20,
        accepted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        http_refused.load(Ordering::Relaxed)
    );
    assert!(saw_503, "health never reported memory_limited");
    assert!(refused.load(Ordering::Relaxed) > 0 && http_refused.load(Ordering::Relaxed) > 0);
    assert!(
        hwm <= limit + limit / 10,
        "peak RSS {} MiB above the limit + 10% (sampled peak {} MiB)",
        hwm >> 20,
        peak >> 20
    );
    assert!(sluice.is_running(), "sluice died under memory pressure");

    // The receiver counted every refusal, and nothing else.
    let s = scrape_samples(p.metrics_addr());
    let refused_spans = (refused.load(Ordering::Relaxed) + http_refused.load(Ordering::Relaxed)) * SPANS;
    assert_eq!(
        labelled(&s, "otelcol_receiver_refused_spans_total", &[]),
        refused_spans as f64
    );
    let accepted_spans = (accepted.load(Ordering::Relaxed) + http_accepted) * SPANS;
    assert_eq!(
        labelled(&s, "otelcol_receiver_accepted_spans_total", &[]),
        accepted_spans as f64
    );
    assert!(saw_state, "sluice_memory_limiter_state never showed the limiter on");

    // Backend back: the queue drains, memory is returned, the limiter lets data
    // in. How long draining takes depends on the backlog and the machine, so
    // the waits below last as long as exports keep arriving at the backend.
    backend.start().await;
    let back = wait_with_progress(|| health(haddr).0 == 200, || backend.attempts()).await;
    assert!(
        back,
        "health did not return to 200 (no export for {STALL:?}); last {:?}",
        health(haddr)
    );
    let mut c = OtlpClients::connect(&p).await;
    let fresh = traces_request(1, 5, 777);
    let mut last = backend.attempts();
    let mut since = Instant::now();
    while c.traces.export(fresh.clone()).await.is_err() {
        let now = backend.attempts();
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() <= STALL,
            "requests still refused after recovery (no export for {STALL:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh_id = span_id(777, 0, 0);
    let has_fresh = || {
        backend.with_recorded(|r| {
            r.traces
                .iter()
                .flat_map(|t| &t.resource_spans)
                .flat_map(|rs| &rs.scope_spans)
                .any(|ss| ss.spans.iter().any(|s| s.span_id == fresh_id))
        })
    };
    let delivered = wait_with_progress(has_fresh, || backend.attempts()).await;
    assert!(delivered, "flow did not resume (no export for {STALL:?})");
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(
        labelled(&s, "otelcol_exporter_sent_spans_total", &[]),
        labelled(&s, "otelcol_receiver_accepted_spans_total", &[])
            - labelled(&s, "sluice_dropped_items_total", &[])
            - labelled(&s, "sluice_exporter_queued_items", &[])
    );
    sluice.stop(Duration::from_secs(30));
}
