//! Spool throughput: append (group commit of 64 concurrent requests, with and
//! without an fdatasync per commit) then read back every record as export
//! batches, reported in bytes/s of request payload and in spans/s; plus a
//! replay from disk after reopening (the restart path).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use glommio::{LocalExecutorBuilder, Placement};
use sluice::{
    payload::Payload,
    shutdown::Lifecycle,
    signal::Signal,
    spool::{recovery, SpoolSettings},
    telemetry::Stats,
};

/// Records per measured run, spans per record, request body size.
const RECORDS: u64 = 2048;
const SPANS: u64 = 50;
const BODY: usize = 16 * 1024;
/// Appends in flight together (one commit, one sync per group).
const GROUP: u64 = 64;

/// A request-like body: repeated attribute text with varying ids, compressing
/// roughly like real OTLP spans.
fn body(i: u64) -> Bytes {
    let mut v = Vec::with_capacity(BODY);
    let mut k = 0u64;
    while v.len() < BODY {
        let id = (i * 1_000_003 + k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        v.extend_from_slice(format!("span {id:016x} http.route=/api/v1/items/{k} status=200 ").as_bytes());
        k += 1;
    }
    v.truncate(BODY);
    Bytes::from(v)
}

fn settings(root: &std::path::Path, fsync: bool) -> SpoolSettings {
    SpoolSettings {
        root: root.to_path_buf(),
        fsync,
        max_bytes: 0,
        batch_items: 8192,
        batch_timeout: Duration::ZERO,
    }
}

/// Runs `iters` rounds of append+read on one glommio executor; returns the
/// time spent (spool open and directory cleanup excluded).
fn append_read(iters: u64, fsync: bool, replay: bool) -> Duration {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(128)
        .spawn(move || async move {
            let bodies: Vec<Bytes> = (0..RECORDS).map(body).collect();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tmp = tempfile::tempdir().expect("tempdir");
                let stats = Stats::new(1, &[], &["otlp".to_string()]);
                let lifecycle = Lifecycle::new();
                let (spool, _) = recovery::open(settings(tmp.path(), fsync), "otlp", 0, stats.clone(), 0)
                    .await
                    .expect("open spool");
                let start = Instant::now();
                for group in bodies.chunks(GROUP as usize) {
                    let tasks: Vec<_> = group
                        .iter()
                        .map(|b| {
                            let (spool, b) = (spool.clone(), b.clone());
                            glommio::spawn_local(async move {
                                spool.append(Signal::Traces, &Payload::from_body(b, SPANS)).await
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("append");
                    }
                }
                let spool = if replay {
                    // Restart: everything is read back from the segment files.
                    spool.close_writer().await;
                    drop(spool);
                    recovery::open(settings(tmp.path(), fsync), "otlp", 0, stats, 0)
                        .await
                        .expect("reopen spool")
                        .0
                } else {
                    spool
                };
                spool.close();
                let mut read = 0;
                while let Some(b) = spool.next_batch(&lifecycle).await {
                    read += b.records;
                    spool.complete(b.id);
                }
                assert_eq!(read, RECORDS);
                total += start.elapsed();
            }
            total
        })
        .expect("spawn executor")
        .join()
        .expect("join executor")
}

fn bench(c: &mut Criterion) {
    for (unit, throughput) in [
        ("bytes", Throughput::Bytes(RECORDS * BODY as u64)),
        ("spans", Throughput::Elements(RECORDS * SPANS)),
    ] {
        let mut g = c.benchmark_group(format!("spool_{unit}"));
        g.throughput(throughput);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(5));
        for (name, fsync, replay) in [
            ("append_read", false, false),
            ("append_read_fsync", true, false),
            ("append_replay_from_disk", false, true),
        ] {
            g.bench_function(BenchmarkId::new(name, RECORDS), |b| {
                b.iter_custom(|iters| append_read(iters, fsync, replay))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
