//! Scanning: the candidate blocks of a segment are read (only the columns the plan
//! needs), every candidate row is verified with the filter's reference semantics,
//! and the matches go to a [`Sink`]: kept as records, or counted and aggregated
//! straight from the columns where the grouping allows.

use engine::codec::strs::StrList;
use engine::engine::SegmentHandle;
use engine::model::Record;
use engine::segment::overflow::OVERFLOW_COLUMN;
use engine::segment::{
    ColumnBlock, ColumnKind, ColumnMeta, MsgMatchers, MsgPredicate, SegmentError, SegmentReader,
    Values,
};

use crate::aggregate::Grouper;
use crate::ast::{Cond, Filter, Pipe};
use crate::eval::Compiled;
use crate::exec::{Limits, QueryError};
use crate::plan::{prefilter_of, template_phrase, MsgPred, Need, Plan};
use crate::prune::{candidates, Prepared};

/// Where matching records go: kept (for queries returning records) or grouped.
pub(crate) enum Sink {
    Rows {
        rows: Vec<Record>,
        bytes: usize,
    },
    /// Only the newest N wanted ([`Plan::newest`]): rows of segments are held as
    /// references and their records built once, for the N kept
    /// ([`Self::into_newest`]); the memtable's as records.
    Newest {
        held: Vec<(i64, Held)>,
        /// Bytes of the records among `held`.
        bytes: usize,
    },
    Groups(Box<Grouper>),
}

/// One of the newest rows: a record, or where a segment's row is.
pub(crate) enum Held {
    Record(Box<Record>),
    Row {
        /// Index of the segment in the query's snapshot.
        segment: u32,
        block: u32,
        row: u32,
    },
}

/// Of one block: positions in the answer, and the block's rows to put there.
type Wanted = (Vec<usize>, Vec<usize>);

/// What a held row reference costs (its entry in `held`), for the memory limit.
const HELD_REF_BYTES: usize = std::mem::size_of::<(i64, Held)>();

impl Sink {
    /// The sink of a query that wants only its newest records.
    pub(crate) fn newest() -> Sink {
        Sink::Newest {
            held: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether matches are kept as rows (not grouped).
    pub(crate) fn keeps_rows(&self) -> bool {
        !matches!(self, Sink::Groups(_))
    }

    pub(crate) fn new(pipes: &[Pipe]) -> Sink {
        match pipes.first().and_then(Grouper::new) {
            Some(g) => Sink::Groups(Box::new(g)),
            None => Sink::Rows {
                rows: Vec::new(),
                bytes: 0,
            },
        }
    }

    pub(crate) fn add(&mut self, rec: Record, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { rows, bytes } => {
                *bytes += engine::memtable::record_bytes(&rec);
                rows.push(rec);
            }
            Sink::Newest { held, bytes } => {
                *bytes += engine::memtable::record_bytes(&rec);
                held.push((rec.time_ns, Held::Record(Box::new(rec))));
            }
            Sink::Groups(g) => g.add(&rec),
        }
        self.check(limits)
    }

    /// [`Self::add`] of a record read in place (the memtable's): copied only
    /// when kept, not to be grouped.
    pub(crate) fn add_ref(&mut self, rec: &Record, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { .. } | Sink::Newest { .. } => return self.add(rec.clone(), limits),
            Sink::Groups(g) => g.add(rec),
        }
        self.check(limits)
    }

    pub(crate) fn merge(&mut self, other: Sink, limits: &Limits) -> Result<(), QueryError> {
        match (&mut *self, other) {
            (
                Sink::Rows { rows, bytes },
                Sink::Rows {
                    rows: r2,
                    bytes: b2,
                },
            ) => {
                rows.extend(r2);
                *bytes += b2;
            }
            (
                Sink::Newest { held, bytes },
                Sink::Newest {
                    held: h2,
                    bytes: b2,
                },
            ) => {
                held.extend(h2);
                *bytes += b2;
            }
            (Sink::Groups(g), Sink::Groups(g2)) => g.merge(*g2),
            _ => {}
        }
        self.check(limits)
    }

