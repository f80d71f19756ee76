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
    /// The run was interrupted during the attempt (the stage saw its cancel): what the
    /// journal records for it too.
    Cancelled,
}

impl RecordOutcome {
    /// How an attempt that ended with `result` is recorded.
    pub fn of<T>(result: &Result<T, StageFailure>) -> RecordOutcome {
        RecordOutcome::of_failure(result.as_ref().err().map(|f| f.class))
    }

    /// How an attempt is recorded that failed with `class` (None: it succeeded).
    pub fn of_failure(class: Option<FailureClass>) -> RecordOutcome {
        match class {
            None => RecordOutcome::Succeeded,
            Some(FailureClass::Interrupted) => RecordOutcome::Cancelled,
            Some(_) => RecordOutcome::Failed,
        }
    }
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
            outcome: RecordOutcome::of(result),
            failure_class: failure.map(|f| f.class),
            error: failure.map(|f| f.message.clone()),
            body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_that_saw_the_interrupt_is_recorded_cancelled_as_the_journal_has_it() {
        let ok: Result<(), StageFailure> = Ok(());
        assert_eq!(RecordOutcome::of(&ok), RecordOutcome::Succeeded);
        let failed: Result<(), _> = Err(StageFailure::new(FailureClass::Timeout, "late"));
        assert_eq!(RecordOutcome::of(&failed), RecordOutcome::Failed);
        let cancelled: Result<(), _> =
            Err(StageFailure::new(FailureClass::Interrupted, "cancelled"));
        let record = AttemptRecord::new(2, &cancelled, ());
        assert_eq!(record.outcome, RecordOutcome::Cancelled);
        assert_eq!(
            serde_json::to_value(&record).expect("json")["outcome"],
            "cancelled"
        );
    }
}
