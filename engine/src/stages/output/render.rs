//! What every output that carries a rendered ComfyUI prefix holds (`queue`, and after it
//! `await-marker` and `collect-frames`, which pass it on): the one type `await-marker` and
//! `collect-frames` read from the stage they follow.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clients::comfyui::messages::OutputFile;

/// A render's prefix and where it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RenderRef {
    /// The attempt's `filename_prefix`, relative to the ComfyUI output folder
    /// (`cinepipe/<run-id>/<stage>/<item>-<scene-id>/a<attempt>/frame`); frames are `<prefix>_00001_.png`…,
    /// the marker `<prefix>.done`.
    pub prefix: String,
    /// The spec's name of the `comfyui` service that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The URL of the server of the pool that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// ComfyUI's prompt id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<String>,
    /// The `queue` attempt that rendered it (`Frames.BestAttempt`); without it, the prefix's
    /// `a<N>` folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The output folder, when the queue stage knows a better one than the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
    /// The files `/history` listed for the prompt: a remote server's frames when no marker
    /// lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<OutputFile>>,
}

impl RenderRef {
    /// The render of `prefix`, nothing else known yet.
    pub fn new(prefix: impl Into<String>) -> RenderRef {
        RenderRef {
            prefix: prefix.into(),
            service: None,
            server: None,
            prompt_id: None,
            attempt: None,
            output_dir: None,
            files: None,
        }
    }
}
