//! The scheduler: walks the plan's DAG and runs every stage instance whose needs are done, as
//! tokio tasks, within the global (`--jobs`) and per-service (`max_concurrent`) bounds; applies
//! retry policies and requeues; records every state change as an [`Event`].
//!
//! One task, the walker, owns all state: it hands out ready instances, and attempts report back
//! through a `JoinSet`. Nothing is shared and locked, so the order of events is the order the
//! walker saw them, and a panicking stage cannot leave the state half-changed.
//!
//! - [`walker`]: the walker's state, its loop, and handing out ready instances;
//! - [`attempt`]: one attempt of one instance, as a task ([`attempt::run_attempt`]);
//! - [`outcome`]: what the walker does with an attempt's end (success, retry, requeue,
//!   failure);
//! - [`report`]: the end of the session, and its [`RunReport`].

mod attempt;
mod outcome;
mod report;
mod walker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::signals::Interrupt;
use super::stage::Registry;
use crate::plan::Plan;
use crate::rundir::RunDir;
use crate::rundir::event::{AttemptOutcome, Event, InstanceId, RunOutcome};
use crate::rundir::journal::{Journal, Replay};
use crate::spec::CheckedSpec;
use crate::spec::model::{FailureClass, StageKind};
use walker::Walker;

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

/// How long a retry waits, past its backoff, for a service that an attempt could not reach
/// (class `transport`) to answer its health check again: long enough for a supervised
/// server to restart (ComfyUI takes about 7 s, an LLM server loading its model longer). The
/// health check is asked again and again, 0.25 s apart at first and doubling to 5 s. When the
/// service has not answered by then, the retry runs anyway and fails on its own.
pub const SERVICE_RECOVERY_BOUND: Duration = Duration::from_secs(60);

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
    /// `run::run`.
    pub service_notes: Vec<String>,
    /// Why `artifact-metadata.json` and `run-summary.txt` could not be written at the end of
    /// the session, if they could not; filled by `run::run`.
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
        Executor {
            spec: Arc::new(plan.spec),
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
