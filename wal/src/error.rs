//! Errors of the write-ahead log. Corruption variants carry the file and offset so an
//! operator can find the damage; I/O variants say which operation failed.

use std::io;
use std::path::PathBuf;

use crate::format::{FrameFault, HeaderError, Lsn};

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O operation failed.
    #[error("WAL {op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file's header is damaged or not a WAL header.
    #[error("corrupt WAL file header in {}: {fault}", path.display())]
    CorruptHeader {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong.
        fault: HeaderError,
    },
    /// A record before the end of the log is damaged. Never skipped silently.
    #[error("corrupt WAL record in {} at offset {offset}: {fault}", path.display())]
    CorruptRecord {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged frame.
        offset: u64,
        /// What is wrong.
        fault: FrameFault,
    },
    /// The files do not form one contiguous run of LSNs.
    #[error("WAL files are not contiguous: {} should start at LSN {expected} but starts at {got}", path.display())]
    Gap {
        /// The file that does not follow its predecessor.
        path: PathBuf,
        /// LSN it should start at.
        expected: Lsn,
        /// LSN it starts at.
        got: Lsn,
    },
    /// A file's name and header disagree about its first LSN.
    #[error("WAL file {} is named for LSN {named} but its header says {header}", path.display())]
    NameMismatch {
        /// The file.
        path: PathBuf,
        /// LSN in the name.
        named: Lsn,
        /// LSN in the header.
        header: Lsn,
    },
    /// Replay was asked for records that a checkpoint already removed.
    #[error("LSN {requested} is no longer in the WAL (oldest retained LSN is {oldest})")]
    Truncated {
        /// LSN asked for.
        requested: Lsn,
        /// Oldest LSN still present.
        oldest: Lsn,
    },
    /// A record is larger than `record_bytes_max`.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Payload size.
        len: usize,
        /// Configured limit.
        max: u32,
    },
    /// The in-flight queue is full and the WAL is configured to fail fast.
    #[error("WAL in-flight queue is full ({inflight_bytes_max} bytes); retry later")]
    QueueFull {
        /// Configured limit.
        inflight_bytes_max: usize,
    },
    /// An earlier write or fsync failed; the WAL accepts nothing until reopened.
    /// (A failed fsync may have dropped dirty pages: retrying it could report success for
    /// data that is gone, so the log stops instead.)
    #[error("WAL is in a failed state after an earlier error: {reason}")]
    Failed {
        /// The error that put the WAL in the failed state.
        reason: String,
    },
    /// The WAL was closed.
    #[error("WAL is closed")]
    Closed,
    /// The configuration is invalid.
    #[error("invalid WAL configuration: {0}")]
    Config(String),
    /// The io_uring backend was forced but is not available here.
    #[error("io_uring backend unavailable: {0}")]
    IoUringUnavailable(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether the error means data on disk is damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            WalError::CorruptHeader { .. }
                | WalError::CorruptRecord { .. }
                | WalError::Gap { .. }
                | WalError::NameMismatch { .. }
        )
    }
}

/// Result alias for WAL operations.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
