//! Integer (and timestamp) blocks. Codecs, by tag:
//!
//! | tag | codec | layout after the tag |
//! |---|---|---|
//! | 0 | constant | `i64` value |
//! | 1 | frame of reference + bit packing | `i64` min, `u8` width, packed `v - min` |
//! | 2 | delta + frame of reference + bit packing | `i64` first, `i64` min delta, `u8` width, packed `d - min delta` for the n-1 deltas |
//! | 3 | zstd | zstd frame of the values as `i64` LE |
//! | 4 | scaled delta | `i64` first, `u64` scale `g` (> 1), `u64` min, `u8` width, packed `d / g - min` for the n-1 deltas |
//! | 5 | scaled delta + zstd | `i64` first, `u64` scale `g` (>= 1), zstd frame of the n-1 values `d / g` as varints |
//! | 6 | by `_msg` template | (the `_template` field only; decoded by the segment reader, which knows the rows' `_msg` templates) zstd frame of: varint k, k zigzag deltas (each `_msg` template's value, in order of first appearance), then pairs (varint row delta, zigzag difference from the predicted value) for the rows that differ |
//!
//! Scaled delta applies when every delta is non-negative and a multiple of some
//! `g > 1` (their greatest common divisor): timestamps with second or millisecond
//! precision stored in nanoseconds. Its zstd form wins when most deltas are small
//! but a few are large (bursts of lines, then a pause).
//!
//! Deltas and offsets are computed with wrapping arithmetic in `u64`, so any `i64`
//! input round-trips.

use super::{bits, take_i64, take_u8, unzstd_frame, zstd_frame, CodecError};

const CONST: u8 = 0;
const FOR: u8 = 1;
const DELTA: u8 = 2;
const ZSTD: u8 = 3;
const SCALED: u8 = 4;
const SCALED_ZSTD: u8 = 5;
/// Values predicted by the rows' `_msg` templates (see the table above).
pub(crate) const BY_TEMPLATE: u8 = 6;

/// Non-negative deltas of `values` and their greatest common divisor (at least 1).
fn sorted_deltas(values: &[i64]) -> Option<(Vec<u64>, u64)> {
    let mut deltas = Vec::with_capacity(values.len());
    for w in values.windows(2) {
        let d = w[1].checked_sub(w[0]).filter(|d| *d >= 0)?;
        deltas.push(d as u64);
    }
    let g = deltas.iter().fold(0, |g, d| gcd(g, *d)).max(1);
    Some((deltas, g))
}

fn encode_scaled_zstd(values: &[i64], level: i32) -> Option<Vec<u8>> {
    let first = *values.first()?;
    let (deltas, g) = sorted_deltas(values)?;
    let mut raw = Vec::with_capacity(deltas.len());
    for d in deltas {
        crate::wire::put_varint(&mut raw, d / g);
    }
    let mut out = vec![SCALED_ZSTD];
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&g.to_le_bytes());
    zstd_frame(&mut out, &raw, level);
    Some(out)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn encode_scaled(values: &[i64]) -> Option<Vec<u8>> {
    let first = *values.first()?;
    let (deltas, g) = sorted_deltas(values)?;
    if g <= 1 {
        return None;
    }
    let min = deltas.iter().map(|d| d / g).min().unwrap_or(0);
    let width = deltas
        .iter()
        .map(|d| bits::width_of(d / g - min))
        .max()
        .unwrap_or(0);
    let mut out = vec![SCALED];
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&g.to_le_bytes());
    out.extend_from_slice(&min.to_le_bytes());
    out.push(width);
    bits::pack(&mut out, deltas.iter().map(|d| d / g - min), width);
    Some(out)
}

fn encode_const(values: &[i64]) -> Option<Vec<u8>> {
    let first = *values.first()?;
    values.iter().all(|v| *v == first).then(|| {
        let mut out = vec![CONST];
        out.extend_from_slice(&first.to_le_bytes());
        out
    })
}

fn encode_for(values: &[i64]) -> Vec<u8> {
    let min = values.iter().copied().min().unwrap_or(0);
    let offs = || {
        values
            .iter()
            .map(move |v| (*v as u64).wrapping_sub(min as u64))
    };
    let width = offs().map(bits::width_of).max().unwrap_or(0);
    let mut out = vec![FOR];
    out.extend_from_slice(&min.to_le_bytes());
    out.push(width);
    bits::pack(&mut out, offs(), width);
    out
}

