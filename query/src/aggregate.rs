//! Aggregation as the executor runs it: per group key, mergeable partial states
//! ([`AggState`]), so segments are aggregated apart (in parallel) and combined, with
//! fast paths for counting (packed short keys, counts straight from columns and
//! time buckets). The reference evaluator ([`crate::eval::run_naive`]) groups its own,
//! plain way; the differential tests hold the two to the same answers.

use std::borrow::Cow;
use std::collections::BTreeSet;

use engine::model::Record;

use crate::ast::{Agg, GroupKey, Pipe};
use crate::eval::{field_number, field_text};
use crate::table::{apply_pipes_with, apply_table_pipes_with, key_name, Cell, Table};

/// A grouping pipe's table over `hits` with a [`Grouper`]; `None` when `p` does not
/// group.
pub(crate) fn group(p: &Pipe, hits: &[Record]) -> Option<Table> {
    let mut g = Grouper::new(p)?;
    for r in hits {
        g.add(r);
    }
    Some(g.finish())
}

/// Applies the pipes to matching records (newest first).
pub fn apply_pipes(pipes: &[Pipe], hits: &[Record]) -> Table {
    apply_pipes_with(pipes, hits, group)
}

/// Applies pipes to a table (a grouping pipe's result).
pub fn apply_table_pipes(pipes: &[Pipe], table: Table) -> Table {
    apply_table_pipes_with(pipes, table, group)
}

/// Partial state of one aggregate: mergeable, so per-segment states combine.
#[derive(Debug, Clone)]
pub enum AggState {
    /// count().
    Count(u64),
    /// count_uniq(f): the distinct values.
    Uniq(BTreeSet<String>),
    /// sum / avg: sum and count of numeric values.
    Sum(f64, u64),
    /// min.
    Min(Option<f64>),
    /// max.
    Max(Option<f64>),
    /// quantile: the numeric values.
    Values(Vec<f64>),
}

impl AggState {
    /// An empty state for `agg`.
    pub fn new(agg: &Agg) -> AggState {
        match agg {
            Agg::Count => AggState::Count(0),
            Agg::CountUniq(_) => AggState::Uniq(BTreeSet::new()),
            Agg::Sum(_) | Agg::Avg(_) => AggState::Sum(0.0, 0),
            Agg::Min(_) => AggState::Min(None),
            Agg::Max(_) => AggState::Max(None),
            Agg::Quantile(..) => AggState::Values(Vec::new()),
        }
    }

    /// Adds one record; returns about how many bytes the state grew by.
    pub fn add(&mut self, agg: &Agg, rec: &Record) -> usize {
        match (self, agg) {
            (AggState::Count(n), _) => *n += 1,
            (AggState::Uniq(s), Agg::CountUniq(f)) => {
                if let Some(v) = field_text(rec, f) {
                    let len = v.len();
                    if s.insert(v.into_owned()) {
                        return len + VALUE_OVERHEAD_BYTES;
                    }
                }
            }
            (AggState::Sum(s, n), Agg::Sum(f) | Agg::Avg(f)) => {
                if let Some(x) = field_number(rec, f) {
                    *s += x;
                    *n += 1;
                }
            }
            (AggState::Min(m), Agg::Min(f)) => {
                if let Some(x) = field_number(rec, f) {
                    *m = Some(m.map_or(x, |m| m.min(x)));
                }
            }
            (AggState::Max(m), Agg::Max(f)) => {
                if let Some(x) = field_number(rec, f) {
                    *m = Some(m.map_or(x, |m| m.max(x)));
                }
            }
            (AggState::Values(v), Agg::Quantile(_, f)) => {
                if let Some(x) = field_number(rec, f) {
                    v.push(x);
                    return std::mem::size_of::<f64>();
                }
            }
            _ => {}
        }
        0
    }

