//! The parsed form of a query: a filter, then pipes. Grammar and meaning:
//! `docs/query-language.md`.

/// A whole query: `filter | pipe | pipe ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Which records.
    pub filter: Filter,
    /// What to do with them, in order.
    pub pipes: Vec<Pipe>,
}

impl Query {
    /// Whether the records go through nothing but limits (no pipe at all
    /// included): they are shown as they are, hidden fields left out.
    pub fn only_limits(&self) -> bool {
        self.pipes.iter().all(|p| matches!(p, Pipe::Limit(_)))
    }
}

/// Which records a query selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `*`: every record.
    All,
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Not.
    Not(Box<Filter>),
    /// A condition on one field (`_msg` when none is named).
    Field {
        /// The field (`_msg`, `_time`, `level`, a stream label or a field name).
        field: String,
        /// The condition.
        cond: Cond,
    },
    /// `_time:[start, end)` or `_time:15m` (resolved against "now" at parse time):
    /// `start <= _time < end`, nanoseconds.
    Time {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
    /// `{label="value", other!="x"}`: every matcher holds on the stream labels.
    Stream(Vec<LabelMatch>),
}

impl Filter {
    /// Whether every match must hold an exact term the index looks up: a word, a
    /// phrase, or a prefix of at least 3 characters, on any field, required by
    /// every branch of the filter. Such a query reads only the records of that
    /// term's postings (a needle), unlike `*`, a time range, a regex, a range or a
    /// negation, which read everything in their range. The server gives these a
    /// reserve of query slots (`[limits] query_reserve`); it is a shape, not a
    /// cost: a word in every record is "narrowed" too, hence the reserve's short
    /// deadline.
    pub fn narrowed_by_index(&self) -> bool {
        match self {
            Filter::And(a, b) => a.narrowed_by_index() || b.narrowed_by_index(),
            Filter::Or(a, b) => a.narrowed_by_index() && b.narrowed_by_index(),
            Filter::Field { cond, .. } => match cond {
                Cond::Word(w) => !w.is_empty(),
                Cond::Phrase(ws) => !ws.is_empty(),
                Cond::Prefix(p) => p.chars().count() >= 3,
                Cond::Exists | Cond::Range { .. } | Cond::Regex(_) => false,
            },
            Filter::All | Filter::Not(_) | Filter::Time { .. } | Filter::Stream(_) => false,
        }
    }

    /// `op` (`Filter::And` or `Filter::Or`, both associative) over `items` as a
    /// balanced tree: its depth grows with the log of their number, so a long chain
    /// (`a b c ...`) cannot make a deep tree for recursive walks. `None` for none.
    pub fn balanced(
        mut items: Vec<Filter>,
        op: fn(Box<Filter>, Box<Filter>) -> Filter,
    ) -> Option<Filter> {
        // Pairwise rounds, left to right: `a b c` stays `(a b) c`.
        while items.len() > 1 {
            let mut next = Vec::with_capacity(items.len().div_ceil(2));
            let mut it = items.into_iter();
            while let Some(a) = it.next() {
                match it.next() {
                    Some(b) => next.push(op(Box::new(a), Box::new(b))),
                    None => next.push(a),
                }
            }
            items = next;
        }
        items.pop()
    }

    /// Levels of the tree (a condition is 1). Recursive: the parser bounds the
    /// depth of every tree it makes ([`crate::parse::FILTER_DEPTH_MAX`]).
    pub fn depth(&self) -> usize {
        match self {
            Filter::And(a, b) | Filter::Or(a, b) => 1 + a.depth().max(b.depth()),
            Filter::Not(a) => 1 + a.depth(),
            _ => 1,
        }
    }
}

/// A condition on a field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// On `_msg`: contains the token (ASCII case ignored); on other fields: the value's
    /// text equals it exactly.
    Word(String),
    /// The tokens appear consecutively (separators ignored, ASCII case ignored).
    Phrase(Vec<String>),
    /// On `_msg`: a token starts with it (ASCII case ignored); on other fields: the
    /// value's text starts with it.
    Prefix(String),
    /// The field has a value (`field:*`).
    Exists,
    /// Numeric comparison of the value.
    Range {
        /// Lower bound and whether it is included.
        lo: Option<(f64, bool)>,
        /// Upper bound and whether it is included.
        hi: Option<(f64, bool)>,
    },
    /// A regular expression anywhere in the value's text (unanchored).
    Regex(String),
}

/// One stream label matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    /// Label name.
    pub name: String,
    /// Value compared with.
    pub value: String,
    /// `!=` instead of `=`.
    pub negated: bool,
}

/// A step after the filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Pipe {
    /// `| fields a, b`: keep these fields.
    Fields(Vec<String>),
    /// `| sort by (a, b desc) [desc]`.
    Sort(Vec<SortKey>),
    /// `| limit N`.
    Limit(u64),
    /// `| stats f(), ... by (...)`.
    Stats {
        /// The aggregates, in output order.
        funcs: Vec<Agg>,
        /// Group keys.
        by: Vec<GroupKey>,
    },
    /// `| top N by (f, ...)`: the N most frequent value combinations with counts.
    Top {
        /// How many.
        n: u64,
        /// Fields.
        by: Vec<String>,
    },
    /// `| uniq by (f, ...)`: distinct value combinations.
    Uniq(Vec<String>),
}

/// A sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Field.
    pub field: String,
    /// Descending.
    pub desc: bool,
}

/// A group key of `stats ... by (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupKey {
    /// A field's value.
    Field(String),
    /// `_time:1m`: the record's time rounded down to a multiple of this step (ns).
    TimeBucket(i64),
}

/// An aggregate function.
#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    /// `count()`.
    Count,
    /// `count_uniq(f)`.
    CountUniq(String),
    /// `sum(f)`.
    Sum(String),
    /// `avg(f)`.
    Avg(String),
    /// `min(f)`.
    Min(String),
    /// `max(f)`.
    Max(String),
    /// `quantile(q, f)`.
    Quantile(f64, String),
}

impl Agg {
    /// The output column name, as written in the query (`count()`, `sum(bytes)`).
    pub fn name(&self) -> String {
        match self {
            Agg::Count => "count()".into(),
            Agg::CountUniq(f) => format!("count_uniq({f})"),
            Agg::Sum(f) => format!("sum({f})"),
            Agg::Avg(f) => format!("avg({f})"),
            Agg::Min(f) => format!("min({f})"),
            Agg::Max(f) => format!("max({f})"),
            Agg::Quantile(q, f) => format!("quantile({q}, {f})"),
        }
    }
}

#[cfg(test)]
mod tests {
    fn narrowed(q: &str) -> bool {
        crate::parse_now(q).expect(q).filter.narrowed_by_index()
    }

    #[test]
    fn needles_are_narrowed_by_the_index_and_scans_are_not() {
        for q in [
            "error",
            "id_1 | stats count()",
            "host:web-1 _time:5m",
            "\"connection reset\"",
            "err* | sort by (_time) desc",
            "(error or fail) level:ERROR",
            "error not debug",
            "error _msg:~\"x+\"",
        ] {
            assert!(narrowed(q), "{q}");
        }
        for q in [
            "*",
            "_time:5m",
            "not error",
            "error or _msg:~\"x\"",
            "er*",
            "n:>5",
            "host:*",
            "{service=\"api\"}",
            "_msg:~\"timeout\" | stats count() by (host)",
        ] {
            assert!(!narrowed(q), "{q}");
        }
    }
}
