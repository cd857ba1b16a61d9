//! The executor: runs a parsed query over an engine snapshot. Segments are pruned by
//! time (manifest, then per block) and by the inverted index (bitmap algebra over
//! lookups); only candidate blocks are read, and every candidate row is verified with
//! the reference semantics ([`crate::eval`]), so the result is exactly what a scan
//! of every record returns. Segments are processed on all cores; grouping pipes keep
//! mergeable partial states per segment.

use std::time::{Duration, Instant};

use engine::engine::{Engine, EngineError, SegmentHandle};
use engine::model::{Record, Tenant};
use engine::segment::overflow::OVERFLOW_COLUMN;
use engine::segment::{field_term, msg_term, SegmentError, SegmentReader};
use roaring::RoaringBitmap;

use std::collections::BTreeSet;

use engine::codec::strs::StrList;
use engine::segment::{
    is_template_word, ColumnBlock, ColumnKind, ColumnMeta, MsgMatchers, MsgPredicate, Values,
};

use crate::ast::{Agg, Cond, Filter, GroupKey, Pipe, Query};
use crate::eval::{apply_pipes, apply_table_pipes, Compiled, Grouper, Table};

/// Segments scanned at once when some are offloaded (their scans mostly wait on
/// object-store requests); at least the configured threads.
const REMOTE_SCAN_THREADS: usize = 8;

