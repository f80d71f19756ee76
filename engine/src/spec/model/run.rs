//! `[run]`: the run's name and where its files go.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[run]`: what the run is called and where it writes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// A short name for the run; it appears in run ids, reports and templates (`{{run.name}}`).
    #[schemars(length(min = 1), example = "story-to-video")]
    pub name: String,
    /// One line saying what the run is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Folder that receives one `<run-id>/` folder per run, relative to `base_dir`.
    #[serde(default = "default_output_dir")]
    pub output_dir: String,
    /// Folder that relative paths in this spec (prompts, workflows, schemas, output_dir) are
    /// resolved against, relative to the spec file's own folder. Specs kept in `specs/` of a
    /// project usually set `base_dir = ".."`.
    #[serde(default = "default_base_dir")]
    pub base_dir: String,
    /// Base seed of the run: scene N gets `seed + N` as `{{seed}}`. Without it each run draws a
    /// random seed and records it, so that a run can be repeated exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seed: Option<u64>,
}

fn default_output_dir() -> String {
    "runs".to_owned()
}

fn default_base_dir() -> String {
    ".".to_owned()
}
