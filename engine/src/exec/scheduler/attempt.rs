//! One attempt of one stage instance: the walker starts it as a task ([`Walker::start`]), the
//! task runs the stage under its bound and the run's cancellation and writes its output
//! ([`run_attempt`]), and the walker takes its result back ([`Walker::on_task`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::super::stage::{Stage, StageContext, StageFailure};
use super::walker::{Phase, Walker};
use crate::rundir::RunDir;
use crate::rundir::event::{AttemptOutcome, EventKind};
use crate::spec::graph::FanMode;
use crate::spec::model::FailureClass;

/// What an attempt task reports.
pub(super) enum AttemptResult {
    Ok {
        output: Arc<Value>,
        file: Option<String>,
    },
    Failed(StageFailure),
    TimedOut(Duration),
    Cancelled,
    /// Not the stage's failure: its output could not be written. Never retried.
    Error(String),
}

/// An attempt in flight, as the walker knows it.
pub(super) struct RunningAttempt {
    pub(super) stage: usize,
    pub(super) slot: usize,
    pub(super) attempt: u32,
    pub(super) started_at: Instant,
    pub(super) started_ts: String,
}

/// Why a list source's output cannot fan out.
#[derive(Debug, thiserror::Error)]
pub(super) enum ListError {
    #[error("`{list}` is too long")]
    TooLong { list: String },
    #[error("the output of `{stage}` has no list `{field}` to fan out over")]
    Missing { stage: String, field: String },
}

impl Walker {
    /// Starts an attempt of a ready instance: takes its service slots, records the start, and
    /// spawns [`run_attempt`].
    pub(super) fn start(&mut self, stage: usize, slot: usize) {
        let Some(implementation) = self.nodes[stage].implementation.clone() else {
            return;
        };
        for &service in &self.nodes[stage].services {
            self.service_slots[service] -= 1;
        }
        self.running += 1;
        let id = self.id(stage, slot);
        let instance = &mut self.instances[stage][slot];
        instance.phase = Phase::Running;
        instance.attempts += 1;
        let attempt = instance.attempts;
        let first = !instance.started;
        instance.started = true;
        if first {
            self.emit(EventKind::InstanceStarted {
                instance: id.clone(),
            });
        }
        self.emit(EventKind::AttemptStarted {
            instance: id.clone(),
            attempt,
        });
        let graph = &self.spec.graph;
        let ctx = StageContext {
            run_id: self.session.dir.id.clone(),
            run_dir: self.session.dir.path.clone(),
            instance_dir: RunDir::instance_dir(&id),
            item: match graph.mode(stage) {
                FanMode::PerItem(list) => self.list_items[list]
                    .as_ref()
                    .and_then(|items| items.get(slot).cloned()),
                _ => None,
            },
            inputs: self.inputs(stage, slot),
            requeues_left: graph.requeue(stage).map(|span| {
                let spent = self.instances[span.target]
                    .get(slot)
                    .map_or(0, |i| i.budget_spent);
                self.nodes[span.target].retry.budget.saturating_sub(spent)
            }),
            no_cache: self.opts.no_cache,
            cancel: self.interrupt.token().child_token(),
            spec: self.spec.clone(),
            attempt,
            instance: id,
        };
        let bound = self.nodes[stage].bound;
        let grace = self.opts.cancel_grace;
        let run_dir = self.session.dir.path.clone();
        // Logs of the attempt sit under `run` → `instance` → `attempt`.
        let instance = tracing::info_span!("instance", instance = %ctx.instance);
        let span = tracing::info_span!(parent: &instance, "attempt", attempt);
        let handle = self.tasks.spawn(tracing::Instrument::instrument(
            run_attempt(implementation, ctx, bound, grace, run_dir),
            span,
        ));
        self.in_flight.insert(
            handle.id(),
            RunningAttempt {
                stage,
                slot,
                attempt,
                started_at: Instant::now(),
                started_ts: crate::rundir::event::now_rfc3339(),
            },
        );
    }

