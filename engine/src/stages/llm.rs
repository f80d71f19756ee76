//! The `llm` stage: render the prompt templates, ask an OpenAI-compatible server (walking the
//! service's `fallback` chain), and accept only an answer that is complete, schema-valid JSON
//! within the stage's token and latency bounds.
//!
//! One call of [`run`] is one attempt. Its failure carries a [`FailureClass`], and the
//! executor's retry policy decides whether another attempt follows. Answers that pass every
//! check are cached on disk (errors never are), keyed by everything that shapes the answer.
//!
//! The prompt is built in `prompt`, the cache keyed in `cache`, an answer checked in `answer`.

use std::path::Path;
use std::time::Instant;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::output::{LlmAttempt, LlmRecord, RecordOutcome};
use serde_json::Value;

use crate::clients::openai::{ChatAnswer, ChatRequest, LlmError, OpenAiClient};
use crate::fsutil::write_atomic;
use crate::spec::model::{FailureClass, LlmStage, Service};

mod answer;
mod cache;
mod prompt;

use answer::{
    check_answer, forget_healthy, mark_healthy, recently_healthy, tokens_per_second, validator_for,
};
use cache::{CACHE_FORMAT, CacheEntry, cache_key, cache_path};
pub use prompt::chat_request;
use prompt::prepare;

/// What one attempt needs besides the stage's own config.
pub struct LlmInput<'a> {
    pub stage: &'a LlmStage,
    pub services: &'a IndexMap<String, Service>,
    /// Folder the stage's file paths are relative to.
    pub base_dir: &'a Path,
    /// Folder of the response cache (`<output_dir>/.cache/llm`).
    pub cache_dir: &'a Path,
    /// `--no-cache`: neither read nor write the cache.
    pub no_cache: bool,
}

pub use super::output::ProviderReport;

/// A successful attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlmOutcome {
    /// The validated JSON answer (a story, with the default schema).
    pub output: Value,
    /// The service that answered (or whose cached answer was used).
    pub service: String,
    pub model: String,
    pub answer: ChatAnswer,
    pub cache_hit: bool,
    /// Wall time of the attempt, in seconds.
    pub response_time_s: f64,
    /// Wall time of the HTTP request that answered, in seconds (none for a cache hit): the
    /// server's whole time as the engine sees it, so `response_time_s` minus this is what the
    /// engine itself spent.
    #[serde(default)]
    pub request_time_s: Option<f64>,
    pub tokens_per_second: Option<f64>,
    pub providers: Vec<ProviderReport>,
    /// Which provider answered and why the ones before it did not.
    pub fallback_notes: Vec<String>,
    /// Version of the prompt template (its metadata block).
    pub template_version: Option<String>,
}

/// A failed attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LlmFailure {
    pub class: FailureClass,
    pub message: String,
    /// Schema violations of the answer, one per line, when that was the failure.
    pub violations: Vec<String>,
    pub providers: Vec<ProviderReport>,
    pub fallback_notes: Vec<String>,
    /// The answer, when one came back but failed a check.
    pub answer: Option<Box<ChatAnswer>>,
}

impl LlmFailure {
    fn new(class: FailureClass, message: impl Into<String>) -> LlmFailure {
        LlmFailure {
            class,
            message: message.into(),
            violations: Vec::new(),
            providers: Vec::new(),
            fallback_notes: Vec::new(),
            answer: None,
        }
    }
}

