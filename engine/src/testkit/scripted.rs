//! [`Scripted`]: a fake [`Stage`] whose attempts follow a script per stage name (take so long,
//! then succeed with an output or fail with a class; wait for the cancel; ignore it), with a
//! log of every attempt, and registries that put it in place of any stage kinds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::exec::{Attempt, BoxFuture, Registry, Stage, StageContext, StageFailure};
use crate::spec::model::{FailureClass, StageKind};

/// What one attempt does: waits (on tokio's clock, so a paused test clock makes it exact), then
/// returns its result. A test builds it with [`Step::ok`] or [`Step::fail`] and changes it with
/// [`Step::after`], [`Step::until_cancelled`] or [`Step::ignoring_cancel`].
#[derive(Debug, Clone)]
pub struct Step {
    /// How long the attempt takes; `None`: until it is cancelled.
    wait: Option<Duration>,
    /// Whether the attempt returns (as `interrupted`) as soon as it is cancelled.
    heeds_cancel: bool,
    result: Result<Value, StageFailure>,
}

impl Step {
    /// Succeeds at once with `output`.
    pub fn ok(output: Value) -> Step {
        Step::with(Ok(output))
    }

    /// Fails at once with `class` (message `scripted <class>`).
    pub fn fail(class: FailureClass) -> Step {
        Step::with(Err(StageFailure::new(class, format!("scripted {class:?}"))))
    }

    /// Returns `result` at once.
    pub fn with(result: Result<Value, StageFailure>) -> Step {
        Step {
            wait: Some(Duration::ZERO),
            heeds_cancel: true,
            result,
        }
    }

    /// Takes `wait` before returning.
    pub fn after(mut self, wait: Duration) -> Step {
        self.wait = Some(wait);
        self
    }

    /// Returns only when cancelled.
    pub fn until_cancelled(mut self) -> Step {
        self.wait = None;
        self
    }

    /// Goes on waiting when cancelled, as a stage that does not listen would: the executor
    /// has to drop it.
    pub fn ignoring_cancel(mut self) -> Step {
        self.heeds_cancel = false;
        self
    }
}

/// One attempt a [`Scripted`] stage ran to its end (an attempt the executor dropped is not
/// logged).
#[derive(Debug, Clone)]
pub struct LoggedAttempt {
    /// The instance, as the journal writes it (`render[2]`).
    pub id: String,
    pub attempt: u32,
    pub start: Instant,
    pub end: Instant,
    /// The attempt saw its cancel token before its wait was over.
    pub cancelled: bool,
    /// What the executor gave the attempt.
    pub ctx: StageContext,
}

type Script = Arc<dyn Fn(&StageContext) -> Step + Send + Sync>;

/// One implementation for any stage kinds, scripted by stage name. A stage without a script
/// follows the fallback ([`Scripted::otherwise`]), which by default succeeds at once with
/// `{"stage": NAME, "item": N}`.
///
/// A script is a function of the attempt's [`StageContext`], so it can answer by item or
/// attempt number, read its inputs, or write files into the instance's folder first.
#[derive(Clone)]
pub struct Scripted {
    scripts: HashMap<String, Script>,
    otherwise: Script,
    log: Arc<Mutex<Vec<LoggedAttempt>>>,
    /// Whether attempts are logged: a bench of many instances keeps no log, so that its
    /// memory is the engine's.
    logs: bool,
}

impl Default for Scripted {
    fn default() -> Scripted {
        Scripted {
            scripts: HashMap::new(),
            otherwise: Arc::new(|ctx: &StageContext| {
                Step::ok(json!({"stage": ctx.instance.stage, "item": ctx.instance.item}))
            }),
            log: Arc::default(),
            logs: true,
        }
    }
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut stages: Vec<&str> = self.scripts.keys().map(String::as_str).collect();
        stages.sort_unstable();
        f.debug_struct("Scripted")
            .field("stages", &stages)
            .finish_non_exhaustive()
    }
}

impl Scripted {
    pub fn new() -> Scripted {
        Scripted::default()
    }

    /// Scripts the stage `stage` (replacing its script, if any).
    pub fn on(
        mut self,
        stage: &str,
        script: impl Fn(&StageContext) -> Step + Send + Sync + 'static,
    ) -> Scripted {
        self.scripts.insert(stage.to_owned(), Arc::new(script));
        self
    }

    /// Scripts every stage that has no script of its own.
    pub fn otherwise(
        mut self,
        script: impl Fn(&StageContext) -> Step + Send + Sync + 'static,
    ) -> Scripted {
        self.otherwise = Arc::new(script);
        self
    }

    /// Keeps no log of the attempts ([`Scripted::log`] stays empty): for a bench of many
    /// instances, whose memory should be the engine's.
    pub fn unlogged(mut self) -> Scripted {
        self.logs = false;
        self
    }

    /// The built-in stages, with this script in place of every kind.
    pub fn registry(&self) -> Registry {
        self.over_builtin(&StageKind::ALL)
    }

    /// The built-in stages, with this script in place of `kinds`.
    pub fn over_builtin(&self, kinds: &[StageKind]) -> Registry {
        self.onto(crate::run::registry(), kinds)
    }

    /// A registry of `kinds` alone, all this script: the other kinds have no implementation.
    pub fn alone(&self, kinds: &[StageKind]) -> Registry {
        self.onto(Registry::default(), kinds)
    }

    fn onto(&self, registry: Registry, kinds: &[StageKind]) -> Registry {
        kinds
            .iter()
            .fold(registry, |r, &kind| r.with(kind, Arc::new(self.clone())))
    }

    /// Every attempt that ran to its end, in the order they ended.
    pub fn log(&self) -> Vec<LoggedAttempt> {
        self.lock().clone()
    }

    /// How many attempts of the instance `id` (`render[2]`) ran to their end.
    pub fn runs_of(&self, id: &str) -> usize {
        self.lock().iter().filter(|a| a.id == id).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LoggedAttempt>> {
        // A script that panicked (on purpose, in a test of panics) poisons nothing we rely on.
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Stage for Scripted {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(Attempt::unrecorded(async move {
            let script = self
                .scripts
                .get(&ctx.instance.stage)
                .unwrap_or(&self.otherwise);
            let step = script(ctx);
            let start = Instant::now();
            let waited = async {
                match step.wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => std::future::pending().await,
                }
            };
            let cancelled = if step.heeds_cancel {
                tokio::select! {
                    () = waited => false,
                    () = ctx.cancel.cancelled() => true,
                }
            } else {
                waited.await;
                false
            };
            if self.logs {
                self.lock().push(LoggedAttempt {
                    id: ctx.instance.to_string(),
                    attempt: ctx.attempt,
                    start,
                    end: Instant::now(),
                    cancelled,
                    ctx: ctx.clone(),
                });
            }
            if cancelled {
                return Err(StageFailure::new(FailureClass::Interrupted, "cancelled"));
            }
            step.result
        }))
    }
}

/// A story of `n` scenes (`scene-1` …), as an `llm` stage outputs it.
pub fn story(n: usize) -> Value {
    json!({
        "title": "t",
        "story_version": "1",
        "scenes": (0..n)
            .map(|i| json!({"id": format!("scene-{}", i + 1), "prompt": "p", "mood": "m"}))
            .collect::<Vec<_>>(),
    })
}
