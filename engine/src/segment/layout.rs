//! Segment file layout: header, tail and footer encoding.
//!
//! ```text
//! [header 16 B][column chunks ...][footer][tail 16 B]
//! header: magic "HMDLSEG\0" | u16 version | u16 flags (0) | u32 reserved (0)
//! tail:   u32 footer_len | u32 crc32 | magic "HMDLSEG\0"
//!         (crc32 of the footer; since version 3, of the header then the footer)
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::wire::{put_str, put_varint, unzigzag, zigzag, DecodeError, Reader};

/// First and last eight bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"HMDLSEG\0";
/// Format version this build writes (3: the overflow column kind; 4: time runs
/// in `_msg`, template words found through the templates and their postings).
pub const FORMAT_VERSION: u16 = 4;
/// First format version whose words are not in the term dictionary.
pub(crate) const WORDS_IN_TEMPLATES: u16 = 4;
/// Oldest format version this build reads.
pub const OLDEST_SUPPORTED_VERSION: u16 = 2;
pub(crate) const HEADER_LEN: usize = 16;
pub(crate) const TAIL_LEN: usize = 16;
/// Most blocks and columns a footer may list (a bound for decoders).
pub(crate) const FOOTER_ITEMS_MAX: usize = 1 << 24;

/// What a column holds.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ColumnKind {
    /// `_time`, nanoseconds (integer codec).
    Time = 0,
    /// `_msg` (string codec).
    Msg = 1,
    /// `_stream`: the stream labels as canonical JSON (string codec).
    Stream = 2,
    /// The level (string codec, may be absent).
    Level = 3,
    /// A string field.
    Str = 4,
    /// An integer field.
    I64 = 5,
    /// A float field (IEEE bits through the integer codec).
    F64 = 6,
    /// A boolean field (0/1 through the integer codec).
    Bool = 7,
    /// The fields of names over the segment's column cap, per row (string codec;
    /// [`super::overflow`]). Since format version 3.
    Overflow = 8,
}

impl TryFrom<u8> for ColumnKind {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            0 => ColumnKind::Time,
            1 => ColumnKind::Msg,
            2 => ColumnKind::Stream,
            3 => ColumnKind::Level,
            4 => ColumnKind::Str,
            5 => ColumnKind::I64,
            6 => ColumnKind::F64,
            7 => ColumnKind::Bool,
            8 => ColumnKind::Overflow,
            other => return Err(other),
        })
    }
}

/// One block: a run of consecutive rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockMeta {
    /// Rows in the block.
    pub rows: u32,
    /// Smallest `_time` in the block.
    pub min_time: i64,
    /// Largest `_time` in the block.
    pub max_time: i64,
}

/// Where one column's chunk of one block lives; `len == 0` means the column has no
/// value in that block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// File offset.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// CRC-32 of the chunk's bytes.
    pub crc: u32,
}

/// A column of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMeta {
    /// Column name (`_time`, `_msg`, `_stream`, `level`, or a field name).
    pub name: String,
    /// What it holds.
    pub kind: ColumnKind,
    /// One chunk per block.
    pub chunks: Vec<Chunk>,
}

/// Where the inverted index section lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRef {
    /// File offset of the section.
    pub offset: u64,
    /// Section length.
    pub len: u64,
    /// Length of the directory frame at the section's start.
    pub dir_len: u64,
    /// CRC-32 of the directory frame.
    pub dir_crc: u32,
}

/// The footer: everything needed to find any chunk without reading the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Tenant of every record.
    pub tenant: String,
    /// Rows in the segment.
    pub rows: u64,
    /// The blocks, in row order.
    pub blocks: Vec<BlockMeta>,
    /// The columns.
    pub columns: Vec<ColumnMeta>,
    /// The inverted index section, if the segment has one.
    pub index: Option<IndexRef>,
}

impl Footer {
    /// Smallest `_time` in the segment.
    pub fn min_time(&self) -> Option<i64> {
        self.blocks.iter().map(|b| b.min_time).min()
    }

