//! The `patch-workflow` stage: load an API-format workflow, set its inputs from the spec's
//! `set` templates, give every attempt its own `filename_prefix`, check the graph against the
//! server's `/object_info` when one answers, and write the patched workflow and the scene's
//! metadata to the instance folder before anything is queued.
//!
//! **Typed values.** A `set` value that is not a string is set as it is. A string is a
//! Handlebars template (strict: an unknown variable is an error, nothing is HTML-escaped)
//! rendered with `run` (`id`, `name`, `profile`, `seed`, `dir`), `scene`, `story`, `seed`,
//! `attempt`, `prefix` and `vars`; the *workflow* decides the type of the result: where the
//! input currently holds a number, the rendered text must be a JSON number (`"{{seed}}"` → 7),
//! where it holds a boolean, `true` or `false`; anywhere else it stays a string, even when it
//! looks like a number. Text is never spliced into JSON: values are set on the parsed graph.
//!
//! **Prefixes.** `{{prefix}}` is `cinepipe/<run-id>/<stage>/<item>-<scene-id>/a<attempt>/frame`
//! (see [`prefix_for`]: no other instance or attempt can share it), and every
//! `filename_prefix` input that `set` leaves alone gets it. ComfyUI re-runs nothing of a graph
//! it has run before and then writes no file, so the `queue` stage makes each of *its*
//! attempts unique too (a retry of `queue` reuses this stage's output): it swaps `{{prefix}}`
//! for its own attempt's (see `stages::queue`). Absolute prefixes and `..` segments (which
//! ComfyUI accepts and fails on only at run time) are refused before queueing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::output::PatchOutput;
pub use super::output::{ObjectInfoCheck, SceneMeta};
use crate::clients::comfyui::{ComfyClient, ComfyError};
use crate::exec::{Attempt, BoxFuture, StageContext, StageFailure};
use crate::fsutil::write_atomic;
use crate::spec::model::{FailureClass, PatchWorkflowStage, Stage as SpecStage, StageKind};
pub use crate::workflow::PrefixFlaw;

mod prefix;
use crate::workflow::Workflow;
use prefix::scene_id;
pub use prefix::{UnsafePrefix, check_prefix, check_prefixes, prefix_for};

/// The run's values that templates see as `{{run.*}}`.
#[derive(Debug, Clone, Serialize)]
pub struct RunVars {
    pub id: String,
    pub name: String,
    pub profile: String,
    /// The run's base seed (`run.seed`, else drawn from the run id, so a resume agrees).
    pub seed: u64,
    pub dir: String,
}

/// What one attempt patches with.
#[derive(Debug, Clone)]
pub struct PatchInput<'a> {
    pub stage: &'a PatchWorkflowStage,
    /// The stage's name in the spec: part of the prefix.
    pub stage_name: String,
    pub base_dir: &'a Path,
    pub run: RunVars,
    /// The scene (the list item) and its index, for per-item stages.
    pub scene: Option<&'a Value>,
    pub item: Option<u32>,
    /// The story (the `llm` stage's output), when the stage needs it.
    pub story: Option<&'a Value>,
    pub attempt: u32,
}

/// A patched workflow, ready to queue.
#[derive(Debug, Clone)]
pub struct Patched {
    pub workflow: Value,
    /// This attempt's `{{prefix}}`.
    pub prefix: String,
    /// Every `filename_prefix` input of the graph, by node id, as patched.
    pub filename_prefixes: Map<String, Value>,
    /// `{{seed}}`: the run's base seed plus the item index.
    pub seed: u64,
    pub scene: SceneMeta,
}

/// Why a workflow could not be patched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("cannot read the workflow {path}: {message}")]
    Read { path: String, message: String },
    #[error("the workflow {path}: {message}")]
    Workflow { path: String, message: String },
    #[error("`set.\"{key}\"`: {message}")]
    Target { key: String, message: String },
    #[error("`set.\"{key}\"`: cannot render the template: {message}")]
    Render { key: String, message: String },
    #[error("`set.\"{key}\"`: {message}")]
    Type { key: String, message: String },
    #[error(transparent)]
    Prefix(#[from] UnsafePrefix),
}

