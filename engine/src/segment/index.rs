//! The index section of a segment. It is both the inverted index and the dictionary
//! of the `_msg` template codec ([`super::message`]): every value is stored once.
//!
//! - The *term dictionary*: every string variable of `_msg` (see below), and every
//!   `field=value` pair (including `level` and the stream labels), sorted by key,
//!   each with the blocks that hold it. An entry's ordinal is its position in that
//!   order; messages refer to string variables by ordinal. (Up to format version 3
//!   it held every digit-free `_msg` token too; since version 4 a word is found
//!   through the templates holding it, each with its blocks: the words were stored
//!   twice, and on a short log that was a tenth of the data directory.)
//! - The *integer dictionary*: every canonical integer variable of `_msg`, sorted by
//!   value, with its blocks; messages refer to integers by ordinal.
//! - The *templates* of `_msg`, in order of first appearance.
//!
//! Keys: `0x00 normalized-token` for a `_msg` token; a string variable whose text is
//! not already normalized gets `0x00 normalized-token 0x00 case-mask` (bit i of the
//! mask set = byte i is an ASCII upper-case letter), so a lookup of a word finds all
//! its spellings next to each other. `0x01 name 0x00 value` for a field pair.
//! Postings are at block granularity
//! (`docs/decisions/0002-segment-size-measurements.md`); rows are verified by scanning
//! candidate blocks.
//!
//! ```text
//! section := directory frame, term blocks, integer blocks, templates frame
//! directory := zstd frame of:
//!   varint terms_per_block
//!   varint n, n x { bytes first_key, varint offset, varint len, u32 crc }   term blocks
//!   varint m, m x { varint first_value, varint offset, varint len, u32 crc } integer blocks
//!   varint templates, varint offset, varint len, u32 crc                     templates frame
//!   (offsets count from the end of the directory frame)
//! term block := zstd frame of: varint k, k x { varint shared_prefix_len,
//!                                              bytes suffix, postings }
//! integer block := zstd frame of: varint k, k x { varint delta from previous value
//!                                                 (first: absolute), postings }
//! templates frame := zstd frame of: n x { bytes template, postings (version 4 on) }
//! postings := varint x; x even: x/2 block ids follow, delta varints (first absolute);
//!             x odd: (x-1)/2 bytes of a roaring bitmap (portable format);
//!             absent when the segment has a single block (every entry is in block 0)
//! ```
//! Every block but the last holds exactly `terms_per_block` entries, so ordinal `o`
//! lives in block `o / terms_per_block`. A lookup reads the directory once (at open),
//! then one term or integer block.

use roaring::RoaringBitmap;
use rustc_hash::FxHashMap;

use super::message::{self, Template, Var};
use crate::codec::{unzstd_frame, zstd_frame, CodecError};
use crate::token;
use crate::wire::{put_varint, DecodeError, Reader};

/// Entries per term or integer block.
pub(crate) const TERMS_PER_BLOCK: usize = 512;
/// Most entries per block a decoder accepts.
const TERMS_PER_BLOCK_MAX: usize = 1 << 16;
/// Postings lists longer than this are stored as roaring bitmaps.
const LIST_MAX: usize = 16;
pub(crate) const NS_MSG: u8 = 0;
const NS_FIELD: u8 = 1;

/// Writes the index key of a `_msg` token into `out` (normalized per
/// [`token::normalize`]: ASCII letters lower-cased, other bytes as they are).
fn put_msg_key(out: &mut Vec<u8>, tok: &str) {
    out.clear();
    out.push(NS_MSG);
    out.extend_from_slice(token::normalize(tok).as_bytes());
}

/// Writes the index key of a `field=value` pair (exact value text) into `out`.
fn put_field_key(out: &mut Vec<u8>, name: &str, value: &str) {
    out.clear();
    out.push(NS_FIELD);
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.extend_from_slice(value.as_bytes());
}

