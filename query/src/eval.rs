//! The meaning of a query, record by record: what a filter matches and what the pipes
//! make of the matching records. The executor verifies candidate rows with
//! [`Compiled::matches`]; the differential tests run whole queries through
//! [`run_naive`] over every record and require the executor's exact result. This is
//! the test oracle: plain code over every record, no index, no fast path.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use engine::model::{Record, Value};
use engine::token;
use regex::Regex;

use crate::ast::{Agg, Cond, Filter, GroupKey, Pipe, Query};
use crate::table::{apply_pipes_with, key_name, Cell, Table};

/// Largest compiled regex (bytes of the regex crate's program).
pub const REGEX_SIZE_MAX: usize = 1 << 20;

/// Compiles a query regex with the size limits.
pub fn compile_regex(re: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_MAX)
        .dfa_size_limit(REGEX_SIZE_MAX)
        .build()
}

/// A filter with its regexes compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    filter: Filter,
    regexes: BTreeMap<String, Regex>,
}

impl Compiled {
    /// Compiles every regex of `filter`.
    pub fn new(filter: &Filter) -> Result<Compiled, regex::Error> {
        let mut regexes = BTreeMap::new();
        collect_regexes(filter, &mut regexes)?;
        Ok(Compiled {
            filter: filter.clone(),
            regexes,
        })
    }

    /// Whether `rec` matches.
    pub fn matches(&self, rec: &Record) -> bool {
        matches(&self.filter, rec, &self.regexes)
    }

    /// Whether `rec` matches `part`, a piece of this filter (its regexes compiled).
    pub fn matches_part(&self, part: &Filter, rec: &Record) -> bool {
        matches(part, rec, &self.regexes)
    }

    /// The compiled form of a regex of this filter.
    pub fn regex(&self, re: &str) -> Option<&Regex> {
        self.regexes.get(re)
    }
}

fn collect_regexes(f: &Filter, out: &mut BTreeMap<String, Regex>) -> Result<(), regex::Error> {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => {
            collect_regexes(a, out)?;
            collect_regexes(b, out)
        }
        Filter::Not(a) => collect_regexes(a, out),
        Filter::Field {
            cond: Cond::Regex(re),
            ..
        } => {
            if !out.contains_key(re) {
                out.insert(re.clone(), compile_regex(re)?);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A field's value as text: `_msg`, `_time` (RFC 3339), `_stream` (labels as JSON),
/// `level`, a field, else a stream label.
pub fn field_text<'r>(rec: &'r Record, name: &str) -> Option<Cow<'r, str>> {
    match name {
        "_msg" => Some(Cow::Borrowed(&rec.msg)),
        "_time" => Some(Cow::Owned(engine::ingest::time::format_rfc3339(
            rec.time_ns,
        ))),
        "_stream" => Some(Cow::Owned(
            serde_json::to_string(&rec.stream).unwrap_or_default(),
        )),
        "level" if rec.level.is_some() => rec.level.as_deref().map(Cow::Borrowed),
        _ => rec
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| match v {
                Value::Str(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_text()),
            })
            .or_else(|| rec.stream.get(name).map(|s| Cow::Borrowed(s.as_str()))),
    }
}

