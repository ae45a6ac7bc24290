//! The spool's persisted read cursor: the position (segment sequence number,
//! byte offset) of the first record not yet exported. Stored as
//! `[u64 LE seq][u64 LE offset][u32 LE crc32 of the 16 bytes]` in `cursor`,
//! replaced atomically (write `cursor.tmp`, fdatasync when `fsync`, rename,
//! sync the directory).

use std::path::Path;

use glommio::io::OpenOptions;

use super::{io_err, sync_directory, SpoolError};
use crate::store::layout::{read_regular, ReadFileError};

pub const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const CURSOR_LEN: usize = 20;

/// A position in the spool: segment sequence number and byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub seq: u64,
    pub offset: u64,
}

pub fn encode(pos: Pos) -> [u8; CURSOR_LEN] {
    let mut b = [0u8; CURSOR_LEN];
    b[0..8].copy_from_slice(&pos.seq.to_le_bytes());
    b[8..16].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&b[0..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a cursor file; `None` if it is not a valid one.
pub fn decode(b: &[u8]) -> Option<Pos> {
    if b.len() != CURSOR_LEN {
        return None;
    }
    let crc = u32::from_le_bytes(b[16..20].try_into().ok()?);
    if crc32fast::hash(&b[0..16]) != crc {
        return None;
    }
    Some(Pos {
        seq: u64::from_le_bytes(b[0..8].try_into().ok()?),
        offset: u64::from_le_bytes(b[8..16].try_into().ok()?),
    })
}

/// Reads the cursor of a spool directory. A missing cursor is the start; an
/// unreadable one is logged and treated as the start (at-least-once: the
/// spool is replayed from its oldest segment).
pub fn load(dir: &Path) -> Pos {
    let path = dir.join(CURSOR_FILE);
    // A regular file of the cursor's size at most: never follows a symlink or
    // waits on a FIFO.
    match read_regular(&path, CURSOR_LEN as u64) {
        Ok(b) => decode(&b).unwrap_or_else(|| {
            tracing::warn!(cursor = %path.display(), "spool cursor is damaged; replaying from the oldest segment");
            Pos::default()
        }),
        Err(ReadFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Pos::default(),
        Err(e) => {
            tracing::warn!(cursor = %path.display(), error = %e, "cannot read the spool cursor; replaying from the oldest segment");
            Pos::default()
        }
    }
}

/// Persists `pos` atomically.
pub async fn store(dir: &Path, pos: Pos, fsync: bool) -> Result<(), SpoolError> {
    let tmp = dir.join(CURSOR_TMP);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .buffered_open(&tmp)
        .await
        .map_err(|e| io_err(&tmp, e))?;
    let n = file
        .write_at(encode(pos).to_vec(), 0)
        .await
        .map_err(|e| io_err(&tmp, e))?;
    if n != CURSOR_LEN {
        let _ = file.close().await;
        return Err(io_err(&tmp, std::io::Error::other("short write of the cursor")));
    }
    if fsync {
        file.fdatasync().await.map_err(|e| io_err(&tmp, e))?;
    }
    file.close().await.map_err(|e| io_err(&tmp, e))?;
    let path = dir.join(CURSOR_FILE);
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
    if fsync {
        sync_directory(dir).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let p = Pos { seq: 7, offset: 12345 };
        let b = encode(p);
        assert_eq!(decode(&b), Some(p));
        let mut bad = b;
        bad[3] ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&b[..10]), None);
    }
}