/// The key of a string variable: its normalized key, plus a case mask when the text
/// has ASCII upper-case letters.
fn var_key(tok: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tok.len() + 2);
    put_msg_key(&mut k, tok);
    if tok.bytes().any(|b| b.is_ascii_uppercase()) {
        k.push(0);
        let mut mask = vec![0u8; tok.len().div_ceil(8)];
        for (i, b) in tok.bytes().enumerate() {
            if b.is_ascii_uppercase() {
                if let Some(m) = mask.get_mut(i / 8) {
                    *m |= 1 << (i % 8);
                }
            }
        }
        k.extend_from_slice(&mask);
    }
    k
}

/// The text of a string variable from its key (`None` for a key that is not a
/// well-formed `_msg` key).
pub(crate) fn var_text(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(&[NS_MSG])?;
    let (norm, mask) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (rest.get(..i)?, rest.get(i + 1..)?),
        None => (rest, &[][..]),
    };
    let mut text = norm.to_vec();
    for (i, b) in text.iter_mut().enumerate() {
        if mask.get(i / 8).is_some_and(|m| m & (1 << (i % 8)) != 0) {
            *b = b.to_ascii_uppercase();
        }
    }
    String::from_utf8(text).ok()
}

/// The index key of a `_msg` token.
pub fn msg_term(tok: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tok.len() + 1);
    put_msg_key(&mut k, tok);
    k
}

/// The index key of a `field=value` pair.
pub fn field_term(name: &str, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + value.len() + 2);
    put_field_key(&mut k, name, value);
    k
}

/// The temporary id of `key` in a dictionary being built (`ids`, its keys in id
/// order `list`, their postings `post`), posted in `block`.
fn intern<K: Copy + Eq + std::hash::Hash>(
    ids: &mut FxHashMap<K, u32>,
    list: &mut Vec<K>,
    post: &mut Vec<Vec<u32>>,
    key: K,
    block: u32,
) -> u32 {
    let id = *ids.entry(key).or_insert_with(|| {
        list.push(key);
        post.push(Vec::new());
        list.len() as u32 - 1
    });
    if let Some(p) = post.get_mut(id as usize) {
        note(p, block);
    }
    id
}

/// Adds `block` to a postings list built in block order.
fn note(list: &mut Vec<u32>, block: u32) {
    if list.last() != Some(&block) {
        list.push(block);
    }
}

/// Collects a segment's messages and terms while it is written, block by block.
/// Each distinct template is tokenized once; its words are posted per block through
/// the template, variables by their (temporary) ids.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder<'a> {
    templates: FxHashMap<Vec<u8>, u32>,
    template_list: Vec<Vec<u8>>,
    /// Per template, per placeholder: whether it is a time run.
    template_slots: Vec<Vec<bool>>,
    /// Per template, its blocks (its words' postings: since format version 4 the
    /// words are found through the templates, not the term dictionary).
    template_post: Vec<Vec<u32>>,
    strs: FxHashMap<&'a str, u32>,
    str_list: Vec<&'a str>,
    str_post: Vec<Vec<u32>>,
    ints: FxHashMap<u64, u32>,
    int_list: Vec<u64>,
    int_post: Vec<Vec<u32>>,
    fields: FxHashMap<Vec<u8>, Vec<u32>>,
    /// Per row: template id; per variable: temporary id << 1 | is_int; per time
    /// run: its number.
    pub(crate) row_templates: Vec<u32>,
    pub(crate) row_vars: Vec<u32>,
    pub(crate) row_times: Vec<u64>,
    block: u32,
    blocks: u32,
    key: Vec<u8>,
    tbuf: Vec<u8>,
    vbuf: Vec<Var<'a>>,
}

/// What [`IndexBuilder::finish`] returns.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The encoded section.
    pub(crate) section: Vec<u8>,
    /// Length of its directory frame.
    pub(crate) dir_len: usize,
    /// Ordinal of every row variable, in `row_vars` order.
    pub(crate) row_ordinals: Vec<u32>,
    /// Per template, per placeholder: whether it is a time run.
    pub(crate) template_slots: Vec<Vec<bool>>,
}

