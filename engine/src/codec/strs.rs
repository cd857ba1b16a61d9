//! String blocks. Codecs, by tag:
//!
//! | tag | codec | layout after the tag |
//! |---|---|---|
//! | 0 | zstd | zstd frame of the strings, each as varint length + UTF-8 bytes |
//! | 1 | dictionary | `u32` dictionary size `d`, zstd frame of the `d` distinct strings (varint length + bytes, in first-seen order), `u8` width, bit-packed ids |
//!
//! Dictionary wins for low-cardinality columns (levels, hosts, services); zstd for the
//! rest. Every decoded string is checked to be UTF-8.

use super::{bits, take_u32, take_u8, unzstd_frame, zstd_frame, CodecError};
use crate::wire::{put_varint, Reader};

const ZSTD: u8 = 0;
const DICT: u8 = 1;

fn concat<'a>(strings: impl Iterator<Item = &'a str>) -> Vec<u8> {
    let mut raw = Vec::new();
    for s in strings {
        put_varint(&mut raw, s.len() as u64);
        raw.extend_from_slice(s.as_bytes());
    }
    raw
}

/// Strings decoded into one buffer: what a reader that looks values up by index
/// needs, without an allocation per string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrList {
    text: String,
    /// End of each string in `text`.
    ends: Vec<u32>,
}

impl StrList {
    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)? as usize;
        let start = match i {
            0 => 0,
            _ => *self.ends.get(i - 1)? as usize,
        };
        self.text.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

fn split_list(raw: &[u8], n: usize) -> Result<StrList, CodecError> {
    let mut r = Reader::new(raw);
    let mut text: Vec<u8> = Vec::with_capacity(raw.len());
    let mut ends: Vec<u32> = Vec::with_capacity(n.min(raw.len()));
    let err = |e: crate::wire::DecodeError| CodecError::new(e.to_string());
    for _ in 0..n {
        let len = r.len(raw.len()).map_err(err)?;
        text.extend_from_slice(r.bytes(len).map_err(err)?);
        let end =
            u32::try_from(text.len()).map_err(|_| CodecError::new("string block over 4 GiB"))?;
        ends.push(end);
    }
    if !r.done() {
        return Err(CodecError::new(format!(
            "{} bytes after the last string",
            raw.len() - r.at
        )));
    }
    // One UTF-8 check of all the text, and each string's end on a character
    // boundary: then every string is UTF-8 on its own (a check per string costs
    // more than the check itself on short values).
    let bad = |at: usize| {
        let i = ends.partition_point(|e| (*e as usize) <= at);
        CodecError::new(format!("string {i} is not UTF-8"))
    };
    let text = String::from_utf8(text).map_err(|e| bad(e.utf8_error().valid_up_to()))?;
    if let Some(e) = ends.iter().find(|e| !text.is_char_boundary(**e as usize)) {
        return Err(bad(*e as usize - 1));
    }
    Ok(StrList { text, ends })
}

/// Encodes a block of strings with the smaller codec.
pub fn encode<S: AsRef<str>>(values: &[S], zstd_level: i32) -> Vec<u8> {
    let mut plain = vec![ZSTD];
    zstd_frame(
        &mut plain,
        &concat(values.iter().map(AsRef::as_ref)),
        zstd_level,
    );

    let mut ids: rustc_hash::FxHashMap<&str, u64> = Default::default();
    let mut dict: Vec<&str> = Vec::new();
    let mut idx = Vec::with_capacity(values.len());
    for v in values {
        let v = v.as_ref();
        let id = *ids.entry(v).or_insert_with(|| {
            dict.push(v);
            dict.len() as u64 - 1
        });
        idx.push(id);
    }
    // A dictionary only pays when values repeat.
    if dict.len() * 2 > values.len() {
        return plain;
    }
    let mut d = vec![DICT];
    d.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    zstd_frame(&mut d, &concat(dict.iter().copied()), zstd_level);
    let width = bits::width_of(dict.len().saturating_sub(1) as u64);
    d.push(width);
    bits::pack(&mut d, idx.into_iter(), width);
    if d.len() < plain.len() {
        d
    } else {
        plain
    }
}

