//! The head every attempt record shares: which attempt, how it ended, and why it failed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exec::StageFailure;
use crate::spec::model::FailureClass;

/// How a recorded attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordOutcome {
    Succeeded,
    Failed,
}

/// One attempt's record (`attempt-<n>.json`): the shared head, then the kind's own fields
/// (`body`, written at the same level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttemptRecord<B> {
    pub attempt: u32,
    pub outcome: RecordOutcome,
    pub failure_class: Option<FailureClass>,
    pub error: Option<String>,
    #[serde(flatten)]
    pub body: B,
}

impl<B> AttemptRecord<B> {
    /// The record of an attempt that ended with `result`.
    pub fn new<T>(attempt: u32, result: &Result<T, StageFailure>, body: B) -> AttemptRecord<B> {
        let failure = result.as_ref().err();
        AttemptRecord {
            attempt,
            outcome: if failure.is_some() {
                RecordOutcome::Failed
            } else {
                RecordOutcome::Succeeded
            },
            failure_class: failure.map(|f| f.class),
            error: failure.map(|f| f.message.clone()),
            body,
        }
    }
}
