//! A backend that accepts exports but answers with an OTLP partial success
//! (`rejected_<items> = k`, `error_message`): sluice counts the rejected items
//! as failed and the rest as sent, per batch, and never retries such a batch
//! (the backend has it; resending would duplicate the accepted part). Checked
//! for the gRPC (`otlp`) and HTTP (`otlphttp`) exporters, for every signal.

mod common;

use std::time::Duration;

use common::*;

/// One shard, batch processor, retries that would show quickly if they happened.
fn config(p: &Ports, exporter: &str, name: &str) -> String {
    config_yaml(
        p,
        "",
        "",
        &format!(
            "  {name}: {{{exporter}, compression: none, retry_on_failure: {{initial_interval: 50ms, max_interval: 50ms, randomization_factor: 0}}}}"
        ),
        &format!("[{name}]"),
        "{shards: 1}",
    )
}

/// Exporter counters summed over labels.
fn exporter_counts(p: &Ports, item: &str) -> (f64, f64) {
    let s = scrape_samples(p.metrics_addr());
    (
        labelled(&s, &format!("otelcol_exporter_sent_{item}_total"), &[]),
        labelled(&s, &format!("otelcol_exporter_send_failed_{item}_total"), &[]),
    )
}

/// Waits until the exporter has settled `total` items (sent + failed).
async fn settled(p: &Ports, item: &str, total: f64) -> (f64, f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (sent, failed) = exporter_counts(p, item);
        if sent + failed >= total || std::time::Instant::now() > deadline {
            return (sent, failed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `n` requests of `per` items per signal through `p`'s gRPC receiver,
/// each waiting for the backend to have it so that every request is its own
/// batch (the batch timeout flushes it alone).
async fn send_all(p: &Ports, n: u64, per: u64, recorded: impl Fn() -> (usize, usize, usize)) {
    let mut c = OtlpClients::connect(p).await;
    for seed in 0..n {
        let before = recorded();
        c.traces.export(traces_request(1, per, seed)).await.unwrap();
        // metrics_request(1, 1, _) has POINTS_PER_SET points; logs `per` records.
        c.metrics.export(metrics_request(1, 1, seed)).await.unwrap();
        c.logs.export(logs_request(1, per, seed)).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = recorded();
            if now.0 > before.0 && now.1 > before.1 && now.2 > before.2 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "request {seed} did not reach the backend"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Common checks once everything is settled: every batch was attempted once,
/// `k` items of each were counted as failed, the rest as sent, no retries.
async fn check(p: &Ports, attempts: impl Fn() -> u64, batches: (usize, usize, usize), n: u64, per: u64, k: u64) {
    let expected_batches = (batches.0 + batches.1 + batches.2) as u64;
    assert_eq!(batches, (n as usize, n as usize, n as usize), "one batch per request");
    for (item, total) in [
        ("spans", n * per),
        ("metric_points", n * POINTS_PER_SET),
        ("log_records", n * per),
    ] {
        let (sent, failed) = settled(p, item, total as f64).await;
        let rejected = k.min(total / n) * n;
        assert_eq!(
            (sent, failed),
            ((total - rejected) as f64, rejected as f64),
            "{item}: (sent, send_failed) with {k} rejected per batch of {}",
            total / n
        );
    }
    // No retry after the answer: the attempt count stays at one per batch.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(attempts(), expected_batches, "a partially successful batch was resent");
    let s = scrape_samples(p.metrics_addr());
    assert_eq!(labelled(&s, "sluice_exporter_retries_total", &[]), 0.0);
    assert_eq!(labelled(&s, "sluice_exporter_permanent_errors_total", &[]), 0.0);
    assert_eq!(labelled(&s, "sluice_exporter_queued_items", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_partial_success_counts_rejected_items_and_does_not_retry() {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::PartialSuccess {
        rejected: 2,
        message: "2 items had invalid attributes",
    });
    let p = Ports::new();
    let exporter = format!("endpoint: 127.0.0.1:{}, tls: {{insecure: true}}", backend.port);
    let mut sluice = Sluice::start(&config(&p, &exporter, "otlp"));
    let (n, per) = (6, 5);
    send_all(&p, n, per, || {
        backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()))
    })
    .await;
    let batches = backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()));
    check(&p, || backend.attempts(), batches, n, per, 2).await;
    // The backend got every item; only its verdict on some differs.
    assert_eq!(backend.span_count(), n * per);
    assert!(
        sluice.stderr_text().contains("2 items had invalid attributes"),
        "the backend's message is not logged"
    );
    sluice.stop(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_partial_success_counts_rejected_items_and_does_not_retry() {
    let backend = HttpBackend::start_new().await;
    backend.set_mode(Mode::PartialSuccess {
        rejected: 3,
        message: "3 items too old",
    });
    let p = Ports::new();
    let exporter = format!("endpoint: {}", backend.url());
    let mut sluice = Sluice::start(&config(&p, &exporter, "otlphttp"));
    let (n, per) = (5, 4);
    send_all(&p, n, per, || {
        backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()))
    })
    .await;
    let batches = backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()));
    check(&p, || backend.attempts(), batches, n, per, 3).await;
    assert_eq!(backend.log_records(), n * per);
    sluice.stop(Duration::from_secs(15));
}

/// A backend claiming more rejections than the batch holds: clamped to the
/// batch, never a negative `sent`.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_count_larger_than_the_batch_is_clamped() {
    let backend = Backend::start_new().await;
    backend.set_mode(Mode::PartialSuccess {
        rejected: 1_000_000,
        message: "all rejected",
    });
    let p = Ports::new();
    let exporter = format!("endpoint: 127.0.0.1:{}, tls: {{insecure: true}}", backend.port);
    let mut sluice = Sluice::start(&config(&p, &exporter, "otlp"));
    let (n, per) = (3, 4);
    send_all(&p, n, per, || {
        backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()))
    })
    .await;
    let batches = backend.with_recorded(|r| (r.traces.len(), r.metrics.len(), r.logs.len()));
    check(&p, || backend.attempts(), batches, n, per, 1_000_000).await;
    // A partial success with nothing rejected (a warning only) counts all as sent.
    backend.set_mode(Mode::PartialSuccess {
        rejected: 0,
        message: "deprecated attribute",
    });
    let mut c = OtlpClients::connect(&p).await;
    c.traces.export(traces_request(1, 7, 99)).await.unwrap();
    let (sent, failed) = settled(&p, "spans", (n * per + 7) as f64).await;
    assert_eq!((sent, failed), (7.0, (n * per) as f64));
    sluice.stop(Duration::from_secs(15));
}
