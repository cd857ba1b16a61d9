//! A fault-injecting [`Fs`] for crash tests of the layers above the WAL (flush,
//! compaction, offload, retention, template persistence).
//!
//! Every operation reaches the real files. The injector counts operations and can
//! "lose power" after the k-th: later ones fail and do nothing. It tracks what a
//! power loss could take back: entry operations (creations, renames, removals) not
//! yet covered by an fsync of their directory, with what they replaced or removed.
//! [`FaultyFs::power_loss`] then undoes them on disk, newest first, leaving the image
//! a real power loss could leave. File contents are always written and fsynced
//! together ([`Fs::write_file`]), so a file that survives is whole.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{Fs, RealFs};

#[derive(Debug)]
enum Pending {
    Created {
        path: PathBuf,
        dir: bool,
    },
    Renamed {
        from: PathBuf,
        to: PathBuf,
        replaced: Option<Vec<u8>>,
    },
    Removed {
        path: PathBuf,
        content: Vec<u8>,
    },
}

impl Pending {
    fn parent(&self) -> Option<&Path> {
        match self {
            Pending::Created { path, .. } | Pending::Removed { path, .. } => path.parent(),
            Pending::Renamed { to, .. } => to.parent(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    ops: u64,
    crash_after: Option<u64>,
    crashed: bool,
    /// Fail only this operation (1-based), with this OS error, and go on.
    fail_op: Option<(u64, i32)>,
    /// Every operation so far: "kind path".
    log: Vec<String>,
    pending: Vec<Pending>,
}

/// The fault-injecting file system; see the module docs.
#[derive(Debug, Default)]
pub struct FaultyFs {
    state: Mutex<State>,
}

fn crashed() -> io::Error {
    io::Error::other("simulated power loss: no further file operations")
}

impl FaultyFs {
    /// No faults planned yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses power after operation `k` (0: before the first).
    pub fn crash_after(&self, k: u64) {
        let mut st = self.state();
        st.crash_after = Some(k);
        st.crashed = st.ops >= k;
    }

    /// Fails operation `k` (1-based, counted from the start) with OS error `errno`
    /// (e.g. `libc::ENOSPC`), without doing it; later ones run normally.
    pub fn fail_op(&self, k: u64, errno: i32) {
        self.state().fail_op = Some((k, errno));
    }

    /// Operations started so far.
    pub fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Whether the simulated power loss happened.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Every operation so far, `"kind path"`, in order.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// Starts operation `what` on `path`: counts it, or refuses it after the crash.
    fn begin(&self, what: &str, path: &Path) -> io::Result<MutexGuard<'_, State>> {
        let mut st = self.state();
        if st.crashed {
            return Err(crashed());
        }
        st.ops += 1;
        let n = st.ops;
        if st.crash_after.is_some_and(|k| n > k) {
            st.crashed = true;
            return Err(crashed());
        }
        st.log.push(format!("{what} {}", path.display()));
        if let Some((k, errno)) = st.fail_op {
            if k == n {
                return Err(io::Error::from_raw_os_error(errno));
            }
        }
        Ok(st)
    }

    /// Undoes on disk every entry operation no directory fsync covered, newest
    /// first: the image a power loss at this point could leave. Call it once the
    /// engine is dropped.
    pub fn power_loss(&self) -> io::Result<()> {
        self.power_loss_keeping(0)
    }

    /// Entry operations no directory fsync covered yet.
    pub fn unsynced(&self) -> usize {
        self.state().pending.len()
    }

    /// [`Self::power_loss`] where the oldest `keep` of the unsynced entry
    /// operations happened to reach the disk (a file system may write directory
    /// blocks back before any fsync asks it to).
    pub fn power_loss_keeping(&self, keep: usize) -> io::Result<()> {
        let mut st = self.state();
        st.crashed = true;
        while st.pending.len() > keep {
            let Some(p) = st.pending.pop() else { break };
            match p {
                Pending::Created { path, dir: true } => match std::fs::remove_dir_all(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
                Pending::Created { path, dir: false } => match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                },
                Pending::Renamed { from, to, replaced } => {
                    std::fs::rename(&to, &from)?;
                    if let Some(old) = replaced {
                        std::fs::write(&to, old)?;
                    }
                }
                Pending::Removed { path, content } => std::fs::write(&path, content)?,
            }
        }
        Ok(())
    }
}

impl Fs for FaultyFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin("create_dir", path)?;
        RealFs.create_dir(path)?;
        st.pending.push(Pending::Created {
            path: path.to_path_buf(),
            dir: true,
        });
        Ok(())
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.begin("write", path)?;
        let existed = path.exists();
        RealFs.write_file(path, bytes)?;
        if !existed {
            st.pending.push(Pending::Created {
                path: path.to_path_buf(),
                dir: false,
            });
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.begin("rename", to)?;
        if from.parent() != to.parent() {
            return Err(io::Error::other("the engine renames within one directory"));
        }
        let replaced = match std::fs::read(to) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        RealFs.rename(from, to)?;
        st.pending.push(Pending::Renamed {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            replaced,
        });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.begin("remove", path)?;
        let content = std::fs::read(path)?;
        RealFs.remove_file(path)?;
        st.pending.push(Pending::Removed {
            path: path.to_path_buf(),
            content,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.begin("sync_dir", dir)?;
        RealFs.sync_dir(dir)?;
        st.pending.retain(|p| p.parent() != Some(dir));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{create_dir_all, remove_durably, write_atomic};
    use super::*;

    #[test]
    fn power_loss_undoes_what_no_directory_fsync_covered() {
        let d = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let root = d.path();
        // Durable: the directory and the file in it.
        create_dir_all(&fs, &root.join("a")).unwrap();
        write_atomic(&fs, &root.join("a/kept"), b"v1").unwrap();
        // Not durable: a file written without the directory fsync, a replacement
        // rename, a removal.
        fs.write_file(&root.join("a/new"), b"n").unwrap();
        fs.write_file(&root.join("a/kept.tmp"), b"v2").unwrap();
        fs.rename(&root.join("a/kept.tmp"), &root.join("a/kept"))
            .unwrap();
        std::fs::write(root.join("old"), b"o").unwrap();
        fs.remove_file(&root.join("old")).unwrap();
        // A directory whose parent was never fsynced takes its synced files along.
        fs.create_dir(&root.join("b")).unwrap();
        write_atomic(&fs, &root.join("b/f"), b"f").unwrap();
        fs.power_loss().unwrap();
        assert_eq!(std::fs::read(root.join("a/kept")).unwrap(), b"v1");
        assert!(!root.join("a/new").exists());
        assert!(!root.join("a/kept.tmp").exists());
        assert_eq!(std::fs::read(root.join("old")).unwrap(), b"o");
        assert!(!root.join("b").exists());
        assert!(fs.write_file(&root.join("x"), b"").is_err(), "no I/O after");
    }

    #[test]
    fn a_crash_point_stops_every_later_operation() {
        let d = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        fs.crash_after(2);
        fs.write_file(&d.path().join("1"), b"").unwrap();
        fs.sync_dir(d.path()).unwrap();
        assert!(fs.write_file(&d.path().join("3"), b"").is_err());
        assert!(fs.crashed());
        assert!(!d.path().join("3").exists());
        assert!(remove_durably(&fs, &d.path().join("1")).is_err());
        assert_eq!(fs.ops(), 3);
    }
}
