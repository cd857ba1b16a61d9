//! A fault-injecting layer over a real I/O backend, for crash and failure tests.
//!
//! Every operation still reaches the real files, so the backend under test (pwrite or
//! io_uring) is exercised. The injector counts operations, can stop the world after the
//! k-th one (a simulated power loss: later operations fail and do nothing), can fail one
//! chosen write or fsync, and keeps what a power loss could take back:
//!
//! - per file (inode), an undo log of the writes not yet covered by a successful
//!   `fdatasync` (the bytes each overwrote and the length before it);
//! - the directory as of the last successful directory fsync, and the entry operations
//!   (create, rename, remove) since, with the content of removed files.
//!
//! From that it builds the disk image a crash could leave ([`CrashMode`]), in the spirit
//! of redb's crash-consistency tests ("live" vs "durable" images).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
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
    /// File rename.
    Rename,
}

/// What a power loss keeps of what was not yet made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only what a successful fdatasync / directory fsync covered survives.
    DropUnsynced,
    /// A random prefix of the unsynced writes of each file survives (the last kept one
    /// possibly cut), and a random prefix of the unsynced directory operations.
    KeepRandomPrefix,
    /// Everything survives except the very last write, which is cut at a random byte.
    TornLastWrite,
}

type Inode = u64;

#[derive(Debug, Clone)]
struct Undo {
    offset: u64,
    /// Bytes the write overwrote (up to the old length).
    old: Vec<u8>,
    /// File length before the write.
    old_len: u64,
    /// Bytes written.
    len: u64,
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(OsString, Inode),
    Rename(OsString, OsString),
    Remove(OsString),
}

