//! The walker: the one task that owns a session's state. It restores what earlier sessions
//! finished, fans out lists as their sources finish, and hands out ready instances within the
//! `--jobs` and per-service bounds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::super::signals::Interrupt;
use super::super::stage::{ServiceWatch, Stage};
use super::attempt::{AttemptResult, RunningAttempt};
use super::{AttemptRecord, ExecOptions, Executor, Observer, Session};
use crate::rundir::event::{Event, EventKind, InstanceId, JOURNAL_VERSION};
use crate::spec::graph::FanMode;
use crate::spec::model::{RetryPolicy, Service, StageKind};
use crate::spec::{CheckedSpec, StageGraph};

/// What the walker keeps of a stage besides its place in the graph.
pub(super) struct StageNode {
    pub(super) name: String,
    pub(super) kind: StageKind,
    /// The services it takes a slot of, by number, each once.
    pub(super) services: Vec<usize>,
    /// `None` for a kind this cinepipe has no implementation of.
    pub(super) implementation: Option<Arc<dyn Stage>>,
    /// What asks whether its services answer again before a retry that could not reach them.
    pub(super) service_watch: Option<Arc<dyn ServiceWatch>>,
    pub(super) retry: RetryPolicy,
    /// How long one attempt may run.
    pub(super) bound: Duration,
}

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for its needs (or for a resume, after an interrupt).
    Blocked,
    Ready,
    Running,
    /// Backing off before its next attempt.
    Waiting,
    Done,
    Failed,
    Skipped,
}

/// One stage instance: the run's only instance of a stage, or its instance for one item.
pub(super) struct Instance {
    pub(super) phase: Phase,
    /// Attempt numbers used over the whole run.
    pub(super) attempts: u32,
    /// Retry budget spent in this session (retries and requeues).
    pub(super) budget_spent: u32,
    pub(super) had_failure: bool,
    pub(super) started: bool,
    pub(super) reused: bool,
    pub(super) output: Option<Arc<Value>>,
    pub(super) records: Vec<AttemptRecord>,
    pub(super) error: Option<String>,
}

impl Instance {
    pub(super) fn new() -> Instance {
        Instance {
            phase: Phase::Blocked,
            attempts: 0,
            budget_spent: 0,
            had_failure: false,
            started: false,
            reused: false,
            output: None,
            records: Vec::new(),
            error: None,
        }
    }
}

/// A session's whole state. Stages are numbered as in the spec (and the graph); an instance is
/// `(stage, slot)`, where the slot is the item's index, or 0 for a stage that runs once.
pub(super) struct Walker {
    pub(super) spec: Arc<CheckedSpec>,
    pub(super) opts: ExecOptions,
    pub(super) nodes: Vec<StageNode>,
    /// Each list's items, once its source is done (indexed like the graph's lists).
    pub(super) list_items: Vec<Option<Arc<Vec<Value>>>>,
    /// Each stage's instances; a per-item stage has none until its list comes.
    pub(super) instances: Vec<Vec<Instance>>,
    pub(super) done_count: Vec<usize>,
    /// Stages downstream first: an instance closer to the end of the pipeline is started
    /// first, so that a scene finishes before the next one starts.
    dispatch_order: Vec<usize>,
    /// Ready instances per stage, by slot: the earliest item goes first.
    pub(super) ready: Vec<BTreeSet<usize>>,
    /// Free slots of each service.
    pub(super) service_slots: Vec<u32>,
    pub(super) running: usize,
    pub(super) tasks: JoinSet<AttemptResult>,
    pub(super) in_flight: HashMap<tokio::task::Id, RunningAttempt>,
    /// Retries backing off; each ends with its instance.
    pub(super) timers: JoinSet<(usize, usize)>,
    pub(super) interrupt: Interrupt,
    pub(super) interrupted: bool,
    pub(super) cancelled: u32,
    /// The first failure, when it stopped the run (no `--keep-going`).
    pub(super) stopped_by: Option<InstanceId>,
    pub(super) failed: usize,
    pub(super) session: Session,
    pub(super) session_no: u32,
    observers: Vec<Box<dyn Observer>>,
    pub(super) unbuilt: Vec<(StageKind, Vec<String>)>,
    pub(super) started: Instant,
}

