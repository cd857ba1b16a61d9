//! The WAL's on-disk byte layout: file header, record frames, and the scanner that
//! classifies a file's bytes into valid records, a torn tail, or corruption.
//!
//! Everything here is pure (bytes in, values out) so that recovery, replay and the
//! fuzz target share one decoder. The layout is specified in `docs/format/wal.md`;
//! keep the two in step. Decoding never panics on any input: bytes from disk are
//! only read through `get`-style accessors.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt;

/// A log sequence number: the position of a record in the log. The first record of a
/// new log has LSN 1; every later record has the previous LSN + 1.
pub type Lsn = u64;

/// First eight bytes of every WAL file.
pub const MAGIC: [u8; 8] = *b"HMDLWAL\0";
/// Format version written by this build.
pub const FORMAT_VERSION: u16 = 1;
/// Oldest format version this build can read.
pub const OLDEST_SUPPORTED_VERSION: u16 = 1;
/// Size of the file header in bytes.
pub const HEADER_LEN: usize = 40;
/// Size of a record frame's header (crc, length, lsn) in bytes.
pub const FRAME_HEADER_LEN: usize = 16;
/// File name suffix of WAL files (`{first_lsn:020}.wal`).
pub const FILE_SUFFIX: &str = ".wal";

/// Known WAL format versions.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatVersion {
    /// Version 1: 40-byte header, 16-byte frame header, CRC32 (IEEE) per frame.
    V1 = 1,
}

impl TryFrom<u16> for FormatVersion {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        match v {
            1 => Ok(FormatVersion::V1),
            other => Err(other),
        }
    }
}

/// The decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version the file was written with.
    pub version: FormatVersion,
    /// LSN of the first record the file holds (or will hold).
    pub first_lsn: Lsn,
    /// Wall-clock creation time, milliseconds since the Unix epoch (informational).
    pub created_unix_ms: u64,
}

/// Why a header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short {
        /// Bytes present.
        len: usize,
    },
    /// The first eight bytes are not [`MAGIC`].
    BadMagic,
    /// The version field names a version this build cannot read.
    UnsupportedVersion {
        /// Version found.
        got: u16,
    },
    /// The header checksum does not match.
    BadChecksum {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the header bytes.
        computed: u32,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Short { len } => {
                write!(f, "header is {len} bytes, expected {HEADER_LEN}")
            }
            HeaderError::BadMagic => write!(f, "bad magic, not a heimdall WAL file"),
            HeaderError::UnsupportedVersion { got } => write!(
                f,
                "format version {got} not supported (this build reads {OLDEST_SUPPORTED_VERSION}..={FORMAT_VERSION})"
            ),
            HeaderError::BadChecksum { stored, computed } => write!(
                f,
                "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Encodes a file header.
pub fn encode_header(first_lsn: Lsn, created_unix_ms: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 10..16: flags (u16) and reserved (u32), zero in version 1.
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    h[24..32].copy_from_slice(&created_unix_ms.to_le_bytes());
    let crc = crc32fast::hash(&h[0..32]);
    h[32..36].copy_from_slice(&crc.to_le_bytes());
    // 36..40: reserved, zero.
    h
}

/// Decodes and verifies a file header from the start of `bytes`.
pub fn decode_header(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
    let h = bytes
        .get(..HEADER_LEN)
        .ok_or(HeaderError::Short { len: bytes.len() })?;
    if h.get(0..8) != Some(&MAGIC[..]) {
        return Err(HeaderError::BadMagic);
    }
    let short = HeaderError::Short { len: bytes.len() };
    let stored = u32_at(h, 32).ok_or(short.clone())?;
    let computed = crc32fast::hash(h.get(0..32).ok_or(short.clone())?);
    if stored != computed {
        return Err(HeaderError::BadChecksum { stored, computed });
    }
    let raw_version = u16_at(h, 8).ok_or(short.clone())?;
    let version = FormatVersion::try_from(raw_version)
        .map_err(|got| HeaderError::UnsupportedVersion { got })?;
    Ok(FileHeader {
        version,
        first_lsn: u64_at(h, 16).ok_or(short.clone())?,
        created_unix_ms: u64_at(h, 24).ok_or(short)?,
    })
}

/// Appends one framed record to `out`.
///
/// Frame: `crc32 u32 | payload_len u32 | lsn u64 | payload`, little-endian; the CRC covers
/// the length, the LSN and the payload, so a frame moved to another position, or with a
/// damaged length, fails its check.
pub fn encode_frame(out: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    assert_eq!(len as usize, payload.len(), "payload over 4 GiB");
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len.to_le_bytes());
    hasher.update(&lsn.to_le_bytes());
    hasher.update(payload);
    let crc = hasher.finalize();
    out.reserve(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Bytes of zeros the writer appends after each write group (overwritten by the next
/// group), so that a file's records always end at a zero frame header unless a write
/// was cut short.
pub const TERMINATOR_LEN: usize = FRAME_HEADER_LEN;

/// The encoded size of a record with a payload of `payload_len` bytes.
pub const fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// A frame header as stored, not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Stored CRC32.
    pub crc: u32,
    /// Payload length in bytes.
    pub len: u32,
    /// Record LSN.
    pub lsn: Lsn,
}

impl FrameHeader {
    /// Parses the 16 header bytes at the start of `b`; `None` when fewer are present.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        Some(FrameHeader {
            crc: u32_at(b, 0)?,
            len: u32_at(b, 4)?,
            lsn: u64_at(b, 8)?,
        })
    }

    /// All-zero header: what preallocated or never-written space reads as.
    pub fn is_zero(&self) -> bool {
        self.crc == 0 && self.len == 0 && self.lsn == 0
    }

    /// Whether `payload` (exactly `self.len` bytes) matches the stored checksum.
    pub fn verify(&self, payload: &[u8]) -> bool {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.len.to_le_bytes());
        hasher.update(&self.lsn.to_le_bytes());
        hasher.update(payload);
        hasher.finalize() == self.crc
    }
}

