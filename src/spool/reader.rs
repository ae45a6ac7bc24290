//! The spool's read side: hands the exporter batches of records in append
//! order, from memory when they are recent, from the segment files otherwise
//! (after a restart, or when they did not fit the memory budget), and advances
//! the cursor over batches once their export is settled, deleting segments
//! that are fully exported.

use std::{
    future::poll_fn,
    task::Poll,
    time::{Duration, Instant},
};

use glommio::io::BufferedFile;

use super::{cursor, InFlight, Pos, Spool, SpoolBatch, SpoolError};
use crate::{
    payload::Payload,
    shutdown::Lifecycle,
    signal::Signal,
    store::{
        layout::segment_name,
        segment::{SegmentEvent, SegmentScanner, PREFIX_LEN},
    },
};

/// What the reader finds at its position.
enum Take {
    Record(Pos, Signal, Payload),
    /// Records in this segment range must be read from the file.
    Disk {
        seq: u64,
        from: u64,
        to: u64,
    },
    Empty,
}

impl Spool {
    /// Moves the read position past the ends of sealed or deleted segments.
    fn normalize(&self) {
        let mut st = self.state.borrow_mut();
        loop {
            let read = st.read;
            let past_end = match st.segments.get(&read.seq) {
                Some(seg) => seg.sealed && read.offset >= seg.len,
                None => true,
            };
            if !past_end {
                return;
            }
            match st.segments.range(read.seq.saturating_add(1)..).next().map(|(s, _)| *s) {
                Some(next) => st.read = Pos { seq: next, offset: 0 },
                None => return,
            }
        }
    }

    fn take(&self) -> Take {
        if self.state.borrow().recovering {
            return Take::Empty;
        }
        self.normalize();
        let mut st = self.state.borrow_mut();
        if let Some((end, signal, payload)) = st.stash.take() {
            return Take::Record(end, signal, payload);
        }
        let read = st.read;
        while let Some((start, end, rec)) = st.disk.pop_front() {
            if start >= read {
                st.read = end;
                let items = rec.items;
                return Take::Record(end, rec.signal, Payload::from_body(rec.body, items));
            }
        }
        while st.mem.front().is_some_and(|m| m.start < read) {
            if let Some(m) = st.mem.pop_front() {
                st.mem_bytes -= m.payload.len;
            }
        }
        if st.mem.front().is_some_and(|m| m.start == read) {
            if let Some(m) = st.mem.pop_front() {
                st.mem_bytes -= m.payload.len;
                st.read = m.end;
                return Take::Record(m.end, m.signal, m.payload);
            }
        }
        match st.segments.get(&read.seq) {
            Some(seg) if seg.len > read.offset => Take::Disk {
                seq: read.seq,
                from: read.offset,
                to: seg.len,
            },
            _ => Take::Empty,
        }
    }

    /// Reads `[from, to)` of segment `seq` and queues its records; corrupt
    /// records are skipped, counted and logged.
    async fn load(&self, seq: u64, from: u64, to: u64) -> Result<(), SpoolError> {
        let path = self.dir.join(segment_name(seq));
        let file = BufferedFile::open(&path).await.map_err(|e| super::io_err(&path, e))?;
        let want = (to - from) as usize;
        let mut buf = Vec::with_capacity(want);
        while buf.len() < want {
            let chunk = file
                .read_at(from + buf.len() as u64, want - buf.len())
                .await
                .map_err(|e| super::io_err(&path, e))?;
            if chunk.is_empty() {
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        let _ = file.close().await;
        let report = self.state.borrow().recovered_upto.is_none_or(|r| seq > r);
        let mut found = Vec::new();
        for ev in SegmentScanner::new(&buf) {
            match ev {
                SegmentEvent::Record { offset, record } => {
                    let o = offset as usize;
                    let len =
                        PREFIX_LEN as u64 + u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]) as u64;
                    let start = Pos {
                        seq,
                        offset: from + offset,
                    };
                    found.push((
                        start,
                        Pos {
                            seq,
                            offset: start.offset + len,
                        },
                        record,
                    ));
                }
                SegmentEvent::Corrupt { offset, reason } => {
                    if report {
                        self.exporter_stats().spool_corrupt.add(1);
                        tracing::error!(exporter = %self.exporter, segment = %path.display(), offset = from + offset, %reason, "corrupt spool record skipped");
                    }
                }
                SegmentEvent::TruncatedTail { offset, bytes } => {
                    if report {
                        tracing::warn!(exporter = %self.exporter, segment = %path.display(), offset = from + offset, bytes, "torn spool record skipped");
                    }
                }
            }
        }
        let mut st = self.state.borrow_mut();
        if found.is_empty() {
            // Nothing valid up to `to`: skip it, and let the cursor pass it
            // (in order with the batches before it) so its segment can go.
            let end = Pos { seq, offset: to };
            st.read = st.read.max(end);
            let id = st.next_batch_id;
            st.next_batch_id += 1;
            st.inflight.push_back(InFlight {
                id,
                end,
                records: 0,
                done: true,
            });
            drop(st);
            self.settle();
            return Ok(());
        }
        st.disk.extend(found);
        Ok(())
    }

