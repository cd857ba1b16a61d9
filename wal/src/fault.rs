//! A fault-injecting layer over a real I/O backend, for crash and failure tests.
//!
//! Every operation still reaches the real files, so the backend under test (pwrite or
//! io_uring) is exercised; the injector counts operations, can stop the world after the
//! k-th one (a simulated crash: later operations fail and do nothing), can fail one
//! chosen write or fsync, and tracks per file how many bytes were made durable by a
//! successful `fdatasync` and whether its directory entry was made durable. From that
//! it builds the disk image a power loss could leave behind ([`CrashMode`]), in the
//! spirit of redb's crash-consistency tests (live image vs durable image).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::io::{LogFile, LogIo};

/// Which operation kinds a fault plan can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// File creation.
    Create,
    /// Opening an existing file.
    Open,
    /// A positional write.
    Write,
    /// `fdatasync` of a file.
    Sync,
    /// `fsync` of the directory.
    SyncDir,
    /// File removal.
    Remove,
}

/// What a power loss keeps of data that was written but not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what a successful fdatasync / directory fsync covered survives.
    DropUnsynced,
    /// Each file keeps its synced bytes plus a random prefix of its unsynced bytes;
    /// unsynced directory entries survive or not at random.
    KeepRandomPrefix,
    /// Everything written survives except the last write, which is cut at a random byte.
    TornLastWrite,
}

#[derive(Debug, Default, Clone)]
struct FileTrack {
    synced_len: u64,
    written_len: u64,
    entry_durable: bool,
    removed: bool,
}

#[derive(Debug, Default)]
struct State {
    ops: u64,
    writes: u64,
    syncs: u64,
    crash_after: Option<u64>,
    fail_write: Option<u64>,
    fail_sync: Option<u64>,
    crashed: bool,
    files: BTreeMap<PathBuf, FileTrack>,
    last_write: Option<(PathBuf, u64, u64)>,
    log: Vec<OpKind>,
}

/// Shared fault plan and durability tracker; see the module docs.
#[derive(Debug, Default)]
pub struct FaultInjector {
    state: Mutex<State>,
}

fn crashed_err() -> io::Error {
    io::Error::other("simulated crash: no further I/O")
}

fn injected_eio(what: &str) -> io::Error {
    let eio = io::Error::from_raw_os_error(libc::EIO);
    io::Error::new(eio.kind(), format!("injected {what} failure: {eio}"))
}

impl FaultInjector {
    /// A plan that injects nothing (it only tracks durability).
    pub fn new() -> Arc<Self> {
        Arc::new(FaultInjector::default())
    }

    /// A plan where operations after the `k`-th fail without effect.
    pub fn crash_after(k: u64) -> Arc<Self> {
        let f = FaultInjector::default();
        f.lock().crash_after = Some(k);
        Arc::new(f)
    }

    /// A plan where the `n`-th write (1-based) fails with EIO and writes nothing.
    pub fn fail_nth_write(n: u64) -> Arc<Self> {
        let f = FaultInjector::default();
        f.lock().fail_write = Some(n);
        Arc::new(f)
    }

