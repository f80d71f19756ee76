//! The `queue` stage: take the patched workflow of the stage it needs, make this attempt's
//! `filename_prefix` unique, queue it on the first ComfyUI server that answers (a pool's
//! servers in turn from `item % len`, then the `fallback` service's; a server that answered
//! this process within the last 5 s is not asked `/system_stats` again), follow it to its end
//! with the client (`clients::comfyui`), and record the queue telemetry with the contract's
//! names, whether the attempt succeeds or not (`attempt-<n>.json`).
//!
//! **One prefix per queue attempt.** A retry of this stage reuses the patch stage's output,
//! and ComfyUI would answer an identical graph from its cache without writing a file. So each
//! `filename_prefix` that holds the patch's `{{prefix}}` (`cinepipe/<run>/<scene>/a<n>/frame`)
//! gets this attempt's (`…/a<queue attempt>/frame`; attempt numbers count over the whole run,
//! resumes and requeues included, so no two queue attempts of a scene share one), and any
//! other `filename_prefix` gets `_r<attempt>` appended from the second attempt on. The output's
//! `prefix` and `filename_prefixes` are the ones queued.

use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

use super::patch_workflow::{self, comfy_candidates, prefix_for, write_json};
use crate::clients::comfyui::{ComfyClient, ComfyError, FollowOptions, PromptRun};
use crate::exec::{BoxFuture, StageContext, StageFailure};
use crate::spec::model::{FailureClass, QueueStage, Stage as SpecStage};
use crate::telemetry::{HistoryExitReason, QueueConfig, Timestamp};

/// How long a server that answered stays "up" without a new health check (`/system_stats`)
/// before the next prompt.
const HEALTH_MEMO: Duration = Duration::from_secs(5);

/// The queue telemetry of one attempt, with the contract's names (`Telemetry` of a scene in
/// `artifact-metadata.json`, less what other stages measure).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueTelemetry {
    pub duration_seconds: f64,
    pub queue_start: Option<Timestamp>,
    pub queue_end: Option<Timestamp>,
    pub history_attempts: u32,
    pub history_attempt_limit: u32,
    #[serde(rename = "pollLimit")]
    pub poll_limit: u32,
    pub max_wait_seconds: f64,
    pub poll_interval_seconds: f64,
    pub history_exit_reason: HistoryExitReason,
    pub execution_success_detected: bool,
    pub execution_success_at: Option<Timestamp>,
    pub post_execution_timeout_seconds: f64,
    pub history_post_execution_timeout_reached: bool,
    pub scene_retry_budget: u32,
}

impl QueueTelemetry {
    /// The configured values, nothing measured yet (a scene that was never queued).
    pub fn configured(stage: &QueueStage) -> QueueTelemetry {
        let config = QueueConfig {
            scene_retry_budget: stage.retry.budget,
            history_max_wait_seconds: stage.max_wait_s,
            history_poll_interval_seconds: stage.poll_interval_s,
            history_max_attempts: stage.max_attempts,
            post_execution_timeout_seconds: stage.post_execution_timeout_s,
        };
        QueueTelemetry {
            duration_seconds: 0.0,
            queue_start: None,
            queue_end: None,
            history_attempts: 0,
            history_attempt_limit: stage.max_attempts,
            poll_limit: config.poll_limit(),
            max_wait_seconds: stage.max_wait_s,
            poll_interval_seconds: stage.poll_interval_s,
            history_exit_reason: HistoryExitReason::Unknown,
            execution_success_detected: false,
            execution_success_at: None,
            post_execution_timeout_seconds: stage.post_execution_timeout_s,
            history_post_execution_timeout_reached: false,
            scene_retry_budget: stage.retry.budget,
        }
    }

    fn measured(mut self, run: &PromptRun) -> QueueTelemetry {
        self.queue_start = run.queue_start;
        self.queue_end = Some(run.queue_end);
        self.duration_seconds = run
            .queue_start
            .map(|s| run.queue_end.0.duration_since(s.0).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        self.history_attempts = run.polls;
        self.history_exit_reason = run.exit;
        self.execution_success_detected = run.success_detected;
        self.execution_success_at = run.success_at;
        self.history_post_execution_timeout_reached = run.post_execution_timeout_reached;
        self
    }
}

/// The follow options of a `queue` stage.
pub fn follow_options(stage: &QueueStage) -> FollowOptions {
    let secs = |s: f64, d: u64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(d));
    FollowOptions {
        poll_interval: secs(stage.poll_interval_s, 2),
        max_wait: secs(stage.max_wait_s, 600),
        max_polls: stage.max_attempts,
        post_execution_timeout: secs(stage.post_execution_timeout_s, 30),
        websocket: stage.websocket,
    }
}

