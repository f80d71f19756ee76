//! What a stage kind implements to be run: the [`Stage`] trait, the [`StageContext`] it is given,
//! and the [`Registry`] that maps each kind to its implementation.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::rundir::event::InstanceId;
use crate::spec::CheckedSpec;
use crate::spec::model::{FailureClass, Stage as SpecStage, StageKind};

/// A boxed, sendable future: what [`Stage::run`] returns, so that the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The implementation of one stage kind (`llm`, `queue`, …). One value serves every stage of
/// its kind and every attempt; what differs is in the [`StageContext`].
///
/// An attempt ([`Stage::attempt`]) returns its output (JSON; `null` for none) or a
/// [`StageFailure`] whose class the stage's retry policy judges, and the record of the attempt
/// that [`Stage::run`] writes as `attempt-<n>.json`. The executor bounds the attempt
/// ([`Stage::attempt_bound`]) and cancels `ctx.cancel` on Ctrl-C; an implementation should
/// return soon after it is cancelled (it has [`super::ExecOptions::cancel_grace`] before it is
/// dropped), undoing what it started on a server (ComfyUI `/interrupt`).
pub trait Stage: Send + Sync {
    /// Runs one attempt of one instance.
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt>;

    /// The bound on one attempt of `stage`. The default is [`default_attempt_bound`].
    fn attempt_bound(&self, stage: &SpecStage) -> Duration {
        default_attempt_bound(stage)
    }

    /// Runs one attempt and writes its record beside the instance's output: what the executor
    /// calls, so that every kind's record is written the same way. Not meant to be overridden.
    fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
        Box::pin(async move {
            let attempt = self.attempt(ctx).await;
            if let Some(record) = &attempt.record {
                write_attempt_record(ctx, record)?;
            }
            attempt.result
        })
    }
}

/// What one attempt gives back: its output or why it failed, and its record.
#[derive(Debug)]
pub struct Attempt {
    pub result: Result<Value, StageFailure>,
    /// The attempt's record, written as `attempt-<n>.json` in the instance folder whether the
    /// attempt succeeded or not; `None` writes none.
    pub record: Option<Vec<u8>>,
}

impl Attempt {
    /// An attempt that leaves `record`. A record that cannot be serialised fails the attempt,
    /// since the run's telemetry is built from it.
    pub fn recorded(
        result: Result<Value, StageFailure>,
        record: &impl serde::Serialize,
    ) -> Attempt {
        match serde_json::to_vec_pretty(record) {
            Ok(bytes) => Attempt {
                result,
                record: Some(bytes),
            },
            Err(e) => Attempt {
                result: Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    format!("cannot serialise the attempt record: {e}"),
                )),
                record: None,
            },
        }
    }

    /// The attempt of a future that gives an output or a failure and leaves no record.
    pub async fn unrecorded(attempt: impl Future<Output = Result<Value, StageFailure>>) -> Attempt {
        attempt.await.into()
    }

    /// An output serialised from its type.
    pub fn output(output: &impl serde::Serialize) -> Result<Value, StageFailure> {
        serde_json::to_value(output).map_err(|e| {
            StageFailure::new(
                FailureClass::InvalidOutput,
                format!("cannot serialise the output: {e}"),
            )
        })
    }
}

impl From<Result<Value, StageFailure>> for Attempt {
    fn from(result: Result<Value, StageFailure>) -> Attempt {
        Attempt {
            result,
            record: None,
        }
    }
}

/// Writes `attempt-<n>.json` into the instance folder, atomically; a record that cannot be
/// written fails the attempt, since the run's telemetry is built from it.
fn write_attempt_record(ctx: &StageContext, record: &[u8]) -> Result<(), StageFailure> {
    let dir = ctx.run_dir.join(&ctx.instance_dir);
    let path = dir.join(format!("attempt-{}.json", ctx.attempt));
    std::fs::create_dir_all(&dir)
        .and_then(|()| crate::fsutil::write_atomic(&path, record))
        .map_err(|e| {
            StageFailure::new(
                FailureClass::InvalidOutput,
                format!("cannot write {}: {e}", path.display()),
            )
        })
}

/// Why an attempt failed. `class` decides whether the retry policy retries it; a `short-frames`
/// failure of a `collect-frames` stage with `on_short = { requeue = "…" }` requeues instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StageFailure {
    pub class: FailureClass,
    pub message: String,
}

impl StageFailure {
    pub fn new(class: FailureClass, message: impl Into<String>) -> StageFailure {
        StageFailure {
            class,
            message: message.into(),
        }
    }
}

/// What one attempt of one instance is given.
#[derive(Debug, Clone)]
pub struct StageContext {
    pub run_id: String,
    /// The run folder (absolute or relative to the current folder).
    pub run_dir: PathBuf,
    /// This instance's folder, relative to `run_dir` (`stages/render/2`); created by the
    /// executor only when it writes the output, so a stage that writes files creates it.
    pub instance_dir: PathBuf,
    pub instance: InstanceId,
    /// The whole checked spec (profile applied), for services and paths.
    pub spec: Arc<CheckedSpec>,
    /// This attempt's number, from 1, counted over the whole run (resumes included).
    pub attempt: u32,
    /// The item of the list this instance runs for (a scene), for per-item stages.
    pub item: Option<Value>,
    /// The outputs of the stages this one needs, by stage name. For a stage that gathers a
    /// per-item need, that need's value is the array of every item's output, in item order.
    pub inputs: Vec<(String, Arc<Value>)>,
    /// Requeues the `on_short` target has left for this item (`collect-frames` with
    /// `on_short = { requeue = … }` only): when 0, a short scene can only be kept or failed.
    pub requeues_left: Option<u32>,
    /// `--no-cache`: do not reuse a cached answer (the `llm` stage's response cache).
    pub no_cache: bool,
    /// Cancelled when the run is interrupted or the attempt's bound has passed.
    pub cancel: CancellationToken,
}

