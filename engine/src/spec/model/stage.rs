//! `[stages.*]`: the seven stage kinds and their options.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RetryPolicy;
use super::quality::{CheckEntry, QualityThresholds, default_quality_checks};

/// One step of the pipeline. `kind` says what it does; `needs` draws its edges.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Stage {
    /// Asks an OpenAI-compatible LLM for a story in scenes, as JSON matching `output_schema`.
    Llm(LlmStage),
    /// Loads a ComfyUI workflow (API format) and sets its inputs from templates.
    PatchWorkflow(PatchWorkflowStage),
    /// Queues the patched workflow on ComfyUI and follows it to completion.
    Queue(QueueStage),
    /// Waits for the done marker that the workflow writes after its frames.
    AwaitMarker(AwaitMarkerStage),
    /// Copies the scene's finished frames into the run directory and enforces the frame floor.
    CollectFrames(CollectFramesStage),
    /// Scores frames and story text against thresholds (`QualityMetrics`).
    Quality(QualityStage),
    /// Checks the run's files against the telemetry contract.
    Validate(ValidateStage),
}

/// The stage kinds, as written in `kind = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageKind {
    Llm,
    PatchWorkflow,
    Queue,
    AwaitMarker,
    CollectFrames,
    Quality,
    Validate,
}

impl StageKind {
    pub const ALL: [StageKind; 7] = [
        StageKind::Llm,
        StageKind::PatchWorkflow,
        StageKind::Queue,
        StageKind::AwaitMarker,
        StageKind::CollectFrames,
        StageKind::Quality,
        StageKind::Validate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Llm => "llm",
            StageKind::PatchWorkflow => "patch-workflow",
            StageKind::Queue => "queue",
            StageKind::AwaitMarker => "await-marker",
            StageKind::CollectFrames => "collect-frames",
            StageKind::Quality => "quality",
            StageKind::Validate => "validate",
        }
    }

    pub fn parse(s: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The keys every stage kind has.
#[derive(Debug, Clone, Copy)]
pub struct StageCommon<'a> {
    pub needs: &'a [String],
    pub for_each: Option<&'a str>,
    pub retry: &'a RetryPolicy,
    pub description: Option<&'a str>,
}

/// Declares a stage kind's struct with the keys all stage kinds share, then its own.
macro_rules! stage_kind {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Stages that must finish before this one starts.
            #[serde(default)]
            pub needs: Vec<String>,
            /// Fan out: one instance of this stage per item of an upstream list, written
            /// `STAGE.FIELD` (e.g. `story.scenes`). Stages that need a fanned-out stage follow
            /// it item by item.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(example = "story.scenes")]
            pub for_each: Option<String>,
            /// One line saying what the stage is for (shown by `cinepipe plan`).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub description: Option<String>,
            $($(#[$fmeta])* pub $field: $ty,)*
            /// When and how a failed attempt is retried.
            #[serde(default)]
            pub retry: RetryPolicy,
        }
    };
}

stage_kind! {
    /// `kind = "llm"`: ask an OpenAI-compatible server for a story split into scenes.
    LlmStage {
        /// An `openai` service; its `fallback` chain is walked when it fails.
        service: String,
        /// Handlebars template of the user prompt, e.g. `prompts/story/v1/sci-fi.hbs`.
        prompt: String,
        /// Handlebars template of the system prompt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_prompt: Option<String>,
        /// Values for the prompt's variables. Every variable the template uses must be set,
        /// and every value set must be used.
        #[serde(default)]
        vars: IndexMap<String, Value>,
        /// JSON Schema the answer must match. Default: cinepipe's story schema
        /// (`schemas/story.schema.json`: title, story_version, scenes with id, prompt, mood,
        /// optional keyframe).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_schema: Option<String>,
        /// How the schema is sent: `json-schema` (`response_format` with the schema),
        /// `json-object` (JSON syntax only) or `none`. The answer is validated in every case.
        #[serde(default)]
        response_format: ResponseFormat,
        /// Sampling temperature.
        #[serde(default = "default_temperature")]
        #[schemars(range(min = 0.0, max = 2.0))]
        temperature: f64,
        /// `max_tokens` sent with the request.
        #[serde(default = "default_max_tokens")]
        #[schemars(range(min = 1))]
        max_tokens: u32,
        /// Sampling seed sent with the request, where the server honours one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<i64>,
        /// Ask for a streamed (SSE) answer.
        #[serde(default)]
        stream: bool,
        /// Fewest completion tokens an acceptable answer has (failure class `token-range`).
        #[serde(default = "default_min_completion_tokens")]
        min_completion_tokens: u32,
        /// Most completion tokens an acceptable answer has (failure class `token-range`).
        #[serde(default = "default_max_completion_tokens")]
        max_completion_tokens: u32,
        /// Slowest acceptable answer, in seconds (failure class `slow`).
        #[serde(default = "default_max_latency")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        max_latency_s: f64,
        /// Bound on one attempt, in seconds (failure class `timeout`).
        #[serde(default = "default_llm_timeout")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        timeout_s: f64,
        /// Reuse an earlier answer to the same request (`--no-cache` bypasses it).
        #[serde(default = "default_true")]
        cache: bool,
        /// Extra text mixed into the cache key, so that sweeps draw independent samples.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cache_salt: Option<String>,
    }
}

