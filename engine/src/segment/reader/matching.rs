//! Conditions on `_msg` decided on the template ids and variable ordinals of
//! a `_msg` chunk, without rebuilding text: the templates' vocabulary, one
//! matcher per query word, phrase, prefix or substring, and the row marking.

use roaring::RoaringBitmap;

use super::super::index::{decode_templates, Want};
use super::super::layout::ColumnKind;
use super::super::message::{self, Template};
use super::super::SegmentError;
use super::lookup::{int_prefix_ranges, successor};
use super::{present_rows, SegmentReader};

/// The words of a segment's templates: each distinct normalized word once, the
/// templates holding it, and each template as a sequence of word ids (`None` for a
/// placeholder). Built once per open segment, so a query's word, phrase and prefix
/// conditions cost a hash lookup instead of tokenizing every template.
#[derive(Debug, Default)]
pub(super) struct Vocab {
    pub(super) ids: rustc_hash::FxHashMap<Box<str>, u32>,
    /// Per word id, its templates (increasing, distinct).
    pub(super) templates: Vec<Vec<u32>>,
    /// Per template, its token sequence.
    seqs: Vec<Vec<Option<u32>>>,
}

impl Vocab {
    pub(super) fn build(templates: &[Template]) -> Vocab {
        let mut v = Vocab::default();
        for (t, tpl) in templates.iter().enumerate() {
            let mut seq = Vec::new();
            for (i, p) in tpl.pieces.iter().enumerate() {
                for w in crate::token::tokens(p) {
                    let norm = crate::token::normalize(w);
                    let id = match v.ids.get(norm.as_ref()) {
                        Some(id) => *id,
                        None => {
                            let id = v.templates.len() as u32;
                            v.ids.insert(norm.into(), id);
                            v.templates.push(Vec::new());
                            id
                        }
                    };
                    if let Some(list) = v.templates.get_mut(id as usize) {
                        if list.last() != Some(&(t as u32)) {
                            list.push(t as u32);
                        }
                    }
                    seq.push(Some(id));
                }
                if i < tpl.slots.len() {
                    seq.push(None);
                }
            }
            v.seqs.push(seq);
        }
        v
    }

    /// A per-template flag set from template ids.
    pub(super) fn set(&self, ids: impl IntoIterator<Item = u32>) -> Vec<bool> {
        let mut set = vec![false; self.seqs.len()];
        for t in ids {
            if let Some(x) = set.get_mut(t as usize) {
                *x = true;
            }
        }
        set
    }
}

/// How one query word is checked against a row's template id and ordinals.
#[derive(Debug)]
pub(super) enum Matcher {
    /// The word is not in the segment.
    Never,
    /// A digit-free word: the templates containing it.
    Templates(Vec<bool>),
    /// A canonical integer: its ordinal.
    Int(u32),
    /// Another variable: the ordinals of its spellings.
    Str(std::ops::Range<u32>),
    /// Tokens containing one of some strings: the templates with such a word, and
    /// the integer and string ordinals of such tokens.
    Contains {
        templates: Vec<bool>,
        ints: RoaringBitmap,
        strs: RoaringBitmap,
    },
    /// A prefix: templates with a word starting with it, integer ordinal ranges,
    /// the string-variable ordinal range.
    Prefix {
        templates: Vec<bool>,
        ints: Vec<std::ops::Range<u32>>,
        strs: std::ops::Range<u32>,
    },
}

/// How one query condition is checked against the tokens of a time run (see
/// [`message`]): on the run's text, rebuilt.
#[derive(Debug)]
pub(super) enum TokenTest {
    /// No token of a time run can match (a phrase of template words: a run's
    /// tokens all have digits; or a word that is not in the segment).
    No,
    /// A token equals this (normalized).
    Word(String),
    /// A token starts with this (normalized).
    Prefix(String),
    /// A token holds one of these (ASCII-lower-cased).
    Contains(Vec<Vec<u8>>),
}

impl TokenTest {
    /// Whether a token of `run` (a time run's text) passes.
    pub(super) fn run(&self, run: &str) -> bool {
        let mut toks = crate::token::tokens(run);
        match self {
            TokenTest::No => false,
            TokenTest::Word(w) => toks.any(|t| crate::token::normalize(t) == w.as_str()),
            TokenTest::Prefix(p) => {
                toks.any(|t| crate::token::normalize(t).starts_with(p.as_str()))
            }
            TokenTest::Contains(subs) => toks.any(|t| {
                let folded: Vec<u8> = t.bytes().map(|b| b.to_ascii_lowercase()).collect();
                subs.iter()
                    .any(|s| memchr::memmem::find(&folded, s).is_some())
            }),
        }
    }
}

