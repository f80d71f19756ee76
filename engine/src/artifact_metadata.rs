//! The types of `artifact-metadata.json`. Field names are the seeds' names byte for byte (existing
//! tooling reads them); `schemas/artifact-metadata.schema.json` is generated from these types.
//!
//! Rules the types encode, so that the schema enforces them:
//! - every field is required: a reader never has to guess whether a key was forgotten or means
//!   "nothing happened";
//! - `null` means "not measured": the step did not run, or no source answered (a GPU reading with
//!   no NVML, no `/system_stats` and no `nvidia-smi`). Flags are never null (`false` = it did not
//!   happen), counts and configured limits are never null;
//! - objects deny unknown keys, so a misspelt name (`VramDeltaMb`) is a violation, not a silently
//!   missing field.
//!
//! The types sit below `clients` and `stages`, which fill parts of them (a scene's frames, its
//! queue telemetry, its quality scores); `telemetry` builds the whole file from a run folder and
//! checks it.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::spec::model::{FailureClass, QualityCheck};

mod scene;

pub use scene::{
    AttemptOutcome, AttemptSummary, Frames, GpuReadingSource, GpuTelemetry, HistoryExitReason,
    SceneRecord, SceneSystem, Telemetry,
};

/// The contract version this build writes and checks.
pub const CONTRACT_VERSION: u32 = 1;

/// The file names of a run directory that the contract covers.
pub const METADATA_FILE: &str = "artifact-metadata.json";
pub const SUMMARY_FILE: &str = "run-summary.txt";

/// An instant, written as RFC 3339 in UTC (`2025-11-13T10:04:05.25Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub jiff::Timestamp);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(jiff::Timestamp::now())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Timestamp {
    type Err = jiff::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Timestamp)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Timestamp {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

/// The schema of a run's `artifact-metadata.json` (the telemetry contract).
///
/// Every property of every object is required, `Option`s included: the contract says a field is
/// always present and `null` when nothing was measured, so an absent key is always a violation.
pub fn artifact_metadata_schema() -> Value {
    let mut schema = crate::json_schema::draft07::<ArtifactMetadata>();
    require_all(&mut schema);
    schema
}

fn require_all(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                let keys: Vec<Value> = props.keys().cloned().map(Value::String).collect();
                m.insert("required".to_owned(), Value::Array(keys));
            }
            m.values_mut().for_each(require_all);
        }
        Value::Array(a) => a.iter_mut().for_each(require_all),
        _ => {}
    }
}

/// Everything a run recorded: `runs/<run-id>/artifact-metadata.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
#[schemars(title = "cinepipe artifact metadata")]
pub struct ArtifactMetadata {
    /// Version of this contract; 1.
    #[schemars(range(min = 1, max = 1))]
    pub contract_version: u32,
    /// The run's id (sortable by time, unique): the name of its folder under `runs/`.
    #[schemars(length(min = 1))]
    pub run_id: String,
    /// `run.name` of the spec.
    pub run_name: String,
    /// The profile the run was planned with (`standard`, `fast`, or one the spec defines).
    pub profile: String,
    /// When the run started.
    pub started_at: Timestamp,
    /// When the run ended; null while it runs or when it was killed before it could say.
    pub ended_at: Option<Timestamp>,
    /// How the run ended.
    pub outcome: Outcome,
    /// The story the `llm` stage wrote; null when no story was written.
    pub story: Option<StoryInfo>,
    /// The queue policy the run's `queue` stage used.
    pub queue_config: QueueConfig,
    /// One entry per `llm` stage instance, in the order they ran.
    #[serde(rename = "LLM")]
    pub llm: Vec<LlmTelemetry>,
    /// One entry per scene of the story, in story order.
    pub scenes: Vec<SceneRecord>,
    /// Attempts of the stages that run once per run (the `llm` stage, `quality`, `validate`).
    /// Per-scene stages record theirs in the scene's `SceneAttemptSummaries`.
    pub stage_attempt_summaries: Vec<AttemptSummary>,
    /// Scores of the run against the quality thresholds.
    pub quality_metrics: QualityMetrics,
    /// Run-wide resource readings and fallback notes.
    pub system: RunSystem,
    /// Ratings given to the run's scenes after it ended; empty until someone rates one.
    pub feedback: Vec<Feedback>,
}

/// How a run or a scene ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Every stage finished and passed.
    Success,
    /// A stage failed and its retry budget ran out.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM before it finished.
    Cancelled,
    /// Not attempted, because an earlier stage failed (without `--keep-going`).
    Skipped,
    /// Not finished yet, or killed before it could record an ending; `--resume` finishes it.
    Incomplete,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Success,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::Skipped,
        Outcome::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Skipped => "skipped",
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// The story's identity (its text is in the `llm` stage's output in the run folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct StoryInfo {
    /// The story's title.
    pub title: String,
    /// The story's `story_version`.
    pub story_version: String,
}

