//! Immutable columnar segment files: one tenant's records, sorted by time, cut into
//! blocks of rows; each column of each block encoded by the smallest codec
//! ([`crate::codec`]) and checksummed; a footer with the block list (row counts, time
//! ranges) and the column directory. Readers map the file and decode only the column
//! chunks a query asks for, verifying each chunk's CRC first.
//!
//! `_msg` is stored as template ids and variable ordinals ([`message`]); the index
//! section maps every `_msg` token and `field=value` pair to the blocks holding it
//! and is at the same time the dictionary those ordinals point into. Byte layout:
//! `docs/format/segment.md`.

pub(crate) mod index;
mod layout;
mod message;
pub mod overflow;
mod reader;
mod writer;

use std::path::PathBuf;

pub use index::{field_term, msg_term};
pub use layout::{
    BlockMeta, ColumnKind, ColumnMeta, Footer, IndexRef, FORMAT_VERSION, MAGIC,
    OLDEST_SUPPORTED_VERSION,
};
pub use reader::{
    is_template_word, ColumnBlock, IndexSizes, MsgMatchers, MsgPredicate, SegmentReader, StrColumn,
    Values,
};
pub use writer::{
    encode_segment, write_segment, write_segment_refs, SegmentOptions, SEGMENT_FIELDS_MAX,
};

/// Errors reading or writing a segment.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// An I/O operation failed.
    #[error("segment {op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes are damaged or not a segment.
    #[error("corrupt segment {} at byte {offset}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the problem in the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// An offloaded segment's bytes could not be fetched.
    #[error("reading offloaded segment {}: {source}", path.display())]
    Remote {
        /// `<store url>/<object>`.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<crate::tier::TierError>,
    },
    /// The caller asked for something the segment does not have.
    #[error("{0}")]
    NotFound(String),
}

impl From<crate::fs::FsError> for SegmentError {
    fn from(e: crate::fs::FsError) -> Self {
        SegmentError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}
