//! Reading a store directory back: every shard in shard order, every segment in
//! sequence order, each record, corrupt stretch and torn tail as a `ReadEvent`.
//! Plain `std::fs`: segments (regular files only) are read whole and parsed
//! by `segment::SegmentScanner` one record at a time.

use std::path::{Path, PathBuf};

use super::layout::{list_segments, list_shards, read_regular, MAX_SEGMENT_FILE};
use super::segment::{Record, SegmentEvent, SegmentScanner};
use super::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEvent {
    Record {
        segment: PathBuf,
        offset: u64,
        record: Record,
    },
    /// An undecodable stretch at `offset` (or an unreadable segment, at offset 0);
    /// reading resumed at the next valid record.
    Corrupt {
        segment: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An incomplete record at the end of a segment, `bytes` long.
    TruncatedTail { segment: PathBuf, offset: u64, bytes: u64 },
}

impl ReadEvent {
    fn from_segment(segment: &Path, ev: SegmentEvent) -> ReadEvent {
        let segment = segment.to_path_buf();
        match ev {
            SegmentEvent::Record { offset, record } => ReadEvent::Record {
                segment,
                offset,
                record,
            },
            SegmentEvent::Corrupt { offset, reason } => ReadEvent::Corrupt {
                segment,
                offset,
                reason,
            },
            SegmentEvent::TruncatedTail { offset, bytes } => ReadEvent::TruncatedTail { segment, offset, bytes },
        }
    }
}

/// Lazily reads the segments of a store directory: one segment image in
/// memory at a time, and one decoded record of it at a time.
pub struct DirReader {
    segments: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, SegmentScanner<Vec<u8>>)>,
}

impl Iterator for DirReader {
    type Item = ReadEvent;

    fn next(&mut self) -> Option<ReadEvent> {
        loop {
            if let Some((segment, scanner)) = &mut self.current {
                if let Some(ev) = scanner.next() {
                    return Some(ReadEvent::from_segment(segment, ev));
                }
                self.current = None;
            }
            let segment = self.segments.next()?;
            match read_regular(&segment, MAX_SEGMENT_FILE) {
                Ok(image) => self.current = Some((segment, SegmentScanner::new(image))),
                Err(e) => {
                    return Some(ReadEvent::Corrupt {
                        segment,
                        offset: 0,
                        reason: format!("cannot read segment: {e}"),
                    });
                }
            }
        }
    }
}

/// All events of the store at `dir`. The directory listing happens now; segment
/// contents are read as the iterator advances.
pub fn read_dir(dir: &Path) -> Result<DirReader, StoreError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound(dir.to_path_buf())),
        Err(e) => {
            return Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
        Ok(m) if !m.is_dir() => return Err(StoreError::NotADirectory(dir.to_path_buf())),
        Ok(_) => {}
    }
    let mut segments = Vec::new();
    for (_, shard) in list_shards(dir)? {
        segments.extend(list_segments(&shard)?.into_iter().map(|(_, p)| p));
    }
    Ok(DirReader {
        segments: segments.into_iter(),
        current: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Payload;
    use crate::signal::Signal;
    use crate::store::layout::{segment_name, shard_dir};
    use crate::store::segment::encode_record;
    use bytes::Bytes;

    fn rec(signal: Signal, tag: u8, out: &mut Vec<u8>) -> u64 {
        let at = out.len() as u64;
        encode_record(signal, &Payload::from_body(Bytes::from(vec![tag; 64]), tag as u64), out).unwrap();
        at
    }

    #[test]
    fn order_corruption_and_tails_across_files() {
        let tmp = tempfile::tempdir().unwrap();
        let s0 = shard_dir(tmp.path(), 0);
        let s2 = shard_dir(tmp.path(), 2);
        std::fs::create_dir_all(&s0).unwrap();
        std::fs::create_dir_all(&s2).unwrap();

        let mut a = Vec::new();
        rec(Signal::Traces, 1, &mut a);
        let bad = rec(Signal::Metrics, 2, &mut a);
        rec(Signal::Logs, 3, &mut a);
        a[bad as usize + 20] ^= 1;
        std::fs::write(s0.join(segment_name(0)), &a).unwrap();

        let mut b = Vec::new();
        rec(Signal::Traces, 4, &mut b);
        let torn = rec(Signal::Traces, 5, &mut b);
        b.truncate(b.len() - 3);
        std::fs::write(s0.join(segment_name(1)), &b).unwrap();

        let mut c = Vec::new();
        rec(Signal::Logs, 6, &mut c);
        std::fs::write(s2.join(segment_name(7)), &c).unwrap();

        let ev: Vec<_> = read_dir(tmp.path()).unwrap().collect();
        let summary: Vec<String> = ev
            .iter()
            .map(|e| match e {
                ReadEvent::Record { record, .. } => format!("rec {}", record.items),
                ReadEvent::Corrupt { offset, .. } => format!("corrupt {offset}"),
                ReadEvent::TruncatedTail { offset, .. } => format!("torn {offset}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "rec 1".to_string(),
                format!("corrupt {bad}"),
                "rec 3".into(),
                "rec 4".into(),
                format!("torn {torn}"),
                "rec 6".into()
            ]
        );
        assert!(
            matches!(&ev[5], ReadEvent::Record { segment, .. } if segment.ends_with("shard-2/00000000000000000007.seg"))
        );
    }

    #[test]
    fn missing_dir_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = read_dir(&missing).err().unwrap();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(read_dir(&file), Err(StoreError::NotADirectory(_))));
        assert_eq!(read_dir(tmp.path()).unwrap().count(), 0);
    }
}
