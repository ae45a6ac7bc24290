//! Unit tests of the spool: restart replay across segment rollover, per-signal
//! batching on the read side, the size budget, group commit, and skipping an
//! all-corrupt segment.

use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};

use super::{recovery, spool_dir, SpoolSettings, SEGMENT_SIZE};
use crate::{payload::Payload, shutdown::Lifecycle, signal::Signal, telemetry::Stats};

fn run<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .ring_depth(64)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("join executor")
}

fn settings(root: &std::path::Path, max_bytes: u64) -> SpoolSettings {
    SpoolSettings {
        root: root.to_path_buf(),
        fsync: false,
        max_bytes,
        batch_items: 1000,
        batch_timeout: Duration::ZERO,
    }
}

fn payload(i: u64, size: usize) -> Payload {
    let mut v = format!("record-{i:08}-").into_bytes();
    v.resize(size, (i % 251) as u8);
    Payload::from_body(Bytes::from(v), 1)
}

/// Reads every batch currently in the spool, settling each; returns the bodies.
async fn drain(spool: &super::Spool, lifecycle: &Lifecycle) -> Vec<Bytes> {
    spool.close();
    let mut out = Vec::new();
    while let Some(b) = spool.next_batch(lifecycle).await {
        out.extend(b.payload.chunks.iter().cloned());
        spool.complete(b.id);
    }
    out
}

#[test]
fn appends_read_back_in_order_and_replay_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let stats = Stats::new(1, &[], &["otlp/a".to_string()]);
        let lifecycle = Lifecycle::new();
        let mut small = settings(&root, 0);
        small.batch_items = 5;
        let (spool, rec) = recovery::open(small, "otlp/a", 0, stats.clone(), 0).await.unwrap();
        assert_eq!(rec.records, 0);
        // Enough data to roll over to several segments.
        let n = (3 * SEGMENT_SIZE / 100_000) + 5;
        for i in 0..n {
            spool.append(Signal::Traces, &payload(i, 100_000)).await.unwrap();
        }
        assert_eq!(spool.records(), n);
        // Read half, settle it, persist the cursor; then "crash".
        let first = spool.next_batch(&lifecycle).await.unwrap();
        assert_eq!(first.records, 5);
        spool.complete(first.id);
        spool.persist_cursor().await.unwrap();
        let settled = first.records;
        drop(spool);
        let dir = spool_dir(&root, "otlp/a", 0);
        assert!(dir.ends_with("otlp_a/shard-0"), "{}", dir.display());

        let (spool, rec) = recovery::open(settings(&root, 0), "otlp/a", 0, stats.clone(), 0)
            .await
            .unwrap();
        assert_eq!(rec.records, n - settled);
        assert!(n - settled > 20);
        let bodies = drain(&spool, &lifecycle).await;
        assert_eq!(bodies.len() as u64, n - settled);
        for (k, b) in bodies.iter().enumerate() {
            let i = settled + k as u64;
            assert_eq!(b, &payload(i, 100_000).chunks[0], "record {i}");
        }
        spool.persist_cursor().await.unwrap();
        assert_eq!(stats.shards[0].exporters[0].spool_records.get(), 0);
        // Fully exported sealed segments are gone.
        let left = crate::store::layout::list_segments(&dir).unwrap();
        assert!(left.len() <= 1, "{left:?}");
    });
}

#[test]
fn signals_are_batched_separately_and_budget_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let stats = Stats::new(1, &[], &["otlp".to_string()]);
        let lifecycle = Lifecycle::new();
        let (spool, _) = recovery::open(settings(&root, 64 * 1024), "otlp", 0, stats, 0)
            .await
            .unwrap();
        for (i, s) in [Signal::Traces, Signal::Traces, Signal::Logs, Signal::Traces]
            .into_iter()
            .enumerate()
        {
            spool.append(s, &payload(i as u64, 100)).await.unwrap();
        }
        spool.close();
        let mut got = Vec::new();
        while let Some(b) = spool.next_batch(&lifecycle).await {
            got.push((b.signal, b.records));
            spool.complete(b.id);
        }
        assert_eq!(got, vec![(Signal::Traces, 2), (Signal::Logs, 1), (Signal::Traces, 1)]);

        let (spool, _) = recovery::open(
            settings(&root, 64 * 1024),
            "otlp",
            0,
            Stats::new(1, &[], &["otlp".to_string()]),
            0,
        )
        .await
        .unwrap();
        // Incompressible-ish data: 64 KiB fill up after a few records.
        let mut full = false;
        for i in 0..100u64 {
            let body: Vec<u8> = (0..20_000u64)
                .map(|k| (k.wrapping_mul(2654435761).wrapping_add(i) >> 7) as u8)
                .collect();
            match spool
                .append(Signal::Traces, &Payload::from_body(Bytes::from(body), 1))
                .await
            {
                Ok(()) => {}
                Err(super::SpoolError::Full(_)) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(full, "budget never enforced");
    });
}

#[test]
fn concurrent_appends_share_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let stats = Stats::new(1, &[], &["otlp".to_string()]);
        let mut s = settings(&root, 0);
        s.fsync = true;
        let (spool, _) = recovery::open(s, "otlp", 0, stats, 0).await.unwrap();
        let tasks: Vec<_> = (0..50u64)
            .map(|i| {
                let spool = spool.clone();
                glommio::spawn_local(async move { spool.append(Signal::Metrics, &payload(i, 1000)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let commits = spool.state.borrow().committed_epoch;
        assert!(commits < 50, "{commits} commits for 50 concurrent appends");
        assert_eq!(spool.records(), 50);
    });
}

#[test]
fn a_segment_of_only_corrupt_records_is_skipped_counted_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    run(move || async move {
        let stats = Stats::new(1, &[], &["otlp".to_string()]);
        let lifecycle = Lifecycle::new();
        let (spool, _) = recovery::open(settings(&root, 0), "otlp", 0, stats.clone(), 0)
            .await
            .unwrap();
        for i in 0..2 {
            spool.append(Signal::Logs, &payload(i, 5000)).await.unwrap();
        }
        spool.close_writer().await;
        drop(spool);
        let dir = spool_dir(&root, "otlp", 0);
        let segs = crate::store::layout::list_segments(&dir).unwrap();
        assert_eq!(segs.len(), 1);
        let mut image = std::fs::read(&segs[0].1).unwrap();
        let first_len = u32::from_le_bytes(image[0..4].try_into().unwrap()) as usize + 8;
        image[20] ^= 0xff;
        image[first_len + 20] ^= 0xff;
        std::fs::write(&segs[0].1, &image).unwrap();

        let (spool, rec) = recovery::open(settings(&root, 0), "otlp", 0, stats.clone(), 0)
            .await
            .unwrap();
        // Adjacent damaged records form one corrupt region (one report).
        assert_eq!(rec.records, 0);
        assert!(rec.corrupt >= 1);
        assert_eq!(stats.shards[0].exporters[0].spool_corrupt.get(), rec.corrupt);
        assert!(drain(&spool, &lifecycle).await.is_empty());
        // Reported once, at recovery, not again when read.
        assert_eq!(stats.shards[0].exporters[0].spool_corrupt.get(), rec.corrupt);
        assert!(
            !crate::store::layout::list_segments(&dir)
                .unwrap()
                .iter()
                .any(|s| s.0 == segs[0].0),
            "the skipped segment should be deleted"
        );
    });
}
