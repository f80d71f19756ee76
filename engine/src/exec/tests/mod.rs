//! Scheduler tests with scripted stages: each stage of the spec gets a behaviour (sleep, fail,
//! produce a list) and every attempt is logged with its start and end on tokio's clock, which
//! most tests pause so that delays and bounds are exact.

mod cancel;
mod events;
mod failures;
mod retries;
mod scheduling;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::scheduler::{ExecOptions, Executor, InstanceState, Observer, RunReport, Session};
use super::signals::Interrupt;
use super::stage::{StageContext, StageFailure};
use crate::plan::Plan;
use crate::rundir::RunDir;
use crate::rundir::event::{AttemptOutcome, Event, EventKind, InstanceId, RunOutcome, SkipReason};
use crate::rundir::journal::{self, Journal};
use crate::spec::model::{FailureClass, StageKind};
use crate::testkit::{LoggedAttempt, Scripted, SpecBuilder, Step, story};

/// The tests' script (the shared [`Scripted`] stage, for every kind): `story` produces three
/// scenes; `patch` takes 10 ms per item, so that the scenes reach `render` in order (attempts
/// that end at one instant report back in any order). Unscripted stages succeed at once with
/// `{"stage": NAME, "item": N}`.
pub(crate) fn base_script() -> Scripted {
    Scripted::new()
        .on("story", |_| timed(Duration::ZERO, Ok(story(3))))
        .on("patch", |ctx| {
            let item = u64::from(ctx.instance.item.unwrap_or(0));
            timed(
                Duration::from_millis(10 * item),
                Ok(json!({"stage": "patch", "item": item})),
            )
        })
}

/// What one attempt does: takes `wait`, then returns `result`.
pub(crate) fn timed(wait: Duration, result: Result<Value, StageFailure>) -> Step {
    Step::with(result).after(wait)
}

pub(crate) fn fail(class: FailureClass) -> Result<Value, StageFailure> {
    Err(StageFailure::new(class, format!("scripted {class:?}")))
}

/// The pipeline of the tests: story → patch (per scene) → render (comfy) → frames → validate
/// (gathers). `render_retry` and `comfy` (more of the comfy service's table) are spliced in.
pub(crate) fn pipeline(out: &Path, render_retry: &str, comfy: &str) -> SpecBuilder {
    SpecBuilder::chain("t", &["story", "patch", "render", "frames", "validate"])
        .output_dir(out)
        .toml("services.comfy", comfy)
        .set("stages.story", "timeout_s", 5)
        .set("stages.story", "retry", json!({"budget": 0}))
        .toml("stages.render", &format!("retry = {render_retry}"))
        .set("stages.frames", "on_short", json!({"requeue": "render"}))
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Event>>>);

impl Observer for Collect {
    fn event(&mut self, e: &Event) {
        self.0.lock().expect("events").push(e.clone());
    }
}

struct Ran {
    report: RunReport,
    events: Vec<Event>,
    _dir: tempfile::TempDir,
}

pub(crate) fn opts(jobs: usize, keep_going: bool) -> ExecOptions {
    ExecOptions {
        jobs,
        keep_going,
        ..ExecOptions::default()
    }
}

/// Runs the pipeline once, in a fresh run folder.
async fn run_pipeline(
    script: &Scripted,
    render_retry: &str,
    comfy: &str,
    opts: ExecOptions,
    interrupt: Interrupt,
) -> Ran {
    let registry = script.registry();
    run_registry(registry, render_retry, comfy, opts, interrupt).await
}

/// [`run_pipeline`] with the stages of `registry`.
async fn run_registry(
    registry: super::Registry,
    render_retry: &str,
    comfy: &str,
    opts: ExecOptions,
    interrupt: Interrupt,
) -> Ran {
    let dir = tempfile::tempdir().expect("tempdir");
    let checked = pipeline(dir.path(), render_retry, comfy).check();
    let rd = RunDir::create(dir.path(), &checked, Path::new("t.toml")).expect("run dir");
    let journal = Journal::create(&rd.events()).expect("journal");
    let events = Collect::default();
    let exec = Executor::new(Plan::new(checked), registry, opts);
    let session = Session {
        dir: rd,
        journal,
        replay: None,
        spec_label: "t.toml".into(),
    };
    let report = exec
        .execute(session, &interrupt, vec![Box::new(events.clone())])
        .await;
    let events = events.0.lock().expect("events").clone();
    Ran {
        report,
        events,
        _dir: dir,
    }
}

pub(crate) fn state(r: &RunReport, id: &str) -> InstanceState {
    r.instances
        .iter()
        .find(|i| i.id.to_string() == id)
        .unwrap_or_else(|| panic!("no instance {id}"))
        .state
}

pub(crate) fn first(log: &[LoggedAttempt], id: &str) -> LoggedAttempt {
    log.iter()
        .find(|l| l.id == id)
        .unwrap_or_else(|| panic!("{id} never ran"))
        .clone()
}

/// The most attempts of the matching instances that overlapped in time.
fn max_overlap(log: &[LoggedAttempt], filter: impl Fn(&str) -> bool) -> usize {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for l in log.iter().filter(|l| filter(&l.id)) {
        edges.push((l.start, 1));
        edges.push((l.end, -1));
    }
    // Ends before starts at the same instant: back-to-back is not overlap.
    edges.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

pub(crate) const NO_RETRY: &str = "{ budget = 0 }";