impl<'a> IndexBuilder<'a> {
    /// Starts block `block` (blocks come in increasing order).
    pub(crate) fn start_block(&mut self, block: u32) {
        self.block = block;
        self.blocks = block + 1;
    }

    /// Adds the next row's message.
    pub(crate) fn message(&mut self, msg: &'a str) {
        let block = self.block;
        self.tbuf.clear();
        self.vbuf.clear();
        message::split(msg, &mut self.tbuf, &mut self.vbuf);
        let t = match self.templates.get(self.tbuf.as_slice()) {
            Some(t) => *t,
            None => self.new_template(),
        };
        self.row_templates.push(t);
        if let Some(p) = self.template_post.get_mut(t as usize) {
            note(p, block);
        }
        for i in 0..self.vbuf.len() {
            match self.vbuf.get(i).copied() {
                Some(Var::Int(x)) => {
                    let id = self.int_id(x, block);
                    self.row_vars.push(id << 1 | 1);
                }
                Some(Var::Str(s)) => {
                    let id = self.str_id(s, block);
                    self.row_vars.push(id << 1);
                }
                Some(Var::Time(x, text)) => {
                    // Its tokens are indexed like any variable's; the row keeps
                    // the number.
                    for tok in token::tokens(text) {
                        match message::canonical_int(tok) {
                            Some(x) => self.int_id(x, block),
                            None => self.str_id(tok, block),
                        };
                    }
                    self.row_times.push(x);
                }
                None => {}
            }
        }
    }

    /// The temporary id of integer variable `x`, posted in `block`.
    fn int_id(&mut self, x: u64, block: u32) -> u32 {
        intern(
            &mut self.ints,
            &mut self.int_list,
            &mut self.int_post,
            x,
            block,
        )
    }

    /// The temporary id of string variable `s`, posted in `block`.
    fn str_id(&mut self, s: &'a str, block: u32) -> u32 {
        intern(
            &mut self.strs,
            &mut self.str_list,
            &mut self.str_post,
            s,
            block,
        )
    }

    fn new_template(&mut self) -> u32 {
        let t = self.template_list.len() as u32;
        let slots = Template::parse(&self.tbuf)
            .map(|tpl| tpl.slots.iter().map(|s| !s.has_ordinals()).collect())
            .unwrap_or_default();
        self.templates.insert(self.tbuf.clone(), t);
        self.template_list.push(self.tbuf.clone());
        self.template_slots.push(slots);
        self.template_post.push(Vec::new());
        t
    }

    /// Records a `field=value` pair of the current block.
    pub(crate) fn field(&mut self, name: &str, value: &str) {
        put_field_key(&mut self.key, name, value);
        let block = self.block;
        match self.fields.get_mut(self.key.as_slice()) {
            Some(p) => note(p, block),
            None => {
                self.fields.insert(self.key.clone(), vec![block]);
            }
        }
    }