/// One attempt of the stage.
pub async fn run(input: &LlmInput<'_>) -> Result<LlmOutcome, LlmFailure> {
    let started = Instant::now();
    let stage = input.stage;
    let prepared = prepare(input)?;
    let validator = validator_for(&prepared.schema)?;

    // The chain: the stage's service, then each `fallback` in turn.
    let mut chain: Vec<(&str, &crate::spec::model::OpenAiService)> = Vec::new();
    let mut next = Some(stage.service.as_str());
    while let Some(name) = next {
        if chain.iter().any(|(n, _)| *n == name) {
            break;
        }
        match input.services.get(name) {
            Some(Service::Openai(s)) => {
                chain.push((name, s));
                next = s.fallback.as_deref();
            }
            _ => break,
        }
    }
    let request_for = |model: &str| ChatRequest {
        model: model.to_string(),
        messages: prepared.messages.clone(),
        max_tokens: stage.max_tokens,
        temperature: stage.temperature,
        seed: stage.seed,
        response_format: prepared.response_format.clone(),
    };
    let use_cache = stage.cache && !input.no_cache;

    // A cached answer from any provider of the chain is as good as a new one.
    if use_cache {
        for (name, svc) in &chain {
            let key = cache_key(
                svc.base_url.trim_end_matches('/'),
                &request_for(&svc.model),
                prepared.template_version.as_deref(),
                stage.cache_salt.as_deref(),
            );
            let Ok(text) = std::fs::read_to_string(cache_path(input.cache_dir, &key)) else {
                continue;
            };
            let Ok(entry) = serde_json::from_str::<CacheEntry>(&text) else {
                continue;
            };
            if entry.format != CACHE_FORMAT || !validator.is_valid(&entry.output) {
                continue;
            }
            return Ok(LlmOutcome {
                output: entry.output,
                service: name.to_string(),
                model: entry.model,
                tokens_per_second: tokens_per_second(&entry.answer),
                answer: entry.answer,
                cache_hit: true,
                response_time_s: started.elapsed().as_secs_f64(),
                request_time_s: None,
                providers: Vec::new(),
                fallback_notes: vec![format!(
                    "llm: cached answer of `{name}` used (key {})",
                    &key[..12]
                )],
                template_version: prepared.template_version.clone(),
            });
        }
    }

    let mut providers = Vec::new();
    let mut notes = Vec::new();
    let mut last_error: Option<LlmError> = None;
    for (i, (name, svc)) in chain.iter().enumerate() {
        let report = |health: &str, error: Option<String>| ProviderReport {
            service: name.to_string(),
            base_url: svc.base_url.clone(),
            model: svc.model.clone(),
            health: health.into(),
            error,
        };
        // The endpoint being asked when the stage's bound ends: the message names it.
        let asking_chat = std::sync::atomic::AtomicBool::new(false);
        let attempt = async {
            let client = OpenAiClient::new(svc)?;
            if !recently_healthy(client.base_url(), &svc.model) {
                client.check_model(&svc.model).await?;
                mark_healthy(client.base_url(), &svc.model);
            }
            asking_chat.store(true, std::sync::atomic::Ordering::Relaxed);
            let req = request_for(&svc.model);
            let t0 = Instant::now();
            let answer = client.chat(&req, stage.stream).await?;
            Ok::<_, LlmError>((client, req, answer, t0.elapsed().as_secs_f64()))
        };
        let bounded = tokio::time::timeout(
            std::time::Duration::try_from_secs_f64(stage.timeout_s)
                .unwrap_or(std::time::Duration::from_secs(120)),
            attempt,
        )
        .await
        .unwrap_or_else(|_| {
            let endpoint = if asking_chat.load(std::sync::atomic::Ordering::Relaxed) {
                "chat/completions"
            } else {
                "models"
            };
            Err(LlmError::Timeout {
                url: format!("{}/{endpoint}", svc.base_url.trim_end_matches('/')),
                secs: stage.timeout_s,
            })
        });
        match bounded {
            Ok((client, req, answer, secs)) => {
                providers.push(report("reachable", None));
                if i > 0 {
                    notes.push(format!("llm: answered by fallback `{name}`"));
                }
                let checked = check_answer(stage, &validator, &answer, secs);
                return match checked {
                    Ok(output) => {
                        if use_cache {
                            let key = cache_key(
                                client.base_url(),
                                &req,
                                prepared.template_version.as_deref(),
                                stage.cache_salt.as_deref(),
                            );
                            let entry = CacheEntry {
                                format: CACHE_FORMAT,
                                service: name.to_string(),
                                model: svc.model.clone(),
                                answer: answer.clone(),
                                output: output.clone(),
                            };
                            // A cache that cannot be written costs a later rerun, not this run.
                            if let Ok(bytes) = serde_json::to_vec_pretty(&entry) {
                                let _ = std::fs::create_dir_all(input.cache_dir);
                                let _ = write_atomic(&cache_path(input.cache_dir, &key), &bytes);
                            }
                        }
                        Ok(LlmOutcome {
                            output,
                            service: name.to_string(),
                            model: svc.model.clone(),
                            tokens_per_second: tokens_per_second(&answer),
                            answer,
                            cache_hit: false,
                            response_time_s: started.elapsed().as_secs_f64(),
                            request_time_s: Some(secs),
                            providers,
                            fallback_notes: notes,
                            template_version: prepared.template_version.clone(),
                        })
                    }
                    Err(mut f) => {
                        f.providers = providers;
                        f.fallback_notes = notes;
                        f.answer = Some(Box::new(answer));
                        Err(f)
                    }
                };
            }
            Err(e) => {
                forget_healthy(svc.base_url.trim_end_matches('/'), &svc.model);
                let health = match e {
                    LlmError::Transport { .. } | LlmError::Timeout { .. } => "unavailable",
                    _ => "reachable",
                };
                providers.push(report(health, Some(e.to_string())));
                if !e.falls_back() {
                    let mut f = LlmFailure::new(e.class(), e.to_string());
                    f.providers = providers;
                    f.fallback_notes = notes;
                    return Err(f);
                }
                if let Some((next, _)) = chain.get(i + 1) {
                    notes.push(format!("llm: `{name}` failed ({e}); trying `{next}`"));
                }
                last_error = Some(e);
            }
        }
    }
    let class = last_error
        .as_ref()
        .map_or(FailureClass::Transport, LlmError::class);
    let tried: Vec<String> = providers
        .iter()
        .map(|p| {
            format!(
                "`{}` ({}): {}",
                p.service,
                p.base_url,
                p.error.as_deref().unwrap_or("?")
            )
        })
        .collect();
    let mut f = LlmFailure::new(
        class,
        format!(
            "no LLM provider answered; tried {}:\n  {}",
            tried.len(),
            tried.join("\n  ")
        ),
    );
    f.providers = providers;
    f.fallback_notes = notes;
    Err(f)
}

