//! The file operations the WAL writer needs, behind one trait with two backends:
//! io_uring (tokio-uring, on the writer thread's own ring) and positional
//! `pwrite` + `fdatasync` through the standard library. The fault-injecting layer in
//! [`crate::fault`] wraps either one.
//!
//! The operations are async so that one writer loop drives both backends; on the
//! pwrite backend each call runs on tokio's blocking pool so that the writer stage
//! and the sync stage still overlap.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open WAL file, written at explicit offsets.
pub(crate) trait LogFile {
    /// Writes all of `buf` at `offset`; returns the buffer for reuse.
    async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>);
    /// `fdatasync`: makes every completed write durable.
    async fn sync_data(&self) -> io::Result<()>;
}

/// Directory-level operations plus file creation.
pub(crate) trait LogIo {
    type File: LogFile;
    /// Creates a new file (fails if it exists), opened for writing.
    async fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for writing.
    async fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// `fsync` of a directory, making created and removed entries durable.
    async fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes a file.
    async fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file within the directory.
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
}

fn join_err(e: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("blocking WAL I/O task failed: {e}"))
}

/// pwrite + fdatasync through `std::fs`.
#[derive(Debug, Default)]
pub(crate) struct PwriteIo;

#[derive(Debug)]
pub(crate) struct PwriteFile {
    file: Arc<fs::File>,
}

impl LogFile for PwriteFile {
    async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        let file = Arc::clone(&self.file);
        let res = tokio::task::spawn_blocking(move || {
            let r = file.write_all_at(&buf, offset);
            (r, buf)
        })
        .await;
        match res {
            Ok(pair) => pair,
            Err(e) => (Err(join_err(e)), Vec::new()),
        }
    }

    async fn sync_data(&self) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(join_err)?
    }
}

impl LogIo for PwriteIo {
    type File = PwriteFile;

    async fn create(&self, path: &Path) -> io::Result<PwriteFile> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(PwriteFile {
            file: Arc::new(file),
        })
    }

    async fn open(&self, path: &Path) -> io::Result<PwriteFile> {
        let file = fs::OpenOptions::new().write(true).open(path)?;
        Ok(PwriteFile {
            file: Arc::new(file),
        })
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir: PathBuf = dir.to_path_buf();
        tokio::task::spawn_blocking(move || fs::File::open(dir)?.sync_all())
            .await
            .map_err(join_err)?
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
}

/// io_uring through tokio-uring. Only usable inside a `tokio_uring` runtime, which the
/// WAL's writer thread runs.
#[derive(Debug, Default)]
pub(crate) struct UringIo;

pub(crate) struct UringFile {
    file: tokio_uring::fs::File,
}

impl std::fmt::Debug for UringFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UringFile")
    }
}

impl LogFile for UringFile {
    async fn write_all_at(&self, buf: Vec<u8>, offset: u64) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.file.write_all_at(buf, offset).await;
        (res, buf)
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data().await
    }
}

impl LogIo for UringIo {
    type File = UringFile;

    async fn create(&self, path: &Path) -> io::Result<UringFile> {
        let file = tokio_uring::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await?;
        Ok(UringFile { file })
    }

    async fn open(&self, path: &Path) -> io::Result<UringFile> {
        let file = tokio_uring::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await?;
        Ok(UringFile { file })
    }

    async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let d = tokio_uring::fs::File::open(dir).await?;
        let r = d.sync_all().await;
        d.close().await?;
        r
    }

    async fn remove(&self, path: &Path) -> io::Result<()> {
        tokio_uring::fs::remove_file(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // A metadata-only call taking microseconds; not worth a ring round trip.
        fs::rename(from, to)
    }
}

/// Starts a tokio-uring runtime and runs one real operation on it (open the WAL
/// directory, fsync it) so that a ring that can be created but not used (seccomp
/// filters on `io_uring_enter`) is also caught. Returns the runtime on success, or a
/// human-readable reason for falling back.
pub(crate) fn probe_uring(dir: &Path) -> Result<tokio_uring::Runtime, String> {
    let rt = tokio_uring::Runtime::new(tokio_uring::builder().entries(256))
        .map_err(|e| describe_uring_error(&e))?;
    let probe = rt.block_on(UringIo.sync_dir(dir));
    match probe {
        Ok(()) => Ok(rt),
        Err(e) => Err(describe_uring_error(&e)),
    }
}

fn describe_uring_error(e: &io::Error) -> String {
    let sysctl = fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .ok();
    let hint = match (e.raw_os_error(), sysctl.as_deref()) {
        (Some(libc::ENOSYS), _) => "the kernel has no io_uring (ENOSYS)".to_string(),
        (Some(libc::EPERM), Some(v)) if v != "0" => {
            format!("io_uring is disabled by sysctl kernel.io_uring_disabled={v} (EPERM)")
        }
        (Some(libc::EPERM), _) => {
            "io_uring is not permitted here (EPERM: seccomp profile or container policy)"
                .to_string()
        }
        (Some(libc::ENOMEM), _) => "not enough locked memory for an io_uring (ENOMEM)".into(),
        _ => "io_uring setup or first operation failed".to_string(),
    };
    format!("{hint}: {e}")
}