    /// Folds another partial state of the same aggregate into this one.
    pub fn merge(&mut self, other: AggState) {
        match (self, other) {
            (AggState::Count(a), AggState::Count(b)) => *a += b,
            (AggState::Uniq(a), AggState::Uniq(b)) => a.extend(b),
            (AggState::Sum(s, n), AggState::Sum(s2, n2)) => {
                *s += s2;
                *n += n2;
            }
            (AggState::Min(a), AggState::Min(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                }
            }
            (AggState::Max(a), AggState::Max(b)) => {
                *a = match (*a, b) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                }
            }
            (AggState::Values(a), AggState::Values(b)) => a.extend(b),
            _ => {}
        }
    }

    /// The final value.
    pub fn finish(self, agg: &Agg) -> Cell {
        match (self, agg) {
            (AggState::Count(n), _) => Cell::I64(n as i64),
            (AggState::Uniq(s), _) => Cell::I64(s.len() as i64),
            (AggState::Sum(s, _), Agg::Sum(_)) => Cell::F64(s),
            (AggState::Sum(s, n), _) => {
                if n == 0 {
                    Cell::Null
                } else {
                    Cell::F64(s / n as f64)
                }
            }
            (AggState::Min(m) | AggState::Max(m), _) => m.map_or(Cell::Null, Cell::F64),
            (AggState::Values(mut v), Agg::Quantile(q, _)) => {
                if v.is_empty() {
                    return Cell::Null;
                }
                v.sort_by(f64::total_cmp);
                // Nearest rank: the smallest value with at least q of them at or below.
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
                v.get(rank - 1).copied().map_or(Cell::Null, Cell::F64)
            }
            (AggState::Values(_), _) => Cell::Null,
        }
    }
}

/// The aggregates a grouping pipe computes (`top` and `uniq`: a count).
fn funcs_of(pipe: &Pipe) -> &[Agg] {
    match pipe {
        Pipe::Stats { funcs, .. } => funcs,
        _ => &[Agg::Count],
    }
}

/// What a grouping pipe (`stats`, `top`, `uniq`) keeps while records stream by:
/// per group key, the partial aggregate states. Two groupers of the same pipe merge,
/// so segments can be aggregated apart (in parallel, or on other nodes) and combined.
#[derive(Debug, Clone)]
pub struct Grouper {
    pipe: Pipe,
    keys: Vec<GroupKey>,
    /// Hashed while adding; sorted by key once, at [`Self::finish`].
    groups: rustc_hash::FxHashMap<Vec<Option<String>>, Vec<AggState>>,
    /// Per time-bucket key, the last bucket and its text.
    bucket_text: Vec<Option<(i64, String)>>,
    /// Counts of a one-key counting grouper by value ([`Self::add_single_key_count`]),
    /// folded into `groups` at [`Self::finish`]. Values up to 15 bytes are packed
    /// into the key itself (no pointer to follow, no allocation: high-cardinality
    /// keys such as ids and IPs are mostly short); longer ones are looked up by
    /// `&str`.
    /// Split into [`SHORT_PARTS`] tables by a hash of the key, so that a batch of
    /// keys visits one small (cache-resident) table at a time.
    short: Vec<rustc_hash::FxHashMap<Short, u64>>,
    /// Per part, the short keys waiting to be counted.
    scratch: Vec<Vec<Short>>,
    /// How many.
    pending: usize,
    single: rustc_hash::FxHashMap<Box<str>, u64>,
    /// The same for records without the key.
    single_none: u64,
    /// About how many bytes `groups` and `single` hold (keys, states, the values
    /// of `count_uniq` and `quantile`), kept as they grow: the query memory limit
    /// covers aggregation state too ([`Self::bytes`]).
    held: usize,
    /// Counts of a [`Self::time_bucket_counts`] grouper by bucket start; rendered
    /// as text once per bucket, at [`Self::finish`].
    buckets: rustc_hash::FxHashMap<i64, u64>,
}

/// Parts of a grouper's short-key table.
const SHORT_PARTS: usize = 256;

/// What a held string costs beyond its bytes (the `String`, the map's node or slot),
/// roughly: memory accounting of groups and `count_uniq` sets.
const VALUE_OVERHEAD_BYTES: usize = 48;

