//! The persistent sending queue (`sending_queue.storage: file_storage/...`):
//! per exporter and shard, an append-only sequence of segment files of
//! checksummed LZ4 records (`crate::store::segment` format) under
//! `<directory>/<exporter id>/shard-N/`, plus a persisted read cursor.
//!
//! Receivers append a request's payload and answer only once it is in the file
//! (fdatasync'd with `fsync: true`); concurrent appends on a shard share one
//! write and one sync (`writer`). The exporter reads records back, from memory
//! while they are recent or from disk after a restart, batches them and sends
//! them (`reader`); the cursor advances and fully exported segments are deleted
//! only once the backend accepted (or permanently refused) a batch. `recovery`
//! rebuilds the state at start. Delivery is at-least-once. Everything here is
//! owned by one shard: `RefCell`s, no locks.

pub mod cursor;
pub mod reader;
pub mod recovery;
pub mod writer;

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    path::{Path, PathBuf},
    task::Waker,
    time::Duration,
};

use glommio::{io::Directory, sync::Semaphore};
use thiserror::Error;

use crate::{
    config::{Config, ExporterConfig, ExtensionConfig, ProcessorConfig},
    payload::Payload,
    signal::Signal,
    telemetry::Stats,
};
pub use cursor::Pos;

/// Segment size at which the writer starts a new segment.
pub const SEGMENT_SIZE: u64 = 4 << 20;
/// Payload bytes of recent records kept in memory for the reader.
pub const MEMORY_BUDGET: usize = 32 << 20;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spool of exporter {0} is full (max_size_mib reached)")]
    Full(String),
    #[error("spool of exporter {0} is still being recovered; retry shortly")]
    Recovering(String),
    #[error("cannot encode record: {0}")]
    Record(#[from] crate::store::RecordError),
    #[error("spool write failed: {0}")]
    WriteFailed(String),
}

