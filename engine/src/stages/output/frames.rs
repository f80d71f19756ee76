//! The `collect-frames` stage's output and attempt record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::marker::StageSystem;
use super::record::AttemptRecord;
use super::render::RenderRef;
use crate::artifact_metadata::Frames;

/// The `collect-frames` stage's output: the render it collected (passed on) and the scene's
/// `Frames`, with the contract's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FramesOutput {
    #[serde(flatten)]
    pub render: RenderRef,
    #[serde(rename = "Frames")]
    pub frames: Frames,
    #[serde(rename = "FramesCollectedThisAttempt")]
    pub frames_collected_this_attempt: u32,
    #[serde(rename = "System")]
    pub system: StageSystem,
}

/// A listed file that was not collected, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkippedFile {
    pub file: String,
    pub why: String,
}

/// What a `collect-frames` attempt saw, filled as it goes (a field still `None` was not
/// reached, and is left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FramesAttempt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The glob the frames were matched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The `queue` attempt that rendered the frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_attempt: Option<u32>,
    /// Listings of the output folder made (a local folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listings: Option<u32>,
    /// Files still changing after the last listing (a local folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstable: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<Vec<SkippedFile>>,
    /// Where the file list came from: `marker` (a detected marker's `Files`), `node` (what
    /// `/history` listed for the spec's save `node`), `history` (every file `/history`
    /// listed, a remote server), `pattern` (every match in a local folder) or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Files the list named (a remote server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<usize>,
    /// Downloads asked for a second time (a remote server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retried: Option<Vec<String>>,
    /// Frames copied by this attempt (the attempt's `FrameCount` in the telemetry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
}

/// What a `collect-frames` attempt leaves in `attempt-<n>.json`, succeeded or not.
pub type FramesRecord = AttemptRecord<FramesAttempt>;