impl PatchError {
    /// A template that the scene cannot fill is the story's fault (`invalid-output`, which
    /// retries by default); everything else is a spec or workflow that no retry mends
    /// (`node-error`).
    pub fn class(&self) -> FailureClass {
        match self {
            PatchError::Render { .. } | PatchError::Type { .. } => FailureClass::InvalidOutput,
            _ => FailureClass::NodeError,
        }
    }
}

/// The base seed of a run: `run.seed`, else 32 bits of SHA-256 of the run id.
pub fn base_seed(run_seed: Option<u64>, run_id: &str) -> u64 {
    run_seed.unwrap_or_else(|| {
        let d = Sha256::digest(run_id.as_bytes());
        u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    })
}

fn render(
    hb: &handlebars::Handlebars<'_>,
    key: &str,
    text: &str,
    data: &Value,
) -> Result<String, PatchError> {
    hb.render_template(text, data)
        .map_err(|e| PatchError::Render {
            key: key.to_owned(),
            message: e.to_string(),
        })
}

/// The rendered text as the type the workflow holds at that input (see the module docs).
fn typed(key: &str, rendered: String, current: &Value) -> Result<Value, PatchError> {
    match current {
        Value::Number(_) => match serde_json::from_str::<Value>(rendered.trim()) {
            Ok(v @ Value::Number(_)) => Ok(v),
            _ => Err(PatchError::Type {
                key: key.to_owned(),
                message: format!(
                    "the workflow holds a number here, but the template rendered {rendered:?}"
                ),
            }),
        },
        Value::Bool(_) => match rendered.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(PatchError::Type {
                key: key.to_owned(),
                message: format!(
                    "the workflow holds a boolean here, but the template rendered {rendered:?}"
                ),
            }),
        },
        _ => Ok(Value::String(rendered)),
    }
}

fn template_data(input: &PatchInput<'_>, attempt: u32, prefix: &str, seed: u64) -> Value {
    json!({
        "run": input.run,
        "scene": input.scene,
        "story": input.story,
        "seed": seed,
        "attempt": attempt,
        "prefix": prefix,
        "vars": input.stage.vars,
    })
}

