//! Reading a segment: map the file, verify magic, version and footer checksum once,
//! then decode single column chunks on demand, each CRC-checked before decoding.

use std::fs;
use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;

use super::index::{decode_directory, decode_term_block, TermBlockRef};
use super::layout::{
    ColumnKind, ColumnMeta, Footer, FORMAT_VERSION, HEADER_LEN, MAGIC, OLDEST_SUPPORTED_VERSION,
    TAIL_LEN,
};
use super::SegmentError;
use crate::codec::{bits, ints, strs};
use crate::mmap::{self, Mmap};
use crate::model::{Labels, Record, Value};

/// Decoded values of one chunk (present rows only).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Strings.
    Str(Vec<String>),
    /// Integers (also time, float bits and booleans before conversion).
    I64(Vec<i64>),
}

/// One column of one block, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBlock {
    /// Per row, whether it has a value; `None` means every row does.
    pub present: Option<Vec<bool>>,
    /// The values of the rows that have one, in row order.
    pub values: Values,
}

/// An open segment.
#[derive(Debug)]
pub struct SegmentReader {
    path: PathBuf,
    map: Mmap,
    footer: Footer,
    /// The index directory: first term of each term block and where it is.
    terms: Vec<TermBlockRef>,
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
        let corrupt = |offset: usize, what: String| SegmentError::Corrupt {
            path: path.clone(),
            offset: offset as u64,
            what,
        };
        let b: &[u8] = &map;
        if b.len() < HEADER_LEN + TAIL_LEN {
            return Err(corrupt(
                0,
                format!("{} bytes is too short for a segment", b.len()),
            ));
        }
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
        let tail = b.len() - TAIL_LEN;
        if b.get(tail + 8..) != Some(&MAGIC[..]) {
            return Err(corrupt(
                tail + 8,
                "bad magic at the end (truncated file?)".into(),
            ));
        }
        let footer_len =
            u32::from_le_bytes([b[tail], b[tail + 1], b[tail + 2], b[tail + 3]]) as usize;
        let footer_crc = u32::from_le_bytes([b[tail + 4], b[tail + 5], b[tail + 6], b[tail + 7]]);
        let footer_start = tail
            .checked_sub(footer_len)
            .filter(|s| *s >= HEADER_LEN)
            .ok_or_else(|| {
                corrupt(
                    tail,
                    format!("footer length {footer_len} does not fit the file"),
                )
            })?;
        let fbytes = &b[footer_start..tail];
        let crc = crc32fast::hash(fbytes);
        if crc != footer_crc {
            return Err(corrupt(
                footer_start,
                format!("footer checksum {crc:#010x}, expected {footer_crc:#010x}"),
            ));
        }
        let footer = Footer::decode(fbytes, footer_start as u64)
            .map_err(|e| corrupt(footer_start + e.offset, e.what))?;
        let terms = match &footer.index {
            None => Vec::new(),
            Some(ix) => {
                let start = ix.offset as usize;
                let dir = &b[start..start + ix.dir_len as usize];
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
        Ok(SegmentReader {
            path,
            map,
            footer,
            terms,
        })
    }

    fn term_block(&self, i: usize) -> Result<Vec<(Vec<u8>, RoaringBitmap)>, SegmentError> {
        let (Some(ix), Some(tb)) = (&self.footer.index, self.terms.get(i)) else {
            return Ok(Vec::new());
        };
        let start = ix.offset as usize + ix.dir_len as usize + tb.offset;
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: start as u64,
            what,
        };
        let bytes = self
            .map
            .get(start..start + tb.len)
            .ok_or_else(|| corrupt("term block outside the file".into()))?;
        let crc = crc32fast::hash(bytes);
        if crc != tb.crc {
            return Err(corrupt(format!(
                "index term block {i}: checksum {crc:#010x}, expected {:#010x}",
                tb.crc
            )));
        }
        decode_term_block(bytes).map_err(|e| corrupt(format!("index term block {i}: {e}")))
    }

