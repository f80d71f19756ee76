//! The checks an answer must pass (complete, JSON, schema-valid, within the token and latency
//! bounds), the compiled schema validators kept per process, and the memo of recent health
//! checks.

use std::time::Instant;

use serde_json::Value;

use super::LlmFailure;
use crate::clients::openai::{ChatAnswer, extract_json};
use crate::spec::model::{FailureClass, LlmStage};

/// How long a passed health check (`/models` lists the model) stands for the same server and
/// model: the check costs a round trip per attempt, and a sweep of many scenes would pay it
/// every time. A failed request clears it, so the next attempt checks again.
const HEALTH_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The compiled validator for `schema`, kept per process: every attempt of a run asks for the
/// same schema, and compiling it again each time was about 15% of a cache hit's time.
pub(super) fn validator_for(
    schema: &Value,
) -> Result<std::sync::Arc<jsonschema::Validator>, LlmFailure> {
    type Memo =
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<jsonschema::Validator>>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let key = schema.to_string();
    let memo = MEMO.get_or_init(Default::default);
    if let Some(v) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(v);
    }
    let compiled = jsonschema::validator_for(schema).map_err(|e| {
        LlmFailure::new(
            FailureClass::InvalidOutput,
            format!("the output schema is not a valid JSON Schema: {e}"),
        )
    })?;
    let compiled = std::sync::Arc::new(compiled);
    if let Ok(mut m) = memo.lock() {
        // Specs name a handful of schemas; a long-lived process fed many is bounded anyway.
        if m.len() >= 64 {
            m.clear();
        }
        m.insert(key, compiled.clone());
    }
    Ok(compiled)
}

fn health_memo() -> &'static std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>
{
    static MEMO: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>,
    > = std::sync::OnceLock::new();
    MEMO.get_or_init(Default::default)
}

pub(super) fn recently_healthy(base_url: &str, model: &str) -> bool {
    health_memo()
        .lock()
        .ok()
        .and_then(|m| m.get(&(base_url.to_string(), model.to_string())).copied())
        .is_some_and(|t| t.elapsed() < HEALTH_TTL)
}

pub(super) fn mark_healthy(base_url: &str, model: &str) {
    if let Ok(mut m) = health_memo().lock() {
        m.insert((base_url.to_string(), model.to_string()), Instant::now());
    }
}

pub(super) fn forget_healthy(base_url: &str, model: &str) {
    if let Ok(mut m) = health_memo().lock() {
        m.remove(&(base_url.to_string(), model.to_string()));
    }
}

pub(super) fn tokens_per_second(a: &ChatAnswer) -> Option<f64> {
    let n = a.completion_tokens? as f64;
    let ms = a.server_ms?;
    (ms > 0.0).then(|| n * 1000.0 / ms)
}

/// The seeds' checks, in the order that gives the most useful message: a truncated answer is
/// reported as truncated, not as the invalid JSON it also is.
pub(super) fn check_answer(
    stage: &LlmStage,
    validator: &jsonschema::Validator,
    answer: &ChatAnswer,
    secs: f64,
) -> Result<Value, LlmFailure> {
    if answer.finish_reason.as_deref() == Some("length") {
        return Err(LlmFailure::new(
            FailureClass::Truncated,
            format!(
                "the answer was cut off at max_tokens = {} (finish_reason \"length\")",
                stage.max_tokens
            ),
        ));
    }
    let Some(output) = extract_json(&answer.content) else {
        let head: String = answer.content.chars().take(120).collect();
        return Err(LlmFailure::new(
            FailureClass::InvalidOutput,
            format!("the answer holds no JSON object: {head:?}"),
        ));
    };
    let violations: Vec<String> = validator
        .iter_errors(&output)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("{}: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect();
    if !violations.is_empty() {
        let mut f = LlmFailure::new(
            FailureClass::InvalidOutput,
            format!(
                "the answer does not match the output schema ({} problem{}): {}",
                violations.len(),
                if violations.len() == 1 { "" } else { "s" },
                violations[0]
            ),
        );
        f.violations = violations;
        return Err(f);
    }
    if let Some(n) = answer.completion_tokens {
        let (lo, hi) = (
            u64::from(stage.min_completion_tokens),
            u64::from(stage.max_completion_tokens),
        );
        if n < lo || n > hi {
            return Err(LlmFailure::new(
                FailureClass::TokenRange,
                format!("{n} completion tokens, outside {lo}..={hi}"),
            ));
        }
    }
    if secs > stage.max_latency_s {
        return Err(LlmFailure::new(
            FailureClass::Slow,
            format!(
                "answered in {secs:.1} s, over max_latency_s = {}",
                stage.max_latency_s
            ),
        ));
    }
    Ok(output)
}
