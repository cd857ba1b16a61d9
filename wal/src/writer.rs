//! The writer thread: group commit in two pipelined stages.
//!
//! Stage one (writer) takes every queued append up to `group_bytes_max`, assigns LSNs,
//! frames them into one buffer and issues one positional write. Stage two (syncer)
//! takes every written group queued behind it and issues one `fdatasync` for all of
//! them, then resolves their appends. While the syncer waits on the disk the writer is
//! already writing the next group, so a slow fsync never idles the device. Both stages
//! run as futures on one thread (a tokio-uring runtime, or a current-thread tokio
//! runtime whose blocking pool performs the pwrite backend's calls).
//!
//! Failure rule: the first failed write or fsync poisons the log. Every append not yet
//! resolved, and every later one, gets [`WalError::Failed`]; nothing is retried, since a
//! failed fsync may already have dropped the dirty pages it was meant to persist.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::config::{SyncPolicy, WalConfig};
use crate::error::{Result, WalError};
use crate::format::{self, Lsn, HEADER_LEN};
use crate::io::{LogFile, LogIo};
use crate::recovery::{Recovered, SPARE_SUFFIX};

/// An inclusive range of LSNs given to one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LsnRange {
    /// LSN of the first record.
    pub first: Lsn,
    /// LSN of the last record.
    pub last: Lsn,
}

/// What a checkpoint removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Files deleted.
    pub files_removed: usize,
    /// Oldest LSN still retained afterwards.
    pub oldest_lsn: Lsn,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

pub(crate) enum Request {
    Append {
        payloads: Vec<Bytes>,
        framed_bytes: usize,
        permit: OwnedSemaphorePermit,
        reply: Reply<LsnRange>,
    },
    Sync {
        reply: Reply<Lsn>,
    },
    Checkpoint {
        lsn: Lsn,
        reply: Reply<CheckpointStats>,
    },
}

/// State shared between the writer thread and `Wal` handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    failed: OnceLock<String>,
    /// Every LSN below this is durable (per the sync policy's meaning of durable).
    pub(crate) durable: AtomicU64,
    /// Every LSN below this has been written to a file.
    pub(crate) written: AtomicU64,
    /// Retained files, oldest first.
    files: Mutex<Vec<(Lsn, PathBuf)>>,
    pub(crate) stats: Counters,
}

/// Monotonic counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) groups: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) sync_nanos: AtomicU64,
    pub(crate) write_nanos: AtomicU64,
    /// `fdatasync` calls by duration: bucket i counts those at most
    /// [`SYNC_BUCKETS_US`]`[i]` µs (and above the previous bound); the last, longer.
    pub(crate) sync_buckets: [AtomicU64; SYNC_BUCKETS_US.len() + 1],
}

/// Upper bounds (µs) of the `fdatasync` latency buckets of [`WalStats::sync_buckets`].
pub const SYNC_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// A snapshot of the WAL's activity counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Write groups issued (one write call each).
    pub groups: u64,
    /// Records written.
    pub records: u64,
    /// Framed bytes written.
    pub bytes: u64,
    /// `fdatasync` calls completed.
    pub syncs: u64,
    /// Total time spent in `fdatasync`, nanoseconds.
    pub sync_nanos: u64,
    /// Total time spent in writes, nanoseconds.
    pub write_nanos: u64,
    /// `fdatasync` calls per duration bucket (not cumulative): bucket i holds those
    /// of at most [`SYNC_BUCKETS_US`]`[i]` µs, the last those longer than all bounds.
    pub sync_buckets: [u64; SYNC_BUCKETS_US.len() + 1],
}

impl Counters {
    pub(crate) fn snapshot(&self) -> WalStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WalStats {
            groups: g(&self.groups),
            records: g(&self.records),
            bytes: g(&self.bytes),
            syncs: g(&self.syncs),
            sync_nanos: g(&self.sync_nanos),
            write_nanos: g(&self.write_nanos),
            sync_buckets: std::array::from_fn(|i| self.sync_buckets.get(i).map_or(0, g)),
        }
    }
}

impl Shared {
    pub(crate) fn new(dir: PathBuf, recovered: &Recovered) -> Self {
        Shared {
            dir,
            failed: OnceLock::new(),
            durable: AtomicU64::new(recovered.next_lsn),
            written: AtomicU64::new(recovered.next_lsn),
            files: Mutex::new(recovered.files.clone()),
            stats: Counters::default(),
        }
    }

