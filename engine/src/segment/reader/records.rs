//! Decoding column chunks into values, and rows into records: what a scan
//! reads once the index has picked its blocks.

use super::super::layout::{ColumnKind, ColumnMeta};
use super::super::message;
use super::super::SegmentError;
use super::source::{Source, READAHEAD_BLOCKS};
use super::{present_rows, SegmentReader};
use crate::codec::{bits, ints, strs};
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

/// A string column's block as distinct values and per-row ids.
#[derive(Debug, Clone, PartialEq)]
pub struct StrColumn {
    /// Per row, whether it has a value; `None` means every row does.
    pub present: Option<Vec<bool>>,
    /// The values.
    pub dict: strs::StrList,
    /// Per row with a value, its index in `dict`; `None`: the i-th row with a value
    /// is `dict[i]`.
    pub ids: Option<Vec<u32>>,
}

impl StrColumn {
    /// Per block row (of `rows`), the index in `dict` of its value.
    pub fn row_ids(&self, rows: usize) -> Vec<Option<u32>> {
        let mut out = vec![None; rows];
        for (v, r) in present_rows(&self.present, rows).into_iter().enumerate() {
            let id = match &self.ids {
                Some(ids) => ids.get(v).copied(),
                None => u32::try_from(v).ok(),
            };
            if let Some(slot) = out.get_mut(r) {
                *slot = id;
            }
        }
        out
    }
}

/// A column chunk's CRC-checked bytes, split from its presence bitmap.
pub(super) struct RawChunk {
    pub(super) kind: ColumnKind,
    pub(super) offset: u64,
    pub(super) present: Option<Vec<bool>>,
    pub(super) bytes: bytes::Bytes,
    pub(super) n: usize,
}

impl SegmentReader {
    /// Decodes column `col` of block `block`; `None` when no row of the block has a
    /// value.
    pub fn read(&self, col: usize, block: usize) -> Result<Option<ColumnBlock>, SegmentError> {
        self.read_rows(col, block, None)
    }