fn encode_delta(values: &[i64]) -> Vec<u8> {
    let first = values.first().copied().unwrap_or(0);
    let deltas: Vec<i64> = values
        .windows(2)
        .map(|w| (w[1] as u64).wrapping_sub(w[0] as u64) as i64)
        .collect();
    let min = deltas.iter().copied().min().unwrap_or(0);
    let offs = || {
        deltas
            .iter()
            .map(move |d| (*d as u64).wrapping_sub(min as u64))
    };
    let width = offs().map(bits::width_of).max().unwrap_or(0);
    let mut out = vec![DELTA];
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&min.to_le_bytes());
    out.push(width);
    bits::pack(&mut out, offs(), width);
    out
}

fn encode_zstd(values: &[i64], level: i32) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = vec![ZSTD];
    zstd_frame(&mut out, &raw, level);
    out
}

/// Encodes a block of integers with the smallest codec; `zstd_level` for the zstd one.
pub fn encode(values: &[i64], zstd_level: i32) -> Vec<u8> {
    if let Some(c) = encode_const(values) {
        return c;
    }
    let candidates = [
        Some(encode_for(values)),
        Some(encode_delta(values)),
        encode_scaled(values),
        encode_scaled_zstd(values, zstd_level),
        Some(encode_zstd(values, zstd_level)),
    ];
    candidates
        .into_iter()
        .flatten()
        .min_by_key(Vec::len)
        .unwrap_or_default()
}

/// The codec tag an encoded block uses (for statistics).
pub fn codec_name(block: &[u8]) -> &'static str {
    match block.first() {
        Some(&CONST) => "const",
        Some(&FOR) => "for-bitpack",
        Some(&DELTA) => "delta-bitpack",
        Some(&ZSTD) => "zstd",
        Some(&SCALED) => "scaled-delta",
        Some(&SCALED_ZSTD) => "scaled-delta-zstd",
        _ => "unknown",
    }
}