    /// Keeps only the newest `n` records (kept records only; ties in the order
    /// held); their memory estimate shrinks in proportion. Returns the time of the
    /// oldest kept once `n` are held: older records cannot be among the newest `n`.
    pub(crate) fn keep_newest(&mut self, n: usize) -> Option<i64> {
        if let Sink::Newest { held, bytes } = self {
            if held.len() < n {
                return None;
            }
            held.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            for (_, h) in held.drain(n..) {
                if let Held::Record(r) = h {
                    *bytes = bytes.saturating_sub(engine::memtable::record_bytes(&r));
                }
            }
            return held.last().map(|(t, _)| *t);
        }
        let Sink::Rows { rows, bytes } = self else {
            return None;
        };
        if rows.len() < n {
            return None;
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
        // (`| limit 0` gets here with no rows.)
        *bytes = (*bytes as u128 * n as u128)
            .checked_div(rows.len() as u128)
            .unwrap_or(0) as usize;
        rows.truncate(n);
        rows.last().map(|r| r.time_ns)
    }

    /// The newest `n` records of a [`Sink::Newest`], newest first (ties in no
    /// particular order): the kept references' records built block by block, each
    /// block's rows decoded once (on up to `limits.threads` threads), with only the
    /// columns `shown` accepts. Fails when the records pass the memory limit.
    pub(crate) fn into_newest(
        mut self,
        n: usize,
        segments: &[SegmentHandle],
        shown: &(dyn Fn(&ColumnMeta) -> bool + Sync),
        limits: &Limits,
    ) -> Result<Vec<Record>, QueryError> {
        self.keep_newest(n);
        let (mut held, mut bytes) = match self {
            Sink::Newest { held, bytes } => (held, bytes),
            Sink::Rows { rows, .. } => return Ok(rows),
            Sink::Groups(_) => return Ok(Vec::new()),
        };
        held.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        held.truncate(n);
        let mut out: Vec<Option<Record>> = Vec::with_capacity(held.len());
        // Per (segment, block): the positions in `out` and the rows wanted there.
        let mut wanted: std::collections::BTreeMap<(u32, u32), Wanted> = Default::default();
        for (pos, (_, h)) in held.into_iter().enumerate() {
            match h {
                Held::Record(r) => out.push(Some(*r)),
                Held::Row {
                    segment,
                    block,
                    row,
                } => {
                    out.push(None);
                    let w = wanted.entry((segment, block)).or_default();
                    w.0.push(pos);
                    w.1.push(row as usize);
                }
            }
        }
        let wanted: Vec<((u32, u32), Wanted)> = wanted.into_iter().collect();
        let threads = limits.threads.clamp(1, wanted.len().max(1));
        let parts = on_threads(threads, wanted.len(), Vec::new, |built, i| {
            let Some(((seg, block), (pos, rows))) = wanted.get(i) else {
                return Ok(());
            };
            let Some(s) = segments.get(*seg as usize) else {
                return Err(QueryError::Segment(SegmentError::NotFound(format!(
                    "segment {seg} of the query's {}",
                    segments.len()
                ))));
            };
            let recs = s.reader.records_at_with(*block as usize, rows, shown)?;
            built.extend(pos.iter().copied().zip(recs));
            Ok(())
        });
        for part in parts {
            for (pos, rec) in part? {
                bytes += engine::memtable::record_bytes(&rec);
                if let Some(slot) = out.get_mut(pos) {
                    *slot = Some(rec);
                }
            }
            if bytes > limits.memory_bytes {
                return Err(QueryError::Memory(limits.memory_bytes));
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Records kept.
    fn rows_held(&self) -> usize {
        match self {
            Sink::Rows { rows, .. } => rows.len(),
            Sink::Newest { held, .. } => held.len(),
            Sink::Groups(_) => 0,
        }
    }

    /// Fails once the rows, groups or memory held pass the limits.
    pub(crate) fn check(&self, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { rows, bytes } => {
                if rows.len() > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                if *bytes > limits.memory_bytes {
                    return Err(QueryError::Memory(limits.memory_bytes));
                }
            }
            Sink::Newest { held, bytes } => {
                if held.len() > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                if bytes.saturating_add(held.len() * HELD_REF_BYTES) > limits.memory_bytes {
                    return Err(QueryError::Memory(limits.memory_bytes));
                }
            }
            Sink::Groups(g) => {
                if g.len() > limits.max_groups {
                    return Err(QueryError::TooManyGroups(limits.max_groups));
                }
                if g.bytes() > limits.memory_bytes {
                    return Err(QueryError::Memory(limits.memory_bytes));
                }
            }
        }
        Ok(())
    }
}

/// One block being filtered: `_msg` word and prefix conditions are decided on
/// template ids and ordinals for every row at once; other conditions read the
/// block's needed columns (decoded once, lazily) and messages are rebuilt only for
/// rows a phrase or regex still has to check.
pub(crate) struct Block<'a> {
    r: &'a SegmentReader,
    block: usize,
    rows: usize,
    compiled: &'a Compiled,
    need: &'a Need,
    /// Word / prefix conditions on `_msg` and their rows.
    msg_preds: &'a [MsgPred],
    msg_rows: Vec<Vec<bool>>,
    /// Rebuilt messages by row (allocated on first use).
    texts: Vec<Option<String>>,
    partial: Option<Vec<Record>>,
    /// The grouping pipe reads `_msg`.
    pipe_msg: bool,
}

impl<'a> Block<'a> {
    fn new(
        r: &'a SegmentReader,
        block: usize,
        rows: usize,
        compiled: &'a Compiled,
        need: &'a Need,
        msg_preds: &'a [MsgPred],
        matchers: &MsgMatchers,
    ) -> Result<Block<'a>, QueryError> {
        let msg_rows = if msg_preds.is_empty() {
            Vec::new()
        } else {
            r.msg_rows_with(block, matchers)?
        };
        Ok(Block {
            r,
            block,
            rows,
            compiled,
            need,
            msg_preds,
            msg_rows,
            texts: Vec::new(),
            partial: None,
            pipe_msg: need.pipe_msg,
        })
    }

    /// The rows `p` matches (all false if it was not prepared).
    fn msg_pred(&self, p: &MsgPred) -> &[bool] {
        self.msg_preds
            .iter()
            .position(|x| x == p)
            .and_then(|i| self.msg_rows.get(i))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Rebuilds the messages of the rows in `mask` not rebuilt yet.
    fn texts_for(&mut self, mask: &[bool]) -> Result<(), QueryError> {
        if self.texts.is_empty() {
            self.texts = vec![None; self.rows];
        }
        let missing: Vec<usize> = (0..self.rows)
            .filter(|i| {
                mask.get(*i) == Some(&true) && self.texts.get(*i).is_some_and(Option::is_none)
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let got = self.r.messages_at(self.block, &missing)?;
        for i in missing {
            if let (Some(slot), Some(m)) = (self.texts.get_mut(i), got.get(i)) {
                *slot = Some(m.clone());
            }
        }
        Ok(())
    }

    /// The block's records with every needed column but `_msg`.
    fn partial(&mut self) -> Result<&mut Vec<Record>, QueryError> {
        if self.partial.is_none() {
            let need = self.need;
            let recs = self
                .r
                .records_with(self.block, &|c| c.kind != ColumnKind::Msg && need.wants(c))?;
            self.partial = Some(recs);
        }
        Ok(self.partial.get_or_insert_with(Vec::new))
    }

    /// Records of the given rows with the needed columns (messages included when
    /// needed), indexed by row.
    fn records_for(&mut self, rows: &[usize]) -> Result<&[Record], QueryError> {
        if self.pipe_msg {
            let mut mask = vec![false; self.rows];
            for r in rows {
                if let Some(m) = mask.get_mut(*r) {
                    *m = true;
                }
            }
            self.texts_for(&mask)?;
        }
        let texts: Vec<Option<String>> = rows
            .iter()
            .map(|r| self.texts.get(*r).cloned().flatten())
            .collect();
        let recs = self.partial()?;
        for (r, t) in rows.iter().zip(texts) {
            if let (Some(rec), Some(t)) = (recs.get_mut(*r), t) {
                rec.msg = t;
            }
        }
        Ok(recs.as_slice())
    }

    /// The rows of `mask` that `f` matches.
    fn eval(&mut self, f: &Filter, mask: &[bool]) -> Result<Vec<bool>, QueryError> {
        let and = |a: &[bool], b: &[bool]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| *x && *y)
                .collect::<Vec<bool>>()
        };
        Ok(match f {
            Filter::All => mask.to_vec(),
            Filter::And(a, b) => {
                // The cheaper side first (precomputed `_msg` words before columns
                // before rebuilding text), so the other sees fewer rows.
                let (a, b) = if cost(b) < cost(a) { (b, a) } else { (a, b) };
                let m = self.eval(a, mask)?;
                if !m.contains(&true) {
                    return Ok(m);
                }
                self.eval(b, &m)?
            }
            Filter::Or(a, b) => {
                let m1 = self.eval(a, mask)?;
                let rest: Vec<bool> = mask.iter().zip(&m1).map(|(m, x)| *m && !*x).collect();
                let m2 = if rest.contains(&true) {
                    self.eval(b, &rest)?
                } else {
                    rest
                };
                m1.iter().zip(&m2).map(|(x, y)| *x || *y).collect()
            }
            Filter::Not(a) => {
                let m = self.eval(a, mask)?;
                mask.iter().zip(&m).map(|(k, x)| *k && !*x).collect()
            }
            Filter::Field { field, cond } if field == "_msg" => {
                match cond {
                    Cond::Word(w) => and(mask, self.msg_pred(&MsgPred::Word(w.clone()))),
                    Cond::Prefix(p) => and(mask, self.msg_pred(&MsgPred::Prefix(p.clone()))),
                    Cond::Exists => mask.to_vec(),
                    Cond::Phrase(toks) if template_phrase(toks) => {
                        and(mask, self.msg_pred(&MsgPred::Phrase(toks.clone())))
                    }
                    Cond::Phrase(toks) => {
                        let mut m = mask.to_vec();
                        for t in toks {
                            m = and(&m, self.msg_pred(&MsgPred::Word(t.clone())));
                        }
                        self.texts_for(&m)?;
                        (0..self.rows)
                            .map(|i| {
                                m.get(i) == Some(&true)
                                    && self
                                        .texts
                                        .get(i)
                                        .and_then(Option::as_deref)
                                        .is_some_and(|t| crate::eval::contains_phrase(t, toks))
                            })
                            .collect()
                    }
                    Cond::Regex(re) => {
                        // Rows without a token holding the prefilter's strings
                        // cannot match: only the others are rebuilt and run
                        // through the regex.
                        let pre = prefilter_of(self.msg_preds, re)
                            .and_then(|i| self.msg_rows.get(i))
                            .map(|rows| and(mask, rows));
                        let mask = pre.as_deref().unwrap_or(mask);
                        self.texts_for(mask)?;
                        let re = self.compiled.regex(re);
                        (0..self.rows)
                            .map(|i| {
                                mask.get(i) == Some(&true)
                                    && self
                                        .texts
                                        .get(i)
                                        .and_then(Option::as_deref)
                                        .is_some_and(|t| re.is_some_and(|r| r.is_match(t)))
                            })
                            .collect()
                    }
                    Cond::Range { .. } => {
                        self.texts_for(mask)?;
                        let compiled = self.compiled;
                        (0..self.rows)
                            .map(|i| {
                                mask.get(i) == Some(&true)
                                    && self.texts.get(i).and_then(Option::as_deref).is_some_and(
                                        |t| {
                                            let rec = Record {
                                                time_ns: 0,
                                                msg: t.to_string(),
                                                stream: Default::default(),
                                                level: None,
                                                fields: Vec::new(),
                                            };
                                            compiled.matches_part(f, &rec)
                                        },
                                    )
                            })
                            .collect()
                    }
                }
            }
            Filter::Field { field, cond } if text_condition(field, cond) => {
                // Decided per distinct value from the columns, no records built.
                let keys = FieldKeys::read(self.r, self.block, self.rows, field)?;
                match cond {
                    Cond::Word(w) => keys.filter(mask, |t| t == w),
                    Cond::Prefix(p) => keys.filter(mask, |t| t.starts_with(p.as_str())),
                    Cond::Phrase(ph) => keys.filter(mask, |t| crate::eval::contains_phrase(t, ph)),
                    Cond::Regex(re) => {
                        let re = self.compiled.regex(re);
                        keys.filter(mask, |t| re.is_some_and(|r| r.is_match(t)))
                    }
                    // (A range never gets here: see `text_condition`.)
                    Cond::Exists | Cond::Range { .. } => keys.filter(mask, |_| true),
                }
            }
            _ => {
                let compiled = self.compiled;
                let recs = self.partial()?;
                (0..recs.len())
                    .map(|i| {
                        mask.get(i) == Some(&true)
                            && recs.get(i).is_some_and(|rec| compiled.matches_part(f, rec))
                    })
                    .collect()
            }
        })
    }
}

/// A key value read from a block's columns, before it is resolved to text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyRef {
    /// Value `id` of string column source `src`.
    Str(usize, u32),
    /// Text made from a number or boolean, by index.
    Text(usize),
    /// Value of the stream label, by `_stream` dictionary id.
    Label(u32),
}

/// Per row of one block, where its value of field `k` comes from, read straight from
/// the columns with the precedence of [`crate::eval::field_text`]: the level (for
/// `level`), then a field named `k` (string, integer, float, boolean columns, in that
/// order), then the stream label `k`. Values stay dictionary references, so work per
/// distinct value is done once.
pub(crate) struct FieldKeys {
    key: Vec<Option<KeyRef>>,
    dicts: Vec<StrList>,
    texts: Vec<String>,
    labels: Vec<Option<String>>,
}

impl FieldKeys {
    fn read(r: &SegmentReader, b: usize, rows: usize, k: &str) -> Result<FieldKeys, QueryError> {
        let mut key: Vec<Option<KeyRef>> = vec![None; rows];
        let mut dicts: Vec<StrList> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        for (col, meta) in r.footer().columns.iter().enumerate() {
            if !holds_field(meta, k) {
                continue;
            }
            match meta.kind {
                ColumnKind::Level | ColumnKind::Str => {
                    let Some(sc) = r.string_ids(col, b)? else {
                        continue;
                    };
                    let src = dicts.len();
                    for (row, id) in sc.row_ids(rows).into_iter().enumerate() {
                        if let (Some(id), Some(slot)) = (id, key.get_mut(row)) {
                            if slot.is_none() {
                                *slot = Some(KeyRef::Str(src, id));
                            }
                        }
                    }
                    dicts.push(sc.dict);
                }
                kind => {
                    let Some(cb) = r.read(col, b)? else { continue };
                    let Values::I64(vals) = cb.values else {
                        continue;
                    };
                    let rows_with: Vec<usize> = match &cb.present {
                        None => (0..rows).collect(),
                        Some(p) => (0..rows).filter(|i| p.get(*i) == Some(&true)).collect(),
                    };
                    for (row, x) in rows_with.into_iter().zip(vals) {
                        if let Some(slot) = key.get_mut(row).filter(|s| s.is_none()) {
                            let v = match kind {
                                ColumnKind::F64 => {
                                    engine::model::Value::F64(f64::from_bits(x as u64))
                                }
                                ColumnKind::Bool => engine::model::Value::Bool(x != 0),
                                _ => engine::model::Value::I64(x),
                            };
                            texts.push(v.to_text());
                            *slot = Some(KeyRef::Text(texts.len() - 1));
                        }
                    }
                }
            }
        }
        // Fields of names over the segment's column cap, for rows with none yet.
        if let Some(col) = r.column(ColumnKind::Overflow, OVERFLOW_COLUMN) {
            if key.iter().any(Option::is_none) {
                if let Some(cb) = r.read(col, b)? {
                    let Values::Str(rows_text) = cb.values else {
                        return Err(QueryError::Segment(SegmentError::NotFound(
                            "the overflow column holds no strings".into(),
                        )));
                    };
                    let rows_with = match &cb.present {
                        None => (0..rows).collect::<Vec<_>>(),
                        Some(p) => (0..rows).filter(|i| p.get(*i) == Some(&true)).collect(),
                    };
                    for (row, text) in rows_with.into_iter().zip(rows_text) {
                        let Some(slot) = key.get_mut(row).filter(|s| s.is_none()) else {
                            continue;
                        };
                        let fields = engine::segment::overflow::decode_row(&text).map_err(|e| {
                            QueryError::Segment(SegmentError::Corrupt {
                                path: r.path().to_path_buf(),
                                offset: 0,
                                what: e,
                            })
                        })?;
                        if let Some((_, v)) = fields.iter().find(|(n, _)| n == k) {
                            texts.push(v.to_text());
                            *slot = Some(KeyRef::Text(texts.len() - 1));
                        }
                    }
                }
            }
        }
        // The stream label, for rows with no such field: each distinct label set
        // parsed once.
        let mut labels: Vec<Option<String>> = Vec::new();
        if key.iter().any(Option::is_none) {
            if let Some(col) = r.column(ColumnKind::Stream, "_stream") {
                if let Some(sc) = r.string_ids(col, b)? {
                    labels = sc
                        .dict
                        .iter()
                        .map(|j| {
                            serde_json::from_str::<engine::model::Labels>(j)
                                .ok()
                                .and_then(|l| l.get(k).cloned())
                        })
                        .collect();
                    for (row, id) in sc.row_ids(rows).into_iter().enumerate() {
                        let has = id
                            .and_then(|i| labels.get(i as usize))
                            .is_some_and(Option::is_some);
                        if let (true, Some(id), Some(slot)) = (has, id, key.get_mut(row)) {
                            if slot.is_none() {
                                *slot = Some(KeyRef::Label(id));
                            }
                        }
                    }
                }
            }
        }
        Ok(FieldKeys {
            key,
            dicts,
            texts,
            labels,
        })
    }

