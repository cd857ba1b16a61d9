//! Reading a segment: map the file, verify magic, version and footer checksum once,
//! then decode single column chunks on demand, each CRC-checked before decoding.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use roaring::RoaringBitmap;

use super::index::{
    decode_directory, decode_int_block, decode_templates, decode_term_block, var_text, Directory,
    FrameRef, NS_MSG,
};
use super::layout::{
    ColumnKind, ColumnMeta, Footer, FORMAT_VERSION, HEADER_LEN, MAGIC, OLDEST_SUPPORTED_VERSION,
    TAIL_LEN,
};
use super::message::{self, Template};
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
    /// The index directory: where each term and integer block is.
    dir: Directory,
    /// The message dictionaries, decoded when a `_msg` chunk is first read.
    dicts: OnceLock<Dicts>,
}

/// Bytes of a segment's index section by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSizes {
    /// The directory frame.
    pub directory: u64,
    /// Term blocks (words, string variables, field pairs, with postings).
    pub terms: u64,
    /// Integer blocks (integer variables, with postings).
    pub integers: u64,
    /// The templates frame.
    pub templates: u64,
    /// Number of templates.
    pub template_count: u64,
}

/// A segment's `_msg` dictionaries, decoded.
#[derive(Debug)]
struct Dicts {
    templates: Vec<Template>,
    /// Text of every term ordinal that is a `_msg` token (`None` for field pairs).
    strs: Vec<Option<Box<str>>>,
    /// Every integer ordinal's value.
    ints: Vec<u64>,
}

/// The smallest key above every key that starts with `prefix` (`None`: no bound).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut hi = prefix.to_vec();
    while let Some(last) = hi.pop() {
        if last < u8::MAX {
            hi.push(last + 1);
            return Some(hi);
        }
    }
    None
}

