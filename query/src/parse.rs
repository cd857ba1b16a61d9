//! The query parser: recursive descent over characters, with the byte position and
//! what was expected in every error. Never panics (fuzzed: `fuzz/fuzz_targets/query_parse.rs`).
//! Grammar: `docs/query-language.md`.

use engine::token;

use crate::ast::{Agg, Cond, Filter, GroupKey, LabelMatch, Pipe, Query, SortKey};

/// Longest query text accepted.
pub const QUERY_BYTES_MAX: usize = 64 << 10;
/// Deepest nesting of parentheses and `NOT`s accepted.
pub const NESTING_MAX: usize = 64;
/// Most conditions (words, phrases, field and time filters, stream selectors) in
/// one query's filter.
pub const CONDITIONS_MAX: usize = 4096;
/// Deepest filter tree accepted; every recursive walk of a filter (planner,
/// executor, evaluator) is bounded by it. AND and OR chains are balanced, so it
/// takes far more than [`CONDITIONS_MAX`] conditions' worth of chain to reach it.
pub const FILTER_DEPTH_MAX: usize = 128;
/// Most pipes after the filter.
pub const PIPES_MAX: usize = 64;
/// Most items in one list: stream matchers, aggregates, `by`, `fields` and `sort`
/// lists.
pub const LIST_ITEMS_MAX: usize = 256;

/// A query that does not parse: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at position {pos} (column {column}): {what}")]
pub struct ParseError {
    /// Byte offset in the query text.
    pub pos: usize,
    /// 1-based character column (the same as `pos + 1` for ASCII queries).
    pub column: usize,
    /// What was expected or what is wrong.
    pub what: String,
}

/// Parses `text`; `now_ns` resolves relative times such as `_time:15m`.
pub fn parse(text: &str, now_ns: i64) -> Result<Query, ParseError> {
    let mut p = Parser {
        s: text,
        pos: 0,
        now_ns,
        depth: 0,
        conditions: 0,
    };
    if text.len() > QUERY_BYTES_MAX {
        return Err(p.error_at(
            QUERY_BYTES_MAX,
            format!("query longer than {QUERY_BYTES_MAX} bytes"),
        ));
    }
    p.skip_ws();
    if p.peek().is_none() {
        return Err(p.error("a filter (use `*` for every record)"));
    }
    let filter = p.or()?;
    let depth = filter.depth();
    if depth > FILTER_DEPTH_MAX {
        return Err(p.error_at(
            0,
            format!("the filter is {depth} levels deep, over the limit of {FILTER_DEPTH_MAX}"),
        ));
    }
    let mut pipes = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => break,
            Some('|') => {
                if pipes.len() == PIPES_MAX {
                    return Err(p.error_at(p.pos, format!("more than {PIPES_MAX} pipes")));
                }
                p.bump();
                pipes.push(p.pipe()?);
            }
            Some(')') => return Err(p.error("no `(` to close with `)`")),
            Some(_) => return Err(p.error("`|` or the end of the query")),
        }
    }
    Ok(Query { filter, pipes })
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    now_ns: i64,
    depth: usize,
    /// Conditions parsed so far ([`CONDITIONS_MAX`]).
    conditions: usize,
}