/// Predicates prepared for one segment ([`SegmentReader::msg_matchers`]): per
/// predicate, how it is checked on ordinals and on time runs.
#[derive(Debug)]
pub struct MsgMatchers(Vec<Matcher>, Vec<TokenTest>);

impl MsgMatchers {
    /// Whether predicate `i` can match no row of the segment (its words are not in
    /// the segment): then no index lookup is needed to know.
    pub fn never(&self, i: usize) -> bool {
        matches!(self.0.get(i), Some(Matcher::Never))
    }
}

/// A condition on `_msg` checked on template ids and ordinals
/// ([`SegmentReader::msg_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgPredicate<'a> {
    /// Contains this token (ASCII case ignored).
    Word(&'a str),
    /// Contains a token starting with this (ASCII case ignored).
    Prefix(&'a str),
    /// Contains these tokens consecutively (ASCII case ignored), every one of them a
    /// template word ([`is_template_word`]): decided by the template alone.
    Phrase(&'a [String]),
    /// Has a token containing one of these strings (case as given). A prefilter:
    /// for a regex, strings every match must hold inside one token.
    Contains(&'a [String]),
}

/// Whether `tok` (one token) is stored in templates rather than as a variable: a
/// phrase of such tokens is decided per template, without reading variables.
pub fn is_template_word(tok: &str) -> bool {
    !message::is_variable(tok)
}

impl Matcher {
    /// Whether every row with template `t` matches, whatever its variables.
    pub(super) fn template(&self, t: u32) -> bool {
        match self {
            Matcher::Templates(set)
            | Matcher::Prefix { templates: set, .. }
            | Matcher::Contains { templates: set, .. } => {
                set.get(t as usize).copied().unwrap_or(false)
            }
            Matcher::Never | Matcher::Int(_) | Matcher::Str(_) => false,
        }
    }

    /// Whether a row with a variable `o` in an integer (`int`) or string placeholder
    /// matches.
    pub(super) fn ordinal(&self, int: bool, o: u32) -> bool {
        match self {
            Matcher::Never | Matcher::Templates(_) => false,
            Matcher::Int(x) => int && o == *x,
            Matcher::Str(r) => !int && r.contains(&o),
            Matcher::Contains { ints, strs, .. } => {
                if int {
                    ints.contains(o)
                } else {
                    strs.contains(o)
                }
            }
            Matcher::Prefix { ints, strs, .. } => {
                if int {
                    ints.iter().any(|r| r.contains(&o))
                } else {
                    strs.contains(&o)
                }
            }
        }
    }

    /// Whether variables in an integer (`int`) or string placeholder can match.
    pub(super) fn wants(&self, int: bool) -> bool {
        match self {
            Matcher::Never | Matcher::Templates(_) => false,
            Matcher::Int(_) => int,
            Matcher::Str(_) => !int,
            Matcher::Contains { ints, strs, .. } => {
                if int {
                    !ints.is_empty()
                } else {
                    !strs.is_empty()
                }
            }
            Matcher::Prefix { ints, strs, .. } => {
                if int {
                    !ints.is_empty()
                } else {
                    !strs.is_empty()
                }
            }
        }
    }

    /// Whether variables can decide a row (else templates alone do).
    pub(super) fn needs_ordinals(&self) -> bool {
        !matches!(self, Matcher::Never | Matcher::Templates(_))
    }
}

/// Marks, per matcher, the block rows whose template or variables match.
pub(super) struct MarkRows<'a> {
    matchers: &'a [Matcher],
    tests: &'a [TokenTest],
    /// The row's template id, per chunk row (to find a time run's format).
    row_templates: Vec<u32>,
    run: String,
    templates: &'a [Template],
    /// Block row of each chunk row.
    block_rows: &'a [usize],
    out: &'a mut [Vec<bool>],
    /// The matchers that look at the current placeholder's variables.
    slot: Vec<usize>,
    /// Whether the current placeholder is an integer one.
    int: bool,
}

impl MarkRows<'_> {
    pub(super) fn mark(&mut self, i: usize, m: usize) {
        if let Some(row) = self.block_rows.get(i) {
            if let Some(x) = self.out.get_mut(m).and_then(|o| o.get_mut(*row)) {
                *x = true;
            }
        }
    }
}

impl message::ChunkVisitor for MarkRows<'_> {
    fn row(&mut self, i: usize, t: u32) {
        self.row_templates.push(t);
        for m in 0..self.matchers.len() {
            if self.matchers.get(m).is_some_and(|x| x.template(t)) {
                self.mark(i, m);
            }
        }
    }

    fn time(&mut self, i: usize, slot: usize, value: u64) {
        if self.tests.iter().all(|t| matches!(t, TokenTest::No)) {
            return;
        }
        let t = self.row_templates.get(i).copied().unwrap_or(u32::MAX);
        let Some(message::Slot::Time(f)) = self
            .templates
            .get(t as usize)
            .and_then(|tpl| tpl.slots.get(slot))
        else {
            return;
        };
        let mut run = std::mem::take(&mut self.run);
        run.clear();
        if f.render(value, &mut run).is_some() {
            for m in 0..self.tests.len() {
                if self.tests.get(m).is_some_and(|x| x.run(&run)) {
                    self.mark(i, m);
                }
            }
        }
        self.run = run;
    }

    fn slot(&mut self, t: u32, slot: usize) -> bool {
        let int = self
            .templates
            .get(t as usize)
            .and_then(|tpl| tpl.slots.get(slot))
            .is_some_and(|s| *s == message::Slot::Int);
        self.slot.clear();
        for (m, x) in self.matchers.iter().enumerate() {
            if x.wants(int) {
                self.slot.push(m);
            }
        }
        self.int = int;
        !self.slot.is_empty()
    }

    fn ordinal(&mut self, i: usize, o: u32) {
        for k in 0..self.slot.len() {
            let Some(&m) = self.slot.get(k) else { continue };
            if self.matchers.get(m).is_some_and(|x| x.ordinal(self.int, o)) {
                self.mark(i, m);
            }
        }
    }
}

