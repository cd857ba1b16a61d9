//! Where an open segment's bytes come from: a mapped local file, or an
//! offloaded object read through the tier's caches (with the read-ahead that
//! scans need).

use std::path::Path;

use super::super::SegmentError;
use crate::tier::Tier;

/// Where a segment's bytes are: a mapped local file, or an object in the store
/// (read through the tier's caches).
#[derive(Debug)]
pub(super) enum Source {
    Local(bytes::Bytes),
    Remote {
        tier: std::sync::Arc<Tier>,
        object: String,
        size: u64,
        /// The header, when known without a request (from the manifest).
        head: Option<bytes::Bytes>,
        /// The object's last bytes (tail, footer, often the index directory),
        /// fetched at open.
        tail: bytes::Bytes,
        tail_start: u64,
    },
}

/// Bytes of the end of an offloaded segment fetched at open: enough for the
/// footer of a segment of a few hundred blocks in one request.
pub(super) const REMOTE_TAIL: u64 = 64 << 10;

/// A column chunk of an offloaded segment that is not cached brings the same
/// column's chunks of the blocks up to this many before and after it with it:
/// scans read a column block after block (docs/decisions/0005-object-store-reads.md).
pub(super) const READAHEAD_BLOCKS: usize = 16;

impl Source {
    pub(super) fn len(&self) -> u64 {
        match self {
            Source::Local(b) => b.len() as u64,
            Source::Remote { size, .. } => *size,
        }
    }

    /// Bytes `[start, start + len)`; `None` when outside the file. `index`: footer
    /// or index bytes (kept in the memory cache when remote).
    pub(super) fn range(
        &self,
        path: &Path,
        start: u64,
        len: u64,
        index: bool,
    ) -> Result<Option<bytes::Bytes>, SegmentError> {
        let Some(end) = start.checked_add(len).filter(|e| *e <= self.len()) else {
            return Ok(None);
        };
        match self {
            Source::Local(b) => Ok(Some(b.slice(start as usize..end as usize))),
            Source::Remote {
                tier,
                object,
                tail,
                tail_start,
                head,
                ..
            } => {
                if let Some(h) = head.as_ref().filter(|h| end <= h.len() as u64) {
                    return Ok(Some(h.slice(start as usize..end as usize)));
                }
                if start >= *tail_start {
                    let a = (start - tail_start) as usize;
                    return Ok(Some(tail.slice(a..a + len as usize)));
                }
                tier.read(object, start, len, index)
                    .map(Some)
                    .map_err(|source| SegmentError::Remote {
                        path: path.to_path_buf(),
                        source: Box::new(source),
                    })
            }
        }
    }
}
