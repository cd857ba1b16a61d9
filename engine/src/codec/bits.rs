//! Fixed-width bit packing: `n` unsigned values of `width` bits (0..=64), little-endian
//! bit order, in `ceil(n * width / 8)` bytes.

use super::CodecError;

/// Bits needed to represent `v` (0 for 0).
pub fn width_of(v: u64) -> u8 {
    (64 - v.leading_zeros()) as u8
}

/// Bytes a packing of `n` values of `width` bits takes.
pub fn packed_len(n: usize, width: u8) -> usize {
    (n * usize::from(width)).div_ceil(8)
}

/// Appends `values` packed at `width` bits each. Every value must fit.
pub fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u64>, width: u8) {
    debug_assert!(width <= 64);
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits: u32 = 0;
    for v in values {
        debug_assert!(
            width == 64 || v >> width == 0,
            "value {v} does not fit {width} bits"
        );
        acc |= u128::from(v) << bits;
        bits += u32::from(width);
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
}

/// Unpacks `n` values of `width` bits from the start of `bytes`.
pub fn unpack(bytes: &[u8], n: usize, width: u8) -> Result<Vec<u64>, CodecError> {
    let mut out = Vec::with_capacity(n);
    for_each(bytes, n, width, |v| out.push(v))?;
    Ok(out)
}

/// Unpacks `n` values of `width` bits as `u32`s, each checked to be below `bound`
/// (dictionary ids: the check is one comparison of the largest).
pub fn unpack_u32_below(
    bytes: &[u8],
    n: usize,
    width: u8,
    bound: usize,
) -> Result<Vec<u32>, CodecError> {
    let mut out = Vec::with_capacity(n);
    let mut max = 0u64;
    for_each(bytes, n, width, |v| {
        max = max.max(v);
        out.push(v as u32);
    })?;
    if n > 0 && (max > u64::from(u32::MAX) || max as usize >= bound) {
        return Err(CodecError::new(format!(
            "id {max} outside a dictionary of {bound}"
        )));
    }
    Ok(out)
}

/// Calls `f` with each of the `n` values of `width` bits packed at the start of
/// `bytes`, in order. Values up to 56 bits wide are read as one unaligned 8-byte
/// word each (the last few from a zero-padded copy of the tail), not bit by bit.
pub fn for_each(
    bytes: &[u8],
    n: usize,
    width: u8,
    mut f: impl FnMut(u64),
) -> Result<(), CodecError> {
    if width > 64 {
        return Err(CodecError::new(format!("bit width {width} over 64")));
    }
    let need = packed_len(n, width);
    let src = bytes.get(..need).ok_or_else(|| {
        CodecError::new(format!(
            "packed ints need {need} bytes, have {}",
            bytes.len()
        ))
    })?;
    if width == 0 {
        (0..n).for_each(|_| f(0));
        return Ok(());
    }
    if width > 56 {
        let mask: u128 = (1u128 << width) - 1;
        let mut acc: u128 = 0;
        let mut bits: u32 = 0;
        let mut it = src.iter();
        for _ in 0..n {
            while bits < u32::from(width) {
                let b = it.next().copied().unwrap_or(0);
                acc |= u128::from(b) << bits;
                bits += 8;
            }
            f((acc & mask) as u64);
            acc >>= width;
            bits -= u32::from(width);
        }
        return Ok(());
    }
    let w = usize::from(width);
    let mask = (1u64 << width) - 1;
    let word = |b: &[u8], at: usize| -> u64 {
        b.get(at..at + 8)
            .and_then(|x| <[u8; 8]>::try_from(x).ok())
            .map_or(0, u64::from_le_bytes)
    };
    // Values whose 8-byte window lies inside `src`: value i starts at bit i * w.
    let fast = match src.len().checked_sub(8) {
        Some(last) => ((last * 8 + 7) / w + 1).min(n),
        None => 0,
    };
    for i in 0..fast {
        let bit = i * w;
        f((word(src, bit / 8) >> (bit % 8)) & mask);
    }
    if fast < n {
        // The rest from a padded copy of the bytes they live in (fewer than 8).
        let from = fast * w / 8;
        let mut tail = [0u8; 16];
        let rest = src.get(from..).unwrap_or(&[]);
        if let Some(t) = tail.get_mut(..rest.len()) {
            t.copy_from_slice(rest);
        }
        for i in fast..n {
            let bit = i * w - from * 8;
            f((word(&tail, bit / 8) >> (bit % 8)) & mask);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec(any::<u64>(), 0..300), width in 0u8..=64) {
            let values: Vec<u64> = values
                .into_iter()
                .map(|v| if width == 64 { v } else { v & ((1u64 << width) - 1) })
                .collect();
            let mut b = Vec::new();
            pack(&mut b, values.iter().copied(), width);
            prop_assert_eq!(b.len(), packed_len(values.len(), width));
            prop_assert_eq!(unpack(&b, values.len(), width).unwrap(), values.clone());
            // A prefix of the values from the same bytes (the tail path at every length).
            let k = values.len() / 2;
            prop_assert_eq!(unpack(&b, k, width).unwrap(), values[..k].to_vec());
            let bound = values.iter().max().map_or(0, |m| *m as usize + 1);
            if width <= 32 {
                let ids = unpack_u32_below(&b, values.len(), width, bound).unwrap();
                prop_assert_eq!(ids.iter().map(|v| u64::from(*v)).collect::<Vec<_>>(), values.clone());
                if bound > 0 {
                    prop_assert!(unpack_u32_below(&b, values.len(), width, bound - 1).is_err());
                }
            }
        }
    }

    #[test]
    fn short_input_is_an_error() {
        let mut b = Vec::new();
        pack(&mut b, [1u64, 2, 3].into_iter(), 9);
        assert!(unpack(&b[..2], 3, 9).is_err());
        assert!(unpack(&b, 3, 65).is_err());
        assert_eq!(width_of(0), 0);
        assert_eq!(width_of(255), 8);
        assert_eq!(width_of(u64::MAX), 64);
    }
}
