//! The executor: runs a parsed query over an engine snapshot. The query is planned
//! once (`plan.rs`); the memtable's records are filtered in place, outside any
//! engine lock; segments are pruned by time (manifest, then per block) and by the
//! inverted index (`prune.rs`); only candidate blocks are read, and every
//! candidate row is verified with the reference semantics ([`crate::eval`]), so the
//! result is exactly what a scan of every record returns (`scan.rs`).
//! Segments are processed on all cores; grouping pipes keep mergeable partial states
//! per segment ([`crate::aggregate`]).

use std::time::{Duration, Instant};

use engine::engine::{Engine, EngineError};
use engine::model::{Record, Tenant};
use engine::segment::SegmentError;

use crate::aggregate::{apply_pipes, apply_table_pipes};
use crate::ast::{Pipe, Query};
use crate::plan::Plan;
use crate::scan::{scan_segment, Sink};
use crate::table::Table;

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
        Answer::Rows(mut rows) if q.only_limits() => {
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
    let plan = Plan::new(engine, tenant, q, Instant::now())?;
    let q: &Query = &plan.query;
    let mut sink = Sink::new(&q.pipes);
    let mut mem_err = None;
    // Only the newest N records wanted ([`Plan::newest`]: a leading `| limit N`, or
    // `| sort by (_time) desc | limit N`): the memtable (which may hold more than
    // the row limit) gives its newest N, like the segments do, and segments' rows
    // are held as references until the N are known.
    let leading_limit = plan.newest().filter(|_| sink.keeps_rows());
    if leading_limit.is_some() {
        sink = Sink::newest();
    }
    // The newest N of the memtable, by reference (copied once, at the end), and
    // the time at or below which no record is needed any more (ties unspecified).
    let mut newest: Vec<&Record> = Vec::new();
    let mut floor: Option<i64> = None;
    // The engine lock is held only while the snapshot is taken: the records in
    // memory are filtered here, with no lock, so writes never wait on a query.
    let snap = engine.snapshot_with_labels(&plan.tenant, plan.bounds, &plan.labels)?;
    after_snapshot();
    for r in snap.memtable.records() {
        if mem_err.is_some() || leading_limit == Some(0) {
            break;
        }
        // (A time comparison before the filter: most records fail it once N are in.)
        if floor.is_some_and(|f| r.time_ns <= f) || !plan.compiled.matches(r) {
            continue;
        }
        match leading_limit {
            Some(n) => {
                newest.push(r);
                // Keep it bounded: trim to the newest N whenever it doubles.
                if newest.len() >= n.saturating_mul(2).max(1024) {
                    newest.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
                    newest.truncate(n);
                    floor = newest.last().map(|r| r.time_ns).or(floor);
                }
            }
            None => mem_err = sink.add_ref(r, limits).err(),
        }
    }
    let mut segments = snap.segments;
    // The newest N are not bound by the row limit (what is kept is cut to N as it
    // goes); the memory limit still holds.
    let unbounded = Limits {
        max_rows: usize::MAX,
        ..limits.clone()
    };
    if let Some(n) = leading_limit {
        newest.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
        newest.truncate(n);
        for r in newest {
            if mem_err.is_none() {
                mem_err = sink.add_ref(r, &unbounded).err();
            }
        }
    }
    if let Some(e) = mem_err {
        return Err(e);
    }
    segments.sort_by_key(|s| std::cmp::Reverse(s.entry.max_time));

    // Only the newest N: newest segments first, stop once N records newer than
    // everything left are in hand.
    if let Some(n) = leading_limit {
        for (i, s) in segments.iter().enumerate() {
            // (Records of the oldest kept one's time may tie with it: which of
            // those a limit keeps is unspecified.)
            if sink
                .keep_newest(n)
                .is_some_and(|oldest| oldest >= s.entry.max_time)
            {
                break;
            }
            scan_segment(s, i, &plan, &unbounded, &mut sink)?;
        }
        // Through nothing but limits, hidden fields (`_template`) are never shown:
        // not decoded.
        let only_limits = q.only_limits();
        let shown =
            |c: &engine::segment::ColumnMeta| !(only_limits && crate::table::hidden(&c.name));
        let rows = sink.into_newest(n, &segments, &shown, limits)?;
        return Ok(Answer::Rows(rows));
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
        let parts = crate::scan::on_threads(
            threads,
            segments.len(),
            || Sink::new(&q.pipes),
            |mine, i| match segments.get(i) {
                Some(s) => scan_segment(s, i, &plan, &share, mine),
                None => Ok(()),
            },
        );
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
        // (Only made for a leading limit, answered above.)
        Sink::Newest { .. } => {
            Answer::Rows(sink.into_newest(usize::MAX, &segments, &|_| true, limits)?)
        }
    })
}