impl StageContext {
    /// This stage's configuration from the spec.
    pub fn stage(&self) -> Option<&SpecStage> {
        self.spec.spec.stages.get(&self.instance.stage)
    }

    /// The output of a needed stage.
    pub fn input(&self, stage: &str) -> Option<&Value> {
        self.inputs
            .iter()
            .find(|(n, _)| n == stage)
            .map(|(_, v)| v.as_ref())
    }

    /// The first needed stage of `kind` and its output: how a stage finds the upstream whose
    /// typed output it reads.
    pub fn input_of_kind(&self, kind: StageKind) -> Option<(&str, &Arc<Value>)> {
        self.inputs
            .iter()
            .find(|(name, _)| {
                self.spec
                    .spec
                    .stages
                    .get(name)
                    .is_some_and(|s| s.kind() == kind)
            })
            .map(|(name, v)| (name.as_str(), v))
    }
}

/// Asks whether a service answers again after an attempt could not reach it. The executor sits
/// below the clients in the layering and cannot probe a server itself; the stages layer hands
/// one in with its [`Registry`].
pub trait ServiceWatch: Send + Sync {
    /// Resolves once a URL of `service` answers its health check, or when `bound` has passed;
    /// true when it answered.
    fn until_answering(
        &self,
        spec: Arc<CheckedSpec>,
        service: String,
        bound: Duration,
    ) -> BoxFuture<'static, bool>;
}

/// Stage kinds and their implementations, and what watches the services of each.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<StageKind, Arc<dyn Stage>>,
    watches: HashMap<StageKind, Arc<dyn ServiceWatch>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&str> = self.kinds.keys().map(|k| k.as_str()).collect();
        kinds.sort_unstable();
        f.debug_struct("Registry").field("kinds", &kinds).finish()
    }
}

impl Registry {
    /// Adds (or replaces) the implementation of a kind. A replaced kind loses its service
    /// watch: nothing says the new implementation talks to the spec's services (a test's
    /// scripted stage talks to none).
    pub fn with(mut self, kind: StageKind, stage: Arc<dyn Stage>) -> Registry {
        self.kinds.insert(kind, stage);
        self.watches.remove(&kind);
        self
    }

    pub fn get(&self, kind: StageKind) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(&kind)
    }

    /// Sets, for every kind registered so far, what the executor asks after an attempt could
    /// not reach a service: whether the service answers again, before the retry is spent.
    pub fn with_service_watch(mut self, watch: Arc<dyn ServiceWatch>) -> Registry {
        for kind in self.kinds.keys() {
            self.watches.insert(*kind, watch.clone());
        }
        self
    }

    pub fn service_watch(&self, kind: StageKind) -> Option<&Arc<dyn ServiceWatch>> {
        self.watches.get(&kind)
    }

    /// The kinds a spec uses that have no implementation, in `StageKind::ALL` order, each with
    /// the stages of that kind.
    pub fn unbuilt(&self, spec: &CheckedSpec) -> Vec<(StageKind, Vec<String>)> {
        StageKind::ALL
            .into_iter()
            .filter(|k| !self.kinds.contains_key(k))
            .filter_map(|k| {
                let stages: Vec<String> = spec
                    .spec
                    .stages
                    .iter()
                    .filter(|(_, s)| s.kind() == k)
                    .map(|(n, _)| n.clone())
                    .collect();
                (!stages.is_empty()).then_some((k, stages))
            })
            .collect()
    }
}

/// Bound on an attempt of a kind that has no timeout of its own.
pub const DEFAULT_ATTEMPT_BOUND: Duration = Duration::from_secs(300);

/// Time a stage gets past its own waiting bound to finish its work (a `queue` stage's GPU
/// snapshot and `/history` fetch after `max_wait_s`, an `await-marker`'s forced copy after
/// `timeout_s`).
pub const BOUND_MARGIN: Duration = Duration::from_secs(30);

/// The bound on one attempt, from the stage's own settings:
///
/// | kind | bound |
/// | --- | --- |
/// | `llm` | `timeout_s` |
/// | `queue` | `max_wait_s + post_execution_timeout_s` + 30 s |
/// | `await-marker` | `timeout_s` + 30 s |
/// | `collect-frames` | `timeout_s` |
/// | `patch-workflow`, `quality`, `validate` | 300 s |
///
/// An attempt past its bound fails with class `timeout`.
pub fn default_attempt_bound(stage: &SpecStage) -> Duration {
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(DEFAULT_ATTEMPT_BOUND);
    match stage {
        SpecStage::Llm(s) => secs(s.timeout_s),
        SpecStage::Queue(s) => secs(s.max_wait_s + s.post_execution_timeout_s) + BOUND_MARGIN,
        SpecStage::AwaitMarker(s) => secs(s.timeout_s) + BOUND_MARGIN,
        SpecStage::CollectFrames(s) => secs(s.timeout_s),
        SpecStage::PatchWorkflow(_) | SpecStage::Quality(_) | SpecStage::Validate(_) => {
            DEFAULT_ATTEMPT_BOUND
        }
    }
}
