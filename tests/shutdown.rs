//! Graceful shutdown: under load, everything acknowledged is delivered before
//! sluice exits 0; later requests are refused; with the backend down the
//! shutdown deadline holds and the loss is reported.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::*;

#[derive(Default)]
struct Outcome {
    /// Span ids of requests answered OK.
    acked: Vec<Vec<u8>>,
    ok_before_signal: u64,
    ok_after_signal: u64,
    /// Errors after the signal: (code, message).
    errors: Vec<(tonic::Code, String)>,
    errors_before_signal: Vec<(tonic::Code, String)>,
}

fn is_connection_error(code: tonic::Code, msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    code == tonic::Code::Unavailable
        || [
            "transport",
            "connect",
            "connection",
            "broken pipe",
            "reset",
            "h2 protocol error",
            "goaway",
            "refused",
        ]
        .iter()
        .any(|w| m.contains(w))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_delivers_everything_acknowledged() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 2, shutdown_timeout: 10s}"));

    let signalled = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut tasks = Vec::new();
    for client in 0..4u64 {
        let signalled = signalled.clone();
        let outcome = outcome.clone();
        let url = p.grpc_url();
        tasks.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut consecutive_errors = 0;
            let mut channel: Option<OtlpTraceClient> = None;
            let started = Instant::now();
            loop {
                if started.elapsed() > Duration::from_secs(25) {
                    break;
                }
                if channel.is_none() {
                    match connect(&url).await {
                        Ok(c) => channel = Some(c),
                        Err(e) => {
                            let after = signalled.load(Ordering::SeqCst);
                            {
                                let mut o = outcome.lock().unwrap();
                                let err = (tonic::Code::Unavailable, format!("connect: {e}"));
                                if after {
                                    o.errors.push(err);
                                } else {
                                    o.errors_before_signal.push(err);
                                }
                            }
                            consecutive_errors += 1;
                            if after && consecutive_errors >= 5 {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                }
                let seed = client * 1_000_000 + seq;
                seq += 1;
                let req = traces_request(1 + seq % 3, 5, seed);
                let ids: Vec<Vec<u8>> = req
                    .resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .flat_map(|ss| &ss.spans)
                    .map(|s| s.span_id.clone())
                    .collect();
                let sent_after = signalled.load(Ordering::SeqCst);
                let res = channel.as_mut().unwrap().export(req).await;
                let failed = {
                    let mut o = outcome.lock().unwrap();
                    match res {
                        Ok(_) => {
                            o.acked.extend(ids);
                            if sent_after {
                                o.ok_after_signal += 1;
                            } else {
                                o.ok_before_signal += 1;
                            }
                            false
                        }
                        Err(st) => {
                            let err = (st.code(), st.message().to_string());
                            if signalled.load(Ordering::SeqCst) {
                                o.errors.push(err);
                            } else {
                                o.errors_before_signal.push(err);
                            }
                            true
                        }
                    }
                };
                if !failed {
                    consecutive_errors = 0;
                    continue;
                }
                consecutive_errors += 1;
                if signalled.load(Ordering::SeqCst) && consecutive_errors >= 5 {
                    break;
                }
                // A fresh connection next time (the old one may be going away).
                channel = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // Load is going once a few requests succeeded (poll; no fixed warm-up).
    let warm = Instant::now() + Duration::from_secs(20);
    while outcome.lock().unwrap().ok_before_signal <= 10 && Instant::now() < warm {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = outcome.lock().unwrap().ok_before_signal;
    assert!(before > 10, "load did not get going: {before} OK requests");
    signalled.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    sluice.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let st = sluice.wait_exit(Duration::from_secs(20));
        (st, sluice)
    })
    .await
    .unwrap();
    let (st, sluice) = status;
    let took = t0.elapsed();
    assert!(st.success(), "exit status {st}; stderr:\n{}", sluice.stderr_text());
    assert!(
        took < Duration::from_secs(10) + Duration::from_secs(3),
        "shutdown took {took:?}"
    );

    for t in tasks {
        t.await.unwrap();
    }
    let o = outcome.lock().unwrap();
    assert!(
        o.errors_before_signal.is_empty(),
        "errors before shutdown: {:?}",
        &o.errors_before_signal[..o.errors_before_signal.len().min(5)]
    );
    // Every acknowledged span reached the backend.
    let at_backend: HashSet<Vec<u8>> = backend.spans().into_iter().map(|s| s.1).collect();
    let missing: Vec<String> = o
        .acked
        .iter()
        .filter(|id| !at_backend.contains(*id))
        .map(|id| hex_id(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged spans never reached the backend (first: {:?})",
        missing.len(),
        o.acked.len(),
        &missing[..missing.len().min(5)]
    );
    // Nothing delivered twice or invented.
    assert!(backend.span_count() as usize >= o.acked.len());
    assert_eq!(
        at_backend.len() as u64,
        backend.span_count(),
        "duplicate spans at the backend"
    );
    // Requests after shutdown: refused with UNAVAILABLE or a connection error.
    assert!(!o.errors.is_empty(), "no request was refused after shutdown");
    for (code, msg) in &o.errors {
        assert!(
            is_connection_error(*code, msg),
            "request after SIGTERM failed with {code:?}: {msg}"
        );
    }
    let stderr = sluice.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
}

type OtlpTraceClient = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient<
    tonic::transport::Channel,
>;

async fn connect(url: &str) -> Result<OtlpTraceClient, tonic::transport::Error> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .connect()
        .await?;
    Ok(OtlpTraceClient::new(ch))
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_requests_during_shutdown_get_unavailable_on_open_connection() {
    // The backend never answers OK, so shutdown lingers for the whole
    // deadline; requests on an already open connection meanwhile are refused.
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::Fail(tonic::Code::Unavailable));
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 1, shutdown_timeout: 3s}"));
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let req = prost::Message::encode_to_vec(&traces_request(1, 3, 1));
    let r = g.call(TRACES_PATH, &req, false).await;
    assert_eq!(r.code, 0, "{}", r.message);
    // The batch reached the exporter, which now retries until the deadline.
    assert!(backend.wait_for(Duration::from_secs(10), |b| b.attempts() >= 1).await);
    sluice.sigterm();
    let draining = Instant::now() + Duration::from_secs(10);
    while !sluice.stderr_text().contains("shutting down") && Instant::now() < draining {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sluice.is_running(), "sluice should still be draining");
    // HTTP/2 may have sent GOAWAY; if the stream is still accepted it must be refused.
    if let Ok(reply) = g.try_call(TRACES_PATH, &req).await {
        assert_eq!(
            reply.code, 14,
            "request during shutdown: expected UNAVAILABLE, got {} {}",
            reply.code, reply.message
        );
    }
    // A new connection is refused or answered UNAVAILABLE.
    if let Ok(s) = tokio::net::TcpStream::connect(p.grpc_addr()).await {
        drop(s);
        let fresh = tokio::time::timeout(Duration::from_secs(5), async {
            let mut g2 = GrpcConn::try_connect(p.grpc_addr()).await?;
            g2.try_call(TRACES_PATH, &req).await
        })
        .await;
        if let Ok(Ok(reply)) = fresh {
            assert_eq!(
                reply.code, 14,
                "new request during shutdown: got {} {}",
                reply.code, reply.message
            );
        }
    }
    let st = tokio::task::spawn_blocking(move || {
        let st = sluice.wait_exit(Duration::from_secs(10));
        (st, sluice)
    })
    .await
    .unwrap();
    assert!(st.0.success(), "{}", st.1.stderr_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_down_short_deadline_reports_undelivered() {
    let backend = Backend::start_new().await;
    backend.stop().await; // connection refused from now on
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 1, shutdown_timeout: 2s}"));
    let mut c = OtlpClients::connect(&p).await;
    for seed in 0..5 {
        c.traces
            .export(traces_request(2, 5, 500 + seed))
            .await
            .expect("accepted while backend is down");
    }
    drop(c);
    // The exporter is retrying (the batch left the batch processor).
    let retrying = Instant::now() + Duration::from_secs(10);
    let mut m = scrape(p.metrics_addr());
    while metric(&m, "sluice_exporter_retries_total") < 1.0 && Instant::now() < retrying {
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = scrape(p.metrics_addr());
    }
    assert!(
        metric(&m, "sluice_exporter_retries_total") >= 1.0,
        "the exporter never retried"
    );
    assert_eq!(metric(&m, "otelcol_receiver_accepted_spans_total"), 50.0);
    assert_eq!(metric(&m, "otelcol_exporter_sent_spans_total"), 0.0);

    let t0 = Instant::now();
    sluice.sigterm();
    let st = sluice.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    let stderr = sluice.stderr_text();
    assert!(st.success(), "exit {st}; stderr:\n{stderr}");
    assert!(
        took >= Duration::from_millis(1500),
        "gave up before the deadline: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "shutdown_timeout 2s but exit took {took:?}"
    );
    assert!(
        stderr.to_ascii_lowercase().contains("undelivered"),
        "no undelivered report:\n{stderr}"
    );
    assert!(stderr.contains("50"), "undelivered count 50 not reported:\n{stderr}");
    assert_eq!(backend.attempts(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_also_shuts_down_cleanly() {
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let mut sluice = Sluice::start(&forward_config(&p, backend.port, "{shards: 1, shutdown_timeout: 5s}"));
    let mut c = OtlpClients::connect(&p).await;
    c.logs.export(logs_request(1, 4, 1)).await.unwrap();
    drop(c);
    sluice.sigint();
    let st = sluice.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "{}", sluice.stderr_text());
    // Flushed on the way out even though the batch timer may not have fired.
    assert_eq!(backend.log_records(), 4);
}

/// A client that stalls in the middle of a request body does not eat the
/// shutdown budget: batches still waiting in the batch processor are flushed
/// and delivered, and sluice exits 0 within the deadline.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_client_does_not_block_the_final_flush() {
    use prost::Message as _;
    use std::io::Write as _;
    let backend = Backend::start_new().await;
    let p = Ports::new();
    let yaml =
        forward_config(&p, backend.port, "{shards: 1, shutdown_timeout: 3s}").replace("timeout: 200ms", "timeout: 30s");
    let mut sluice = Sluice::start(&yaml);
    let mut conn = GrpcConn::connect(p.grpc_addr()).await;
    for seed in 0..10 {
        let body = traces_request(2, 5, 700 + seed).encode_to_vec();
        assert_eq!(conn.call(TRACES_PATH, &body, false).await.code, 0);
    }
    // 100 acknowledged spans now wait in the batch processor (30 s timeout).
    let mut stalled = std::net::TcpStream::connect(p.http_addr()).unwrap();
    stalled
        .write_all(b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\nabc")
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    sluice.sigterm();
    let st = sluice.wait_exit(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(st.success(), "exit {st}:\n{}", sluice.stderr_text());
    assert!(
        took < Duration::from_secs(5),
        "shutdown_timeout 3s but exit took {took:?}"
    );
    backend.expect_counts(100, 0, 0, Duration::from_secs(5)).await;
    assert!(
        !sluice.stderr_text().contains("undelivered"),
        "{}",
        sluice.stderr_text()
    );
    drop(stalled);
}
