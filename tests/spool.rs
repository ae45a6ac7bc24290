//! The persistent queue against real sluice processes: acknowledged data
//! survives kill -9 (repeatedly) while the backend is down, corrupt and cut
//! segments are recovered around, a full spool refuses with a retryable code.

mod common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;

/// One shard forwarding traces over gRPC to `port` through a persistent queue in `dir`.
fn spool_config(p: &Ports, port: u16, dir: &Path, storage_extra: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      grpc: {{endpoint: 127.0.0.1:{grpc}}}
processors:
  batch: {{send_batch_size: 200, timeout: 100ms}}
extensions:
  file_storage/q: {{directory: {dir}, fsync: true{storage_extra}}}
exporters:
  otlp:
    endpoint: 127.0.0.1:{port}
    tls: {{insecure: true}}
    compression: none
    # The debug-build test backend may take seconds per export on a loaded
    # machine; a timed-out export would be sent again and again.
    timeout: 120s
    sending_queue: {{storage: file_storage/q, num_consumers: 2}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms, max_elapsed_time: 0}}
service:
  extensions: [file_storage/q]
  telemetry: {{metrics: {{address: 127.0.0.1:{metrics}}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
tuning: {{shards: 1, shutdown_timeout: 1s}}
",
        grpc = p.grpc,
        metrics = p.metrics,
        dir = dir.display(),
    )
}

/// Sends requests (seeds from `first`) until `n` were acknowledged or a call
/// fails (the process died); acknowledged span ids go to `acked`.
async fn load(p: Ports, first: u64, n: u64, acked: Arc<Mutex<BTreeSet<String>>>) -> u64 {
    let Ok(mut g) = GrpcConn::try_connect(p.grpc_addr()).await else {
        return 0;
    };
    let mut ok = 0;
    for seed in first..first + n {
        let req = traces_request(2, 5, seed);
        match g.try_call(TRACES_PATH, &prost::Message::encode_to_vec(&req)).await {
            Ok(r) if r.code == 0 => {
                acked.lock().unwrap().extend(request_span_ids(&req));
                ok += 1;
            }
            // Retryable (the spool is still being recovered): back off, as
            // a client does; this request was not acknowledged.
            Ok(r) if r.code == 8 => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(r) => panic!("request refused: {} {}", r.code, r.message),
            Err(_) => break,
        }
    }
    ok
}

/// The log text without terminal colour escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let shard = dir.join("otlp").join("shard-0");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&shard)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    v.sort();
    v
}