/// The run's queue policy, as the seeds name it. Defaults: retry budget 1, max wait 600 s,
/// poll every 2 s, attempts 0 (unbounded), post-execution timeout 30 s; the `fast` profile polls
/// every 1 s with a 10 s post-execution timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct QueueConfig {
    /// Retries of a scene after its first attempt (`retry.budget` of the `queue` stage).
    pub scene_retry_budget: u32,
    /// Longest wait for a queued workflow, in seconds (`max_wait_s`).
    #[schemars(range(min = 0.0))]
    pub history_max_wait_seconds: f64,
    /// Seconds between `/history` polls (`poll_interval_s`).
    #[schemars(range(min = 0.0))]
    pub history_poll_interval_seconds: f64,
    /// Most `/history` polls per attempt; 0 = unbounded (`max_attempts`).
    pub history_max_attempts: u32,
    /// Seconds allowed for outputs to appear after the success signal
    /// (`post_execution_timeout_s`).
    #[schemars(range(min = 0.0))]
    pub post_execution_timeout_seconds: f64,
}

impl Default for QueueConfig {
    /// The seeds' defaults (the `standard` profile).
    fn default() -> Self {
        QueueConfig {
            scene_retry_budget: 1,
            history_max_wait_seconds: 600.0,
            history_poll_interval_seconds: 2.0,
            history_max_attempts: 0,
            post_execution_timeout_seconds: 30.0,
        }
    }
}

impl QueueConfig {
    /// The policy of a `queue` stage.
    pub fn of(stage: &crate::spec::model::QueueStage) -> QueueConfig {
        QueueConfig {
            scene_retry_budget: stage.retry.budget,
            history_max_wait_seconds: stage.max_wait_s,
            history_poll_interval_seconds: stage.poll_interval_s,
            history_max_attempts: stage.max_attempts,
            post_execution_timeout_seconds: stage.post_execution_timeout_s,
        }
    }

    /// The most `/history` polls one attempt can make (the seeds' `pollLimit`): the configured
    /// limit when there is one, else as many polls as fit in the max wait.
    pub fn poll_limit(&self) -> u32 {
        if self.history_max_attempts > 0 {
            return self.history_max_attempts;
        }
        if self.history_poll_interval_seconds <= 0.0 {
            return 0;
        }
        let polls = (self.history_max_wait_seconds / self.history_poll_interval_seconds).ceil();
        // Saturating: a max wait of years is not an error, just a very large limit.
        if polls >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            polls.max(0.0) as u32
        }
    }
}

/// What one `llm` stage instance did: which server answered, how fast, with how many tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LlmTelemetry {
    /// The stage's name in the spec.
    pub stage: String,
    /// The service that answered (after any fallback); null when none did.
    pub provider: Option<String>,
    /// The model that answered; null when none did.
    pub model: Option<String>,
    /// Whether a service passed its health check (`GET /v1/models`).
    pub health: LlmHealth,
    /// The services health-checked, in order: the stage's service, then its `fallback` chain.
    pub providers_tried: Vec<String>,
    /// A service other than the stage's own answered.
    pub fallback_used: bool,
    /// Seconds from request to complete answer (of the kept attempt); null when nothing answered
    /// or the answer came from the cache.
    #[schemars(range(min = 0.0))]
    pub response_time_seconds: Option<f64>,
    /// Prompt tokens the server reported; null when it reported none.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens the server reported; null when it reported none.
    pub completion_tokens: Option<u32>,
    /// Completion tokens per second of response time.
    #[schemars(range(min = 0.0))]
    pub tokens_per_second: Option<f64>,
    /// `finish_reason` of the answer (`stop`, `length`, ...).
    pub finish_reason: Option<String>,
    /// The answer came from the response cache (no request was made).
    pub cache_hit: bool,
    /// The last error, when the stage failed or needed retries; null when there was none.
    pub error: Option<String>,
}

/// Whether an LLM service answered its health check (the seeds' reachable/unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LlmHealth {
    /// A service answered `GET /v1/models`.
    Reachable,
    /// No service of the chain answered.
    Unavailable,
}

/// Run-wide readings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct RunSystem {
    /// Resource use over the run.
    pub resource_metrics: ResourceMetrics,
    /// Run-wide fallbacks (LLM fallback, cache, services launched); empty when none.
    pub fallback_notes: Vec<String>,
}

/// Resource use over the run, from periodic samples.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ResourceMetrics {
    /// Mean GPU utilisation over the samples, in percent.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub gpu_utilization_percent: Option<f64>,
    /// Highest GPU memory in use in any sample, in MB.
    #[serde(rename = "PeakVramUsedMB")]
    pub peak_vram_used_mb: Option<i64>,
    /// Most workflows waiting in ComfyUI's queue in any sample.
    pub max_queue_depth: Option<u32>,
    /// Median LLM response time over the run's requests, in seconds.
    #[schemars(range(min = 0.0))]
    pub llm_response_p50_seconds: Option<f64>,
    /// 95th percentile LLM response time, in seconds.
    #[schemars(range(min = 0.0))]
    pub llm_response_p95_seconds: Option<f64>,
    /// The engine's peak resident memory, in MB.
    #[serde(rename = "EnginePeakRssMB")]
    pub engine_peak_rss_mb: Option<i64>,
    /// The samples, in time order (one per heartbeat).
    pub samples: Vec<ResourceSample>,
}

