//! `StoreWriter`: appends records to one shard's segment files with glommio's
//! io_uring buffered-file API, rolling over to a new segment at `segment_size`.
//!
//! Records are encoded into an in-memory buffer and written with positional
//! writes when it fills or on `flush` (no DMA alignment, hence no padding).
//! `flush` returns once every appended record is in the file (and, with `fsync`,
//! fdatasync'd, together with the directory entry of any segment created since).
//! A reopened writer never appends to an existing segment: it starts a new one
//! after the highest sequence number, so a torn tail stays in its own file.
//!
//! A payload too large for one record (more than [`RECORD_BODY_LIMIT`] bytes,
//! which LZ4 may not shrink below the format's 256 MiB record limit) is cut at
//! resource, scope or item boundaries (`wire::split`) and written as several
//! records, so every item of an acknowledged batch is stored. Only a single
//! item larger than the limit cannot be stored.

use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, Directory, OpenOptions};

use super::layout::{list_segments, segment_name, shard_dir};
use super::segment::{encode_record_with, RecordError};
use super::StoreError;
use crate::payload::Payload;
use crate::signal::Signal;

/// The largest request body written as one record: LZ4's worst-case output
/// for it plus the record header stays within `segment::MAX_RECORD_LEN` (checked by a
/// test), so a body up to this size always fits, however incompressible.
pub const RECORD_BODY_LIMIT: usize = 224 << 20;

/// Buffered bytes that trigger a write before `flush`.
const WRITE_CHUNK: usize = 256 << 10;

struct Segment {
    file: BufferedFile,
    path: PathBuf,
    /// Bytes already written to the file.
    written: u64,
    /// Whether bytes were written since the last fdatasync.
    unsynced: bool,
}

pub struct StoreWriter {
    dir: PathBuf,
    segment_size: u64,
    fsync: bool,
    /// Sequence number of the current segment, or of the next one when none is open.
    seq: u64,
    current: Option<Segment>,
    /// Whether a segment was created since the directory was last synced.
    dir_unsynced: bool,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    bytes_written: u64,
}

fn io_err(path: &Path, e: impl Into<std::io::Error>) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// fsyncs a directory so the entries created in it survive a crash.
async fn sync_directory(path: &Path) -> Result<(), StoreError> {
    let dir = Directory::open(path).await.map_err(|e| io_err(path, e))?;
    dir.sync().await.map_err(|e| io_err(path, e))?;
    dir.close().await.map_err(|e| io_err(path, e))
}

impl StoreWriter {
    /// Opens shard `shard` of the store at `dir`, creating `dir/shard-N`. The
    /// first segment is created on the first append.
    pub async fn open(root: &Path, shard: usize, segment_size: u64, fsync: bool) -> Result<StoreWriter, StoreError> {
        let dir = shard_dir(root, shard);
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        if fsync {
            // Make the shard directory's own entry durable; segment entries are
            // synced as segments are created.
            sync_directory(root).await?;
        }
        let seq = list_segments(&dir)?.last().map_or(0, |(s, _)| s.saturating_add(1));
        tracing::debug!(dir = %dir.display(), seq, "store writer opened");
        Ok(StoreWriter {
            dir,
            segment_size: segment_size.max(1),
            fsync,
            seq,
            current: None,
            dir_unsynced: fsync,
            buf: Vec::new(),
            scratch: Vec::new(),
            bytes_written: 0,
        })
    }

