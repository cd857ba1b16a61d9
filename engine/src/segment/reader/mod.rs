//! Reading a segment: map the file, verify magic, version and footer checksum once,
//! then decode single column chunks on demand, each CRC-checked before decoding.
//!
//! - `source`: where the bytes are (a mapped file, an offloaded object);
//! - `lookup`: index lookups (terms, integers, their postings and ordinals);
//! - `matching`: `_msg` conditions decided on template ids and ordinals;
//! - `records`: column chunks decoded into values and records.
//!
//! This file opens a segment (header, footer, index directory, each checked)
//! and holds what the others share.

mod lookup;
mod matching;
mod records;
mod source;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::index::{decode_directory, Directory, FrameRef, Want};
use super::layout::{
    footer_crc32, ColumnKind, Footer, FORMAT_VERSION, HEADER_LEN, MAGIC, OLDEST_SUPPORTED_VERSION,
    TAIL_LEN,
};
use super::message::Template;
use super::SegmentError;
use crate::mmap;
use crate::tier::Tier;

pub use lookup::IndexSizes;
use matching::Vocab;
pub use matching::{is_template_word, MsgMatchers, MsgPredicate};
pub use records::{ColumnBlock, StrColumn, Values};
use source::{Source, REMOTE_TAIL};

/// An open segment.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    src: Source,
    footer: Footer,
    /// The index directory: where each term and integer block is.
    dir: Directory,
    /// The format version.
    version: u16,
    /// The templates and (format version 4 on) each one's blocks, decoded when a
    /// `_msg` chunk or a word is first read.
    templates: OnceLock<(Vec<Template>, Vec<roaring::RoaringBitmap>)>,
    /// The templates' words, indexed, built when a query first asks for a word.
    vocab: OnceLock<Vocab>,
    /// Per term block, the text of each entry that is a `_msg` token, decoded when
    /// a message needs one of them.
    term_texts: Vec<OnceLock<Vec<Option<Box<str>>>>>,
    /// Per integer block, its values, decoded on demand.
    int_values: Vec<OnceLock<Vec<u64>>>,
}

/// The rows (of `n`) that have a value, given a chunk's presence bitmap.
fn present_rows(present: &Option<Vec<bool>>, n: usize) -> Vec<usize> {
    match present {
        None => (0..n).collect(),
        Some(p) => p
            .iter()
            .enumerate()
            .filter(|(_, x)| **x)
            .map(|(i, _)| i)
            .collect(),
    }
}

impl SegmentReader {
    /// Opens and verifies the file's frame (magic, version, footer checksum).
    pub fn open(path: impl AsRef<Path>) -> Result<SegmentReader, SegmentError> {
        let path = path.as_ref().to_path_buf();
        let file = fs::File::open(&path).map_err(|source| SegmentError::Io {
            op: "open",
            path: path.clone(),
            source,
        })?;
        let map = mmap::map(&file).map_err(|source| SegmentError::Io {
            op: "mmap",
            path: path.clone(),
            source,
        })?;
        SegmentReader::parse(path, Source::Local(bytes::Bytes::from_owner(map)))
    }

    /// Opens offloaded segment `object` (`size` bytes) through `tier`. With `hint`
    /// = (where the index directory starts, format version), from the manifest: one
    /// GET of the index directory, footer and tail, and the header made from the
    /// version. Without: the header and the last 64 KiB (footer, usually the index
    /// directory), concurrently. Every other byte range is fetched when a query
    /// first needs it. Errors name the object as `<url>/<object>`.
    pub fn open_remote(
        tier: std::sync::Arc<Tier>,
        object: &str,
        size: u64,
        hint: Option<(u64, u16)>,
    ) -> Result<SegmentReader, SegmentError> {
        let path = PathBuf::from(format!("{}/{object}", tier.cfg.url.trim_end_matches('/')));
        let (tail_start, head) = match hint {
            Some((from, version)) if from >= HEADER_LEN as u64 && from < size => {
                let mut h = Vec::with_capacity(HEADER_LEN);
                h.extend_from_slice(&MAGIC);
                h.extend_from_slice(&version.to_le_bytes());
                h.resize(HEADER_LEN, 0);
                (from, Some(bytes::Bytes::from(h)))
            }
            _ => (size - size.min(REMOTE_TAIL), None),
        };
        let tail_len = size - tail_start;
        // The header too, in the same round trip (it is read first by `parse`).
        let head_len = (HEADER_LEN as u64).min(tail_start);
        let mut ranges = vec![(tail_start, tail_len)];
        if head_len > 0 && head.is_none() {
            ranges.push((0, head_len));
        }
        let mut got = tier
            .read_many(object, &ranges, true)
            .map_err(|source| SegmentError::Remote {
                path: path.clone(),
                source: Box::new(source),
            })?
            .into_iter();
        let tail = got.next().unwrap_or_default();
        let src = Source::Remote {
            tier,
            object: object.to_string(),
            size,
            head,
            tail,
            tail_start,
        };
        SegmentReader::parse(path, src)
    }

