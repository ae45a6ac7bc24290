//! Opening a spool: reads the cursor, deletes segments wholly behind it, scans
//! the rest to count records (a torn tail left by a crash mid-write is cut
//! off; a record whose checks fail is counted, logged with its segment and
//! offset, and skipped later), and starts the writer on a fresh segment.

use std::{
    cell::RefCell,
    collections::{BTreeMap, VecDeque},
    rc::Rc,
};

use glommio::sync::Semaphore;

use super::{cursor, io_err, spool_dir, sync_directory, SegInfo, Spool, SpoolError, SpoolSettings, State};
use crate::{
    store::segment::{SegmentEvent, SegmentScanner},
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

/// Opens (creating if needed) `exporter`'s spool for `shard`; `index` is the
/// exporter's position in the shard's stats.
pub async fn open(
    settings: SpoolSettings,
    exporter: &str,
    shard: usize,
    stats: Stats,
    index: usize,
) -> Result<(Rc<Spool>, Recovered), SpoolError> {
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
    let es = &stats.shards[shard].exporters[index];
    let mut segments = BTreeMap::new();
    let mut found = Recovered::default();
    let mut disk_bytes = 0;
    let mut last = None;
    for (seq, path) in listed {
        last = Some(seq);
        if seq < cur.seq {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete exported spool segment");
            }
            continue;
        }
        let image = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let start = if seq == cur.seq {
            (cur.offset as usize).min(image.len())
        } else {
            0
        };
        let mut len = image.len() as u64;
        let mut records = 0;
        for ev in SegmentScanner::new(&image[start..]) {
            match ev {
                SegmentEvent::Record { .. } => records += 1,
                SegmentEvent::Corrupt { offset, reason } => {
                    found.corrupt += 1;
                    es.spool_corrupt.add(1);
                    tracing::error!(exporter, segment = %path.display(), offset = start as u64 + offset, %reason, "corrupt spool record; it will be skipped");
                }
                SegmentEvent::TruncatedTail { offset, bytes } => {
                    found.torn += 1;
                    len = start as u64 + offset;
                    tracing::warn!(exporter, segment = %path.display(), offset = len, bytes, "torn record at the end of a spool segment (crash mid-write); truncating");
                    let cut = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(len));
                    if let Err(e) = cut {
                        tracing::warn!(segment = %path.display(), error = %e, "cannot truncate the torn tail; it will be skipped");
                    }
                }
            }
        }
        found.segments += 1;
        found.records += records;
        disk_bytes += len;
        segments.insert(
            seq,
            SegInfo {
                len,
                sealed: true,
                records,
            },
        );
    }
    let write_seq = last.map_or(0, |l| l.saturating_add(1)).max(cur.seq.saturating_add(1));
    let state = State {
        segments,
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
        records: found.records,
        disk_bytes,
        closed: false,
    };
    if found.records > 0 || found.corrupt > 0 {
        tracing::info!(exporter, shard, dir = %dir.display(), segments = found.segments, records = found.records, corrupt = found.corrupt, torn = found.torn, "spool recovered; replaying records not yet exported");
    }
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
    Ok((spool, found))
}