impl SegmentReader {
    /// The segment's templates, decoded on first use.
    pub(super) fn templates(&self) -> Result<&[Template], SegmentError> {
        Ok(&self.templates_and_blocks()?.0)
    }

    /// Whether the segment's words are found through its templates (format
    /// version 4 on), not in the term dictionary.
    pub(super) fn words_in_templates(&self) -> bool {
        self.version >= super::super::layout::WORDS_IN_TEMPLATES
    }

    /// The blocks holding any of the templates `set` marks (format version 4 on).
    pub(super) fn template_blocks(&self, set: &[bool]) -> Result<RoaringBitmap, SegmentError> {
        let (_, posts) = self.templates_and_blocks()?;
        let mut out = RoaringBitmap::new();
        for (p, x) in posts.iter().zip(set) {
            if *x {
                out |= p;
            }
        }
        Ok(out)
    }

    fn templates_and_blocks(&self) -> Result<&(Vec<Template>, Vec<RoaringBitmap>), SegmentError> {
        if let Some(t) = self.templates.get() {
            return Ok(t);
        }
        let decoded = match &self.dir.templates {
            None => (Vec::new(), Vec::new()),
            Some(fr) => {
                let bytes = self.frame(fr, "templates")?;
                decode_templates(
                    &bytes,
                    self.dir.template_count,
                    self.words_in_templates(),
                    self.single(),
                )
                .map_err(|e| self.corrupt_at(fr, format!("templates: {e}")))?
            }
        };
        Ok(self.templates.get_or_init(|| decoded))
    }

    /// The templates' words, indexed on first use.
    pub(super) fn vocab(&self) -> Result<&Vocab, SegmentError> {
        if let Some(v) = self.vocab.get() {
            return Ok(v);
        }
        let v = Vocab::build(self.templates()?);
        Ok(self.vocab.get_or_init(|| v))
    }