    /// Waits until a commit or `close` wakes the reader, or `timeout` passes.
    async fn wait_for_records(&self, timeout: Option<Duration>) {
        let mut first = true;
        let woken = poll_fn(|cx| {
            if first {
                first = false;
                *self.reader_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        match timeout {
            Some(t) => futures_lite::future::or(woken, crate::clock::sleep(t)).await,
            None => futures_lite::future::or(woken, glommio::timer::sleep(Duration::from_millis(200))).await,
        }
    }

    /// The next batch to export: consecutive records of one signal, up to
    /// `batch_items` items, waiting at most `batch_timeout` for more. `None`
    /// once the spool is closed (or draining) and nothing is readable.
    pub async fn next_batch(&self, lifecycle: &Lifecycle) -> Option<SpoolBatch> {
        let max_items = self.settings.batch_items.max(1);
        let mut batch: Option<(Signal, Payload, u64, Pos)> = None;
        let mut first_at: Option<Instant> = None;
        loop {
            if lifecycle.past_deadline() && batch.is_none() {
                // Whatever is left stays in the spool for the next start.
                return None;
            }
            match self.take() {
                Take::Record(end, signal, payload) => {
                    match &mut batch {
                        None => {
                            first_at = Some(Instant::now());
                            batch = Some((signal, payload, 1, end));
                        }
                        Some((s, b, n, e)) if *s == signal => {
                            b.items += payload.items;
                            b.len += payload.len;
                            b.chunks.extend(payload.chunks);
                            *n += 1;
                            *e = end;
                        }
                        Some(_) => {
                            self.state.borrow_mut().stash = Some((end, signal, payload));
                            return Some(self.hand_out(batch));
                        }
                    }
                    if batch.as_ref().is_some_and(|b| b.1.items >= max_items) {
                        return Some(self.hand_out(batch));
                    }
                }
                Take::Disk { seq, from, to } => {
                    if let Err(e) = self.load(seq, from, to).await {
                        tracing::error!(exporter = %self.exporter, error = %e, "cannot read the spool; retrying");
                        if lifecycle.past_deadline() {
                            return batch.map(|b| self.hand_out(Some(b)));
                        }
                        glommio::timer::sleep(Duration::from_millis(500)).await;
                    }
                }
                Take::Empty => {
                    let closed = self.state.borrow().closed || lifecycle.is_draining();
                    if lifecycle.past_deadline() {
                        return batch.map(|b| self.hand_out(Some(b)));
                    }
                    match (&batch, first_at) {
                        (None, _) if closed => return None,
                        (None, _) => self.wait_for_records(None).await,
                        (Some(_), Some(t)) if !closed => {
                            let left = crate::clock::after(t, self.settings.batch_timeout)
                                .saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                return Some(self.hand_out(batch));
                            }
                            self.wait_for_records(Some(left)).await;
                        }
                        _ => return Some(self.hand_out(batch)),
                    }
                }
            }
        }
    }

    fn hand_out(&self, batch: Option<(Signal, Payload, u64, Pos)>) -> SpoolBatch {
        let (signal, payload, records, end) = batch.unwrap_or((Signal::Traces, Payload::default(), 0, Pos::default()));
        let mut st = self.state.borrow_mut();
        let id = st.next_batch_id;
        st.next_batch_id += 1;
        st.inflight.push_back(InFlight {
            id,
            end,
            records,
            done: false,
        });
        SpoolBatch {
            id,
            signal,
            payload,
            records,
        }
    }

    /// The export of batch `id` is settled (sent, or failed for good): the
    /// cursor moves over every settled batch at the front, and segments that
    /// are entirely behind it are deleted.
    pub fn complete(&self, id: u64) {
        if let Some(f) = self.state.borrow_mut().inflight.iter_mut().find(|f| f.id == id) {
            f.done = true;
        }
        self.settle();
    }

    /// Moves the cursor over the settled batches at the front and deletes the
    /// segments entirely behind it.
    fn settle(&self) {
        let mut st = self.state.borrow_mut();
        while st.inflight.front().is_some_and(|f| f.done) {
            let Some(f) = st.inflight.pop_front() else { break };
            if f.end > st.acked {
                st.acked = f.end;
                st.cursor_dirty = true;
            }
            st.records = st.records.saturating_sub(f.records);
        }
        let acked = st.acked;
        let doomed: Vec<u64> = st
            .segments
            .iter()
            .filter(|(s, seg)| seg.sealed && (**s < acked.seq || (**s == acked.seq && acked.offset >= seg.len)))
            .map(|(s, _)| *s)
            .collect();
        for seq in doomed {
            if let Some(seg) = st.segments.remove(&seq) {
                st.disk_bytes = st.disk_bytes.saturating_sub(seg.len);
                let path = self.dir.join(segment_name(seq));
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::debug!(segment = %path.display(), "exported spool segment deleted"),
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "cannot delete exported spool segment")
                    }
                }
            }
        }
        drop(st);
        self.publish();
    }

    /// Writes the cursor if it moved since the last call.
    pub async fn persist_cursor(&self) -> Result<(), SpoolError> {
        let pos = {
            let mut st = self.state.borrow_mut();
            if !st.cursor_dirty {
                return Ok(());
            }
            st.cursor_dirty = false;
            st.acked
        };
        let r = cursor::store(&self.dir, pos, self.settings.fsync).await;
        if r.is_err() {
            self.state.borrow_mut().cursor_dirty = true;
        }
        r
    }
}