/// Makes the graph's `filename_prefix`es this queue attempt's (see the module docs).
pub fn reprefix(graph: &mut Value, patch_prefix: Option<&str>, new_prefix: &str, attempt: u32) {
    let Some(nodes) = graph.as_object_mut() else {
        return;
    };
    for node in nodes.values_mut() {
        let Some(Value::String(p)) = node.pointer_mut("/inputs/filename_prefix") else {
            continue;
        };
        match patch_prefix {
            Some(old) if !old.is_empty() && p.contains(old) => *p = p.replace(old, new_prefix),
            _ if attempt > 1 => p.push_str(&format!("_r{attempt}")),
            _ => {}
        }
    }
}

/// The output of the need that holds a patched workflow.
fn patch_input(ctx: &StageContext) -> Option<&Value> {
    ctx.inputs
        .iter()
        .map(|(_, v)| v.as_ref())
        .find(|v| v.get("workflow").is_some_and(Value::is_object))
}

/// What an attempt leaves in its instance folder, succeeded or not.
#[derive(Debug, Serialize)]
struct AttemptRecord<'a> {
    attempt: u32,
    outcome: &'a str,
    failure_class: Option<FailureClass>,
    error: Option<String>,
    #[serde(flatten)]
    body: &'a Map<String, Value>,
}

/// The `queue` kind for the executor.
pub struct Queue;

impl crate::exec::Stage for Queue {
    fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
        Box::pin(async move {
            let Some(SpecStage::Queue(stage)) = ctx.stage() else {
                return Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the queue stage was handed a stage of another kind",
                ));
            };
            let mut body = Map::new();
            let result = attempt(ctx, stage, &mut body).await;
            let record = AttemptRecord {
                attempt: ctx.attempt,
                outcome: if result.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                },
                failure_class: result.as_ref().err().map(|f| f.class),
                error: result.as_ref().err().map(|f| f.message.clone()),
                body: &body,
            };
            let dir = ctx.run_dir.join(&ctx.instance_dir);
            write_json(&dir, &format!("attempt-{}.json", ctx.attempt), &record)
                .map_err(|e| StageFailure::new(FailureClass::InvalidOutput, e))?;
            result.map(|()| Value::Object(body))
        })
    }
}