    /// Blocks that contain `term` (an index key from [`super::msg_term`] or
    /// [`super::field_term`]); empty when none does.
    pub fn lookup(&self, term: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        let i = self.terms.partition_point(|t| t.first.as_slice() <= term);
        let Some(i) = i.checked_sub(1) else {
            return Ok(RoaringBitmap::new());
        };
        Ok(self
            .term_block(i)?
            .into_iter()
            .find(|(t, _)| t == term)
            .map(|(_, bm)| bm)
            .unwrap_or_default())
    }

    /// Blocks that contain any term starting with `prefix`.
    pub fn lookup_prefix(&self, prefix: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let first = self
            .terms
            .partition_point(|t| t.first.as_slice() < prefix)
            .saturating_sub(1);
        for i in first..self.terms.len() {
            if self
                .terms
                .get(i)
                .is_some_and(|t| t.first.as_slice() > prefix && !t.first.starts_with(prefix))
            {
                break;
            }
            for (t, bm) in self.term_block(i)? {
                if t.starts_with(prefix) {
                    out |= bm;
                }
            }
        }
        Ok(out)
    }

    /// Number of term blocks in the index directory (for statistics).
    pub fn index_term_blocks(&self) -> usize {
        self.terms.len()
    }

    /// Rows (as `(block, row in block)`) whose `_msg` contains every one of `words` as
    /// a token: an index intersection picks candidate blocks, then each candidate
    /// row is verified with the same tokenizer. Newest blocks first.
    pub fn search_words(&self, words: &[&str]) -> Result<Vec<(usize, usize)>, SegmentError> {
        let mut candidates: Option<RoaringBitmap> = None;
        for w in words {
            let bm = self.lookup(&super::msg_term(w))?;
            candidates = Some(match candidates {
                None => bm,
                Some(c) => c & bm,
            });
        }
        let Some(candidates) = candidates else {
            return Ok(Vec::new());
        };
        let Some(msg_col) = self.column(ColumnKind::Msg, "_msg") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for block in candidates.iter().rev() {
            let Some(cb) = self.read(msg_col, block as usize)? else {
                continue;
            };
            let Values::Str(msgs) = cb.values else {
                continue;
            };
            for (row, m) in msgs.iter().enumerate().rev() {
                if words.iter().all(|w| crate::token::contains_token(m, w)) {
                    out.push((block as usize, row));
                }
            }
        }
        Ok(out)
    }

    /// Checks every byte of the segment: decodes every column chunk and every index
    /// term block (each after its CRC). For `verify` commands and before compaction.
    pub fn verify(&self) -> Result<(), SegmentError> {
        for block in 0..self.footer.blocks.len() {
            for col in 0..self.footer.columns.len() {
                self.read(col, block)?;
            }
        }
        for i in 0..self.terms.len() {
            self.term_block(i)?;
        }
        Ok(())
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

    /// Decodes column `col` of block `block`; `None` when no row of the block has a
    /// value.
    pub fn read(&self, col: usize, block: usize) -> Result<Option<ColumnBlock>, SegmentError> {
        let meta: &ColumnMeta = self.footer.columns.get(col).ok_or_else(|| {
            SegmentError::NotFound(format!("column {col} of {}", self.footer.columns.len()))
        })?;
        let rows = self
            .footer
            .blocks
            .get(block)
            .ok_or_else(|| {
                SegmentError::NotFound(format!("block {block} of {}", self.footer.blocks.len()))
            })?
            .rows as usize;
        let Some(chunk) = meta.chunks.get(block).filter(|c| c.len > 0) else {
            return Ok(None);
        };
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: chunk.offset,
            what,
        };
        let start = chunk.offset as usize;
        let bytes = self
            .map
            .get(start..start + chunk.len as usize)
            .ok_or_else(|| corrupt("chunk outside the file".into()))?;
        let crc = crc32fast::hash(bytes);
        if crc != chunk.crc {
            return Err(corrupt(format!(
                "column {:?} block {block}: checksum {crc:#010x}, expected {:#010x}",
                meta.name, chunk.crc
            )));
        }
        let (present, rest) = match bytes.split_first() {
            Some((0, rest)) => (None, rest),
            Some((1, rest)) => {
                let bm = bits::unpack(rest, rows, 1).map_err(|e| corrupt(e.what))?;
                let skip = bits::packed_len(rows, 1);
                (
                    Some(bm.into_iter().map(|v| v == 1).collect::<Vec<bool>>()),
                    rest.get(skip..).unwrap_or(&[]),
                )
            }
            _ => return Err(corrupt("bad presence byte".into())),
        };
        let n = present
            .as_ref()
            .map_or(rows, |p| p.iter().filter(|x| **x).count());
        let values = match meta.kind {
            ColumnKind::Msg | ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str => {
                Values::Str(strs::decode(rest, n).map_err(|e| corrupt(e.what))?)
            }
            ColumnKind::Time | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => {
                Values::I64(ints::decode(rest, n).map_err(|e| corrupt(e.what))?)
            }
        };
        Ok(Some(ColumnBlock { present, values }))
    }