/// The codec an encoded block uses (for statistics).
pub fn codec_name(block: &[u8]) -> &'static str {
    match block.first() {
        Some(&ZSTD) => "zstd",
        Some(&DICT) => "dictionary",
        _ => "unknown",
    }
}

/// Decodes a block of `n` strings.
pub fn decode(b: &[u8], n: usize) -> Result<Vec<String>, CodecError> {
    let (dict, ids) = decode_dict(b, n)?;
    let Some(ids) = ids else {
        return Ok(dict.iter().map(str::to_string).collect());
    };
    ids.into_iter()
        .map(|id| {
            dict.get(id as usize).map(str::to_string).ok_or_else(|| {
                CodecError::new(format!("id {id} outside a dictionary of {}", dict.len()))
            })
        })
        .collect()
}

/// Decodes a block of `n` strings as distinct values and one id per row, without
/// copying a value per row: `(dict, Some(ids))` for the dictionary codec, `(the
/// strings, None)` (row i is `dict[i]`) for the others. Ids are checked against the
/// dictionary.
pub fn decode_dict(mut b: &[u8], n: usize) -> Result<(StrList, Option<Vec<u32>>), CodecError> {
    let b = &mut b;
    let tag = take_u8(b, "string codec tag")?;
    decode_dict_tagged(b, n, tag)
}

/// [`decode_dict`] after the codec tag.
fn decode_dict_tagged(
    b: &mut &[u8],
    n: usize,
    tag: u8,
) -> Result<(StrList, Option<Vec<u32>>), CodecError> {
    match tag {
        ZSTD => Ok((split_list(&unzstd_frame(b)?, n)?, None)),
        DICT => {
            let d = take_u32(b, "dictionary size")? as usize;
            let dict = split_list(&unzstd_frame(b)?, d)?;
            let width = take_u8(b, "id width")?;
            let ids = bits::unpack_u32_below(b, n, width, dict.len())?;
            Ok((dict, Some(ids)))
        }
        other => Err(CodecError::new(format!("unknown string codec {other}"))),
    }
}

