//! The scheduler: walks the plan's DAG and runs every stage instance whose needs are done, as
//! tokio tasks, within the global (`--jobs`) and per-service (`max_concurrent`) bounds; applies
//! retry policies and requeues; records every state change as an [`Event`].
//!
//! One task, the walker, owns all state: it hands out ready instances, and attempts report back
//! through a `JoinSet`. Nothing is shared and locked, so the order of events is the order the
//! walker saw them, and a panicking stage cannot leave the state half-changed.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::event::{
    AttemptOutcome, Event, EventKind, InstanceId, JOURNAL_VERSION, RunOutcome, SkipReason,
};
use super::journal::{Journal, Replay};
use super::retry;
use super::rundir::RunDir;
use super::signals::Interrupt;
use super::stage::{Registry, Stage, StageContext, StageFailure};
use crate::plan::Plan;
use crate::spec::model::{FailureClass, OnShort, RetryPolicy, Stage as SpecStage, StageKind};
use crate::spec::{CheckedSpec, Fan};

/// How a run is executed.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Stage attempts running at the same time, at most (`--jobs`).
    pub jobs: usize,
    /// Let independent instances finish after a failure (`--keep-going`); by default the first
    /// failure stops scheduling new work and lets running attempts end.
    pub keep_going: bool,
    /// Passed to stages as [`StageContext::no_cache`] (`--no-cache`).
    pub no_cache: bool,
    /// How long a cancelled attempt may take to return before it is dropped.
    pub cancel_grace: Duration,
}

/// The default of `--jobs`: the number of CPUs, at least 4, since most stages wait on servers
/// rather than compute.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(4)
}

/// The default of [`ExecOptions::cancel_grace`].
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            jobs: default_jobs(),
            keep_going: false,
            no_cache: false,
            cancel_grace: CANCEL_GRACE,
        }
    }
}

/// Something told about every event as it happens: the progress lines, later the telemetry
/// writer and reports. An observer cannot fail the run.
pub trait Observer: Send {
    fn event(&mut self, event: &Event);

    /// Told the spec before the first event, so that a display can lay out every stage (and
    /// which list each fans out over) before any of them starts. Most observers need only the
    /// events.
    fn spec(&mut self, _spec: &CheckedSpec) {}
}

/// One attempt, as the report keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub started: String,
    pub finished: String,
    pub duration_s: f64,
    pub outcome: AttemptOutcome,
    pub class: Option<FailureClass>,
    pub error: Option<String>,
}

/// Where an instance ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Succeeded,
    /// Done by an earlier session; its output was loaded from the run folder.
    Reused,
    Failed,
    Skipped,
    /// Not run because the session was interrupted.
    NotRun,
}

/// One instance, as the report keeps it.
#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub id: InstanceId,
    pub state: InstanceState,
    /// The attempts of this session.
    pub attempts: Vec<AttemptRecord>,
    /// Succeeded after a failed attempt.
    pub flaky: bool,
    pub error: Option<String>,
    pub output: Option<Arc<Value>>,
}

/// What a session did.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: String,
    pub dir: PathBuf,
    pub session: u32,
    pub outcome: RunOutcome,
    /// Every instance, in plan order, items in order. A per-item stage whose list never came
    /// has one entry with no item.
    pub instances: Vec<InstanceReport>,
    /// Stage kinds the spec uses that have no implementation, with their stages.
    pub unbuilt: Vec<(StageKind, Vec<String>)>,
    /// The first error writing the journal; the work went on without it.
    pub journal_error: Option<std::io::Error>,
    pub duration: Duration,
    /// What this session did with the services (reused, launched, fell back); filled by
    /// `exec::run`.
    pub service_notes: Vec<String>,
    /// Why `artifact-metadata.json` and `run-summary.txt` could not be written at the end of
    /// the session, if they could not; filled by `exec::run`.
    pub telemetry_error: Option<String>,
}

impl RunReport {
    pub fn count(&self, state: InstanceState) -> usize {
        self.instances.iter().filter(|i| i.state == state).count()
    }
}

/// A plan ready to run with a registry of stage implementations.
pub struct Executor {
    spec: Arc<CheckedSpec>,
    order: Vec<usize>,
    registry: Registry,
    opts: ExecOptions,
}