    /// The CRC-checked bytes of column `col` of block `block` after its presence
    /// bitmap: (presence, codec bytes, values present); `None` when no row has one.
    pub(super) fn chunk(&self, col: usize, block: usize) -> Result<Option<RawChunk>, SegmentError> {
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
        if let Source::Remote { tier, object, .. } = &self.src {
            if !tier
                .cache
                .contains(&format!("{object}@{}+{}", chunk.offset, chunk.len))
            {
                // Both ways: scans go newest block first as often as oldest.
                let from = block.saturating_sub(READAHEAD_BLOCKS - 1);
                let ahead: Vec<(u64, u64)> = meta
                    .chunks
                    .iter()
                    .skip(from)
                    .take(2 * READAHEAD_BLOCKS - 1)
                    .filter(|c| c.len > 0)
                    .map(|c| (c.offset, u64::from(c.len)))
                    .collect();
                tier.prefetch(object, &ahead)
                    .map_err(|source| SegmentError::Remote {
                        path: self.path.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        let bytes = self
            .src
            .range(&self.path, start as u64, u64::from(chunk.len), false)?
            .ok_or_else(|| corrupt("chunk outside the file".into()))?;
        let crc = crc32fast::hash(&bytes);
        if crc != chunk.crc {
            return Err(corrupt(format!(
                "column {:?} block {block}: checksum {crc:#010x}, expected {:#010x}",
                meta.name, chunk.crc
            )));
        }
        let (present, rest) = match bytes.first() {
            Some(0) => (None, bytes.slice(1..)),
            Some(1) => {
                let rest = &bytes[1..];
                let bm = bits::unpack(rest, rows, 1).map_err(|e| corrupt(e.what))?;
                let skip = (1 + bits::packed_len(rows, 1)).min(bytes.len());
                (
                    Some(bm.into_iter().map(|v| v == 1).collect::<Vec<bool>>()),
                    bytes.slice(skip..),
                )
            }
            _ => return Err(corrupt("bad presence byte".into())),
        };
        let n = present
            .as_ref()
            .map_or(rows, |p| p.iter().filter(|x| **x).count());
        Ok(Some(RawChunk {
            kind: meta.kind,
            offset: chunk.offset,
            present,
            bytes: rest,
            n,
        }))
    }

    /// Like [`Self::read`]; with `only = Some(rows)` (sorted row numbers of the
    /// block) messages are rebuilt only for those rows (others come back empty).
    pub(super) fn read_rows(
        &self,
        col: usize,
        block: usize,
        only: Option<&[usize]>,
    ) -> Result<Option<ColumnBlock>, SegmentError> {
        let Some(c) = self.chunk(col, block)? else {
            return Ok(None);
        };
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what,
        };
        let values = match c.kind {
            ColumnKind::Msg => {
                // Rows given are block rows; map them to positions among present values.
                let wanted: Option<Vec<bool>> = only.map(|rows| {
                    let mut w = vec![false; c.n];
                    let pos = present_rows(&c.present, c.n);
                    for r in rows {
                        if let Ok(i) = pos.binary_search(r) {
                            if let Some(x) = w.get_mut(i) {
                                *x = true;
                            }
                        }
                    }
                    w
                });
                Values::Str(
                    self.messages(&c.bytes, c.n, wanted.as_deref())
                        .map_err(|e| corrupt(e.what))?,
                )
            }
            ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str | ColumnKind::Overflow => {
                Values::Str(strs::decode(&c.bytes, c.n).map_err(|e| corrupt(e.what))?)
            }
            ColumnKind::I64 if c.bytes.first() == Some(&ints::BY_TEMPLATE) => {
                Values::I64(self.decode_by_template(block, &c)?)
            }
            ColumnKind::Time | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => {
                Values::I64(ints::decode(&c.bytes, c.n).map_err(|e| corrupt(e.what))?)
            }
        };
        Ok(Some(ColumnBlock {
            present: c.present,
            values,
        }))
    }

    /// Decodes an integer chunk coded by the rows' `_msg` templates
    /// ([`ints::BY_TEMPLATE`]): reads the block's `_msg` template ids.
    fn decode_by_template(&self, block: usize, c: &RawChunk) -> Result<Vec<i64>, SegmentError> {
        let corrupt = |what: String| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what,
        };
        let rows = self.footer.blocks.get(block).map_or(0, |b| b.rows as usize);
        // Each block row's `_msg` template (u32::MAX: no message).
        let mut logtypes = vec![u32::MAX; rows];
        if let Some(col) = self.column(ColumnKind::Msg, "_msg") {
            if let Some(m) = self.chunk(col, block)? {
                let templates = self.templates()?;
                let chunk = message::decode_chunk_rows(&m.bytes, m.n, templates, Some(&[]))
                    .map_err(|e| corrupt(format!("its _msg chunk: {}", e.what)))?;
                for (r, t) in present_rows(&m.present, m.n)
                    .into_iter()
                    .zip(chunk.templates)
                {
                    if let Some(x) = logtypes.get_mut(r) {
                        *x = t;
                    }
                }
            }
        }
        let mut b = c.bytes.get(1..).unwrap_or(&[]);
        let raw = crate::codec::unzstd_frame(&mut b).map_err(|e| corrupt(e.what))?;
        if !b.is_empty() {
            return Err(corrupt("bytes after the frame".into()));
        }
        let mut r = crate::wire::Reader::new(&raw);
        let err = |e: crate::wire::DecodeError| corrupt(e.to_string());
        let k = usize::try_from(r.varint().map_err(err)?).unwrap_or(usize::MAX);
        if k > raw.len() {
            return Err(corrupt(format!("{k} templates cannot fit the frame")));
        }
        let mut firsts = Vec::with_capacity(k);
        let mut prev = 0i64;
        for _ in 0..k {
            prev = prev.wrapping_add(crate::wire::unzigzag(r.varint().map_err(err)?));
            firsts.push(prev);
        }
        // Predicted values, in row order: each `_msg` template takes the next
        // first value when it first appears.
        let mut slot: rustc_hash::FxHashMap<u32, i64> = rustc_hash::FxHashMap::default();
        let mut out = Vec::with_capacity(c.n);
        let mut next = firsts.into_iter();
        for row in present_rows(&c.present, c.n) {
            let logtype = logtypes.get(row).copied().unwrap_or(u32::MAX);
            let v = match slot.get(&logtype) {
                Some(v) => *v,
                None => {
                    let v = next
                        .next()
                        .ok_or_else(|| corrupt("more _msg templates than values".into()))?;
                    slot.insert(logtype, v);
                    v
                }
            };
            out.push(v);
        }
        let mut at = 0usize;
        let mut first = true;
        while !r.done() {
            let d = usize::try_from(r.varint().map_err(err)?).unwrap_or(usize::MAX);
            at = if first { d } else { at.saturating_add(d) };
            if !first && d == 0 {
                return Err(corrupt("exceptions not increasing".into()));
            }
            first = false;
            let x = crate::wire::unzigzag(r.varint().map_err(err)?);
            let v = out
                .get_mut(at)
                .ok_or_else(|| corrupt(format!("exception at value {at} of {}", c.n)))?;
            *v = v.wrapping_add(x);
        }
        Ok(out)
    }

    /// A string column's block (`_stream`, `level`, a string field) as distinct values
    /// and ids, without a copy of the value per row ([`strs::decode_dict`]); `None`
    /// when no row has a value or the column is not a string column.
    pub fn string_ids(&self, col: usize, block: usize) -> Result<Option<StrColumn>, SegmentError> {
        let Some(c) = self.chunk(col, block)? else {
            return Ok(None);
        };
        if !matches!(
            c.kind,
            ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str
        ) {
            return Ok(None);
        }
        let (dict, ids) = strs::decode_dict(&c.bytes, c.n).map_err(|e| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what: e.what,
        })?;
        Ok(Some(StrColumn {
            present: c.present,
            dict,
            ids,
        }))
    }

    /// Counts the values of string column `col` in block `block` ([`strs::tally`]:
    /// `f(value, rows)`); `false` (and no call) when the column is not a string
    /// column or some row of the block has no value in it.
    pub fn tally_every_row(
        &self,
        col: usize,
        block: usize,
        f: impl FnMut(&str, u64),
    ) -> Result<bool, SegmentError> {
        let Some(c) = self.chunk(col, block)? else {
            return Ok(false);
        };
        if c.present.is_some()
            || !matches!(
                c.kind,
                ColumnKind::Stream | ColumnKind::Level | ColumnKind::Str
            )
        {
            return Ok(false);
        }
        strs::tally(&c.bytes, c.n, f).map_err(|e| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: c.offset,
            what: e.what,
        })?;
        Ok(true)
    }

