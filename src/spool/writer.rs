//! The spool's append side: records are encoded into a shared pending buffer;
//! the first appender to get the commit lock writes everything pending with one
//! positional write (glommio io_uring buffered file) and one fdatasync (when
//! `fsync`), then every appender of that group returns. A new segment starts
//! once the current one reaches `SEGMENT_SIZE`; a failed write abandons its
//! segment so later records never follow a partial one.

use std::path::PathBuf;

use glommio::io::{BufferedFile, OpenOptions};

use super::{io_err, sync_directory, MemRecord, Pos, SegInfo, Spool, SpoolError, MEMORY_BUDGET, SEGMENT_SIZE};
use crate::{payload::Payload, signal::Signal, store::layout::segment_name};

/// The segment the writer appends to.
pub(crate) struct OpenSegment {
    file: BufferedFile,
    path: PathBuf,
    seq: u64,
    written: u64,
}

impl Spool {
    /// Appends one request's payload and returns once it is in the spool file
    /// (and synced, with `fsync`). `Full` when the size budget is reached.
    pub async fn append(&self, signal: Signal, payload: &Payload) -> Result<(), SpoolError> {
        let epoch = {
            let mut st = self.state.borrow_mut();
            if st.closed {
                return Err(SpoolError::WriteFailed("spool is closed".into()));
            }
            if st.recovering {
                return Err(SpoolError::Recovering(self.exporter.clone()));
            }
            let before = st.pending.len();
            let n = crate::store::encode_record(signal, payload, &mut st.pending)?;
            let max = self.settings.max_bytes;
            if max != 0 && st.disk_bytes + st.pending.len() as u64 > max {
                st.pending.truncate(before);
                return Err(SpoolError::Full(self.exporter.clone()));
            }
            st.pending_records.push((signal, payload.clone(), n));
            st.open_epoch
        };
        self.publish();
        let permit = self
            .commit_lock
            .acquire_permit(1)
            .await
            .map_err(|e| SpoolError::WriteFailed(e.to_string()))?;
        if self.state.borrow().committed_epoch < epoch {
            self.commit().await;
        }
        drop(permit);
        let st = self.state.borrow();
        match st.failed_epochs.iter().find(|(e, _)| *e == epoch) {
            Some((_, msg)) => Err(SpoolError::WriteFailed(msg.clone())),
            None => Ok(()),
        }
    }