/// Patches the stage's workflow for one attempt. Pure apart from reading the workflow file.
pub fn patch(input: &PatchInput<'_>) -> Result<Patched, PatchError> {
    let path = input.base_dir.join(&input.stage.workflow);
    let text = std::fs::read_to_string(&path).map_err(|e| PatchError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let wf = Workflow::parse(&text).map_err(|e| PatchError::Workflow {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    // Workflow::parse has checked the shape; the raw value keeps everything it does not model
    // (`_meta`, unknown keys), so the graph is queued as the author wrote it.
    let mut graph: Value = serde_json::from_str(&text).map_err(|e| PatchError::Workflow {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;

    let seed = input
        .run
        .seed
        .wrapping_add(u64::from(input.item.unwrap_or(0)));
    let prefix = prefix_for(
        &input.run.id,
        &input.stage_name,
        input.scene,
        input.item,
        input.attempt,
    );
    let data = template_data(input, input.attempt, &prefix, seed);

    let mut hb = handlebars::Handlebars::new();
    // Values are data, not HTML: `&` stays `&`.
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);

    let mut set_by_spec: Vec<(String, String)> = Vec::new();
    for (key, value) in &input.stage.set {
        let (id, name) = wf.resolve(key).map_err(|e| PatchError::Target {
            key: key.clone(),
            message: e.to_string(),
        })?;
        let current = wf
            .nodes
            .get(&id)
            .and_then(|n| n.inputs.get(&name))
            .cloned()
            .unwrap_or(Value::Null);
        let new = match value {
            Value::String(t) => typed(key, render(&hb, key, t, &data)?, &current)?,
            other => other.clone(),
        };
        if let Some(inputs) = graph
            .get_mut(&id)
            .and_then(|n| n.get_mut("inputs"))
            .and_then(Value::as_object_mut)
        {
            inputs.insert(name.clone(), new);
        }
        set_by_spec.push((id, name));
    }

    // Every other filename_prefix gets this attempt's prefix.
    if let Some(nodes) = graph.as_object_mut() {
        for (id, node) in nodes.iter_mut() {
            let set = set_by_spec
                .iter()
                .any(|(i, n)| i == id && n == "filename_prefix");
            if let Some(inputs) = node.get_mut("inputs").and_then(Value::as_object_mut)
                && !set
                && inputs.get("filename_prefix").is_some_and(Value::is_string)
            {
                inputs.insert("filename_prefix".into(), Value::String(prefix.clone()));
            }
        }
    }
    let filename_prefixes = check_prefixes(&graph).map_err(PatchError::Prefix)?;

    let text_of = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let scene = SceneMeta {
        scene_id: scene_id(input.scene),
        story_version: text_of(input.story.and_then(|s| s.get("story_version"))),
        keyframe: text_of(input.scene.and_then(|s| s.get("keyframe"))),
        prompt: text_of(input.scene.and_then(|s| s.get("prompt"))),
        mood: text_of(input.scene.and_then(|s| s.get("mood"))),
    };
    Ok(Patched {
        workflow: graph,
        prefix,
        filename_prefixes,
        seed,
        scene,
    })
}

/// The servers of a `comfyui` service and its `fallback` chain, in the order to try them:
/// `(service, url, request timeout)`. A pool's list starts at `item % len`, so scenes spread
/// over the servers.
pub fn comfy_candidates(
    services: &indexmap::IndexMap<String, crate::spec::model::Service>,
    service: &str,
    item: Option<u32>,
) -> Vec<(String, String, Duration)> {
    use crate::spec::model::Service;
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut next = Some(service);
    while let Some(name) = next {
        if seen.contains(&name) {
            break;
        }
        seen.push(name);
        let Some(Service::Comfyui(s)) = services.get(name) else {
            break;
        };
        let timeout = Duration::try_from_secs_f64(s.timeout_s).unwrap_or(Duration::from_secs(30));
        let n = s.urls.len().max(1);
        let first = item.map_or(0, |i| i as usize % n);
        for k in 0..s.urls.len() {
            if let Some(u) = s.urls.get((first + k) % n) {
                out.push((name.to_owned(), u.clone(), timeout));
            }
        }
        next = s.fallback.as_deref();
    }
    out
}

/// Checks `graph` on the first server of the candidates that answers `/object_info`; a
/// server that does not answer is skipped (the queue stage checks again where it queues).
pub async fn check_on_servers(
    graph: &Value,
    candidates: &[(String, String, Duration)],
) -> Result<ObjectInfoCheck, ComfyError> {
    let mut tried = Vec::new();
    for (_, url, timeout) in candidates {
        let client = ComfyClient::shared(url, *timeout)?;
        match client.check_graph(graph).await {
            Ok(()) => {
                return Ok(ObjectInfoCheck {
                    checked: true,
                    server: Some(url.clone()),
                    note: None,
                });
            }
            Err(e) if e.is_unreachable() => tried.push(format!("{url}: {e}")),
            Err(e) => return Err(e),
        }
    }
    Ok(ObjectInfoCheck {
        checked: false,
        server: None,
        note: Some(if tried.is_empty() {
            "no comfyui service queues this stage's output".into()
        } else {
            format!("no server answered /object_info ({})", tried.join("; "))
        }),
    })
}

/// An instance's JSON file that could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteJsonError {
    #[error("cannot create {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serialize(#[from] serde_json::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub(crate) fn write_json(
    dir: &Path,
    name: &str,
    v: &impl Serialize,
) -> Result<PathBuf, WriteJsonError> {
    let path = dir.join(name);
    std::fs::create_dir_all(dir).map_err(|source| WriteJsonError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(v)?;
    if let Err(source) = write_atomic(&path, &bytes) {
        return Err(WriteJsonError::Write { path, source });
    }
    Ok(path)
}

/// The `patch-workflow` kind for the executor.
pub struct PatchWorkflow;

impl crate::exec::Stage for PatchWorkflow {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move { patch_attempt(ctx).await.into() })
    }
}

/// One attempt: the patched graph and its file, or why not.
async fn patch_attempt(ctx: &StageContext) -> Result<Value, StageFailure> {
    let Some(SpecStage::PatchWorkflow(stage)) = ctx.stage() else {
        return Err(StageFailure::new(
            FailureClass::InvalidOutput,
            "the patch-workflow stage was handed a stage of another kind",
        ));
    };
    let spec = &ctx.spec;
    // The story is the output of a needed `llm` stage, when there is one.
    let story = ctx
        .inputs
        .iter()
        .find(|(name, _)| {
            spec.spec
                .stages
                .get(name)
                .is_some_and(|s| s.kind() == StageKind::Llm)
        })
        .map(|(_, v)| v.as_ref());
    let input = PatchInput {
        stage,
        stage_name: ctx.instance.stage.clone(),
        base_dir: &spec.base_dir,
        run: RunVars {
            id: ctx.run_id.clone(),
            name: spec.spec.run.name.clone(),
            profile: spec.profile.clone(),
            seed: base_seed(spec.spec.run.seed, &ctx.run_id),
            dir: ctx.run_dir.display().to_string(),
        },
        scene: ctx.item.as_ref(),
        item: ctx.instance.item,
        story,
        attempt: ctx.attempt,
    };
    let patched = patch(&input).map_err(|e| StageFailure::new(e.class(), e.to_string()))?;

    // The graph against the server that will run it: the service of a `queue` stage
    // that needs this one.
    let mut check = ObjectInfoCheck::default();
    if stage.check_object_info {
        let service = spec.spec.stages.values().find_map(|s| match s {
            SpecStage::Queue(q) if q.needs.contains(&ctx.instance.stage) => Some(q.service.clone()),
            _ => None,
        });
        let candidates = service
            .map(|s| comfy_candidates(&spec.spec.services, &s, ctx.instance.item))
            .unwrap_or_default();
        let checked = tokio::select! {
            r = check_on_servers(&patched.workflow, &candidates) => r,
            () = ctx.cancel.cancelled() => {
                return Err(StageFailure::new(FailureClass::Interrupted, "cancelled while checking /object_info"));
            }
        };
        check = checked.map_err(|e| StageFailure::new(e.class(), e.to_string()))?;
    } else {
        check.note = Some("check_object_info = false".into());
    }

    let dir = ctx.run_dir.join(&ctx.instance_dir);
    let wf_name = format!("workflow-{}.json", ctx.attempt);
    let io = |e: WriteJsonError| StageFailure::new(FailureClass::InvalidOutput, e.to_string());
    write_json(&dir, &wf_name, &patched.workflow).map_err(io)?;
    write_json(&dir, "scene.json", &patched.scene).map_err(io)?;
    let workflow_path = ctx.instance_dir.join(&wf_name).display().to_string();
    Attempt::output(&PatchOutput {
        workflow: patched.workflow,
        workflow_path,
        prefix: patched.prefix,
        filename_prefixes: patched.filename_prefixes,
        seed: patched.seed,
        attempt: ctx.attempt,
        scene: patched.scene,
        check_object_info: stage.check_object_info,
        object_info: check,
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_for;
    use serde_json::json;
    use std::collections::HashSet;

    #[test]
    fn no_two_instances_or_attempts_share_a_prefix() {
        let long = "x".repeat(64);
        let scenes = [
            json!({"id": "scene-1"}),
            json!({"id": "scene-1"}),
            json!({"id": "scene 1"}),
            json!({"id": "scene_1"}),
            json!({"id": format!("{long}a")}),
            json!({"id": format!("{long}b")}),
            json!({"id": 1}),
            json!({"prompt": "no id"}),
        ];
        let mut seen = HashSet::new();
        let mut count = 0;
        for stage in ["render", "render-2"] {
            for (item, scene) in scenes.iter().enumerate() {
                for attempt in 1..=3 {
                    let item = u32::try_from(item).expect("small");
                    let p = prefix_for("01run", stage, Some(scene), Some(item), attempt);
                    assert!(seen.insert(p.clone()), "{p} is shared");
                    count += 1;
                }
            }
            assert!(seen.insert(prefix_for("01run", stage, None, None, 1)));
            count += 1;
        }
        assert_eq!(seen.len(), count);
        assert_eq!(
            prefix_for(
                "01run",
                "render",
                Some(&json!({"id": "scene 1"})),
                Some(2),
                3
            ),
            "cinepipe/01run/render/2-scene_1/a3/frame"
        );
    }
}
