//! Heimdall's write-ahead log.
//!
//! Every record Heimdall acknowledges is first appended here and made durable. The log
//! is a directory of append-only files (`{first_lsn:020}.wal`), each starting with a
//! versioned header and holding checksummed frames with consecutive log sequence
//! numbers. See `docs/format/wal.md` for the byte layout and the recovery rules, and
//! `ARCHITECTURE.md` for where the WAL sits.
//!
//! - [`Wal::open`] recovers the directory (truncating a torn tail, refusing corruption)
//!   and starts one writer thread with the io_uring or the pwrite backend.
//! - [`Wal::append`] / [`Wal::append_batch`] resolve only once the record is durable
//!   under the default [`SyncPolicy::PerGroup`]: concurrent appends share one write and
//!   one `fdatasync` (group commit).
//! - [`Wal::replay`] streams records from an LSN; [`Wal::checkpoint`] deletes files that
//!   hold only records below an LSN.
//! - A failed write or fsync puts the log in a failed state for good (until reopened).

mod config;
mod error;
pub mod fault;
pub mod format;
mod io;
mod reader;
mod recovery;
mod wal;
mod writer;

pub use config::{BackendChoice, Backpressure, SyncPolicy, WalConfig};
pub use error::{Result, WalError};
pub use format::Lsn;
pub use reader::{Record, Replay};
pub use recovery::RecoveryReport;
pub use wal::{Backend, Wal, LOCK_FILE};
pub use writer::{CheckpointStats, LsnRange, WalStats, SYNC_BUCKETS_US};