/// Counts the `n` strings of a block without copying them: `f(value, rows)` once
/// per distinct value of a dictionary-coded block (values no row uses skipped),
/// once per row (`rows` = 1, in row order) of a zstd block, whose strings are cut
/// straight from the decompressed text (checked as UTF-8 once, then cut on
/// character boundaries).
pub fn tally(mut b: &[u8], n: usize, mut f: impl FnMut(&str, u64)) -> Result<(), CodecError> {
    let b = &mut b;
    match take_u8(b, "string codec tag")? {
        ZSTD => {
            let raw = unzstd_frame(b)?;
            // Lengths of 128 bytes and more make their varints non-UTF-8: then the
            // strings are split and checked one by one.
            let Ok(text) = std::str::from_utf8(&raw) else {
                split_list(&raw, n)?.iter().for_each(|s| f(s, 1));
                return Ok(());
            };
            let mut r = Reader::new(&raw);
            let err = |e: crate::wire::DecodeError| CodecError::new(e.to_string());
            for i in 0..n {
                // Lengths under 128 (one varint byte) without a call.
                let len = match raw.get(r.at) {
                    Some(&b) if b < 0x80 => {
                        r.at += 1;
                        usize::from(b)
                    }
                    _ => r.len(raw.len()).map_err(err)?,
                };
                let at = r.at;
                let s = text.get(at..at + len).ok_or_else(|| {
                    CodecError::new(format!("string {i} ends outside the block or is not UTF-8"))
                })?;
                r.at += len;
                f(s, 1);
            }
            if !r.done() {
                return Err(CodecError::new(format!(
                    "{} bytes after the last string",
                    raw.len() - r.at
                )));
            }
            Ok(())
        }
        tag => {
            let (dict, ids) = decode_dict_tagged(b, n, tag)?;
            match ids {
                Some(ids) => {
                    let mut counts = vec![0u64; dict.len()];
                    for id in ids {
                        if let Some(c) = counts.get_mut(id as usize) {
                            *c += 1;
                        }
                    }
                    for (v, c) in dict.iter().zip(counts) {
                        if c > 0 {
                            f(v, c);
                        }
                    }
                }
                None => dict.iter().for_each(|s| f(s, 1)),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec("\\PC{0,20}", 0..100)) {
            let b = encode(&values, 3);
            prop_assert_eq!(decode(&b, values.len()).unwrap(), values);
        }

        #[test]
        fn low_cardinality_round_trips(picks in proptest::collection::vec(0usize..4, 1..300)) {
            let names = ["INFO", "WARN", "ERROR", "DEBUG"];
            let values: Vec<&str> = picks.iter().map(|i| names[*i]).collect();
            let b = encode(&values, 3);
            prop_assert_eq!(decode(&b, values.len()).unwrap(), values);
        }

        #[test]
        fn a_string_cut_inside_a_character_is_refused(values in proptest::collection::vec("\\PC{1,6}", 1..20), pick in 0usize..20) {
            // Re-split the same text with one string's length off by one byte.
            let i = pick % values.len();
            let mut raw = Vec::new();
            for (j, v) in values.iter().enumerate() {
                let mut len = v.len();
                if j == i && v.chars().next().is_some_and(|c| c.len_utf8() > 1) {
                    len = 1;
                }
                put_varint(&mut raw, len as u64);
                raw.extend_from_slice(&v.as_bytes()[..len]);
            }
            let whole = values.iter().enumerate().all(|(j, v)| j != i || v.chars().next().is_none_or(|c| c.len_utf8() == 1));
            prop_assert_eq!(split_list(&raw, values.len()).is_ok(), whole);
        }

        #[test]
        fn tally_counts_what_decode_decodes(values in proptest::collection::vec("\\PC{0,20}|[a-c]{1,2}|x{120,140}", 0..100)) {
            let b = encode(&values, 3);
            let count = |vs: Vec<(String, u64)>| {
                let mut m = std::collections::BTreeMap::new();
                for (v, n) in vs {
                    *m.entry(v).or_insert(0) += n;
                }
                m
            };
            let mut seen = Vec::new();
            tally(&b, values.len(), |s, n| seen.push((s.to_string(), n))).unwrap();
            if codec_name(&b) == "zstd" {
                // Row by row, in order.
                prop_assert_eq!(seen.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(), values.clone());
            }
            prop_assert_eq!(count(seen), count(values.into_iter().map(|v| (v, 1)).collect()));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..50) {
            let _ = decode(&bytes, n);
            let _ = tally(&bytes, n, |_, _| ());
        }
    }

    #[test]
    fn strings_whose_text_is_utf8_only_together_are_refused() {
        // "é" is 0xC3 0xA9: split into two one-byte strings, the text is valid
        // UTF-8 but neither string is.
        assert!(split_list(&[1, 0xC3, 1, 0xA9], 2).is_err());
        assert_eq!(split_list(&[2, 0xC3, 0xA9], 1).unwrap().get(0), Some("é"));
    }

    #[test]
    fn dictionary_wins_for_levels_zstd_for_messages() {
        // Levels in a realistic, irregular mix: 80% INFO, 15% WARN, 5% ERROR.
        let mut x = 7u64;
        let levels: Vec<&str> = (0..4096)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                match (x >> 33) % 100 {
                    0..80 => "INFO",
                    80..95 => "WARN",
                    _ => "ERROR",
                }
            })
            .collect();
        let b = encode(&levels, 3);
        assert_eq!(codec_name(&b), "dictionary", "{} bytes", b.len());
        assert!(b.len() <= 4096 * 2 / 8 + 64, "{} bytes", b.len());
        let msgs: Vec<String> = (0..1000)
            .map(|i| format!("request {i} served in {} ms", i * 7 % 113))
            .collect();
        assert_eq!(codec_name(&encode(&msgs, 3)), "zstd");
    }

    #[test]
    fn wrong_counts_and_truncation_are_errors() {
        let b = encode(&["a", "b", "c"], 3);
        assert!(decode(&b, 4).is_err());
        assert!(decode(&b, 2).is_err());
        assert!(decode(&b[..b.len() - 1], 3).is_err());
    }
}