/// A field's value as a number, when it is one (numbers stored as text count).
pub fn field_number(rec: &Record, name: &str) -> Option<f64> {
    if name == "_time" {
        return Some(rec.time_ns as f64);
    }
    if let Some((_, v)) = rec.fields.iter().find(|(k, _)| k == name) {
        return match v {
            Value::I64(x) => Some(*x as f64),
            Value::F64(x) => Some(*x),
            Value::Bool(_) => None,
            Value::Str(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        };
    }
    field_text(rec, name)?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

/// Whether `tokens` contains `phrase` as consecutive tokens (ASCII case ignored).
pub fn contains_phrase(text: &str, phrase: &[String]) -> bool {
    if phrase.is_empty() {
        return false;
    }
    let toks: Vec<&str> = token::tokens(text).collect();
    toks.windows(phrase.len())
        .any(|w| w.iter().zip(phrase).all(|(a, b)| a.eq_ignore_ascii_case(b)))
}

fn has_prefix_token(text: &str, prefix: &str) -> bool {
    let p = token::normalize(prefix);
    token::tokens(text).any(|t| token::normalize(t).starts_with(p.as_ref()))
}

fn in_range(x: f64, lo: &Option<(f64, bool)>, hi: &Option<(f64, bool)>) -> bool {
    let above = match lo {
        None => true,
        Some((l, true)) => x >= *l,
        Some((l, false)) => x > *l,
    };
    let below = match hi {
        None => true,
        Some((h, true)) => x <= *h,
        Some((h, false)) => x < *h,
    };
    above && below
}

fn matches(f: &Filter, rec: &Record, regexes: &BTreeMap<String, Regex>) -> bool {
    match f {
        Filter::All => true,
        Filter::And(a, b) => matches(a, rec, regexes) && matches(b, rec, regexes),
        Filter::Or(a, b) => matches(a, rec, regexes) || matches(b, rec, regexes),
        Filter::Not(a) => !matches(a, rec, regexes),
        Filter::Time { start, end } => *start <= rec.time_ns && rec.time_ns < *end,
        Filter::Stream(ms) => ms.iter().all(|m| {
            let eq = rec.stream.get(&m.name).is_some_and(|v| *v == m.value);
            eq != m.negated
        }),
        Filter::Field { field, cond } => {
            let msg = field == "_msg";
            match cond {
                Cond::Exists => field_text(rec, field).is_some(),
                Cond::Range { lo, hi } => {
                    field_number(rec, field).is_some_and(|x| in_range(x, lo, hi))
                }
                _ => {
                    let Some(text) = field_text(rec, field) else {
                        return false;
                    };
                    match cond {
                        Cond::Word(w) if msg => token::contains_token(&text, w),
                        Cond::Word(w) => text == w.as_str(),
                        Cond::Prefix(p) if msg => has_prefix_token(&text, p),
                        Cond::Prefix(p) => text.starts_with(p.as_str()),
                        Cond::Phrase(ph) => contains_phrase(&text, ph),
                        Cond::Regex(re) => regexes.get(re).is_some_and(|r| r.is_match(&text)),
                        Cond::Exists | Cond::Range { .. } => false,
                    }
                }
            }
        }
    }
}

/// Runs `query` over `records` by scanning every one: the reference the executor
/// must agree with. Records come out newest first (ties in input order). Grouping
/// pipes gather each group's records and compute every aggregate from them
/// (`naive_group`), apart from the executor's [`crate::aggregate::Grouper`].
pub fn run_naive(query: &Query, records: &[Record]) -> Result<Table, regex::Error> {
    let c = Compiled::new(&query.filter)?;
    let mut hits: Vec<Record> = records.iter().filter(|r| c.matches(r)).cloned().collect();
    hits.sort_by_key(|r| std::cmp::Reverse(r.time_ns));
    Ok(apply_pipes_with(&query.pipes, &hits, naive_group))
}

/// A grouping pipe the plain way: records gathered per key (in key order), each
/// aggregate computed from a group's records; `None` when `p` does not group.
/// `stats` without `by` has one row even when nothing matched; `top N` keeps the N
/// largest counts, ties in key order; `uniq` lists the keys.
fn naive_group(p: &Pipe, hits: &[Record]) -> Option<Table> {
    let (keys, funcs): (Vec<GroupKey>, Vec<Agg>) = match p {
        Pipe::Stats { funcs, by } => (by.clone(), funcs.clone()),
        Pipe::Top { by, .. } | Pipe::Uniq(by) => (
            by.iter().cloned().map(GroupKey::Field).collect(),
            vec![Agg::Count],
        ),
        _ => return None,
    };
    let mut groups: BTreeMap<Vec<Option<String>>, Vec<&Record>> = BTreeMap::new();
    for r in hits {
        let key = keys
            .iter()
            .map(|k| match k {
                GroupKey::Field(f) => field_text(r, f).map(Cow::into_owned),
                GroupKey::TimeBucket(step) => Some(engine::ingest::time::format_rfc3339(
                    r.time_ns - r.time_ns.rem_euclid(*step),
                )),
            })
            .collect();
        groups.entry(key).or_default().push(r);
    }
    let cells = |k: &[Option<String>]| -> Vec<Cell> {
        k.iter()
            .map(|v| v.clone().map_or(Cell::Null, Cell::Str))
            .collect()
    };
    Some(match p {
        Pipe::Top { n, by } => {
            let mut counted: Vec<(&Vec<Option<String>>, usize)> =
                groups.iter().map(|(k, rs)| (k, rs.len())).collect();
            counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            counted.truncate(usize::try_from(*n).unwrap_or(usize::MAX));
            let mut columns = by.clone();
            columns.push("count()".into());
            Table {
                columns,
                rows: counted
                    .into_iter()
                    .map(|(k, c)| {
                        let mut row = cells(k);
                        row.push(Cell::I64(c as i64));
                        row
                    })
                    .collect(),
            }
        }
        Pipe::Uniq(by) => Table {
            columns: by.clone(),
            rows: groups.keys().map(|k| cells(k)).collect(),
        },
        _ => {
            if keys.is_empty() && groups.is_empty() {
                groups.insert(Vec::new(), Vec::new());
            }
            let mut columns: Vec<String> = keys.iter().map(key_name).collect();
            columns.extend(funcs.iter().map(Agg::name));
            Table {
                columns,
                rows: groups
                    .iter()
                    .map(|(k, rs)| {
                        let mut row = cells(k);
                        row.extend(funcs.iter().map(|f| naive_aggregate(f, rs)));
                        row
                    })
                    .collect(),
            }
        }
    })
}

/// One aggregate over a group's records: `count`, `count_uniq` (distinct texts),
/// `sum` (0 when no value is a number), `avg`, `min`, `max` and `quantile` (nearest
/// rank: the smallest value with at least that share of them at or below) of the
/// numeric values, null when there are none.
fn naive_aggregate(f: &Agg, rs: &[&Record]) -> Cell {
    let numbers = |x: &str| -> Vec<f64> { rs.iter().filter_map(|r| field_number(r, x)).collect() };
    let or_null = |v: Option<f64>| v.map_or(Cell::Null, Cell::F64);
    match f {
        Agg::Count => Cell::I64(rs.len() as i64),
        Agg::CountUniq(x) => Cell::I64(
            rs.iter()
                .filter_map(|r| field_text(r, x))
                .collect::<BTreeSet<_>>()
                .len() as i64,
        ),
        Agg::Sum(x) => Cell::F64(numbers(x).into_iter().fold(0.0, |a, b| a + b)),
        Agg::Avg(x) => {
            let v = numbers(x);
            or_null((!v.is_empty()).then(|| v.iter().fold(0.0, |a, b| a + b) / v.len() as f64))
        }
        Agg::Min(x) => or_null(numbers(x).into_iter().reduce(f64::min)),
        Agg::Max(x) => or_null(numbers(x).into_iter().reduce(f64::max)),
        Agg::Quantile(q, x) => {
            let mut v = numbers(x);
            v.sort_by(f64::total_cmp);
            let rank = (q * v.len() as f64).ceil() as usize;
            or_null(v.get(rank.clamp(1, v.len().max(1)) - 1).copied())
        }
    }
}
