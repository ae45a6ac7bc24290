//! Where the store keeps its files: `DIR/shard-N/<seq:020>.seg`, and listing
//! shards and segments in order.

use std::path::{Path, PathBuf};

use super::StoreError;

/// File name suffix of a segment.
pub const SEGMENT_SUFFIX: &str = ".seg";

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

/// Entries of `dir` whose names `parse` accepts, sorted by the parsed key.
fn list<K: Ord>(
    dir: &Path,
    parse: impl Fn(&str) -> Option<K>,
    want_dir: bool,
) -> Result<Vec<(K, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let Some(key) = entry.file_name().to_str().and_then(&parse) else {
            continue;
        };
        let path = entry.path();
        let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
        if is_dir == want_dir {
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

/// Segment files of a shard directory, in sequence order.
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
