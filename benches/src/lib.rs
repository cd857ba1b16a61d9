//! Benchmark support: the deterministic data generator used by the benchmark tools,
//! and a server process's memory for the load tools (`mem`).

pub mod corpus;
pub mod gen;
pub mod mem;
