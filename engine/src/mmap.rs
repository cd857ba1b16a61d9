//! The engine's only `unsafe`: mapping immutable segment files into memory.
//!
//! Segments are written once (temp file, fsync, rename) and never modified in place,
//! so a mapping of a published segment cannot observe concurrent writes. Deleting a
//! segment (compaction, retention) unlinks the file; existing mappings stay valid
//! until dropped. What would break the mapping is truncation of a published file by
//! something outside Heimdall; that is outside the contract of the data directory.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

pub(crate) use memmap2::Mmap;

/// Maps `file` read-only.
pub(crate) fn map(file: &File) -> io::Result<Mmap> {
    // SAFETY: see the module docs: the file is an immutable, published segment.
    unsafe { Mmap::map(file) }
}
