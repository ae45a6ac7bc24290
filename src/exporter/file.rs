//! The `file` exporter's consumer loop: appends queued batches to the shard's
//! local store (`store::StoreWriter`) with group commit, and counts exactly
//! what was stored.
//!
//! Every batch in the queue was acknowledged to a client, so none is given up
//! while the process runs: a batch too large for one record is split by the
//! writer, and a failed write (disk full, I/O error) is retried with backoff
//! (the queue fills meanwhile and receivers answer with the retryable
//! "unavailable"). Only a batch holding a single item larger than a record
//! (permanent), and what is still unwritten at the shutdown deadline, is
//! counted as failed. `sent` counts items once their records are flushed.

use std::{path::Path, time::Duration};

use crate::{
    exporter::{
        consumer::{sleep_until_or_deadline, ExportContext},
        queue::{Item as QueueItem, QueueConsumer},
    },
    store::{RecordError, StoreError, StoreWriter},
};

/// Batches appended before one flush.
const GROUP: usize = 64;
/// First wait after a failed write, doubled up to `RETRY_MAX`.
const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Runs the file exporter of one shard until its queue is closed and drained.
pub async fn run(
    id: &str,
    dir: &Path,
    segment_size: u64,
    fsync: bool,
    consumer: &mut QueueConsumer,
    ctx: &ExportContext,
) {
    let mut writer = match open(id, dir, segment_size, fsync, ctx).await {
        Some(w) => w,
        None => {
            give_up(id, consumer, ctx, "the local store cannot be opened").await;
            return;
        }
    };
    while let Some(first) = consumer.pop().await {
        let mut group = vec![first];
        while group.len() < GROUP {
            match consumer.try_pop() {
                Some(item) => group.push(item),
                None => break,
            }
        }
        store_group(id, &mut writer, group, ctx).await;
        let st = ctx.stats();
        st.queue_size.set(consumer.len() as u64);
        st.queue_bytes.set(consumer.bytes());
    }
    if let Err(e) = writer.close().await {
        tracing::error!(exporter = id, error = %e, "closing the local store failed");
    }
}

/// Opens the store, retrying with backoff until the shutdown deadline.
async fn open(id: &str, dir: &Path, segment_size: u64, fsync: bool, ctx: &ExportContext) -> Option<StoreWriter> {
    let mut wait = RETRY_INITIAL;
    let mut attempts = 0u64;
    loop {
        match StoreWriter::open(dir, ctx.shard, segment_size, fsync).await {
            Ok(w) => return Some(w),
            Err(e) => {
                if attempts == 0 || attempts.is_power_of_two() {
                    tracing::error!(exporter = id, dir = %dir.display(), error = %e, attempts, "cannot open the local store; retrying");
                }
                attempts += 1;
            }
        }
        if ctx.lifecycle.past_deadline() {
            return None;
        }
        sleep_until_or_deadline(wait, ctx.lifecycle.deadline(), &ctx.lifecycle).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Writes one group and flushes it, retrying failed writes until they succeed
/// or the shutdown deadline passes, and counts every batch exactly once.
async fn store_group(id: &str, writer: &mut StoreWriter, group: Vec<QueueItem>, ctx: &ExportContext) {
    // Batches not yet counted as stored or failed.
    let mut pending = group;
    let mut wait = RETRY_INITIAL;
    let mut attempts = 0u64;
    loop {
        let mut error = None;
        let mut i = 0;
        while i < pending.len() {
            let item = &pending[i];
            match writer.append(item.signal, &item.payload).await {
                Ok(_) => i += 1,
                Err(e @ StoreError::Record(RecordError::TooLarge(_))) => {
                    // Nothing of it was appended; the others go on.
                    ctx.stats().send_failed.add(item.signal, item.payload.items);
                    tracing::error!(exporter = id, signal = %item.signal, items = item.payload.items, error = %e, "batch cannot be stored; dropping it");
                    pending.remove(i);
                }
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let result = match error {
            None => writer.flush().await,
            Some(e) => Err(e),
        };
        let e = match result {
            Ok(()) => {
                for item in &pending {
                    ctx.stats().sent.add(item.signal, item.payload.items);
                }
                if attempts > 0 {
                    tracing::info!(exporter = id, attempts, "local store write succeeded after retrying");
                }
                return;
            }
            Err(e) => e,
        };
        // The writer abandoned its segment; the next append starts a new one.
        // The whole group is written again: what reached the abandoned
        // segment before the failure may be stored twice, never lost.
        if attempts == 0 || attempts.is_power_of_two() {
            let items: u64 = pending.iter().map(|i| i.payload.items).sum();
            tracing::error!(exporter = id, items, attempts, error = %e, "local store write failed; retrying");
        }
        attempts += 1;
        ctx.stats().retries.add(1);
        if ctx.lifecycle.past_deadline() {
            lost_at_deadline(id, &pending, ctx, &e.to_string());
            return;
        }
        sleep_until_or_deadline(wait, ctx.lifecycle.deadline(), &ctx.lifecycle).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Counts batches given up at the shutdown deadline (failed, and undelivered).
fn lost_at_deadline(id: &str, items: &[QueueItem], ctx: &ExportContext, why: &str) {
    for item in items {
        ctx.stats().send_failed.add(item.signal, item.payload.items);
        ctx.stats.shards[ctx.shard]
            .shutdown_dropped
            .add(item.signal, item.payload.items);
        tracing::error!(exporter = id, signal = %item.signal, items = item.payload.items, error = why, "shutdown deadline passed; batch not stored");
    }
}

/// The store cannot be opened by the deadline: every queued batch is lost.
async fn give_up(id: &str, consumer: &mut QueueConsumer, ctx: &ExportContext, why: &str) {
    while let Some(item) = consumer.pop().await {
        lost_at_deadline(id, std::slice::from_ref(&item), ctx, why);
    }
}