impl Walker {
    pub(super) fn new(
        exec: Executor,
        session: Session,
        interrupt: Interrupt,
        observers: Vec<Box<dyn Observer>>,
    ) -> Walker {
        let spec = exec.spec;
        let service_names: Vec<&String> = spec.spec.services.keys().collect();
        let service_slots: Vec<u32> = spec
            .spec
            .services
            .values()
            .map(|svc| match svc {
                // A pool of ComfyUI servers takes `max_concurrent` workflows on each server.
                Service::Comfyui(c) => c.max_concurrent.max(1) * (c.urls.len().max(1) as u32),
                Service::Openai(o) => o.max_concurrent.max(1),
            })
            .collect();
        let nodes: Vec<StageNode> = spec
            .spec
            .stages
            .iter()
            .map(|(name, stage)| {
                let implementation = exec.registry.get(stage.kind()).cloned();
                let bound = implementation.as_ref().map_or_else(
                    || super::super::stage::default_attempt_bound(stage),
                    |i| i.attempt_bound(stage),
                );
                let mut services: Vec<usize> = stage
                    .services()
                    .iter()
                    .filter_map(|(_, s)| service_names.iter().position(|n| n.as_str() == *s))
                    .collect();
                // One slot per service, even when two keys name it (`embedding_service` and
                // `judge_service`): asking for two slots of a one-slot service would never
                // start.
                services.sort_unstable();
                services.dedup();
                StageNode {
                    name: name.clone(),
                    kind: stage.kind(),
                    services,
                    implementation,
                    service_watch: exec.registry.service_watch(stage.kind()).cloned(),
                    retry: stage.common().retry.clone(),
                    bound,
                }
            })
            .collect();
        let graph = &spec.graph;
        let instances = (0..nodes.len())
            .map(|stage| match graph.mode(stage) {
                FanMode::PerItem(_) => Vec::new(),
                _ => vec![Instance::new()],
            })
            .collect();
        let mut dispatch_order = graph.order().to_vec();
        dispatch_order.reverse();
        let list_items = vec![None; graph.lists().len()];
        let unbuilt = exec.registry.unbuilt(&spec);
        let count = nodes.len();
        let session_no = session.replay.as_ref().map_or(0, |r| r.sessions) + 1;
        Walker {
            opts: exec.opts,
            nodes,
            list_items,
            instances,
            done_count: vec![0; count],
            dispatch_order,
            ready: (0..count).map(|_| BTreeSet::new()).collect(),
            service_slots,
            running: 0,
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            timers: JoinSet::new(),
            interrupt,
            interrupted: false,
            cancelled: 0,
            stopped_by: None,
            failed: 0,
            session,
            session_no,
            observers,
            unbuilt,
            started: Instant::now(),
            spec,
        }
    }

    /// The stage graph. (Methods that change the walker while they read the graph hold a
    /// clone of the spec's `Arc` instead.)
    pub(super) fn graph(&self) -> &StageGraph {
        &self.spec.graph
    }

    pub(super) fn emit(&mut self, kind: EventKind) {
        let e = Event::now(kind);
        self.session.journal.record(&e);
        for o in &mut self.observers {
            o.event(&e);
        }
    }

    pub(super) fn id(&self, stage: usize, slot: usize) -> InstanceId {
        let item = match self.graph().mode(stage) {
            FanMode::PerItem(_) => Some(slot as u32),
            _ => None,
        };
        InstanceId::new(self.nodes[stage].name.clone(), item)
    }

