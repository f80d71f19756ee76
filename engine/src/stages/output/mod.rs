//! The typed outputs (`output.json`) and attempt records (`attempt-<n>.json`) of the stage
//! kinds: one type per kind, written by its stage and read back by the stages after it,
//! telemetry, verify and show, so that a renamed field fails to compile on the reading side.
//!
//! The `llm` stage's output is the story itself, whose schema the spec's author supplies: it
//! stays JSON. Every other kind's output is a type here.

mod frames;
mod llm;
mod marker;
mod patch;
mod quality;
mod queue;
mod record;
mod render;
mod validate;

pub use frames::{FramesAttempt, FramesOutput, FramesRecord, SkippedFile};
pub use llm::{LlmAttempt, LlmRecord, ProviderReport};
pub use marker::{
    Detection, ForcedCopy, MarkerAttempt, MarkerBody, MarkerOutput, MarkerRecord, StageSystem,
};
pub use patch::{ObjectInfoCheck, PatchOutput, SceneMeta};
pub use quality::{QualityOutput, QualityPart, QualityRecord, QualityTelemetry, RunQuality};
pub use queue::{QueueOutput, QueueRecord, QueueTelemetry, WebsocketReport};
pub use record::{AttemptRecord, RecordOutcome};
pub use render::RenderRef;
pub use validate::ValidateOutput;