/// Where a session writes, and what an earlier session left.
pub struct Session {
    pub dir: RunDir,
    pub journal: Journal,
    /// What the journal said, when resuming.
    pub replay: Option<Replay>,
    /// The spec path as the user gave it (recorded in `run-started`).
    pub spec_label: String,
}

impl Executor {
    pub fn new(plan: Plan, registry: Registry, opts: ExecOptions) -> Executor {
        let order = plan.order.iter().map(|n| n.index()).collect();
        Executor {
            spec: Arc::new(plan.spec),
            order,
            registry,
            opts,
        }
    }

    pub fn spec(&self) -> &Arc<CheckedSpec> {
        &self.spec
    }

    /// Runs the session to its end: every instance done, a failure (and what ran finished), or
    /// an interrupt (and the cancelled attempts returned). The journal is fsync'd before this
    /// returns.
    pub async fn execute(
        self,
        session: Session,
        interrupt: &Interrupt,
        observers: Vec<Box<dyn Observer>>,
    ) -> RunReport {
        let mut walker = Walker::new(self, session, interrupt.clone(), observers);
        walker.run().await;
        walker.finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Once,
    PerItem(usize),
    Gather(usize),
}

struct Node {
    name: String,
    kind: StageKind,
    mode: Mode,
    needs: Vec<usize>,
    dependents: Vec<usize>,
    services: Vec<usize>,
    imp: Option<Arc<dyn Stage>>,
    retry: RetryPolicy,
    bound: Duration,
    /// `on_short = { requeue = T }`: the target and every stage from it to this one (inclusive,
    /// in plan order), which run again for the item.
    requeue: Option<(usize, Vec<usize>)>,
    /// Lists this stage is the source of.
    sources: Vec<usize>,
}

struct List {
    label: String,
    source: usize,
    field: String,
    items: Option<Arc<Vec<Value>>>,
    members: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Blocked,
    Ready,
    Running,
    Waiting,
    Done,
    Failed,
    Skipped,
}

struct Inst {
    st: St,
    /// Attempt numbers used over the whole run.
    attempts: u32,
    /// Retry budget spent in this session (retries and requeues).
    spent: u32,
    had_failure: bool,
    started: bool,
    reused: bool,
    output: Option<Arc<Value>>,
    records: Vec<AttemptRecord>,
    error: Option<String>,
}

impl Inst {
    fn new() -> Inst {
        Inst {
            st: St::Blocked,
            attempts: 0,
            spent: 0,
            had_failure: false,
            started: false,
            reused: false,
            output: None,
            records: Vec::new(),
            error: None,
        }
    }
}

/// What an attempt task reports.
enum AttemptResult {
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

struct RunningMeta {
    s: usize,
    slot: usize,
    attempt: u32,
    started_at: Instant,
    started_ts: String,
}

struct Walker {
    spec: Arc<CheckedSpec>,
    opts: ExecOptions,
    nodes: Vec<Node>,
    lists: Vec<List>,
    insts: Vec<Vec<Inst>>,
    done_count: Vec<usize>,
    /// Stages in plan order, and the reverse (downstream first) for dispatch.
    order: Vec<usize>,
    dispatch_order: Vec<usize>,
    /// Ready instances per stage, by item: the earliest scene goes first.
    ready: Vec<BTreeSet<usize>>,
    svc_free: Vec<u32>,
    running: usize,
    tasks: JoinSet<AttemptResult>,
    meta: HashMap<tokio::task::Id, RunningMeta>,
    timers: JoinSet<(usize, usize)>,
    interrupt: Interrupt,
    interrupted: bool,
    cancelled: u32,
    /// The first failure, when it stopped the run (no `--keep-going`).
    stopped_by: Option<InstanceId>,
    failed: usize,
    session: Session,
    session_no: u32,
    observers: Vec<Box<dyn Observer>>,
    unbuilt: Vec<(StageKind, Vec<String>)>,
    started: Instant,
}

impl Walker {
    fn new(
        exec: Executor,
        session: Session,
        interrupt: Interrupt,
        observers: Vec<Box<dyn Observer>>,
    ) -> Walker {
        let spec = exec.spec;
        let stages = &spec.spec.stages;
        let index = |name: &str| stages.get_index_of(name);

        let service_names: Vec<&String> = spec.spec.services.keys().collect();
        let svc_free: Vec<u32> = spec
            .spec
            .services
            .values()
            .map(|svc| match svc {
                // A pool of ComfyUI servers takes `max_concurrent` workflows on each server.
                crate::spec::model::Service::Comfyui(c) => {
                    c.max_concurrent.max(1) * (c.urls.len().max(1) as u32)
                }
                crate::spec::model::Service::Openai(o) => o.max_concurrent.max(1),
            })
            .collect();

        let mut lists: Vec<List> = Vec::new();
        let list_of = |source: &str, lists: &mut Vec<List>| -> usize {
            if let Some(i) = lists.iter().position(|l| l.label == source) {
                return i;
            }
            let (stage, field) = source.split_once('.').unwrap_or((source, ""));
            lists.push(List {
                label: source.to_owned(),
                source: index(stage).unwrap_or(0),
                field: field.to_owned(),
                items: None,
                members: Vec::new(),
            });
            lists.len() - 1
        };

        let mut nodes: Vec<Node> = Vec::with_capacity(stages.len());
        for (name, stage) in stages {
            let mode = match spec.fans.get(name) {
                Some(Fan::PerItem { source, .. }) => Mode::PerItem(list_of(source, &mut lists)),
                Some(Fan::Gather { source }) => Mode::Gather(list_of(source, &mut lists)),
                _ => Mode::Once,
            };
            let imp = exec.registry.get(stage.kind()).cloned();
            let bound = imp.as_ref().map_or_else(
                || super::stage::default_attempt_bound(stage),
                |i| i.attempt_bound(stage),
            );
            nodes.push(Node {
                name: name.clone(),
                kind: stage.kind(),
                mode,
                needs: stage
                    .common()
                    .needs
                    .iter()
                    .filter_map(|n| index(n))
                    .collect(),
                dependents: Vec::new(),
                services: stage
                    .services()
                    .iter()
                    .filter_map(|(_, s)| service_names.iter().position(|n| n.as_str() == *s))
                    .collect(),
                imp,
                retry: stage.common().retry.clone(),
                bound,
                requeue: None,
                sources: Vec::new(),
            });
        }
        for s in 0..nodes.len() {
            // One slot per service, even when two keys name it (`embedding_service` and
            // `rubric_service`): asking for two slots of a one-slot service would never start.
            nodes[s].services.sort_unstable();
            nodes[s].services.dedup();
            for n in nodes[s].needs.clone() {
                nodes[n].dependents.push(s);
            }
            if let Mode::PerItem(l) = nodes[s].mode {
                lists[l].members.push(s);
            }
        }
        for (l, list) in lists.iter().enumerate() {
            nodes[list.source].sources.push(l);
        }
        // Requeue paths: the target, every stage between it and the requester, the requester.
        let ancestors = ancestor_sets(&nodes);
        for (s, stage) in stages.values().enumerate() {
            if let SpecStage::CollectFrames(c) = stage
                && let OnShort::Requeue(target) = &c.on_short
                && let Some(t) = index(target)
                // Only within one item: both once per item of the same list.
                && matches!((nodes[t].mode, nodes[s].mode),
                    (Mode::PerItem(a), Mode::PerItem(b)) if a == b)
            {
                let path: Vec<usize> = exec
                    .order
                    .iter()
                    .copied()
                    .filter(|&x| x == t || x == s || (ancestors[s][x] && ancestors[x][t]))
                    .collect();
                nodes[s].requeue = Some((t, path));
            }
        }

        let insts = nodes
            .iter()
            .map(|n| match n.mode {
                Mode::PerItem(_) => Vec::new(),
                _ => vec![Inst::new()],
            })
            .collect();
        let mut dispatch_order = exec.order.clone();
        dispatch_order.reverse();
        let unbuilt = exec.registry.unbuilt(&spec);
        let n = nodes.len();
        let session_no = session.replay.as_ref().map_or(0, |r| r.sessions) + 1;
        Walker {
            spec,
            opts: exec.opts,
            nodes,
            lists,
            insts,
            done_count: vec![0; n],
            order: exec.order,
            dispatch_order,
            ready: (0..n).map(|_| BTreeSet::new()).collect(),
            svc_free,
            running: 0,
            tasks: JoinSet::new(),
            meta: HashMap::new(),
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
        }
    }

