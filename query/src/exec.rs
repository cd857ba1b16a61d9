//! The executor: runs a parsed query over an engine snapshot. Segments are pruned by
//! time (manifest, then per block) and by the inverted index (bitmap algebra over
//! lookups); only candidate blocks are read, and every candidate row is verified with
//! the reference semantics ([`crate::eval`]), so the result is exactly what a scan
//! of every record returns. Segments are processed on all cores; grouping pipes keep
//! mergeable partial states per segment.

use std::time::{Duration, Instant};

use engine::engine::{Engine, EngineError};
use engine::manifest::SegmentEntry;
use engine::model::{Record, Tenant};
use engine::segment::{field_term, msg_term, SegmentError, SegmentReader};
use roaring::RoaringBitmap;

use crate::ast::{Cond, Filter, Pipe, Query};
use crate::eval::{apply_pipes, apply_table_pipes, Compiled, Grouper, Table};

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

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The `[start, end)` every matching record's time lies in, from `_time` filters
/// that must hold (those joined by AND at the top).
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
fn candidates(f: &Filter, r: &SegmentReader) -> Result<Option<RoaringBitmap>, SegmentError> {
    Ok(match f {
        Filter::All | Filter::Not(_) => None,
        Filter::And(a, b) => match (candidates(a, r)?, candidates(b, r)?) {
            (Some(x), Some(y)) => Some(x & y),
            (x, y) => x.or(y),
        },
        Filter::Or(a, b) => match (candidates(a, r)?, candidates(b, r)?) {
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

/// Where matching records go: kept (for queries returning records) or grouped.
enum Sink {
    Rows { rows: Vec<Record>, bytes: usize },
    Groups(Grouper),
}

impl Sink {
    fn new(pipes: &[Pipe]) -> Sink {
        match pipes.first().and_then(Grouper::new) {
            Some(g) => Sink::Groups(g),
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
                if rows.len() > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                if *bytes > limits.memory_bytes {
                    return Err(QueryError::Memory(limits.memory_bytes));
                }
            }
            Sink::Groups(g) => {
                g.add(&rec);
                if g.len() > limits.max_groups {
                    return Err(QueryError::TooManyGroups(limits.max_groups));
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, other: Sink, limits: &Limits) -> Result<(), QueryError> {
        match (self, other) {
            (
                Sink::Rows { rows, bytes },
                Sink::Rows {
                    rows: r2,
                    bytes: b2,
                },
            ) => {
                rows.extend(r2);
                *bytes += b2;
                if rows.len() > limits.max_rows {
                    return Err(QueryError::TooManyRows(limits.max_rows));
                }
                if *bytes > limits.memory_bytes {
                    return Err(QueryError::Memory(limits.memory_bytes));
                }
            }
            (Sink::Groups(g), Sink::Groups(g2)) => {
                g.merge(g2);
                if g.len() > limits.max_groups {
                    return Err(QueryError::TooManyGroups(limits.max_groups));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Everything one segment contributes.
#[allow(clippy::too_many_arguments)]
fn scan_segment(
    engine: &Engine,
    entry: &SegmentEntry,
    q: &Query,
    compiled: &Compiled,
    bounds: (i64, i64),
    started: Instant,
    limits: &Limits,
    sink: &mut Sink,
) -> Result<(), QueryError> {
    if entry.max_time < bounds.0 || entry.min_time >= bounds.1 {
        return Ok(());
    }
    let r = engine.open_segment(entry)?;
    let blocks = r.footer().blocks.clone();
    let cands = candidates(&q.filter, &r)?;
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
        for rec in r.records(b)?.into_iter().rev() {
            if compiled.matches(&rec) {
                sink.add(rec, limits)?;
            }
        }
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
    let started = Instant::now();
    let compiled = Compiled::new(&q.filter)?;
    let bounds = time_bounds(&q.filter);
    let mut sink = Sink::new(&q.pipes);
    let mut mem_err = None;
    let mut segments = engine.snapshot(tenant, |r| {
        if mem_err.is_none() && compiled.matches(r) {
            mem_err = sink.add(r.clone(), limits).err();
        }
    });
    if let Some(e) = mem_err {
        return Err(e);
    }
    segments.sort_by_key(|s| std::cmp::Reverse(s.max_time));

    // A leading `| limit N` over records: newest segments first, stop once N records
    // newer than everything left are in hand.
    if let (Some(Pipe::Limit(n)), Sink::Rows { .. }) = (q.pipes.first(), &sink) {
        let n = usize::try_from(*n).unwrap_or(usize::MAX);
        for s in &segments {
            if let Sink::Rows { rows, .. } = &mut sink {
                if rows.len() >= n {
                    rows.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
                    rows.truncate(n);
                    if rows.last().is_some_and(|r| r.time_ns > s.max_time) {
                        break;
                    }
                }
            }
            scan_segment(engine, s, q, &compiled, bounds, started, limits, &mut sink)?;
        }
    } else {
        let threads = limits.threads.clamp(1, segments.len().max(1));
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
                            scan_segment(
                                engine, s, q, &compiled, bounds, started, limits, &mut mine,
                            )?;
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
            apply_pipes(&q.pipes, &rows)
        }
        Sink::Groups(g) => apply_table_pipes(q.pipes.get(1..).unwrap_or(&[]), g.finish()),
    })
}