/// About how many bytes a group with key `key` and `funcs` states holds.
fn group_bytes(key: &[Option<String>], funcs: usize) -> usize {
    let key: usize = key
        .iter()
        .map(|k| std::mem::size_of::<Option<String>>() + k.as_ref().map_or(0, String::len))
        .sum();
    key + funcs * std::mem::size_of::<AggState>() + VALUE_OVERHEAD_BYTES
}

/// Short keys held back before they are counted (16 bytes each: 512 KiB). With
/// [`SHORT_PARTS`] parts, a part's table of a 100,000-key count is ~10 KiB (in
/// L1) and takes ~128 keys per batch; docs/decisions/0009-count-by-batches.md.
const SHORT_BATCH: usize = 1 << 15;

/// The part of short key `k`: a hash unlike the table's own (whose high bits pick
/// control tags), so that keys of one part still spread over their table.
fn short_part_of(k: Short) -> usize {
    let x = k.0 ^ k.1.rotate_left(29);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SHORT_PARTS.trailing_zeros())) as usize
}

/// A short key: a string of at most 15 bytes packed by [`pack_short`] (two words,
/// not a `u128`: 8-byte alignment keeps a table slot at 24 bytes, not 32).
type Short = (u64, u64);

/// A string of at most 15 bytes as two words: bytes 0..8 in the first, the rest in
/// the second with the length in its top byte. Built from whole-word
/// reads (overlapping, then shifted), no byte loop and no call to `memcpy`.
fn pack_short(s: &str) -> Short {
    let b = s.as_bytes();
    let n = b.len().min(15);
    let word = |at: usize| -> u64 {
        b.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_le_bytes)
    };
    let half = |at: usize| -> u64 {
        b.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    // The first `len` (< 8) bytes from `at`, read as at most two words.
    let small = |at: usize, len: usize| -> u64 {
        match len {
            0 => 0,
            1..=3 => (0..len).fold(0u64, |acc, i| {
                acc | u64::from(b.get(at + i).copied().unwrap_or(0)) << (8 * i)
            }),
            4 => half(at),
            _ => half(at) | (half(at + len - 4) >> (8 * (8 - len))) << 32,
        }
    };
    let (lo, hi) = match n {
        0..=7 => (small(0, n), 0),
        8 => (word(0), 0),
        _ => (word(0), word(n - 8) >> (8 * (16 - n))),
    };
    (lo, hi | (n as u64) << 56)
}

fn unpack_short(k: Short) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&k.0.to_le_bytes());
    b[8..].copy_from_slice(&k.1.to_le_bytes());
    let n = usize::from(b[15]).min(15);
    String::from_utf8_lossy(b.get(..n).unwrap_or(&[])).into_owned()
}

impl Grouper {
    /// A grouper for `pipe`, or `None` when it is not a grouping pipe.
    pub fn new(pipe: &Pipe) -> Option<Grouper> {
        let keys = match pipe {
            Pipe::Stats { by, .. } => by.clone(),
            Pipe::Top { by, .. } | Pipe::Uniq(by) => {
                by.iter().cloned().map(GroupKey::Field).collect()
            }
            _ => return None,
        };
        Some(Grouper {
            pipe: pipe.clone(),
            keys,
            groups: Default::default(),
            bucket_text: Vec::new(),
            short: Vec::new(),
            scratch: Vec::new(),
            pending: 0,
            single: Default::default(),
            single_none: 0,
            held: 0,
            buckets: Default::default(),
        })
    }

    /// About how many bytes the grouper holds: its groups with their states, and
    /// the one-key and time-bucket counts.
    pub fn bytes(&self) -> usize {
        let short: usize = self.short.iter().map(|t| t.len()).sum();
        self.held + short * 32 + self.pending * 16 + self.buckets.len() * 24
    }