    fn emit(&mut self, kind: EventKind) {
        let e = Event::now(kind);
        self.session.journal.record(&e);
        for o in &mut self.observers {
            o.event(&e);
        }
    }

    fn id(&self, s: usize, slot: usize) -> InstanceId {
        let item = match self.nodes[s].mode {
            Mode::PerItem(_) => Some(slot as u32),
            _ => None,
        };
        InstanceId::new(self.nodes[s].name.clone(), item)
    }

    async fn run(&mut self) {
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
        for s in self.order.clone() {
            for slot in 0..self.insts[s].len() {
                self.refresh(s, slot);
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
        for s in self.order.clone() {
            if !matches!(self.nodes[s].mode, Mode::PerItem(_)) {
                self.restore_one(s, 0);
            }
            if self.insts[s].first().is_some_and(|i| i.st == St::Done) {
                for l in self.nodes[s].sources.clone() {
                    self.expand(l);
                }
            }
        }
    }

    fn restore_one(&mut self, s: usize, slot: usize) {
        let id = self.id(s, slot);
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
        let inst = &mut self.insts[s][slot];
        inst.attempts = attempts;
        inst.had_failure = had_failure;
        if let Some(Some(v)) = done {
            inst.st = St::Done;
            inst.reused = true;
            inst.output = Some(Arc::new(v));
            self.done_count[s] += 1;
        }
    }

    /// A list's source is done: every stage that runs per item of it gets its instances.
    fn expand(&mut self, l: usize) {
        if self.lists[l].items.is_some() {
            return;
        }
        let source = self.lists[l].source;
        let items: Vec<Value> = self.insts[source][0]
            .output
            .as_deref()
            .and_then(|o| o.get(&self.lists[l].field))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let count = items.len();
        self.lists[l].items = Some(Arc::new(items));
        self.emit(EventKind::FannedOut {
            list: self.lists[l].label.clone(),
            count: count as u32,
        });
        for s in self.lists[l].members.clone() {
            self.insts[s] = (0..count).map(|_| Inst::new()).collect();
            if self.session.replay.is_some() {
                for slot in 0..count {
                    self.restore_one(s, slot);
                }
            }
        }
    }

    fn deps_done(&self, s: usize, slot: usize) -> bool {
        let mode = self.nodes[s].mode;
        self.nodes[s]
            .needs
            .iter()
            .all(|&n| match self.nodes[n].mode {
                Mode::PerItem(l) => match mode {
                    Mode::PerItem(_) => self.insts[n].get(slot).is_some_and(|i| i.st == St::Done),
                    _ => self.lists[l]
                        .items
                        .as_ref()
                        .is_some_and(|items| self.done_count[n] == items.len()),
                },
                _ => self.insts[n][0].st == St::Done,
            })
    }

    fn refresh(&mut self, s: usize, slot: usize) {
        if self.insts[s].get(slot).is_some_and(|i| i.st == St::Blocked) && self.deps_done(s, slot) {
            self.insts[s][slot].st = St::Ready;
            self.ready[s].insert(slot);
        }
    }

    fn stopping(&self) -> bool {
        self.interrupted || self.stopped_by.is_some()
    }

    fn dispatch(&mut self, jobs: usize) {
        while !self.stopping() && self.running < jobs {
            let Some(s) = self.dispatch_order.iter().copied().find(|&s| {
                !self.ready[s].is_empty()
                    && self.nodes[s].services.iter().all(|&v| self.svc_free[v] > 0)
            }) else {
                break;
            };
            let Some(slot) = self.ready[s].pop_first() else {
                break;
            };
            if self.nodes[s].imp.is_none() {
                let kind = self.nodes[s].kind.as_str();
                self.fail(
                    s,
                    slot,
                    None,
                    format!("stage kind `{kind}` is not built yet (this cinepipe cannot run it)"),
                );
                continue;
            }
            self.start(s, slot);
        }
    }

    fn start(&mut self, s: usize, slot: usize) {
        let Some(imp) = self.nodes[s].imp.clone() else {
            return;
        };
        for &v in &self.nodes[s].services {
            self.svc_free[v] -= 1;
        }
        self.running += 1;
        let id = self.id(s, slot);
        let inst = &mut self.insts[s][slot];
        inst.st = St::Running;
        inst.attempts += 1;
        let attempt = inst.attempts;
        let first = !inst.started;
        inst.started = true;
        if first {
            self.emit(EventKind::InstanceStarted {
                instance: id.clone(),
            });
        }
        self.emit(EventKind::AttemptStarted {
            instance: id.clone(),
            attempt,
        });
        let ctx = StageContext {
            run_id: self.session.dir.id.clone(),
            run_dir: self.session.dir.path.clone(),
            instance_dir: RunDir::instance_dir(&id),
            item: match self.nodes[s].mode {
                Mode::PerItem(l) => self.lists[l]
                    .items
                    .as_ref()
                    .and_then(|items| items.get(slot).cloned()),
                _ => None,
            },
            inputs: self.inputs(s, slot),
            requeues_left: self.nodes[s].requeue.as_ref().map(|(t, _)| {
                let spent = self.insts[*t].get(slot).map_or(0, |i| i.spent);
                self.nodes[*t].retry.budget.saturating_sub(spent)
            }),
            no_cache: self.opts.no_cache,
            cancel: self.interrupt.token().child_token(),
            spec: self.spec.clone(),
            attempt,
            instance: id,
        };
        let bound = self.nodes[s].bound;
        let grace = self.opts.cancel_grace;
        let run_dir = self.session.dir.path.clone();
        // Logs of the attempt sit under `run` → `instance` → `attempt`.
        let instance = tracing::info_span!("instance", instance = %ctx.instance);
        let span = tracing::info_span!(parent: &instance, "attempt", attempt);
        let handle = self.tasks.spawn(tracing::Instrument::instrument(
            run_attempt(imp, ctx, bound, grace, run_dir),
            span,
        ));
        self.meta.insert(
            handle.id(),
            RunningMeta {
                s,
                slot,
                attempt,
                started_at: Instant::now(),
                started_ts: super::event::now_rfc3339(),
            },
        );
    }

    fn inputs(&self, s: usize, slot: usize) -> Vec<(String, Arc<Value>)> {
        let mode = self.nodes[s].mode;
        self.nodes[s]
            .needs
            .iter()
            .map(|&n| {
                let v = match (self.nodes[n].mode, mode) {
                    (Mode::PerItem(_), Mode::PerItem(_)) => {
                        self.insts[n].get(slot).and_then(|i| i.output.clone())
                    }
                    (Mode::PerItem(_), _) => Some(Arc::new(Value::Array(
                        self.insts[n]
                            .iter()
                            .map(|i| i.output.as_deref().cloned().unwrap_or(Value::Null))
                            .collect(),
                    ))),
                    _ => self.insts[n][0].output.clone(),
                };
                (
                    self.nodes[n].name.clone(),
                    v.unwrap_or_else(|| Arc::new(Value::Null)),
                )
            })
            .collect()
    }

    fn on_interrupt(&mut self) {
        self.interrupted = true;
        // Waiting retries are not work in flight: they simply do not happen in this session.
        self.timers.abort_all();
        for insts in &mut self.insts {
            for i in insts
                .iter_mut()
                .filter(|i| matches!(i.st, St::Waiting | St::Ready))
            {
                i.st = St::Blocked;
            }
        }
    }

    fn on_timer(&mut self, r: Result<(usize, usize), tokio::task::JoinError>) {
        // An aborted timer (the run stopped) has nothing to say.
        let Ok((s, slot)) = r else { return };
        if self.insts[s][slot].st == St::Waiting && !self.stopping() {
            self.insts[s][slot].st = St::Ready;
            self.ready[s].insert(slot);
        }
    }

    fn on_task(&mut self, r: Result<(tokio::task::Id, AttemptResult), tokio::task::JoinError>) {
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
        let Some(m) = self.meta.remove(&id) else {
            return;
        };
        self.running -= 1;
        for &v in &self.nodes[m.s].services {
            self.svc_free[v] += 1;
        }
        let duration = m.started_at.elapsed();
        let result = match result {
            AttemptResult::Ok { output, file } => match self.check_lists(m.s, &output) {
                Ok(()) => AttemptResult::Ok { output, file },
                Err(msg) => {
                    AttemptResult::Failed(StageFailure::new(FailureClass::InvalidOutput, msg))
                }
            },
            other => other,
        };
        match result {
            AttemptResult::Ok { output, file } => self.succeed(m, duration, output, file),
            AttemptResult::Failed(f) => self.attempt_failed(
                m,
                duration,
                AttemptOutcome::Failed,
                Some(f.class),
                f.message,
            ),
            AttemptResult::TimedOut(bound) => self.attempt_failed(
                m,
                duration,
                AttemptOutcome::TimedOut,
                Some(FailureClass::Timeout),
                format!("the attempt ran past its bound of {}", secs(bound)),
            ),
            AttemptResult::Error(msg) => {
                self.attempt_failed(m, duration, AttemptOutcome::Crashed, None, msg)
            }
            AttemptResult::Cancelled => {
                self.cancelled += 1;
                let id = self.id(m.s, m.slot);
                self.record(&m, duration, AttemptOutcome::Cancelled, None, None);
                self.emit(EventKind::AttemptFinished {
                    instance: id,
                    attempt: m.attempt,
                    outcome: AttemptOutcome::Cancelled,
                    duration_s: duration.as_secs_f64(),
                    class: None,
                    error: None,
                    retry_in_s: None,
                });
                self.insts[m.s][m.slot].st = St::Blocked;
            }
        }
    }

    /// A list source's output must hold its lists, or nothing can fan out of it.
    fn check_lists(&self, s: usize, output: &Value) -> Result<(), String> {
        for &l in &self.nodes[s].sources {
            let list = &self.lists[l];
            match output.get(&list.field) {
                Some(Value::Array(a)) if u32::try_from(a.len()).is_ok() => {}
                Some(Value::Array(_)) => return Err(format!("`{}` is too long", list.label)),
                _ => {
                    return Err(format!(
                        "the output of `{}` has no list `{}` to fan out over",
                        self.nodes[s].name, list.field
                    ));
                }
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        m: &RunningMeta,
        duration: Duration,
        outcome: AttemptOutcome,
        class: Option<FailureClass>,
        error: Option<String>,
    ) {
        self.insts[m.s][m.slot].records.push(AttemptRecord {
            attempt: m.attempt,
            started: m.started_ts.clone(),
            finished: super::event::now_rfc3339(),
            duration_s: duration.as_secs_f64(),
            outcome,
            class,
            error,
        });
    }

    fn succeed(
        &mut self,
        m: RunningMeta,
        duration: Duration,
        output: Arc<Value>,
        file: Option<String>,
    ) {
        let id = self.id(m.s, m.slot);
        self.record(&m, duration, AttemptOutcome::Succeeded, None, None);
        self.emit(EventKind::AttemptFinished {
            instance: id.clone(),
            attempt: m.attempt,
            outcome: AttemptOutcome::Succeeded,
            duration_s: duration.as_secs_f64(),
            class: None,
            error: None,
            retry_in_s: None,
        });
        let inst = &mut self.insts[m.s][m.slot];
        inst.st = St::Done;
        inst.output = Some(output);
        let (attempts, flaky) = (inst.attempts, inst.had_failure);
        self.done_count[m.s] += 1;
        self.emit(EventKind::Succeeded {
            instance: id,
            attempts,
            flaky,
            output: file,
        });
        if self.interrupted {
            return;
        }
        for l in self.nodes[m.s].sources.clone() {
            self.expand(l);
            for s in self.lists[l].members.clone() {
                for slot in 0..self.insts[s].len() {
                    self.refresh(s, slot);
                }
            }
        }
        let mode = self.nodes[m.s].mode;
        for d in self.nodes[m.s].dependents.clone() {
            match (self.nodes[d].mode, mode) {
                (Mode::PerItem(_), Mode::PerItem(_)) => self.refresh(d, m.slot),
                (Mode::PerItem(_), _) => {
                    for slot in 0..self.insts[d].len() {
                        self.refresh(d, slot);
                    }
                }
                _ => self.refresh(d, 0),
            }
        }
    }

    fn attempt_failed(
        &mut self,
        m: RunningMeta,
        duration: Duration,
        outcome: AttemptOutcome,
        class: Option<FailureClass>,
        message: String,
    ) {
        let (s, slot) = (m.s, m.slot);
        let id = self.id(s, slot);
        self.record(&m, duration, outcome, class, Some(message.clone()));
        self.insts[s][slot].had_failure = true;
        let finished = |retry_in_s: Option<f64>| EventKind::AttemptFinished {
            instance: id.clone(),
            attempt: m.attempt,
            outcome,
            duration_s: duration.as_secs_f64(),
            class,
            error: Some(message.clone()),
            retry_in_s,
        };

        if self.interrupted {
            // Not a verdict on the instance: a resume runs it again.
            self.emit(finished(None));
            self.insts[s][slot].st = St::Blocked;
            return;
        }
        if self.stopped_by.is_none() {
            if class == Some(FailureClass::ShortFrames)
                && let Some((t, path)) = self.nodes[s].requeue.clone()
                && self.insts[t][slot].spent < self.nodes[t].retry.budget
            {
                self.emit(finished(None));
                self.requeue(s, slot, t, &path);
                return;
            }
            if let Some(c) = class
                && retry::may_retry(&self.nodes[s].retry, c, self.insts[s][slot].spent)
            {
                self.insts[s][slot].spent += 1;
                let n = self.insts[s][slot].spent;
                let wait = retry::delay(&self.nodes[s].retry, n, retry::random_unit());
                self.emit(finished(Some(wait.as_secs_f64())));
                self.wait(s, slot, wait);
                return;
            }
        }
        self.emit(finished(None));
        self.fail(s, slot, class, message);
    }

    /// Sends item `slot` back to stage `t`: it and every stage after it up to `s` run again.
    fn requeue(&mut self, s: usize, slot: usize, t: usize, path: &[usize]) {
        let mut reset = Vec::with_capacity(path.len());
        for &x in path {
            let Some(inst) = self.insts[x].get_mut(slot) else {
                continue;
            };
            if inst.st == St::Done {
                self.done_count[x] -= 1;
            }
            inst.st = St::Blocked;
            inst.output = None;
            inst.reused = false;
            reset.push(self.id(x, slot));
        }
        let target = &mut self.insts[t][slot];
        target.spent += 1;
        let spent = target.spent;
        let budget_left = self.nodes[t].retry.budget.saturating_sub(spent);
        self.emit(EventKind::Requeued {
            instance: self.id(s, slot),
            target: self.id(t, slot),
            reset,
            class: FailureClass::ShortFrames,
            budget_left,
        });
        // A requeue is a retry of the target: its backoff applies.
        let wait = retry::delay(&self.nodes[t].retry, spent, retry::random_unit());
        self.wait(t, slot, wait);
    }

    /// Waits before an instance's next attempt. It holds no slot meanwhile.
    fn wait(&mut self, s: usize, slot: usize, wait: Duration) {
        if wait.is_zero() {
            self.insts[s][slot].st = St::Ready;
            self.ready[s].insert(slot);
            return;
        }
        self.insts[s][slot].st = St::Waiting;
        let token = self.interrupt.token().clone();
        self.timers.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = token.cancelled() => {}
            }
            (s, slot)
        });
    }

    fn fail(&mut self, s: usize, slot: usize, class: Option<FailureClass>, error: String) {
        let id = self.id(s, slot);
        let inst = &mut self.insts[s][slot];
        inst.st = St::Failed;
        inst.error = Some(error.clone());
        let attempts = inst.attempts;
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
            for x in 0..self.insts.len() {
                for y in 0..self.insts[x].len() {
                    if self.insts[x][y].st == St::Waiting {
                        let msg =
                            format!("its retry was not taken: the run stopped after `{id}` failed");
                        self.fail(x, y, None, msg);
                    }
                }
            }
        }
    }