#[derive(Debug, Default)]
struct State {
    ops: u64,
    writes: u64,
    syncs: u64,
    crash_after: Option<u64>,
    fail_write: Option<u64>,
    fail_sync: Option<u64>,
    fail_spare_writes: bool,
    crashed: bool,
    log: Vec<OpKind>,
    next_inode: Inode,
    /// Live directory: name -> inode (only files the injector has seen).
    live: BTreeMap<OsString, Inode>,
    /// Directory as of the last directory fsync.
    durable: BTreeMap<OsString, Inode>,
    /// Entry operations since the last directory fsync, in order.
    pending: Vec<DirOp>,
    /// Unsynced writes per inode, oldest first.
    undo: BTreeMap<Inode, Vec<Undo>>,
    /// Content of removed inodes (a crash may bring the entry back).
    removed: BTreeMap<Inode, Vec<u8>>,
    /// The last write: (inode, index in its undo log) if still unsynced.
    last_write: Option<(Inode, usize)>,
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

fn name_of(path: &Path) -> OsString {
    path.file_name().map(OsString::from).unwrap_or_default()
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

    /// A plan where every write to a spare file (preallocation) fails with EIO.
    pub fn fail_writes_to_spares() -> Arc<Self> {
        let f = FaultInjector::default();
        f.lock().fail_spare_writes = true;
        Arc::new(f)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a test failure already; keep going so the
        // original panic is what gets reported.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the crash point has been reached.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The kinds of the operations performed, in order.
    pub fn op_log(&self) -> Vec<OpKind> {
        self.lock().log.clone()
    }

    /// Admits one operation: counts it, and fails it when the plan says so.
    fn admit(&self, kind: OpKind) -> io::Result<()> {
        self.admit_at(kind, None)
    }

    fn admit_at(&self, kind: OpKind, inode: Option<Inode>) -> io::Result<()> {
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
                let to_spare = inode.is_some_and(|i| {
                    s.live.iter().any(|(name, n)| {
                        *n == i
                            && name
                                .to_string_lossy()
                                .ends_with(crate::recovery::SPARE_SUFFIX)
                    })
                });
                if s.fail_spare_writes && to_spare {
                    return Err(injected_eio("spare write"));
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

    /// The inode behind `path`, registering a file the injector has not seen (written
    /// before it was attached, hence durable) on first sight.
    fn inode(&self, path: &Path) -> Inode {
        let mut s = self.lock();
        let name = name_of(path);
        if let Some(i) = s.live.get(&name) {
            return *i;
        }
        s.next_inode += 1;
        let i = s.next_inode;
        s.live.insert(name.clone(), i);
        s.durable.insert(name, i);
        i
    }

    /// Builds in `out` (an existing empty directory) the image of `live` that a crash
    /// now could leave, per `mode`; `seed` makes the random choices repeatable. Files
    /// the injector never saw are copied whole.
    pub fn crash_image(
        &self,
        live: &Path,
        out: &Path,
        mode: CrashMode,
        seed: u64,
    ) -> io::Result<()> {
        let s = self.lock();
        let mut rng = SplitMix(seed);
        // Current content of every inode, and of untracked files by name.
        let mut content: BTreeMap<Inode, Vec<u8>> = s.removed.clone();
        let mut untracked = Vec::new();
        for entry in fs::read_dir(live)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let bytes = fs::read(entry.path())?;
            match s.live.get(&name) {
                Some(i) => {
                    content.insert(*i, bytes);
                }
                None => untracked.push((name, bytes)),
            }
        }
        // Undo unsynced writes per the mode.
        for (inode, undos) in &s.undo {
            let Some(bytes) = content.get_mut(inode) else {
                continue;
            };
            let keep_from = match mode {
                CrashMode::DropUnsynced => Some((0, None)),
                CrashMode::KeepRandomPrefix => {
                    let k = rng.below(undos.len() + 1);
                    let cut = undos.get(k).map(|u| rng.below(u.len as usize + 1) as u64);
                    Some((k, cut))
                }
                CrashMode::TornLastWrite => match s.last_write {
                    Some((i, idx)) if i == *inode => {
                        let cut = undos
                            .get(idx)
                            .map(|u| rng.below(u.len.max(1) as usize) as u64);
                        Some((idx, cut))
                    }
                    _ => None,
                },
            };
            let Some((k, cut)) = keep_from else { continue };
            // Undo writes k+1.. fully (newest first), then write k from `cut` on.
            for (idx, u) in undos.iter().enumerate().skip(k).rev() {
                let from = if idx == k { cut.unwrap_or(0) } else { 0 };
                undo_write(bytes, u, from);
            }
        }
        // Choose the directory.
        let mut dir = s.durable.clone();
        let keep_ops = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepRandomPrefix => rng.below(s.pending.len() + 1),
            CrashMode::TornLastWrite => s.pending.len(),
        };
        for op in s.pending.iter().take(keep_ops) {
            match op {
                DirOp::Create(name, i) => {
                    dir.insert(name.clone(), *i);
                }
                DirOp::Rename(from, to) => {
                    if let Some(i) = dir.remove(from) {
                        dir.insert(to.clone(), i);
                    }
                }
                DirOp::Remove(name) => {
                    dir.remove(name);
                }
            }
        }
        for (name, inode) in dir {
            let bytes = content.get(&inode).map(Vec::as_slice).unwrap_or(&[]);
            fs::write(out.join(name), bytes)?;
        }
        for (name, bytes) in untracked {
            fs::write(out.join(name), bytes)?;
        }
        Ok(())
    }
}

/// Restores the bytes a write replaced, from `from` bytes into the write on.
fn undo_write(bytes: &mut Vec<u8>, u: &Undo, from: u64) {
    let start = u.offset + from;
    let end = u.offset + u.len;
    for pos in start..end {
        let p = pos as usize;
        if pos < u.old_len {
            if let (Some(b), Some(old)) = (bytes.get_mut(p), u.old.get((pos - u.offset) as usize)) {
                *b = *old;
            }
        }
    }
    // A write that extended the file: the extension beyond what is kept goes away.
    if end > u.old_len {
        let keep = if from == 0 {
            u.old_len
        } else {
            start.max(u.old_len)
        } as usize;
        if bytes.len() > keep {
            bytes.truncate(keep);
        }
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
    inode: Inode,
    /// A read handle for saving the bytes a write replaces.
    reader: fs::File,
    faults: Arc<FaultInjector>,
}

impl<F: LogFile> LogFile for FaultFile<F> {
    async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        if let Err(e) = self.faults.admit_at(OpKind::Write, Some(self.inode)) {
            return (Err(e), buf);
        }
        let old_len = match self.reader.metadata() {
            Ok(m) => m.len(),
            Err(e) => return (Err(e), buf),
        };
        let len = buf.len() as u64;
        let overlap = old_len.saturating_sub(offset).min(len) as usize;
        let mut old = vec![0u8; overlap];
        if let Err(e) = self.reader.read_exact_at(&mut old, offset) {
            return (Err(e), buf);
        }
        let (res, buf) = self.inner.write_all_at(buf, offset).await;
        if res.is_ok() {
            let mut s = self.faults.lock();
            let undos = s.undo.entry(self.inode).or_default();
            undos.push(Undo {
                offset,
                old,
                old_len,
                len,
            });
            let idx = undos.len() - 1;
            s.last_write = Some((self.inode, idx));
        }
        (res, buf)
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.faults.admit(OpKind::Sync)?;
        // Only writes completed before the sync started are covered by it.
        let covered = self.faults.lock().undo.get(&self.inode).map_or(0, Vec::len);
        self.inner.sync_data().await?;
        let mut s = self.faults.lock();
        if let Some(undos) = s.undo.get_mut(&self.inode) {
            undos.drain(..covered.min(undos.len()));
        }
        if let Some((i, idx)) = s.last_write {
            if i == self.inode {
                s.last_write = idx.checked_sub(covered).map(|n| (i, n));
            }
        }
        Ok(())
    }
}

impl<I: LogIo> FaultIo<I> {
    fn wrap(&self, inner: I::File, path: &Path, inode: Inode) -> io::Result<FaultFile<I::File>> {
        Ok(FaultFile {
            inner,
            inode,
            reader: fs::File::open(path)?,
            faults: Arc::clone(&self.faults),
        })
    }
}

impl<I: LogIo> LogIo for FaultIo<I> {
    type File = FaultFile<I::File>;

    async fn create(&self, path: &Path) -> io::Result<Self::File> {
        self.faults.admit(OpKind::Create)?;
        let inner = self.inner.create(path).await?;
        let inode = {
            let mut s = self.faults.lock();
            s.next_inode += 1;
            let i = s.next_inode;
            let name = name_of(path);
            s.live.insert(name.clone(), i);
            s.pending.push(DirOp::Create(name, i));
            i
        };
        self.wrap(inner, path, inode)
    }

    async fn open(&self, path: &Path) -> io::Result<Self::File> {
        self.faults.admit(OpKind::Open)?;
        let inner = self.inner.open(path).await?;
        let inode = self.faults.inode(path);
        self.wrap(inner, path, inode)
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.admit(OpKind::SyncDir)?;
        self.inner.sync_dir(dir).await?;
        let mut s = self.faults.lock();
        s.durable = s.live.clone();
        s.pending.clear();
        Ok(())
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.admit(OpKind::Remove)?;
        let inode = self.faults.inode(path);
        let content = fs::read(path)?;
        self.inner.remove(path).await?;
        let mut s = self.faults.lock();
        let name = name_of(path);
        s.live.remove(&name);
        s.pending.push(DirOp::Remove(name));
        s.removed.insert(inode, content);
        Ok(())
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.admit(OpKind::Rename)?;
        let inode = self.faults.inode(from);
        self.inner.rename(from, to).await?;
        let mut s = self.faults.lock();
        let (f, t) = (name_of(from), name_of(to));
        s.live.remove(&f);
        s.live.insert(t.clone(), inode);
        s.pending.push(DirOp::Rename(f, t));
        Ok(())
    }
}