    /// Sorts the dictionaries, assigns ordinals and encodes the section.
    pub(crate) fn finish(self, level: i32) -> Finished {
        let single = self.blocks <= 1;
        // Term entries: (key, postings, temporary string id if a variable).
        let mut terms: Vec<(Vec<u8>, Vec<u32>, Option<u32>)> =
            Vec::with_capacity(self.str_list.len() + self.fields.len());
        terms.extend(
            self.str_list
                .iter()
                .zip(self.str_post)
                .enumerate()
                .map(|(i, (s, p))| (var_key(s), p, Some(i as u32))),
        );
        terms.extend(self.fields.into_iter().map(|(k, p)| (k, p, None)));
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut str_ord = vec![0u32; self.str_list.len()];
        for (ord, t) in terms.iter().enumerate() {
            if let Some(slot) = t.2.and_then(|i| str_ord.get_mut(i as usize)) {
                *slot = ord as u32;
            }
        }
        let mut ints: Vec<(u64, Vec<u32>, u32)> = self
            .int_list
            .into_iter()
            .zip(self.int_post)
            .enumerate()
            .map(|(i, (v, p))| (v, p, i as u32))
            .collect();
        ints.sort_unstable_by_key(|x| x.0);
        let mut int_ord = vec![0u32; ints.len()];
        for (ord, x) in ints.iter().enumerate() {
            if let Some(slot) = int_ord.get_mut(x.2 as usize) {
                *slot = ord as u32;
            }
        }
        let row_ordinals = self
            .row_vars
            .iter()
            .map(|v| {
                let table = if v & 1 == 1 { &int_ord } else { &str_ord };
                table.get((v >> 1) as usize).copied().unwrap_or(0)
            })
            .collect();

        let mut term_blocks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut raw = Vec::new();
        for chunk in terms.chunks(TERMS_PER_BLOCK) {
            raw.clear();
            put_varint(&mut raw, chunk.len() as u64);
            let mut prev: &[u8] = &[];
            for (term, post, _) in chunk {
                let shared = prev.iter().zip(term).take_while(|(a, b)| a == b).count();
                put_varint(&mut raw, shared as u64);
                put_varint(&mut raw, (term.len() - shared) as u64);
                raw.extend_from_slice(term.get(shared..).unwrap_or(&[]));
                put_postings(&mut raw, post, single);
                prev = term;
            }
            let mut frame = Vec::new();
            zstd_frame(&mut frame, &raw, level);
            term_blocks.push((
                chunk.first().map(|t| t.0.clone()).unwrap_or_default(),
                frame,
            ));
        }
        let mut int_blocks: Vec<(u64, Vec<u8>)> = Vec::new();
        for chunk in ints.chunks(TERMS_PER_BLOCK) {
            raw.clear();
            put_varint(&mut raw, chunk.len() as u64);
            let mut prev = 0u64;
            for (v, post, _) in chunk {
                put_varint(&mut raw, v - prev);
                put_postings(&mut raw, post, single);
                prev = *v;
            }
            let mut frame = Vec::new();
            zstd_frame(&mut frame, &raw, level);
            int_blocks.push((chunk.first().map_or(0, |x| x.0), frame));
        }
        raw.clear();
        for (t, post) in self.template_list.iter().zip(&self.template_post) {
            put_bytes(&mut raw, t);
            put_postings(&mut raw, post, single);
        }
        let mut templates = Vec::new();
        zstd_frame(
            &mut templates,
            &raw,
            small_frame_level(raw.len(), SMALL_FRAME_MAX, level),
        );

        // Offsets count from the end of the directory frame, so they do not depend
        // on the directory's own (compressed) size.
        let mut dir = Vec::new();
        put_varint(&mut dir, TERMS_PER_BLOCK as u64);
        let mut offset = 0usize;
        let mut entry = |dir: &mut Vec<u8>, frame: &[u8]| {
            put_varint(dir, offset as u64);
            put_varint(dir, frame.len() as u64);
            dir.extend_from_slice(&crc32fast::hash(frame).to_le_bytes());
            offset += frame.len();
        };
        put_varint(&mut dir, term_blocks.len() as u64);
        for (first, frame) in &term_blocks {
            put_bytes(&mut dir, first);
            entry(&mut dir, frame);
        }
        put_varint(&mut dir, int_blocks.len() as u64);
        for (first, frame) in &int_blocks {
            put_varint(&mut dir, *first);
            entry(&mut dir, frame);
        }
        put_varint(&mut dir, self.template_list.len() as u64);
        entry(&mut dir, &templates);
        let mut out = Vec::new();
        zstd_frame(&mut out, &dir, level);
        let dir_len = out.len();
        for (_, frame) in term_blocks {
            out.extend_from_slice(&frame);
        }
        for (_, frame) in int_blocks {
            out.extend_from_slice(&frame);
        }
        out.extend_from_slice(&templates);
        Finished {
            section: out,
            dir_len,
            row_ordinals,
            template_slots: self.template_slots,
        }
    }
}

