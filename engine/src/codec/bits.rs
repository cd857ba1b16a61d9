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
    let mut out = Vec::with_capacity(n);
    if width == 0 {
        out.resize(n, 0);
        return Ok(out);
    }
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
        out.push((acc & mask) as u64);
        acc >>= width;
        bits -= u32::from(width);
    }
    Ok(out)
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
            prop_assert_eq!(unpack(&b, values.len(), width).unwrap(), values);
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