/// What is wrong with the frame at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    /// A zeroed frame header with whole frames of later LSNs after it.
    ZeroHeader,
    /// Fewer than 16 bytes remain for the frame header.
    ShortHeader,
    /// The declared payload length exceeds the record size limit.
    LengthOverLimit {
        /// Declared length.
        len: u32,
        /// Configured limit.
        max: u32,
    },
    /// The declared payload runs past the end of the file.
    ShortPayload {
        /// Declared length.
        len: u32,
        /// Bytes available after the frame header.
        available: usize,
    },
    /// The CRC does not match the frame's bytes.
    ChecksumMismatch {
        /// Stored checksum.
        stored: u32,
    },
    /// The frame checks out but carries an LSN other than the next one.
    UnexpectedLsn {
        /// LSN expected at this position.
        expected: Lsn,
        /// LSN found.
        got: Lsn,
    },
}

impl fmt::Display for FrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFault::ZeroHeader => write!(f, "zeroed frame header before later records"),
            FrameFault::ShortHeader => write!(f, "truncated frame header"),
            FrameFault::LengthOverLimit { len, max } => {
                write!(f, "frame length {len} over the record limit {max}")
            }
            FrameFault::ShortPayload { len, available } => write!(
                f,
                "frame declares {len} payload bytes but only {available} remain"
            ),
            FrameFault::ChecksumMismatch { stored } => {
                write!(f, "frame checksum mismatch (stored {stored:#010x})")
            }
            FrameFault::UnexpectedLsn { expected, got } => {
                write!(f, "frame has LSN {got}, expected {expected}")
            }
        }
    }
}

/// A verified frame located in a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef {
    /// Record LSN.
    pub lsn: Lsn,
    /// Offset of the frame header in the file.
    pub offset: usize,
    /// Offset of the payload.
    pub payload_offset: usize,
    /// Payload length.
    pub len: usize,
}

impl FrameRef {
    /// Offset just past this frame.
    pub fn end(&self) -> usize {
        self.payload_offset + self.len
    }
}

/// Reads and verifies the frame at `offset`, which must carry `expected_lsn`.
pub fn read_frame(
    bytes: &[u8],
    offset: usize,
    expected_lsn: Lsn,
    record_bytes_max: u32,
) -> Result<FrameRef, FrameFault> {
    let rest = bytes.get(offset..).unwrap_or(&[]);
    let header = FrameHeader::parse(rest).ok_or(FrameFault::ShortHeader)?;
    if header.len > record_bytes_max {
        return Err(FrameFault::LengthOverLimit {
            len: header.len,
            max: record_bytes_max,
        });
    }
    let available = rest.len() - FRAME_HEADER_LEN;
    let payload = rest
        .get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len as usize)
        .ok_or(FrameFault::ShortPayload {
            len: header.len,
            available,
        })?;
    if !header.verify(payload) {
        return Err(FrameFault::ChecksumMismatch { stored: header.crc });
    }
    if header.lsn != expected_lsn {
        return Err(FrameFault::UnexpectedLsn {
            expected: expected_lsn,
            got: header.lsn,
        });
    }
    Ok(FrameRef {
        lsn: header.lsn,
        offset,
        payload_offset: offset + FRAME_HEADER_LEN,
        len: header.len as usize,
    })
}

