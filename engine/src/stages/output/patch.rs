//! The `patch-workflow` stage's output.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The scene's metadata, as the telemetry names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct SceneMeta {
    pub scene_id: Option<String>,
    pub story_version: Option<String>,
    pub keyframe: Option<String>,
    pub prompt: Option<String>,
    pub mood: Option<String>,
}

/// Whether and where the graph was checked against `/object_info`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectInfoCheck {
    pub checked: bool,
    pub server: Option<String>,
    pub note: Option<String>,
}

/// The `patch-workflow` stage's output: the patched graph, for the `queue` stage after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PatchOutput {
    /// The patched ComfyUI graph (API format), free-form.
    pub workflow: Value,
    /// The graph as written, relative to the run folder.
    pub workflow_path: String,
    /// This attempt's `{{prefix}}`.
    pub prefix: String,
    /// Every `filename_prefix` input of the graph, by node id, as patched.
    pub filename_prefixes: Map<String, Value>,
    /// `{{seed}}`: the run's base seed plus the item index.
    pub seed: u64,
    pub attempt: u32,
    pub scene: SceneMeta,
    /// Whether the `queue` stage checks the graph against `/object_info` again.
    pub check_object_info: bool,
    pub object_info: ObjectInfoCheck,
}
