//! Pruning: which blocks of a segment can hold a match, from its index (term and
//! prefix lookups, the `_msg` dictionaries' matchers, block time ranges), before
//! any column is read. `None` means every block can.

use engine::segment::{field_term, msg_term, MsgMatchers, SegmentError, SegmentReader};
use roaring::RoaringBitmap;

use crate::ast::{Cond, Filter};
use crate::plan::{prefilter_of, MsgPred};

/// Blocks of `r` that can hold a match (`None`: any block can).
pub(crate) fn candidates(
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
pub(crate) struct Prepared<'a> {
    pub(crate) preds: &'a [MsgPred],
    pub(crate) matchers: &'a MsgMatchers,
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
