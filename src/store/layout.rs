//! Where the store keeps its files: `DIR/shard-N/<seq:020>.seg`, listing
//! shards and segments in order, and reading a segment: only regular files
//! are read (a symlink, FIFO, device or directory named like a segment is
//! refused, never followed or waited on).

use std::path::{Path, PathBuf};

use super::StoreError;

/// File name suffix of a segment.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Largest segment file read: the largest configurable segment size (4 GiB)
/// plus one record that started before it was reached.
pub const MAX_SEGMENT_FILE: u64 = (4096 << 20) + super::segment::MAX_RECORD_LEN as u64;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    #[error("{size} bytes is larger than any file sluice writes ({max})")]
    TooLarge { size: u64, max: u64 },
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Reads the whole of `path` if it is a regular file of at most `max` bytes.
/// Symlinks are not followed and opening never blocks (O_NOFOLLOW,
/// O_NONBLOCK); the type is checked on the opened file, so a file swapped in
/// between the check and the open is caught too.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadFileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let t = std::fs::symlink_metadata(path)?.file_type();
    if !t.is_file() {
        return Err(ReadFileError::NotRegular(kind_of(t)));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => ReadFileError::NotRegular("a symbolic link"),
            _ => ReadFileError::Io(e),
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadFileError::NotRegular(kind_of(meta.file_type())));
    }
    if meta.len() > max {
        return Err(ReadFileError::TooLarge { size: meta.len(), max });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// `DIR/shard-N`.
pub fn shard_dir(dir: &Path, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard}"))
}

/// `<seq:020>.seg`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_SUFFIX}")
}

/// The sequence number of a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The shard number of a `shard-N` directory name, if it is one.
pub fn parse_shard_name(name: &str) -> Option<usize> {
    let n = name.strip_prefix("shard-")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Entries of `dir` whose names `parse` accepts (and, with `dirs_only`, that
/// are directories), sorted by the parsed key.
fn list<K: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<K>,
    dirs_only: bool,
) -> Result<Vec<(K, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Some(key) = entry.file_name().to_str().and_then(&parse) else {
            continue;
        };
        let path = entry.path();
        let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
        if is_dir || !dirs_only {
            out.push((key, path));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// `shard-N` directories of a store directory, in shard order.
pub fn list_shards(dir: &Path) -> Result<Vec<(usize, PathBuf)>, StoreError> {
    list(dir, parse_shard_name, true)
}

/// Entries of a shard directory named like segments, in sequence order. They
/// are listed whatever their type, so that writers start after every taken
/// name; read them with [`read_regular`], which refuses anything but a
/// regular file.
pub fn list_segments(shard_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    list(shard_dir, parse_segment_name, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_shard_name("shard-12"), Some(12));
        assert_eq!(parse_shard_name("shard-"), None);
        assert_eq!(parse_shard_name("shard-+1"), None);
    }

    #[test]
    fn listing_is_numeric_and_filtered() {
        let tmp = tempfile::tempdir().unwrap();
        for s in [10, 2, 1] {
            std::fs::create_dir(shard_dir(tmp.path(), s)).unwrap();
        }
        std::fs::write(tmp.path().join("shard-3"), b"not a dir").unwrap();
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        let shards: Vec<usize> = list_shards(tmp.path()).unwrap().into_iter().map(|s| s.0).collect();
        assert_eq!(shards, vec![1, 2, 10]);

        let sd = shard_dir(tmp.path(), 1);
        for seq in [7, 3, 100] {
            std::fs::write(sd.join(segment_name(seq)), b"").unwrap();
        }
        std::fs::write(sd.join("junk.tmp"), b"").unwrap();
        let segs: Vec<u64> = list_segments(&sd).unwrap().into_iter().map(|s| s.0).collect();
        assert_eq!(segs, vec![3, 7, 100]);
    }
}