/// Bounds on one query; exceeding one is an error, never an OOM or a hang.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time allowed.
    pub deadline: Duration,
    /// Most matching records kept for a query that returns records (before its
    /// pipes; `| limit N` first stops early instead).
    pub max_rows: usize,
    /// Most groups of `stats`, `top` or `uniq`.
    pub max_groups: usize,
    /// Rough bytes of matching records and group states held.
    pub memory_bytes: usize,
    /// Threads scanning segments.
    pub threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(30),
            max_rows: 1_000_000,
            max_groups: 1_000_000,
            memory_bytes: 1 << 30,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] crate::parse::ParseError),
    /// A regex does not compile (or is over the size limit).
    #[error("bad regular expression: {0}")]
    Regex(#[from] regex::Error),
    /// Storage failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A segment failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Over the deadline.
    #[error("query exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// Too many matching records to return.
    #[error("query matches more than {0} records; add `| limit N` or aggregate with `| stats`")]
    TooManyRows(usize),
    /// Too many groups.
    #[error("query makes more than {0} groups; group by fewer or coarser fields")]
    TooManyGroups(usize),
    /// Over the memory budget.
    #[error("query needs more than its memory budget of {0} bytes")]
    Memory(usize),
    /// The result does not convert to Arrow.
    #[error("result as Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Runs a parsed query and returns its result as Arrow record batches of at most
/// `batch_rows` rows ([`crate::arrow`]).
pub fn run_batches(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
    limits: &Limits,
    batch_rows: usize,
) -> Result<Vec<arrow_array::RecordBatch>, QueryError> {
    let mut out = Vec::new();
    run_batches_each(engine, tenant, q, limits, batch_rows, |b| {
        out.push(b);
        true
    })?;
    Ok(out)
}

/// [`run_batches`], handing each batch to `emit` as soon as it is built (Flight
/// DoGet sends one while the next is converted); stops early when `emit` returns
/// false.
pub fn run_batches_each(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
    limits: &Limits,
    batch_rows: usize,
    emit: impl FnMut(arrow_array::RecordBatch) -> bool,
) -> Result<(), QueryError> {
    run_batches_each_with(engine, tenant, q, limits, batch_rows, || {}, emit)
}

/// [`run_batches_each`], calling `after_snapshot` once the query holds its
/// snapshot of the engine (the last moment it takes an engine lock) and before it
/// reads anything: the server lowers the thread's CPU priority there, so that a
/// query never holds a lock ingest needs while it waits for the CPU.
pub fn run_batches_each_with(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
    limits: &Limits,
    batch_rows: usize,
    after_snapshot: impl FnOnce(),
    mut emit: impl FnMut(arrow_array::RecordBatch) -> bool,
) -> Result<(), QueryError> {
    let mut hook = Some(after_snapshot);
    let mut after = || {
        if let Some(h) = hook.take() {
            h();
        }
    };
    match answer(engine, tenant, q, limits, &mut after)? {
        // Records through nothing but limits go to Arrow straight from the records
        // (no table of cells, no `_time` text): what Flight DoGet streams.
        Answer::Rows(mut rows) if q.pipes.iter().all(|p| matches!(p, Pipe::Limit(_))) => {
            for p in &q.pipes {
                if let Pipe::Limit(n) = p {
                    rows.truncate(usize::try_from(*n).unwrap_or(usize::MAX));
                }
            }
            Ok(crate::arrow::records_to_batches_each(
                &rows, batch_rows, emit,
            )?)
        }
        a => {
            for b in crate::arrow::to_record_batches(&a.into_table(q), batch_rows)? {
                if !emit(b) {
                    break;
                }
            }
            Ok(())
        }
    }
}

/// What the scan leaves: matching records (newest first), or a grouping pipe's table.
enum Answer {
    Rows(Vec<Record>),
    Groups(Table),
}

impl Answer {
    /// The query's result table: the rest of the pipes applied.
    fn into_table(self, q: &Query) -> Table {
        match self {
            Answer::Rows(rows) => apply_pipes(&q.pipes, &rows),
            Answer::Groups(t) => apply_table_pipes(q.pipes.get(1..).unwrap_or(&[]), t),
        }
    }
}

/// Parses and runs `text` for `tenant`.
pub fn query(
    engine: &Engine,
    tenant: &Tenant,
    text: &str,
    limits: &Limits,
) -> Result<Table, QueryError> {
    let q = crate::parse::parse(text, now_ns())?;
    run(engine, tenant, &q, limits)
}

/// Parses and runs `text` for `tenant`; the result as Arrow record batches of at
/// most `batch_rows` rows ([`run_batches`]).
pub fn query_batches(
    engine: &Engine,
    tenant: &Tenant,
    text: &str,
    limits: &Limits,
    batch_rows: usize,
) -> Result<Vec<arrow_array::RecordBatch>, QueryError> {
    let q = crate::parse::parse(text, now_ns())?;
    run_batches(engine, tenant, &q, limits, batch_rows)
}

/// Parses `text` (relative times against now).
pub fn parse_now(text: &str) -> Result<Query, QueryError> {
    Ok(crate::parse::parse(text, now_ns())?)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The filter with each `_template:ID` widened to the ids folded into that
/// template since (`_template:3` also matches records given 7 before 7 folded into
/// 3); `None` when nothing changes.
fn resolve_templates(engine: &Engine, tenant: &Tenant, f: &Filter) -> Option<Filter> {
    let both = |a: &Filter, b: &Filter| -> Option<(Filter, Filter)> {
        match (
            resolve_templates(engine, tenant, a),
            resolve_templates(engine, tenant, b),
        ) {
            (None, None) => None,
            (x, y) => Some((
                x.unwrap_or_else(|| a.clone()),
                y.unwrap_or_else(|| b.clone()),
            )),
        }
    };
    match f {
        Filter::And(a, b) => both(a, b).map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
        Filter::Or(a, b) => both(a, b).map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
        Filter::Not(a) => resolve_templates(engine, tenant, a).map(|a| Filter::Not(Box::new(a))),
        Filter::Field {
            field,
            cond: Cond::Word(w),
        } if field == engine::engine::TEMPLATE_FIELD => {
            let id: u64 = w.parse().ok()?;
            let ids = engine.template_ids(tenant, id);
            if ids.len() < 2 {
                return None;
            }
            let alternatives = ids
                .into_iter()
                .map(|i| Filter::Field {
                    field: field.clone(),
                    cond: Cond::Word(i.to_string()),
                })
                .collect();
            // Balanced: a template with many aliases must not deepen the tree much.
            Filter::balanced(alternatives, Filter::Or)
        }
        _ => None,
    }
}

/// The `[start, end)` every matching record's time lies in, from `_time` filters
/// that must hold (those joined by AND at the top).
/// Stream labels (`name=value`) every matching record carries: the positive
/// matchers of stream selectors the filter requires (conjoined at its top).
fn required_labels(f: &Filter, out: &mut Vec<String>) {
    match f {
        Filter::Stream(ms) => out.extend(
            ms.iter()
                .filter(|m| !m.negated)
                .map(|m| format!("{}={}", m.name, m.value)),
        ),
        Filter::And(a, b) => {
            required_labels(a, out);
            required_labels(b, out);
        }
        _ => {}
    }
}

fn time_bounds(f: &Filter) -> (i64, i64) {
    match f {
        Filter::Time { start, end } => (*start, *end),
        Filter::And(a, b) => {
            let (s1, e1) = time_bounds(a);
            let (s2, e2) = time_bounds(b);
            (s1.max(s2), e1.min(e2))
        }
        _ => (i64::MIN, i64::MAX),
    }
}

/// Blocks of `r` that can hold a match (`None`: any block can).
fn candidates(
    f: &Filter,
    r: &SegmentReader,
    m: &Prepared<'_>,
) -> Result<Option<RoaringBitmap>, SegmentError> {
    Ok(match f {
        Filter::All | Filter::Not(_) => None,
        Filter::And(a, b) => match (candidates(a, r, m)?, candidates(b, r, m)?) {
            (Some(x), Some(y)) => Some(x & y),
            (x, y) => x.or(y),
        },
        Filter::Or(a, b) => match (candidates(a, r, m)?, candidates(b, r, m)?) {
            (Some(x), Some(y)) => Some(x | y),
            _ => None,
        },
        Filter::Time { start, end } => Some(
            r.footer()
                .blocks
                .iter()
                .enumerate()
                .filter(|(_, b)| b.max_time >= *start && b.min_time < *end)
                .map(|(i, _)| i as u32)
                .collect(),
        ),
        Filter::Stream(ms) => {
            let mut out: Option<RoaringBitmap> = None;
            for m in ms.iter().filter(|m| !m.negated) {
                let bm = r.lookup(&field_term(&m.name, &m.value))?;
                out = Some(match out {
                    Some(o) => o & bm,
                    None => bm,
                });
            }
            out
        }
        Filter::Field { field, cond } if field == "_msg" => match cond {
            // A word the segment's dictionaries (already searched for the row
            // matchers) do not hold needs no lookup.
            Cond::Word(w) if m.never(&MsgPred::Word(w.clone())) => Some(RoaringBitmap::new()),
            Cond::Word(w) => Some(r.lookup(&msg_term(w))?),
            Cond::Prefix(p) => Some(r.lookup_prefix(&msg_term(p))?),
            Cond::Phrase(toks) => {
                let mut out: Option<RoaringBitmap> = None;
                for t in toks {
                    let bm = r.lookup(&msg_term(t))?;
                    out = Some(match out {
                        Some(o) => o & bm,
                        None => bm,
                    });
                }
                out
            }
            Cond::Regex(re) => match prefilter_of(m.preds, re) {
                Some(i) => r.matcher_blocks(m.matchers, i)?,
                None => None,
            },
            _ => None,
        },
        // `_time` and `_stream` as fields have no index entries.
        Filter::Field { field, .. } if field.starts_with('_') => None,
        Filter::Field { field, cond } => match cond {
            Cond::Word(v) => Some(r.lookup(&field_term(field, v))?),
            Cond::Prefix(p) => Some(r.lookup_prefix(&field_term(field, p))?),
            Cond::Exists => Some(r.lookup_prefix(&field_term(field, ""))?),
            _ => None,
        },
    })
}

/// A segment's `_msg` predicates and their prepared matchers.
struct Prepared<'a> {
    preds: &'a [MsgPred],
    matchers: &'a MsgMatchers,
}

impl Prepared<'_> {
    /// Whether `p` was prepared and matches nothing in the segment.
    fn never(&self, p: &MsgPred) -> bool {
        self.preds
            .iter()
            .position(|x| x == p)
            .is_some_and(|i| self.matchers.never(i))
    }
}