/// The value ranges of canonical integers whose decimal text starts with `tok`.
fn int_prefix_ranges(tok: &[u8]) -> Vec<(u64, u64)> {
    if tok.is_empty() {
        return vec![(0, u64::MAX)];
    }
    if !tok.iter().all(u8::is_ascii_digit) || tok.len() > 19 {
        return Vec::new();
    }
    if tok.first() == Some(&b'0') {
        return if tok.len() == 1 {
            vec![(0, 0)]
        } else {
            Vec::new()
        };
    }
    let Some(p) = std::str::from_utf8(tok)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut scale = 1u64;
    for _ in tok.len()..=19 {
        let (Some(lo), Some(next)) = (p.checked_mul(scale), (p + 1).checked_mul(scale)) else {
            break;
        };
        out.push((lo, next - 1));
        let Some(s) = scale.checked_mul(10) else {
            break;
        };
        scale = s;
    }
    out
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
        let dir = match &footer.index {
            None => Directory::default(),
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
            dir,
            dicts: OnceLock::new(),
        })
    }

    /// The bytes of a frame of the index section, CRC-checked.
    fn frame(&self, fr: &FrameRef, what: &str) -> Result<&[u8], SegmentError> {
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
            .map
            .get(start..start + fr.len)
            .ok_or_else(|| corrupt(format!("{what} outside the file")))?;
        let crc = crc32fast::hash(bytes);
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

    /// Whether the segment has one block (its index then stores no postings).
    fn single(&self) -> bool {
        self.footer.blocks.len() <= 1
    }

    /// Entries block `i` of a dictionary with `blocks` blocks must hold.
    fn expected(&self, i: usize, blocks: usize) -> std::ops::RangeInclusive<usize> {
        if i + 1 == blocks {
            1..=self.dir.per_block
        } else {
            self.dir.per_block..=self.dir.per_block
        }
    }

    fn term_block(&self, i: usize) -> Result<Vec<(Vec<u8>, RoaringBitmap)>, SegmentError> {
        let Some((_, fr)) = self.dir.terms.get(i) else {
            return Ok(Vec::new());
        };
        let what = format!("index term block {i}");
        let bytes = self.frame(fr, &what)?;
        decode_term_block(bytes, self.expected(i, self.dir.terms.len()), self.single())
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    fn int_block(&self, i: usize) -> Result<Vec<(u64, RoaringBitmap)>, SegmentError> {
        let Some((_, fr)) = self.dir.ints.get(i) else {
            return Ok(Vec::new());
        };
        let what = format!("index integer block {i}");
        let bytes = self.frame(fr, &what)?;
        decode_int_block(bytes, self.expected(i, self.dir.ints.len()), self.single())
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    /// Union of the postings of every term key in `[lo, hi)` (`hi = None`: no bound).
    fn term_range(&self, lo: &[u8], hi: Option<&[u8]>) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let below = |k: &[u8]| hi.is_none_or(|h| k < h);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= lo)
            .saturating_sub(1);
        for i in first..self.dir.terms.len() {
            if self.dir.terms.get(i).is_some_and(|t| !below(&t.0)) {
                break;
            }
            for (k, bm) in self.term_block(i)? {
                if k.as_slice() >= lo && below(&k) {
                    out |= bm;
                }
            }
        }
        Ok(out)
    }

    /// Union of the postings of every integer variable in `[lo, hi]`.
    fn int_range(&self, lo: u64, hi: u64) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let first = self
            .dir
            .ints
            .partition_point(|t| t.0 <= lo)
            .saturating_sub(1);
        for i in first..self.dir.ints.len() {
            if self.dir.ints.get(i).is_some_and(|t| t.0 > hi) {
                break;
            }
            for (v, bm) in self.int_block(i)? {
                if (lo..=hi).contains(&v) {
                    out |= bm;
                }
            }
        }
        Ok(out)
    }

    /// Blocks that contain `term` (an index key from [`super::msg_term`] or
    /// [`super::field_term`]); empty when none does.
    pub fn lookup(&self, term: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        if let Some(tok) = term.strip_prefix(&[NS_MSG]) {
            if tok.is_empty() {
                return Ok(RoaringBitmap::new());
            }
            if let Some(v) = std::str::from_utf8(tok)
                .ok()
                .and_then(message::canonical_int)
            {
                return self.int_range(v, v);
            }
            // The word and its other spellings (`key 0x00 case-mask`).
            let mut hi = term.to_vec();
            hi.push(1);
            return self.term_range(term, Some(&hi));
        }
        let mut hi = term.to_vec();
        hi.push(0);
        self.term_range(term, Some(&hi))
    }

    /// Blocks that contain any term starting with `prefix`.
    pub fn lookup_prefix(&self, prefix: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        let hi = successor(prefix);
        let mut out = self.term_range(prefix, hi.as_deref())?;
        if let Some(tok) = prefix.strip_prefix(&[NS_MSG]) {
            for (lo, hi) in int_prefix_ranges(tok) {
                out |= self.int_range(lo, hi)?;
            }
        }
        Ok(out)
    }

    /// The segment's message dictionaries, decoded on first use.
    fn dicts(&self) -> Result<&Dicts, SegmentError> {
        if let Some(d) = self.dicts.get() {
            return Ok(d);
        }
        let mut strs = Vec::new();
        for i in 0..self.dir.terms.len() {
            for (k, _) in self.term_block(i)? {
                strs.push(var_text(&k).map(String::into_boxed_str));
            }
        }
        let mut ints = Vec::new();
        for i in 0..self.dir.ints.len() {
            ints.extend(self.int_block(i)?.into_iter().map(|(v, _)| v));
        }
        let templates = match &self.dir.templates {
            None => Vec::new(),
            Some(fr) => {
                let bytes = self.frame(fr, "templates")?;
                decode_templates(bytes, self.dir.template_count)
                    .map_err(|e| self.corrupt_at(fr, format!("templates: {e}")))?
            }
        };
        let _ = self.dicts.set(Dicts {
            templates,
            strs,
            ints,
        });
        self.dicts
            .get()
            .ok_or_else(|| SegmentError::NotFound("message dictionaries".into()))
    }

    /// Bytes of the index section by part (for statistics).
    pub fn index_sizes(&self) -> IndexSizes {
        let sum = |v: &[FrameRef]| v.iter().map(|f| f.len as u64).sum::<u64>();
        IndexSizes {
            directory: self.footer.index.map_or(0, |ix| ix.dir_len),
            terms: sum(&self.dir.terms.iter().map(|t| t.1).collect::<Vec<_>>()),
            integers: sum(&self.dir.ints.iter().map(|t| t.1).collect::<Vec<_>>()),
            templates: self.dir.templates.map_or(0, |f| f.len as u64),
            template_count: self.dir.template_count as u64,
        }
    }

    /// Number of term blocks in the index directory (for statistics).
    pub fn index_term_blocks(&self) -> usize {
        self.dir.terms.len()
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
        for i in 0..self.dir.terms.len() {
            self.term_block(i)?;
        }
        for i in 0..self.dir.ints.len() {
            self.int_block(i)?;
        }
        self.dicts()?;
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
            ColumnKind::Msg => Values::Str(self.messages(rest, n).map_err(|e| corrupt(e.what))?),
            ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str => {
                Values::Str(strs::decode(rest, n).map_err(|e| corrupt(e.what))?)
            }
            ColumnKind::Time | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => {
                Values::I64(ints::decode(rest, n).map_err(|e| corrupt(e.what))?)
            }
        };
        Ok(Some(ColumnBlock { present, values }))
    }

    /// Decodes a template-coded `_msg` chunk of `n` rows into the messages.
    fn messages(&self, bytes: &[u8], n: usize) -> Result<Vec<String>, crate::codec::CodecError> {
        let d = self
            .dicts()
            .map_err(|e| crate::codec::CodecError::new(e.to_string()))?;
        let chunk = message::decode_chunk(bytes, n, &d.templates)?;
        let mut out = Vec::with_capacity(n);
        for (row, t) in chunk.templates.iter().enumerate() {
            let tpl = d.templates.get(*t as usize);
            let start = chunk.starts.get(row).copied().unwrap_or(0);
            let slots = tpl.map_or(0, |t| t.slots.len());
            let ords = chunk.ordinals.get(start..start + slots).unwrap_or(&[]);
            let mut m = String::new();
            if let Some(tpl) = tpl {
                message::render(
                    &mut m,
                    tpl,
                    ords,
                    |o| d.ints.get(o as usize).copied(),
                    |o| {
                        d.strs
                            .get(o as usize)
                            .and_then(|s| s.as_deref())
                            .map(str::to_string)
                    },
                )?;
            }
            out.push(m);
        }
        Ok(out)
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
