//! The JSON Schemas of the stage kinds' outputs and attempt records, generated from their types
//! (`schemas/<kind>-output.schema.json`, `schemas/<kind>-attempt.schema.json`).

use serde_json::Value;

use super::{
    FramesOutput, FramesRecord, LlmRecord, MarkerOutput, MarkerRecord, PatchOutput, QualityOutput,
    QualityRecord, QueueOutput, QueueRecord, ValidateOutput,
};
use crate::json_schema::draft07;

/// The schemas of the stage kinds' outputs (`stages/<stage>[/<item>]/output.json`) and attempt
/// records (`attempt-<n>.json`): (file name, schema). The `llm` stage's output is the story,
/// whose schema is the stage's `output_schema`.
pub fn stage_schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("llm-attempt.schema.json", draft07::<LlmRecord>()),
        (
            "patch-workflow-output.schema.json",
            draft07::<PatchOutput>(),
        ),
        ("queue-output.schema.json", draft07::<QueueOutput>()),
        ("queue-attempt.schema.json", draft07::<QueueRecord>()),
        ("await-marker-output.schema.json", draft07::<MarkerOutput>()),
        (
            "await-marker-attempt.schema.json",
            draft07::<MarkerRecord>(),
        ),
        (
            "collect-frames-output.schema.json",
            draft07::<FramesOutput>(),
        ),
        (
            "collect-frames-attempt.schema.json",
            draft07::<FramesRecord>(),
        ),
        ("quality-output.schema.json", draft07::<QualityOutput>()),
        ("quality-attempt.schema.json", draft07::<QualityRecord>()),
        ("validate-output.schema.json", draft07::<ValidateOutput>()),
    ]
}