    pub(crate) fn failure(&self) -> Option<WalError> {
        self.failed.get().map(|reason| WalError::Failed {
            reason: reason.clone(),
        })
    }

    fn fail(&self, err: &WalError) -> WalError {
        if self.failed.set(err.to_string()).is_ok() {
            tracing::error!(error = %err, "WAL entered the failed state; every pending and later append will fail");
        }
        self.failure().unwrap_or(WalError::Closed)
    }

    pub(crate) fn files(&self) -> MutexGuard<'_, Vec<(Lsn, PathBuf)>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Ack {
    reply: Reply<LsnRange>,
    range: LsnRange,
    _permit: OwnedSemaphorePermit,
}

impl Ack {
    fn send(self, r: Result<()>) {
        // The appender may have gone away (its future dropped); nothing to tell then.
        let _ = self.reply.send(r.map(|()| self.range));
    }
}

struct SyncJob<F> {
    file: Rc<F>,
    /// Every LSN below this was written when the job was queued.
    end_lsn: Lsn,
    acks: Vec<Ack>,
    force: Option<oneshot::Sender<Result<()>>>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs the writer until every `Wal` handle is gone, then makes everything durable.
/// `ready` learns whether start-up (opening or creating the active file) worked.
pub(crate) async fn run<I: LogIo>(
    io: I,
    cfg: WalConfig,
    shared: Arc<Shared>,
    recovered: Recovered,
    rx: UnboundedReceiver<Request>,
    ready: impl FnOnce(Result<()>),
) {
    let (sync_tx, sync_rx) = mpsc::unbounded_channel();
    let (prep_tx, prep_rx) = mpsc::unbounded_channel();
    let (spare_tx, spare_rx) = mpsc::unbounded_channel();
    let io = Rc::new(io);
    let gate = Rc::new(WriteGate::default());
    let prep = Preparer {
        requests: prep_tx,
        ready: spare_rx,
        outstanding: 0,
    };
    let started = Writer::start(
        Rc::clone(&io),
        cfg.clone(),
        Arc::clone(&shared),
        recovered,
        sync_tx,
        prep,
        Rc::clone(&gate),
    )
    .await;
    let mut writer = match started {
        Ok(w) => w,
        Err(e) => {
            ready(Err(e));
            return;
        }
    };
    ready(Ok(()));
    writer.request_spare();
    tokio::join!(
        writer.run(rx),
        syncer(sync_rx, Arc::clone(&shared), cfg.sync, Rc::clone(&gate)),
        preparer(io, prep_rx, spare_tx, cfg.file_bytes_max),
    );
}

/// Tells the syncer whether the writer has a group write in flight.
#[derive(Debug, Default)]
struct WriteGate {
    writing: std::cell::Cell<bool>,
    done: tokio::sync::Notify,
}

impl WriteGate {
    fn begin(&self) {
        self.writing.set(true);
    }

    fn end(&self) {
        self.writing.set(false);
        self.done.notify_waiters();
    }

    async fn idle(&self) {
        while self.writing.get() {
            let notified = self.done.notified();
            if !self.writing.get() {
                break;
            }
            notified.await;
        }
    }
}

/// The writer's side of the background stage that zero-fills spare files.
struct Preparer {
    requests: UnboundedSender<PathBuf>,
    /// Finished spares (`None`: preparing one failed).
    ready: UnboundedReceiver<Option<PathBuf>>,
    outstanding: usize,
}

/// Zero-fills each requested file to `size` bytes and syncs it, then hands it back.
/// A failure here costs only speed (rotation then starts an unfilled file), so it is
/// logged and never fails the log.
async fn preparer<I: LogIo>(
    io: Rc<I>,
    mut rx: UnboundedReceiver<PathBuf>,
    ready: UnboundedSender<Option<PathBuf>>,
    size: u64,
) {
    while let Some(path) = rx.recv().await {
        match zero_fill(&*io, &path, size, &rx).await {
            Ok(()) => {
                let _ = ready.send(Some(path));
            }
            Err(_) if rx.is_closed() => {
                // Shutting down: a half-filled spare is not worth finishing.
                let _ = io.remove(&path).await;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not preallocate a WAL spare file");
                let _ = io.remove(&path).await;
                let _ = ready.send(None);
            }
        }
    }
}

async fn zero_fill<I: LogIo>(
    io: &I,
    path: &Path,
    size: u64,
    requests: &UnboundedReceiver<PathBuf>,
) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let file = io.create(path).await?;
    let mut buf = vec![0u8; CHUNK.min(size) as usize];
    let mut offset = 0;
    while offset < size {
        if requests.is_closed() {
            return Err(std::io::Error::other("WAL closing"));
        }
        let n = CHUNK.min(size - offset) as usize;
        buf.resize(n, 0);
        let (res, b) = file.write_all_at(buf, offset).await;
        res?;
        buf = b;
        offset += n as u64;
        // Sync as we go: one 64 MiB fdatasync at the end would hold the device (and
        // the ext4 journal) long enough to stall the log's own syncs behind it.
        if offset % (8 * CHUNK) == 0 {
            file.sync_data().await?;
        }
    }
    file.sync_data().await
}

