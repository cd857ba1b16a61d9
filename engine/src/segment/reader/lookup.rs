//! Index lookups: term and integer ranges in the index's sorted dictionary
//! blocks, their postings (blocks) and ordinals, and the dictionary texts and
//! values decoded on demand.

use roaring::RoaringBitmap;

use super::super::index::{scan_int_block, scan_term_block, var_text, FrameRef, Want, NS_MSG};
use super::super::message;
use super::super::SegmentError;
use super::SegmentReader;

/// Bytes of a segment's index section by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSizes {
    /// The directory frame.
    pub directory: u64,
    /// Term blocks (words, string variables, field pairs, with postings).
    pub terms: u64,
    /// Integer blocks (integer variables, with postings).
    pub integers: u64,
    /// The templates frame.
    pub templates: u64,
    /// Number of templates.
    pub template_count: u64,
}

/// The smallest key above every key that starts with `prefix` (`None`: no bound).
pub(super) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut hi = prefix.to_vec();
    while let Some(last) = hi.pop() {
        if last < u8::MAX {
            hi.push(last + 1);
            return Some(hi);
        }
    }
    None
}

/// The value ranges of canonical integers whose decimal text starts with `tok`.
pub(super) fn int_prefix_ranges(tok: &[u8]) -> Vec<(u64, u64)> {
    if tok.is_empty() {
        return vec![(0, u64::MAX)];
    }
    if !tok.iter().all(u8::is_ascii_digit) || tok.len() > 19 {
        return Vec::new();
    }
    if tok.first() == Some(&b'0') {
        return if tok.len() == 1 {
            vec![(0, 0)]
        } else {
            Vec::new()
        };
    }
    let Some(p) = std::str::from_utf8(tok)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut scale = 1u64;
    for _ in tok.len()..=19 {
        let (Some(lo), Some(next)) = (p.checked_mul(scale), (p + 1).checked_mul(scale)) else {
            break;
        };
        out.push((lo, next - 1));
        let Some(s) = scale.checked_mul(10) else {
            break;
        };
        scale = s;
    }
    out
}

impl SegmentReader {
    /// Whether the segment has one block (its index then stores no postings).
    pub(super) fn single(&self) -> bool {
        self.footer.blocks.len() <= 1
    }

    /// Entries block `i` of a dictionary with `blocks` blocks must hold.
    pub(super) fn expected(&self, i: usize, blocks: usize) -> std::ops::RangeInclusive<usize> {
        if i + 1 == blocks {
            1..=self.dir.per_block
        } else {
            self.dir.per_block..=self.dir.per_block
        }
    }

