//! The run spec as Rust types: the one source of truth for the schema, the docs and the checker.
//!
//! These are the serde-facing types. They deny unknown fields and carry the seeds' defaults;
//! `spec::check` turns a parsed file into a `CheckedSpec` with the rules that types cannot say.

mod profile;
mod quality;
mod retry;
mod run;
mod service;
mod stage;

pub use profile::{Profile, builtin_profiles};
pub use quality::{CheckEntry, MAX_CHECK_WEIGHT, QualityCheck, QualityThresholds};
pub use retry::{Backoff, FailureClass, RetryPolicy};
pub use run::RunSection;
pub use service::{ComfyUiService, Launch, OpenAiService, Service, ServiceKind};
pub use stage::{
    AwaitMarkerStage, CollectFramesStage, GpuSource, LlmStage, OnShort, OnTimeout,
    PatchWorkflowStage, QualityStage, QueueStage, ResponseFormat, Stage, StageCommon, StageKind,
    ValidateStage,
};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A cinepipe run spec: services, stages and the edges between them, and profiles.
///
/// Relative paths in a spec are resolved against `run.base_dir`, which is itself relative to
/// the spec file's own directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cinepipe run spec")]
pub struct SpecFile {
    /// What the run is called and where it writes.
    pub run: RunSection,
    /// The servers the stages talk to, by name.
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    /// The stages of the pipeline, by name. `needs` draws the edges between them.
    pub stages: IndexMap<String, Stage>,
    /// Named overlays of stage, service and run values (`cinepipe run --profile NAME`).
    /// `standard` (no changes) and `fast` (FastIteration) are built in; a spec may redefine `fast`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub profiles: IndexMap<String, Profile>,
}