    /// Writes and syncs everything pending as one group. Caller holds the commit lock.
    async fn commit(&self) {
        let (buf, recs, epoch) = {
            let mut st = self.state.borrow_mut();
            let epoch = st.open_epoch;
            st.open_epoch += 1;
            (
                std::mem::take(&mut st.pending),
                std::mem::take(&mut st.pending_records),
                epoch,
            )
        };
        let result = if recs.is_empty() {
            Ok(Vec::new())
        } else {
            self.write_group(buf, &recs).await
        };
        {
            let mut st = self.state.borrow_mut();
            st.committed_epoch = epoch;
            match result {
                Ok(positions) => {
                    for ((signal, payload, _), (start, end)) in recs.into_iter().zip(positions) {
                        st.records += 1;
                        if let Some(seg) = st.segments.get_mut(&start.seq) {
                            seg.len = seg.len.max(end.offset);
                            seg.records += 1;
                        }
                        st.disk_bytes += end.offset - start.offset;
                        if st.mem_bytes + payload.len <= MEMORY_BUDGET {
                            st.mem_bytes += payload.len;
                            st.mem.push_back(MemRecord {
                                start,
                                end,
                                signal,
                                payload,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(exporter = %self.exporter, dir = %self.dir.display(), error = %e, "spool write failed; requests refused");
                    st.failed_epochs.push_back((epoch, e.to_string()));
                    if st.failed_epochs.len() > 64 {
                        st.failed_epochs.pop_front();
                    }
                }
            }
        }
        self.publish();
        self.wake_reader();
    }

    /// Writes the encoded records (lengths in `recs`) to the current segment,
    /// rolling over at `SEGMENT_SIZE`; returns each record's (start, end).
    async fn write_group(
        &self,
        mut buf: Vec<u8>,
        recs: &[(Signal, Payload, usize)],
    ) -> Result<Vec<(Pos, Pos)>, SpoolError> {
        let mut positions = Vec::with_capacity(recs.len());
        let mut seg = self.file.borrow_mut().take();
        let mut created = false;
        let mut from = 0usize;
        let mut i = 0;
        let result: Result<(), SpoolError> = async {
            while i < recs.len() {
                if seg.is_none() {
                    seg = Some(self.create_segment().await?);
                    created = true;
                }
                let s = seg.as_mut().map(|s| (s.seq, s.written)).unwrap_or_default();
                // The run of records that goes into this segment.
                let (seq, mut at) = s;
                let run_start = from;
                while i < recs.len() {
                    let n = recs[i].2 as u64;
                    if at > 0 && at + n > SEGMENT_SIZE {
                        break;
                    }
                    positions.push((Pos { seq, offset: at }, Pos { seq, offset: at + n }));
                    at += n;
                    from += n as usize;
                    i += 1;
                }
                if from > run_start {
                    let data = if run_start == 0 && from == buf.len() {
                        std::mem::take(&mut buf)
                    } else {
                        buf[run_start..from].to_vec()
                    };
                    let Some(open) = seg.as_mut() else { break };
                    write_all(open, data).await?;
                }
                if i < recs.len() {
                    // Segment full: seal it and start the next.
                    if let Some(open) = seg.take() {
                        self.seal(open).await?;
                    }
                }
            }
            if self.settings.fsync {
                if let Some(open) = seg.as_ref() {
                    open.file.fdatasync().await.map_err(|e| io_err(&open.path, e))?;
                }
                if created {
                    sync_directory(&self.dir).await?;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                *self.file.borrow_mut() = seg;
                Ok(positions)
            }
            Err(e) => {
                // Abandon the segment: what follows must not come after a torn write.
                if let Some(open) = seg.take() {
                    let seq = open.seq;
                    let _ = open.file.close().await;
                    let mut st = self.state.borrow_mut();
                    if let Some(info) = st.segments.get_mut(&seq) {
                        info.sealed = true;
                    }
                    st.write_seq = st.write_seq.max(seq.saturating_add(1));
                }
                Err(e)
            }
        }
    }

    async fn create_segment(&self) -> Result<OpenSegment, SpoolError> {
        let seq = self.state.borrow().write_seq;
        let path = self.dir.join(segment_name(seq));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .buffered_open(&path)
            .await
            .map_err(|e| io_err(&path, e))?;
        self.state.borrow_mut().segments.insert(
            seq,
            SegInfo {
                len: 0,
                sealed: false,
                records: 0,
            },
        );
        tracing::debug!(segment = %path.display(), "spool segment created");
        Ok(OpenSegment {
            file,
            path,
            seq,
            written: 0,
        })
    }

    async fn seal(&self, open: OpenSegment) -> Result<(), SpoolError> {
        if self.settings.fsync {
            open.file.fdatasync().await.map_err(|e| io_err(&open.path, e))?;
        }
        open.file.close().await.map_err(|e| io_err(&open.path, e))?;
        let mut st = self.state.borrow_mut();
        if let Some(info) = st.segments.get_mut(&open.seq) {
            info.sealed = true;
        }
        st.write_seq = open.seq.saturating_add(1);
        Ok(())
    }

    /// Flushes and closes the open segment (shutdown).
    pub async fn close_writer(&self) {
        if let Ok(_permit) = self.commit_lock.acquire_permit(1).await {
            let has_pending = !self.state.borrow().pending_records.is_empty();
            if has_pending {
                self.commit().await;
            }
            let seg = self.file.borrow_mut().take();
            if let Some(open) = seg {
                let path = open.path.clone();
                if let Err(e) = self.seal(open).await {
                    tracing::warn!(segment = %path.display(), error = %e, "closing spool segment");
                }
            }
        }
    }
}

async fn write_all(seg: &mut OpenSegment, data: Vec<u8>) -> Result<(), SpoolError> {
    let len = data.len();
    match seg.file.write_at(data, seg.written).await {
        Ok(n) if n == len => {
            seg.written += n as u64;
            Ok(())
        }
        Ok(n) => Err(io_err(
            &seg.path,
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n} of {len} bytes"),
            ),
        )),
        Err(e) => Err(io_err(&seg.path, e)),
    }
}
