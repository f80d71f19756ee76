//! The end of a session: every instance that did not run is skipped with a reason, the run's
//! last event is written, and the session's [`RunReport`] is put together.

use super::walker::{Phase, Walker};
use super::{InstanceReport, InstanceState, RunReport};
use crate::rundir::event::{EventKind, InstanceId, RunOutcome, SkipReason};
use crate::spec::graph::FanMode;

impl Walker {
    /// Why an instance that never ran did not: the first need that is not done.
    fn skip_detail(&self, stage: usize, slot: usize) -> (SkipReason, String) {
        let graph = self.graph();
        let mode = graph.mode(stage);
        for &need in graph.needs(stage) {
            let slots: Vec<usize> = match (graph.mode(need), mode) {
                (FanMode::PerItem(_), FanMode::PerItem(_)) => vec![slot],
                (FanMode::PerItem(list), _) if self.list_items[list].is_none() => {
                    return (
                        SkipReason::NeedFailed,
                        format!(
                            "needs every `{}`, whose list never came",
                            self.nodes[need].name
                        ),
                    );
                }
                (FanMode::PerItem(_), _) => (0..self.instances[need].len()).collect(),
                _ => vec![0],
            };
            for need_slot in slots {
                let phase = self.instances[need].get(need_slot).map(|i| i.phase);
                if phase != Some(Phase::Done) {
                    let what = match phase {
                        Some(Phase::Failed) => "failed",
                        Some(Phase::Skipped) => "was skipped",
                        _ => "did not run",
                    };
                    return (
                        SkipReason::NeedFailed,
                        format!("needs `{}`, which {what}", self.id(need, need_slot)),
                    );
                }
            }
        }
        match &self.stopped_by {
            Some(first) => (
                SkipReason::RunStopped,
                format!("the run stopped after `{first}` failed"),
            ),
            None => (
                SkipReason::NeedFailed,
                "its needs did not finish".to_owned(),
            ),
        }
    }

    pub(super) fn finish(mut self) -> RunReport {
        let duration = self.started.elapsed();
        let outcome = if self.interrupted {
            let succeeded = self.count(Phase::Done) as u32;
            let signal = self.interrupt.signal().map(str::to_owned);
            self.emit(EventKind::RunInterrupted {
                signal,
                succeeded,
                cancelled: self.cancelled,
                duration_s: duration.as_secs_f64(),
            });
            RunOutcome::Interrupted
        } else {
            // In plan order, so a skipped instance's detail can name an earlier skipped one.
            let spec = self.spec.clone();
            let graph = &spec.graph;
            for &stage in graph.order() {
                if let FanMode::PerItem(list) = graph.mode(stage)
                    && self.list_items[list].is_none()
                {
                    let source = graph.lists()[list].source;
                    let what = match self.instances[source].first().map(|i| i.phase) {
                        Some(Phase::Failed) => "failed",
                        Some(Phase::Skipped) => "was skipped",
                        _ => "did not run",
                    };
                    let reason = SkipReason::NeedFailed;
                    let detail = format!(
                        "runs once per item of `{}`, and `{}` {what}",
                        graph.lists()[list].label,
                        self.nodes[source].name
                    );
                    self.emit(EventKind::Skipped {
                        instance: InstanceId::new(self.nodes[stage].name.clone(), None),
                        reason,
                        detail,
                    });
                    continue;
                }
                for slot in 0..self.instances[stage].len() {
                    if !matches!(
                        self.instances[stage][slot].phase,
                        Phase::Done | Phase::Failed
                    ) {
                        let (reason, detail) = self.skip_detail(stage, slot);
                        self.instances[stage][slot].phase = Phase::Skipped;
                        self.emit(EventKind::Skipped {
                            instance: self.id(stage, slot),
                            reason,
                            detail,
                        });
                    }
                }
            }
            let skipped = self.count(Phase::Skipped);
            let unexpanded = (0..graph.len())
                .filter(
                    |&stage| matches!(graph.mode(stage), FanMode::PerItem(list) if self.list_items[list].is_none()),
                )
                .count();
            let outcome = if self.failed == 0 && skipped == 0 && unexpanded == 0 {
                RunOutcome::Succeeded
            } else {
                RunOutcome::Failed
            };
            let flaky = self
                .instances
                .iter()
                .flatten()
                .filter(|i| i.phase == Phase::Done && i.had_failure)
                .count();
            self.emit(EventKind::RunFinished {
                outcome,
                succeeded: self.count(Phase::Done) as u32,
                failed: self.failed as u32,
                skipped: (skipped + unexpanded) as u32,
                flaky: flaky as u32,
                duration_s: duration.as_secs_f64(),
            });
            outcome
        };
        self.session.journal.sync();
        let mut instances = Vec::new();
        let spec = self.spec.clone();
        for &stage in spec.graph.order() {
            if let FanMode::PerItem(list) = spec.graph.mode(stage)
                && self.list_items[list].is_none()
            {
                // A per-item stage whose list never came: one entry stands for all its items.
                instances.push(InstanceReport {
                    id: InstanceId::new(self.nodes[stage].name.clone(), None),
                    state: if self.interrupted {
                        InstanceState::NotRun
                    } else {
                        InstanceState::Skipped
                    },
                    attempts: Vec::new(),
                    flaky: false,
                    error: None,
                    output: None,
                });
            }
            for (slot, i) in self.instances[stage].iter().enumerate() {
                let state = match i.phase {
                    Phase::Done if i.reused => InstanceState::Reused,
                    Phase::Done => InstanceState::Succeeded,
                    Phase::Failed => InstanceState::Failed,
                    Phase::Skipped => InstanceState::Skipped,
                    _ => InstanceState::NotRun,
                };
                instances.push(InstanceReport {
                    id: self.id(stage, slot),
                    state,
                    attempts: i.records.clone(),
                    flaky: i.phase == Phase::Done && i.had_failure,
                    error: i.error.clone(),
                    output: i.output.clone(),
                });
            }
        }
        RunReport {
            run_id: self.session.dir.id.clone(),
            dir: self.session.dir.path.clone(),
            session: self.session_no,
            outcome,
            instances,
            unbuilt: std::mem::take(&mut self.unbuilt),
            journal_error: self.session.journal.take_error(),
            duration,
            service_notes: Vec::new(),
            telemetry_error: None,
        }
    }

    fn count(&self, phase: Phase) -> usize {
        self.instances
            .iter()
            .flatten()
            .filter(|i| i.phase == phase)
            .count()
    }
}
