//! Little helpers for the engine's binary encodings (WAL payloads, segment footers):
//! LEB128 varints, zigzag, length-prefixed strings, and a bounds-checked reader that
//! reports the offset of what went wrong instead of panicking.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Bytes that do not decode, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad encoding at byte {offset}: {what}")]
pub struct DecodeError {
    /// Byte offset in the input.
    pub offset: usize,
    /// What was wrong.
    pub what: String,
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    pub(crate) fn fail<T>(&self, what: impl Into<String>) -> Result<T, DecodeError> {
        Err(DecodeError {
            offset: self.at,
            what: what.into(),
        })
    }

    pub(crate) fn done(&self) -> bool {
        self.at >= self.b.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.b.get(self.at) {
            Some(v) => {
                self.at += 1;
                Ok(*v)
            }
            None => self.fail("unexpected end"),
        }
    }

    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.b.get(self.at..self.at.saturating_add(n)) {
            Some(s) => {
                self.at += n;
                Ok(s)
            }
            None => self.short(n),
        }
    }

    #[cold]
    fn short(&self, n: usize) -> Result<&'a [u8], DecodeError> {
        let left = self.b.len().saturating_sub(self.at);
        self.fail(format!("{n} bytes expected, {left} left"))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(a))
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        // Most varints in segments are one byte.
        if let Some(&b) = self.b.get(self.at) {
            if b & 0x80 == 0 {
                self.at += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint longer than 10 bytes")
    }

    /// A varint count or length, at most `max`.
    #[inline]
    pub(crate) fn len(&mut self, max: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= max => Ok(n),
            _ => self.over(n, max),
        }
    }

    #[cold]
    fn over(&self, n: u64, max: usize) -> Result<usize, DecodeError> {
        self.fail(format!("length {n} over the limit {max}"))
    }

    pub(crate) fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.len(self.b.len())?;
        let start = self.at;
        let s = self.bytes(n)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(DecodeError {
                offset: start + e.valid_up_to(),
                what: "invalid UTF-8".into(),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_read_back_in_order_and_truncation_is_an_error(vs in proptest::collection::vec(any::<u64>().prop_map(|v| v >> (v % 64)), 1..40)) {
            let mut b = Vec::new();
            for v in &vs {
                put_varint(&mut b, *v);
            }
            let mut r = Reader::new(&b);
            for v in &vs {
                prop_assert_eq!(r.varint().unwrap(), *v);
            }
            prop_assert!(r.done());
            // The last varint cut short does not decode.
            let last = {
                let mut one = Vec::new();
                put_varint(&mut one, *vs.last().unwrap());
                one.len()
            };
            if last > 1 {
                let cut = &b[..b.len() - 1];
                let mut r = Reader::new(cut);
                for v in &vs[..vs.len() - 1] {
                    prop_assert_eq!(r.varint().unwrap(), *v);
                }
                prop_assert!(r.varint().is_err());
            }
        }
    }
}