/// Most bytes of a templates frame compressed at [`SMALL_FRAME_LEVEL`] (some 10 ms
/// of one core; a flush writes one per segment).
pub(crate) const SMALL_FRAME_MAX: usize = 32 << 10;
/// The zstd level of a small templates frame (and of a data directory's template
/// file): their words are the text most of a short log holds, and at this level
/// they take 13% less than at level 3 (Loghub Android: 6,038 -> 5,232 bytes).
pub(crate) const SMALL_FRAME_LEVEL: i32 = 19;

/// The level for a frame of `len` bytes: [`SMALL_FRAME_LEVEL`] up to `max` bytes,
/// else `level`.
pub(crate) fn small_frame_level(len: usize, max: usize, level: i32) -> i32 {
    if len <= max {
        level.max(SMALL_FRAME_LEVEL)
    } else {
        level
    }
}

fn put_postings(out: &mut Vec<u8>, blocks: &[u32], single: bool) {
    if single {
        return;
    }
    if blocks.len() <= LIST_MAX {
        put_varint(out, (blocks.len() as u64) << 1);
        let mut prev = 0u32;
        for b in blocks {
            put_varint(out, u64::from(b - prev));
            prev = *b;
        }
    } else {
        let bm: RoaringBitmap = blocks.iter().copied().collect();
        let mut p = Vec::with_capacity(bm.serialized_size());
        // Serializing into a Vec cannot fail.
        let _ = bm.serialize_into(&mut p);
        put_varint(out, (p.len() as u64) << 1 | 1);
        out.extend_from_slice(&p);
    }
}

fn get_postings(r: &mut Reader<'_>, single: bool) -> Result<RoaringBitmap, DecodeError> {
    if single {
        return Ok(std::iter::once(0).collect());
    }
    let x = r.varint()?;
    let n = usize::try_from(x >> 1).unwrap_or(usize::MAX);
    if x & 1 == 1 {
        let at = r.at;
        let p = r.bytes(n)?;
        return RoaringBitmap::deserialize_from(p).map_err(|e| DecodeError {
            offset: at,
            what: format!("postings: {e}"),
        });
    }
    if n > r.b.len() {
        return r.fail(format!("{n} postings cannot fit the block"));
    }
    let mut bm = RoaringBitmap::new();
    let mut prev = 0u64;
    for i in 0..n {
        let d = r.varint()?;
        if i > 0 && d == 0 {
            return r.fail("postings not increasing");
        }
        prev = prev.saturating_add(d);
        let b = u32::try_from(prev).or_else(|_| r.fail("block id over u32"))?;
        bm.insert(b);
    }
    Ok(bm)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn bytes_field(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.len(r.b.len())?;
    Ok(r.bytes(n)?.to_vec())
}

/// Where one frame of the section lives (offset from the end of the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRef {
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) crc: u32,
}

/// The decoded directory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Directory {
    pub(crate) per_block: usize,
    /// First key of each term block.
    pub(crate) terms: Vec<(Vec<u8>, FrameRef)>,
    /// First value of each integer block.
    pub(crate) ints: Vec<(u64, FrameRef)>,
    pub(crate) template_count: usize,
    pub(crate) templates: Option<FrameRef>,
}

fn frame_ref(r: &mut Reader<'_>, section_len: usize) -> Result<FrameRef, DecodeError> {
    let offset = r.len(section_len)?;
    let len = r.len(section_len)?;
    let crc = r.u32()?;
    if offset.checked_add(len).is_none_or(|end| end > section_len) {
        return r.fail(format!("frame {offset}+{len} outside the index section"));
    }
    Ok(FrameRef { offset, len, crc })
}

