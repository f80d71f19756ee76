//! The `llm` stage's attempt record (its output is the story, whose schema the spec supplies).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::record::AttemptRecord;

/// One provider of the chain, as an attempt saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderReport {
    pub service: String,
    pub base_url: String,
    pub model: String,
    /// `reachable` or `unavailable`.
    pub health: String,
    pub error: Option<String>,
}

/// The LLM telemetry of one attempt, whether it succeeded or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LlmAttempt {
    /// Where the answer broke the output schema, one line each.
    pub violations: Vec<String>,
    /// The service that answered.
    pub service: Option<String>,
    pub model: Option<String>,
    pub cache_hit: bool,
    pub response_time_s: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub tokens_per_second: Option<f64>,
    pub finish_reason: Option<String>,
    pub providers: Vec<ProviderReport>,
    pub fallback_notes: Vec<String>,
    pub template_version: Option<String>,
}

/// What an `llm` attempt leaves in `attempt-<n>.json`.
pub type LlmRecord = AttemptRecord<LlmAttempt>;