    /// A plan where the `n`-th fdatasync (1-based) fails with EIO.
    pub fn fail_nth_sync(n: u64) -> Arc<Self> {
        let f = FaultInjector::default();
        f.lock().fail_sync = Some(n);
        Arc::new(f)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a test failure already; keep going so the
        // original panic is what gets reported.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Operations performed (or refused after the crash point) so far.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Whether the crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The kinds of the operations performed, in order.
    pub fn op_log(&self) -> Vec<OpKind> {
        self.lock().log.clone()
    }

    /// Stops all further I/O now, as if the machine lost power.
    pub fn crash_now(&self) {
        self.lock().crashed = true;
    }

    /// Admits one operation: counts it, and fails it when the plan says so.
    fn admit(&self, kind: OpKind) -> io::Result<()> {
        let mut s = self.lock();
        if s.crashed {
            return Err(crashed_err());
        }
        s.ops += 1;
        if s.crash_after.is_some_and(|k| s.ops > k) {
            s.crashed = true;
            return Err(crashed_err());
        }
        s.log.push(kind);
        match kind {
            OpKind::Write => {
                s.writes += 1;
                if s.fail_write == Some(s.writes) {
                    return Err(injected_eio("write"));
                }
            }
            OpKind::Sync => {
                s.syncs += 1;
                if s.fail_sync == Some(s.syncs) {
                    return Err(injected_eio("fdatasync"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn track(&self, path: &Path) -> FileTrack {
        self.lock().files.get(path).cloned().unwrap_or_default()
    }

    /// Builds in `out` (an existing empty directory) the image of `live` that a crash
    /// now could leave, per `mode`; `seed` makes the random choices repeatable.
    /// Files the injector never saw (written before it was attached) are copied whole.
    pub fn crash_image(
        &self,
        live: &Path,
        out: &Path,
        mode: CrashMode,
        seed: u64,
    ) -> io::Result<()> {
        let s = self.lock();
        let mut rng = SplitMix(seed);
        for entry in fs::read_dir(live)? {
            let entry = entry?;
            let path = entry.path();
            if !entry.file_type()?.is_file() {
                continue;
            }
            let bytes = fs::read(&path)?;
            let Some(name) = path.file_name() else {
                continue;
            };
            let keep: Option<usize> = match s.files.get(&path) {
                None => Some(bytes.len()),
                Some(t) if t.removed => None,
                Some(t) => {
                    let synced = (t.synced_len as usize).min(bytes.len());
                    let written = (t.written_len as usize).max(synced).min(bytes.len());
                    match mode {
                        CrashMode::DropUnsynced => t.entry_durable.then_some(synced),
                        CrashMode::KeepRandomPrefix => (t.entry_durable
                            || rng.next().is_multiple_of(2))
                        .then(|| synced + rng.below(written - synced + 1)),
                        CrashMode::TornLastWrite => match &s.last_write {
                            Some((p, start, len)) if p == &path => {
                                let start = (*start as usize).min(bytes.len());
                                let torn =
                                    start + rng.below(*len as usize).min(bytes.len() - start);
                                // Bytes a successful fdatasync covered cannot be torn.
                                Some(torn.max(synced))
                            }
                            _ => Some(written),
                        },
                    }
                }
            };
            if let Some(n) = keep {
                fs::write(out.join(name), bytes.get(..n).unwrap_or(&bytes))?;
            }
        }
        Ok(())
    }
}

/// Tiny deterministic PRNG so the library needs no RNG dependency.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A backend wrapped by a [`FaultInjector`].
#[derive(Debug)]
pub(crate) struct FaultIo<I> {
    pub(crate) inner: I,
    pub(crate) faults: Arc<FaultInjector>,
}

#[derive(Debug)]
pub(crate) struct FaultFile<F> {
    inner: F,
    path: PathBuf,
    faults: Arc<FaultInjector>,
}

impl<F: LogFile> LogFile for FaultFile<F> {
    async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        if let Err(e) = self.faults.admit(OpKind::Write) {
            return (Err(e), buf);
        }
        let len = buf.len() as u64;
        let (res, buf) = self.inner.write_all_at(buf, offset).await;
        if res.is_ok() {
            let mut s = self.faults.lock();
            let t = s.files.entry(self.path.clone()).or_default();
            t.written_len = t.written_len.max(offset + len);
            s.last_write = Some((self.path.clone(), offset, len));
        }
        (res, buf)
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.faults.admit(OpKind::Sync)?;
        // Take the watermark before the sync: only writes completed before it are covered.
        let written = self.faults.track(&self.path).written_len;
        self.inner.sync_data().await?;
        let mut s = self.faults.lock();
        let t = s.files.entry(self.path.clone()).or_default();
        t.synced_len = t.synced_len.max(written);
        Ok(())
    }
}

impl<I: LogIo> LogIo for FaultIo<I> {
    type File = FaultFile<I::File>;

    async fn create(&self, path: &Path) -> io::Result<Self::File> {
        self.faults.admit(OpKind::Create)?;
        let inner = self.inner.create(path).await?;
        self.faults
            .lock()
            .files
            .insert(path.to_path_buf(), FileTrack::default());
        Ok(FaultFile {
            inner,
            path: path.to_path_buf(),
            faults: Arc::clone(&self.faults),
        })
    }

    async fn open(&self, path: &Path) -> io::Result<Self::File> {
        self.faults.admit(OpKind::Open)?;
        let inner = self.inner.open(path).await?;
        let len = fs::metadata(path)?.len();
        self.faults.lock().files.insert(
            path.to_path_buf(),
            FileTrack {
                synced_len: len,
                written_len: len,
                entry_durable: true,
                removed: false,
            },
        );
        Ok(FaultFile {
            inner,
            path: path.to_path_buf(),
            faults: Arc::clone(&self.faults),
        })
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.admit(OpKind::SyncDir)?;
        self.inner.sync_dir(dir).await?;
        let mut s = self.faults.lock();
        for (path, t) in s.files.iter_mut() {
            if path.parent() == Some(dir) {
                t.entry_durable = true;
            }
        }
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.admit(OpKind::Remove)?;
        self.inner.remove(path).await?;
        self.faults
            .lock()
            .files
            .entry(path.to_path_buf())
            .or_default()
            .removed = true;
        Ok(())
    }
}