struct Writer<I: LogIo> {
    io: Rc<I>,
    cfg: WalConfig,
    shared: Arc<Shared>,
    active: Rc<I::File>,
    offset: u64,
    created_unix_ms: u64,
    next_lsn: Lsn,
    sync_tx: UnboundedSender<SyncJob<I::File>>,
    spare: Vec<u8>,
    /// Zero-filled or recycled files ready to become the next WAL file.
    spares: VecDeque<PathBuf>,
    spare_seq: u64,
    prep: Preparer,
    gate: Rc<WriteGate>,
}

impl<I: LogIo> Writer<I> {
    async fn start(
        io: Rc<I>,
        cfg: WalConfig,
        shared: Arc<Shared>,
        recovered: Recovered,
        sync_tx: UnboundedSender<SyncJob<I::File>>,
        prep: Preparer,
        gate: Rc<WriteGate>,
    ) -> Result<Self> {
        let next_lsn = recovered.next_lsn;
        let spare_seq = recovered
            .spares
            .iter()
            .filter_map(|p| {
                p.file_name()?
                    .to_str()?
                    .strip_suffix(SPARE_SUFFIX)?
                    .parse::<u64>()
                    .ok()
            })
            .max()
            .unwrap_or(0);
        let spares: VecDeque<PathBuf> = recovered.spares.iter().cloned().collect();
        let (file, offset, created) = match recovered.active {
            Some(a) => {
                debug_assert!(a.first_lsn <= next_lsn);
                let f = io
                    .open(&a.path)
                    .await
                    .map_err(|e| WalError::io("open", &a.path, e))?;
                (f, a.valid_end, a.created_unix_ms)
            }
            None => {
                let (f, created) = create_file(&*io, &shared, next_lsn).await?;
                (f, HEADER_LEN as u64, created)
            }
        };
        Ok(Writer {
            io,
            cfg,
            shared,
            active: Rc::new(file),
            offset,
            created_unix_ms: created,
            next_lsn,
            sync_tx,
            spare: Vec::new(),
            spares,
            spare_seq,
            prep,
            gate,
        })
    }

    fn next_spare_path(&mut self) -> PathBuf {
        self.spare_seq += 1;
        self.shared
            .dir
            .join(format!("{:08}{SPARE_SUFFIX}", self.spare_seq))
    }

    /// Takes in spares the preparer finished.
    fn collect_spares(&mut self) {
        while let Ok(done) = self.prep.ready.try_recv() {
            self.prep.outstanding = self.prep.outstanding.saturating_sub(1);
            if let Some(path) = done {
                self.spares.push_back(path);
            }
        }
    }

    /// Keeps one spare ready or in preparation.
    fn request_spare(&mut self) {
        self.collect_spares();
        if self.cfg.preallocate && self.spares.is_empty() && self.prep.outstanding == 0 {
            let path = self.next_spare_path();
            if self.prep.requests.send(path).is_ok() {
                self.prep.outstanding += 1;
            }
        }
    }

    /// Turns a spare into the WAL file for records from `first_lsn`: the header is
    /// written and synced under the spare's name first, so a file under a WAL name
    /// always carries its own header; then rename and directory fsync.
    async fn reuse_spare(&self, spare: &Path, first_lsn: Lsn) -> Result<(I::File, u64)> {
        let path = self.shared.dir.join(format::file_name(first_lsn));
        let created = now_unix_ms();
        let file = self
            .io
            .open(spare)
            .await
            .map_err(|e| WalError::io("open spare", spare, e))?;
        let header = format::encode_header(first_lsn, created).to_vec();
        let (res, _) = file.write_all_at(header, 0).await;
        res.map_err(|e| WalError::io("write header", spare, e))?;
        file.sync_data()
            .await
            .map_err(|e| WalError::io("fdatasync header", spare, e))?;
        self.io
            .rename(spare, &path)
            .await
            .map_err(|e| WalError::io("rename spare", &path, e))?;
        let dir = &self.shared.dir;
        self.io
            .sync_dir(dir)
            .await
            .map_err(|e| WalError::io("fsync directory", dir, e))?;
        self.shared.files().push((first_lsn, path));
        Ok((file, created))
    }

