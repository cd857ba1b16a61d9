//! The manifest: the list of published segments and the WAL checkpoint, in one JSON
//! file replaced atomically (write temp, fsync, rename, fsync directory). A segment
//! exists for readers exactly when the manifest lists it; every record below
//! `checkpoint_lsn` is in a listed segment.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest in the data directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// One published segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Tenant of its records.
    pub tenant: String,
    /// Time partition (UTC day, `YYYYMMDD`).
    pub partition: String,
    /// Path relative to the data directory.
    pub file: String,
    /// Rows.
    pub rows: u64,
    /// Smallest `_time`.
    pub min_time: i64,
    /// Largest `_time`.
    pub max_time: i64,
    /// File size.
    pub bytes: u64,
    /// Set once the segment is in the object store (and no longer on local disk):
    /// its object has the same name as `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offloaded: Option<Offloaded>,
    /// The stream labels of its records, `name=value`, sorted and distinct, when
    /// there are at most [`LABELS_MAX`] (none listed: unknown). Queries that
    /// require a label skip segments that do not have it without opening them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Bytes its records take in memory (the memtable's estimate,
    /// [`crate::memtable::record_bytes`]), when known: compaction plans its merges
    /// within a memory budget by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_bytes: Option<u64>,
}

/// Most distinct stream labels a manifest entry lists.
pub const LABELS_MAX: usize = 256;

impl SegmentEntry {
    /// Whether the segment may hold records with every one of these labels
    /// (`name=value`): false only when its label list is known and lacks one.
    pub fn may_have_labels(&self, required: &[String]) -> bool {
        match &self.labels {
            None => true,
            Some(have) => required.iter().all(|l| have.binary_search(l).is_ok()),
        }
    }
}

/// An offloaded segment's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offloaded {
    /// CRC-32 of the whole object, checked after the upload.
    pub crc32: u32,
    /// When it was offloaded, nanoseconds since the epoch.
    pub at: i64,
    /// Where the index directory starts (the footer when there is no index): a
    /// reader opens the object with one GET of the bytes from here to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail_from: Option<u64>,
    /// The segment's format version (from its header, checked at offload), so the
    /// header needs no request of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u16>,
}

impl SegmentEntry {
    /// The entry of a local segment file `file` (relative to the data directory)
    /// of `partition`, `bytes` long, with footer `footer`.
    pub fn local(
        footer: &crate::segment::Footer,
        partition: &str,
        file: String,
        bytes: u64,
        labels: Option<Vec<String>>,
    ) -> SegmentEntry {
        SegmentEntry {
            tenant: footer.tenant.clone(),
            partition: partition.to_string(),
            file,
            rows: footer.rows,
            min_time: footer.min_time().unwrap_or(0),
            max_time: footer.max_time().unwrap_or(0),
            bytes,
            offloaded: None,
            labels,
            mem_bytes: None,
        }
    }

    /// Bytes its records take in memory: as recorded, or (entries written before
    /// it was) estimated from the file size, generously (log segments compress
    /// about 10 to 20 times).
    pub fn memory_bytes(&self) -> u64 {
        self.mem_bytes.unwrap_or(self.bytes.saturating_mul(16))
    }

    /// Whether the segment is on local disk.
    pub fn is_local(&self) -> bool {
        self.offloaded.is_none()
    }
}

/// The manifest's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every WAL record below this LSN is in a listed segment.
    pub checkpoint_lsn: u64,
    /// Sequence number for the next segment file name.
    pub next_segment: u64,
    /// Published segments.
    pub segments: Vec<SegmentEntry>,
    /// Raw input bytes of every record in the listed segments.
    #[serde(default)]
    pub raw_bytes: u64,
    /// Producers' recent batches as of the checkpoint ([`crate::dedup`]).
    #[serde(default)]
    pub producers: crate::dedup::Producers,
    /// Source positions as of the checkpoint (see [`crate::engine::Engine::position`]).
    #[serde(default)]
    pub positions: std::collections::BTreeMap<String, SourcePosition>,
    /// The template miners' state as of the checkpoint: a file under the data
    /// directory (and an object of that name once offloading put it there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<String>,
}

/// Where the stored records of a numbered source (a Kafka partition) end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourcePosition {
    /// The source position of the first record of the last batch stored.
    pub first: u64,
    /// The source position after the last record stored.
    pub next: u64,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            checkpoint_lsn: 1,
            next_segment: 1,
            segments: Vec::new(),
            raw_bytes: 0,
            producers: Default::default(),
            positions: Default::default(),
            templates: None,
        }
    }
}

/// Manifest errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// I/O failed.
    #[error("manifest {op} failed on {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse or has an unknown version.
    #[error("corrupt manifest {}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl Manifest {
    /// Loads the manifest of `dir`, or the empty one when there is none yet.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        Ok(Manifest::load_existing(dir)?.unwrap_or_default())
    }

    /// Loads the manifest of `dir`; `None` when there is none.
    pub fn load_existing(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ManifestError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Manifest::parse(&text, &path).map(Some)
    }

    /// Parses a manifest's JSON (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let path = path.to_path_buf();
        let m: Manifest = serde_json::from_str(text).map_err(|e| ManifestError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        if m.version != MANIFEST_VERSION {
            return Err(ManifestError::Corrupt {
                path,
                what: format!(
                    "version {} (this build reads {MANIFEST_VERSION})",
                    m.version
                ),
            });
        }
        Ok(m)
    }

    /// The manifest kept in the object store: the offloaded segments only (no
    /// checkpoint, producers or positions: those describe local state).
    pub fn remote(&self) -> Manifest {
        Manifest {
            checkpoint_lsn: 1,
            segments: self
                .segments
                .iter()
                .filter(|s| !s.is_local())
                .cloned()
                .collect(),
            raw_bytes: 0,
            producers: Default::default(),
            positions: Default::default(),
            ..self.clone()
        }
    }

    /// Bytes of the segments on local disk.
    pub fn local_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.is_local())
            .map(|s| s.bytes)
            .sum()
    }

    /// Publishes this manifest in `dir` atomically ([`crate::fs::write_atomic`]).
    pub fn publish(&self, fs: &dyn crate::fs::Fs, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let text = serde_json::to_vec(self).map_err(|e| ManifestError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        crate::fs::write_atomic(fs, &path, &text).map_err(|e| ManifestError::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        })
    }
}
