//! The `await-marker` stage's output and attempt record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::record::AttemptRecord;
use super::render::RenderRef;
use crate::artifact_metadata::Timestamp;

/// How the marker was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// It was there at the first look.
    Existing,
    /// A file-system event woke the wait.
    Event,
    /// A poll found it.
    Poll,
    /// A `/view` request found it (a remote server: no output folder on this machine).
    Http,
}

/// A done marker's contents, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct MarkerBody {
    pub timestamp: Timestamp,
    pub frame_count: u32,
    /// The frame files (base names), when the writer lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// What a forced copy took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct ForcedCopy {
    /// The folder the frames were copied into.
    pub directory: String,
    pub paths: Vec<String>,
    pub count: usize,
}

/// A stage's notes for the scene's `System.FallbackNotes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StageSystem {
    pub fallback_notes: Vec<String>,
}

/// The `await-marker` stage's output: the render it waited for (passed on to
/// `collect-frames`) and the scene telemetry of the wait, with the contract's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MarkerOutput {
    #[serde(flatten)]
    pub render: RenderRef,
    #[serde(rename = "DoneMarkerDetected")]
    pub done_marker_detected: bool,
    #[serde(rename = "DoneMarkerWaitSeconds")]
    pub done_marker_wait_seconds: f64,
    /// The marker's path, or its `/view` URL for a remote server.
    #[serde(rename = "DoneMarkerPath")]
    pub done_marker_path: String,
    #[serde(rename = "ForcedCopyTriggered")]
    pub forced_copy_triggered: bool,
    #[serde(rename = "ForcedCopyDebugPath")]
    pub forced_copy_debug_path: Option<String>,
    /// How a found marker was found.
    #[serde(
        rename = "DetectedBy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub detected_by: Option<Detection>,
    /// A found marker's contents; null after a forced copy.
    #[serde(rename = "Marker")]
    pub marker: Option<MarkerBody>,
    #[serde(
        rename = "ForcedCopy",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub forced_copy: Option<ForcedCopy>,
    #[serde(rename = "System")]
    pub system: StageSystem,
}

impl MarkerOutput {
    /// The frames a detected marker lists.
    pub fn listed_frames(&self) -> Option<&[String]> {
        self.marker
            .as_ref()
            .filter(|_| self.done_marker_detected)
            .and_then(|m| m.files.as_deref())
    }
}

/// The body of an `await-marker` attempt's record: a forced copy's output (a detected marker's
/// attempt writes no record: its output is the record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MarkerAttempt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<MarkerOutput>,
}

/// What an `await-marker` attempt that failed or forced a copy leaves in `attempt-<n>.json`.
pub type MarkerRecord = AttemptRecord<MarkerAttempt>;
