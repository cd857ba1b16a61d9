//! Heimdall's storage engine: the data model, memtable, columnar segments, inverted
//! index, manifest, compaction and the task supervisor (see `ARCHITECTURE.md`).
//!
//! It builds on the write-ahead log, re-exported here so that the crates above the
//! engine reach durability only through it.

pub use wal;
