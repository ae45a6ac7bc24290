//! Opening a spool in two steps. `start` is quick: it reads the cursor,
//! deletes segments wholly behind it, and sets the writer after every
//! segment name taken; the spool then refuses appends (the retryable "full"
//! answer) and hands out nothing until `recover` has scanned the remaining
//! segments to count their records (a torn tail left by a crash mid-write is
//! cut off; a record whose checks fail is counted, logged with its segment
//! and offset, and skipped later). The scan runs on glommio's blocking pool,
//! so the shard's listeners answer while a large spool is recovered.
//! Only regular files are read: anything else named like a segment is
//! skipped with a warning.

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    path::Path,
    rc::Rc,
};

use glommio::sync::Semaphore;

use super::{cursor, io_err, spool_dir, sync_directory, SegInfo, Spool, SpoolError, SpoolSettings, State};
use crate::{
    store::{
        layout::read_regular,
        segment::{CheckedEvent, SegmentScanner, HEADER_LEN, MAX_RECORD_LEN, PREFIX_LEN},
    },
    telemetry::Stats,
};

/// What recovery found, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub segments: usize,
    pub records: u64,
    pub corrupt: u64,
    pub torn: u64,
}

/// Largest spool segment the writer produces: records are added while the
/// segment is under `SEGMENT_SIZE`, and a single record may be larger.
/// Anything larger is not one of ours and is skipped, not read into memory.
const MAX_SPOOL_SEGMENT: u64 = super::SEGMENT_SIZE + (PREFIX_LEN + HEADER_LEN + MAX_RECORD_LEN) as u64;

/// Corrupt records logged one by one per segment; the rest are summed up.
const LOGGED_CORRUPT: u64 = 10;

/// Opens `exporter`'s spool for `shard` and recovers it before returning.
pub async fn open(
    settings: SpoolSettings,
    exporter: &str,
    shard: usize,
    stats: Stats,
    index: usize,
) -> Result<(Rc<Spool>, Recovered), SpoolError> {
    let spool = start(settings, exporter, shard, stats, index).await?;
    let found = recover(&spool).await;
    Ok((spool, found))
}

/// Opens (creating if needed) `exporter`'s spool for `shard`; `index` is the
/// exporter's position in the shard's stats. The spool refuses appends and
/// reads nothing until [`recover`] has run.
pub async fn start(
    settings: SpoolSettings,
    exporter: &str,
    shard: usize,
    stats: Stats,
    index: usize,
) -> Result<Rc<Spool>, SpoolError> {
    let dir = spool_dir(&settings.root, exporter, shard);
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    if settings.fsync {
        if let Some(parent) = dir.parent() {
            sync_directory(parent).await?;
        }
    }
    let cur = cursor::load(&dir);
    let listed = crate::store::layout::list_segments(&dir).map_err(|e| match e {
        crate::store::StoreError::Io { path, source } => SpoolError::Io { path, source },
        other => SpoolError::WriteFailed(other.to_string()),
    })?;
    let mut last = None;
    let mut to_recover = Vec::new();
    for (seq, path) in listed {
        // Every name counts, whatever the entry is: the writer never reuses one.
        last = Some(seq);
        if seq < cur.seq {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete exported spool segment");
            }
            continue;
        }
        to_recover.push((seq, path));
    }
    let write_seq = last.map_or(0, |l| l.saturating_add(1)).max(cur.seq.saturating_add(1));
    let state = State {
        segments: BTreeMap::new(),
        write_seq,
        pending: Vec::new(),
        pending_records: Vec::new(),
        open_epoch: 1,
        committed_epoch: 0,
        failed_epochs: VecDeque::new(),
        mem: VecDeque::new(),
        mem_bytes: 0,
        disk: VecDeque::new(),
        stash: None,
        read: cur,
        acked: cur,
        cursor_dirty: false,
        inflight: VecDeque::new(),
        next_batch_id: 0,
        recovered_upto: last,
        records: 0,
        disk_bytes: 0,
        closed: false,
        recovering: true,
        to_recover,
    };
    let spool = Rc::new(Spool {
        exporter: exporter.to_string(),
        dir,
        settings,
        state: RefCell::new(state),
        commit_lock: Semaphore::new(1),
        reader_waker: RefCell::new(None),
        file: RefCell::new(None),
        stats,
        shard,
        index,
    });
    spool.publish();
    Ok(spool)
}

