//! The local store: the `file` exporter's embedded backend. Each shard appends
//! compressed, checksummed records (`segment`) to its own sequence of segment
//! files (`layout`) through glommio (`writer`); `reader` walks a store directory
//! back, and `read` renders it for `sluice read`.

pub mod layout;
pub mod read;
pub mod reader;
pub mod segment;
pub mod writer;

use std::path::PathBuf;

pub use reader::{read_dir, ReadEvent};
pub use segment::{decode_record, encode_record, Record, RecordError};
pub use writer::StoreWriter;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("store directory {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("cannot encode record: {0}")]
    Record(#[from] RecordError),
    #[error("writing output: {0}")]
    Output(std::io::Error),
}
