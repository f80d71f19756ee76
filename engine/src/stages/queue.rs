//! The `queue` stage: take the patched workflow of the stage it needs, make this attempt's
//! `filename_prefix` unique, queue it on the first ComfyUI server that answers (a pool's
//! servers in turn from `item % len`, then the `fallback` service's; a server that answered
//! this process within the last 5 s is not asked `/system_stats` again), follow it to its end
//! with the client (`clients::comfyui`), and record the queue telemetry with the contract's
//! names, whether the attempt succeeds or not (`attempt-<n>.json`).
//!
//! **One prefix per queue attempt.** A retry of this stage reuses the patch stage's output,
//! and ComfyUI would answer an identical graph from its cache without writing a file. So each
//! `filename_prefix` that holds the patch's `{{prefix}}`
//! (`cinepipe/<run>/<patch stage>/<item>-<scene>/a<n>/frame`) gets this attempt's
//! (`cinepipe/<run>/<queue stage>/<item>-<scene>/a<queue attempt>/frame`; attempt numbers
//! count over the whole run, resumes and requeues included, so no two queue attempts of a
//! scene share one), and any other `filename_prefix` gets `_r<attempt>` appended from the
//! second attempt on. The output's `prefix` and `filename_prefixes` are the ones queued.
//!
//! **Nothing from the cache counts.** A node that ComfyUI served from its cache wrote no file;
//! what `/history` lists for it is an earlier prompt's. Such a writer's files are dropped
//! from `files` (with a note), and an attempt whose every file-writing node (every node, for a
//! graph without a `filename_prefix`) came from the cache fails as `invalid-output`, so a
//! retry renders it under a prefix of its own instead of the scene counting as rendered.

use serde_json::{Map, Value};
use std::time::Duration;

use super::output::{
    PatchOutput, QueueOutput, QueueRecord, QueueTelemetry, RenderRef, WebsocketReport,
};
use super::patch_workflow::{self, comfy_candidates, prefix_for, write_json};
use crate::clients::comfyui::{ComfyClient, ComfyError, FollowOptions, PromptRun};
use crate::exec::{Attempt, BoxFuture, StageContext, StageFailure};
use crate::spec::model::{FailureClass, QueueStage, Stage as SpecStage, StageKind};

/// How long a server that answered stays "up" without a new health check (`/system_stats`)
/// before the next prompt.
const HEALTH_MEMO: Duration = Duration::from_secs(5);

/// The attempt's queue telemetry, measured from the followed prompt.
fn measured(mut telemetry: QueueTelemetry, run: &PromptRun) -> QueueTelemetry {
    telemetry.queue_start = run.queue_start;
    telemetry.queue_end = Some(run.queue_end);
    telemetry.duration_seconds = run
        .queue_start
        .map(|s| run.queue_end.0.duration_since(s.0).as_secs_f64().max(0.0))
        .unwrap_or(0.0);
    telemetry.history_attempts = run.polls;
    telemetry.history_exit_reason = run.exit;
    telemetry.execution_success_detected = run.success_detected;
    telemetry.execution_success_at = run.success_at;
    telemetry.history_post_execution_timeout_reached = run.post_execution_timeout_reached;
    telemetry
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

/// The output of the need that patched the workflow: the `patch-workflow` stage this one
/// needs.
fn patch_input(ctx: &StageContext) -> Result<PatchOutput, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let (name, value) = ctx.input_of_kind(StageKind::PatchWorkflow).ok_or_else(|| {
        invalid(
            "no needed stage gave a patched workflow (`queue` needs a `patch-workflow` stage)"
                .into(),
        )
    })?;
    serde_json::from_value(value.as_ref().clone()).map_err(|e| {
        invalid(format!(
            "the output of `{name}` is not a patch-workflow output: {e}"
        ))
    })
}

/// The `queue` kind for the executor.
pub struct Queue;

impl crate::exec::Stage for Queue {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(SpecStage::Queue(stage)) = ctx.stage() else {
                return Attempt::from(Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the queue stage was handed a stage of another kind",
                )));
            };
            let mut out = QueueOutput::start(QueueTelemetry::configured(stage));
            let result = attempt(ctx, stage, &mut out).await;
            let result = result.and_then(|()| Attempt::output(&out));
            let record = QueueRecord::new(ctx.attempt, &result, out);
            Attempt::recorded(result, &record)
        })
    }
}

