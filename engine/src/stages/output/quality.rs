//! The `quality` stage's output and attempt record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::record::AttemptRecord;
use crate::artifact_metadata::{QualityCheckResult, SceneQualityMetrics};

/// The `quality` stage's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityOutput {
    /// Every check met its threshold.
    pub passed: bool,
    pub checks: Vec<QualityCheckResult>,
    pub diversity_entropy: Option<f64>,
    pub semantic_alignment: Option<f64>,
    /// The LLM judge's coherence score (1–5); null when not asked for or not measured.
    pub narrative_coherence: Option<f64>,
    /// How the judge graded, when the `coherence` check ran.
    #[serde(default)]
    pub coherence: Option<CoherenceRecord>,
    pub notes: Vec<String>,
    /// Each scored scene's frame signature (perceptual hashes of its first, middle and last
    /// frames, 16 hex digits each), for the `same-frames` check between scenes, which a
    /// per-scene stage cannot run alone (`telemetry::build` runs it over every scene's).
    #[serde(default)]
    pub frame_signatures: Vec<FrameSignature>,
    pub telemetry: QualityTelemetry,
}

/// How the LLM judge graded the story's coherence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CoherenceRecord {
    /// The judge's model (the `judge_service`'s `model`).
    pub model: Option<String>,
    /// The rubric template, as the spec names it, and its metadata `version`.
    pub rubric: String,
    pub rubric_version: Option<String>,
    /// `logprobs` (G-Eval: the probability-weighted mean of the grades at the score's token)
    /// or `samples` (the mean of sampled grades); null when no answer parsed.
    pub method: Option<String>,
    /// The probability of each grade 1–5 (five numbers summing to 1).
    pub distribution: Option<Vec<f64>>,
    /// The grades parsed from the answers, in order.
    pub grades: Vec<u8>,
    /// The judge's reason, from its first parsed answer.
    pub reason: Option<String>,
    /// Requests sent, retries included.
    pub requests: u32,
}

/// One scene's frame signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FrameSignature {
    pub scene_id: String,
    pub hashes: Vec<String>,
}

/// The telemetry part of a `quality` output, with the contract's names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QualityTelemetry {
    #[serde(rename = "QualityMetrics")]
    pub quality_metrics: QualityPart,
}

/// A per-scene stage's frame metrics (its scene's `QualityMetrics`), or a once-per-run stage's
/// verdict (the run's `QualityMetrics`). Untagged because both shapes are the contract's, and a
/// verdict is told apart by its required `Passed` and `Checks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum QualityPart {
    Run(RunQuality),
    Scene(SceneQualityMetrics),
}

/// A once-per-run `quality` stage's part of the run's `QualityMetrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "PascalCase")]
pub struct RunQuality {
    pub passed: bool,
    pub diversity_entropy: Option<f64>,
    pub semantic_alignment: Option<f64>,
    #[serde(default)]
    pub narrative_coherence: Option<f64>,
    pub checks: Vec<QualityCheckResult>,
}

/// What a `quality` attempt leaves in `attempt-<n>.json`: its output, which a failed attempt
/// (`enforce = true`) has too, with the checks it missed; none when it failed before scoring.
pub type QualityRecord = AttemptRecord<Option<QualityOutput>>;
