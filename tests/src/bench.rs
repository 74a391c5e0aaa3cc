//! The benchmark toolkit behind the `tollgate-bench` binary: a keep-alive HTTP
//! client, latency statistics, markdown tables, and one module per benchmark
//! (Admin API throughput, declarative import/export, config propagation to
//! data planes, fixed-rate proxy load). It measures products; it holds none of
//! their logic.

pub mod admin;
pub mod client;
pub mod cluster;
pub mod config_gen;
pub mod config_io;
#[cfg(test)]
pub mod fake_cp;
pub mod load;
pub mod snapshot;
pub mod stats;
pub mod table;

pub use client::{BenchError, HttpClient, Reply};