/// Characters that end a bare word.
fn is_special(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | '{' | '}' | '[' | ']' | '|' | '"' | ':' | ',' | '~' | '=' | '!' | '<' | '>'
        )
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn error_at(&self, pos: usize, what: impl Into<String>) -> ParseError {
        let column = self.s.get(..pos).map_or(pos, |p| p.chars().count()) + 1;
        ParseError {
            pos,
            column,
            what: what.into(),
        }
    }

    /// "expected X, found Y" at the current position.
    fn error(&self, expected: &str) -> ParseError {
        let found = match self.peek() {
            None => "the end of the query".to_string(),
            Some(_) => {
                let w: String = self.rest().chars().take(20).collect();
                format!("`{w}`")
            }
        };
        self.error_at(self.pos, format!("expected {expected}, found {found}"))
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.bump();
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > NESTING_MAX {
            return Err(self.error_at(self.pos, format!("nested deeper than {NESTING_MAX} levels")));
        }
        Ok(())
    }

    /// A bare word at the current position (may be empty).
    fn bare(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(|c| !is_special(c)) {
            self.bump();
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    /// The next bare word, without consuming it.
    fn peek_bare(&self) -> &'a str {
        let r = self.rest();
        let end = r.find(is_special).unwrap_or(r.len());
        r.get(..end).unwrap_or("")
    }

    fn keyword_next(&self, kw: &str) -> bool {
        self.peek_bare().eq_ignore_ascii_case(kw)
    }

    /// Counts one more condition against [`CONDITIONS_MAX`].
    fn condition(&mut self, at: usize) -> Result<(), ParseError> {
        self.conditions += 1;
        if self.conditions > CONDITIONS_MAX {
            return Err(self.error_at(at, format!("more than {CONDITIONS_MAX} conditions")));
        }
        Ok(())
    }

    /// Fails when a list already holds [`LIST_ITEMS_MAX`] items.
    fn list_room(&self, len: usize, what: &str) -> Result<(), ParseError> {
        if len >= LIST_ITEMS_MAX {
            return Err(self.error_at(self.pos, format!("more than {LIST_ITEMS_MAX} {what}")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Filter, ParseError> {
        let mut items = vec![self.and()?];
        loop {
            self.skip_ws();
            if self.keyword_next("or") {
                self.bare();
                self.skip_ws();
                items.push(self.and()?);
            } else {
                return Ok(Filter::balanced(items, Filter::Or).unwrap_or(Filter::All));
            }
        }
    }

    fn and(&mut self) -> Result<Filter, ParseError> {
        let mut items = vec![self.unary()?];
        loop {
            self.skip_ws();
            match self.peek() {
                None | Some(')') | Some('|') => break,
                _ if self.keyword_next("or") => break,
                _ => {}
            }
            if self.keyword_next("and") {
                self.bare();
                self.skip_ws();
            }
            items.push(self.unary()?);
        }
        Ok(Filter::balanced(items, Filter::And).unwrap_or(Filter::All))
    }

    fn unary(&mut self) -> Result<Filter, ParseError> {
        self.skip_ws();
        let negate = if self.keyword_next("not") {
            self.bare();
            true
        } else if matches!(self.peek(), Some('-') | Some('!'))
            && self.peek2().is_some_and(|c| !c.is_whitespace())
        {
            self.bump();
            true
        } else {
            false
        };
        if negate {
            self.nest()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, ParseError> {
        self.skip_ws();
        if !matches!(self.peek(), None | Some('(')) {
            self.condition(self.pos)?;
        }
        match self.peek() {
            None => Err(self.error("a filter")),
            Some('(') => {
                self.bump();
                self.nest()?;
                self.skip_ws();
                let f = self.or()?;
                self.expect(')', "`)`")?;
                self.depth -= 1;
                Ok(f)
            }
            Some('{') => self.stream(),
            Some('*') if self.peek2().is_none_or(is_special) => {
                self.bump();
                Ok(Filter::All)
            }
            Some('"') | Some('~') => {
                let cond = self.value("_msg")?;
                Ok(Filter::Field {
                    field: "_msg".into(),
                    cond,
                })
            }
            Some(c) if is_special(c) => {
                Err(self.error("a word, a phrase, `field:value`, `(` or `{`"))
            }
            Some(_) => {
                let start = self.pos;
                let word = self.bare();
                if self.peek() == Some(':') {
                    self.bump();
                    let field = word.to_string();
                    if field == "_time" {
                        return self.time();
                    }
                    let cond = self.value(&field)?;
                    return Ok(Filter::Field { field, cond });
                }
                let cond = self.word_cond(word, start, true)?;
                Ok(Filter::Field {
                    field: "_msg".into(),
                    cond,
                })
            }
        }
    }

    /// A bare word as a condition: a trailing `*` makes a prefix; on `_msg` a word of
    /// several tokens (`10.0.0.1`) is the phrase of them.
    fn word_cond(&self, word: &str, start: usize, msg: bool) -> Result<Cond, ParseError> {
        let (body, prefix) = match word.strip_suffix('*') {
            Some(b) => (b, true),
            None => (word, false),
        };
        if let Some(i) = body.find('*') {
            return Err(self.error_at(
                start + i,
                "`*` only at the end of a word (a prefix) or alone",
            ));
        }
        if body.is_empty() {
            return Err(self.error_at(start, "expected a word"));
        }
        if !msg {
            return Ok(if prefix {
                Cond::Prefix(body.to_string())
            } else {
                Cond::Word(body.to_string())
            });
        }
        let toks: Vec<String> = token::tokens(body).map(str::to_string).collect();
        match (toks.len(), prefix) {
            (0, _) => Err(self.error_at(
                start,
                format!("`{body}` has no letters or digits to search for (quote it as a phrase or use a regex)"),
            )),
            (1, false) => Ok(Cond::Word(toks.into_iter().next().unwrap_or_default())),
            (1, true) if body.ends_with(|c: char| token::is_token_char(c)) => {
                Ok(Cond::Prefix(toks.into_iter().next().unwrap_or_default()))
            }
            (_, false) => Ok(Cond::Phrase(toks)),
            (_, true) => Err(self.error_at(
                start,
                format!("a prefix must be one word: `{word}`"),
            )),
        }
    }

    /// The value after `field:`.
    fn value(&mut self, field: &str) -> Result<Cond, ParseError> {
        let msg = field == "_msg";
        match self.peek() {
            Some('"') => {
                let start = self.pos;
                let text = self.quoted()?;
                let toks: Vec<String> = token::tokens(&text).map(str::to_string).collect();
                if toks.is_empty() {
                    return Err(self.error_at(
                        start,
                        "a phrase needs letters or digits (use a regex for punctuation)",
                    ));
                }
                Ok(Cond::Phrase(toks))
            }
            Some('~') => {
                self.bump();
                if self.peek() != Some('"') {
                    return Err(self.error("a quoted regular expression after `~`"));
                }
                let start = self.pos;
                let re = self.quoted()?;
                // Syntax only, with the regex crate's own parser settings: a
                // positioned error for a mistake, without building the automata,
                // which the executor does once (`eval::Compiled`; a regex over
                // the size limit is refused there).
                regex_syntax::ParserBuilder::new()
                    .build()
                    .parse(&re)
                    .map_err(|e| self.error_at(start, format!("bad regular expression: {e}")))?;
                Ok(Cond::Regex(re))
            }
            Some('*') if self.peek2().is_none_or(is_special) => {
                self.bump();
                Ok(Cond::Exists)
            }
            Some('>') | Some('<') => {
                let gt = self.bump() == Some('>');
                let inclusive = if self.peek() == Some('=') {
                    self.bump();
                    true
                } else {
                    false
                };
                let n = self.number()?;
                Ok(if gt {
                    Cond::Range {
                        lo: Some((n, inclusive)),
                        hi: None,
                    }
                } else {
                    Cond::Range {
                        lo: None,
                        hi: Some((n, inclusive)),
                    }
                })
            }
            Some('[') | Some('(') => {
                let lo_incl = self.bump() == Some('[');
                self.skip_ws();
                let lo = self.number()?;
                self.expect(',', "`,` between the range's bounds")?;
                self.skip_ws();
                let hi = self.number()?;
                self.skip_ws();
                let hi_incl = match self.bump() {
                    Some(']') => true,
                    Some(')') => false,
                    _ => return Err(self.error("`]` or `)` to close the range")),
                };
                Ok(Cond::Range {
                    lo: Some((lo, lo_incl)),
                    hi: Some((hi, hi_incl)),
                })
            }
            _ => {
                let start = self.pos;
                let word = self.bare();
                if word.is_empty() {
                    return Err(self.error(&format!(
                        "a value for `{field}:` (a word, \"phrase\", prefix*, *, >N, [a, b] or ~\"regex\")"
                    )));
                }
                self.word_cond(word, start, msg)
            }
        }
    }

    fn number(&mut self) -> Result<f64, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let w = self.bare();
        w.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| {
                self.error_at(
                    start,
                    if w.is_empty() {
                        "expected a number".to_string()
                    } else {
                        format!("expected a number, found `{w}`")
                    },
                )
            })
    }

    /// A double-quoted string with `\"` and `\\` escapes.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error_at(start, "unterminated quoted string")),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    // Other escapes are kept for the regex engine (`\d`, `\.`).
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err(self.error_at(start, "unterminated quoted string")),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// `_time:` followed by `[start, end)` (RFC 3339) or a duration back from now.
    fn time(&mut self) -> Result<Filter, ParseError> {
        match self.peek() {
            Some('[') | Some('(') => {
                let lo_incl = self.bump() == Some('[');
                let lo = self.timestamp()?;
                self.expect(',', "`,` between the time range's bounds")?;
                let hi = self.timestamp()?;
                self.skip_ws();
                let hi_incl = match self.bump() {
                    Some(']') => true,
                    Some(')') => false,
                    _ => return Err(self.error("`]` or `)` to close the time range")),
                };
                let start = if lo_incl { lo } else { lo.saturating_add(1) };
                let end = if hi_incl { hi.saturating_add(1) } else { hi };
                Ok(Filter::Time { start, end })
            }
            _ => {
                let start = self.pos;
                let w = self.bare();
                let d = duration(w).ok_or_else(|| {
                    self.error_at(
                        start,
                        format!(
                            "expected `[start, end)` or a duration such as 15m, 1h, 7d after `_time:`, found `{w}`"
                        ),
                    )
                })?;
                Ok(Filter::Time {
                    start: self.now_ns.saturating_sub(d),
                    end: self.now_ns.saturating_add(1),
                })
            }
        }
    }

    fn timestamp(&mut self) -> Result<i64, ParseError> {
        self.skip_ws();
        let start = self.pos;
        // RFC 3339 has `:`, so read up to `,` / `]` / `)`.
        let r = self.rest();
        let end = r.find([',', ']', ')']).unwrap_or(r.len());
        let text = r.get(..end).unwrap_or("").trim();
        self.pos += end;
        engine::ingest::time::parse_rfc3339(text).ok_or_else(|| {
            self.error_at(
                start,
                format!("expected an RFC 3339 time such as 2026-11-26T10:00:00Z, found `{text}`"),
            )
        })
    }

    fn stream(&mut self) -> Result<Filter, ParseError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some('}') {
                self.bump();
                return Ok(Filter::Stream(out));
            }
            if !out.is_empty() {
                self.expect(',', "`,` or `}`")?;
                self.skip_ws();
            }
            self.list_room(out.len(), "stream matchers")?;
            let name = self.bare();
            if name.is_empty() {
                return Err(self.error("a label name"));
            }
            self.skip_ws();
            let negated = match (self.peek(), self.peek2()) {
                (Some('='), _) => {
                    self.bump();
                    false
                }
                (Some('!'), Some('=')) => {
                    self.bump();
                    self.bump();
                    true
                }
                _ => return Err(self.error("`=` or `!=`")),
            };
            self.skip_ws();
            if self.peek() != Some('"') {
                return Err(self.error("a quoted label value"));
            }
            let value = self.quoted()?;
            out.push(LabelMatch {
                name: name.to_string(),
                value,
                negated,
            });
        }
    }

    fn pipe(&mut self) -> Result<Pipe, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let name = self.bare();
        match name {
            "fields" => Ok(Pipe::Fields(self.field_list()?)),
            "limit" | "head" => {
                let n = self.count("limit")?;
                Ok(Pipe::Limit(n))
            }
            "sort" => {
                self.by()?;
                let keys = self.paren_list(|p| {
                    let field = p.field_name()?;
                    p.skip_ws();
                    let desc = p.direction();
                    Ok(SortKey { field, desc })
                })?;
                self.skip_ws();
                // `sort by (a, b) desc`: the trailing direction applies to every key.
                let all_desc = self.direction();
                Ok(Pipe::Sort(
                    keys.into_iter()
                        .map(|k| SortKey {
                            desc: k.desc ^ all_desc,
                            ..k
                        })
                        .collect(),
                ))
            }
            "stats" => {
                let mut funcs = Vec::new();
                loop {
                    self.skip_ws();
                    self.list_room(funcs.len(), "aggregates")?;
                    funcs.push(self.agg()?);
                    self.skip_ws();
                    if self.peek() == Some(',') {
                        self.bump();
                    } else {
                        break;
                    }
                }
                self.skip_ws();
                let by = if self.keyword_next("by") {
                    self.by()?;
                    self.paren_list(|p| p.group_key())?
                } else {
                    Vec::new()
                };
                Ok(Pipe::Stats { funcs, by })
            }
            "top" => {
                self.skip_ws();
                let n = if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.count("top")?
                } else {
                    10
                };
                self.by()?;
                Ok(Pipe::Top {
                    n,
                    by: self.paren_list(|p| p.field_name())?,
                })
            }
            "uniq" => {
                self.by()?;
                Ok(Pipe::Uniq(self.paren_list(|p| p.field_name())?))
            }
            "" => Err(self.error("a pipe (fields, sort, limit, stats, top, uniq)")),
            other => Err(self.error_at(
                start,
                format!(
                    "unknown pipe `{other}` (expected fields, sort, limit, stats, top or uniq)"
                ),
            )),
        }
    }

    fn direction(&mut self) -> bool {
        if self.keyword_next("desc") {
            self.bare();
            true
        } else {
            if self.keyword_next("asc") {
                self.bare();
            }
            false
        }
    }

    fn by(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.keyword_next("by") {
            self.bare();
            Ok(())
        } else {
            Err(self.error("`by`"))
        }
    }

    fn count(&mut self, what: &str) -> Result<u64, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let w = self.bare();
        w.parse::<u64>().map_err(|_| {
            self.error_at(
                start,
                format!("expected a whole number after `{what}`, found `{w}`"),
            )
        })
    }

    /// A field name; a result column of `stats` is named like its function,
    /// `count()` or `quantile(0.99, latency)` (spaces after commas normalized).
    fn field_name(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let w = self.bare();
        if w.is_empty() || w.contains('*') {
            return Err(self.error("a field name"));
        }
        if self.peek() != Some('(') {
            return Ok(w.to_string());
        }
        let start = self.pos;
        self.bump();
        let inner_start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c != ')' && c != '(' && c != '|')
        {
            self.bump();
        }
        if self.peek() != Some(')') {
            return Err(self.error_at(start, "expected `)` to close the function name"));
        }
        let inner = self.s.get(inner_start..self.pos).unwrap_or("");
        self.bump();
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        Ok(format!("{w}({})", args.join(", ")))
    }

    /// `a, b, c` (with or without parentheses).
    fn field_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.skip_ws();
        if self.peek() == Some('(') {
            return self.paren_list(|p| p.field_name());
        }
        let mut out = vec![self.field_name()?];
        loop {
            self.skip_ws();
            if self.peek() == Some(',') {
                self.bump();
                self.list_room(out.len(), "fields")?;
                out.push(self.field_name()?);
            } else {
                return Ok(out);
            }
        }
    }

    /// `(item, item, ...)`, at least one item.
    fn paren_list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ParseError>,
    ) -> Result<Vec<T>, ParseError> {
        self.expect('(', "`(`")?;
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            self.list_room(out.len(), "items in a list")?;
            out.push(item(self)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(')') => {
                    self.bump();
                    return Ok(out);
                }
                _ => return Err(self.error("`,` or `)`")),
            }
        }
    }

    fn group_key(&mut self) -> Result<GroupKey, ParseError> {
        let name = self.field_name()?;
        if name == "_time" && self.peek() == Some(':') {
            self.bump();
            let start = self.pos;
            let w = self.bare();
            let step = duration(w).filter(|d| *d > 0).ok_or_else(|| {
                self.error_at(
                    start,
                    format!(
                        "expected a bucket size such as 1m, 5m, 1h after `_time:`, found `{w}`"
                    ),
                )
            })?;
            return Ok(GroupKey::TimeBucket(step));
        }
        Ok(GroupKey::Field(name))
    }

    fn agg(&mut self) -> Result<Agg, ParseError> {
        let start = self.pos;
        let name = self.bare();
        self.expect('(', "`(` after the function name")?;
        self.skip_ws();
        let one = |p: &mut Self| -> Result<String, ParseError> {
            let f = p.field_name()?;
            p.expect(')', "`)`")?;
            Ok(f)
        };
        Ok(match name {
            "count" => {
                self.expect(')', "`)`: count() takes no field")?;
                Agg::Count
            }
            "count_uniq" => Agg::CountUniq(one(self)?),
            "sum" => Agg::Sum(one(self)?),
            "avg" => Agg::Avg(one(self)?),
            "min" => Agg::Min(one(self)?),
            "max" => Agg::Max(one(self)?),
            "quantile" => {
                let q = self.number()?;
                if !(0.0..=1.0).contains(&q) {
                    return Err(self.error_at(start, format!("quantile {q} is not between 0 and 1")));
                }
                self.expect(',', "`,` after the quantile")?;
                Agg::Quantile(q, one(self)?)
            }
            other => {
                return Err(self.error_at(
                    start,
                    format!(
                        "unknown function `{other}` (expected count, count_uniq, sum, avg, min, max or quantile)"
                    ),
                ))
            }
        })
    }
}

