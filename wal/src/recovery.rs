//! Recovery on open: list the WAL files, verify every frame, cut a torn tail off the
//! newest file, and hand the writer the position to continue from.
//!
//! Rules (also in `docs/format/wal.md`): files must form one contiguous LSN run; a
//! damaged frame followed by a valid frame of a later LSN is corruption in any file;
//! a file's records may end early (torn write, stale frames of a recycled file, zero
//! preallocation) only if the next file starts at exactly the LSN it reached, and in
//! the newest file; a newest file whose header is incomplete was being created when the
//! process died (records are only written after the header and the directory entry are
//! durable), so it is removed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::format::{self, Lsn, ScanError, Tail, HEADER_LEN};

/// Payload length the decoder accepts regardless of the configured write limit, so a
/// lowered `record_bytes_max` never turns old records into "corruption".
pub(crate) const DECODE_RECORD_BYTES_MAX: u32 = 1 << 30;

/// File name suffix of preallocated or recycled spare files (never read for records).
pub(crate) const SPARE_SUFFIX: &str = ".spare";

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// WAL files present after recovery.
    pub files: usize,
    /// Valid records found.
    pub records: u64,
    /// LSN of the oldest retained record (or of the next record when there is none).
    pub oldest_lsn: Lsn,
    /// LSN the next append will get.
    pub next_lsn: Lsn,
    /// Bytes cut from the end of the newest file (torn write or stale frames).
    pub truncated_bytes: u64,
    /// Description of the invalid frame where the newest file's records ended, if the
    /// bytes after them were neither absent nor zero.
    pub torn_tail: Option<String>,
    /// Files removed because their creation never completed.
    pub removed_files: Vec<PathBuf>,
}

/// Where the writer resumes.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Retained files, oldest first, each with its first LSN.
    pub(crate) files: Vec<(Lsn, PathBuf)>,
    /// The newest file to append to; `None` when a new file must be created.
    pub(crate) active: Option<ActiveFile>,
    pub(crate) next_lsn: Lsn,
    /// Spare files ready for reuse.
    pub(crate) spares: Vec<PathBuf>,
    pub(crate) report: RecoveryReport,
}

#[derive(Debug)]
pub(crate) struct ActiveFile {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    /// Where the next frame goes.
    pub(crate) valid_end: u64,
    pub(crate) created_unix_ms: u64,
}

/// WAL files of a directory, each with its first LSN, oldest first.
pub(crate) type FileList = Vec<(Lsn, PathBuf)>;

/// Where a file's records stopped before its end: offset and what was found there.
type EndedEarly = Option<(usize, format::FrameFault)>;

/// Lists `*.wal` files in `dir`, sorted by first LSN, and the spare files.
pub(crate) fn list_files(dir: &Path) -> Result<(FileList, Vec<PathBuf>)> {
    let mut files = Vec::new();
    let mut spares = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(lsn) = format::parse_file_name(name) {
            files.push((lsn, entry.path()));
        } else if name.ends_with(SPARE_SUFFIX) {
            spares.push(entry.path());
        }
    }
    files.sort();
    spares.sort();
    Ok((files, spares))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

