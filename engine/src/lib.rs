//! Heimdall's storage engine: the data model, memtable, columnar segments, inverted
//! index, manifest, compaction and the task supervisor (see `ARCHITECTURE.md`).
//!
//! Built so far: the data model ([`model`]), the tokenizer shared by index and scan
//! ([`token`]), the ingest formats ([`ingest`]) and the WAL payload of a record batch
//! ([`walrec`]). It builds on the write-ahead log,
//! re-exported here so that the crates above the engine reach durability only through
//! it.

pub mod codec;
pub mod dedup;
pub mod engine;
pub mod fs;
pub mod ingest;
pub mod manifest;
pub mod memtable;
mod mmap;
pub mod model;
pub mod segment;
pub mod tasks;
pub mod template;
pub mod tier;
pub mod token;
pub mod walrec;
mod wire;

pub use wal;
