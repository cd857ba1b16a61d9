//! Heimdall's query language: the parser ([`parse`]), the plan of a query
//! (`plan`), block pruning by the index (`prune`), the scan of candidate blocks
//! (`scan`), aggregation ([`aggregate`]) and the executor that drives them over an
//! engine snapshot ([`exec`]); results are [`table`]s, sent as Arrow ([`arrow`]).
//! The reference semantics ([`eval`]) is plain code over every record, the oracle
//! the differential tests hold the executor to. It reads storage only through
//! `engine`, never files. The language: `docs/query-language.md`.

pub mod aggregate;
pub mod arrow;
pub mod ast;
pub mod eval;
pub mod exec;
pub mod parse;
mod plan;
mod prune;
mod scan;
pub mod schema;
pub mod table;

pub use engine;
pub use exec::{
    parse_now, query, query_batches, run, run_batches, run_batches_each, run_batches_each_with,
    Limits, QueryError,
};
pub use parse::{parse, ParseError};
pub use table::{Cell, Table};