    /// Appends `payload` as one record, or as several when it exceeds
    /// [`RECORD_BODY_LIMIT`] (cut into pieces of about [`SPLIT_TARGET`] bytes,
    /// see [`record_pieces`]); returns the number of records. Everything
    /// reaches the file by the next `flush` at the latest.
    ///
    /// On an I/O error, the records appended since the last successful write
    /// are discarded (records already written stay in the abandoned
    /// segment); the caller appends them again.
    pub async fn append(&mut self, signal: Signal, payload: &Payload) -> Result<usize, StoreError> {
        if payload.len <= RECORD_BODY_LIMIT {
            self.append_record(signal, payload).await?;
            return Ok(1);
        }
        let pieces = record_pieces(signal, payload, SPLIT_TARGET, RECORD_BODY_LIMIT)?;
        tracing::debug!(%signal, bytes = payload.len, items = payload.items, records = pieces.len(), "batch split to fit the record limit");
        for p in &pieces {
            self.append_record(signal, p).await?;
        }
        Ok(pieces.len())
    }

    async fn append_record(&mut self, signal: Signal, payload: &Payload) -> Result<(), StoreError> {
        let n = encode_record_with(signal, payload, &mut self.buf, &mut self.scratch)?;
        self.bytes_written += n as u64;
        let placed = self.place().await;
        if placed.is_err() {
            // Like a failed `write_buffer`, an I/O error discards what is
            // buffered: the caller appends those records again.
            self.buf.clear();
        }
        placed
    }

    /// Gets the buffer toward the file after an append: opens a segment if
    /// none is, writes when the buffer or the segment is full.
    async fn place(&mut self) -> Result<(), StoreError> {
        if self.current.is_none() {
            self.create_segment().await?;
        }
        let seg_len = self.current.as_ref().map_or(0, |s| s.written) + self.buf.len() as u64;
        if seg_len >= self.segment_size {
            self.write_buffer().await?;
            self.finish_segment().await?;
        } else if self.buf.len() >= WRITE_CHUNK {
            self.write_buffer().await?;
        }
        Ok(())
    }

    /// Writes everything appended so far to the file, and syncs it if `fsync`.
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        self.write_buffer().await?;
        if self.fsync {
            if let Some(seg) = self.current.as_mut() {
                if seg.unsynced {
                    seg.file.fdatasync().await.map_err(|e| io_err(&seg.path, e))?;
                    seg.unsynced = false;
                }
            }
            self.sync_dir().await?;
        }
        Ok(())
    }

    /// Flushes and closes the current segment.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.flush().await?;
        if let Some(seg) = self.current.take() {
            seg.file.close().await.map_err(|e| io_err(&seg.path, e))?;
        }
        Ok(())
    }

    /// Encoded record bytes appended since `open`.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The shard directory this writer appends to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn create_segment(&mut self) -> Result<(), StoreError> {
        // A shard directory removed under a running writer is made again
        // (rare: once per segment), so the store recovers once it can.
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
            self.dir_unsynced = self.fsync;
        }
        let path = self.dir.join(segment_name(self.seq));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .buffered_open(&path)
            .await
            .map_err(|e| {
                // The next attempt uses the next name, in case this one exists.
                self.seq = self.seq.saturating_add(1);
                io_err(&path, e)
            })?;
        tracing::debug!(segment = %path.display(), "store segment created");
        self.current = Some(Segment {
            file,
            path,
            written: 0,
            unsynced: false,
        });
        self.dir_unsynced = self.fsync;
        Ok(())
    }

    /// Closes the current segment (synced if `fsync`); the next append starts a new one.
    async fn finish_segment(&mut self) -> Result<(), StoreError> {
        let Some(seg) = self.current.take() else {
            return Ok(());
        };
        self.seq = self.seq.saturating_add(1);
        if self.fsync && seg.unsynced {
            seg.file.fdatasync().await.map_err(|e| io_err(&seg.path, e))?;
        }
        seg.file.close().await.map_err(|e| io_err(&seg.path, e))?;
        if self.fsync {
            self.sync_dir().await?;
        }
        Ok(())
    }

    async fn sync_dir(&mut self) -> Result<(), StoreError> {
        if self.dir_unsynced {
            sync_directory(&self.dir).await?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Writes the buffer to the current segment. On a failed or short write the
    /// segment is abandoned (its tail may be torn) and the next append starts a
    /// new one, so later records never follow a partial one.
    async fn write_buffer(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            self.create_segment().await?;
        }
        let Some(seg) = self.current.as_mut() else {
            return Ok(());
        };
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK));
        let len = data.len();
        let err = match seg.file.write_at(data, seg.written).await {
            Ok(n) if n == len => {
                seg.written += n as u64;
                seg.unsynced = true;
                return Ok(());
            }
            Ok(n) => std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n} of {len} bytes"),
            ),
            Err(e) => e.into(),
        };
        let err = io_err(&seg.path, err);
        tracing::warn!(error = %err, "store write failed; abandoning segment");
        if let Some(seg) = self.current.take() {
            if let Err(e) = seg.file.close().await {
                tracing::warn!(error = %e, segment = %seg.path.display(), "closing abandoned segment");
            }
        }
        self.seq = self.seq.saturating_add(1);
        Err(err)
    }
}