    fn resolve(&self, k: KeyRef) -> Option<&str> {
        match k {
            KeyRef::Str(src, id) => self.dicts.get(src)?.get(id as usize),
            KeyRef::Text(i) => self.texts.get(i).map(String::as_str),
            KeyRef::Label(id) => self.labels.get(id as usize)?.as_deref(),
        }
    }

    /// Adds the `chosen` rows to a one-key counting grouper, by value.
    fn add_counts(&self, chosen: &[usize], g: &mut Grouper) {
        let distinct: usize = self.dicts.iter().map(StrList::len).sum::<usize>() + self.texts.len();
        if distinct * 4 > chosen.len() {
            // Values mostly distinct (a high-cardinality column): straight in.
            g.add_single_keys(chosen.iter().map(|row| {
                let k = self.key.get(*row).copied().flatten();
                k.and_then(|k| self.resolve(k))
            }));
            return;
        }
        // Few values: count by reference first, in arrays indexed by dictionary id.
        let mut dense: Vec<Vec<u64>> = self.dicts.iter().map(|d| vec![0; d.len()]).collect();
        let mut labels = vec![0u64; self.labels.len()];
        let mut other: rustc_hash::FxHashMap<Option<KeyRef>, u64> = Default::default();
        for row in chosen {
            let k = self.key.get(*row).copied().flatten();
            let slot = match k {
                Some(KeyRef::Str(src, id)) => {
                    dense.get_mut(src).and_then(|d| d.get_mut(id as usize))
                }
                Some(KeyRef::Label(id)) => labels.get_mut(id as usize),
                _ => None,
            };
            match slot {
                Some(c) => *c += 1,
                None => *other.entry(k).or_default() += 1,
            }
        }
        for (src, counts) in dense.iter().enumerate() {
            for (id, n) in counts.iter().enumerate() {
                if *n > 0 {
                    g.add_single_key_count(self.resolve(KeyRef::Str(src, id as u32)), *n);
                }
            }
        }
        for (id, n) in labels.iter().enumerate() {
            if *n > 0 {
                g.add_single_key_count(self.resolve(KeyRef::Label(id as u32)), *n);
            }
        }
        for (k, n) in other {
            g.add_single_key_count(k.and_then(|k| self.resolve(k)), n);
        }
    }