/// The `llm` kind for the executor.
pub struct Llm;

impl crate::exec::Stage for Llm {
    fn attempt<'a>(
        &'a self,
        ctx: &'a crate::exec::StageContext,
    ) -> crate::exec::BoxFuture<'a, crate::exec::Attempt> {
        Box::pin(async move {
            use crate::exec::{Attempt, StageFailure};
            let Some(crate::spec::model::Stage::Llm(stage)) = ctx.stage() else {
                return Attempt::from(Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the llm stage was handed a stage of another kind",
                )));
            };
            let spec = &ctx.spec;
            let cache_dir = spec
                .resolve_path(&spec.spec.run.output_dir)
                .join(".cache/llm");
            let input = LlmInput {
                stage,
                services: &spec.spec.services,
                base_dir: &spec.base_dir,
                cache_dir: &cache_dir,
                no_cache: ctx.no_cache,
            };
            let result = tokio::select! {
                r = run(&input) => r,
                () = ctx.cancel.cancelled() => Err(LlmFailure::new(
                    FailureClass::Timeout,
                    "cancelled while waiting for the LLM",
                )),
            };
            let body = match &result {
                Ok(o) => LlmAttempt {
                    violations: Vec::new(),
                    service: Some(o.service.clone()),
                    model: Some(o.model.clone()),
                    cache_hit: o.cache_hit,
                    response_time_s: Some(o.response_time_s),
                    prompt_tokens: o.answer.prompt_tokens,
                    completion_tokens: o.answer.completion_tokens,
                    tokens_per_second: o.tokens_per_second,
                    finish_reason: o.answer.finish_reason.clone(),
                    providers: o.providers.clone(),
                    fallback_notes: o.fallback_notes.clone(),
                    template_version: o.template_version.clone(),
                },
                Err(f) => LlmAttempt {
                    violations: f.violations.clone(),
                    service: None,
                    model: None,
                    cache_hit: false,
                    response_time_s: None,
                    prompt_tokens: f.answer.as_ref().and_then(|a| a.prompt_tokens),
                    completion_tokens: f.answer.as_ref().and_then(|a| a.completion_tokens),
                    tokens_per_second: f.answer.as_deref().and_then(tokens_per_second),
                    finish_reason: f.answer.as_ref().and_then(|a| a.finish_reason.clone()),
                    providers: f.providers.clone(),
                    fallback_notes: f.fallback_notes.clone(),
                    template_version: None,
                },
            };
            let record = LlmRecord {
                attempt: ctx.attempt,
                outcome: RecordOutcome::of_failure(result.as_ref().err().map(|f| f.class)),
                failure_class: result.as_ref().err().map(|f| f.class),
                error: result.as_ref().err().map(|f| f.message.clone()),
                body,
            };
            let result = match result {
                Ok(o) => Ok(o.output),
                Err(f) => {
                    let mut message = f.message;
                    for v in f.violations.iter().skip(1).take(4) {
                        message.push_str("\n  ");
                        message.push_str(v);
                    }
                    Err(StageFailure::new(f.class, message))
                }
            };
            Attempt::recorded(result, &record)
        })
    }
}