    /// How `word` is recognised in this segment's rows: the same split into
    /// template words and variables the writer makes ([`message::split`]).
    pub(super) fn matcher(&self, word: &str) -> Result<Matcher, SegmentError> {
        let mut toks = crate::token::tokens(word);
        if toks.next() != Some(word) || toks.next().is_some() {
            return Ok(Matcher::Never);
        }
        let norm = crate::token::normalize(word);
        if !message::is_variable(word) {
            let v = self.vocab()?;
            return Ok(match v.ids.get(norm.as_ref()) {
                Some(id) => Matcher::Templates(
                    v.set(v.templates.get(*id as usize).into_iter().flatten().copied()),
                ),
                None => Matcher::Never,
            });
        }
        let per = self.dir.per_block;
        if let Some(v) = message::canonical_int(word) {
            let b = self
                .dir
                .ints
                .partition_point(|t| t.0 <= v)
                .saturating_sub(1);
            if self.dir.ints.is_empty() {
                return Ok(Matcher::Never);
            }
            return Ok(match self.int_values(b)?.binary_search(&v) {
                Ok(i) => Matcher::Int((b * per + i) as u32),
                Err(_) => Matcher::Never,
            });
        }
        // The word's spellings are the consecutive keys in [key, key 0x01).
        let key = super::super::msg_term(word);
        let mut hi_key = key.clone();
        hi_key.push(1);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= key.as_slice())
            .saturating_sub(1);
        let (mut lo, mut hi) = (u32::MAX, 0u32);
        for b in first..self.dir.terms.len() {
            if self
                .dir
                .terms
                .get(b)
                .is_some_and(|t| t.0.as_slice() >= hi_key.as_slice())
            {
                break;
            }
            for (i, t) in self.term_texts(b)?.iter().enumerate() {
                let Some(t) = t.as_deref() else { continue };
                if crate::token::normalize(t) == norm {
                    let o = (b * per + i) as u32;
                    lo = lo.min(o);
                    hi = hi.max(o + 1);
                }
            }
        }
        Ok(if lo < hi {
            Matcher::Str(lo..hi)
        } else {
            Matcher::Never
        })
    }

    /// How a phrase of template words is recognised: the templates in whose token
    /// sequence (words, with each placeholder one token) the phrase's tokens are
    /// consecutive. A variable can never equal a template word, so this is exact.
    pub(super) fn phrase_matcher(&self, toks: &[String]) -> Result<Matcher, SegmentError> {
        if toks.is_empty() || !toks.iter().all(|t| is_template_word(t)) {
            return Err(SegmentError::NotFound(format!(
                "phrase {toks:?} is not made of template words only"
            )));
        }
        let v = self.vocab()?;
        let mut ids = Vec::with_capacity(toks.len());
        for t in toks {
            match v.ids.get(crate::token::normalize(t).as_ref()) {
                Some(id) => ids.push(Some(*id)),
                None => return Ok(Matcher::Never),
            }
        }
        // Candidates: the templates holding the first word; then adjacency.
        let first = ids.first().copied().flatten().unwrap_or(u32::MAX);
        let hits = v
            .templates
            .get(first as usize)
            .into_iter()
            .flatten()
            .copied()
            .filter(|t| {
                v.seqs
                    .get(*t as usize)
                    .is_some_and(|seq| seq.windows(ids.len()).any(|w| w == ids.as_slice()))
            });
        let set = v.set(hits);
        Ok(if set.contains(&true) {
            Matcher::Templates(set)
        } else {
            Matcher::Never
        })
    }

    /// How "a token contains one of `subs`" is recognised: by the templates' words
    /// and the dictionary's token texts, each checked once.
    pub(super) fn contains_matcher(&self, subs: &[String]) -> Result<Matcher, SegmentError> {
        // Compared with ASCII case folded: the dictionary keeps a template word's
        // text lower-cased (its case lives in the template), so an exact-case
        // check could miss it. Folding only widens the match, and callers verify
        // the rows they get (a regex is run on each).
        let folded: Vec<Vec<u8>> = subs
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.bytes().map(|b| b.to_ascii_lowercase()).collect())
            .collect();
        let finders: Vec<memchr::memmem::Finder<'_>> = folded
            .iter()
            .map(|s| memchr::memmem::Finder::new(s.as_slice()))
            .collect();
        let buf = std::cell::RefCell::new(Vec::<u8>::new());
        let hit = |t: &str| {
            let mut b = buf.borrow_mut();
            b.clear();
            b.extend(t.bytes().map(|c| c.to_ascii_lowercase()));
            finders.iter().any(|f| f.find(&b).is_some())
        };
        let templates: Vec<bool> = self
            .templates()?
            .iter()
            .map(|t| t.words().any(&hit))
            .collect();
        let per = self.dir.per_block;
        let mut strs = RoaringBitmap::new();
        for b in 0..self.dir.terms.len() {
            for (i, t) in self.term_texts(b)?.iter().enumerate() {
                if t.as_deref().is_some_and(&hit) {
                    strs.insert((b * per + i) as u32);
                }
            }
        }
        // Integer tokens are digits only: only an all-digit string can be in one.
        let mut ints = RoaringBitmap::new();
        if subs
            .iter()
            .any(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        {
            let mut text = String::new();
            for b in 0..self.dir.ints.len() {
                for (i, v) in self.int_values(b)?.iter().enumerate() {
                    text.clear();
                    use std::fmt::Write as _;
                    let _ = write!(text, "{v}");
                    if hit(&text) {
                        ints.insert((b * per + i) as u32);
                    }
                }
            }
        }
        Ok(
            if !templates.contains(&true) && strs.is_empty() && ints.is_empty() {
                Matcher::Never
            } else {
                Matcher::Contains {
                    templates,
                    ints,
                    strs,
                }
            },
        )
    }

    /// The blocks that may hold a row matching prepared predicate `i`: the union of
    /// the postings of the dictionary entries it matches. `None` when the predicate
    /// does not narrow blocks this way (only [`MsgPredicate::Contains`] does).
    pub fn matcher_blocks(
        &self,
        matchers: &MsgMatchers,
        i: usize,
    ) -> Result<Option<RoaringBitmap>, SegmentError> {
        let Some(m) = matchers.0.get(i) else {
            return Ok(None);
        };
        let (ints, strs, templates) = match m {
            Matcher::Never => return Ok(Some(RoaringBitmap::new())),
            Matcher::Contains {
                ints,
                strs,
                templates,
            } => (ints, strs, templates),
            _ => return Ok(None),
        };
        // Up to format version 3 every matched template word is itself a
        // dictionary entry (in `strs`), so the entries' postings cover the template
        // matches too; since, the templates' own postings do.
        let per = self.dir.per_block as u32;
        let mut out = if self.words_in_templates() {
            self.template_blocks(templates)?
        } else {
            RoaringBitmap::new()
        };
        let blocks = |set: &RoaringBitmap| {
            let mut v: Vec<u32> = set.iter().map(|o| o / per).collect();
            v.dedup();
            v
        };
        // Entry j of dictionary block b is taken when its ordinal is in the set.
        let pick = |set: &RoaringBitmap, b: u32, j: usize| {
            if set.contains(b * per + j as u32) {
                Want::Take
            } else {
                Want::Skip
            }
        };
        for b in blocks(strs) {
            self.scan_terms(b as usize, |j, _| pick(strs, b, j), |_, bm| out |= bm)?;
        }
        for b in blocks(ints) {
            self.scan_ints(b as usize, |j, _| pick(ints, b, j), |_, bm| out |= bm)?;
        }
        Ok(Some(out))
    }

    /// How a prefix is recognised in this segment's rows.
    pub(super) fn prefix_matcher(&self, prefix: &str) -> Result<Matcher, SegmentError> {
        let norm = crate::token::normalize(prefix);
        let v = self.vocab()?;
        let templates = v.set(
            v.ids
                .iter()
                .filter(|(w, _)| w.starts_with(norm.as_ref()))
                .flat_map(|(_, id)| v.templates.get(*id as usize).into_iter().flatten())
                .copied(),
        );
        let key = super::super::msg_term(prefix);
        let strs = self.term_ordinals(&key, successor(&key).as_deref())?;
        let mut ints = Vec::new();
        for (lo, hi) in int_prefix_ranges(norm.as_bytes()) {
            let r = self.int_ordinals(lo, hi)?;
            if !r.is_empty() {
                ints.push(r);
            }
        }
        Ok(Matcher::Prefix {
            templates,
            ints,
            strs,
        })
    }

    /// For each predicate, which rows of `block` satisfy it (`out[p][row]`), decided
    /// on the `_msg` chunk's template ids and ordinals without rebuilding any text.
    /// Same answers as the tokenizer on the text (property-tested through the query
    /// executor against a full scan).
    pub fn msg_rows(
        &self,
        block: usize,
        preds: &[MsgPredicate<'_>],
    ) -> Result<Vec<Vec<bool>>, SegmentError> {
        let m = self.msg_matchers(preds)?;
        self.msg_rows_with(block, &m)
    }

    /// Prepares predicates for [`Self::msg_rows_with`] (once per segment: it reads the
    /// templates and dictionary blocks).
    pub fn msg_matchers(&self, preds: &[MsgPredicate<'_>]) -> Result<MsgMatchers, SegmentError> {
        let matchers = preds
            .iter()
            .map(|p| match p {
                MsgPredicate::Word(w) => self.matcher(w),
                MsgPredicate::Prefix(w) => self.prefix_matcher(w),
                MsgPredicate::Phrase(toks) => self.phrase_matcher(toks),
                MsgPredicate::Contains(subs) => self.contains_matcher(subs),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A time run's tokens are dictionary entries too: a condition none of
        // whose entries is in the segment cannot match one.
        let tests = preds
            .iter()
            .zip(&matchers)
            .map(|(p, m)| match (p, m) {
                (_, Matcher::Never | Matcher::Templates(_)) => TokenTest::No,
                (MsgPredicate::Word(w), _) => TokenTest::Word(crate::token::normalize(w).into()),
                (MsgPredicate::Prefix(w), _) => {
                    TokenTest::Prefix(crate::token::normalize(w).into())
                }
                (MsgPredicate::Contains(subs), _) => TokenTest::Contains(
                    subs.iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.bytes().map(|b| b.to_ascii_lowercase()).collect())
                        .collect(),
                ),
                (MsgPredicate::Phrase(_), _) => TokenTest::No,
            })
            .collect();
        Ok(MsgMatchers(matchers, tests))
    }

    /// [`Self::msg_rows`] with prepared predicates.
    pub fn msg_rows_with(
        &self,
        block: usize,
        matchers: &MsgMatchers,
    ) -> Result<Vec<Vec<bool>>, SegmentError> {
        let tests = &matchers.1;
        let matchers = &matchers.0;
        let rows = self.footer.blocks.get(block).map_or(0, |b| b.rows as usize);
        let mut out = vec![vec![false; rows]; matchers.len()];
        if matchers.iter().all(|m| matches!(m, Matcher::Never)) {
            return Ok(out);
        }
        let Some(msg_col) = self.column(ColumnKind::Msg, "_msg") else {
            return Ok(out);
        };
        let Some(c) = self.chunk(msg_col, block)? else {
            return Ok(out);
        };
        let templates = self.templates()?;
        let block_rows = present_rows(&c.present, c.n);
        let ordinals = matchers.iter().any(Matcher::needs_ordinals);
        let mut v = MarkRows {
            matchers,
            tests,
            row_templates: Vec::with_capacity(c.n),
            run: String::new(),
            templates,
            block_rows: &block_rows,
            out: &mut out,
            slot: Vec::new(),
            int: false,
        };
        message::scan_chunk(&c.bytes, c.n, templates, ordinals, &mut v).map_err(|e| {
            SegmentError::Corrupt {
                path: self.path.clone(),
                offset: c.offset,
                what: e.what,
            }
        })?;
        Ok(out)
    }

    /// Rows (as `(block, row in block)`) whose `_msg` contains every one of `words` as
    /// a token (ASCII case ignored; a "word" that is not a single token matches
    /// nothing). An index intersection picks candidate blocks; each candidate row is
    /// then checked on its template id and variable ordinals, without rebuilding the
    /// text. Newest blocks first, newest rows first within a block.
    pub fn search_words(&self, words: &[&str]) -> Result<Vec<(usize, usize)>, SegmentError> {
        let mut candidates: Option<RoaringBitmap> = None;
        for w in words {
            let bm = self.lookup(&super::super::msg_term(w))?;
            candidates = Some(match candidates {
                None => bm,
                Some(c) => c & bm,
            });
        }
        let Some(candidates) = candidates.filter(|c| !c.is_empty()) else {
            return Ok(Vec::new());
        };
        let preds: Vec<MsgPredicate<'_>> = words.iter().map(|w| MsgPredicate::Word(w)).collect();
        let matchers = self.msg_matchers(&preds)?;
        let mut out = Vec::new();
        for block in candidates.iter().rev() {
            let hits = self.msg_rows_with(block as usize, &matchers)?;
            let rows = self
                .footer
                .blocks
                .get(block as usize)
                .map_or(0, |b| b.rows as usize);
            for row in (0..rows).rev() {
                if hits.iter().all(|h| h.get(row) == Some(&true)) {
                    out.push((block as usize, row));
                }
            }
        }
        Ok(out)
    }
}