/// Decodes the directory frame (already CRC-checked by the caller).
pub(crate) fn decode_directory(mut frame: &[u8], section_len: usize) -> Result<Directory, String> {
    let raw = unzstd_frame(&mut frame).map_err(|e: CodecError| e.what)?;
    let mut r = Reader::new(&raw);
    let s = |e: DecodeError| e.to_string();
    let per_block = r.len(TERMS_PER_BLOCK_MAX).map_err(s)?;
    if per_block == 0 {
        return Err("zero entries per block".into());
    }
    let mut d = Directory {
        per_block,
        ..Directory::default()
    };
    let n = r.len(raw.len()).map_err(s)?;
    for _ in 0..n {
        let first = bytes_field(&mut r).map_err(s)?;
        d.terms
            .push((first, frame_ref(&mut r, section_len).map_err(s)?));
    }
    if !d.terms.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("term blocks out of order".into());
    }
    let m = r.len(raw.len()).map_err(s)?;
    for _ in 0..m {
        let first = r.varint().map_err(s)?;
        d.ints
            .push((first, frame_ref(&mut r, section_len).map_err(s)?));
    }
    if !d.ints.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err("integer blocks out of order".into());
    }
    d.template_count = r.len(usize::MAX).map_err(s)?;
    d.templates = Some(frame_ref(&mut r, section_len).map_err(s)?);
    if !r.done() {
        return Err("bytes after the directory".into());
    }
    Ok(d)
}

/// What a dictionary scan does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Skip its postings (they are stepped over, not decoded).
    Skip,
    /// Decode its postings and hand them over.
    Take,
    /// End the scan.
    Stop,
}

/// Steps over one entry's postings without decoding them.
fn skip_postings(r: &mut Reader<'_>, single: bool) -> Result<(), DecodeError> {
    if single {
        return Ok(());
    }
    let x = r.varint()?;
    let n = usize::try_from(x >> 1).unwrap_or(usize::MAX);
    if x & 1 == 1 {
        r.bytes(n)?;
        return Ok(());
    }
    if n > r.b.len() {
        return r.fail(format!("{n} postings cannot fit the block"));
    }
    for _ in 0..n {
        r.varint()?;
    }
    Ok(())
}

/// Walks one term block (already CRC-checked) in key order: `want` sees each key and
/// its position in the block; the postings of the keys it takes go to `take`. Only
/// the taken postings are decoded, and no key is copied, so a lookup costs one
/// decompression and a walk. A full walk also checks the entry count, the order and
/// that nothing follows the last entry.
pub(crate) fn scan_term_block(
    mut frame: &[u8],
    expect: std::ops::RangeInclusive<usize>,
    single: bool,
    mut want: impl FnMut(usize, &[u8]) -> Want,
    mut take: impl FnMut(usize, RoaringBitmap),
) -> Result<(), String> {
    let raw = unzstd_frame(&mut frame).map_err(|e| e.what)?;
    let mut r = Reader::new(&raw);
    let s = |e: DecodeError| e.to_string();
    let n = r.len(TERMS_PER_BLOCK_MAX).map_err(s)?;
    if !expect.contains(&n) {
        return Err(format!("term block holds {n} entries, expected {expect:?}"));
    }
    let mut key: Vec<u8> = Vec::with_capacity(64);
    for i in 0..n {
        let shared = r.len(key.len()).map_err(s)?;
        let len = r.len(r.b.len()).map_err(s)?;
        let suffix = r.bytes(len).map_err(s)?;
        // Keys are strictly increasing: the suffix must sort after the old key's
        // remainder (or, when that is empty, be non-empty).
        let rest = key.get(shared..).unwrap_or(&[]);
        if i > 0 && suffix <= rest {
            return Err("terms out of order".into());
        }
        key.truncate(shared);
        key.extend_from_slice(suffix);
        match want(i, &key) {
            Want::Skip => skip_postings(&mut r, single).map_err(s)?,
            Want::Take => take(i, get_postings(&mut r, single).map_err(s)?),
            Want::Stop => return Ok(()),
        }
    }
    if !r.done() {
        return Err("bytes after the last term".into());
    }
    Ok(())
}

