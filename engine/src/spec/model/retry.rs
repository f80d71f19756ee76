//! A stage's retry policy: how many more attempts, how long to wait, which failures retry.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a stage retries a failed attempt. `budget` is the number of retries after the first
/// attempt (the seeds' `SceneRetryBudget`); a requeue from a later stage spends it too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries allowed after the first attempt (0 = never retry).
    #[serde(default = "default_budget")]
    #[schemars(range(min = 0, max = 1000))]
    pub budget: u32,
    /// `fixed` waits `delay_s` between attempts; `exponential` doubles it each time, up to
    /// `max_delay_s`.
    #[serde(default)]
    pub backoff: Backoff,
    /// Seconds to wait before the first retry.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 604800.0))]
    pub delay_s: f64,
    /// Upper bound on the wait for `exponential` backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 604800.0))]
    pub max_delay_s: Option<f64>,
    /// Spread each wait randomly over [delay/2, delay] so that retries of many scenes do not
    /// reach a server at the same instant. Needs a non-zero `delay_s`.
    #[serde(default)]
    pub jitter: bool,
    /// Failure classes that are retried; any other failure fails the stage at once.
    #[serde(default = "default_retry_on")]
    pub on: Vec<FailureClass>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: default_budget(),
            backoff: Backoff::default(),
            delay_s: 0.0,
            max_delay_s: None,
            jitter: false,
            on: default_retry_on(),
        }
    }
}

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backoff {
    /// The same `delay_s` before every retry.
    #[default]
    Fixed,
    /// `delay_s`, then twice that, and so on, capped by `max_delay_s`.
    Exponential,
}

/// Why an attempt failed; a retry policy names the classes it retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// The server could not be reached, or the connection broke.
    Transport,
    /// The attempt ran past its bound (`timeout_s`, `max_wait_s`, ...).
    Timeout,
    /// The server answered with a 5xx status.
    ServerError,
    /// The answer did not parse, or did not match its schema.
    InvalidOutput,
    /// The LLM stopped at its token limit (`finish_reason = "length"`).
    Truncated,
    /// The LLM's completion token count fell outside the stage's range.
    TokenRange,
    /// The LLM answered, but slower than `max_latency_s`.
    Slow,
    /// Fewer frames than `min_frames` were collected.
    ShortFrames,
    /// ComfyUI refused the workflow (400 with `node_errors`).
    NodeError,
    /// A node raised while ComfyUI executed the workflow.
    ExecutionError,
    /// The run was interrupted on the server.
    Interrupted,
}

fn default_budget() -> u32 {
    1
}

fn default_retry_on() -> Vec<FailureClass> {
    vec![
        FailureClass::Transport,
        FailureClass::Timeout,
        FailureClass::ServerError,
        FailureClass::InvalidOutput,
        FailureClass::Truncated,
        FailureClass::ShortFrames,
    ]
}