/// Decodes a block of `n` integers.
pub fn decode(mut b: &[u8], n: usize) -> Result<Vec<i64>, CodecError> {
    let b = &mut b;
    let out = match take_u8(b, "int codec tag")? {
        CONST => vec![take_i64(b, "constant")?; n],
        FOR => {
            let min = take_i64(b, "FOR min")?;
            let width = take_u8(b, "FOR width")?;
            bits::unpack(b, n, width)?
                .into_iter()
                .map(|o| o.wrapping_add(min as u64) as i64)
                .collect()
        }
        DELTA => {
            let first = take_i64(b, "delta first")?;
            let min = take_i64(b, "delta min")?;
            let width = take_u8(b, "delta width")?;
            let deltas = bits::unpack(b, n.saturating_sub(1), width)?;
            let mut out = Vec::with_capacity(n);
            if n > 0 {
                out.push(first);
            }
            let mut cur = first as u64;
            for d in deltas {
                cur = cur.wrapping_add(d.wrapping_add(min as u64));
                out.push(cur as i64);
            }
            out
        }
        SCALED => {
            let first = take_i64(b, "scaled first")?;
            let g = take_i64(b, "scale")? as u64;
            let min = take_i64(b, "scaled min")? as u64;
            let width = take_u8(b, "scaled width")?;
            if g <= 1 {
                return Err(CodecError::new(format!("scale {g} is not above 1")));
            }
            let deltas = bits::unpack(b, n.saturating_sub(1), width)?;
            let mut out = Vec::with_capacity(n);
            if n > 0 {
                out.push(first);
            }
            let mut cur = first;
            for d in deltas {
                let step = d
                    .checked_add(min)
                    .and_then(|x| x.checked_mul(g))
                    .and_then(|x| i64::try_from(x).ok())
                    .and_then(|x| cur.checked_add(x))
                    .ok_or_else(|| CodecError::new("scaled delta overflows i64"))?;
                cur = step;
                out.push(cur);
            }
            out
        }
        SCALED_ZSTD => {
            let first = take_i64(b, "scaled first")?;
            let g = take_i64(b, "scale")? as u64;
            if g == 0 {
                return Err(CodecError::new("scale 0"));
            }
            let raw = unzstd_frame(b)?;
            let mut r = crate::wire::Reader::new(&raw);
            let mut out = Vec::with_capacity(n.min(raw.len() + 1));
            if n > 0 {
                out.push(first);
            }
            let mut cur = first;
            for _ in 1..n {
                let d = r.varint().map_err(|e| CodecError::new(e.to_string()))?;
                cur = d
                    .checked_mul(g)
                    .and_then(|x| i64::try_from(x).ok())
                    .and_then(|x| cur.checked_add(x))
                    .ok_or_else(|| CodecError::new("scaled delta overflows i64"))?;
                out.push(cur);
            }
            if !r.done() {
                return Err(CodecError::new("bytes after the last delta"));
            }
            out
        }
        ZSTD => {
            let raw = unzstd_frame(b)?;
            if raw.len() != n * 8 {
                return Err(CodecError::new(format!(
                    "zstd int block holds {} bytes, {n} values need {}",
                    raw.len(),
                    n * 8
                )));
            }
            raw.chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    i64::from_le_bytes(a)
                })
                .collect()
        }
        other => return Err(CodecError::new(format!("unknown int codec {other}"))),
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec(any::<i64>(), 0..200)) {
            let b = encode(&values, 3);
            prop_assert_eq!(decode(&b, values.len()).unwrap(), values);
        }

        #[test]
        fn small_ranges_round_trip(base in any::<i64>(), offs in proptest::collection::vec(0i64..1000, 1..200)) {
            let values: Vec<i64> = offs.iter().map(|o| base.wrapping_add(*o)).collect();
            let b = encode(&values, 3);
            prop_assert_eq!(decode(&b, values.len()).unwrap(), values);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..100) {
            let _ = decode(&bytes, n);
        }
    }

    #[test]
    fn picks_the_smallest_codec() {
        // Unordered values in a small range: offsets pack tighter than deltas.
        let mut x = 1u64;
        let scattered: Vec<i64> = (0..1000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                5_000 + (x >> 54) as i64
            })
            .collect();
        let b = encode(&scattered, 3);
        assert_eq!(codec_name(&b), "for-bitpack");
        assert!(b.len() <= 10 + 1000 * 10 / 8, "{} bytes", b.len());
        for other in [encode_delta(&scattered), encode_zstd(&scattered, 3)] {
            assert!(b.len() <= other.len());
        }
    }

    #[test]
    fn regular_timestamps_cost_almost_nothing() {
        // Constant step: deltas are all equal, so delta width is 0.
        let ts: Vec<i64> = (0..1000)
            .map(|i| 1_700_000_000_000_000_000 + i * 1_000_000)
            .collect();
        let b = encode(&ts, 3);
        assert_eq!(codec_name(&b), "delta-bitpack");
        assert_eq!(b.len(), 1 + 8 + 8 + 1);
        let jittery: Vec<i64> = (0..1000)
            .map(|i| 1_700_000_000_000_000_000 + i * 1_000_000 + (i * 7919) % 1000)
            .collect();
        let b = encode(&jittery, 3);
        assert!(
            b.len() < 1000 * 2,
            "{} bytes for 1000 near-regular timestamps",
            b.len()
        );
        assert_eq!(decode(&b, 1000).unwrap(), jittery);
        assert_eq!(codec_name(&encode(&[5, 5, 5], 3)), "const");
    }

    #[test]
    fn second_precision_timestamps_use_scaled_deltas() {
        let mut x = 3u64;
        let mut t = 1_700_000_000_000_000_000i64;
        let ts: Vec<i64> = (0..1000)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                t += ((x >> 60) as i64) * 1_000_000_000;
                t
            })
            .collect();
        let b = encode(&ts, 3);
        assert_eq!(codec_name(&b), "scaled-delta");
        assert!(b.len() <= 26 + 1000 * 4 / 8, "{} bytes", b.len());
        assert_eq!(decode(&b, 1000).unwrap(), ts);
    }

    proptest! {
        #[test]
        fn scaled_round_trips(first in any::<i64>(), g in 2u64..1_000_000, steps in proptest::collection::vec(0u64..50, 1..100)) {
            let mut values = vec![first];
            for s in steps {
                let Some(next) = values.last().unwrap().checked_add((s * g) as i64) else { break };
                values.push(next);
            }
            if let Some(b) = encode_scaled(&values) {
                prop_assert_eq!(&decode(&b, values.len()).unwrap(), &values);
            }
            let b = encode_scaled_zstd(&values, 3).unwrap();
            prop_assert_eq!(decode(&b, values.len()).unwrap(), values);
        }
    }
}