    async fn run(mut self, mut rx: UnboundedReceiver<Request>) {
        let mut carry: Option<Request> = None;
        loop {
            let req = match carry.take() {
                Some(r) => r,
                None => match rx.recv().await {
                    Some(r) => r,
                    None => break,
                },
            };
            match req {
                Request::Append {
                    payloads,
                    framed_bytes,
                    permit,
                    reply,
                } => {
                    let mut group = vec![(payloads, permit, reply)];
                    let mut bytes = framed_bytes;
                    while bytes < self.cfg.group_bytes_max {
                        match rx.try_recv() {
                            Ok(Request::Append {
                                payloads,
                                framed_bytes,
                                permit,
                                reply,
                            }) => {
                                if bytes + framed_bytes > self.cfg.group_bytes_max {
                                    carry = Some(Request::Append {
                                        payloads,
                                        framed_bytes,
                                        permit,
                                        reply,
                                    });
                                    break;
                                }
                                bytes += framed_bytes;
                                group.push((payloads, permit, reply));
                            }
                            Ok(other) => {
                                carry = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_group(group, bytes).await;
                }
                Request::Sync { reply } => {
                    let r = self.barrier().await.map(|()| self.next_lsn);
                    let _ = reply.send(r);
                }
                Request::Checkpoint { lsn, reply } => {
                    let _ = reply.send(self.checkpoint(lsn).await);
                }
            }
        }
        // Every handle is gone: make whatever was written durable before exiting, so a
        // clean shutdown loses nothing even under the Interval and Never policies.
        if self.shared.failure().is_none() {
            let _ = self.barrier().await;
        }
    }

    fn fail_all(&self, err: &WalError, acks: Vec<Ack>) {
        let failed = self.shared.fail(err);
        for ack in acks {
            ack.send(Err(clone_failed(&failed)));
        }
    }

    async fn write_group(
        &mut self,
        group: Vec<(Vec<Bytes>, OwnedSemaphorePermit, Reply<LsnRange>)>,
        bytes: usize,
    ) {
        if let Some(e) = self.shared.failure() {
            for (_, _, reply) in group {
                let _ = reply.send(Err(clone_failed(&e)));
            }
            return;
        }
        if self.should_rotate(bytes) {
            if let Err(e) = self.rotate().await {
                let failed = self.shared.fail(&e);
                for (_, _, reply) in group {
                    let _ = reply.send(Err(clone_failed(&failed)));
                }
                return;
            }
        }
        let mut buf = std::mem::take(&mut self.spare);
        buf.clear();
        buf.reserve(bytes + format::TERMINATOR_LEN);
        let mut acks = Vec::with_capacity(group.len());
        let mut lsn = self.next_lsn;
        for (payloads, permit, reply) in group {
            let first = lsn;
            for p in &payloads {
                format::encode_frame(&mut buf, lsn, p);
                lsn += 1;
            }
            acks.push(Ack {
                reply,
                range: LsnRange {
                    first,
                    last: lsn - 1,
                },
                _permit: permit,
            });
        }
        debug_assert_eq!(buf.len(), bytes);
        let len = buf.len() as u64;
        // Zeros after the group: the next group overwrites them, and until then they
        // mark a clean end even in a recycled file full of stale bytes.
        buf.resize(buf.len() + format::TERMINATOR_LEN, 0);
        let started = std::time::Instant::now();
        self.gate.begin();
        let (res, mut buf) = self.active.write_all_at(buf, self.offset).await;
        self.gate.end();
        let c = &self.shared.stats;
        c.write_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        c.groups.fetch_add(1, Ordering::Relaxed);
        c.records.fetch_add(lsn - self.next_lsn, Ordering::Relaxed);
        c.bytes.fetch_add(len, Ordering::Relaxed);
        if let Err(e) = res {
            let path = self.active_path();
            self.fail_all(&WalError::io("write", path, e), acks);
            return;
        }
        self.offset += len;
        self.next_lsn = lsn;
        self.shared.written.store(lsn, Ordering::Release);
        if buf.capacity() <= 2 * self.cfg.group_bytes_max {
            buf.clear();
            self.spare = buf;
        }
        let acks = if self.cfg.sync == SyncPolicy::PerGroup {
            acks
        } else {
            for ack in acks {
                ack.send(Ok(()));
            }
            Vec::new()
        };
        self.queue_sync(acks, None);
    }

    fn queue_sync(&self, acks: Vec<Ack>, force: Option<oneshot::Sender<Result<()>>>) {
        let job = SyncJob {
            file: Rc::clone(&self.active),
            end_lsn: self.next_lsn,
            acks,
            force,
        };
        if let Err(mpsc::error::SendError(job)) = self.sync_tx.send(job) {
            // The syncer only stops when this writer does; treat it as closed.
            for ack in job.acks {
                ack.send(Err(WalError::Closed));
            }
            if let Some(f) = job.force {
                let _ = f.send(Err(WalError::Closed));
            }
        }
    }

    /// Waits until everything written so far is durable.
    async fn barrier(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue_sync(Vec::new(), Some(tx));
        rx.await.map_err(|_| WalError::Closed)?
    }

    fn active_path(&self) -> PathBuf {
        self.shared
            .files()
            .last()
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| self.shared.dir.clone())
    }

    fn should_rotate(&self, incoming: usize) -> bool {
        if self.offset <= HEADER_LEN as u64 {
            return false; // never leave an empty file behind
        }
        if self.offset + incoming as u64 > self.cfg.file_bytes_max {
            return true;
        }
        self.cfg.file_age_max.is_some_and(|max| {
            now_unix_ms().saturating_sub(self.created_unix_ms) >= max.as_millis() as u64
        })
    }

    async fn rotate(&mut self) -> Result<()> {
        // The old file must be wholly durable before its successor holds a record:
        // recovery relies on only the newest file ever having a torn tail.
        self.barrier().await?;
        self.collect_spares();
        let (file, created) = match self.spares.pop_front() {
            Some(spare) => self.reuse_spare(&spare, self.next_lsn).await?,
            None => create_file(&*self.io, &self.shared, self.next_lsn).await?,
        };
        self.request_spare();
        self.active = Rc::new(file);
        self.offset = HEADER_LEN as u64;
        self.created_unix_ms = created;
        Ok(())
    }

    async fn checkpoint(&mut self, lsn: Lsn) -> Result<CheckpointStats> {
        // Everything written is checkpointed: move to a fresh file so the active one,
        // which holds only obsolete records, can go too (a clean shutdown then leaves
        // an empty log instead of a copy of what is already in segments).
        if lsn >= self.next_lsn && self.offset > HEADER_LEN as u64 {
            if let Err(e) = self.rotate().await {
                return Err(self.shared.fail(&e));
            }
        }
        let doomed: Vec<PathBuf> = {
            let files = self.shared.files();
            files
                .windows(2)
                .take_while(|w| w.get(1).is_some_and(|(next_first, _)| *next_first <= lsn))
                .filter_map(|w| w.first().map(|(_, p)| p.clone()))
                .collect()
        };
        // Oldest first, each made durable before the next, so a crash part-way leaves
        // a contiguous run of files.
        let dir = self.shared.dir.clone();
        for path in &doomed {
            self.collect_spares();
            if self.spares.len() + self.prep.outstanding < self.cfg.recycle_files_max {
                let spare = self.next_spare_path();
                self.io
                    .rename(path, &spare)
                    .await
                    .map_err(|e| WalError::io("recycle", path, e))?;
                self.spares.push_back(spare);
            } else {
                self.io
                    .remove(path)
                    .await
                    .map_err(|e| WalError::io("remove", path, e))?;
            }
            self.shared.files().retain(|(_, p)| p != path);
            self.io
                .sync_dir(&dir)
                .await
                .map_err(|e| WalError::io("fsync directory", &dir, e))?;
        }
        let oldest = self
            .shared
            .files()
            .first()
            .map_or(self.next_lsn, |(l, _)| *l);
        Ok(CheckpointStats {
            files_removed: doomed.len(),
            oldest_lsn: oldest,
        })
    }
}

/// Creates the file for records from `first_lsn`: header written and synced, directory
/// entry synced, and only then registered.
async fn create_file<I: LogIo>(io: &I, shared: &Shared, first_lsn: Lsn) -> Result<(I::File, u64)> {
    let path = shared.dir.join(format::file_name(first_lsn));
    let created = now_unix_ms();
    let file = io
        .create(&path)
        .await
        .map_err(|e| WalError::io("create", &path, e))?;
    let header = format::encode_header(first_lsn, created).to_vec();
    let (res, _) = file.write_all_at(header, 0).await;
    res.map_err(|e| WalError::io("write header", &path, e))?;
    file.sync_data()
        .await
        .map_err(|e| WalError::io("fdatasync header", &path, e))?;
    io.sync_dir(&shared.dir)
        .await
        .map_err(|e| WalError::io("fsync directory", &shared.dir, e))?;
    shared.files().push((first_lsn, path));
    Ok((file, created))
}

fn clone_failed(e: &WalError) -> WalError {
    match e {
        WalError::Failed { reason } => WalError::Failed {
            reason: reason.clone(),
        },
        other => WalError::Failed {
            reason: other.to_string(),
        },
    }
}

/// The sync stage; see the module docs.
async fn syncer<F: LogFile>(
    mut rx: UnboundedReceiver<SyncJob<F>>,
    shared: Arc<Shared>,
    policy: SyncPolicy,
    gate: Rc<WriteGate>,
) {
    // Written under Interval/Never but not yet synced.
    let mut unsynced: Option<(Rc<F>, Lsn)> = None;
    let mut ticker = match policy {
        SyncPolicy::Interval(d) => Some(tokio::time::interval(d)),
        _ => None,
    };
    loop {
        let first = match ticker.as_mut() {
            Some(t) => tokio::select! {
                job = rx.recv() => job,
                _ = t.tick() => {
                    if let Some((file, end)) = unsynced.take() {
                        if shared.failure().is_none() {
                            match file.sync_data().await {
                                Ok(()) => advance(&shared.durable, end),
                                Err(e) => {
                                    let path = shared.files().last().map(|(_, p)| p.clone()).unwrap_or_default();
                                    shared.fail(&WalError::io("fdatasync", path, e));
                                }
                            }
                        }
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else { break };
        // A group being written right now would need a sync of its own just after
        // this one; waiting for its write (a fraction of a sync's cost) lets one sync
        // cover both.
        gate.idle().await;
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        let forced = jobs.iter().any(|j| j.force.is_some());
        let must_sync = policy == SyncPolicy::PerGroup || forced;
        let result = match shared.failure() {
            Some(e) => Err(e),
            None if must_sync => sync_files(&shared, unsynced.take(), &jobs).await,
            None => Ok(()),
        };
        let end = jobs.iter().map(|j| j.end_lsn).max().unwrap_or(0);
        match &result {
            Ok(()) if must_sync => advance(&shared.durable, end),
            Ok(()) => {
                if let Some(last) = jobs.last() {
                    unsynced = Some((Rc::clone(&last.file), end));
                }
            }
            Err(_) => {}
        }
        for job in jobs {
            for ack in job.acks {
                ack.send(result.as_ref().map(|_| ()).map_err(clone_failed));
            }
            if let Some(f) = job.force {
                let _ = f.send(result.as_ref().map(|_| ()).map_err(clone_failed));
            }
        }
    }
}

fn advance(watermark: &AtomicU64, to: Lsn) {
    watermark.fetch_max(to, Ordering::AcqRel);
}

/// One fdatasync per distinct file, oldest first.
async fn sync_files<F: LogFile>(
    shared: &Shared,
    unsynced: Option<(Rc<F>, Lsn)>,
    jobs: &[SyncJob<F>],
) -> Result<()> {
    let mut files: Vec<Rc<F>> = Vec::new();
    let candidates = unsynced
        .iter()
        .map(|(f, _)| f)
        .chain(jobs.iter().map(|j| &j.file));
    for f in candidates {
        if !files.iter().any(|g| Rc::ptr_eq(g, f)) {
            files.push(Rc::clone(f));
        }
    }
    for f in files {
        let started = std::time::Instant::now();
        let res = f.sync_data().await;
        let c = &shared.stats;
        let took = started.elapsed();
        c.sync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        c.syncs.fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros() as u64;
        let bucket = SYNC_BUCKETS_US.partition_point(|b| *b < us);
        if let Some(b) = c.sync_buckets.get(bucket) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = res {
            let path = shared
                .files()
                .last()
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            return Err(shared.fail(&WalError::io("fdatasync", path, e)));
        }
    }
    Ok(())
}
