//! Stability sweeps: a suite of run specs, each run under each of its profiles a number of
//! times, every run a normal run folder under one sweep folder; verdicts per (spec, profile)
//! with the seeds' KPIs, judged by the suite's gates; JUnit for CI.

pub mod execute;
pub mod jobs;
pub mod junit;
pub mod manifest;
pub mod merge;
pub mod suite;
pub mod verdict;

pub use execute::{SweepError, SweepOutcome, SweepProgress, SweepRequest, sweep};
pub use jobs::Partition;
pub use suite::suite_schema;
pub use verdict::sweep_schema;
