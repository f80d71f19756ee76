//! What the walker does when an attempt ends: a success fans out lists and unblocks what
//! needs it; a failure is requeued, retried after its backoff, or fails the instance (and,
//! without `--keep-going`, stops new work).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::super::retry;
use super::attempt::RunningAttempt;
use super::walker::{Phase, Walker};
use super::{AttemptRecord, SERVICE_RECOVERY_BOUND};
use crate::rundir::event::{AttemptOutcome, EventKind};
use crate::spec::graph::{FanMode, RequeueSpan};
use crate::spec::model::FailureClass;

impl Walker {
    pub(super) fn record(
        &mut self,
        running: &RunningAttempt,
        duration: Duration,
        outcome: AttemptOutcome,
        class: Option<FailureClass>,
        error: Option<String>,
    ) {
        self.instances[running.stage][running.slot]
            .records
            .push(AttemptRecord {
                attempt: running.attempt,
                started: running.started_ts.clone(),
                finished: crate::rundir::event::now_rfc3339(),
                duration_s: duration.as_secs_f64(),
                outcome,
                class,
                error,
            });
    }

    pub(super) fn succeed(
        &mut self,
        running: RunningAttempt,
        duration: Duration,
        output: Arc<Value>,
        file: Option<String>,
    ) {
        let id = self.id(running.stage, running.slot);
        self.record(&running, duration, AttemptOutcome::Succeeded, None, None);
        self.emit(EventKind::AttemptFinished {
            instance: id.clone(),
            attempt: running.attempt,
            outcome: AttemptOutcome::Succeeded,
            duration_s: duration.as_secs_f64(),
            class: None,
            error: None,
            retry_in_s: None,
        });
        let instance = &mut self.instances[running.stage][running.slot];
        instance.phase = Phase::Done;
        instance.output = Some(output);
        let (attempts, flaky) = (instance.attempts, instance.had_failure);
        self.done_count[running.stage] += 1;
        self.emit(EventKind::Succeeded {
            instance: id,
            attempts,
            flaky,
            output: file,
        });
        if self.interrupted {
            return;
        }
        let spec = self.spec.clone();
        let graph = &spec.graph;
        for &list in graph.sources(running.stage) {
            self.expand(list);
            for &member in &graph.lists()[list].members {
                for slot in 0..self.instances[member].len() {
                    self.refresh(member, slot);
                }
            }
        }
        let mode = graph.mode(running.stage);
        for &dependent in graph.dependents(running.stage) {
            match (graph.mode(dependent), mode) {
                (FanMode::PerItem(_), FanMode::PerItem(_)) => self.refresh(dependent, running.slot),
                (FanMode::PerItem(_), _) => {
                    for slot in 0..self.instances[dependent].len() {
                        self.refresh(dependent, slot);
                    }
                }
                _ => self.refresh(dependent, 0),
            }
        }
    }

    pub(super) fn attempt_failed(
        &mut self,
        running: RunningAttempt,
        duration: Duration,
        outcome: AttemptOutcome,
        class: Option<FailureClass>,
        message: String,
    ) {
        let (stage, slot) = (running.stage, running.slot);
        let id = self.id(stage, slot);
        self.record(&running, duration, outcome, class, Some(message.clone()));
        self.instances[stage][slot].had_failure = true;
        let finished = |retry_in_s: Option<f64>| EventKind::AttemptFinished {
            instance: id.clone(),
            attempt: running.attempt,
            outcome,
            duration_s: duration.as_secs_f64(),
            class,
            error: Some(message.clone()),
            retry_in_s,
        };

        if self.interrupted {
            // Not a verdict on the instance: a resume runs it again.
            self.emit(finished(None));
            self.instances[stage][slot].phase = Phase::Blocked;
            return;
        }
        if self.stopped_by.is_none() {
            let spec = self.spec.clone();
            if class == Some(FailureClass::ShortFrames)
                && let Some(span) = spec.graph.requeue(stage)
                && self.instances[span.target][slot].budget_spent
                    < self.nodes[span.target].retry.budget
            {
                self.emit(finished(None));
                self.requeue(stage, slot, span);
                return;
            }
            if let Some(c) = class
                && retry::may_retry(
                    &self.nodes[stage].retry,
                    c,
                    self.instances[stage][slot].budget_spent,
                )
            {
                self.instances[stage][slot].budget_spent += 1;
                let spent = self.instances[stage][slot].budget_spent;
                let wait = retry::delay(&self.nodes[stage].retry, spent, retry::random_unit());
                self.emit(finished(Some(wait.as_secs_f64())));
                if c == FailureClass::Transport {
                    self.wait_for_services(stage, slot, wait);
                } else {
                    self.wait(stage, slot, wait);
                }
                return;
            }
        }
        self.emit(finished(None));
        self.fail(stage, slot, class, message);
    }

