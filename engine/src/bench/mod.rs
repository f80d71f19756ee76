//! Benches: one spec under several variants (profiles, or profile overlays from a bench
//! file), run interleaved, compared with statistics a benchmarker can trust.

pub mod analysis;
pub mod environment;
pub mod execute;
pub mod plan;
pub mod plots;
pub mod results;
pub mod stats;

pub use execute::{BenchError, BenchOutcome, BenchRequest, bench};
pub use plan::bench_file_schema;
pub use results::results_schema;
#[cfg(test)]
mod tests;