    pub(super) async fn run(&mut self) {
        let jobs = self.opts.jobs.max(1);
        self.emit(EventKind::RunStarted {
            journal_version: JOURNAL_VERSION,
            run_id: self.session.dir.id.clone(),
            session: self.session_no,
            spec: self.session.spec_label.clone(),
            profile: self.spec.profile.clone(),
            jobs: jobs as u32,
            keep_going: self.opts.keep_going,
            no_cache: self.opts.no_cache,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            unbuilt_kinds: self
                .unbuilt
                .iter()
                .map(|(k, _)| k.as_str().to_owned())
                .collect(),
        });
        self.restore();
        let spec = self.spec.clone();
        for &stage in spec.graph.order() {
            for slot in 0..self.instances[stage].len() {
                self.refresh(stage, slot);
            }
        }
        let token = self.interrupt.token().clone();
        loop {
            self.dispatch(jobs);
            self.session.journal.flush();
            if self.tasks.is_empty() && self.timers.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = token.cancelled(), if !self.interrupted => self.on_interrupt(),
                Some(r) = self.tasks.join_next_with_id() => self.on_task(r),
                Some(r) = self.timers.join_next() => self.on_timer(r),
            }
            // Take every attempt that has already ended, so their events go out in one write.
            while let Some(r) = self.tasks.try_join_next_with_id() {
                self.on_task(r);
            }
        }
    }

    /// Marks what earlier sessions finished as done, loading their outputs, and fans out the
    /// lists whose source is done.
    fn restore(&mut self) {
        if self.session.replay.is_none() {
            return;
        }
        let spec = self.spec.clone();
        for &stage in spec.graph.order() {
            if !matches!(spec.graph.mode(stage), FanMode::PerItem(_)) {
                self.restore_one(stage, 0);
            }
            if self.instances[stage]
                .first()
                .is_some_and(|i| i.phase == Phase::Done)
            {
                for &list in spec.graph.sources(stage) {
                    self.expand(list);
                }
            }
        }
    }

    fn restore_one(&mut self, stage: usize, slot: usize) {
        let id = self.id(stage, slot);
        let Some(replay) = &self.session.replay else {
            return;
        };
        let attempts = replay.attempts.get(&id).copied().unwrap_or(0);
        let had_failure = replay.had_failure.contains_key(&id);
        let done = replay.done.get(&id).map(|file| match file {
            None => Some(Value::Null),
            // An output that cannot be read back is work to redo, not an error.
            Some(rel) => std::fs::read(self.session.dir.path.join(rel))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        });
        let instance = &mut self.instances[stage][slot];
        instance.attempts = attempts;
        instance.had_failure = had_failure;
        if let Some(Some(v)) = done {
            instance.phase = Phase::Done;
            instance.reused = true;
            instance.output = Some(Arc::new(v));
            self.done_count[stage] += 1;
        }
    }

    /// A list's source is done: every stage that runs per item of it gets its instances.
    pub(super) fn expand(&mut self, list: usize) {
        if self.list_items[list].is_some() {
            return;
        }
        let spec = self.spec.clone();
        let fan_list = &spec.graph.lists()[list];
        let items: Vec<Value> = self.instances[fan_list.source][0]
            .output
            .as_deref()
            .and_then(|o| o.get(&fan_list.field))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let count = items.len();
        self.list_items[list] = Some(Arc::new(items));
        self.emit(EventKind::FannedOut {
            list: fan_list.label.clone(),
            count: count as u32,
        });
        for &stage in &fan_list.members {
            self.instances[stage] = (0..count).map(|_| Instance::new()).collect();
            if self.session.replay.is_some() {
                for slot in 0..count {
                    self.restore_one(stage, slot);
                }
            }
        }
    }

    fn needs_done(&self, stage: usize, slot: usize) -> bool {
        let graph = self.graph();
        let mode = graph.mode(stage);
        graph
            .needs(stage)
            .iter()
            .all(|&need| match graph.mode(need) {
                FanMode::PerItem(list) => match mode {
                    FanMode::PerItem(_) => self.instances[need]
                        .get(slot)
                        .is_some_and(|i| i.phase == Phase::Done),
                    _ => self.list_items[list]
                        .as_ref()
                        .is_some_and(|items| self.done_count[need] == items.len()),
                },
                _ => self.instances[need][0].phase == Phase::Done,
            })
    }

    /// Makes a blocked instance ready when everything it needs is done.
    pub(super) fn refresh(&mut self, stage: usize, slot: usize) {
        if self.instances[stage]
            .get(slot)
            .is_some_and(|i| i.phase == Phase::Blocked)
            && self.needs_done(stage, slot)
        {
            self.instances[stage][slot].phase = Phase::Ready;
            self.ready[stage].insert(slot);
        }
    }

    pub(super) fn stopping(&self) -> bool {
        self.interrupted || self.stopped_by.is_some()
    }

    fn dispatch(&mut self, jobs: usize) {
        while !self.stopping() && self.running < jobs {
            let Some(stage) = self.dispatch_order.iter().copied().find(|&stage| {
                !self.ready[stage].is_empty()
                    && self.nodes[stage]
                        .services
                        .iter()
                        .all(|&service| self.service_slots[service] > 0)
            }) else {
                break;
            };
            let Some(slot) = self.ready[stage].pop_first() else {
                break;
            };
            if self.nodes[stage].implementation.is_none() {
                let kind = self.nodes[stage].kind.as_str();
                self.fail(
                    stage,
                    slot,
                    None,
                    format!("stage kind `{kind}` is not built yet (this cinepipe cannot run it)"),
                );
                continue;
            }
            self.start(stage, slot);
        }
    }

    /// What an instance is given of the stages it needs, in the order of its `needs`: a
    /// per-item need's output for the same item, or all of its outputs as an array.
    pub(super) fn inputs(&self, stage: usize, slot: usize) -> Vec<(String, Arc<Value>)> {
        let graph = self.graph();
        let mode = graph.mode(stage);
        graph
            .needs(stage)
            .iter()
            .map(|&need| {
                let v = match (graph.mode(need), mode) {
                    (FanMode::PerItem(_), FanMode::PerItem(_)) => self.instances[need]
                        .get(slot)
                        .and_then(|i| i.output.clone()),
                    (FanMode::PerItem(_), _) => Some(Arc::new(Value::Array(
                        self.instances[need]
                            .iter()
                            .map(|i| i.output.as_deref().cloned().unwrap_or(Value::Null))
                            .collect(),
                    ))),
                    _ => self.instances[need][0].output.clone(),
                };
                (
                    self.nodes[need].name.clone(),
                    v.unwrap_or_else(|| Arc::new(Value::Null)),
                )
            })
            .collect()
    }

    fn on_interrupt(&mut self) {
        self.interrupted = true;
        // Waiting retries are not work in flight: they simply do not happen in this session.
        self.timers.abort_all();
        for instances in &mut self.instances {
            for i in instances
                .iter_mut()
                .filter(|i| matches!(i.phase, Phase::Waiting | Phase::Ready))
            {
                i.phase = Phase::Blocked;
            }
        }
    }

    fn on_timer(&mut self, r: Result<(usize, usize), tokio::task::JoinError>) {
        // An aborted timer (the run stopped) has nothing to say.
        let Ok((stage, slot)) = r else { return };
        if self.instances[stage][slot].phase == Phase::Waiting && !self.stopping() {
            self.instances[stage][slot].phase = Phase::Ready;
            self.ready[stage].insert(slot);
        }
    }
}