/// Walks one integer block (already CRC-checked) like [`scan_term_block`]: `want`
/// sees each value in increasing order.
pub(crate) fn scan_int_block(
    mut frame: &[u8],
    expect: std::ops::RangeInclusive<usize>,
    single: bool,
    mut want: impl FnMut(usize, u64) -> Want,
    mut take: impl FnMut(usize, RoaringBitmap),
) -> Result<(), String> {
    let raw = unzstd_frame(&mut frame).map_err(|e| e.what)?;
    let mut r = Reader::new(&raw);
    let s = |e: DecodeError| e.to_string();
    let n = r.len(TERMS_PER_BLOCK_MAX).map_err(s)?;
    if !expect.contains(&n) {
        return Err(format!(
            "integer block holds {n} entries, expected {expect:?}"
        ));
    }
    let mut prev = 0u64;
    for i in 0..n {
        let d = r.varint().map_err(s)?;
        if i > 0 && d == 0 {
            return Err("integers not increasing".into());
        }
        prev = prev
            .checked_add(d)
            .ok_or("integer dictionary overflows u64")?;
        match want(i, prev) {
            Want::Skip => skip_postings(&mut r, single).map_err(s)?,
            Want::Take => take(i, get_postings(&mut r, single).map_err(s)?),
            Want::Stop => return Ok(()),
        }
    }
    if !r.done() {
        return Err("bytes after the last integer".into());
    }
    Ok(())
}

/// Decodes the templates frame (already CRC-checked).
/// Decodes a templates frame of `n` templates; with `postings` (format version 4
/// on), each template's blocks follow it (`single`: the segment has one block, and
/// they are not stored). Without, the postings are empty.
pub(crate) fn decode_templates(
    mut frame: &[u8],
    n: usize,
    postings: bool,
    single: bool,
) -> Result<(Vec<Template>, Vec<RoaringBitmap>), String> {
    let raw = unzstd_frame(&mut frame).map_err(|e| e.what)?;
    let mut r = Reader::new(&raw);
    if n > raw.len() {
        return Err(format!("{n} templates cannot fit {} bytes", raw.len()));
    }
    let mut out = Vec::with_capacity(n);
    let mut posts = Vec::with_capacity(if postings { n } else { 0 });
    for _ in 0..n {
        let b = bytes_field(&mut r).map_err(|e| e.to_string())?;
        out.push(Template::parse(&b)?);
        if postings {
            posts.push(get_postings(&mut r, single).map_err(|e| e.to_string())?);
        }
    }
    if !r.done() {
        return Err("bytes after the last template".into());
    }
    Ok((out, posts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_keys_keep_case_and_sort_next_to_the_word() {
        for t in ["R02", "r02", "0xDEADbeef", "Abcdefghij1", "ü1Ä"] {
            assert_eq!(var_text(&var_key(t)).as_deref(), Some(t));
        }
        let plain = var_key("r02");
        let upper = var_key("R02");
        let longer = var_key("r020");
        assert!(plain < upper && upper < longer);
        assert!(upper.starts_with(&plain));
    }

    #[test]
    fn postings_round_trip_as_list_and_roaring() {
        for blocks in [
            vec![],
            vec![0],
            vec![3, 9, 200],
            (0..100).collect::<Vec<u32>>(),
        ] {
            let mut b = Vec::new();
            put_postings(&mut b, &blocks, false);
            let mut r = Reader::new(&b);
            let got: Vec<u32> = get_postings(&mut r, false).unwrap().iter().collect();
            assert_eq!(got, blocks);
            assert!(r.done());
        }
    }
}