    /// The rows of `mask` whose value satisfies `test` (rows without one never do);
    /// `test` runs once per distinct reference.
    fn filter(&self, mask: &[bool], mut test: impl FnMut(&str) -> bool) -> Vec<bool> {
        let mut seen: rustc_hash::FxHashMap<KeyRef, bool> = Default::default();
        mask.iter()
            .zip(&self.key)
            .map(|(m, k)| {
                *m && k.is_some_and(|k| {
                    *seen
                        .entry(k)
                        .or_insert_with(|| self.resolve(k).is_some_and(&mut test))
                })
            })
            .collect()
    }
}

/// Whether column `c` holds values of field `k` (the level column for `level`,
/// else the field columns named `k`).
pub(crate) fn holds_field(c: &ColumnMeta, k: &str) -> bool {
    match c.kind {
        ColumnKind::Level => k == "level",
        ColumnKind::Str | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => c.name == k,
        _ => false,
    }
}

/// Counts every row of block `b` by field `k` straight from its first column, when
/// that column is a string column every row has a value in (then no other source
/// can apply): by dictionary id, or value by value without copying them. Returns
/// whether it could.
pub(crate) fn count_whole_string_column(
    r: &SegmentReader,
    b: usize,
    k: &str,
    g: &mut Grouper,
) -> Result<bool, QueryError> {
    let first = r.footer().columns.iter().position(|c| holds_field(c, k));
    let Some(col) = first else { return Ok(false) };
    Ok(r.tally_every_row(col, b, |v, n| g.add_single_key_count(Some(v), n))?)
}

/// Whether a field condition can be tested on the field's text alone (one distinct
/// value at a time): not `_msg`, `_time` or `_stream`, not a numeric range.
pub(crate) fn text_condition(field: &str, cond: &Cond) -> bool {
    !matches!(field, "_msg" | "_time" | "_stream") && !matches!(cond, Cond::Range { .. })
}

/// Rough cost of evaluating `f` on a block: 0 for `_msg` words and prefixes (decided
/// up front on template ids), 1 for conditions on other columns, 2 for those that
/// rebuild message text.
pub(crate) fn cost(f: &Filter) -> u8 {
    match f {
        Filter::All => 0,
        Filter::And(a, b) | Filter::Or(a, b) => cost(a).max(cost(b)),
        Filter::Not(a) => cost(a),
        Filter::Field { field, cond } if field == "_msg" => match cond {
            Cond::Word(_) | Cond::Prefix(_) | Cond::Exists => 0,
            Cond::Phrase(t) if template_phrase(t) => 0,
            _ => 2,
        },
        _ => 1,
    }
}

/// The `_time` of every row of block `b` (empty when the column is missing or
/// holds no plain integers).
fn block_times(r: &SegmentReader, b: usize) -> Result<Vec<i64>, QueryError> {
    let Some(c) = r.column(ColumnKind::Time, "_time") else {
        return Ok(Vec::new());
    };
    Ok(match r.read(c, b)? {
        Some(ColumnBlock {
            values: Values::I64(v),
            present: None,
        }) => v,
        _ => Vec::new(),
    })
}

/// Runs `step(state, i)` for every `i` in `0..items` on `threads` threads, each
/// taking the next item as it is free, with a state of its own (`init`); the
/// threads' states (or the first error of each) in thread order.
pub(crate) fn on_threads<S: Send>(
    threads: usize,
    items: usize,
    init: impl Fn() -> S + Sync,
    step: impl Fn(&mut S, usize) -> Result<(), QueryError> + Sync,
) -> Vec<Result<S, QueryError>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = init();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= items {
                            return Ok(mine);
                        }
                        step(&mut mine, i)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Everything one segment contributes.
/// `segment` is the segment's index in the query's snapshot (what a
/// [`Sink::Newest`] refers to).
pub(crate) fn scan_segment(
    seg: &SegmentHandle,
    segment: usize,
    plan: &Plan<'_>,
    limits: &Limits,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    let Plan {
        ref query,
        ref compiled,
        bounds,
        started,
        ref need,
        ref msg_preds,
        ..
    } = *plan;
    let q: &crate::ast::Query = query;
    let r = &*seg.reader;
    let blocks = r.footer().blocks.clone();
    // The `_msg` conditions, prepared once for the segment.
    let preds: Vec<MsgPredicate<'_>> = msg_preds.iter().map(MsgPred::as_predicate).collect();
    let matchers = r.msg_matchers(&preds)?;
    let prepared = Prepared {
        preds: msg_preds,
        matchers: &matchers,
    };
    let cands = candidates(&q.filter, r, &prepared)?;
    // Only the newest N wanted: blocks all older than N records in hand are skipped.
    let newest = plan.newest().filter(|_| sink.keeps_rows());
    if newest == Some(0) {
        return Ok(());
    }
    let mut floor = newest.and_then(|n| sink.keep_newest(n));
    let only_limits = q.only_limits();
    // Newest blocks first (blocks are in time order).
    for (b, meta) in blocks.iter().enumerate().rev() {
        if let Some(n) = newest {
            // Trimmed when twice as many are held: sorting stays amortized.
            if sink.rows_held() >= n.saturating_mul(2) {
                floor = sink.keep_newest(n).or(floor);
            }
            // N records at `floor` or newer are in hand: this block's can at
            // best tie with the oldest of them (which of the records of one time a
            // limit keeps is unspecified).
            if floor.is_some_and(|f| meta.max_time <= f) {
                continue;
            }
        }
        if cands.as_ref().is_some_and(|c| !c.contains(b as u32))
            || meta.max_time < bounds.0
            || meta.min_time >= bounds.1
        {
            continue;
        }
        if started.elapsed() > limits.deadline {
            return Err(QueryError::Deadline(limits.deadline));
        }
        let mut ctx = Block::new(
            r,
            b,
            meta.rows as usize,
            compiled,
            need,
            msg_preds,
            &matchers,
        )?;
        let all = vec![true; ctx.rows];
        let sel = ctx.eval(&q.filter, &all)?;
        let chosen: Vec<usize> = (0..ctx.rows)
            .rev()
            .filter(|i| sel.get(*i) == Some(&true))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        match sink {
            Sink::Groups(g) if g.counts_only() => g.add_count(chosen.len() as u64),
            Sink::Groups(g) if g.time_bucket_counts().is_some() => {
                // Counts per time bucket straight from the `_time` column.
                let step = g.time_bucket_counts().unwrap_or(1).max(1);
                let times = block_times(r, b)?;
                // Rows are in time order within a block: count runs of one bucket.
                let mut run: Option<(i64, u64)> = None;
                for i in &chosen {
                    let Some(t) = times.get(*i) else { continue };
                    let bucket = t - t.rem_euclid(step);
                    match &mut run {
                        Some((b, n)) if *b == bucket => *n += 1,
                        _ => {
                            if let Some((b, n)) = run.replace((bucket, 1)) {
                                g.add_bucket_count(b, n);
                            }
                        }
                    }
                }
                if let Some((b, n)) = run {
                    g.add_bucket_count(b, n);
                }
            }
            Sink::Groups(g)
                if g.counts_by_fields()
                    && g.single_field_key().is_some_and(|k| !k.starts_with('_')) =>
            {
                // One field key: count straight from the columns.
                let k = g.single_field_key().unwrap_or_default().to_string();
                if chosen.len() < ctx.rows || !count_whole_string_column(r, b, &k, g)? {
                    FieldKeys::read(r, b, ctx.rows, &k)?.add_counts(&chosen, g);
                }
            }
            Sink::Groups(g) if g.counts_by_fields() => {
                // Count per distinct key within the block, then once into the grouper.
                let recs = ctx.records_for(&chosen)?;
                let mut counts: std::collections::HashMap<
                    Vec<Option<std::borrow::Cow<'_, str>>>,
                    u64,
                > = Default::default();
                for i in &chosen {
                    if let Some(rec) = recs.get(*i) {
                        *counts.entry(g.field_key(rec)).or_default() += 1;
                    }
                }
                for (k, n) in counts {
                    g.add_key_count(
                        k.into_iter()
                            .map(|v| v.map(std::borrow::Cow::into_owned))
                            .collect(),
                        n,
                    );
                }
            }
            Sink::Groups(g) => {
                let recs = ctx.records_for(&chosen)?;
                for i in &chosen {
                    if let Some(rec) = recs.get(*i) {
                        g.add(rec);
                    }
                }
            }
            Sink::Rows { .. } => {
                // `chosen` is newest first (a block's rows are in time order): only
                // the newest N can be wanted.
                let chosen = match newest {
                    Some(n) => chosen.get(..n.min(chosen.len())).unwrap_or(&[]),
                    None => &chosen[..],
                };
                // Through nothing but limits, hidden fields (`_template`) are
                // never shown: not decoded (a field per record saved).
                let shown = |c: &ColumnMeta| !(only_limits && crate::table::hidden(&c.name));
                for rec in r.records_at_with(b, chosen, &shown)? {
                    sink.add(rec, limits)?;
                }
            }
            Sink::Newest { held, .. } => {
                // References only (the rows' times from the `_time` column): the
                // records are built for the N kept at the end.
                let chosen = chosen
                    .get(..newest.unwrap_or(usize::MAX).min(chosen.len()))
                    .unwrap_or(&[]);
                let times = block_times(r, b)?;
                let at = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
                for row in chosen {
                    let Some(t) = times.get(*row) else {
                        return Err(QueryError::Segment(SegmentError::Corrupt {
                            path: r.path().to_path_buf(),
                            offset: 0,
                            what: format!("block {b} has no time for row {row}"),
                        }));
                    };
                    held.push((
                        *t,
                        Held::Row {
                            segment: at(segment),
                            block: at(b),
                            row: at(*row),
                        },
                    ));
                }
            }
        }
        sink.check(limits)?;
    }
    Ok(())
}