    /// An attempt task ended: gives back its slots and hands its result to the outcome rules.
    pub(super) fn on_task(
        &mut self,
        r: Result<(tokio::task::Id, AttemptResult), tokio::task::JoinError>,
    ) {
        let (id, result) = match r {
            Ok((id, result)) => (id, result),
            Err(e) => {
                let why = if e.is_panic() {
                    "the stage implementation panicked (a bug in cinepipe)"
                } else {
                    "the attempt's task was cancelled"
                };
                (e.id(), AttemptResult::Error(why.to_owned()))
            }
        };
        let Some(running) = self.in_flight.remove(&id) else {
            return;
        };
        self.running -= 1;
        for &service in &self.nodes[running.stage].services {
            self.service_slots[service] += 1;
        }
        let duration = running.started_at.elapsed();
        let result = match result {
            AttemptResult::Ok { output, file } => match self.check_lists(running.stage, &output) {
                Ok(()) => AttemptResult::Ok { output, file },
                Err(e) => AttemptResult::Failed(StageFailure::new(
                    FailureClass::InvalidOutput,
                    e.to_string(),
                )),
            },
            other => other,
        };
        match result {
            AttemptResult::Ok { output, file } => self.succeed(running, duration, output, file),
            AttemptResult::Failed(f) => self.attempt_failed(
                running,
                duration,
                AttemptOutcome::Failed,
                Some(f.class),
                f.message,
            ),
            AttemptResult::TimedOut(bound) => self.attempt_failed(
                running,
                duration,
                AttemptOutcome::TimedOut,
                Some(FailureClass::Timeout),
                format!("the attempt ran past its bound of {}", secs(bound)),
            ),
            AttemptResult::Error(msg) => {
                self.attempt_failed(running, duration, AttemptOutcome::Crashed, None, msg)
            }
            AttemptResult::Cancelled => {
                self.cancelled += 1;
                let id = self.id(running.stage, running.slot);
                self.record(&running, duration, AttemptOutcome::Cancelled, None, None);
                self.emit(EventKind::AttemptFinished {
                    instance: id,
                    attempt: running.attempt,
                    outcome: AttemptOutcome::Cancelled,
                    duration_s: duration.as_secs_f64(),
                    class: None,
                    error: None,
                    retry_in_s: None,
                });
                self.instances[running.stage][running.slot].phase = Phase::Blocked;
            }
        }
    }

    /// A list source's output must hold its lists, or nothing can fan out of it.
    fn check_lists(&self, stage: usize, output: &Value) -> Result<(), ListError> {
        let graph = self.graph();
        for &list in graph.sources(stage) {
            let list = &graph.lists()[list];
            match output.get(&list.field) {
                Some(Value::Array(a)) if u32::try_from(a.len()).is_ok() => {}
                Some(Value::Array(_)) => {
                    return Err(ListError::TooLong {
                        list: list.label.clone(),
                    });
                }
                _ => {
                    return Err(ListError::Missing {
                        stage: self.nodes[stage].name.clone(),
                        field: list.field.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// One attempt: the stage's future under its bound and the run's cancellation, then its output
/// written to the run folder.
pub(super) async fn run_attempt(
    implementation: Arc<dyn Stage>,
    ctx: StageContext,
    bound: Duration,
    grace: Duration,
    run_dir: PathBuf,
) -> AttemptResult {
    let cancel = ctx.cancel.clone();
    let result = {
        let fut = implementation.run(&ctx);
        tokio::pin!(fut);
        // The cancel branch first: a stage that returns an error because it was cancelled
        // has been cancelled, not failed.
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // The stage gets a moment to undo what it started on a server; work that
                // still finishes in that moment is kept.
                match tokio::time::timeout(grace, &mut fut).await {
                    Ok(Ok(v)) => Some(Ok(v)),
                    _ => return AttemptResult::Cancelled,
                }
            }
            r = &mut fut => Some(r),
            () = tokio::time::sleep(bound) => None,
        }
    };
    let Some(result) = result else {
        // Let anything the stage spawned know that its attempt is over.
        cancel.cancel();
        return AttemptResult::TimedOut(bound);
    };
    let value = match result {
        Ok(v) => v,
        // Interrupted while it failed: the failure may be the interrupt's doing.
        Err(_) if cancel.is_cancelled() => return AttemptResult::Cancelled,
        Err(f) => return AttemptResult::Failed(f),
    };
    if value.is_null() {
        return AttemptResult::Ok {
            output: Arc::new(value),
            file: None,
        };
    }
    let rel = RunDir::output_file(&ctx.instance);
    let path = run_dir.join(&rel);
    let value = Arc::new(value);
    let v = value.clone();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut bytes = serde_json::to_vec_pretty(&*v)?;
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&path, &bytes)
    })
    .await;
    match written {
        Ok(Ok(())) => AttemptResult::Ok {
            output: value,
            file: Some(rel.to_string_lossy().into_owned()),
        },
        Ok(Err(e)) => AttemptResult::Error(format!(
            "cannot write `{}`: {e}",
            run_dir.join(&rel).display()
        )),
        Err(e) => AttemptResult::Error(format!("cannot write the output: {e}")),
    }
}