    /// Largest `_time` in the segment.
    pub fn max_time(&self) -> Option<i64> {
        self.blocks.iter().map(|b| b.max_time).max()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_str(&mut out, &self.tenant);
        put_varint(&mut out, self.rows);
        put_varint(&mut out, self.blocks.len() as u64);
        for b in &self.blocks {
            put_varint(&mut out, u64::from(b.rows));
            put_varint(&mut out, zigzag(b.min_time));
            put_varint(&mut out, zigzag(b.max_time));
        }
        put_varint(&mut out, self.columns.len() as u64);
        for c in &self.columns {
            put_str(&mut out, &c.name);
            out.push(c.kind as u8);
            for ch in &c.chunks {
                put_varint(&mut out, ch.offset);
                put_varint(&mut out, u64::from(ch.len));
                out.extend_from_slice(&ch.crc.to_le_bytes());
            }
        }
        match &self.index {
            None => out.push(0),
            Some(ix) => {
                out.push(1);
                put_varint(&mut out, ix.offset);
                put_varint(&mut out, ix.len);
                put_varint(&mut out, ix.dir_len);
                out.extend_from_slice(&ix.dir_crc.to_le_bytes());
            }
        }
        out
    }

    /// Decodes a footer; `data_end` bounds every chunk (chunks lie between the header
    /// and the footer).
    pub(crate) fn decode(bytes: &[u8], data_end: u64) -> Result<Footer, DecodeError> {
        let mut r = Reader::new(bytes);
        let tenant = r.str()?;
        let rows = r.varint()?;
        let n_blocks = r.len(FOOTER_ITEMS_MAX)?;
        let mut blocks = Vec::with_capacity(n_blocks.min(bytes.len()));
        let mut total = 0u64;
        for _ in 0..n_blocks {
            let rows =
                u32::try_from(r.varint()?).or_else(|_| r.fail("block row count over u32"))?;
            let min_time = unzigzag(r.varint()?);
            let max_time = unzigzag(r.varint()?);
            if min_time > max_time {
                return r.fail(format!("block time range {min_time} > {max_time}"));
            }
            total += u64::from(rows);
            blocks.push(BlockMeta {
                rows,
                min_time,
                max_time,
            });
        }
        if total != rows {
            return r.fail(format!("blocks hold {total} rows, footer says {rows}"));
        }
        let n_cols = r.len(FOOTER_ITEMS_MAX)?;
        let mut columns = Vec::with_capacity(n_cols.min(bytes.len()));
        for _ in 0..n_cols {
            let name = r.str()?;
            let kind_at = r.at;
            let kind = ColumnKind::try_from(r.u8()?).map_err(|k| DecodeError {
                offset: kind_at,
                what: format!("unknown column kind {k}"),
            })?;
            let mut chunks = Vec::with_capacity(n_blocks.min(bytes.len()));
            for _ in 0..n_blocks {
                let offset = r.varint()?;
                let len =
                    u32::try_from(r.varint()?).or_else(|_| r.fail("chunk length over u32"))?;
                let crc = r.u32()?;
                let in_bounds = offset >= HEADER_LEN as u64
                    && offset
                        .checked_add(u64::from(len))
                        .is_some_and(|end| end <= data_end);
                if len > 0 && !in_bounds {
                    return r.fail(format!("chunk {offset}+{len} outside the data region"));
                }
                chunks.push(Chunk { offset, len, crc });
            }
            columns.push(ColumnMeta { name, kind, chunks });
        }
        let index = match r.u8()? {
            0 => None,
            1 => {
                let offset = r.varint()?;
                let len = r.varint()?;
                let dir_len = r.varint()?;
                let dir_crc = r.u32()?;
                let fits = offset >= HEADER_LEN as u64
                    && offset.checked_add(len).is_some_and(|end| end <= data_end)
                    && dir_len <= len;
                if !fits {
                    return r.fail(format!(
                        "index section {offset}+{len} outside the data region"
                    ));
                }
                Some(IndexRef {
                    offset,
                    len,
                    dir_len,
                    dir_crc,
                })
            }
            other => return r.fail(format!("bad index flag {other}")),
        };
        if !r.done() {
            return r.fail("bytes after the footer");
        }
        Ok(Footer {
            tenant,
            rows,
            blocks,
            columns,
            index,
        })
    }
}

/// The tail's checksum: of the footer, and since version 3 of the header before it
/// (so damage to the header's version is caught too).
pub(crate) fn footer_crc32(version: u16, header: &[u8], footer: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    if version >= 3 {
        h.update(header);
    }
    h.update(footer);
    h.finalize()
}

pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}