    /// Rebuilds every record of `block` (all columns decoded). Fields come back in
    /// column order (by kind, then name), not in their ingest order.
    pub fn records(&self, block: usize) -> Result<Vec<Record>, SegmentError> {
        let rows = self
            .footer
            .blocks
            .get(block)
            .ok_or_else(|| SegmentError::NotFound(format!("block {block}")))?
            .rows as usize;
        let mut out: Vec<Record> = (0..rows)
            .map(|_| Record {
                time_ns: 0,
                msg: String::new(),
                stream: Labels::new(),
                level: None,
                fields: Vec::new(),
            })
            .collect();
        for (col, meta) in self.footer.columns.iter().enumerate() {
            let Some(cb) = self.read(col, block)? else {
                continue;
            };
            let rows_with: Vec<usize> = match &cb.present {
                None => (0..rows).collect(),
                Some(p) => p
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x)
                    .map(|(i, _)| i)
                    .collect(),
            };
            let bad = |what: &str| SegmentError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: what.to_string(),
            };
            match (meta.kind, cb.values) {
                (ColumnKind::Time, Values::I64(v)) => rows_with
                    .iter()
                    .zip(v)
                    .for_each(|(i, t)| out[*i].time_ns = t),
                (ColumnKind::Msg, Values::Str(v)) => {
                    rows_with.iter().zip(v).for_each(|(i, s)| out[*i].msg = s)
                }
                (ColumnKind::Stream, Values::Str(v)) => {
                    for (i, s) in rows_with.iter().zip(v) {
                        out[*i].stream =
                            serde_json::from_str(&s).map_err(|_| bad("bad _stream labels"))?;
                    }
                }
                (ColumnKind::Level, Values::Str(v)) => rows_with
                    .iter()
                    .zip(v)
                    .for_each(|(i, s)| out[*i].level = Some(s)),
                (ColumnKind::Str, Values::Str(v)) => rows_with
                    .iter()
                    .zip(v)
                    .for_each(|(i, s)| out[*i].fields.push((meta.name.clone(), Value::Str(s)))),
                (ColumnKind::I64, Values::I64(v)) => rows_with
                    .iter()
                    .zip(v)
                    .for_each(|(i, x)| out[*i].fields.push((meta.name.clone(), Value::I64(x)))),
                (ColumnKind::F64, Values::I64(v)) => rows_with.iter().zip(v).for_each(|(i, x)| {
                    out[*i]
                        .fields
                        .push((meta.name.clone(), Value::F64(f64::from_bits(x as u64))))
                }),
                (ColumnKind::Bool, Values::I64(v)) => rows_with.iter().zip(v).for_each(|(i, x)| {
                    out[*i]
                        .fields
                        .push((meta.name.clone(), Value::Bool(x != 0)))
                }),
                _ => return Err(bad("column values do not match the column kind")),
            }
        }
        Ok(out)
    }
}