    /// Decodes a template-coded `_msg` chunk of `n` rows into the messages; with
    /// `wanted`, only the rows marked are rebuilt (the others are empty strings).
    pub(super) fn messages(
        &self,
        bytes: &[u8],
        n: usize,
        wanted: Option<&[bool]>,
    ) -> Result<Vec<String>, crate::codec::CodecError> {
        let templates = self
            .templates()
            .map_err(|e| crate::codec::CodecError::new(e.to_string()))?;
        let chunk = message::decode_chunk_rows(bytes, n, templates, wanted)?;
        let err = |e: SegmentError| crate::codec::CodecError::new(e.to_string());
        let mut out = Vec::with_capacity(n);
        // Rendered in one scratch buffer, then copied to a string of its exact size:
        // one allocation per message, none of a growing string's reallocations.
        let mut m = String::new();
        for (row, t) in chunk.templates.iter().enumerate() {
            m.clear();
            let start = chunk.starts.get(row).copied().unwrap_or(usize::MAX);
            if start != usize::MAX {
                if let Some(tpl) = templates.get(*t as usize) {
                    let ords = chunk
                        .ordinals
                        .get(start..start + tpl.slots.len())
                        .unwrap_or(&[]);
                    message::render(
                        &mut m,
                        tpl,
                        ords,
                        &chunk.times,
                        |o| self.int_value(o).map_err(err),
                        |o| self.term_text(o).map_err(err),
                    )?;
                }
            }
            out.push(m.as_str().to_owned());
        }
        Ok(out)
    }

    /// The messages of the given rows of `block` (indexed by row; rows not asked for
    /// are empty strings), rebuilding only those.
    pub fn messages_at(&self, block: usize, rows: &[usize]) -> Result<Vec<String>, SegmentError> {
        let n = self.footer.blocks.get(block).map_or(0, |b| b.rows as usize);
        let Some(col) = self.column(ColumnKind::Msg, "_msg") else {
            return Ok(vec![String::new(); n]);
        };
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let Some(cb) = self.read_rows(col, block, Some(&sorted))? else {
            return Ok(vec![String::new(); n]);
        };
        let Values::Str(v) = cb.values else {
            return Ok(vec![String::new(); n]);
        };
        let mut out = vec![String::new(); n];
        let rows_with = present_rows(&cb.present, n);
        for (r, m) in rows_with.into_iter().zip(v) {
            if let Some(slot) = out.get_mut(r) {
                *slot = m;
            }
        }
        Ok(out)
    }

    /// Rebuilds every record of `block` (all columns decoded). Fields come back in
    /// column order (by kind, then name), not in their ingest order.
    pub fn records(&self, block: usize) -> Result<Vec<Record>, SegmentError> {
        self.records_impl(block, None, &|_| true)
    }

    /// The records of `block` with only the columns `want` accepts decoded (the
    /// others stay empty): what a query reads when it needs a few fields.
    pub fn records_with(
        &self,
        block: usize,
        want: &dyn Fn(&ColumnMeta) -> bool,
    ) -> Result<Vec<Record>, SegmentError> {
        self.records_impl(block, None, want)
    }

    /// The records of the given rows of `block` (sorted, as from
    /// [`Self::search_words`]), decoding each column once and rebuilding only those
    /// rows' messages.
    pub fn records_at(&self, block: usize, rows: &[usize]) -> Result<Vec<Record>, SegmentError> {
        self.records_at_with(block, rows, &|_| true)
    }

