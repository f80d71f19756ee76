//! The summary's keys and where each comes from in the metadata: one table per line label,
//! used by the writer and by the cross-check alike, so the two cannot disagree about a key.

use serde_json::Value;

use crate::artifact_metadata::Outcome;

/// The label of the lines whose payload is text.
pub(super) const NOTE: &str = "FallbackNote";
/// The label whose first value is written bare.
pub(super) const OUTCOME: &str = "Outcome";

/// Where a summary value comes from, relative to the line's subject in the metadata.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extract {
    /// The value at this pointer.
    Value(&'static str),
    /// The length of the array at this pointer.
    Len(&'static str),
    /// How many scenes have this `Outcome`.
    ScenesWith(Outcome),
    /// The sum of the scenes' `Frames.Count`.
    SumFrames,
}

pub(super) const RUN_FIELDS: &[(&str, Extract)] = &[
    ("ContractVersion", Extract::Value("/ContractVersion")),
    ("Name", Extract::Value("/RunName")),
    ("Profile", Extract::Value("/Profile")),
    ("StartedAt", Extract::Value("/StartedAt")),
    ("EndedAt", Extract::Value("/EndedAt")),
];

pub(super) const QUEUE_CONFIG_FIELDS: &[(&str, Extract)] = &[
    ("SceneRetryBudget", Extract::Value("/SceneRetryBudget")),
    (
        "HistoryMaxWaitSeconds",
        Extract::Value("/HistoryMaxWaitSeconds"),
    ),
    (
        "HistoryPollIntervalSeconds",
        Extract::Value("/HistoryPollIntervalSeconds"),
    ),
    ("HistoryMaxAttempts", Extract::Value("/HistoryMaxAttempts")),
    (
        "PostExecutionTimeoutSeconds",
        Extract::Value("/PostExecutionTimeoutSeconds"),
    ),
];

pub(super) const LLM_FIELDS: &[(&str, Extract)] = &[
    ("Stage", Extract::Value("/Stage")),
    ("Provider", Extract::Value("/Provider")),
    ("Model", Extract::Value("/Model")),
    ("Health", Extract::Value("/Health")),
    ("FallbackUsed", Extract::Value("/FallbackUsed")),
    (
        "ResponseTimeSeconds",
        Extract::Value("/ResponseTimeSeconds"),
    ),
    ("PromptTokens", Extract::Value("/PromptTokens")),
    ("CompletionTokens", Extract::Value("/CompletionTokens")),
    ("TokensPerSecond", Extract::Value("/TokensPerSecond")),
    ("FinishReason", Extract::Value("/FinishReason")),
    ("CacheHit", Extract::Value("/CacheHit")),
    ("Error", Extract::Value("/Error")),
];

/// The scene line: the seeds' `Telemetry` fields in the contract's order, then the scene's
/// outcome, frame count and attempt count.
pub(super) const TELEMETRY_FIELDS: &[(&str, Extract)] = &[
    (
        "DurationSeconds",
        Extract::Value("/Telemetry/DurationSeconds"),
    ),
    ("QueueStart", Extract::Value("/Telemetry/QueueStart")),
    ("QueueEnd", Extract::Value("/Telemetry/QueueEnd")),
    (
        "HistoryAttempts",
        Extract::Value("/Telemetry/HistoryAttempts"),
    ),
    (
        "HistoryAttemptLimit",
        Extract::Value("/Telemetry/HistoryAttemptLimit"),
    ),
    ("pollLimit", Extract::Value("/Telemetry/pollLimit")),
    (
        "MaxWaitSeconds",
        Extract::Value("/Telemetry/MaxWaitSeconds"),
    ),
    (
        "PollIntervalSeconds",
        Extract::Value("/Telemetry/PollIntervalSeconds"),
    ),
    (
        "HistoryExitReason",
        Extract::Value("/Telemetry/HistoryExitReason"),
    ),
    (
        "ExecutionSuccessDetected",
        Extract::Value("/Telemetry/ExecutionSuccessDetected"),
    ),
    (
        "ExecutionSuccessAt",
        Extract::Value("/Telemetry/ExecutionSuccessAt"),
    ),
    (
        "PostExecutionTimeoutSeconds",
        Extract::Value("/Telemetry/PostExecutionTimeoutSeconds"),
    ),
    (
        "HistoryPostExecutionTimeoutReached",
        Extract::Value("/Telemetry/HistoryPostExecutionTimeoutReached"),
    ),
    (
        "SceneRetryBudget",
        Extract::Value("/Telemetry/SceneRetryBudget"),
    ),
    ("GPU.Name", Extract::Value("/Telemetry/GPU/Name")),
    (
        "GPU.VramBeforeMB",
        Extract::Value("/Telemetry/GPU/VramBeforeMB"),
    ),
    (
        "GPU.VramAfterMB",
        Extract::Value("/Telemetry/GPU/VramAfterMB"),
    ),
    (
        "GPU.VramDeltaMB",
        Extract::Value("/Telemetry/GPU/VramDeltaMB"),
    ),
    ("GPU.Source", Extract::Value("/Telemetry/GPU/Source")),
    (
        "DoneMarkerDetected",
        Extract::Value("/Telemetry/DoneMarkerDetected"),
    ),
    (
        "DoneMarkerWaitSeconds",
        Extract::Value("/Telemetry/DoneMarkerWaitSeconds"),
    ),
    (
        "DoneMarkerPath",
        Extract::Value("/Telemetry/DoneMarkerPath"),
    ),
    (
        "ForcedCopyTriggered",
        Extract::Value("/Telemetry/ForcedCopyTriggered"),
    ),
    (
        "ForcedCopyDebugPath",
        Extract::Value("/Telemetry/ForcedCopyDebugPath"),
    ),
    (
        "System.FallbackNotes",
        Extract::Len("/Telemetry/System/FallbackNotes"),
    ),
    ("Outcome", Extract::Value("/Outcome")),
    ("FrameCount", Extract::Value("/Frames/Count")),
    ("Attempts", Extract::Len("/SceneAttemptSummaries")),
];

pub(super) const OUTCOME_FIELDS: &[(&str, Extract)] = &[
    ("Outcome", Extract::Value("/Outcome")),
    ("Scenes", Extract::Len("/Scenes")),
    ("Succeeded", Extract::ScenesWith(Outcome::Success)),
    ("Failed", Extract::ScenesWith(Outcome::Failed)),
    ("Cancelled", Extract::ScenesWith(Outcome::Cancelled)),
    ("Skipped", Extract::ScenesWith(Outcome::Skipped)),
    ("Incomplete", Extract::ScenesWith(Outcome::Incomplete)),
    ("Frames", Extract::SumFrames),
    ("QualityPassed", Extract::Value("/QualityMetrics/Passed")),
];

/// The labels a line may have, for messages.
pub(crate) const RUN_LABELS: &[&str] = &["Run", "QueueConfig", "LLM", NOTE, OUTCOME];
pub(crate) const SCENE_LABELS: &[&str] = &["Telemetry", NOTE];

impl Extract {
    /// The value in `doc` for the subject at `base` (a pointer), or `None` when the metadata
    /// does not have it (a schema violation reports that).
    pub(crate) fn value(self, doc: &Value, base: &str) -> Option<Value> {
        match self {
            Extract::Value(p) => doc.pointer(&format!("{base}{p}")).cloned(),
            Extract::Len(p) => doc
                .pointer(&format!("{base}{p}"))
                .and_then(Value::as_array)
                .map(|a| Value::from(a.len())),
            Extract::ScenesWith(outcome) => {
                let scenes = doc.pointer("/Scenes")?.as_array()?;
                let mut n = 0u64;
                for s in scenes {
                    if s.get("Outcome")?.as_str()? == outcome.as_str() {
                        n += 1;
                    }
                }
                Some(Value::from(n))
            }
            Extract::SumFrames => {
                let scenes = doc.pointer("/Scenes")?.as_array()?;
                let mut n = 0u64;
                for s in scenes {
                    n += s.pointer("/Frames/Count")?.as_u64()?;
                }
                Some(Value::from(n))
            }
        }
    }

    /// The metadata pointers the value is read from: a violation at any of them (or above)
    /// makes a comparison with the summary meaningless.
    pub(crate) fn sources(self, doc: &Value, base: &str) -> Vec<String> {
        match self {
            Extract::Value(p) | Extract::Len(p) => vec![format!("{base}{p}")],
            Extract::ScenesWith(_) | Extract::SumFrames => {
                let field = if matches!(self, Extract::SumFrames) {
                    "/Frames/Count"
                } else {
                    "/Outcome"
                };
                let n = doc
                    .pointer("/Scenes")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                let mut v: Vec<String> = (0..n).map(|i| format!("/Scenes/{i}{field}")).collect();
                v.push("/Scenes".to_owned());
                v
            }
        }
    }

    /// The pointer a disagreement is reported at.
    pub(crate) fn pointer(self, base: &str) -> String {
        match self {
            Extract::Value(p) | Extract::Len(p) => format!("{base}{p}"),
            Extract::ScenesWith(_) | Extract::SumFrames => "/Scenes".to_owned(),
        }
    }
}
