//! Replay: a streaming iterator over the records of a WAL, from a given LSN up to what
//! was written when the replay started. Every frame is verified again (checksum and
//! LSN continuity), so replay never yields damaged bytes.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{Result, WalError};
use crate::format::{self, FrameFault, FrameHeader, Lsn, FRAME_HEADER_LEN, HEADER_LEN};
use crate::recovery::DECODE_RECORD_BYTES_MAX;

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its payload, as appended.
    pub payload: Bytes,
}

/// Iterator over records in LSN order; see the module docs.
#[derive(Debug)]
pub struct Replay {
    files: Vec<(Lsn, PathBuf)>,
    next_file: usize,
    current: Option<(PathBuf, BufReader<fs::File>)>,
    offset: u64,
    expected: Lsn,
    from: Lsn,
    end: Lsn,
    done: bool,
}

impl Replay {
    /// `files` oldest first; yields LSNs in `from..end`.
    pub(crate) fn new(files: Vec<(Lsn, PathBuf)>, from: Lsn, end: Lsn) -> Result<Self> {
        if let Some((oldest, _)) = files.first() {
            if from < *oldest && from < end {
                return Err(WalError::Truncated {
                    requested: from,
                    oldest: *oldest,
                });
            }
        }
        // Start at the newest file whose first LSN is <= from.
        let start = files
            .iter()
            .rposition(|(first, _)| *first <= from)
            .unwrap_or(0);
        Ok(Replay {
            files,
            next_file: start,
            current: None,
            offset: 0,
            expected: 0,
            from,
            end,
            done: from >= end,
        })
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some((first, path)) = self.files.get(self.next_file).cloned() else {
            return Ok(false);
        };
        self.next_file += 1;
        let file = fs::File::open(&path).map_err(|e| WalError::io("open", &path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_LEN];
        reader
            .read_exact(&mut header)
            .map_err(|e| WalError::io("read header", &path, e))?;
        let h = format::decode_header(&header).map_err(|fault| WalError::CorruptHeader {
            path: path.clone(),
            fault,
        })?;
        if h.first_lsn != first {
            return Err(WalError::NameMismatch {
                path,
                named: first,
                header: h.first_lsn,
            });
        }
        if self.expected != 0 && first != self.expected {
            return Err(WalError::Gap {
                path,
                expected: self.expected,
                got: first,
            });
        }
        self.expected = first;
        self.offset = HEADER_LEN as u64;
        self.current = Some((path, reader));
        Ok(true)
    }

    fn read_one(&mut self) -> Result<Option<crate::reader::Record>> {
        loop {
            // A file's records end where the next file begins; whatever follows them in
            // the file (zeros, stale frames of a recycled file) is never read.
            let next_first = self.files.get(self.next_file).map(|(first, _)| *first);
            if self.current.is_some() && next_first == Some(self.expected) {
                self.current = None;
            }
            if self.current.is_none() && !self.open_next()? {
                // Files ran out before `end`: something removed or cut them under us.
                return Err(WalError::Truncated {
                    requested: self.expected,
                    oldest: self.end,
                });
            }
            let Some((path, reader)) = self.current.as_mut() else {
                continue;
            };
            let mut hb = [0u8; FRAME_HEADER_LEN];
            match read_full(reader, &mut hb) {
                Ok(n) if n < FRAME_HEADER_LEN => {
                    return Err(corrupt(path, self.offset, FrameFault::ShortHeader))
                }
                Ok(_) => {}
                Err(e) => return Err(WalError::io("read", path.clone(), e)),
            }
            let Some(h) = FrameHeader::parse(&hb) else {
                return Err(corrupt(path, self.offset, FrameFault::ShortHeader));
            };
            if h.len > DECODE_RECORD_BYTES_MAX {
                let fault = FrameFault::LengthOverLimit {
                    len: h.len,
                    max: DECODE_RECORD_BYTES_MAX,
                };
                return Err(corrupt(path, self.offset, fault));
            }
            let mut payload = vec![0u8; h.len as usize];
            let got = read_full(reader, &mut payload)
                .map_err(|e| WalError::io("read", path.clone(), e))?;
            if got < payload.len() {
                let fault = FrameFault::ShortPayload {
                    len: h.len,
                    available: got,
                };
                return Err(corrupt(path, self.offset, fault));
            }
            if !h.verify(&payload) {
                return Err(corrupt(
                    path,
                    self.offset,
                    FrameFault::ChecksumMismatch { stored: h.crc },
                ));
            }
            if h.lsn != self.expected {
                let fault = FrameFault::UnexpectedLsn {
                    expected: self.expected,
                    got: h.lsn,
                };
                return Err(corrupt(path, self.offset, fault));
            }
            self.offset += (FRAME_HEADER_LEN + payload.len()) as u64;
            self.expected += 1;
            if h.lsn >= self.from {
                return Ok(Some(Record {
                    lsn: h.lsn,
                    payload: Bytes::from(payload),
                }));
            }
        }
    }
}

fn corrupt(path: &std::path::Path, offset: u64, fault: FrameFault) -> WalError {
    WalError::CorruptRecord {
        path: path.to_path_buf(),
        offset,
        fault,
    }
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Iterator for Replay {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.expected >= self.end && self.expected != 0 {
            return None;
        }
        match self.read_one() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