stage_kind! {
    /// `kind = "patch-workflow"`: load a ComfyUI workflow in API format and set its inputs.
    PatchWorkflowStage {
        /// The workflow, in ComfyUI's API format (the editor's "Save (API Format)").
        workflow: String,
        /// Inputs to set, keyed `NODE.INPUT` where NODE is a node id, a `_meta.title` or a
        /// `class_type`. Strings are Handlebars templates rendered with `run`, `scene`,
        /// `story`, `seed`, `attempt`, `prefix` and `vars`; other values are set as they are.
        /// Every `filename_prefix` left alone gets `{{prefix}}`, which no other stage instance
        /// or attempt shares; one set to a value without `{{prefix}}` is the spec's to keep
        /// unique (scene ids may repeat), and the frames are found by `pattern`.
        #[serde(default)]
        set: IndexMap<String, Value>,
        /// Extra values for the templates in `set`, as `{{vars.NAME}}`.
        #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
        vars: IndexMap<String, Value>,
        /// Check the patched graph against the server's `/object_info` (classes, required
        /// inputs, ranges, choices) before it is queued, when the server answers.
        #[serde(default = "default_true")]
        check_object_info: bool,
    }
}

stage_kind! {
    /// `kind = "queue"`: queue the patched workflow on ComfyUI and follow it to completion.
    QueueStage {
        /// A `comfyui` service.
        service: String,
        /// Seconds between `/history` polls (the seeds' `PollIntervalSeconds`).
        #[serde(default = "default_poll_interval")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        poll_interval_s: f64,
        /// Longest wait for the workflow to finish, in seconds (`MaxWaitSeconds`).
        #[serde(default = "default_max_wait")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        max_wait_s: f64,
        /// Most `/history` polls per attempt; 0 = unbounded (`HistoryMaxAttempts`, `pollLimit`).
        #[serde(default)]
        max_attempts: u32,
        /// Seconds to wait for outputs to appear in `/history` after the success signal
        /// (`PostExecutionTimeoutSeconds`).
        #[serde(default = "default_post_execution_timeout")]
        #[schemars(range(min = 0.0, max = 604800.0))]
        post_execution_timeout_s: f64,
        /// Follow the run on ComfyUI's WebSocket as well as by polling.
        #[serde(default = "default_true")]
        websocket: bool,
        /// Where GPU readings come from: `auto` tries NVML, then `/system_stats`, then
        /// `nvidia-smi`.
        #[serde(default)]
        gpu: GpuSource,
    }
}

stage_kind! {
    /// `kind = "await-marker"`: wait for the `<prefix>.done` marker written after the frames.
    AwaitMarkerStage {
        /// Seconds to wait for the marker.
        #[serde(default = "default_marker_timeout")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        timeout_s: f64,
        /// What a timeout does: `forced-copy` copies the frames that exist and records it (for
        /// a remote server, the frames `/history` lists, downloaded over HTTP); `fail` fails
        /// the attempt.
        #[serde(default)]
        on_timeout: OnTimeout,
        /// Seconds between polls when file-system events are unavailable, and between `/view`
        /// requests for the marker of a remote server (a service without `output_dir`).
        #[serde(default = "default_marker_poll")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        poll_interval_s: f64,
        /// Suffix of the marker file after the filename prefix.
        #[serde(default = "default_marker_suffix")]
        marker_suffix: String,
    }
}

