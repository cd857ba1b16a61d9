//! Heimdall's query language: parser ([`parse`]), reference semantics ([`eval`]) and
//! the executor over an engine snapshot ([`exec`]). It reads storage only through
//! `engine`, never files. The language: `docs/query-language.md`.

pub mod arrow;
pub mod ast;
pub mod eval;
pub mod exec;
pub mod parse;
pub mod schema;

pub use engine;
pub use eval::{Cell, Table};
pub use exec::{
    parse_now, query, query_batches, run, run_batches, run_batches_each, run_batches_each_with,
    Limits, QueryError,
};
pub use parse::{parse, ParseError};
