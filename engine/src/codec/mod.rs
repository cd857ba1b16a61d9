//! Column codecs: how one block of one column becomes bytes. Each encoder tries every
//! codec that applies and keeps the smallest output (ties go to the cheaper decode).
//! Decoders take the row count from the block header, check every length against the
//! input and the limits, and return [`CodecError`] instead of panicking.
//!
//! Byte layouts are specified in `docs/format/segment.md` (section "Column codecs").

pub mod bits;
pub mod ints;
pub mod strs;

/// Largest decompressed size a zstd frame inside a block may claim.
pub const BLOCK_DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// A block's bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column block does not decode: {what}")]
pub struct CodecError {
    /// What was wrong.
    pub what: String,
}

impl CodecError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        CodecError { what: what.into() }
    }
}

pub(crate) fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], CodecError> {
    if b.len() < n {
        return Err(CodecError::new(format!(
            "{what}: need {n} bytes, have {}",
            b.len()
        )));
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

pub(crate) fn take_u8(b: &mut &[u8], what: &str) -> Result<u8, CodecError> {
    Ok(take(b, 1, what)?.first().copied().unwrap_or(0))
}

pub(crate) fn take_u32(b: &mut &[u8], what: &str) -> Result<u32, CodecError> {
    let s = take(b, 4, what)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

pub(crate) fn take_i64(b: &mut &[u8], what: &str) -> Result<i64, CodecError> {
    let s = take(b, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(i64::from_le_bytes(a))
}

thread_local! {
    static ZSTD_CCTX: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// zstd-compresses `raw` at `level` as a *frame*: varint raw length (so the decoder
/// can bound its allocation), varint stored length, the stored bytes. When zstd
/// does not make the bytes smaller they are stored as they are, and the two lengths
/// are equal.
pub(crate) fn zstd_frame(out: &mut Vec<u8>, raw: &[u8], level: i32) {
    // Compressing an in-memory buffer only fails on allocation failure. One context
    // per thread and level: creating one per frame showed up in profiles.
    let z = ZSTD_CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = zstd::bulk::Compressor::new(level).ok().map(|z| (level, z));
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(raw).unwrap_or_default(),
            None => zstd::bulk::compress(raw, level).unwrap_or_default(),
        }
    });
    crate::wire::put_varint(out, raw.len() as u64);
    if z.is_empty() || z.len() >= raw.len() {
        crate::wire::put_varint(out, raw.len() as u64);
        out.extend_from_slice(raw);
    } else {
        crate::wire::put_varint(out, z.len() as u64);
        out.extend_from_slice(&z);
    }
}

fn take_varint(b: &mut &[u8], what: &str) -> Result<usize, CodecError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take_u8(b, what)?;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(v).map_err(|_| CodecError::new(format!("{what} too large")));
        }
    }
    Err(CodecError::new(format!("{what}: varint too long")))
}

pub(crate) fn unzstd_frame(b: &mut &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut raw = Vec::new();
    unzstd_frame_into(b, &mut raw)?;
    Ok(raw)
}

/// [`unzstd_frame`] into `raw` (cleared first), so a caller decoding many frames
/// reuses one buffer instead of faulting in fresh pages for each.
pub(crate) fn unzstd_frame_into(b: &mut &[u8], raw: &mut Vec<u8>) -> Result<(), CodecError> {
    raw.clear();
    let raw_len = take_varint(b, "frame raw length")?;
    if raw_len > BLOCK_DECOMPRESSED_BYTES_MAX {
        return Err(CodecError::new(format!(
            "frame claims {raw_len} bytes, over the {BLOCK_DECOMPRESSED_BYTES_MAX} limit"
        )));
    }
    let z_len = take_varint(b, "frame stored length")?;
    let z = take(b, z_len, "frame bytes")?;
    if z_len == raw_len {
        raw.extend_from_slice(z);
        return Ok(());
    }
    raw.reserve(raw_len);
    ZSTD_DCTX
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = zstd::bulk::Decompressor::new().ok();
            }
            match d.as_mut() {
                Some(d) => d.decompress_to_buffer(z, raw).map(|_| ()),
                None => zstd::bulk::decompress(z, raw_len).map(|v| *raw = v),
            }
        })
        .map_err(|e| CodecError::new(format!("zstd: {e}")))?;
    if raw.len() != raw_len {
        return Err(CodecError::new(format!(
            "zstd frame gave {} bytes, header said {raw_len}",
            raw.len()
        )));
    }
    Ok(())
}
