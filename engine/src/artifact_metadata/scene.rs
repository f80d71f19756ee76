//! The per-scene part of `artifact-metadata.json`: a scene's record, its frames, its attempts,
//! its queue telemetry with the GPU readings, and its fallback notes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FailureClass, Outcome, SceneQualityMetrics, Timestamp};

/// One scene: what was asked, what came out, and its queue telemetry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SceneRecord {
    /// The scene's id in the story (`scene-1`); also the `[Scene <id>]` of `run-summary.txt`.
    #[schemars(length(min = 1))]
    pub scene_id: String,
    /// The visual prompt sent to ComfyUI.
    pub prompt: String,
    /// The scene's mood.
    pub mood: String,
    /// The scene's anchor image; null when it has none.
    pub keyframe: Option<String>,
    /// How the scene ended.
    pub outcome: Outcome,
    /// ComfyUI's `prompt_id` of the kept attempt; null when it was never queued.
    pub prompt_id: Option<String>,
    /// The ComfyUI server (of the pool) that rendered the kept attempt.
    pub server: Option<String>,
    /// The patched workflow, relative to the run folder.
    pub workflow_path: Option<String>,
    /// The frames kept for the scene.
    pub frames: Frames,
    /// The scene's own quality scores.
    pub quality_metrics: SceneQualityMetrics,
    /// Every attempt of every per-scene stage, in the order they started.
    pub scene_attempt_summaries: Vec<AttemptSummary>,
    /// The queue telemetry of the kept attempt.
    pub telemetry: Telemetry,
}

/// The frames of a scene, from its best attempt (the one with most frames).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Frames {
    /// Frames kept.
    pub count: u32,
    /// The frame floor (`min_frames` of the `collect-frames` stage).
    pub min_frames: u32,
    /// Fewer frames than the floor were kept (`keep_best_short` after the requeues ran out, or
    /// `on_short = "accept"`).
    pub short: bool,
    /// Folder of the frames, relative to the run folder; null when none were collected.
    pub directory: Option<String>,
    /// The frame files, relative to the run folder, in order.
    pub paths: Vec<String>,
    /// The `render` attempt the frames come from (1 = first); null when none produced frames.
    pub best_attempt: Option<u32>,
}

/// One attempt of one stage instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct AttemptSummary {
    /// The stage's name in the spec.
    pub stage: String,
    /// 1 for the first attempt, 2 for the first retry, and so on.
    #[schemars(range(min = 1))]
    pub attempt: u32,
    /// When the attempt started.
    pub start: Timestamp,
    /// When it ended; null when the run was killed during it.
    pub end: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why it failed; null when it did not.
    pub failure_class: Option<FailureClass>,
    /// The error, as printed; null when it did not fail.
    pub error: Option<String>,
    /// It succeeded after earlier attempts of the same stage instance failed.
    pub flaky: bool,
    /// Frames this attempt produced (`collect-frames`); null for other stages.
    pub frame_count: Option<u32>,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AttemptOutcome {
    /// The attempt did its work.
    Success,
    /// The attempt failed (see `FailureClass`).
    Failed,
    /// The attempt was cancelled (Ctrl-C, SIGTERM, or a failure elsewhere).
    Cancelled,
}