/// One attempt; fills `out` (the output, and the attempt record's body) as it goes, so that a
/// failure still records what was measured.
async fn attempt(
    ctx: &StageContext,
    stage: &QueueStage,
    out: &mut QueueOutput,
) -> Result<(), StageFailure> {
    let fail = |e: &ComfyError| StageFailure::new(e.class(), e.to_string());
    let mut notes: Vec<String> = Vec::new();

    let patch = patch_input(ctx)?;
    let mut graph = patch.workflow.clone();
    let prefix = prefix_for(
        &ctx.run_id,
        &ctx.instance.stage,
        ctx.item.as_ref(),
        ctx.instance.item,
        ctx.attempt,
    );
    reprefix(&mut graph, Some(&patch.prefix), &prefix, ctx.attempt);
    let prefixes = patch_workflow::check_prefixes(&graph)
        .map_err(|e| fail(&ComfyError::BadPrefix(e.to_string())))?;
    // The nodes that write files: their outputs are the attempt's only when they ran.
    let writers: Vec<String> = prefixes.keys().cloned().collect();
    let mut render = RenderRef::new(prefix);
    render.attempt = Some(ctx.attempt);
    out.render = Some(render);
    out.filename_prefixes = Some(prefixes);
    out.scene = Some(patch.scene.clone());
    let dir = ctx.run_dir.join(&ctx.instance_dir);
    let wf_name = format!("workflow-{}.json", ctx.attempt);
    write_json(&dir, &wf_name, &graph)
        .map_err(|e| StageFailure::new(FailureClass::InvalidOutput, e.to_string()))?;
    out.workflow_path = Some(ctx.instance_dir.join(&wf_name).display().to_string());

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
        out.fallback_notes = notes;
        return Err(StageFailure::new(
            FailureClass::Transport,
            format!(
                "no ComfyUI server of service `{}` (or its fallbacks) answered /system_stats: {}",
                stage.service,
                down.join("; ")
            ),
        ));
    };
    if let Some(render) = &mut out.render {
        render.service = Some(service);
        render.server = Some(client.base_url().to_owned());
    }

    if patch.check_object_info {
        match client.check_graph(&graph).await {
            Ok(()) => {}
            Err(e) if e.is_unreachable() || matches!(e, ComfyError::Http { .. }) => {
                notes.push(format!(
                    "comfyui: graph not checked against /object_info: {e}"
                ));
            }
            Err(e) => {
                out.fallback_notes = notes;
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
    out.gpu = Some(gpu);
    notes.extend(gpu_notes);
    out.telemetry = measured(out.telemetry.clone(), &run);
    notes.extend(run.notes.iter().cloned());
    let mut files = run.entry.as_ref().map(|e| e.files()).unwrap_or_default();
    let node_count = graph.as_object().map_or(0, Map::len);
    let fully_cached = node_count > 0 && run.cached_nodes.len() >= node_count;
    // A writer served from the cache wrote nothing: what `/history` lists for it is an
    // earlier prompt's files, never this attempt's frames.
    let cached_writers: Vec<&String> = writers
        .iter()
        .filter(|id| run.cached_nodes.contains(id))
        .collect();
    let nothing_of_its_own = run.result.is_ok()
        && (fully_cached || (!writers.is_empty() && cached_writers.len() == writers.len()));
    if nothing_of_its_own {
        notes.push(
            "comfyui: every node that writes files came from ComfyUI's cache: it wrote no new file, and the files listed are an earlier prompt's"
                .into(),
        );
    } else if !cached_writers.is_empty() {
        files.retain(|f| !cached_writers.contains(&&f.node));
        notes.push(format!(
            "comfyui: nodes {} came from ComfyUI's cache and wrote no new file; their listed files are left out",
            cached_writers
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(render) = &mut out.render {
        render.prompt_id.clone_from(&run.prompt_id);
        render.files = Some(files);
    }
    out.client_id = Some(run.client_id.clone());
    out.outputs = Some(
        run.entry
            .as_ref()
            .map(|e| e.outputs.clone())
            .unwrap_or_default(),
    );
    out.cached_nodes = Some(run.cached_nodes.clone());
    out.fully_cached = Some(fully_cached);
    out.websocket = Some(WebsocketReport {
        enabled: stage.websocket,
        connects: run.ws_connects,
        completion_via: run.completion_via.map(str::to_owned),
    });
    out.fallback_notes = notes;
    run.result.as_ref().map_err(fail)?;
    if nothing_of_its_own {
        // Not rendered: a retry queues the graph with its own attempt's prefix, which
        // ComfyUI has not seen.
        return Err(StageFailure::new(
            FailureClass::InvalidOutput,
            format!(
                "prompt {} was served entirely from ComfyUI's cache: it wrote no file of its own (the files it lists are an earlier prompt's)",
                run.prompt_id.as_deref().unwrap_or("?")
            ),
        ));
    }
    Ok(())
}
