//! Recovery on open: list the WAL files, verify every frame, cut a torn tail off the
//! newest file, and hand the writer the position to continue from.
//!
//! Rules (also in `docs/format/wal.md`): files must form one contiguous LSN run; any
//! damage in a file other than the newest is corruption; in the newest file a damaged
//! frame with no valid later frame is a torn tail and is truncated; a newest file whose
//! header is incomplete was being created when the process died (records are only
//! written after the header and the directory entry are durable), so it is removed.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::format::{self, Lsn, ScanError, Tail, HEADER_LEN};

/// Payload length the decoder accepts regardless of the configured write limit, so a
/// lowered `record_bytes_max` never turns old records into "corruption".
pub(crate) const DECODE_RECORD_BYTES_MAX: u32 = 1 << 30;

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
    /// Bytes cut from the end of the newest file (torn tail or zero padding).
    pub truncated_bytes: u64,
    /// Description of the torn frame that was cut, if any.
    pub torn_tail: Option<String>,
    /// Files removed because their creation never completed.
    pub removed_files: Vec<PathBuf>,
}

/// Where the writer resumes.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Retained files, oldest first, each with its first LSN.
    pub(crate) files: Vec<(Lsn, PathBuf)>,
    /// The newest file to append to, its valid length and creation time; `None` when a
    /// new file must be created.
    pub(crate) active: Option<ActiveFile>,
    pub(crate) next_lsn: Lsn,
    pub(crate) report: RecoveryReport,
}

#[derive(Debug)]
pub(crate) struct ActiveFile {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    pub(crate) valid_end: u64,
    pub(crate) created_unix_ms: u64,
}

/// Lists `*.wal` files in `dir`, sorted by first LSN.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>> {
    let mut files = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| WalError::io("list directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list directory", dir, e))?;
        let name = entry.file_name();
        if let Some(lsn) = name.to_str().and_then(format::parse_file_name) {
            files.push((lsn, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

pub(crate) fn recover(dir: &Path, first_lsn_if_new: Lsn) -> Result<Recovered> {
    let mut files = list_files(dir)?;
    let mut report = RecoveryReport::default();

    // An unfinished creation can only be the newest file.
    if let Some((_, path)) = files.last().cloned() {
        let bytes = fs::read(&path).map_err(|e| WalError::io("read", &path, e))?;
        if format::decode_header(&bytes).is_err() && header_was_never_finished(&bytes) {
            fs::remove_file(&path).map_err(|e| WalError::io("remove", &path, e))?;
            sync_dir(dir)?;
            report.removed_files.push(path.clone());
            files.pop();
            tracing::warn!(path = %path.display(), "removed WAL file whose creation never completed");
        }
    }

    let count = files.len();
    let mut next_lsn: Option<Lsn> = None;
    let mut active = None;
    for (i, (named, path)) in files.iter().enumerate() {
        let is_last = i + 1 == count;
        let bytes = fs::read(path).map_err(|e| WalError::io("read", path, e))?;
        let scan = match format::scan_file(&bytes, is_last, DECODE_RECORD_BYTES_MAX) {
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
        if let Some(expected) = next_lsn {
            if *named != expected {
                return Err(WalError::Gap {
                    path: path.clone(),
                    expected,
                    got: *named,
                });
            }
        } else {
            report.oldest_lsn = *named;
        }
        report.records += scan.frames.len() as u64;
        next_lsn = Some(scan.next_lsn);
        if is_last {
            let valid_end = scan.valid_end as u64;
            let len = bytes.len() as u64;
            if len > valid_end {
                if let Tail::Torn { offset, fault } = &scan.tail {
                    let msg = format!("{} at offset {offset}: {fault}", path.display());
                    tracing::warn!(torn = %msg, cut_bytes = len - valid_end, "truncating torn WAL tail");
                    report.torn_tail = Some(msg);
                }
                truncate(path, valid_end)?;
                report.truncated_bytes = len - valid_end;
            }
            active = Some(ActiveFile {
                path: path.clone(),
                first_lsn: *named,
                valid_end,
                created_unix_ms: scan.header.created_unix_ms,
            });
        }
    }

    let next_lsn = match next_lsn {
        Some(n) => n,
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
    // Records are only written after the header is durable, so an unfinished creation
    // has nothing beyond the header but zeros.
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