    /// [`Self::records_at`] with only the columns `want` accepts decoded.
    pub fn records_at_with(
        &self,
        block: usize,
        rows: &[usize],
        want: &dyn Fn(&ColumnMeta) -> bool,
    ) -> Result<Vec<Record>, SegmentError> {
        let mut sorted = rows.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let found = self.records_impl(block, Some(&sorted), want)?;
        // Each record moves into the asked order; a row asked for twice is copied.
        let repeats = sorted.len() < rows.len();
        let mut found: Vec<Option<Record>> = found.into_iter().map(Some).collect();
        Ok(rows
            .iter()
            .filter_map(|r| {
                let slot = found.get_mut(sorted.binary_search(r).ok()?)?;
                if repeats {
                    slot.clone()
                } else {
                    slot.take()
                }
            })
            .collect())
    }

    /// The records of `block`; with `only` (sorted rows), just those rows, in order.
    pub(super) fn records_impl(
        &self,
        block: usize,
        only: Option<&[usize]>,
        want: &dyn Fn(&ColumnMeta) -> bool,
    ) -> Result<Vec<Record>, SegmentError> {
        let rows = self
            .footer
            .blocks
            .get(block)
            .ok_or_else(|| SegmentError::NotFound(format!("block {block}")))?
            .rows as usize;
        // Position in `out` of each block row that is returned.
        let mut slot: Vec<Option<usize>> = vec![None; rows];
        let mut n_out = 0;
        for r in only.map_or_else(|| (0..rows).collect::<Vec<_>>(), <[usize]>::to_vec) {
            if let Some(s) = slot.get_mut(r).filter(|s| s.is_none()) {
                *s = Some(n_out);
                n_out += 1;
            }
        }
        let mut out: Vec<Record> = (0..n_out)
            .map(|_| Record {
                time_ns: 0,
                msg: String::new(),
                stream: Labels::new(),
                level: None,
                fields: Vec::new(),
            })
            .collect();
        let bad = |what: &str| SegmentError::Corrupt {
            path: self.path.clone(),
            offset: 0,
            what: what.to_string(),
        };
        for (col, meta) in self.footer.columns.iter().enumerate() {
            if !want(meta) {
                continue;
            }
            if meta.kind == ColumnKind::Stream {
                // Stream labels repeat: each distinct text is parsed once per block,
                // from the column's dictionary (no string per row).
                let Some(sc) = self.string_ids(col, block)? else {
                    continue;
                };
                let parsed = sc
                    .dict
                    .iter()
                    .map(serde_json::from_str::<Labels>)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("bad _stream labels"))?;
                for (row, id) in sc.row_ids(rows).into_iter().enumerate() {
                    let (Some(t), Some(id)) = (slot.get(row).copied().flatten(), id) else {
                        continue;
                    };
                    let l = parsed
                        .get(id as usize)
                        .ok_or_else(|| bad("stream id out of range"))?;
                    if let Some(rec) = out.get_mut(t) {
                        rec.stream = l.clone();
                    }
                }
                continue;
            }
            let Some(cb) = self.read_rows(col, block, only)? else {
                continue;
            };
            let rows_with = present_rows(&cb.present, rows);
            let targets = rows_with.iter().map(|r| slot.get(*r).copied().flatten());
            match cb.values {
                Values::I64(v) => {
                    for (t, x) in targets.zip(v) {
                        let Some(rec) = t.and_then(|t| out.get_mut(t)) else {
                            continue;
                        };
                        let name = || meta.name.clone();
                        match meta.kind {
                            ColumnKind::Time => rec.time_ns = x,
                            ColumnKind::I64 => rec.fields.push((name(), Value::I64(x))),
                            ColumnKind::F64 => rec
                                .fields
                                .push((name(), Value::F64(f64::from_bits(x as u64)))),
                            ColumnKind::Bool => rec.fields.push((name(), Value::Bool(x != 0))),
                            _ => return Err(bad("column values do not match the column kind")),
                        }
                    }
                }
                Values::Str(v) => {
                    for (t, x) in targets.zip(v) {
                        let Some(rec) = t.and_then(|t| out.get_mut(t)) else {
                            continue;
                        };
                        match meta.kind {
                            ColumnKind::Msg => rec.msg = x,
                            ColumnKind::Level => rec.level = Some(x),
                            ColumnKind::Str => rec.fields.push((meta.name.clone(), Value::Str(x))),
                            ColumnKind::Overflow => rec.fields.extend(
                                super::super::overflow::decode_row(&x).map_err(|e| bad(&e))?,
                            ),
                            _ => return Err(bad("column values do not match the column kind")),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