stage_kind! {
    /// `kind = "collect-frames"`: copy a scene's finished frames and enforce the frame floor.
    CollectFramesStage {
        /// Glob of the scene's frames, relative to the ComfyUI output folder. Default: the
        /// attempt's filename prefix followed by `_*.png`. For a remote server it filters the
        /// files the done marker or `/history` lists (only those in the prefix's folder are
        /// downloaded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(example = "{{prefix}}_*.png")]
        pattern: Option<String>,
        /// Fewest frames a scene must have.
        #[serde(default = "default_min_frames")]
        min_frames: u32,
        /// What a short scene does: `fail`, `accept` (recorded, not failed), or
        /// `{ requeue = "STAGE" }` to queue it again within that stage's retry budget.
        #[serde(default)]
        on_short: OnShort,
        /// With `on_short = { requeue = "STAGE" }`: once the requeue budget is spent and the
        /// scene is still short, keep its best attempt (the most frames; at least one) as a
        /// short scene instead of failing it. Ignored with `fail` and `accept`.
        #[serde(default)]
        keep_best_short: bool,
        /// The id of the save node whose frames are the scene's (the files `/history` lists
        /// for it), for a workflow with more than one save node and no done marker that
        /// lists its files. Without it, a marker's `Files` are the frames when it lists them,
        /// else the files that match `pattern`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node: Option<String>,
        /// Seconds a frame's size and mtime must stay unchanged before it is copied. Frames a
        /// detected done marker lists, and those of a remote server (listed by the marker or
        /// `/history`, finished files only), are not waited for.
        #[serde(default = "default_stability")]
        #[schemars(range(min = 0.0, max = 604800.0))]
        stability_s: f64,
        /// Times a frame is re-checked for stability before the attempt fails.
        #[serde(default = "default_stability_retries")]
        stability_retries: u32,
        /// Bound on one attempt, in seconds.
        #[serde(default = "default_collect_timeout")]
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
        timeout_s: f64,
    }
}

stage_kind! {
    /// `kind = "quality"`: score frames and story text (`QualityMetrics`).
    QualityStage {
        /// The checks to run: a check's name, or a table with its name (`check`) and its own
        /// `threshold`, `weight` and `metric` (promptfoo's assertion shape).
        #[serde(default = "default_quality_checks")]
        checks: Vec<CheckEntry>,
        /// The thresholds each check is scored against.
        #[serde(default)]
        thresholds: QualityThresholds,
        /// An `openai` service with `/v1/embeddings`, for the `alignment` check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        embedding_service: Option<String>,
        /// An `openai` service that grades coherence with a rubric (the LLM judge), for the
        /// `coherence` check; may differ from the writer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        judge_service: Option<String>,
        /// The judge's rubric: a versioned template with a metadata block, given `story` (the
        /// scenes, numbered).
        #[serde(default = "default_judge_rubric")]
        judge_rubric: String,
        /// Grades sampled (and averaged) when the judge's server gives no `top_logprobs`.
        #[serde(default = "default_judge_samples")]
        #[schemars(range(min = 1, max = 10))]
        judge_samples: u32,
        /// Fail the stage when a threshold is missed (otherwise it is recorded only).
        #[serde(default)]
        enforce: bool,
    }
}

stage_kind! {
    /// `kind = "validate"`: check `artifact-metadata.json` against its schema and
    /// `run-summary.txt` against the metadata.
    ValidateStage {
        /// Fail the run on a contract violation (otherwise they are recorded only).
        #[serde(default = "default_true")]
        fail_on_violation: bool,
    }
}

/// How an `llm` stage asks for structured output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseFormat {
    /// `response_format = {type = "json_schema", ...}` with the output schema.
    #[default]
    JsonSchema,
    /// `response_format = {type = "json_object"}`: JSON syntax only.
    JsonObject,
    /// No `response_format`; the answer is still extracted and validated.
    None,
}

