//! The inverted index section of a segment: every `_msg` token and every
//! `field=value` pair (including `level` and the stream labels) mapped to the roaring
//! bitmap of the *blocks* that contain it. Block granularity is measured in
//! `docs/decisions/0002-segment-size-measurements.md`; rows are verified by scanning
//! the candidate blocks with the same tokenizer.
//!
//! ```text
//! section := directory frame, term blocks
//! directory frame := zstd frame of: varint n, n x { str first_term, varint offset, varint len, u32 crc }
//!                    (offsets count from the end of the directory frame)
//! term block := zstd frame of: varint n, n x { varint shared_prefix_len, str suffix,
//!                                              varint postings_len, postings (roaring, portable format) }
//! ```
//! A lookup reads the directory once (at open), then one term block.

use roaring::RoaringBitmap;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::codec::{unzstd_frame, zstd_frame, CodecError};
use crate::token;
use crate::wire::{put_varint, DecodeError, Reader};

/// Terms per term block.
pub(crate) const TERMS_PER_BLOCK: usize = 128;
const NS_MSG: u8 = 0;
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

/// Collects terms while a segment is written. Terms are deduplicated per block first
/// (a token repeats many times within 8192 rows), with the key built in a reused
/// buffer, so the common case costs one hash lookup and no allocation.
#[derive(Debug, Default)]
pub(crate) struct IndexBuilder {
    terms: FxHashMap<Vec<u8>, RoaringBitmap>,
    block: FxHashSet<Vec<u8>>,
    key: Vec<u8>,
}

impl IndexBuilder {
    fn note(&mut self) {
        if !self.block.contains(self.key.as_slice()) {
            self.block.insert(self.key.clone());
        }
    }

    /// Records a `_msg` token of the current block.
    pub(crate) fn msg_token(&mut self, tok: &str) {
        put_msg_key(&mut self.key, tok);
        self.note();
    }

    /// Records a `field=value` pair of the current block.
    pub(crate) fn field(&mut self, name: &str, value: &str) {
        put_field_key(&mut self.key, name, value);
        self.note();
    }

    /// Ends block `block`: its distinct terms get the block in their postings.
    pub(crate) fn end_block(&mut self, block: u32) {
        for term in self.block.drain() {
            self.terms.entry(term).or_default().insert(block);
        }
    }

    /// Encodes the section; returns (bytes, directory frame length).
    pub(crate) fn encode(self, level: i32) -> (Vec<u8>, usize) {
        let mut terms: Vec<(Vec<u8>, RoaringBitmap)> = self.terms.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut blocks: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for chunk in terms.chunks(TERMS_PER_BLOCK) {
            let mut raw = Vec::new();
            put_varint(&mut raw, chunk.len() as u64);
            let mut prev: &[u8] = &[];
            for (term, bm) in chunk {
                let shared = prev.iter().zip(term).take_while(|(a, b)| a == b).count();
                put_varint(&mut raw, shared as u64);
                put_varint(&mut raw, (term.len() - shared) as u64);
                raw.extend_from_slice(&term[shared..]);
                let mut p = Vec::with_capacity(bm.serialized_size());
                // Serializing into a Vec cannot fail.
                let _ = bm.serialize_into(&mut p);
                put_varint(&mut raw, p.len() as u64);
                raw.extend_from_slice(&p);
                prev = term;
            }
            let mut frame = Vec::new();
            zstd_frame(&mut frame, &raw, level);
            blocks.push((
                chunk.first().map(|t| t.0.clone()).unwrap_or_default(),
                frame,
            ));
        }
        // Offsets count from the end of the directory frame, so they do not depend
        // on the directory's own (compressed) size.
        let mut dir = Vec::new();
        put_varint(&mut dir, blocks.len() as u64);
        let mut offset = 0usize;
        for (first, frame) in &blocks {
            put_str_bytes(&mut dir, first);
            put_varint(&mut dir, offset as u64);
            put_varint(&mut dir, frame.len() as u64);
            dir.extend_from_slice(&crc32fast::hash(frame).to_le_bytes());
            offset += frame.len();
        }
        let mut out = Vec::new();
        zstd_frame(&mut out, &dir, level);
        let dir_len = out.len();
        for (_, frame) in blocks {
            out.extend_from_slice(&frame);
        }
        (out, dir_len)
    }
}

fn put_str_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One entry of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TermBlockRef {
    pub(crate) first: Vec<u8>,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) crc: u32,
}

fn bytes_field(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let n = r.len(r.b.len())?;
    Ok(r.bytes(n)?.to_vec())
}

/// Decodes the directory frame (already CRC-checked by the caller).
pub(crate) fn decode_directory(
    mut frame: &[u8],
    section_len: usize,
) -> Result<Vec<TermBlockRef>, String> {
    let raw = unzstd_frame(&mut frame).map_err(|e: CodecError| e.what)?;
    let mut r = Reader::new(&raw);
    let n = r.len(raw.len()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let first = bytes_field(&mut r).map_err(|e| e.to_string())?;
        let offset = r.len(section_len).map_err(|e| e.to_string())?;
        let len = r.len(section_len).map_err(|e| e.to_string())?;
        let crc = r.u32().map_err(|e| e.to_string())?;
        if offset.checked_add(len).is_none_or(|end| end > section_len) {
            return Err(format!(
                "term block {offset}+{len} outside the index section"
            ));
        }
        out.push(TermBlockRef {
            first,
            offset,
            len,
            crc,
        });
    }
    if !out.windows(2).all(|w| w[0].first < w[1].first) {
        return Err("term blocks out of order".into());
    }
    Ok(out)
}

/// Decodes one term block (already CRC-checked): (term, postings) pairs in order.
pub(crate) fn decode_term_block(mut frame: &[u8]) -> Result<Vec<(Vec<u8>, RoaringBitmap)>, String> {
    let raw = unzstd_frame(&mut frame).map_err(|e| e.what)?;
    let mut r = Reader::new(&raw);
    let n = r.len(TERMS_PER_BLOCK).map_err(|e| e.to_string())?;
    let mut out: Vec<(Vec<u8>, RoaringBitmap)> = Vec::with_capacity(n);
    let mut prev: Vec<u8> = Vec::new();
    for _ in 0..n {
        let shared = r.len(prev.len()).map_err(|e| e.to_string())?;
        let suffix = bytes_field(&mut r).map_err(|e| e.to_string())?;
        let mut term = prev.get(..shared).unwrap_or(&[]).to_vec();
        term.extend_from_slice(&suffix);
        let plen = r.len(raw.len()).map_err(|e| e.to_string())?;
        let p = r.bytes(plen).map_err(|e| e.to_string())?;
        let bm = RoaringBitmap::deserialize_from(p).map_err(|e| format!("postings: {e}"))?;
        if out.last().is_some_and(|(t, _)| *t >= term) {
            return Err("terms out of order".into());
        }
        prev = term.clone();
        out.push((term, bm));
    }
    if !r.done() {
        return Err("bytes after the last term".into());
    }
    Ok(out)
}