pub(crate) fn io_err(path: &Path, e: impl Into<std::io::Error>) -> SpoolError {
    SpoolError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// fsyncs a directory so entries created or removed in it survive a crash.
pub(crate) async fn sync_directory(path: &Path) -> Result<(), SpoolError> {
    let dir = Directory::open(path).await.map_err(|e| io_err(path, e))?;
    dir.sync().await.map_err(|e| io_err(path, e))?;
    dir.close().await.map_err(|e| io_err(path, e))
}

/// Where and how one exporter's spool lives.
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolSettings {
    /// The `file_storage` directory.
    pub root: PathBuf,
    pub fsync: bool,
    /// Budget of segment bytes for this exporter's spool on one shard's
    /// directory share; 0 = none.
    pub max_bytes: u64,
    /// How the reader batches: up to this many items...
    pub batch_items: u64,
    /// ...waiting at most this long for more records.
    pub batch_timeout: Duration,
}

impl SpoolSettings {
    /// Settings from the `file_storage` extension config, if it is one.
    pub fn from_extension(ext: &ExtensionConfig, shards: usize) -> Option<SpoolSettings> {
        match ext {
            ExtensionConfig::FileStorage {
                directory,
                fsync,
                max_size_mib,
            } => Some(SpoolSettings {
                root: directory.clone(),
                fsync: *fsync,
                // The directory's budget is shared evenly by the shards.
                max_bytes: max_size_mib.saturating_mul(1024 * 1024) / shards.max(1) as u64,
                batch_items: 8192,
                batch_timeout: Duration::ZERO,
            }),
            _ => None,
        }
    }
}

/// The spool settings of exporter `id` if its `sending_queue` has `storage`:
/// the `file_storage` extension's directory and fsync, the budget split over
/// `shards`, and the read-side batching of the first pipeline feeding it that
/// has a batch processor.
pub fn settings_for(config: &Config, id: &str, shards: usize) -> Option<SpoolSettings> {
    let (_, ecfg) = config.exporters.iter().find(|(k, _)| k.to_string() == id)?;
    let queue = match ecfg {
        ExporterConfig::Otlp(o) | ExporterConfig::OtlpHttp(o) => &o.sending_queue,
        ExporterConfig::Kafka(k) => &k.sending_queue,
        _ => return None,
    };
    if !queue.enabled {
        return None;
    }
    let storage = queue.storage.as_ref()?;
    let mut s = SpoolSettings::from_extension(config.extensions.get(storage)?, shards)?;
    let batch = config
        .service
        .pipelines
        .iter()
        .filter(|p| p.exporters.iter().any(|e| e.to_string() == id))
        .flat_map(|p| p.processors.iter())
        .find_map(|pid| match config.processors.get(pid) {
            Some(ProcessorConfig::Batch(b)) => Some(b.clone()),
            _ => None,
        });
    if let Some(b) = batch {
        s.batch_items = match b.send_batch_max_size {
            0 => b.send_batch_size.max(1),
            max => b.send_batch_size.clamp(1, max),
        };
        s.batch_timeout = b.timeout;
    }
    Some(s)
}

/// The directory of one exporter's spool on one shard.
pub fn spool_dir(root: &Path, exporter: &str, shard: usize) -> PathBuf {
    let name: String = exporter
        .chars()
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    crate::store::layout::shard_dir(&root.join(name), shard)
}

/// A committed record kept in memory for the reader.
struct MemRecord {
    start: Pos,
    end: Pos,
    signal: Signal,
    payload: Payload,
}

/// One segment file.
#[derive(Clone, Copy, Debug)]
struct SegInfo {
    /// Bytes of valid, committed data (a torn tail is cut off at recovery).
    len: u64,
    /// Whether the writer has moved on to a later segment.
    sealed: bool,
    /// Records in it not yet acknowledged are counted in `records`; this is
    /// the number written, to keep the gauge right when it is deleted.
    records: u64,
}

/// A batch handed to the exporter; `complete` it once the export is settled.
pub struct SpoolBatch {
    pub id: u64,
    pub signal: Signal,
    pub payload: Payload,
    pub records: u64,
}

struct InFlight {
    id: u64,
    end: Pos,
    records: u64,
    done: bool,
}

/// The state both sides share.
struct State {
    /// Segments on disk, by sequence number.
    segments: BTreeMap<u64, SegInfo>,
    /// Sequence number of the segment the writer appends to.
    write_seq: u64,
    /// Encoded records waiting for the next commit, and their payloads.
    pending: Vec<u8>,
    pending_records: Vec<(Signal, Payload, usize)>,
    /// Commit epochs: appends join `open_epoch`; `committed_epoch` is durable.
    open_epoch: u64,
    committed_epoch: u64,
    failed_epochs: VecDeque<(u64, String)>,
    /// Recent committed records, oldest first.
    mem: VecDeque<MemRecord>,
    mem_bytes: usize,
    /// Records read from disk, oldest first.
    disk: VecDeque<(Pos, Pos, crate::store::Record)>,
    /// A record taken for a batch it did not fit (another signal).
    stash: Option<(Pos, Signal, Payload)>,
    /// Position of the next record to read.
    read: Pos,
    /// Everything before this is exported (the cursor).
    acked: Pos,
    cursor_dirty: bool,
    inflight: VecDeque<InFlight>,
    next_batch_id: u64,
    /// Segments up to this sequence number were checked at recovery; corrupt
    /// records in them were reported then.
    recovered_upto: Option<u64>,
    /// Records not yet acknowledged, and segment bytes on disk (gauges).
    records: u64,
    disk_bytes: u64,
    closed: bool,
    /// Until `recovery::recover` has run: appends are refused (retryably)
    /// and nothing is read.
    recovering: bool,
    /// Segments (sequence number, path) `recovery::recover` still has to scan.
    to_recover: Vec<(u64, PathBuf)>,
}

/// One exporter's spool on one shard.
pub struct Spool {
    pub exporter: String,
    pub dir: PathBuf,
    settings: SpoolSettings,
    state: RefCell<State>,
    /// Held by whoever writes and syncs a commit group.
    commit_lock: Semaphore,
    /// The reader waiting for new records.
    reader_waker: RefCell<Option<Waker>>,
    /// The writer's open segment (only touched under `commit_lock`).
    file: RefCell<Option<writer::OpenSegment>>,
    stats: Stats,
    shard: usize,
    index: usize,
}

impl Spool {
    fn exporter_stats(&self) -> &crate::telemetry::ExporterStats {
        &self.stats.shards[self.shard].exporters[self.index]
    }

    fn publish(&self) {
        let st = self.state.borrow();
        let es = self.exporter_stats();
        es.spool_bytes.set(st.disk_bytes + st.pending.len() as u64);
        es.spool_records.set(st.records);
    }

    fn wake_reader(&self) {
        if let Some(w) = self.reader_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Whether `bytes` more (uncompressed; compression only shrinks them,
    /// up to the record header) fit in the budget.
    /// While the spool is being recovered there is none.
    pub fn has_room(&self, bytes: usize) -> bool {
        let st = self.state.borrow();
        if st.recovering {
            return false;
        }
        self.settings.max_bytes == 0
            || st.disk_bytes + st.pending.len() as u64 + bytes as u64 + 64 <= self.settings.max_bytes
    }

    /// No more appends: the reader ends once everything readable is handed out.
    pub fn close(&self) {
        self.state.borrow_mut().closed = true;
        self.wake_reader();
    }

    /// Records appended and not yet acknowledged.
    pub fn records(&self) -> u64 {
        self.state.borrow().records
    }

    /// Whether recovery at start is still scanning the segments.
    pub fn recovering(&self) -> bool {
        self.state.borrow().recovering
    }

    pub fn settings(&self) -> &SpoolSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests;