    /// Number of groups so far (an upper bound while partial counts are apart).
    pub fn len(&self) -> usize {
        self.groups.len()
            + self.short.iter().map(|t| t.len()).sum::<usize>()
            + self.single.len()
            + usize::from(self.single_none > 0)
            + self.buckets.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `n` records whose one key is `key`, to a grouper that
    /// [`Self::counts_by_fields`] with one key. Short keys counted once wait in a
    /// batch ([`Self::add_single_keys`]).
    pub fn add_single_key_count(&mut self, key: Option<&str>, n: u64) {
        match key {
            None => self.single_none += n,
            Some(k) if k.len() < 16 && n == 1 => {
                let k = pack_short(k);
                if self.scratch.is_empty() {
                    self.scratch.resize_with(SHORT_PARTS, Vec::new);
                }
                if let Some(v) = self.scratch.get_mut(short_part_of(k)) {
                    v.push(k);
                    self.pending += 1;
                }
                if self.pending >= SHORT_BATCH {
                    self.flush_pending();
                }
            }
            Some(k) if k.len() < 16 => {
                let k = pack_short(k);
                *self.short_part(k).entry(k).or_default() += n;
            }
            Some(k) => match self.single.get_mut(k) {
                Some(c) => *c += n,
                None => {
                    self.held += k.len() + VALUE_OVERHEAD_BYTES;
                    self.single.insert(k.into(), n);
                }
            },
        }
    }

    /// The table of short key `k`.
    fn short_part(&mut self, k: Short) -> &mut rustc_hash::FxHashMap<Short, u64> {
        if self.short.is_empty() {
            self.short.resize_with(SHORT_PARTS, Default::default);
        }
        let p = short_part_of(k);
        // `p < SHORT_PARTS` by construction.
        &mut self.short[p]
    }

    /// Adds one record for each key, like [`Self::add_single_key_count`]. Short
    /// keys are sorted into their parts and wait there until `SHORT_BATCH` of them
    /// are pending; then each part's table takes its keys in one go, while it is in
    /// cache. (So [`Self::len`] may lag by one batch.)
    pub fn add_single_keys<'k>(&mut self, keys: impl Iterator<Item = Option<&'k str>>) {
        keys.for_each(|k| self.add_single_key_count(k, 1));
    }

    /// Counts the pending short keys into their tables.
    fn flush_pending(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.pending = 0;
        if self.short.is_empty() {
            self.short.resize_with(SHORT_PARTS, Default::default);
        }
        for (keys, t) in self.scratch.iter_mut().zip(self.short.iter_mut()) {
            for k in keys.drain(..) {
                *t.entry(k).or_default() += 1;
            }
        }
    }

    /// Moves the one-key counts into `groups`.
    fn fold_single(&mut self) {
        self.flush_pending();
        for (b, n) in std::mem::take(&mut self.buckets) {
            self.add_counted(vec![Some(engine::ingest::time::format_rfc3339(b))], n);
        }
        let none = std::mem::take(&mut self.single_none);
        if none > 0 {
            self.add_counted(vec![None], none);
        }
        for (k, n) in std::mem::take(&mut self.short).into_iter().flatten() {
            self.add_counted(vec![Some(unpack_short(k))], n);
        }
        for (k, n) in std::mem::take(&mut self.single) {
            self.add_counted(vec![Some(k.into())], n);
        }
    }

    /// The `n` largest one-key counts, ties in ascending key order (no key first),
    /// without building a group per key: the n-th largest count is found first, and
    /// only keys counted at least that often are unpacked and sorted.
    fn top_single(&mut self, n: usize) -> Vec<(Option<String>, u64)> {
        self.flush_pending();
        let short = std::mem::take(&mut self.short);
        let single = std::mem::take(&mut self.single);
        let mut counts: Vec<u64> = short
            .iter()
            .flat_map(|t| t.values().copied())
            .chain(single.values().copied())
            .collect();
        if self.single_none > 0 {
            counts.push(self.single_none);
        }
        let least = match n {
            0 => return Vec::new(),
            n if n < counts.len() => {
                let (_, nth, _) = counts.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
                *nth
            }
            _ => 0,
        };
        let mut rows: Vec<(Option<String>, u64)> = short
            .into_iter()
            .flatten()
            .filter(|(_, c)| *c >= least)
            .map(|(k, c)| (Some(unpack_short(k)), c))
            .chain(
                single
                    .into_iter()
                    .filter(|(_, c)| *c >= least)
                    .map(|(k, c)| (Some(k.into()), c)),
            )
            .collect();
        if self.single_none > 0 && self.single_none >= least {
            rows.push((None, self.single_none));
        }
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows.truncate(n);
        rows
    }