/// The queue telemetry of a scene, with the seeds' names. A scene that was never queued keeps
/// every field: times and readings null, counts 0, flags false, `HistoryExitReason` `unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Telemetry {
    /// Seconds from `QueueStart` to `QueueEnd` (0 when never queued).
    #[schemars(range(min = 0.0))]
    pub duration_seconds: f64,
    /// When the workflow was queued (`POST /prompt`).
    pub queue_start: Option<Timestamp>,
    /// When following it ended, for whatever `HistoryExitReason`.
    pub queue_end: Option<Timestamp>,
    /// `/history` polls made.
    pub history_attempts: u32,
    /// The configured poll limit; 0 = unbounded (`QueueConfig.HistoryMaxAttempts`).
    pub history_attempt_limit: u32,
    /// The polls the attempt could make: `HistoryAttemptLimit` when set, else
    /// ceil(`MaxWaitSeconds` / `PollIntervalSeconds`).
    #[serde(rename = "pollLimit")]
    pub poll_limit: u32,
    /// The max wait applied, in seconds.
    #[schemars(range(min = 0.0))]
    pub max_wait_seconds: f64,
    /// The poll interval applied, in seconds.
    #[schemars(range(min = 0.0))]
    pub poll_interval_seconds: f64,
    /// Why following the workflow stopped.
    pub history_exit_reason: HistoryExitReason,
    /// ComfyUI reported `execution_success` (WebSocket or `/history`).
    pub execution_success_detected: bool,
    /// When it did.
    pub execution_success_at: Option<Timestamp>,
    /// The post-execution timeout applied, in seconds.
    #[schemars(range(min = 0.0))]
    pub post_execution_timeout_seconds: f64,
    /// Outputs did not appear in `/history` within `PostExecutionTimeoutSeconds` of the success.
    pub history_post_execution_timeout_reached: bool,
    /// Retries the scene was allowed (`QueueConfig.SceneRetryBudget`).
    pub scene_retry_budget: u32,
    /// GPU memory around the workflow. Always present; its readings are null when no source
    /// answered.
    #[serde(rename = "GPU")]
    pub gpu: GpuTelemetry,
    /// The `<prefix>.done` marker appeared.
    pub done_marker_detected: bool,
    /// Seconds spent waiting for the marker; null when the wait did not happen.
    #[schemars(range(min = 0.0))]
    pub done_marker_wait_seconds: Option<f64>,
    /// Where the marker was looked for (path or `/view` URL).
    pub done_marker_path: Option<String>,
    /// The marker timed out and the frames present were copied anyway.
    pub forced_copy_triggered: bool,
    /// The diagnostic dump written by the forced copy; null when there was none.
    pub forced_copy_debug_path: Option<String>,
    /// Fallbacks taken for this scene.
    pub system: SceneSystem,
}

/// Why following a queued workflow stopped (the seeds' enum, exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HistoryExitReason {
    /// The workflow finished and its outputs were found.
    Success,
    /// `MaxWaitSeconds` passed first.
    MaxWait,
    /// `HistoryAttemptLimit` polls were made first.
    AttemptLimit,
    /// Success was signalled but outputs did not appear within `PostExecutionTimeoutSeconds`.
    PostExecution,
    /// Anything else: the workflow was never queued, the server vanished, the run was stopped.
    Unknown,
}

impl HistoryExitReason {
    pub const ALL: [HistoryExitReason; 5] = [
        HistoryExitReason::Success,
        HistoryExitReason::MaxWait,
        HistoryExitReason::AttemptLimit,
        HistoryExitReason::PostExecution,
        HistoryExitReason::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryExitReason::Success => "success",
            HistoryExitReason::MaxWait => "maxWait",
            HistoryExitReason::AttemptLimit => "attemptLimit",
            HistoryExitReason::PostExecution => "postExecution",
            HistoryExitReason::Unknown => "unknown",
        }
    }
}

/// GPU memory before and after a workflow, in MB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct GpuTelemetry {
    /// The GPU's name (`NVIDIA GeForce RTX 3090`).
    pub name: Option<String>,
    /// Memory in use before queueing.
    #[serde(rename = "VramBeforeMB")]
    pub vram_before_mb: Option<i64>,
    /// Memory in use after the workflow ended.
    #[serde(rename = "VramAfterMB")]
    pub vram_after_mb: Option<i64>,
    /// `VramAfterMB` − `VramBeforeMB`; null unless both are known.
    #[serde(rename = "VramDeltaMB")]
    pub vram_delta_mb: Option<i64>,
    /// Which source answered (a fallback note says why when it is not the first).
    pub source: GpuReadingSource,
}

impl GpuTelemetry {
    /// Readings from `source`, with the delta computed (null unless both readings exist).
    pub fn new(
        source: GpuReadingSource,
        name: Option<String>,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Self {
        GpuTelemetry {
            name,
            vram_before_mb: before,
            vram_after_mb: after,
            vram_delta_mb: before.zip(after).map(|(b, a)| a - b),
            source,
        }
    }

    /// No source answered: every reading null, the fields still present.
    pub fn none() -> Self {
        GpuTelemetry::new(GpuReadingSource::None, None, None, None)
    }
}

/// Where GPU readings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GpuReadingSource {
    /// NVML (nvml-wrapper).
    Nvml,
    /// ComfyUI's `/system_stats`.
    SystemStats,
    /// `nvidia-smi --query-gpu`.
    NvidiaSmi,
    /// No source answered; every reading is null.
    None,
}

/// Per-scene fallbacks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct SceneSystem {
    /// One sentence per fallback taken (GPU source, forced copy, requeue, ...); empty when none.
    pub fallback_notes: Vec<String>,
}