/// (offset, total length) of each record in a segment file.
fn record_offsets(image: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= image.len() {
        let len = u32::from_le_bytes(image[at..at + 4].try_into().unwrap()) as usize + 8;
        if at + len > image.len() {
            break;
        }
        out.push((at, len));
        at += len;
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_repeatedly_with_backend_down_loses_nothing_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::start_new().await;
    backend.stop().await;
    let p = Ports::new();
    let cfg = spool_config(&p, backend.port, tmp.path(), "");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    for round in 0..3u64 {
        let mut sluice = Sluice::start(&cfg);
        let before = acked.lock().unwrap().len();
        // Several concurrent clients so kills land mid-request and mid-commit.
        let tasks: Vec<_> = (0..4u64)
            .map(|c| tokio::spawn(load(p, (round * 4 + c) * 100_000, 100_000, acked.clone())))
            .collect();
        // Kill once requests are being acknowledged (on a loaded machine the
        // first may take a while), a little later each round.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked.lock().unwrap().len() == before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200 + round * 150)).await;
        sluice.kill9();
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        assert!(n > 0, "round {round}: nothing was acknowledged");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!segments(tmp.path()).is_empty());
    backend.start().await;
    let sluice = Sluice::start(&cfg);
    let ok = backend
        .wait_for(Duration::from_secs(40), |b| received_ids(b).is_superset(&acked))
        .await;
    let got = received_ids(&backend);
    let missing = acked.difference(&got).count();
    assert!(ok, "{missing} of {} acknowledged spans never arrived", acked.len());
    // Everything exported: the spool empties and old segments are deleted.
    let mut records = -1.0;
    // Poll for up to a minute (deleting segments takes milliseconds when idle).
    for _ in 0..600 {
        let s = scrape_samples(p.metrics_addr());
        records = labelled(&s, "sluice_spool_records", &["exporter=\"otlp\""]);
        if records == 0.0 && segments(tmp.path()).len() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records, 0.0, "records left in the spool");
    assert!(
        segments(tmp.path()).len() <= 1,
        "exported segments not deleted: {:?}",
        segments(tmp.path())
    );
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread")]
async fn flipped_byte_and_cut_segment_are_recovered_around() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::start_new().await;
    backend.stop().await;
    let p = Ports::new();
    let cfg = spool_config(&p, backend.port, tmp.path(), "");
    // Two runs, two segments, eight requests each (one record per request).
    let mut per_run: Vec<Vec<BTreeSet<String>>> = Vec::new();
    for run in 0..2u64 {
        let mut sluice = Sluice::start(&cfg);
        let mut g = GrpcConn::connect(p.grpc_addr()).await;
        let mut reqs = Vec::new();
        for i in 0..8 {
            let req = traces_request(1, 4, run * 100 + i);
            let r = g.call(TRACES_PATH, &prost::Message::encode_to_vec(&req), false).await;
            assert_eq!(r.code, 0, "{}", r.message);
            reqs.push(request_span_ids(&req).into_iter().collect::<BTreeSet<_>>());
        }
        sluice.kill9();
        per_run.push(reqs);
    }
    let segs = segments(tmp.path());
    assert_eq!(segs.len(), 2, "{segs:?}");
    // Flip a byte in the body of record 3 of the first segment.
    let mut first = std::fs::read(&segs[0]).unwrap();
    let recs = record_offsets(&first);
    assert_eq!(recs.len(), 8);
    let (at, len) = recs[3];
    first[at + len - 3] ^= 0x5a;
    std::fs::write(&segs[0], &first).unwrap();
    // Cut the second segment in the middle of its last record.
    let second = std::fs::read(&segs[1]).unwrap();
    let recs2 = record_offsets(&second);
    assert_eq!(recs2.len(), 8);
    let (at2, len2) = recs2[7];
    std::fs::write(&segs[1], &second[..at2 + len2 / 2]).unwrap();

    backend.start().await;
    let sluice = Sluice::start(&cfg);
    let mut expected = BTreeSet::new();
    for (run, reqs) in per_run.iter().enumerate() {
        for (i, ids) in reqs.iter().enumerate() {
            if (run, i) != (0, 3) && (run, i) != (1, 7) {
                expected.extend(ids.iter().cloned());
            }
        }
    }
    let ok = backend
        .wait_for(Duration::from_secs(20), |b| received_ids(b).is_superset(&expected))
        .await;
    assert!(ok, "records around the damage were not all delivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received_ids(&backend);
    assert!(got.is_disjoint(&per_run[0][3]), "the corrupt record was delivered");
    assert!(got.is_disjoint(&per_run[1][7]), "the cut record was delivered");
    let m = scrape(p.metrics_addr());
    assert_eq!(metric(&m, "sluice_spool_corrupt_records_total"), 1.0);
    let log = strip_ansi(&sluice.stderr_text());
    let name = segs[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("corrupt spool record") && l.contains(&name) && l.contains(&format!("offset={at}"))),
        "corrupt record not reported with segment and offset:\n{log}"
    );
    assert!(log.contains("torn record"), "torn tail not reported:\n{log}");
    drop(sluice);
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_restart_replays_and_full_spool_refuses_retryably() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = Backend::start_new().await;
    backend.stop().await;
    let p = Ports::new();
    let cfg = spool_config(&p, backend.port, tmp.path(), ", max_size_mib: 1");
    let mut sluice = Sluice::start(&cfg);
    let mut g = GrpcConn::connect(p.grpc_addr()).await;
    let mut acked = BTreeSet::new();
    let mut refused = None;
    for seed in 0..2000 {
        // Large, poorly compressible attributes fill the 1 MiB budget quickly.
        let req = traces_request(4, 50, seed);
        let r = g.call(TRACES_PATH, &prost::Message::encode_to_vec(&req), false).await;
        if r.code == 0 {
            acked.extend(request_span_ids(&req));
        } else {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a 1 MiB spool never filled up");
    assert_eq!(
        r.code, 8,
        "full spool: expected RESOURCE_EXHAUSTED, got {} {}",
        r.code, r.message
    );
    assert!(!acked.is_empty());
    sluice.sigterm();
    let st = tokio::task::spawn_blocking(move || {
        let st = sluice.wait_exit(Duration::from_secs(15));
        (st, sluice)
    })
    .await
    .unwrap();
    assert!(st.0.success(), "{}", st.1.stderr_text());
    backend.start().await;
    let sluice = Sluice::start(&cfg);
    // Replay takes as long as the machine needs for ~1 MiB of exports: wait
    // while exports keep arriving (a stall of 15 s, many retry intervals of
    // 400 ms, fails; so does 300 s in all).
    let (mut last, mut since, cap) = (
        backend.attempts(),
        std::time::Instant::now(),
        std::time::Instant::now() + Duration::from_secs(300),
    );
    let ok = loop {
        if received_ids(&backend).is_superset(&acked) {
            break true;
        }
        let now = backend.attempts();
        if now != last {
            (last, since) = (now, std::time::Instant::now());
        } else if since.elapsed() > Duration::from_secs(15) || std::time::Instant::now() > cap {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(ok, "acknowledged spans were not replayed after a restart");
    drop(sluice);
}