/// How the bytes of a file end after its last valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The file ends exactly after the last frame.
    Clean,
    /// A zero frame header follows: the terminator the writer puts after every write
    /// group, or preallocated never-written space.
    Zeroes,
    /// A whole frame from the file's earlier life follows: a recycled file's stale
    /// data (its CRC holds, its LSN is below the file's first LSN). Not a torn write;
    /// the next record simply goes at `offset`.
    Stale {
        /// Where the stale frame starts.
        offset: usize,
    },
    /// Something other than zeros or a stale frame follows, with no valid frame of a
    /// later LSN anywhere after it: a write cut short by a crash. The file's records
    /// end at `offset`.
    Torn {
        /// Where the first invalid frame starts.
        offset: usize,
        /// What was wrong with it.
        fault: FrameFault,
    },
}

/// Result of scanning one file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The verified header.
    pub header: FileHeader,
    /// Every valid frame, in order.
    pub frames: Vec<FrameRef>,
    /// Offset just past the last valid frame (the header's end when there is none).
    pub valid_end: usize,
    /// LSN the next record after this file must carry.
    pub next_lsn: Lsn,
    /// How the file ends.
    pub tail: Tail,
}

/// Why a file's bytes cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// The header is missing or damaged.
    Header(HeaderError),
    /// A damaged frame with a valid frame of a later LSN after it: data written whole
    /// was damaged afterwards.
    Frame {
        /// Offset of the damaged frame.
        offset: usize,
        /// What was wrong with it.
        fault: FrameFault,
    },
}

/// Scans a whole WAL file: the header, then frames with consecutive LSNs from the
/// header's first LSN.
///
/// At the first frame that does not verify, the scanner looks at every later offset for
/// a frame that verifies with a higher LSN. Finding one means bytes written whole sit
/// after the damage, so the damage is corruption ([`ScanError::Frame`]). Finding none
/// means the file's records end there ([`Tail::Torn`]); whether that is acceptable is
/// for the caller to decide (recovery accepts it in the newest file, and in an older
/// file only if the next file starts at exactly the LSN this one reached).
pub fn scan_file(bytes: &[u8], record_bytes_max: u32) -> Result<Scan, ScanError> {
    let header = decode_header(bytes).map_err(ScanError::Header)?;
    let mut frames = Vec::new();
    let mut offset = HEADER_LEN;
    let mut next_lsn = header.first_lsn;
    let tail = loop {
        if offset == bytes.len() {
            break Tail::Clean;
        }
        let rest = bytes.get(offset..).unwrap_or(&[]);
        if rest.iter().all(|&b| b == 0) {
            break Tail::Zeroes;
        }
        if FrameHeader::parse(rest).is_some_and(|h| h.is_zero()) {
            // The terminator the writer leaves after every group, or unwritten space.
            if later_valid_frame(bytes, offset, next_lsn, record_bytes_max) {
                let fault = FrameFault::ZeroHeader;
                return Err(ScanError::Frame { offset, fault });
            }
            break Tail::Zeroes;
        }
        match read_frame(bytes, offset, next_lsn, record_bytes_max) {
            Ok(frame) => {
                offset = frame.end();
                next_lsn += 1;
                frames.push(frame);
            }
            Err(fault) => {
                if later_valid_frame(bytes, offset, next_lsn, record_bytes_max) {
                    return Err(ScanError::Frame { offset, fault });
                }
                if matches!(fault, FrameFault::UnexpectedLsn { got, .. } if got < header.first_lsn)
                {
                    break Tail::Stale { offset };
                }
                break Tail::Torn { offset, fault };
            }
        }
    };
    Ok(Scan {
        header,
        frames,
        valid_end: offset,
        next_lsn,
        tail,
    })
}

/// Whether a verified frame with an LSN after `expected_lsn` starts at any offset from
/// `from` on. Cheap filters (LSN range, length bounds) run before the checksum so this
/// is linear in practice.
fn later_valid_frame(bytes: &[u8], from: usize, expected_lsn: Lsn, record_bytes_max: u32) -> bool {
    let remaining = bytes.len().saturating_sub(from) as u64;
    // Each frame takes at least FRAME_HEADER_LEN bytes, which bounds how far the LSN of
    // any frame that fits in the remaining bytes can run ahead.
    let lsn_max = expected_lsn.saturating_add(remaining / FRAME_HEADER_LEN as u64 + 1);
    let mut at = from;
    while at + FRAME_HEADER_LEN <= bytes.len() {
        if let Some(h) = bytes.get(at..).and_then(FrameHeader::parse) {
            let plausible = h.lsn > expected_lsn
                && h.lsn <= lsn_max
                && h.len <= record_bytes_max
                && at + FRAME_HEADER_LEN + h.len as usize <= bytes.len();
            if plausible {
                let start = at + FRAME_HEADER_LEN;
                if let Some(payload) = bytes.get(start..start + h.len as usize) {
                    if h.verify(payload) {
                        return true;
                    }
                }
            }
        }
        at += 1;
    }
    false
}

