//! The `queue` stage's output and attempt record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::patch::SceneMeta;
use super::record::AttemptRecord;
use super::render::RenderRef;
use crate::artifact_metadata::{GpuTelemetry, HistoryExitReason, QueueConfig, Timestamp};
use crate::spec::model::QueueStage;

/// The queue telemetry of one attempt, with the contract's names (`Telemetry` of a scene in
/// `artifact-metadata.json`, less what other stages measure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct QueueTelemetry {
    pub duration_seconds: f64,
    pub queue_start: Option<Timestamp>,
    pub queue_end: Option<Timestamp>,
    pub history_attempts: u32,
    pub history_attempt_limit: u32,
    #[serde(rename = "pollLimit")]
    pub poll_limit: u32,
    pub max_wait_seconds: f64,
    pub poll_interval_seconds: f64,
    pub history_exit_reason: HistoryExitReason,
    pub execution_success_detected: bool,
    pub execution_success_at: Option<Timestamp>,
    pub post_execution_timeout_seconds: f64,
    pub history_post_execution_timeout_reached: bool,
    pub scene_retry_budget: u32,
}

impl QueueTelemetry {
    /// The configured values, nothing measured yet (a scene that was never queued).
    pub fn from_config(config: &QueueConfig) -> QueueTelemetry {
        QueueTelemetry {
            duration_seconds: 0.0,
            queue_start: None,
            queue_end: None,
            history_attempts: 0,
            history_attempt_limit: config.history_max_attempts,
            poll_limit: config.poll_limit(),
            max_wait_seconds: config.history_max_wait_seconds,
            poll_interval_seconds: config.history_poll_interval_seconds,
            history_exit_reason: HistoryExitReason::Unknown,
            execution_success_detected: false,
            execution_success_at: None,
            post_execution_timeout_seconds: config.post_execution_timeout_seconds,
            history_post_execution_timeout_reached: false,
            scene_retry_budget: config.scene_retry_budget,
        }
    }

    /// The configured values of a `queue` stage, nothing measured yet.
    pub fn configured(stage: &QueueStage) -> QueueTelemetry {
        QueueTelemetry::from_config(&QueueConfig::of(stage))
    }
}

/// How the prompt was followed over ComfyUI's websocket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebsocketReport {
    /// The stage's `websocket` setting.
    pub enabled: bool,
    /// Times the socket was connected (1 = no reconnect was needed).
    pub connects: u32,
    /// What first told the stage the prompt ended: `websocket` or `history`.
    pub completion_via: Option<String>,
}

/// The `queue` stage's output. It is filled as the attempt goes, so that a failed attempt's
/// record holds what was measured: a field still `None` was not reached (and is left out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueueOutput {
    pub telemetry: QueueTelemetry,
    /// GPU readings around the prompt; null until the prompt has been followed.
    pub gpu: Option<GpuTelemetry>,
    /// The prefix queued and where it ran, for `await-marker` and `collect-frames`.
    #[serde(flatten)]
    pub render: Option<RenderRef>,
    /// Every `filename_prefix` input of the graph, by node id, as queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename_prefixes: Option<Map<String, Value>>,
    /// The scene's metadata from the patch stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scene: Option<SceneMeta>,
    /// The graph queued, relative to the run folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The prompt's outputs as `/history` reported them, by node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Map<String, Value>>,
    /// Nodes ComfyUI reused from its cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_nodes: Option<Vec<String>>,
    /// Every node came from the cache: no new file was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_cached: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebsocketReport>,
    #[serde(default)]
    pub fallback_notes: Vec<String>,
}

impl QueueOutput {
    /// An attempt that has measured nothing yet.
    pub fn start(telemetry: QueueTelemetry) -> QueueOutput {
        QueueOutput {
            telemetry,
            gpu: None,
            render: None,
            filename_prefixes: None,
            scene: None,
            workflow_path: None,
            client_id: None,
            outputs: None,
            cached_nodes: None,
            fully_cached: None,
            websocket: None,
            fallback_notes: Vec::new(),
        }
    }
}

/// What a `queue` attempt leaves in `attempt-<n>.json`: its output so far, succeeded or not.
pub type QueueRecord = AttemptRecord<QueueOutput>;
