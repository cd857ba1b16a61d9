//! Benchmark support: the deterministic data generator used by the benchmark tools.

pub mod gen;
