//! Heimdall's query language: parser, planner and executor over an engine snapshot
//! (see `ARCHITECTURE.md`). It reads storage only through `engine`, never files.

pub use engine;
