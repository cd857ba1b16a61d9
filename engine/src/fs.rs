//! The engine's file operations that change the data directory (segments, the
//! manifest, template files, the directories they live in), behind one trait so a
//! test can put a fault-injecting implementation in their place ([`fault`]) and
//! crash the engine after any of them.
//!
//! Durability rules every caller keeps through the helpers here:
//! - a file is published by [`write_atomic`]: written to a temporary name, fsynced,
//!   renamed over its final name, and its directory fsynced, so a crash leaves the old
//!   file or the new one, whole;
//! - a directory is created by [`create_dir_all`], which fsyncs the parent of each
//!   directory it creates: a file is durable only once every directory on its path
//!   is (a power loss can otherwise drop a new day's directory with the segment the
//!   manifest already lists in it);
//! - a removal is made durable by the next fsync of its directory; a removal that a
//!   crash undoes leaves an orphan, which the next open sweeps.
//!
//! The WAL has its own I/O layer (`wal::fault`); reads (mmap of segments, manifest
//! and template loads) go to the real files directly.

pub mod fault;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// File operations that change the data directory; see the module docs.
pub trait Fs: Send + Sync + std::fmt::Debug {
    /// Creates one directory (its parent exists).
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Creates or truncates `path`, writes `bytes`, fsyncs the file.
    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Renames within one directory, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Fsyncs a directory: its entries' creations, renames and removals are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl Fs for RealFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Bytes free for an unprivileged writer on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// A failed file operation: what, on which path, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed on {}: {source}", path.display())]
pub struct FsError {
    /// What was being done.
    pub op: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FsError {
    let path = path.to_path_buf();
    move |source| FsError { op, path, source }
}

/// Creates `dir` and its missing parents, fsyncing the parent of each one created
/// (see the module docs).
pub fn create_dir_all(fs: &dyn Fs, dir: &Path) -> Result<(), FsError> {
    // The missing ancestors, nearest first (no recursion: paths come from outside).
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && !d.is_dir() {
        missing.push(d);
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs.create_dir(d) {
            Ok(()) => {}
            // Another thread made it: its creator syncs the parent.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(at("create directory", d)(e)),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(at("fsync directory", parent))?;
        }
    }
    Ok(())
}

/// Publishes `bytes` as `path`: temporary file, fsync, rename, directory fsync.
pub fn write_atomic(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs.write_file(&tmp, bytes).map_err(at("write", &tmp))?;
    fs.rename(&tmp, path).map_err(at("rename", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs.sync_dir(dir).map_err(at("fsync directory", dir))
}

/// Removes `path` and fsyncs its directory.
pub fn remove_durably(fs: &dyn Fs, path: &Path) -> Result<(), FsError> {
    fs.remove_file(path).map_err(at("remove", path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs.sync_dir(dir).map_err(at("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_makes_every_level_and_tolerates_existing_ones() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        create_dir_all(&RealFs, &deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&RealFs, &deep).unwrap();
        write_atomic(&RealFs, &deep.join("f"), b"x").unwrap();
        assert_eq!(std::fs::read(deep.join("f")).unwrap(), b"x");
        assert!(!deep.join("f.tmp").exists());
    }
}