/// Parses a WAL file name (`{first_lsn:020}.wal`) into its first LSN.
pub fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(FILE_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name for a WAL file whose first record is `first_lsn`.
pub fn file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{FILE_SUFFIX}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn file_with(first: Lsn, payloads: &[&[u8]]) -> Vec<u8> {
        let mut b = encode_header(first, 7).to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_frame(&mut b, first + i as u64, p);
        }
        b
    }

    #[test]
    fn header_round_trips() {
        let h = decode_header(&encode_header(42, 1234)).unwrap();
        assert_eq!(h.first_lsn, 42);
        assert_eq!(h.created_unix_ms, 1234);
        assert_eq!(h.version, FormatVersion::V1);
    }

    #[test]
    fn header_rejects_damage() {
        let mut h = encode_header(42, 1234);
        h[20] ^= 1;
        assert!(matches!(
            decode_header(&h),
            Err(HeaderError::BadChecksum { .. })
        ));
        let mut h = encode_header(42, 1234);
        h[0] = b'X';
        assert_eq!(decode_header(&h), Err(HeaderError::BadMagic));
        assert_eq!(decode_header(&h[..3]), Err(HeaderError::Short { len: 3 }));
    }

    #[test]
    fn scan_reads_frames_and_clean_tail() {
        let b = file_with(5, &[b"a", b"", b"hello"]);
        let s = scan_file(&b, 1024).unwrap();
        assert_eq!(s.frames.len(), 3);
        assert_eq!(s.next_lsn, 8);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.valid_end, b.len());
        let f = s.frames[2];
        assert_eq!(&b[f.payload_offset..f.end()], b"hello");
    }

    #[test]
    fn zeroes_after_frames_are_a_clean_end() {
        let mut b = file_with(1, &[b"abc"]);
        b.extend_from_slice(&[0u8; 100]);
        let s = scan_file(&b, 1024).unwrap();
        assert_eq!(s.tail, Tail::Zeroes);
        assert_eq!(s.frames.len(), 1);
    }

    #[test]
    fn torn_last_frame_ends_the_records() {
        let b = file_with(1, &[b"abc", b"defgh"]);
        let cut = &b[..b.len() - 2];
        let s = scan_file(cut, 1024).unwrap();
        assert!(matches!(s.tail, Tail::Torn { .. }));
        assert_eq!(s.frames.len(), 1);
    }

    #[test]
    fn stale_frames_of_a_recycled_file_end_the_records() {
        // An old incarnation held LSNs 1..=3; recycled for LSN 10 with one new record.
        let old = file_with(1, &[b"old-one", b"old-two", b"old-three"]);
        let mut b = old.clone();
        let mut fresh = encode_header(10, 0).to_vec();
        encode_frame(&mut fresh, 10, b"new");
        b[..fresh.len()].copy_from_slice(&fresh);
        let s = scan_file(&b, 1024).unwrap();
        assert_eq!(s.frames.len(), 1);
        assert_eq!(s.next_lsn, 11);
        // The new frame is shorter than the old first frame: what follows it is the
        // old frame's tail (garbage), not a whole stale frame.
        assert!(matches!(s.tail, Tail::Torn { .. }));
        // Once new data ends exactly on an old frame boundary, the stale frame shows.
        let mut b = old.clone();
        let mut fresh = encode_header(10, 0).to_vec();
        encode_frame(&mut fresh, 10, b"new-one");
        b[..fresh.len()].copy_from_slice(&fresh);
        let s = scan_file(&b, 1024).unwrap();
        assert_eq!(s.frames.len(), 1);
        assert_eq!(
            s.tail,
            Tail::Stale {
                offset: fresh.len()
            }
        );
    }

    #[test]
    fn damage_before_a_valid_frame_is_corruption() {
        let mut b = file_with(1, &[b"abc", b"defgh", b"ijk"]);
        let second = HEADER_LEN + frame_len(3) + FRAME_HEADER_LEN + 1;
        b[second] ^= 0x40;
        match scan_file(&b, 1024) {
            Err(ScanError::Frame { offset, fault }) => {
                assert_eq!(offset, HEADER_LEN + frame_len(3));
                assert!(matches!(fault, FrameFault::ChecksumMismatch { .. }));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn frame_with_wrong_lsn_is_rejected() {
        let mut b = encode_header(1, 0).to_vec();
        encode_frame(&mut b, 1, b"x");
        encode_frame(&mut b, 3, b"y");
        assert!(matches!(
            scan_file(&b, 1024),
            Err(ScanError::Frame {
                fault: FrameFault::UnexpectedLsn {
                    expected: 2,
                    got: 3
                },
                ..
            })
        ));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_file_name(&file_name(17)), Some(17));
        assert_eq!(parse_file_name("17.wal"), None);
        assert_eq!(parse_file_name("0000000000000000001x.wal"), None);
    }
}