/// Scans the segments `start` found, then lets the spool take appends and
/// hand out records. Each segment is read and checked on the executor's
/// blocking pool.
pub async fn recover(spool: &Spool) -> Recovered {
    let started = std::time::Instant::now();
    let (todo, cur) = {
        let mut st = spool.state.borrow_mut();
        (std::mem::take(&mut st.to_recover), st.acked)
    };
    let mut found = Recovered::default();
    let mut segments = BTreeMap::new();
    let mut disk_bytes = 0;
    for (seq, path) in todo {
        let start = if seq == cur.seq { cur.offset } else { 0 };
        let exporter = spool.exporter.clone();
        let scanned = glommio::executor()
            .spawn_blocking(move || scan_segment(&exporter, &path, start))
            .await;
        let Some(s) = scanned else { continue };
        found.segments += 1;
        found.records += s.records;
        found.corrupt += s.corrupt;
        found.torn += s.torn;
        spool.exporter_stats().spool_corrupt.add(s.corrupt);
        disk_bytes += s.len;
        segments.insert(
            seq,
            SegInfo {
                len: s.len,
                sealed: true,
                records: s.records,
            },
        );
    }
    {
        let mut st = spool.state.borrow_mut();
        st.segments.extend(segments);
        st.records += found.records;
        st.disk_bytes += disk_bytes;
        st.recovering = false;
    }
    if found.records > 0 || found.corrupt > 0 {
        tracing::info!(exporter = %spool.exporter, shard = spool.shard, dir = %spool.dir.display(), segments = found.segments, records = found.records, corrupt = found.corrupt, torn = found.torn, "spool recovered; replaying records not yet exported");
    }
    tracing::info!(exporter = %spool.exporter, shard = spool.shard, elapsed = ?started.elapsed(), "spool recovery finished; accepting data");
    spool.publish();
    spool.wake_reader();
    found
}

/// What the scan of one segment found.
struct Scanned {
    /// Bytes of valid data (up to a torn tail).
    len: u64,
    records: u64,
    corrupt: u64,
    torn: u64,
}

/// Reads and checks one segment from `start`, cutting off a torn tail.
/// `None` if it cannot be read (logged).
fn scan_segment(exporter: &str, path: &Path, start: u64) -> Option<Scanned> {
    let image = match read_regular(path, MAX_SPOOL_SEGMENT) {
        Ok(image) => image,
        Err(e) => {
            tracing::warn!(exporter, segment = %path.display(), error = %e, "spool segment skipped");
            return None;
        }
    };
    let start = (start as usize).min(image.len());
    let mut s = Scanned {
        len: image.len() as u64,
        records: 0,
        corrupt: 0,
        torn: 0,
    };
    let mut scanner = SegmentScanner::new(&image[start..]);
    while let Some(ev) = scanner.next_checked() {
        match ev {
            CheckedEvent::Record { .. } => s.records += 1,
            CheckedEvent::Corrupt { offset, reason } => {
                s.corrupt += 1;
                if s.corrupt <= LOGGED_CORRUPT {
                    tracing::error!(exporter, segment = %path.display(), offset = start as u64 + offset, %reason, "corrupt spool record; it will be skipped");
                }
            }
            CheckedEvent::TruncatedTail { offset, bytes } => {
                s.torn += 1;
                s.len = start as u64 + offset;
                truncate(path, s.len, bytes);
            }
        }
    }
    if s.corrupt > LOGGED_CORRUPT {
        tracing::error!(exporter, segment = %path.display(), corrupt = s.corrupt, "corrupt spool records in this segment (only the first {LOGGED_CORRUPT} logged); they will be skipped");
    }
    Some(s)
}

fn truncate(path: &Path, len: u64, bytes: u64) {
    use std::os::unix::fs::OpenOptionsExt;
    tracing::warn!(segment = %path.display(), offset = len, bytes, "torn record at the end of a spool segment (crash mid-write); truncating");
    // Without following a symlink swapped in since the read.
    let cut = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .and_then(|f| f.set_len(len));
    if let Err(e) = cut {
        tracing::warn!(segment = %path.display(), error = %e, "cannot truncate the torn tail; it will be skipped");
    }
}