    /// Sends item `slot` back to the span's target: it and every stage after it up to `stage`
    /// run again.
    fn requeue(&mut self, stage: usize, slot: usize, span: &RequeueSpan) {
        let target = span.target;
        let mut reset = Vec::with_capacity(span.stages.len());
        for &reset_stage in &span.stages {
            let Some(instance) = self.instances[reset_stage].get_mut(slot) else {
                continue;
            };
            if instance.phase == Phase::Done {
                self.done_count[reset_stage] -= 1;
            }
            instance.phase = Phase::Blocked;
            instance.output = None;
            instance.reused = false;
            reset.push(self.id(reset_stage, slot));
        }
        let requeued = &mut self.instances[target][slot];
        requeued.budget_spent += 1;
        let spent = requeued.budget_spent;
        let budget_left = self.nodes[target].retry.budget.saturating_sub(spent);
        self.emit(EventKind::Requeued {
            instance: self.id(stage, slot),
            target: self.id(target, slot),
            reset,
            class: FailureClass::ShortFrames,
            budget_left,
        });
        // A requeue is a retry of the target: its backoff applies.
        let wait = retry::delay(&self.nodes[target].retry, spent, retry::random_unit());
        self.wait(target, slot, wait);
    }

    /// Waits before an instance's next attempt. It holds no slot meanwhile.
    pub(super) fn wait(&mut self, stage: usize, slot: usize, wait: Duration) {
        if wait.is_zero() {
            self.instances[stage][slot].phase = Phase::Ready;
            self.ready[stage].insert(slot);
            return;
        }
        self.instances[stage][slot].phase = Phase::Waiting;
        let token = self.interrupt.token().clone();
        self.timers.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = token.cancelled() => {}
            }
            (stage, slot)
        });
    }

    /// Waits before the retry of an attempt that could not reach a server: the backoff, then
    /// until each service of the stage answers again (within [`SERVICE_RECOVERY_BOUND`]), so
    /// that a server restarting under a supervisor does not cost the retry. It holds no slot
    /// meanwhile.
    fn wait_for_services(&mut self, stage: usize, slot: usize, wait: Duration) {
        let services: Vec<String> = self.nodes[stage]
            .services
            .iter()
            .filter_map(|&i| self.spec.spec.services.get_index(i).map(|(n, _)| n.clone()))
            .collect();
        let Some(watch) = self.nodes[stage]
            .service_watch
            .clone()
            .filter(|_| !services.is_empty())
        else {
            self.wait(stage, slot, wait);
            return;
        };
        self.instances[stage][slot].phase = Phase::Waiting;
        let token = self.interrupt.token().clone();
        let spec = self.spec.clone();
        let name = self.nodes[stage].name.clone();
        self.timers.spawn(async move {
            let watched = async {
                tokio::time::sleep(wait).await;
                let deadline = tokio::time::Instant::now() + SERVICE_RECOVERY_BOUND;
                for service in services {
                    tracing::info!(
                        stage = %name,
                        service = %service,
                        "waiting for the service to answer again before the retry"
                    );
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if !watch
                        .until_answering(spec.clone(), service.clone(), left)
                        .await
                    {
                        tracing::warn!(
                            stage = %name,
                            service = %service,
                            "the service did not answer again within {} s; retrying anyway",
                            SERVICE_RECOVERY_BOUND.as_secs()
                        );
                    }
                }
            };
            tokio::select! {
                () = watched => {}
                () = token.cancelled() => {}
            }
            (stage, slot)
        });
    }

    pub(super) fn fail(
        &mut self,
        stage: usize,
        slot: usize,
        class: Option<FailureClass>,
        error: String,
    ) {
        let id = self.id(stage, slot);
        let instance = &mut self.instances[stage][slot];
        instance.phase = Phase::Failed;
        instance.error = Some(error.clone());
        let attempts = instance.attempts;
        self.failed += 1;
        self.emit(EventKind::Failed {
            instance: id.clone(),
            attempts,
            class,
            error,
        });
        if !self.opts.keep_going && self.stopped_by.is_none() {
            self.stopped_by = Some(id.clone());
            // Retries waiting for their turn are new work: they are not taken.
            self.timers.abort_all();
            for other in 0..self.instances.len() {
                for other_slot in 0..self.instances[other].len() {
                    if self.instances[other][other_slot].phase == Phase::Waiting {
                        let msg =
                            format!("its retry was not taken: the run stopped after `{id}` failed");
                        self.fail(other, other_slot, None, msg);
                    }
                }
            }
        }
    }
}
