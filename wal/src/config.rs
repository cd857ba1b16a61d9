//! WAL configuration: backend choice, sync policy, file rotation and the limits that
//! keep memory bounded.

use std::time::Duration;

use crate::error::{Result, WalError};
use crate::format::Lsn;

/// When appended bytes are flushed to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Every write group is followed by one `fdatasync`; an append resolves only once
    /// its bytes are durable. The default, and the only policy under which an
    /// acknowledged record survives power loss.
    PerGroup,
    /// Appends resolve once written to the OS; the log is `fdatasync`ed every interval.
    /// A power loss can drop up to one interval of acknowledged records (a process
    /// crash alone loses nothing, the OS still holds the pages).
    Interval(Duration),
    /// Never `fdatasync` while running (only on close). UNSAFE: a power loss can drop
    /// any amount of acknowledged data. For benchmarks and throwaway data only.
    Never,
}

/// Which I/O backend writes the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when a runtime probe succeeds, else pwrite + fdatasync (logged).
    Auto,
    /// io_uring (tokio-uring) on the WAL's writer thread; opening fails if unavailable.
    IoUring,
    /// Positional writes and `fdatasync` through the standard library.
    Pwrite,
}

/// What an append does when the in-flight queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for room.
    Wait,
    /// Return [`WalError::QueueFull`] at once.
    FailFast,
}

/// WAL settings. `WalConfig::default()` is the production default.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// I/O backend.
    pub backend: BackendChoice,
    /// Durability policy.
    pub sync: SyncPolicy,
    /// Rotate to a new file once the active one reaches this size.
    pub file_bytes_max: u64,
    /// Rotate to a new file once the active one is this old (checked on write).
    pub file_age_max: Option<Duration>,
    /// Largest accepted record payload.
    pub record_bytes_max: u32,
    /// Largest write group: one write + one fsync covers at most this many bytes
    /// (a single record larger than this still goes alone).
    pub group_bytes_max: usize,
    /// Bytes accepted but not yet acknowledged, across all appenders; appends beyond
    /// it wait or fail per [`Backpressure`].
    pub inflight_bytes_max: usize,
    /// What happens when `inflight_bytes_max` is reached.
    pub backpressure: Backpressure,
    /// LSN of the first record of a brand-new log.
    pub first_lsn: Lsn,
    /// Keep a zero-filled spare file ready (prepared in the background) so rotation
    /// never starts a file whose every sync must also commit a size change. See
    /// `docs/decisions/0001-wal-preallocation-and-recycling.md`.
    pub preallocate: bool,
    /// Checkpointed files kept as spares for reuse instead of deleted.
    pub recycle_files_max: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            backend: BackendChoice::Auto,
            sync: SyncPolicy::PerGroup,
            file_bytes_max: 64 << 20,
            file_age_max: Some(Duration::from_secs(3600)),
            record_bytes_max: 16 << 20,
            group_bytes_max: 4 << 20,
            inflight_bytes_max: 64 << 20,
            backpressure: Backpressure::Wait,
            first_lsn: 1,
            preallocate: true,
            recycle_files_max: 2,
        }
    }
}

impl WalConfig {
    /// Checks the settings for consistency.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(WalError::Config(m));
        if self.record_bytes_max == 0 {
            return fail("record_bytes_max must be > 0".into());
        }
        let frame_max = crate::format::frame_len(self.record_bytes_max as usize);
        if self.inflight_bytes_max < frame_max {
            return fail(format!(
                "inflight_bytes_max ({}) must hold at least one maximal record ({frame_max} bytes framed)",
                self.inflight_bytes_max
            ));
        }
        if self.inflight_bytes_max > u32::MAX as usize {
            return fail("inflight_bytes_max must be below 4 GiB".into());
        }
        if self.group_bytes_max == 0 {
            return fail("group_bytes_max must be > 0".into());
        }
        if self.file_bytes_max < crate::format::HEADER_LEN as u64 + 1 {
            return fail("file_bytes_max is too small".into());
        }
        if self.first_lsn == 0 {
            return fail("first_lsn must be >= 1".into());
        }
        if let SyncPolicy::Interval(d) = self.sync {
            if d.is_zero() {
                return fail("sync interval must be > 0 (use PerGroup)".into());
            }
        }
        Ok(())
    }
}