/// One heartbeat reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct ResourceSample {
    /// When it was taken.
    pub at: Timestamp,
    /// GPU utilisation, in percent.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub gpu_utilization_percent: Option<f64>,
    /// GPU memory in use, in MB.
    #[serde(rename = "VramUsedMB")]
    pub vram_used_mb: Option<i64>,
    /// Workflows running or waiting on ComfyUI.
    pub queue_depth: Option<u32>,
}

/// The run's quality scores (the seeds' KPIs). Scores are null when their check did not run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct QualityMetrics {
    /// Every check met its threshold; null when no `quality` stage ran.
    pub passed: Option<bool>,
    /// Narrative coherence graded by the LLM rubric (1–5; the seeds' target is ≥ 4).
    #[schemars(range(min = 1.0, max = 5.0))]
    pub narrative_coherence: Option<f64>,
    /// Entropy of the scenes' key themes, in bits (the seeds' target is ≥ 2.0); null with
    /// fewer than two scenes.
    #[schemars(range(min = 0.0))]
    pub diversity_entropy: Option<f64>,
    /// Mean prompt-to-scene similarity over the scenes (cosine, the seeds' target is ≥ 0.75).
    #[schemars(range(min = -1.0, max = 1.0))]
    pub semantic_alignment: Option<f64>,
    /// Mean frames kept per scene (the seeds' target is ≥ 25); null when there are no scenes.
    #[schemars(range(min = 0.0))]
    pub avg_frames_per_scene: Option<f64>,
    /// Scenes that kept no frame at all (the seeds' target: under 2% of scenes).
    pub zero_frame_scenes: u32,
    /// Scenes that kept fewer frames than the floor.
    pub short_scenes: u32,
    /// Share of scenes whose done marker was detected (0–1; the seeds' target is ≥ 0.95).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub done_marker_detection_rate: Option<f64>,
    /// 95th percentile of the scenes' `DurationSeconds` (the seeds' target is ≤ 120 s).
    #[schemars(range(min = 0.0))]
    pub p95_scene_seconds: Option<f64>,
    /// Weighted share of the checks passed, Σ `Weight`·`Passed` / Σ `Weight` over `Checks`
    /// (0–1); null with no checks or a total weight of 0.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: Option<f64>,
    /// Each check against its threshold.
    pub checks: Vec<QualityCheckResult>,
}

/// Weighted share of `checks` passed (promptfoo's weighted score): Σ weight·passed / Σ weight;
/// `None` with no checks or a total weight of 0.
pub fn weighted_score<'a>(checks: impl IntoIterator<Item = &'a QualityCheckResult>) -> Option<f64> {
    let (mut passed, mut total) = (0.0, 0.0);
    for c in checks {
        total += c.weight;
        if c.passed {
            passed += c.weight;
        }
    }
    (total > 0.0).then(|| (passed / total).clamp(0.0, 1.0))
}

/// One quality check against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct QualityCheckResult {
    /// The check (as named in the `quality` stage's `checks`).
    pub check: QualityCheck,
    /// The scene it scored; null for run-wide checks (diversity, coherence).
    pub scene_id: Option<String>,
    /// The score; null when it could not be computed.
    pub value: Option<f64>,
    /// The threshold it was held to.
    pub threshold: f64,
    /// The score met the threshold.
    pub passed: bool,
    /// Its weight in the weighted `Score` (the `checks` entry's; 1 unless set).
    #[serde(default = "one")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub weight: f64,
    /// The name to compare and gate on: the `checks` entry's `metric`, else the check's name.
    #[serde(default)]
    pub metric: String,
    /// The `checks` entry is advisory: recorded and scored, but it never fails `Passed` or an
    /// `enforce`d stage.
    #[serde(default)]
    pub advisory: bool,
}

fn one() -> f64 {
    1.0
}

/// A scene's own quality scores; null when their check did not run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SceneQualityMetrics {
    /// Frame width, in pixels.
    pub width: Option<u32>,
    /// Frame height, in pixels.
    pub height: Option<u32>,
    /// Share of black or single-colour frames (0–1).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub blank_fraction: Option<f64>,
    /// Share of frames identical to the one before (0–1).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub frozen_fraction: Option<f64>,
    /// Similarity of the scene's frames to its prompt (cosine).
    #[schemars(range(min = -1.0, max = 1.0))]
    pub alignment: Option<f64>,
    /// Weighted share of the scene's own checks passed (the run's `Checks` with this
    /// `SceneId`), 0–1; null when it has none or their total weight is 0.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub score: Option<f64>,
}

/// A person's rating of a scene (or of the whole run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Feedback {
    /// The scene rated; null for the run as a whole.
    pub scene_id: Option<String>,
    /// 1 to 5 stars.
    #[schemars(range(min = 1, max = 5))]
    pub rating: u8,
    /// Free text; null when none was given.
    pub comment: Option<String>,
    /// Who rated, when known.
    pub author: Option<String>,
    /// When the rating was given.
    pub submitted_at: Timestamp,
}
