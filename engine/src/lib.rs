//! cinepipe: a declarative pipeline engine for story-to-video runs.
//!
//! A run spec (TOML) flows `spec` (parse, resolve profiles, check) → `plan` (a DAG) → `run` (the
//! composition root: services, the stage kinds, `exec`'s scheduler) → the run folder (`rundir`)
//! → `telemetry`. `layers.rs` tests that every import points down that order.
//! The binary is a thin shell over [`cli::run`].

pub mod artifact_metadata;
pub mod bench;
pub mod cli;
pub mod clients;
pub mod custom_nodes;
pub mod doctor;
pub mod exec;
pub mod exit;
pub mod feedback;
pub mod fsutil;
pub mod json_schema;
#[cfg(test)]
mod layers;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod run;
pub mod run_listing;
pub mod rundir;
pub mod sentinel;
pub mod serve;
pub mod services;
pub mod show;
pub mod spec;
pub mod stages;
pub mod story;
pub mod sweep;
pub mod telemetry;
#[doc(hidden)]
pub mod testkit;
pub mod toml_fmt;
pub mod workflow;

/// Kept at the crate root for callers of `cinepipe::verify`; it lives with the telemetry.
pub use telemetry::verify;