/// The size a batch over [`RECORD_BODY_LIMIT`] is cut into: smaller pieces
/// keep the encode buffers (one piece joined, one compressed) small.
pub const SPLIT_TARGET: usize = 64 << 20;

/// Cuts `payload` into pieces of about `target` encoded bytes at resource,
/// scope or item boundaries, in order, together holding all of its items.
/// A unit that cannot be cut (one item, or one metric) may stay larger than
/// `target` up to `limit`; beyond that it fails with `RecordError::TooLarge`.
pub fn record_pieces(
    signal: Signal,
    payload: &Payload,
    target: usize,
    limit: usize,
) -> Result<Vec<Payload>, StoreError> {
    if payload.len <= target {
        return Ok(vec![payload.clone()]);
    }
    // `wire::split` walks each chunk as whole request entries; a request kept
    // as the frames it arrived in, or cut by sampling, is regrouped first.
    let whole = crate::wire::rope::align(payload.clone());
    let mut out = Vec::new();
    cut(signal, whole, target, limit, &mut out)?;
    Ok(out)
}

fn cut(signal: Signal, p: Payload, target: usize, limit: usize, out: &mut Vec<Payload>) -> Result<(), StoreError> {
    if p.len <= target {
        out.push(p);
        return Ok(());
    }
    let (len, items) = (p.len, p.items);
    let unsplittable = |out: &mut Vec<Payload>, p: Payload| {
        if len <= limit {
            out.push(p);
            Ok(())
        } else {
            Err(StoreError::Record(RecordError::TooLarge(format!(
                "{len} bytes holding {items} item(s) cannot be cut below the {limit}-byte record limit"
            ))))
        }
    };
    if items <= 1 {
        return unsplittable(out, p);
    }
    // Items per piece in proportion to the target; pieces still too large
    // (items vary in size) are cut again.
    let per = (u128::from(items) * target as u128 / len.max(1) as u128) as u64;
    let per = per.clamp(1, items / 2);
    let parts = crate::wire::split(signal, p.clone(), per)
        .map_err(|e| StoreError::Record(RecordError::TooLarge(format!("cannot split the batch: {e}"))))?;
    if parts.len() < 2 {
        return unsplittable(out, p);
    }
    for part in parts {
        cut(signal, part, target, limit, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::list_segments;
    use crate::store::reader::{read_dir, ReadEvent};
    use bytes::Bytes;
    use glommio::{LocalExecutorBuilder, Placement};

    /// Runs `f` on a glommio executor with a small io_uring memory reservation.
    fn run<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(1 << 20)
            .ring_depth(32)
            .spawn(f)
            .expect("spawn executor")
            .join()
            .expect("join executor")
    }

    fn payload(i: u64) -> (Signal, Payload) {
        let signal = Signal::ALL[(i % 3) as usize];
        let mut p = Payload::new();
        // Two chunks so multi-chunk encoding is exercised; varied sizes and content.
        p.push(Bytes::from(format!("record {i} ").repeat(1 + (i % 17) as usize)), i);
        let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let noise: Vec<u8> = (0..(i * 37 % 300))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        p.push(Bytes::from(noise), 0);
        (signal, p)
    }

    fn records(dir: &Path) -> Vec<(Signal, u64, Bytes)> {
        read_dir(dir)
            .unwrap()
            .map(|ev| match ev {
                ReadEvent::Record { record, .. } => (record.signal, record.items, record.body),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn expected(range: std::ops::Range<u64>) -> Vec<(Signal, u64, Bytes)> {
        range
            .map(|i| {
                let (s, p) = payload(i);
                (s, p.items, p.to_bytes())
            })
            .collect()
    }

    #[test]
    fn writes_roll_over_flush_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let shard = shard_dir(&root, 3);
        run(move || async move {
            let mut w = StoreWriter::open(&root, 3, 2000, false).await.unwrap();
            for i in 0..40 {
                let (s, p) = payload(i);
                w.append(s, &p).await.unwrap();
            }
            w.flush().await.unwrap();
            // Everything appended is in the files after flush, before close.
            assert_eq!(records(&root), expected(0..40));
            assert!(w.bytes_written() > 2000);
            for i in 40..60 {
                let (s, p) = payload(i);
                w.append(s, &p).await.unwrap();
            }
            w.close().await.unwrap();
            assert_eq!(records(&root), expected(0..60));

            let before = list_segments(&shard_dir(&root, 3)).unwrap();
            assert!(before.len() > 3, "expected rollover, got {} segments", before.len());
            for (_, path) in &before[..before.len() - 1] {
                // Every closed segment reached the size limit (records are never split).
                assert!(std::fs::metadata(path).unwrap().len() >= 2000);
            }

            // A reopened writer starts a new segment after the highest one.
            let mut w = StoreWriter::open(&root, 3, 2000, true).await.unwrap();
            assert_eq!(list_segments(&shard_dir(&root, 3)).unwrap().len(), before.len());
            for i in 60..70 {
                let (s, p) = payload(i);
                w.append(s, &p).await.unwrap();
            }
            w.close().await.unwrap();
            let after = list_segments(&shard_dir(&root, 3)).unwrap();
            assert!(after.len() > before.len());
            assert_eq!(after[before.len()].0, before.last().unwrap().0 + 1);
            assert_eq!(records(&root), expected(0..70));
        });
        assert!(shard.is_dir());
    }

    #[test]
    fn torn_tail_of_a_crashed_run_stays_in_its_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        run(move || async move {
            let mut w = StoreWriter::open(&root, 0, 1 << 20, true).await.unwrap();
            for i in 0..5 {
                let (s, p) = payload(i);
                w.append(s, &p).await.unwrap();
            }
            w.close().await.unwrap();
            // Simulate a crash mid-write: chop the last record of the segment.
            let (_, seg) = list_segments(&shard_dir(&root, 0)).unwrap().pop().unwrap();
            let len = std::fs::metadata(&seg).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(len - 5)
                .unwrap();

            let mut w = StoreWriter::open(&root, 0, 1 << 20, false).await.unwrap();
            for i in 5..8 {
                let (s, p) = payload(i);
                w.append(s, &p).await.unwrap();
            }
            w.close().await.unwrap();

            let events: Vec<_> = read_dir(&root).unwrap().collect();
            assert_eq!(events.len(), 8);
            assert!(
                matches!(&events[4], ReadEvent::TruncatedTail { segment, bytes, .. } if *segment == seg && *bytes > 0)
            );
            let got: Vec<_> = events
                .into_iter()
                .filter_map(|ev| match ev {
                    ReadEvent::Record { record, .. } => Some((record.signal, record.items, record.body)),
                    _ => None,
                })
                .collect();
            let mut want = expected(0..4);
            want.extend(expected(5..8));
            assert_eq!(got, want);
        });
    }

    #[test]
    fn record_body_limit_always_fits() {
        use crate::store::segment::{HEADER_LEN, MAX_RECORD_LEN};
        assert!(lz4_flex::block::get_maximum_output_size(RECORD_BODY_LIMIT) + HEADER_LEN <= MAX_RECORD_LEN);
    }

    fn spans_request(resources: usize, scopes: usize, spans: usize) -> Vec<u8> {
        use crate::proto::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use crate::proto::ExportTraceServiceRequest;
        let mut n = 0u32;
        let req = ExportTraceServiceRequest {
            resource_spans: (0..resources)
                .map(|_| ResourceSpans {
                    scope_spans: (0..scopes)
                        .map(|_| ScopeSpans {
                            spans: (0..spans)
                                .map(|_| {
                                    n += 1;
                                    Span {
                                        name: format!("span-{n}-{}", "x".repeat((n % 97) as usize)),
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        };
        prost::Message::encode_to_vec(&req)
    }

    fn span_names(bodies: &[Bytes]) -> Vec<String> {
        bodies
            .iter()
            .flat_map(|b| {
                let r = <crate::proto::ExportTraceServiceRequest as prost::Message>::decode(&b[..]).unwrap();
                r.resource_spans
                    .into_iter()
                    .flat_map(|rs| rs.scope_spans)
                    .flat_map(|ss| ss.spans)
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn oversized_payloads_are_cut_in_order_without_losing_items() {
        let body = Bytes::from(spans_request(3, 2, 400));
        // Two chunks whose boundary is not an entry boundary.
        let mut p = Payload::new();
        p.push(body.slice(..body.len() / 3), 0);
        p.push(body.slice(body.len() / 3..), 2400);
        for limit in [body.len(), body.len() / 2, body.len() / 7, body.len() / 100, 200] {
            let pieces = record_pieces(Signal::Traces, &p, limit, limit).unwrap();
            assert!(pieces.iter().all(|x| x.len <= limit), "limit {limit}");
            assert_eq!(pieces.iter().map(|x| x.items).sum::<u64>(), 2400);
            let bodies: Vec<Bytes> = pieces.iter().map(|x| x.to_bytes()).collect();
            assert_eq!(
                span_names(&bodies),
                span_names(std::slice::from_ref(&body)),
                "limit {limit}"
            );
            if limit < body.len() {
                assert!(
                    pieces.len() >= body.len() / limit,
                    "limit {limit}: {} pieces",
                    pieces.len()
                );
            }
        }
        // A single span larger than the limit cannot be stored: a clear error.
        let one = Payload::from_body(Bytes::from(spans_request(1, 1, 1)), 1);
        let e = record_pieces(Signal::Traces, &one, 4, 4).unwrap_err();
        assert!(e.to_string().contains("cannot be cut"), "{e}");
        // ... unless it fits the hard limit: then it is its own piece.
        let big = Payload::from_body(Bytes::from(spans_request(2, 1, 1)), 2);
        let pieces = record_pieces(Signal::Traces, &big, 4, big.len).unwrap();
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|x| x.items == 1));
        // Entry-aligned chunks are cut without joining them first.
        let mut aligned = Payload::new();
        for seed in 0..4 {
            aligned.push(Bytes::from(spans_request(1 + seed, 1, 10)), 10 * (1 + seed as u64));
        }
        let pieces = record_pieces(Signal::Traces, &aligned, aligned.len / 3, aligned.len).unwrap();
        assert!(pieces.len() >= 3);
        assert_eq!(pieces.iter().map(|x| x.items).sum::<u64>(), aligned.items);
    }

    #[test]
    fn open_on_a_file_path_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let err = run(move || async move {
            StoreWriter::open(&file, 0, 100, false)
                .await
                .err()
                .map(|e| e.to_string())
        });
        assert!(err.is_some());
    }
}