/// Where matching records go: kept (for queries returning records) or grouped.
enum Sink {
    Rows { rows: Vec<Record>, bytes: usize },
    Groups(Box<Grouper>),
}

impl Sink {
    fn new(pipes: &[Pipe]) -> Sink {
        match pipes.first().and_then(Grouper::new) {
            Some(g) => Sink::Groups(Box::new(g)),
            None => Sink::Rows {
                rows: Vec::new(),
                bytes: 0,
            },
        }
    }

    fn add(&mut self, rec: Record, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { rows, bytes } => {
                *bytes += engine::memtable::record_bytes(&rec);
                rows.push(rec);
            }
            Sink::Groups(g) => g.add(&rec),
        }
        self.check(limits)
    }

    /// [`Self::add`] of a record read in place (the memtable's): copied only
    /// when kept, not to be grouped.
    fn add_ref(&mut self, rec: &Record, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { .. } => return self.add(rec.clone(), limits),
            Sink::Groups(g) => g.add(rec),
        }
        self.check(limits)
    }

    fn merge(&mut self, other: Sink, limits: &Limits) -> Result<(), QueryError> {
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
            (Sink::Groups(g), Sink::Groups(g2)) => g.merge(*g2),
            _ => {}
        }
        self.check(limits)
    }

    /// Fails once the rows, groups or memory held pass the limits.
    fn check(&self, limits: &Limits) -> Result<(), QueryError> {
        match self {
            Sink::Rows { rows, bytes } => {
                if rows.len() > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                if *bytes > limits.memory_bytes {
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

/// The columns a query reads: by name (`_time`, `_msg`, `_stream`, `level`, fields).
#[derive(Debug, Clone, Default)]
struct Need {
    names: BTreeSet<String>,
    /// The grouping pipe reads `_msg`.
    pipe_msg: bool,
}

impl Need {
    fn of_filter(f: &Filter, n: &mut Need) {
        match f {
            Filter::All => {}
            Filter::And(a, b) | Filter::Or(a, b) => {
                Need::of_filter(a, n);
                Need::of_filter(b, n);
            }
            Filter::Not(a) => Need::of_filter(a, n),
            Filter::Time { .. } => {
                n.names.insert("_time".into());
            }
            Filter::Stream(_) => {
                n.names.insert("_stream".into());
            }
            Filter::Field { field, .. } => {
                n.names.insert(field.clone());
            }
        }
    }

    fn of_pipe(p: &Pipe, n: &mut Need) {
        match p {
            Pipe::Stats { funcs, by } => {
                for k in by {
                    n.names.insert(match k {
                        GroupKey::Field(f) => f.clone(),
                        GroupKey::TimeBucket(_) => "_time".into(),
                    });
                }
                for f in funcs {
                    match f {
                        Agg::Count => {}
                        Agg::CountUniq(x)
                        | Agg::Sum(x)
                        | Agg::Avg(x)
                        | Agg::Min(x)
                        | Agg::Max(x)
                        | Agg::Quantile(_, x) => {
                            n.names.insert(x.clone());
                        }
                    }
                }
            }
            Pipe::Top { by, .. } | Pipe::Uniq(by) => n.names.extend(by.iter().cloned()),
            Pipe::Fields(f) => n.names.extend(f.iter().cloned()),
            Pipe::Sort(keys) => n.names.extend(keys.iter().map(|k| k.field.clone())),
            Pipe::Limit(_) => {}
        }
    }

    /// Whether column `c` must be decoded. A name that is not special may also be a
    /// stream label, so it needs `_stream` too; `level` may also be a field.
    fn wants(&self, c: &ColumnMeta) -> bool {
        let plain = || self.names.iter().any(|n| !n.starts_with('_'));
        match c.kind {
            ColumnKind::Time => self.names.contains("_time"),
            ColumnKind::Msg => self.names.contains("_msg"),
            // Plain names may be stream labels, and fields kept in the overflow
            // column (names over the segment's column cap).
            ColumnKind::Stream | ColumnKind::Overflow => self.names.contains("_stream") || plain(),
            ColumnKind::Level => self.names.contains("level"),
            _ => self.names.contains(&c.name),
        }
    }
}

/// One block being filtered: `_msg` word and prefix conditions are decided on
/// template ids and ordinals for every row at once; other conditions read the
/// block's needed columns (decoded once, lazily) and messages are rebuilt only for
/// rows a phrase or regex still has to check.
/// A `_msg` condition decided on template ids and variable ordinals, before any
/// text is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MsgPred {
    Word(String),
    Prefix(String),
    /// Only for phrases of template words ([`template_phrase`]).
    Phrase(Vec<String>),
    /// A regex's prefilter ([`regex_prefilter`]): a token contains one of `subs`.
    Contains {
        regex: String,
        subs: Vec<String>,
    },
}

impl MsgPred {
    fn as_predicate(&self) -> MsgPredicate<'_> {
        match self {
            MsgPred::Word(w) => MsgPredicate::Word(w),
            MsgPred::Prefix(p) => MsgPredicate::Prefix(p),
            MsgPred::Phrase(t) => MsgPredicate::Phrase(t),
            MsgPred::Contains { subs, .. } => MsgPredicate::Contains(subs),
        }
    }
}

/// Strings of which every match of regex `re` holds one inside a single token, or
/// `None` when there are none worth looking up: from the regex's prefix literals
/// (every match starts with one of them), the longest run of ASCII token characters
/// of each (a run of token characters never crosses a token boundary). Runs shorter
/// than 3 bytes select too much to be worth it.
fn regex_prefilter(re: &str) -> Option<Vec<String>> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(re).ok()?;
    let seq = regex_syntax::hir::literal::Extractor::new().extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for l in lits {
        let run = l
            .as_bytes()
            .split(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .max_by_key(|r| r.len())
            .unwrap_or(&[]);
        if run.len() < 3 {
            return None;
        }
        let run = String::from_utf8_lossy(run).into_owned();
        if !out.contains(&run) {
            out.push(run);
        }
    }
    Some(out)
}

/// Where the prefilter of regex `re` is among `preds`, if it has one.
fn prefilter_of(preds: &[MsgPred], re: &str) -> Option<usize> {
    preds
        .iter()
        .position(|p| matches!(p, MsgPred::Contains { regex, .. } if regex == re))
}

/// What every segment of one query shares, worked out once.
struct Plan<'a> {
    q: &'a Query,
    compiled: &'a Compiled,
    bounds: (i64, i64),
    started: Instant,
    need: &'a Need,
    /// The `_msg` conditions decided on ids ([`collect_msg_preds`]).
    msg_preds: Vec<MsgPred>,
}

/// Whether a phrase is decided by templates alone: more than one token, none of
/// them a variable.
fn template_phrase(toks: &[String]) -> bool {
    toks.len() > 1 && toks.iter().all(|t| is_template_word(t))
}

struct Block<'a> {
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
enum KeyRef {
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
struct FieldKeys {
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
fn holds_field(c: &ColumnMeta, k: &str) -> bool {
    match c.kind {
        ColumnKind::Level => k == "level",
        ColumnKind::Str | ColumnKind::I64 | ColumnKind::F64 | ColumnKind::Bool => c.name == k,
        _ => false,
    }
}

/// Counts every row of block `b` by field `k` straight from the dictionary ids of
/// its first column, when that column is a string column every row has a value in
/// (then no other source can apply). Returns whether it could.
fn count_whole_string_column(
    r: &SegmentReader,
    b: usize,
    k: &str,
    g: &mut Grouper,
) -> Result<bool, QueryError> {
    let first = r.footer().columns.iter().position(|c| holds_field(c, k));
    let Some(col) = first else { return Ok(false) };
    let Some(sc) = r.string_ids(col, b)? else {
        return Ok(false);
    };
    let (None, Some(ids)) = (&sc.present, &sc.ids) else {
        return Ok(false);
    };
    let mut counts = vec![0u64; sc.dict.len()];
    for id in ids {
        if let Some(c) = counts.get_mut(*id as usize) {
            *c += 1;
        }
    }
    for (v, n) in sc.dict.iter().zip(counts) {
        if n > 0 {
            g.add_single_key_count(Some(v), n);
        }
    }
    Ok(true)
}

/// Whether a field condition can be tested on the field's text alone (one distinct
/// value at a time): not `_msg`, `_time` or `_stream`, not a numeric range.
fn text_condition(field: &str, cond: &Cond) -> bool {
    !matches!(field, "_msg" | "_time" | "_stream") && !matches!(cond, Cond::Range { .. })
}

/// Rough cost of evaluating `f` on a block: 0 for `_msg` words and prefixes (decided
/// up front on template ids), 1 for conditions on other columns, 2 for those that
/// rebuild message text.
fn cost(f: &Filter) -> u8 {
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

/// The `_msg` conditions decided on ids: words, prefixes, phrases of template words
/// (other phrases by their words, then checked on text).
fn collect_msg_preds(f: &Filter, out: &mut Vec<MsgPred>) {
    let mut push = |p: MsgPred| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            collect_msg_preds(a, out);
            collect_msg_preds(b, out);
        }
        Filter::Not(a) => collect_msg_preds(a, out),
        Filter::Field { field, cond } if field == "_msg" => match cond {
            Cond::Word(w) => push(MsgPred::Word(w.clone())),
            Cond::Prefix(p) => push(MsgPred::Prefix(p.clone())),
            Cond::Phrase(toks) if template_phrase(toks) => push(MsgPred::Phrase(toks.clone())),
            Cond::Phrase(toks) => {
                for t in toks {
                    push(MsgPred::Word(t.clone()));
                }
            }
            Cond::Regex(re) => {
                if let Some(subs) = regex_prefilter(re) {
                    push(MsgPred::Contains {
                        regex: re.clone(),
                        subs,
                    });
                }
            }
            _ => {}
        },
        _ => {}
    }
}

/// Everything one segment contributes.
fn scan_segment(
    seg: &SegmentHandle,
    plan: &Plan<'_>,
    limits: &Limits,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    let Plan {
        q,
        compiled,
        bounds,
        started,
        need,
        ref msg_preds,
    } = *plan;
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
    // Newest blocks first (blocks are in time order).
    for (b, meta) in blocks.iter().enumerate().rev() {
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
                let times = match r.column(ColumnKind::Time, "_time") {
                    Some(c) => match r.read(c, b)? {
                        Some(ColumnBlock {
                            values: Values::I64(v),
                            present: None,
                        }) => v,
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
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
                for rec in r.records_at(b, &chosen)? {
                    sink.add(rec, limits)?;
                }
            }
        }
        sink.check(limits)?;
    }
    Ok(())
}

/// Runs a parsed query.
pub fn run(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
    limits: &Limits,
) -> Result<Table, QueryError> {
    Ok(answer(engine, tenant, q, limits, &mut || {})?.into_table(q))
}

/// Scans for a parsed query: its matching records or its groups.
/// `after_snapshot` runs once the snapshot is taken.
fn answer(
    engine: &Engine,
    tenant: &Tenant,
    q: &Query,
    limits: &Limits,
    after_snapshot: &mut dyn FnMut(),
) -> Result<Answer, QueryError> {
    let started = Instant::now();
    let resolved;
    let q = match resolve_templates(engine, tenant, &q.filter) {
        Some(filter) => {
            resolved = Query {
                filter,
                pipes: q.pipes.clone(),
            };
            &resolved
        }
        None => q,
    };
    let compiled = Compiled::new(&q.filter)?;
    let bounds = time_bounds(&q.filter);
    let mut need = Need::default();
    Need::of_filter(&q.filter, &mut need);
    if let Some(p) = q.pipes.first().filter(|p| Grouper::new(p).is_some()) {
        let mut pipe = Need::default();
        Need::of_pipe(p, &mut pipe);
        need.pipe_msg = pipe.names.contains("_msg");
        need.names.extend(pipe.names);
    }
    let mut sink = Sink::new(&q.pipes);
    let mut msg_preds: Vec<MsgPred> = Vec::new();
    collect_msg_preds(&q.filter, &mut msg_preds);
    let plan = Plan {
        q,
        compiled: &compiled,
        bounds,
        started,
        need: &need,
        msg_preds,
    };
    let mut mem_err = None;
    // A leading `| limit N` over records keeps only the newest N of the memtable
    // (which may hold more than the row limit), like it does over segments.
    let leading_limit = match (q.pipes.first(), &sink) {
        (Some(Pipe::Limit(n)), Sink::Rows { .. }) => {
            Some(usize::try_from(*n).unwrap_or(usize::MAX))
        }
        _ => None,
    };
    let mut newest: Vec<Record> = Vec::new();
    let mut labels = Vec::new();
    required_labels(&q.filter, &mut labels);
    // The engine lock is held only while the snapshot is taken: the records in
    // memory are filtered here, with no lock, so writes never wait on a query.
    let snap = engine.snapshot_with_labels(tenant, bounds, &labels)?;
    after_snapshot();
    for r in snap.memtable.records() {
        if mem_err.is_some() {
            break;
        }
        if !compiled.matches(r) {
            continue;
        }
        match leading_limit {
            Some(n) => {
                newest.push(r.clone());
                // Keep it bounded: trim to the newest N whenever it doubles.
                if newest.len() >= n.saturating_mul(2).max(1024) {
                    newest.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
                    newest.truncate(n);
                }
            }
            None => mem_err = sink.add_ref(r, limits).err(),
        }
    }
    let mut segments = snap.segments;
    if let Some(n) = leading_limit {
        newest.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
        newest.truncate(n);
        for r in newest {
            if mem_err.is_none() {
                mem_err = sink.add(r, limits).err();
            }
        }
    }
    if let Some(e) = mem_err {
        return Err(e);
    }
    segments.sort_by_key(|s| std::cmp::Reverse(s.entry.max_time));

    // A leading `| limit N` over records: newest segments first, stop once N records
    // newer than everything left are in hand.
    if let (Some(Pipe::Limit(n)), Sink::Rows { .. }) = (q.pipes.first(), &sink) {
        let n = usize::try_from(*n).unwrap_or(usize::MAX);
        // Not bound by the row limit (what is kept is cut to N after each segment);
        // the memory limit still holds.
        let unbounded = Limits {
            max_rows: usize::MAX,
            ..limits.clone()
        };
        for s in &segments {
            if let Sink::Rows { rows, bytes } = &mut sink {
                if rows.len() >= n {
                    rows.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
                    // (`| limit 0` gets here with no rows.)
                    *bytes = (*bytes as u128 * n as u128)
                        .checked_div(rows.len() as u128)
                        .unwrap_or(0) as usize;
                    rows.truncate(n);
                    if rows.last().is_some_and(|r| r.time_ns > s.entry.max_time) {
                        break;
                    }
                }
            }
            scan_segment(s, &plan, &unbounded, &mut sink)?;
        }
    } else {
        // Offloaded segments wait on the object store more than on the CPU: more
        // of them at once hide the requests' latency.
        let remote = segments.iter().any(|s| !s.entry.is_local());
        let wanted = if remote {
            limits.threads.max(REMOTE_SCAN_THREADS)
        } else {
            limits.threads
        };
        let threads = wanted.clamp(1, segments.len().max(1));
        // Each scanning thread holds its part of the memory budget, so together
        // they stay within it.
        let share = Limits {
            memory_bytes: limits.memory_bytes / threads,
            ..limits.clone()
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let parts: Vec<Result<Sink, QueryError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Sink::new(&q.pipes);
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(s) = segments.get(i) else {
                                return Ok(mine);
                            };
                            scan_segment(s, &plan, &share, &mut mine)?;
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for p in parts {
            sink.merge(p?, limits)?;
        }
    }
    Ok(match sink {
        Sink::Rows { mut rows, .. } => {
            rows.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
            Answer::Rows(rows)
        }
        Sink::Groups(g) => Answer::Groups(g.finish()),
    })
}
