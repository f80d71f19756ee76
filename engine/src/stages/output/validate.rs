//! The `validate` stage's output.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `validate` stage's output: whether the run's telemetry keeps the contract so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ValidateOutput {
    pub passed: bool,
    /// The files checked, relative to the run folder.
    pub checked: Vec<String>,
    pub violations: Vec<String>,
}
