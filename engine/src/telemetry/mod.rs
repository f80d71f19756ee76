//! The telemetry contract: what a run's `artifact-metadata.json` holds (typed, with a schema
//! generated from the types), the `run-summary.txt` written from it, and `build`, which makes
//! both from a run folder.

pub mod build;
#[cfg(test)]
pub(crate) mod example;
mod parts;
mod summary;
pub mod verify;

pub use crate::artifact_metadata::*;
pub(crate) use summary::{Expected, Extract, expected_lines};
pub use summary::{Field, Line, ParseError, Payload, Subject, Summary, write_summary};