/// `15m`, `1h`, `30s`, `7d`, `500ms`, `2w` as nanoseconds.
pub fn duration(w: &str) -> Option<i64> {
    let split = w.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = w.split_at(split);
    let n: i64 = n.parse().ok()?;
    let scale: i64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        "w" => 7 * 86_400_000_000_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::*;

    fn p(q: &str) -> Query {
        parse(q, 1_000_000_000_000).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn msg(cond: Cond) -> Filter {
        Filter::Field {
            field: "_msg".into(),
            cond,
        }
    }

    fn err(q: &str) -> ParseError {
        parse(q, 0).expect_err(q)
    }

    #[test]
    fn a_regex_is_checked_for_syntax_at_parse_and_for_size_when_compiled() {
        let err = parse(r#"~"(ab""#, 0).err().map(|e| e.pos);
        assert_eq!(err, Some(1));
        let q = parse(r#"~"\w{2000}\w{2000}""#, 0).unwrap_or_else(|e| panic!("{e}"));
        let e = crate::eval::Compiled::new(&q.filter)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_ref().is_some_and(|e| e.contains("size limit")),
            "{e:?}"
        );
    }

    #[test]
    fn filters() {
        assert_eq!(p("*").filter, Filter::All);
        assert_eq!(p("error").filter, msg(Cond::Word("error".into())));
        assert_eq!(
            p("10.0.0.1").filter,
            msg(Cond::Phrase(vec![
                "10".into(),
                "0".into(),
                "0".into(),
                "1".into()
            ]))
        );
        assert_eq!(
            p("\"disk  full!\"").filter,
            msg(Cond::Phrase(vec!["disk".into(), "full".into()]))
        );
        assert_eq!(p("err*").filter, msg(Cond::Prefix("err".into())));
        assert_eq!(
            p("level:ERROR").filter,
            Filter::Field {
                field: "level".into(),
                cond: Cond::Word("ERROR".into())
            }
        );
        assert_eq!(
            p("host:web-1*").filter,
            Filter::Field {
                field: "host".into(),
                cond: Cond::Prefix("web-1".into())
            }
        );
        assert_eq!(
            p("user.id:*").filter,
            Filter::Field {
                field: "user.id".into(),
                cond: Cond::Exists
            }
        );
        assert_eq!(
            p("status:>=500").filter,
            Filter::Field {
                field: "status".into(),
                cond: Cond::Range {
                    lo: Some((500.0, true)),
                    hi: None
                }
            }
        );
        assert_eq!(
            p("bytes:[100, 200)").filter,
            Filter::Field {
                field: "bytes".into(),
                cond: Cond::Range {
                    lo: Some((100.0, true)),
                    hi: Some((200.0, false))
                }
            }
        );
        assert_eq!(
            p(r#"~"time(out|d)""#).filter,
            msg(Cond::Regex("time(out|d)".into()))
        );
        assert_eq!(
            p(r#"path:~"^/api/v\d+""#).filter,
            Filter::Field {
                field: "path".into(),
                cond: Cond::Regex(r"^/api/v\d+".into())
            }
        );
        assert_eq!(
            p(r#"{service="api", env!="dev"}"#).filter,
            Filter::Stream(vec![
                LabelMatch {
                    name: "service".into(),
                    value: "api".into(),
                    negated: false
                },
                LabelMatch {
                    name: "env".into(),
                    value: "dev".into(),
                    negated: true
                },
            ])
        );
        assert_eq!(
            p("_time:[2026-11-26T00:00:00Z, 2026-11-27)").filter,
            Filter::Time {
                start: 1_795_651_200_000_000_000,
                end: 1_795_737_600_000_000_000
            }
        );
        assert_eq!(
            p("_time:15m").filter,
            Filter::Time {
                start: 1_000_000_000_000 - 900_000_000_000,
                end: 1_000_000_000_001
            }
        );
    }

    /// 30,000 ANDed words once parsed into a chain 30,000 deep, and the server
    /// died of a stack overflow walking it.
    #[test]
    fn size_and_depth_limits_hold_on_every_construct() {
        let words = |n: usize, sep: &str| vec!["a"; n].join(sep);
        let e = err(&words(30_000, " "));
        assert!(e.what.contains("more than 4096 conditions"), "{e}");
        assert!(err(&words(CONDITIONS_MAX + 1, " OR "))
            .what
            .contains("conditions"));
        // The most conditions accepted make a shallow tree: chains are balanced.
        for sep in [" ", " AND ", " OR "] {
            let q = p(&words(CONDITIONS_MAX, sep));
            assert_eq!(q.filter.depth(), 13, "{sep:?}");
        }
        // Nesting: parentheses and NOTs.
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(NESTING_MAX), 0).is_ok());
        assert!(err(&nested(NESTING_MAX + 1)).what.contains("nested deeper"));
        assert!(err(&format!("{}a", "NOT ".repeat(NESTING_MAX + 1)))
            .what
            .contains("nested deeper"));
        // A tree deep through nesting and chains at once.
        let mut q = "a".to_string();
        for _ in 0..NESTING_MAX {
            q = format!("({q}) b c d e");
        }
        let e = err(&q);
        assert!(e.what.contains("levels deep"), "{e}");
        // Pipes and lists.
        let pipes = "* | limit 5".to_string() + &" | limit 5".repeat(PIPES_MAX);
        assert!(err(&pipes).what.contains("pipes"));
        let aggs = vec!["count()"; LIST_ITEMS_MAX + 1].join(", ");
        assert!(err(&format!("* | stats {aggs}"))
            .what
            .contains("aggregates"));
        let fields = vec!["f"; LIST_ITEMS_MAX + 1].join(", ");
        assert!(err(&format!("* | fields {fields}")).what.contains("fields"));
        assert!(err(&format!("* | stats count() by ({fields})"))
            .what
            .contains("items in a list"));
        let labels = vec!["a=\"1\""; LIST_ITEMS_MAX + 1].join(", ");
        assert!(err(&format!("{{{labels}}}"))
            .what
            .contains("stream matchers"));
        let labels = vec!["a=\"1\""; LIST_ITEMS_MAX].join(", ");
        assert!(parse(&format!("{{{labels}}}"), 0).is_ok());
    }

    #[test]
    fn boolean_structure() {
        let a = || Box::new(msg(Cond::Word("a".into())));
        let b = || Box::new(msg(Cond::Word("b".into())));
        let c = || Box::new(msg(Cond::Word("c".into())));
        assert_eq!(p("a b").filter, Filter::And(a(), b()));
        assert_eq!(p("a AND b").filter, Filter::And(a(), b()));
        assert_eq!(p("a and b").filter, Filter::And(a(), b()));
        // AND binds tighter than OR.
        assert_eq!(
            p("a OR b c").filter,
            Filter::Or(a(), Box::new(Filter::And(b(), c())))
        );
        assert_eq!(
            p("(a OR b) c").filter,
            Filter::And(Box::new(Filter::Or(a(), b())), c())
        );
        assert_eq!(p("NOT a").filter, Filter::Not(a()));
        assert_eq!(p("-a").filter, Filter::Not(a()));
        assert_eq!(
            p("!a b").filter,
            Filter::And(Box::new(Filter::Not(a())), b())
        );
        assert_eq!(
            p("a -(b OR c)").filter,
            Filter::And(a(), Box::new(Filter::Not(Box::new(Filter::Or(b(), c())))))
        );
    }

    #[test]
    fn pipes() {
        assert_eq!(
            p("* | fields _time, level").pipes,
            vec![Pipe::Fields(vec!["_time".into(), "level".into()])]
        );
        assert_eq!(
            p("* | sort by (status, _time desc) desc | limit 5").pipes,
            vec![
                Pipe::Sort(vec![
                    SortKey {
                        field: "status".into(),
                        desc: true
                    },
                    SortKey {
                        field: "_time".into(),
                        desc: false
                    },
                ]),
                Pipe::Limit(5)
            ]
        );
        assert_eq!(
            p("* | stats count(), count_uniq(host), sum(bytes), avg(bytes), min(bytes), max(bytes), quantile(0.99, latency) by (level, _time:1m)").pipes,
            vec![Pipe::Stats {
                funcs: vec![
                    Agg::Count,
                    Agg::CountUniq("host".into()),
                    Agg::Sum("bytes".into()),
                    Agg::Avg("bytes".into()),
                    Agg::Min("bytes".into()),
                    Agg::Max("bytes".into()),
                    Agg::Quantile(0.99, "latency".into()),
                ],
                by: vec![GroupKey::Field("level".into()), GroupKey::TimeBucket(60_000_000_000)],
            }]
        );
        assert_eq!(
            p("* | top 3 by (host)").pipes,
            vec![Pipe::Top {
                n: 3,
                by: vec!["host".into()]
            }]
        );
        assert_eq!(
            p("* | top by (host)").pipes,
            vec![Pipe::Top {
                n: 10,
                by: vec!["host".into()]
            }]
        );
        assert_eq!(
            p("* | uniq by (host, level)").pipes,
            vec![Pipe::Uniq(vec!["host".into(), "level".into()])]
        );
    }

    #[test]
    fn errors_say_where_and_what() {
        let e = err("");
        assert!(e.what.contains("a filter"), "{e}");
        let e = err("error AND");
        assert_eq!(e.pos, 9, "{e}");
        assert!(e.what.contains("expected a filter"), "{e}");
        let e = err("(a OR b");
        assert!(e.what.contains("`)`"), "{e}");
        let e = err("a )");
        assert_eq!(e.pos, 2, "{e}");
        let e = err("\"unterminated");
        assert_eq!(e.pos, 0);
        assert!(e.what.contains("unterminated"));
        let e = err("status:>abc");
        assert_eq!(e.pos, 8, "{e}");
        assert!(e.what.contains("number"), "{e}");
        let e = err("* | frobnicate");
        assert_eq!(e.pos, 4, "{e}");
        assert!(e.what.contains("unknown pipe"), "{e}");
        let e = err("* | stats median(x)");
        assert!(e.what.contains("unknown function"), "{e}");
        let e = err("_time:[yesterday, now)");
        assert!(e.what.contains("RFC 3339"), "{e}");
        let e = err("_time:15 minutes");
        assert!(e.what.contains("duration"), "{e}");
        let e = err("~\"(unclosed\"");
        assert!(e.what.contains("regular expression"), "{e}");
        let e = err("a*b");
        assert_eq!(e.pos, 1, "{e}");
        let e = err("...");
        assert!(e.what.contains("no letters or digits"), "{e}");
        let e = err("é ü )");
        assert_eq!((e.pos, e.column), (6, 5), "{e}");
        let deep = "(".repeat(100) + "a" + &")".repeat(100);
        assert!(err(&deep).what.contains("nested deeper"));
        let e = err("* | stats quantile(2, x)");
        assert!(e.what.contains("between 0 and 1"), "{e}");
        assert!(err(&"a ".repeat(40_000)).what.contains("longer than"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = parse(&s, 0);
        }

        #[test]
        fn never_panics_on_query_like_text(s in "[a-z*:()|\"~{}=!<>\\[\\], -]{0,40}") {
            let _ = parse(&s, 0);
        }
    }
}