/// One attempt; fills `out` (the output, and the attempt record's body) as it goes, so that a
/// failure still records what was measured.
async fn attempt(
    ctx: &StageContext,
    stage: &QueueStage,
    out: &mut Map<String, Value>,
) -> Result<(), StageFailure> {
    let fail = |e: &ComfyError| StageFailure::new(e.class(), e.to_string());
    let mut telemetry = QueueTelemetry::configured(stage);
    let mut notes: Vec<String> = Vec::new();
    let put = |out: &mut Map<String, Value>, k: &str, v: Value| {
        out.insert(k.to_owned(), v);
    };
    put(out, "telemetry", json!(telemetry));
    // GPU readings before and after `run_prompt` (NVML, else /system_stats, else nvidia-smi);
    // null until the prompt has been followed.
    put(out, "gpu", Value::Null);

    let Some(patch) = patch_input(ctx) else {
        return Err(StageFailure::new(
            FailureClass::InvalidOutput,
            "no needed stage gave a patched workflow (`queue` needs a `patch-workflow` stage)",
        ));
    };
    let mut graph = patch.get("workflow").cloned().unwrap_or(Value::Null);
    let patch_prefix = patch.get("prefix").and_then(Value::as_str);
    let prefix = prefix_for(
        &ctx.run_id,
        ctx.item.as_ref(),
        ctx.instance.item,
        ctx.attempt,
    );
    reprefix(&mut graph, patch_prefix, &prefix, ctx.attempt);
    let prefixes =
        patch_workflow::check_prefixes(&graph).map_err(|m| fail(&ComfyError::BadPrefix(m)))?;
    put(out, "prefix", json!(prefix));
    put(out, "filename_prefixes", Value::Object(prefixes));
    put(
        out,
        "scene",
        patch.get("scene").cloned().unwrap_or(Value::Null),
    );
    let dir = ctx.run_dir.join(&ctx.instance_dir);
    let wf_name = format!("workflow-{}.json", ctx.attempt);
    write_json(&dir, &wf_name, &graph)
        .map_err(|e| StageFailure::new(FailureClass::InvalidOutput, e))?;
    put(
        out,
        "workflow_path",
        json!(ctx.instance_dir.join(&wf_name).display().to_string()),
    );

    // The first server that answers, in the pool's order, then the fallback's.
    let candidates = comfy_candidates(&ctx.spec.spec.services, &stage.service, ctx.instance.item);
    let mut chosen: Option<(String, std::sync::Arc<ComfyClient>)> = None;
    let mut down = Vec::new();
    for (service, url, timeout) in &candidates {
        let client = ComfyClient::shared(url, *timeout).map_err(|e| fail(&e))?;
        // A server that answered this process a moment ago (the previous scene's prompt) is
        // taken as up; the POST finds out otherwise, and the retry then probes again.
        let health = if client.answered_within(HEALTH_MEMO) {
            Ok(())
        } else {
            tokio::select! {
                r = client.system_stats() => r.map(|_| ()),
                () = ctx.cancel.cancelled() => {
                    return Err(fail(&ComfyError::Cancelled { cancel_note: None }));
                }
            }
        };
        match health {
            Ok(_) => {
                if service != &stage.service {
                    notes.push(format!(
                        "comfyui: service `{}` did not answer; using fallback `{service}` ({url})",
                        stage.service
                    ));
                } else if !down.is_empty() {
                    notes.push(format!(
                        "comfyui: {url} used; did not answer: {}",
                        down.join("; ")
                    ));
                }
                chosen = Some((service.clone(), client));
                break;
            }
            Err(e) => down.push(format!("{url} ({e})")),
        }
    }
    let Some((service, client)) = chosen else {
        put(out, "fallback_notes", json!(notes));
        return Err(StageFailure::new(
            FailureClass::Transport,
            format!(
                "no ComfyUI server of service `{}` (or its fallbacks) answered /system_stats: {}",
                stage.service,
                down.join("; ")
            ),
        ));
    };
    put(out, "service", json!(service));
    put(out, "server", json!(client.base_url()));

    if patch
        .get("check_object_info")
        .and_then(Value::as_bool)
        .unwrap_or(true)
    {
        match client.check_graph(&graph).await {
            Ok(()) => {}
            Err(e) if e.is_unreachable() || matches!(e, ComfyError::Http { .. }) => {
                notes.push(format!(
                    "comfyui: graph not checked against /object_info: {e}"
                ));
            }
            Err(e) => {
                put(out, "fallback_notes", json!(notes));
                return Err(fail(&e));
            }
        }
    }

    let http = crate::clients::http().unwrap_or_default();
    let before = crate::clients::gpu::snapshot(&http, Some(client.base_url()), stage.gpu).await;
    let run = client
        .run_prompt(&graph, &follow_options(stage), &ctx.cancel)
        .await;
    let after = crate::clients::gpu::snapshot(&http, Some(client.base_url()), stage.gpu).await;
    let (gpu, gpu_notes) = crate::clients::gpu::around(&before, &after, stage.gpu);
    put(out, "gpu", json!(gpu));
    notes.extend(gpu_notes);
    telemetry = telemetry.measured(&run);
    notes.extend(run.notes.iter().cloned());
    let files = run.entry.as_ref().map(|e| e.files()).unwrap_or_default();
    let node_count = graph.as_object().map_or(0, Map::len);
    let fully_cached = node_count > 0 && run.cached_nodes.len() >= node_count;
    if fully_cached {
        notes.push(
            "comfyui: every node came from ComfyUI's cache: it wrote no new file, and the files listed are an earlier prompt's"
                .into(),
        );
    }
    put(out, "prompt_id", json!(run.prompt_id));
    put(out, "client_id", json!(run.client_id));
    put(out, "telemetry", json!(telemetry));
    put(out, "files", json!(files));
    put(
        out,
        "outputs",
        Value::Object(
            run.entry
                .as_ref()
                .map(|e| e.outputs.clone())
                .unwrap_or_default(),
        ),
    );
    put(out, "cached_nodes", json!(run.cached_nodes));
    put(out, "fully_cached", json!(fully_cached));
    put(
        out,
        "websocket",
        json!({
            "enabled": stage.websocket,
            "connects": run.ws_connects,
            "completion_via": run.completion_via,
        }),
    );
    put(out, "fallback_notes", json!(notes));
    run.result.as_ref().map_err(fail)?;
    Ok(())
}