    fn parse(path: PathBuf, src: Source) -> Result<SegmentReader, SegmentError> {
        let corrupt = |offset: usize, what: String| SegmentError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            what,
        };
        let size = src.len() as usize;
        if size < HEADER_LEN + TAIL_LEN {
            return Err(corrupt(
                0,
                format!("{size} bytes is too short for a segment"),
            ));
        }
        let header = src
            .range(&path, 0, HEADER_LEN as u64, true)?
            .unwrap_or_default();
        let b: &[u8] = &header;
        if b.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt(0, "bad magic at the start".into()));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if !(OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(corrupt(
                8,
                format!("format version {version} not supported"),
            ));
        }
        // Flags and reserved bytes are zero in version 1; anything else is damage.
        if let Some(i) = b[10..HEADER_LEN].iter().position(|x| *x != 0) {
            return Err(corrupt(10 + i, "non-zero reserved header byte".into()));
        }
        let tail = size - TAIL_LEN;
        let tb = src
            .range(&path, tail as u64, TAIL_LEN as u64, true)?
            .unwrap_or_default();
        if tb.get(8..) != Some(&MAGIC[..]) {
            return Err(corrupt(
                tail + 8,
                "bad magic at the end (truncated file?)".into(),
            ));
        }
        let footer_len = u32::from_le_bytes([tb[0], tb[1], tb[2], tb[3]]) as usize;
        let footer_crc = u32::from_le_bytes([tb[4], tb[5], tb[6], tb[7]]);
        let footer_start = tail
            .checked_sub(footer_len)
            .filter(|s| *s >= HEADER_LEN)
            .ok_or_else(|| {
                corrupt(
                    tail,
                    format!("footer length {footer_len} does not fit the file"),
                )
            })?;
        let fbytes = src
            .range(&path, footer_start as u64, footer_len as u64, true)?
            .unwrap_or_default();
        let fbytes: &[u8] = &fbytes;
        let crc = footer_crc32(version, b, fbytes);
        if crc != footer_crc {
            return Err(corrupt(
                footer_start,
                format!("footer checksum {crc:#010x}, expected {footer_crc:#010x}"),
            ));
        }
        let footer = Footer::decode(fbytes, footer_start as u64)
            .map_err(|e| corrupt(footer_start + e.offset, e.what))?;
        let dir = match &footer.index {
            None => Directory::default(),
            Some(ix) => {
                let start = ix.offset as usize;
                let dir = src
                    .range(&path, ix.offset, ix.dir_len, true)?
                    .ok_or_else(|| corrupt(start, "index directory outside the file".into()))?;
                let dir: &[u8] = &dir;
                let crc = crc32fast::hash(dir);
                if crc != ix.dir_crc {
                    return Err(corrupt(
                        start,
                        format!(
                            "index directory checksum {crc:#010x}, expected {:#010x}",
                            ix.dir_crc
                        ),
                    ));
                }
                decode_directory(dir, (ix.len - ix.dir_len) as usize)
                    .map_err(|e| corrupt(start, e))?
            }
        };
        let term_texts = (0..dir.terms.len()).map(|_| OnceLock::new()).collect();
        let int_values = (0..dir.ints.len()).map(|_| OnceLock::new()).collect();
        Ok(SegmentReader {
            path,
            src,
            footer,
            dir,
            version,
            templates: OnceLock::new(),
            vocab: OnceLock::new(),
            term_texts,
            int_values,
        })
    }

    /// The bytes of a frame of the index section, CRC-checked.
    fn frame(&self, fr: &FrameRef, what: &str) -> Result<bytes::Bytes, SegmentError> {
        let Some(ix) = &self.footer.index else {
            return Err(SegmentError::NotFound("the segment has no index".into()));
        };
        let start = ix.offset as usize + ix.dir_len as usize + fr.offset;
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: start as u64,
            what,
        };
        let bytes = self
            .src
            .range(&self.path, start as u64, fr.len as u64, true)?
            .ok_or_else(|| corrupt(format!("{what} outside the file")))?;
        let crc = crc32fast::hash(&bytes);
        if crc != fr.crc {
            return Err(corrupt(format!(
                "{what}: checksum {crc:#010x}, expected {:#010x}",
                fr.crc
            )));
        }
        Ok(bytes)
    }

    fn corrupt_at(&self, fr: &FrameRef, what: String) -> SegmentError {
        let base = self
            .footer
            .index
            .map_or(0, |ix| ix.offset as usize + ix.dir_len as usize);
        SegmentError::Corrupt {
            path: self.path.clone(),
            offset: (base + fr.offset) as u64,
            what,
        }
    }

    /// Checks every byte of the segment: decodes every column chunk and every index
    /// term block (each after its CRC). For `verify` commands and before compaction.
    pub fn verify(&self) -> Result<(), SegmentError> {
        for block in 0..self.footer.blocks.len() {
            for col in 0..self.footer.columns.len() {
                self.read(col, block)?;
            }
        }
        // Every entry's postings decoded, so their bytes are checked too.
        for i in 0..self.dir.terms.len() {
            self.scan_terms(i, |_, _| Want::Take, |_, _| {})?;
        }
        for i in 0..self.dir.ints.len() {
            self.scan_ints(i, |_, _| Want::Take, |_, _| {})?;
        }
        self.templates()?;
        Ok(())
    }

    /// Bytes this reader holds in memory beyond its decoded state: the fetched end
    /// of an offloaded segment (a mapped local file: 0).
    pub fn resident_bytes(&self) -> u64 {
        match &self.src {
            Source::Local(_) => 0,
            Source::Remote { tail, .. } => tail.len() as u64,
        }
    }

    /// The footer (blocks, columns, tenant, row count).
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the column `name` of `kind`.
    pub fn column(&self, kind: ColumnKind, name: &str) -> Option<usize> {
        self.footer
            .columns
            .iter()
            .position(|c| c.kind == kind && c.name == name)
    }
}