    /// Walks term block `i` (see [`scan_term_block`]).
    pub(super) fn scan_terms(
        &self,
        i: usize,
        want: impl FnMut(usize, &[u8]) -> Want,
        take: impl FnMut(usize, RoaringBitmap),
    ) -> Result<(), SegmentError> {
        let Some((_, fr)) = self.dir.terms.get(i) else {
            return Ok(());
        };
        let what = format!("index term block {i}");
        let bytes = self.frame(fr, &what)?;
        let expect = self.expected(i, self.dir.terms.len());
        scan_term_block(&bytes, expect, self.single(), want, take)
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    /// Walks integer block `i` (see [`scan_int_block`]).
    pub(super) fn scan_ints(
        &self,
        i: usize,
        want: impl FnMut(usize, u64) -> Want,
        take: impl FnMut(usize, RoaringBitmap),
    ) -> Result<(), SegmentError> {
        let Some((_, fr)) = self.dir.ints.get(i) else {
            return Ok(());
        };
        let what = format!("index integer block {i}");
        let bytes = self.frame(fr, &what)?;
        let expect = self.expected(i, self.dir.ints.len());
        scan_int_block(&bytes, expect, self.single(), want, take)
            .map_err(|e| self.corrupt_at(fr, format!("{what}: {e}")))
    }

    /// Union of the postings of every term key in `[lo, hi)` (`hi = None`: no bound).
    pub(super) fn term_range(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
    ) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let below = |k: &[u8]| hi.is_none_or(|h| k < h);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= lo)
            .saturating_sub(1);
        for i in first..self.dir.terms.len() {
            if self.dir.terms.get(i).is_some_and(|t| !below(&t.0)) {
                break;
            }
            self.scan_terms(
                i,
                |_, k| {
                    if k < lo {
                        Want::Skip
                    } else if below(k) {
                        Want::Take
                    } else {
                        Want::Stop
                    }
                },
                |_, bm| out |= bm,
            )?;
        }
        Ok(out)
    }

    /// Union of the postings of every integer variable in `[lo, hi]`.
    pub(super) fn int_range(&self, lo: u64, hi: u64) -> Result<RoaringBitmap, SegmentError> {
        let mut out = RoaringBitmap::new();
        let first = self
            .dir
            .ints
            .partition_point(|t| t.0 <= lo)
            .saturating_sub(1);
        for i in first..self.dir.ints.len() {
            if self.dir.ints.get(i).is_some_and(|t| t.0 > hi) {
                break;
            }
            self.scan_ints(
                i,
                |_, v| {
                    if v < lo {
                        Want::Skip
                    } else if v <= hi {
                        Want::Take
                    } else {
                        Want::Stop
                    }
                },
                |_, bm| out |= bm,
            )?;
        }
        Ok(out)
    }

    /// Blocks that contain `term` (an index key from [`super::super::msg_term`] or
    /// [`super::field_term`]); empty when none does.
    pub fn lookup(&self, term: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        if let Some(tok) = term.strip_prefix(&[NS_MSG]) {
            if tok.is_empty() {
                return Ok(RoaringBitmap::new());
            }
            if let Some(v) = std::str::from_utf8(tok)
                .ok()
                .and_then(message::canonical_int)
            {
                return self.int_range(v, v);
            }
            // A word (no digit) is in templates: since format version 4 found
            // through them.
            if self.words_in_templates() && !tok.iter().any(u8::is_ascii_digit) {
                if let Ok(word) = std::str::from_utf8(tok) {
                    if !message::is_variable(word) {
                        let v = self.vocab()?;
                        let set = v.set(
                            v.ids
                                .get(word)
                                .and_then(|id| v.templates.get(*id as usize))
                                .into_iter()
                                .flatten()
                                .copied(),
                        );
                        return self.template_blocks(&set);
                    }
                }
            }
            // The word and its other spellings (`key 0x00 case-mask`).
            let mut hi = term.to_vec();
            hi.push(1);
            return self.term_range(term, Some(&hi));
        }
        let mut hi = term.to_vec();
        hi.push(0);
        self.term_range(term, Some(&hi))
    }

    /// Blocks that contain any term starting with `prefix`.
    pub fn lookup_prefix(&self, prefix: &[u8]) -> Result<RoaringBitmap, SegmentError> {
        let hi = successor(prefix);
        let mut out = self.term_range(prefix, hi.as_deref())?;
        if let Some(tok) = prefix.strip_prefix(&[NS_MSG]) {
            for (lo, hi) in int_prefix_ranges(tok) {
                out |= self.int_range(lo, hi)?;
            }
            if self.words_in_templates() {
                out |= self.word_blocks(|w| w.as_bytes().starts_with(tok))?;
            }
        }
        Ok(out)
    }

    /// The blocks holding a template with a word (normalized) that `pick` takes.
    fn word_blocks(&self, pick: impl Fn(&str) -> bool) -> Result<RoaringBitmap, SegmentError> {
        let v = self.vocab()?;
        let set = v.set(
            v.ids
                .iter()
                .filter(|(w, _)| pick(w))
                .flat_map(|(_, id)| v.templates.get(*id as usize).into_iter().flatten())
                .copied(),
        );
        self.template_blocks(&set)
    }

    /// The `_msg` texts of term block `i` (`None` for field pairs).
    pub(super) fn term_texts(&self, i: usize) -> Result<&[Option<Box<str>>], SegmentError> {
        let cell = self
            .term_texts
            .get(i)
            .ok_or_else(|| SegmentError::NotFound(format!("term block {i}")))?;
        if let Some(t) = cell.get() {
            return Ok(t);
        }
        let mut texts = Vec::with_capacity(self.dir.per_block);
        self.scan_terms(
            i,
            |_, k| {
                texts.push(var_text(k).map(String::into_boxed_str));
                Want::Skip
            },
            |_, _| {},
        )?;
        Ok(cell.get_or_init(|| texts))
    }

    /// The values of integer block `i`.
    pub(super) fn int_values(&self, i: usize) -> Result<&[u64], SegmentError> {
        let cell = self
            .int_values
            .get(i)
            .ok_or_else(|| SegmentError::NotFound(format!("integer block {i}")))?;
        if let Some(v) = cell.get() {
            return Ok(v);
        }
        let mut values = Vec::with_capacity(self.dir.per_block);
        self.scan_ints(
            i,
            |_, v| {
                values.push(v);
                Want::Skip
            },
            |_, _| {},
        )?;
        Ok(cell.get_or_init(|| values))
    }

    /// The text of string variable ordinal `o`.
    pub(super) fn term_text(&self, o: u32) -> Result<&str, SegmentError> {
        let per = self.dir.per_block;
        self.term_texts(o as usize / per)?
            .get(o as usize % per)
            .and_then(|t| t.as_deref())
            .ok_or_else(|| SegmentError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: format!("string ordinal {o} is not a message token"),
            })
    }

    /// The value of integer ordinal `o`.
    pub(super) fn int_value(&self, o: u32) -> Result<u64, SegmentError> {
        let per = self.dir.per_block;
        self.int_values(o as usize / per)?
            .get(o as usize % per)
            .copied()
            .ok_or_else(|| SegmentError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                what: format!("integer ordinal {o} outside the dictionary"),
            })
    }

    /// Ordinals of the term keys in `[lo, hi)`.
    pub(super) fn term_ordinals(
        &self,
        lo: &[u8],
        hi: Option<&[u8]>,
    ) -> Result<std::ops::Range<u32>, SegmentError> {
        let per = self.dir.per_block;
        let below = |k: &[u8]| hi.is_none_or(|h| k < h);
        let first = self
            .dir
            .terms
            .partition_point(|t| t.0.as_slice() <= lo)
            .saturating_sub(1);
        let (mut a, mut b) = (u32::MAX, 0u32);
        for i in first..self.dir.terms.len() {
            if self.dir.terms.get(i).is_some_and(|t| !below(&t.0)) {
                break;
            }
            self.scan_terms(
                i,
                |j, k| {
                    if k < lo {
                        return Want::Skip;
                    }
                    if !below(k) {
                        return Want::Stop;
                    }
                    let o = (i * per + j) as u32;
                    a = a.min(o);
                    b = b.max(o + 1);
                    Want::Skip
                },
                |_, _| {},
            )?;
        }
        Ok(if a < b { a..b } else { 0..0 })
    }

    /// Ordinals of the integer values in `[lo, hi]`.
    pub(super) fn int_ordinals(
        &self,
        lo: u64,
        hi: u64,
    ) -> Result<std::ops::Range<u32>, SegmentError> {
        let per = self.dir.per_block;
        let first = self
            .dir
            .ints
            .partition_point(|t| t.0 <= lo)
            .saturating_sub(1);
        let (mut a, mut b) = (u32::MAX, 0u32);
        for i in first..self.dir.ints.len() {
            if self.dir.ints.get(i).is_some_and(|t| t.0 > hi) {
                break;
            }
            for (j, v) in self.int_values(i)?.iter().enumerate() {
                if (lo..=hi).contains(v) {
                    let o = (i * per + j) as u32;
                    a = a.min(o);
                    b = b.max(o + 1);
                }
            }
        }
        Ok(if a < b { a..b } else { 0..0 })
    }

    /// Bytes of the index section by part (for statistics).
    pub fn index_sizes(&self) -> IndexSizes {
        let sum = |v: &[FrameRef]| v.iter().map(|f| f.len as u64).sum::<u64>();
        IndexSizes {
            directory: self.footer.index.map_or(0, |ix| ix.dir_len),
            terms: sum(&self.dir.terms.iter().map(|t| t.1).collect::<Vec<_>>()),
            integers: sum(&self.dir.ints.iter().map(|t| t.1).collect::<Vec<_>>()),
            templates: self.dir.templates.map_or(0, |f| f.len as u64),
            template_count: self.dir.template_count as u64,
        }
    }

    /// Number of term blocks in the index directory (for statistics).
    pub fn index_term_blocks(&self) -> usize {
        self.dir.terms.len()
    }
}