    /// Adds a matching record.
    pub fn add(&mut self, rec: &Record) {
        // Time buckets: consecutive records mostly share one; format it once.
        let key: Vec<Option<String>> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| match k {
                GroupKey::Field(f) => field_text(rec, f).map(Cow::into_owned),
                GroupKey::TimeBucket(step) => {
                    let b = rec.time_ns - rec.time_ns.rem_euclid(*step);
                    if self.bucket_text.len() <= i {
                        self.bucket_text.resize(i + 1, None);
                    }
                    match self.bucket_text.get(i) {
                        Some(Some((cached, text))) if *cached == b => Some(text.clone()),
                        _ => {
                            let text = engine::ingest::time::format_rfc3339(b);
                            if let Some(slot) = self.bucket_text.get_mut(i) {
                                *slot = Some((b, text.clone()));
                            }
                            Some(text)
                        }
                    }
                }
            })
            .collect();
        // Borrow the functions and the groups apart: no copy of the functions per row.
        let funcs = funcs_of(&self.pipe);
        let held = &mut self.held;
        let states = self.groups.entry(key).or_insert_with_key(|k| {
            *held += group_bytes(k, funcs.len());
            funcs.iter().map(AggState::new).collect()
        });
        for (s, f) in states.iter_mut().zip(funcs) {
            *held += s.add(f, rec);
        }
    }

    /// Whether every function is `count()` and there is no `by`: then a block's
    /// matching rows can be added as a number ([`Self::add_count`]).
    pub fn counts_only(&self) -> bool {
        matches!(&self.pipe, Pipe::Stats { funcs, by } if by.is_empty() && funcs.iter().all(|f| *f == Agg::Count))
    }

    /// Whether every function is `count()` (any `by`): counts per key can then be
    /// added directly ([`Self::add_key_count`]).
    pub fn counts_by_fields(&self) -> bool {
        let funcs_ok = match &self.pipe {
            Pipe::Stats { funcs, .. } => funcs.iter().all(|f| *f == Agg::Count),
            Pipe::Top { .. } | Pipe::Uniq(_) => true,
            _ => false,
        };
        funcs_ok && self.keys.iter().all(|k| matches!(k, GroupKey::Field(_)))
    }

    /// The field name when the only key is one field.
    pub fn single_field_key(&self) -> Option<&str> {
        match self.keys.as_slice() {
            [GroupKey::Field(f)] => Some(f),
            _ => None,
        }
    }

    /// The key of `rec` (field keys only, see [`Self::counts_by_fields`]), borrowed.
    pub fn field_key<'r>(&self, rec: &'r Record) -> Vec<Option<Cow<'r, str>>> {
        self.keys
            .iter()
            .map(|k| match k {
                GroupKey::Field(f) => field_text(rec, f),
                GroupKey::TimeBucket(_) => None,
            })
            .collect()
    }

    /// Adds `n` records with `key` to a [`Self::counts_by_fields`] grouper.
    pub fn add_key_count(&mut self, key: Vec<Option<String>>, n: u64) {
        self.add_counted(key, n);
    }

    /// The bucket size when every function is `count()` and the only key is a time
    /// bucket: then counts per bucket can be added directly ([`Self::add_bucket_count`]).
    pub fn time_bucket_counts(&self) -> Option<i64> {
        match (&self.pipe, self.keys.as_slice()) {
            (Pipe::Stats { funcs, .. }, [GroupKey::TimeBucket(step)])
                if funcs.iter().all(|f| *f == Agg::Count) =>
            {
                Some(*step)
            }
            _ => None,
        }
    }

    /// Adds `n` records of the bucket starting at `bucket_ns` to a
    /// [`Self::time_bucket_counts`] grouper.
    pub fn add_bucket_count(&mut self, bucket_ns: i64, n: u64) {
        *self.buckets.entry(bucket_ns).or_default() += n;
    }

    /// Adds `n` matching records to a [`Self::counts_only`] grouper.
    pub fn add_count(&mut self, n: u64) {
        self.add_counted(Vec::new(), n);
    }

    /// Adds `n` to every `count()` of group `key`.
    fn add_counted(&mut self, key: Vec<Option<String>>, n: u64) {
        let funcs = funcs_of(&self.pipe);
        let held = &mut self.held;
        let states = self.groups.entry(key).or_insert_with_key(|k| {
            *held += group_bytes(k, funcs.len());
            funcs.iter().map(AggState::new).collect()
        });
        for s in states.iter_mut() {
            if let AggState::Count(c) = s {
                *c += n;
            }
        }
    }

    /// Folds in another grouper of the same pipe.
    pub fn merge(&mut self, mut other: Grouper) {
        self.flush_pending();
        other.flush_pending();
        // An upper bound: keys and values both hold are counted twice.
        self.held += other.held;
        for (b, n) in std::mem::take(&mut other.buckets) {
            *self.buckets.entry(b).or_default() += n;
        }
        self.single_none += std::mem::take(&mut other.single_none);
        for (k, n) in std::mem::take(&mut other.short).into_iter().flatten() {
            *self.short_part(k).entry(k).or_default() += n;
        }
        for (k, n) in std::mem::take(&mut other.single) {
            match self.single.get_mut(&k) {
                Some(c) => *c += n,
                None => {
                    self.single.insert(k, n);
                }
            }
        }
        for (k, states) in other.groups {
            match self.groups.get_mut(&k) {
                Some(mine) => {
                    for (m, s) in mine.iter_mut().zip(states) {
                        m.merge(s);
                    }
                }
                None => {
                    self.groups.insert(k, states);
                }
            }
        }
    }

    /// The result table: `stats` one row per group in ascending key order (one row
    /// of zero counts when nothing matched and there is no `by`); `top` the N largest
    /// counts, ties in ascending key order; `uniq` the distinct keys in order.
    pub fn finish(mut self) -> Table {
        if let (Pipe::Stats { funcs, .. }, true) = (&self.pipe, self.groups.is_empty()) {
            if !self.buckets.is_empty() && self.time_bucket_counts().is_some() {
                // Only bucket counts: sorted as integers (the RFC 3339 text sorts the
                // same way), each bucket rendered once.
                let mut buckets: Vec<(i64, u64)> =
                    std::mem::take(&mut self.buckets).into_iter().collect();
                buckets.sort_unstable();
                let mut columns: Vec<String> = self.keys.iter().map(key_name).collect();
                columns.extend(funcs.iter().map(Agg::name));
                let rows = buckets
                    .into_iter()
                    .map(|(b, n)| {
                        let mut row = vec![Cell::Str(engine::ingest::time::format_rfc3339(b))];
                        row.extend(funcs.iter().map(|_| Cell::I64(n as i64)));
                        row
                    })
                    .collect();
                return Table { columns, rows };
            }
        }
        if let Pipe::Top { n, .. } = &self.pipe {
            if self.groups.is_empty() && self.buckets.is_empty() {
                let n = usize::try_from(*n).unwrap_or(usize::MAX);
                let rows = self.top_single(n);
                let Pipe::Top { mut by, .. } = self.pipe else {
                    return Table::default();
                };
                by.push("count()".into());
                return Table {
                    columns: by,
                    rows: rows
                        .into_iter()
                        .map(|(k, c)| vec![k.map_or(Cell::Null, Cell::Str), Cell::I64(c as i64)])
                        .collect(),
                };
            }
        }
        self.fold_single();
        let Grouper {
            pipe,
            keys,
            mut groups,
            ..
        } = self;
        let cells = |k: Vec<Option<String>>| k.into_iter().map(|v| v.map_or(Cell::Null, Cell::Str));
        match pipe {
            Pipe::Stats { funcs, by } => {
                if by.is_empty() && groups.is_empty() {
                    groups.insert(Vec::new(), funcs.iter().map(AggState::new).collect());
                }
                let mut columns: Vec<String> = keys.iter().map(key_name).collect();
                columns.extend(funcs.iter().map(Agg::name));
                let mut sorted: Vec<_> = groups.into_iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                let rows = sorted
                    .into_iter()
                    .map(|(k, states)| {
                        cells(k)
                            .chain(states.into_iter().zip(&funcs).map(|(s, f)| s.finish(f)))
                            .collect()
                    })
                    .collect();
                Table { columns, rows }
            }
            Pipe::Top { n, by } => {
                let mut rows: Vec<(Vec<Option<String>>, u64)> = groups
                    .into_iter()
                    .map(|(k, s)| {
                        let c = match s.into_iter().next() {
                            Some(AggState::Count(c)) => c,
                            _ => 0,
                        };
                        (k, c)
                    })
                    .collect();
                rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                rows.truncate(usize::try_from(n).unwrap_or(usize::MAX));
                let mut columns = by;
                columns.push("count()".into());
                Table {
                    columns,
                    rows: rows
                        .into_iter()
                        .map(|(k, c)| {
                            cells(k)
                                .chain(std::iter::once(Cell::I64(c as i64)))
                                .collect()
                        })
                        .collect(),
                }
            }
            Pipe::Uniq(by) => {
                let mut keys: Vec<Vec<Option<String>>> = groups.into_keys().collect();
                keys.sort();
                Table {
                    columns: by,
                    rows: keys.into_iter().map(|k| cells(k).collect()).collect(),
                }
            }
            _ => Table::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn short_keys_pack_one_to_one(a in "\\PC{0,6}|[a-z0-9.:]{0,15}", b in "\\PC{0,6}|[a-z0-9.:]{0,15}") {
            prop_assume!(a.len() < 16 && b.len() < 16);
            prop_assert_eq!(unpack_short(pack_short(&a)), a.clone());
            prop_assert_eq!(pack_short(&a) == pack_short(&b), a == b);
        }
    }

    #[test]
    fn top_counts_beyond_a_batch_match_a_plain_count() {
        // More keys than a batch holds, short and long, many ties, records
        // without the key, added one at a time and in counted runs, over two
        // groupers merged: the top N must be what a plain count gives.
        let mut x = 11u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let key = |v: u64| match v % 7 {
            0 => None,
            1 => Some(format!("a-long-key-of-more-than-fifteen-bytes-{}", v % 50)),
            _ => Some(format!("k{}", v % 3_000)),
        };
        let mut plain: std::collections::BTreeMap<Option<String>, u64> = Default::default();
        let top = Pipe::Top {
            n: 25,
            by: vec!["f".into()],
        };
        let mut parts = [Grouper::new(&top).unwrap(), Grouper::new(&top).unwrap()];
        for i in 0..(SHORT_BATCH as u64 * 3) {
            let k = key(next());
            let n = if i % 5 == 0 { 1 + next() % 4 } else { 1 };
            *plain.entry(k.clone()).or_default() += n;
            parts[(i % 2) as usize].add_single_key_count(k.as_deref(), n);
        }
        let [mut a, b] = parts;
        a.merge(b);
        let mut want: Vec<(Option<String>, u64)> = plain.into_iter().collect();
        want.sort_by(|p, q| q.1.cmp(&p.1).then_with(|| p.0.cmp(&q.0)));
        want.truncate(25);
        let want: Vec<Vec<Cell>> = want
            .into_iter()
            .map(|(k, n)| vec![k.map_or(Cell::Null, Cell::Str), Cell::I64(n as i64)])
            .collect();
        let got = a.finish();
        assert_eq!(got.columns, vec!["f".to_string(), "count()".to_string()]);
        assert_eq!(got.rows, want);
    }

    #[test]
    fn short_keys_of_every_length_round_trip() {
        let s = "abcdefghijklmno";
        for n in 0..16 {
            let k = s.get(..n).unwrap_or_default();
            assert_eq!(unpack_short(pack_short(k)), k);
            // Same bytes, one shorter: a different key.
            if n > 0 {
                assert_ne!(pack_short(k), pack_short(&k[..n - 1]));
            }
        }
    }
}