    /// Why an instance that never ran did not: the first need that is not done.
    fn skip_detail(&self, s: usize, slot: usize) -> (SkipReason, String) {
        let mode = self.nodes[s].mode;
        for &n in &self.nodes[s].needs {
            let slots: Vec<usize> = match (self.nodes[n].mode, mode) {
                (Mode::PerItem(_), Mode::PerItem(_)) => vec![slot],
                (Mode::PerItem(l), _) if self.lists[l].items.is_none() => {
                    return (
                        SkipReason::NeedFailed,
                        format!(
                            "needs every `{}`, whose list never came",
                            self.nodes[n].name
                        ),
                    );
                }
                (Mode::PerItem(_), _) => (0..self.insts[n].len()).collect(),
                _ => vec![0],
            };
            for y in slots {
                let st = self.insts[n].get(y).map(|i| i.st);
                if st != Some(St::Done) {
                    let what = match st {
                        Some(St::Failed) => "failed",
                        Some(St::Skipped) => "was skipped",
                        _ => "did not run",
                    };
                    return (
                        SkipReason::NeedFailed,
                        format!("needs `{}`, which {what}", self.id(n, y)),
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

    fn finish(mut self) -> RunReport {
        let duration = self.started.elapsed();
        let outcome = if self.interrupted {
            let succeeded = self.count(St::Done) as u32;
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
            for s in self.order.clone() {
                if let Mode::PerItem(l) = self.nodes[s].mode
                    && self.lists[l].items.is_none()
                {
                    let source = self.lists[l].source;
                    let what = match self.insts[source].first().map(|i| i.st) {
                        Some(St::Failed) => "failed",
                        Some(St::Skipped) => "was skipped",
                        _ => "did not run",
                    };
                    let reason = SkipReason::NeedFailed;
                    let detail = format!(
                        "runs once per item of `{}`, and `{}` {what}",
                        self.lists[l].label, self.nodes[source].name
                    );
                    self.emit(EventKind::Skipped {
                        instance: InstanceId::new(self.nodes[s].name.clone(), None),
                        reason,
                        detail,
                    });
                    continue;
                }
                for slot in 0..self.insts[s].len() {
                    if !matches!(self.insts[s][slot].st, St::Done | St::Failed) {
                        let (reason, detail) = self.skip_detail(s, slot);
                        self.insts[s][slot].st = St::Skipped;
                        self.emit(EventKind::Skipped {
                            instance: self.id(s, slot),
                            reason,
                            detail,
                        });
                    }
                }
            }
            let skipped = self.count(St::Skipped);
            let unexpanded = self
                .nodes
                .iter()
                .filter(|n| matches!(n.mode, Mode::PerItem(l) if self.lists[l].items.is_none()))
                .count();
            let outcome = if self.failed == 0 && skipped == 0 && unexpanded == 0 {
                RunOutcome::Succeeded
            } else {
                RunOutcome::Failed
            };
            let flaky = self
                .insts
                .iter()
                .flatten()
                .filter(|i| i.st == St::Done && i.had_failure)
                .count();
            self.emit(EventKind::RunFinished {
                outcome,
                succeeded: self.count(St::Done) as u32,
                failed: self.failed as u32,
                skipped: (skipped + unexpanded) as u32,
                flaky: flaky as u32,
                duration_s: duration.as_secs_f64(),
            });
            outcome
        };
        self.session.journal.sync();
        let mut instances = Vec::new();
        for &s in &self.order {
            if let Mode::PerItem(l) = self.nodes[s].mode
                && self.lists[l].items.is_none()
            {
                // A per-item stage whose list never came: one entry stands for all its items.
                instances.push(InstanceReport {
                    id: InstanceId::new(self.nodes[s].name.clone(), None),
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
            for (slot, i) in self.insts[s].iter().enumerate() {
                let state = match i.st {
                    St::Done if i.reused => InstanceState::Reused,
                    St::Done => InstanceState::Succeeded,
                    St::Failed => InstanceState::Failed,
                    St::Skipped => InstanceState::Skipped,
                    _ => InstanceState::NotRun,
                };
                instances.push(InstanceReport {
                    id: self.id(s, slot),
                    state,
                    attempts: i.records.clone(),
                    flaky: i.st == St::Done && i.had_failure,
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

    fn count(&self, st: St) -> usize {
        self.insts.iter().flatten().filter(|i| i.st == st).count()
    }
}

/// `ancestors[s][x]`: stage `x` is upstream of stage `s` (through `needs`).
fn ancestor_sets(nodes: &[Node]) -> Vec<Vec<bool>> {
    let n = nodes.len();
    let mut anc = vec![vec![false; n]; n];
    for (s, row) in anc.iter_mut().enumerate() {
        let mut stack = nodes[s].needs.clone();
        while let Some(x) = stack.pop() {
            if !row[x] {
                row[x] = true;
                stack.extend(nodes[x].needs.iter().copied());
            }
        }
    }
    anc
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// One attempt: the stage's future under its bound and the run's cancellation, then its output
/// written to the run folder.
async fn run_attempt(
    imp: Arc<dyn Stage>,
    ctx: StageContext,
    bound: Duration,
    grace: Duration,
    run_dir: PathBuf,
) -> AttemptResult {
    let cancel = ctx.cancel.clone();
    let result = {
        let fut = imp.run(&ctx);
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