pub(crate) fn recover(dir: &Path, first_lsn_if_new: Lsn) -> Result<Recovered> {
    let (mut files, spares) = list_files(dir)?;
    let mut report = RecoveryReport::default();

    // An unfinished creation can only be the newest file.
    if let Some((_, path)) = files.last().cloned() {
        let bytes = fs::read(&path).map_err(|e| WalError::io("read", &path, e))?;
        if format::decode_header(&bytes).is_err() && header_was_never_finished(&bytes) {
            fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            sync_dir(dir)?;
            tracing::warn!(path = %path.display(), "removed WAL file whose creation never completed");
            report.removed_files.push(path);
            files.pop();
        }
    }

    let count = files.len();
    // (next LSN, path, where the records ended early) of the previous file.
    let mut prev: Option<(Lsn, PathBuf, EndedEarly)> = None;
    let mut active = None;
    for (i, (named, path)) in files.iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes = fs::read(path).map_err(|e| WalError::io("read", path, e))?;
        let scan = match format::scan_file(&bytes, DECODE_RECORD_BYTES_MAX) {
            Ok(scan) => scan,
            Err(ScanError::Header(fault)) => {
                return Err(WalError::CorruptHeader {
                    path: path.clone(),
                    fault,
                })
            }
            Err(ScanError::Frame { offset, fault }) => {
                return Err(WalError::CorruptRecord {
                    path: path.clone(),
                    offset: offset as u64,
                    fault,
                })
            }
        };
        if scan.header.first_lsn != *named {
            return Err(WalError::NameMismatch {
                path: path.clone(),
                named: *named,
                header: scan.header.first_lsn,
            });
        }
        match prev.take() {
            Some((expected, prev_path, ended_early)) if *named != expected => {
                // The previous file's records stop short of this file's first LSN. If
                // they stopped at an invalid frame, that frame is the damage.
                return Err(match ended_early {
                    Some((offset, fault)) => WalError::CorruptRecord {
                        path: prev_path,
                        offset: offset as u64,
                        fault,
                    },
                    None => WalError::Gap {
                        path: path.clone(),
                        expected,
                        got: *named,
                    },
                });
            }
            Some(_) => {}
            None => report.oldest_lsn = *named,
        }
        report.records += scan.frames.len() as u64;
        let ended_early = match &scan.tail {
            Tail::Torn { offset, fault } => Some((*offset, fault.clone())),
            Tail::Stale { offset } => Some((
                *offset,
                format::FrameFault::UnexpectedLsn {
                    expected: scan.next_lsn,
                    got: 0,
                },
            )),
            Tail::Clean | Tail::Zeroes => None,
        };
        if is_last {
            let mut valid_end = scan.valid_end as u64;
            let len = bytes.len() as u64;
            if let (Tail::Torn { offset, fault }, Some(_)) = (&scan.tail, &ended_early) {
                let msg = format!("{} at offset {offset}: {fault}", path.display());
                tracing::warn!(torn = %msg, cut_bytes = len - valid_end, "truncating WAL tail");
                report.torn_tail = Some(msg);
                truncate(path, valid_end)?;
                report.truncated_bytes = len - valid_end;
            } else if scan.tail == Tail::Clean {
                valid_end = len;
            }
            active = Some(ActiveFile {
                path: path.clone(),
                first_lsn: *named,
                valid_end,
                created_unix_ms: scan.header.created_unix_ms,
            });
        }
        prev = Some((scan.next_lsn, path.clone(), ended_early));
    }

    let next_lsn = match prev {
        Some((n, _, _)) => n,
        // No file left: continue from the name of a removed unfinished file, if any, so
        // LSNs never go backwards; else this is a brand-new log.
        None => report
            .removed_files
            .first()
            .and_then(|p| p.file_name()?.to_str().and_then(format::parse_file_name))
            .unwrap_or(first_lsn_if_new),
    };
    if files.is_empty() {
        report.oldest_lsn = next_lsn;
    }
    report.files = files.len();
    report.next_lsn = next_lsn;
    Ok(Recovered {
        files,
        active,
        next_lsn,
        spares,
        report,
    })
}

/// A header that fails to decode because it is short, or because the bytes present are
/// a prefix of a header followed by zeros (never-written space), is an unfinished
/// creation. A full-length header with a wrong checksum and non-zero bytes is not.
fn header_was_never_finished(bytes: &[u8]) -> bool {
    if bytes.len() < HEADER_LEN {
        return true;
    }
    let magic_ok = bytes.get(..8) == Some(&format::MAGIC[..]);
    let rest_zero = bytes.get(8..).is_some_and(|r| r.iter().all(|&b| b == 0));
    bytes.iter().all(|&b| b == 0) || (magic_ok && rest_zero)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open for truncation", path, e))?;
    f.set_len(len)
        .map_err(|e| WalError::io("truncate", path, e))?;
    f.sync_all()
        .map_err(|e| WalError::io("fsync after truncate", path, e))
}
