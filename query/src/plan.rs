//! The plan of a query: what is worked out once, before anything is read. The
//! tenant, the time range, the stream labels every match carries, the filter (with
//! `_template` ids widened to those folded into them) and its regexes compiled, the
//! `_msg` conditions pushed down to template ids and dictionaries, the columns the
//! query reads (its projection) and its pipes. Pruning ([`crate::prune`]) and
//! scanning ([`crate::scan`]) work from it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Instant;

use engine::engine::Engine;
use engine::model::Tenant;
use engine::segment::{is_template_word, ColumnKind, ColumnMeta, MsgPredicate};

use crate::aggregate::Grouper;
use crate::ast::{Agg, Cond, Filter, GroupKey, Pipe, Query};
use crate::eval::Compiled;
use crate::exec::QueryError;

/// A query ready to run: everything every segment and the memtable share.
#[derive(Debug)]
pub(crate) struct Plan<'q> {
    /// Whose records.
    pub(crate) tenant: Tenant,
    /// The query, its filter's `_template` ids widened ([`resolve_templates`]).
    pub(crate) query: Cow<'q, Query>,
    /// The filter with its regexes compiled: every candidate row is verified with it.
    pub(crate) compiled: Compiled,
    /// `[start, end)` every match's time lies in ([`time_bounds`]).
    pub(crate) bounds: (i64, i64),
    /// Stream labels (`name=value`) every match carries ([`required_labels`]).
    pub(crate) labels: Vec<String>,
    /// The `_msg` conditions decided on template ids and dictionaries
    /// ([`collect_msg_preds`]).
    pub(crate) msg_preds: Vec<MsgPred>,
    /// The columns read: the filter's and the grouping pipe's.
    pub(crate) need: Need,
    /// When the query began (its deadline counts from here).
    pub(crate) started: Instant,
}

impl Plan<'_> {
    /// `Some(N)` when the query wants only the newest N matching records: its pipes
    /// begin with `limit N`, or with `sort by (_time) desc | limit N` (records come
    /// newest first anyway). Then the memtable keeps only its newest N, segments are
    /// read newest first, and blocks older than the N in hand are skipped.
    pub(crate) fn newest(&self) -> Option<usize> {
        let n = match self.query.pipes.as_slice() {
            [Pipe::Limit(n), ..] => *n,
            [Pipe::Sort(keys), Pipe::Limit(n), ..] if matches!(keys.as_slice(), [k] if k.field == "_time" && k.desc) => {
                *n
            }
            _ => return None,
        };
        Some(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl<'q> Plan<'q> {
    /// Plans `q` for `tenant`; the engine is asked only for the template ids folded
    /// into those the filter names. Fails on a regex over the size limit.
    pub(crate) fn new(
        engine: &Engine,
        tenant: &Tenant,
        q: &'q Query,
        started: Instant,
    ) -> Result<Plan<'q>, QueryError> {
        let query = match resolve_templates(engine, tenant, &q.filter) {
            Some(filter) => Cow::Owned(Query {
                filter,
                pipes: q.pipes.clone(),
            }),
            None => Cow::Borrowed(q),
        };
        let compiled = Compiled::new(&query.filter)?;
        let bounds = time_bounds(&query.filter);
        let mut labels = Vec::new();
        required_labels(&query.filter, &mut labels);
        let mut need = Need::default();
        Need::of_filter(&query.filter, &mut need);
        if let Some(p) = query.pipes.first().filter(|p| Grouper::new(p).is_some()) {
            let mut pipe = Need::default();
            Need::of_pipe(p, &mut pipe);
            need.pipe_msg = pipe.names.contains("_msg");
            need.names.extend(pipe.names);
        }
        let mut msg_preds = Vec::new();
        collect_msg_preds(&query.filter, &mut msg_preds);
        Ok(Plan {
            tenant: tenant.clone(),
            query,
            compiled,
            bounds,
            labels,
            msg_preds,
            need,
            started,
        })
    }
}

/// The filter with each `_template:ID` widened to the ids folded into that
/// template since (`_template:3` also matches records given 7 before 7 folded into
/// 3); `None` when nothing changes.
pub(crate) fn resolve_templates(engine: &Engine, tenant: &Tenant, f: &Filter) -> Option<Filter> {
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

/// Stream labels (`name=value`) every matching record carries: the positive
/// matchers of stream selectors the filter requires (conjoined at its top).
pub(crate) fn required_labels(f: &Filter, out: &mut Vec<String>) {
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

/// The `[start, end)` every matching record's time lies in, from `_time` filters
/// that must hold (those joined by AND at the top).
pub(crate) fn time_bounds(f: &Filter) -> (i64, i64) {
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

/// The columns a query reads: by name (`_time`, `_msg`, `_stream`, `level`, fields).
#[derive(Debug, Clone, Default)]
pub(crate) struct Need {
    pub(crate) names: BTreeSet<String>,
    /// The grouping pipe reads `_msg`.
    pub(crate) pipe_msg: bool,
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
    pub(crate) fn wants(&self, c: &ColumnMeta) -> bool {
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

/// A `_msg` condition decided on template ids and variable ordinals, before any
/// text is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MsgPred {
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
    pub(crate) fn as_predicate(&self) -> MsgPredicate<'_> {
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
pub(crate) fn regex_prefilter(re: &str) -> Option<Vec<String>> {
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
pub(crate) fn prefilter_of(preds: &[MsgPred], re: &str) -> Option<usize> {
    preds
        .iter()
        .position(|p| matches!(p, MsgPred::Contains { regex, .. } if regex == re))
}

/// Whether a phrase is decided by templates alone: more than one token, none of
/// them a variable.
pub(crate) fn template_phrase(toks: &[String]) -> bool {
    toks.len() > 1 && toks.iter().all(|t| is_template_word(t))
}

/// The `_msg` conditions decided on ids: words, prefixes, phrases of template words
/// (other phrases by their words, then checked on text).
pub(crate) fn collect_msg_preds(f: &Filter, out: &mut Vec<MsgPred>) {
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