/// Which source the queue stage reads GPU memory from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GpuSource {
    /// NVML, else `/system_stats`, else `nvidia-smi`, else none.
    #[default]
    Auto,
    /// NVML only.
    Nvml,
    /// ComfyUI's `/system_stats` only.
    SystemStats,
    /// `nvidia-smi --query-gpu` only.
    NvidiaSmi,
    /// No GPU readings (the fields stay, as null).
    None,
}

/// What `await-marker` does when the marker does not come in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// Copy the frames that exist, write a debug dump, set `ForcedCopyTriggered`.
    #[default]
    ForcedCopy,
    /// Fail the attempt.
    Fail,
}

/// What `collect-frames` does with a scene that has fewer than `min_frames` frames.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum OnShort {
    /// Fail the scene.
    #[default]
    Fail,
    /// Keep the scene and record that it is short (a scene with no frame at all still fails).
    Accept,
    /// Queue the scene again through the named `queue` stage, spending its retry budget;
    /// a scene still short when the budget runs out fails (`short-frames`), unless
    /// `keep_best_short = true` keeps its best attempt.
    Requeue(String),
}

impl Stage {
    pub fn kind(&self) -> StageKind {
        match self {
            Stage::Llm(_) => StageKind::Llm,
            Stage::PatchWorkflow(_) => StageKind::PatchWorkflow,
            Stage::Queue(_) => StageKind::Queue,
            Stage::AwaitMarker(_) => StageKind::AwaitMarker,
            Stage::CollectFrames(_) => StageKind::CollectFrames,
            Stage::Quality(_) => StageKind::Quality,
            Stage::Validate(_) => StageKind::Validate,
        }
    }

    pub fn common(&self) -> StageCommon<'_> {
        macro_rules! common {
            ($s:expr) => {
                StageCommon {
                    needs: &$s.needs,
                    for_each: $s.for_each.as_deref(),
                    retry: &$s.retry,
                    description: $s.description.as_deref(),
                }
            };
        }
        match self {
            Stage::Llm(s) => common!(s),
            Stage::PatchWorkflow(s) => common!(s),
            Stage::Queue(s) => common!(s),
            Stage::AwaitMarker(s) => common!(s),
            Stage::CollectFrames(s) => common!(s),
            Stage::Quality(s) => common!(s),
            Stage::Validate(s) => common!(s),
        }
    }

    /// The services this stage talks to, with the key that names each.
    pub fn services(&self) -> Vec<(&'static str, &str)> {
        match self {
            Stage::Llm(s) => vec![("service", s.service.as_str())],
            Stage::Queue(s) => vec![("service", s.service.as_str())],
            Stage::Quality(s) => {
                let mut v = Vec::new();
                if let Some(e) = &s.embedding_service {
                    v.push(("embedding_service", e.as_str()));
                }
                if let Some(r) = &s.judge_service {
                    v.push(("judge_service", r.as_str()));
                }
                v
            }
            _ => Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_temperature() -> f64 {
    0.7
}
fn default_max_tokens() -> u32 {
    1024
}
fn default_min_completion_tokens() -> u32 {
    150
}
fn default_max_completion_tokens() -> u32 {
    500
}
fn default_max_latency() -> f64 {
    120.0
}
fn default_llm_timeout() -> f64 {
    180.0
}
fn default_poll_interval() -> f64 {
    2.0
}
fn default_max_wait() -> f64 {
    600.0
}
fn default_post_execution_timeout() -> f64 {
    30.0
}
fn default_marker_timeout() -> f64 {
    60.0
}
fn default_marker_poll() -> f64 {
    0.25
}
fn default_marker_suffix() -> String {
    ".done".to_owned()
}
pub(super) fn default_min_frames() -> u32 {
    25
}
fn default_stability() -> f64 {
    1.0
}
fn default_stability_retries() -> u32 {
    5
}
fn default_collect_timeout() -> f64 {
    120.0
}
fn default_judge_rubric() -> String {
    "prompts/judge/v1/coherence.hbs".to_owned()
}
fn default_judge_samples() -> u32 {
    3
}
