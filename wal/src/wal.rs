//! The `Wal` handle: open (recovery + writer thread start-up with backend selection),
//! append, sync, checkpoint, replay.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::config::{BackendChoice, Backpressure, WalConfig};
use crate::error::{Result, WalError};
use crate::fault::{FaultInjector, FaultIo};
use crate::format::{self, Lsn};
use crate::io::{probe_uring, LogIo, PwriteIo, UringIo};
use crate::reader::Replay;
use crate::recovery::{self, Recovered, RecoveryReport};
use crate::writer::{self, CheckpointStats, LsnRange, Request, Shared, WalStats};

/// The backend a `Wal` actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring through tokio-uring.
    IoUring,
    /// pwrite + fdatasync.
    Pwrite,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::IoUring => "io_uring",
            Backend::Pwrite => "pwrite",
        })
    }
}

/// Name of the lock file that keeps two processes from writing one WAL directory.
pub const LOCK_FILE: &str = "LOCK";

/// A write-ahead log in one directory. Cheap to share behind an `Arc`; every method
/// takes `&self`. Dropping the last handle stops the writer thread after making
/// everything written durable.
#[derive(Debug)]
pub struct Wal {
    tx: Option<mpsc::UnboundedSender<Request>>,
    shared: Arc<Shared>,
    budget: Arc<Semaphore>,
    cfg: WalConfig,
    backend: Backend,
    fallback_reason: Option<String>,
    report: RecoveryReport,
    thread: Option<JoinHandle<()>>,
    _lock: fs::File,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`: recovers it, then starts the writer.
    pub fn open(dir: impl AsRef<Path>, cfg: WalConfig) -> Result<Wal> {
        Self::open_inner(dir.as_ref(), cfg, None)
    }

    /// Like [`Wal::open`], with every writer I/O operation passing through `faults`.
    /// For crash and failure tests.
    pub fn open_with_faults(
        dir: impl AsRef<Path>,
        cfg: WalConfig,
        faults: Arc<FaultInjector>,
    ) -> Result<Wal> {
        Self::open_inner(dir.as_ref(), cfg, Some(faults))
    }

    fn open_inner(dir: &Path, cfg: WalConfig, faults: Option<Arc<FaultInjector>>) -> Result<Wal> {
        cfg.validate()?;
        fs::create_dir_all(dir).map_err(|e| WalError::io("create directory", dir, e))?;
        let dir = fs::canonicalize(dir).map_err(|e| WalError::io("resolve directory", dir, e))?;
        let lock = lock_dir(&dir)?;
        let recovered = recovery::recover(&dir, cfg.first_lsn)?;
        let report = recovered.report.clone();
        let shared = Arc::new(Shared::new(dir.clone(), &recovered));
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_cfg = cfg.clone();
        let thread_shared = Arc::clone(&shared);
        let probe_dir = dir.clone();
        let thread = std::thread::Builder::new()
            .name("heimdall-wal".into())
            .spawn(move || {
                writer_thread(
                    probe_dir,
                    thread_cfg,
                    thread_shared,
                    recovered,
                    rx,
                    ready_tx,
                    faults,
                )
            })
            .map_err(|e| WalError::io("spawn writer thread", &dir, e))?;
        let (backend, fallback_reason) = match ready_rx.recv() {
            Ok(Ok(chosen)) => chosen,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(WalError::Closed);
            }
        };
        tracing::info!(
            dir = %dir.display(),
            backend = %backend,
            next_lsn = report.next_lsn,
            records = report.records,
            truncated_bytes = report.truncated_bytes,
            "WAL opened"
        );
        Ok(Wal {
            tx: Some(tx),
            shared,
            budget: Arc::new(Semaphore::new(cfg.inflight_bytes_max)),
            cfg,
            backend,
            fallback_reason,
            report,
            thread: Some(thread),
            _lock: lock,
        })
    }

    /// Appends one record; resolves with its LSN once durable (per the sync policy).
    pub async fn append(&self, payload: Bytes) -> Result<Lsn> {
        Ok(self.append_batch(vec![payload]).await?.first)
    }

    /// Appends records with consecutive LSNs in one write group; resolves once all are
    /// durable. A crash may keep a prefix of an unacknowledged batch: only single
    /// records are atomic, so callers that need an atomic unit put it in one record.
    pub async fn append_batch(&self, payloads: Vec<Bytes>) -> Result<LsnRange> {
        if let Some(e) = self.shared.failure() {
            return Err(e);
        }
        if payloads.is_empty() {
            return Err(WalError::Config("empty batch".into()));
        }
        let mut framed_bytes = 0usize;
        for p in &payloads {
            if p.len() > self.cfg.record_bytes_max as usize {
                return Err(WalError::RecordTooLarge {
                    len: p.len(),
                    max: self.cfg.record_bytes_max,
                });
            }
            framed_bytes += format::frame_len(p.len());
        }
        if framed_bytes > self.cfg.inflight_bytes_max {
            return Err(WalError::RecordTooLarge {
                len: framed_bytes,
                max: self.cfg.inflight_bytes_max as u32,
            });
        }
        let permits = framed_bytes as u32;
        let permit = match self.cfg.backpressure {
            Backpressure::Wait => Arc::clone(&self.budget)
                .acquire_many_owned(permits)
                .await
                .map_err(|_| WalError::Closed)?,
            Backpressure::FailFast => Arc::clone(&self.budget)
                .try_acquire_many_owned(permits)
                .map_err(|_| WalError::QueueFull {
                    inflight_bytes_max: self.cfg.inflight_bytes_max,
                })?,
        };
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append {
            payloads,
            framed_bytes,
            permit,
            reply,
        })?;
        rx.await.map_err(|_| self.closed_or_failed())?
    }

    /// Makes everything appended so far durable regardless of the sync policy; returns
    /// the LSN the next append will get.
    pub async fn sync(&self) -> Result<Lsn> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Sync { reply })?;
        rx.await.map_err(|_| self.closed_or_failed())?
    }

    /// Declares every record below `lsn` no longer needed: deletes the files that hold
    /// only such records (never the active file).
    pub async fn checkpoint(&self, lsn: Lsn) -> Result<CheckpointStats> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Checkpoint { lsn, reply })?;
        rx.await.map_err(|_| self.closed_or_failed())?
    }

    /// Replays records from `from` up to the last one written when this is called.
    pub fn replay(&self, from: Lsn) -> Result<Replay> {
        let files = self.shared.files().clone();
        Replay::new(files, from, self.shared.written.load(Ordering::Acquire))
    }

    /// Replays every retained record.
    pub fn replay_all(&self) -> Result<Replay> {
        self.replay(self.oldest_lsn())
    }

    /// LSN of the oldest retained record.
    pub fn oldest_lsn(&self) -> Lsn {
        let next = self.shared.written.load(Ordering::Acquire);
        self.shared.files().first().map_or(next, |(l, _)| *l)
    }

    /// LSN the next append will get (once all in-flight appends finish).
    pub fn written_lsn(&self) -> Lsn {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Every LSN below this is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Activity counters since open.
    pub fn stats(&self) -> WalStats {
        self.shared.stats.snapshot()
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Why io_uring was not used, when `BackendChoice::Auto` fell back to pwrite.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// What recovery found when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The error that put the WAL in the failed state, if any.
    pub fn failure(&self) -> Option<WalError> {
        self.shared.failure()
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Stops the writer after making everything written durable, and waits for it.
    /// Returns the failure that stopped the log earlier, if any.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        match self.shared.failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("WAL writer thread panicked");
            }
        }
    }

    fn send(&self, req: Request) -> Result<()> {
        match &self.tx {
            Some(tx) => tx.send(req).map_err(|_| self.closed_or_failed()),
            None => Err(WalError::Closed),
        }
    }

    fn closed_or_failed(&self) -> WalError {
        self.shared.failure().unwrap_or(WalError::Closed)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| WalError::io("open lock file", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(WalError::io(
            "lock",
            path,
            std::io::Error::other("the WAL directory is in use by another process"),
        )),
        Err(fs::TryLockError::Error(e)) => Err(WalError::io("lock", path, e)),
    }
}

type Ready = std::sync::mpsc::Sender<Result<(Backend, Option<String>)>>;

fn writer_thread(
    dir: PathBuf,
    cfg: WalConfig,
    shared: Arc<Shared>,
    recovered: Recovered,
    rx: mpsc::UnboundedReceiver<Request>,
    ready: Ready,
    faults: Option<Arc<FaultInjector>>,
) {
    let mut fallback_reason = None;
    if cfg.backend != BackendChoice::Pwrite {
        match probe_uring(&dir) {
            Ok(rt) => {
                let fut = run_with(
                    UringIo,
                    faults,
                    cfg,
                    shared,
                    recovered,
                    rx,
                    ready,
                    (Backend::IoUring, None),
                );
                rt.block_on(fut);
                return;
            }
            Err(reason) if cfg.backend == BackendChoice::IoUring => {
                let _ = ready.send(Err(WalError::IoUringUnavailable(reason)));
                return;
            }
            Err(reason) => {
                tracing::warn!(reason = %reason, "io_uring unavailable; WAL falls back to pwrite + fdatasync");
                fallback_reason = Some(reason);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .max_blocking_threads(4)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(WalError::io("start WAL runtime", &dir, e)));
            return;
        }
    };
    let chosen = (Backend::Pwrite, fallback_reason);
    rt.block_on(run_with(
        PwriteIo, faults, cfg, shared, recovered, rx, ready, chosen,
    ));
}

#[allow(clippy::too_many_arguments)]
async fn run_with<I: LogIo>(
    io: I,
    faults: Option<Arc<FaultInjector>>,
    cfg: WalConfig,
    shared: Arc<Shared>,
    recovered: Recovered,
    rx: mpsc::UnboundedReceiver<Request>,
    ready: Ready,
    chosen: (Backend, Option<String>),
) {
    let on_ready = move |r: Result<()>| {
        let _ = ready.send(r.map(|()| chosen));
    };
    match faults {
        Some(faults) => {
            let io = FaultIo { inner: io, faults };
            writer::run(io, cfg, shared, recovered, rx, on_ready).await
        }
        None => writer::run(io, cfg, shared, recovered, rx, on_ready).await,
    }
}
