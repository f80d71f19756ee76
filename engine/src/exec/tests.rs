//! Scheduler tests with scripted stages: each stage of the spec gets a behaviour (sleep, fail,
//! produce a list) and every attempt is logged with its start and end on tokio's clock, which
//! most tests pause so that delays and bounds are exact.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::event::{AttemptOutcome, Event, EventKind, InstanceId, RunOutcome, SkipReason};
use super::journal::{self, Journal};
use super::rundir::RunDir;
use super::scheduler::{ExecOptions, Executor, InstanceState, Observer, RunReport, Session};
use super::signals::Interrupt;
use super::stage::{StageContext, StageFailure};
use super::{RunRequest, run};
use crate::plan::Plan;
use crate::spec::model::{FailureClass, StageKind};
use crate::testkit::{LoggedAttempt, Scripted, SpecBuilder, Step, story};

/// The tests' script (the shared [`Scripted`] stage, for every kind): `story` produces three
/// scenes; `patch` takes 10 ms per item, so that the scenes reach `render` in order (attempts
/// that end at one instant report back in any order). Unscripted stages succeed at once with
/// `{"stage": NAME, "item": N}`.
fn base_script() -> Scripted {
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
fn timed(wait: Duration, result: Result<Value, StageFailure>) -> Step {
    Step::with(result).after(wait)
}

fn fail(class: FailureClass) -> Result<Value, StageFailure> {
    Err(StageFailure::new(class, format!("scripted {class:?}")))
}

/// The pipeline of the tests: story → patch (per scene) → render (comfy) → frames → validate
/// (gathers). `render_retry` and `comfy` (more of the comfy service's table) are spliced in.
fn pipeline(out: &Path, render_retry: &str, comfy: &str) -> SpecBuilder {
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

fn opts(jobs: usize, keep_going: bool) -> ExecOptions {
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

fn state(r: &RunReport, id: &str) -> InstanceState {
    r.instances
        .iter()
        .find(|i| i.id.to_string() == id)
        .unwrap_or_else(|| panic!("no instance {id}"))
        .state
}

fn first(log: &[LoggedAttempt], id: &str) -> LoggedAttempt {
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

const NO_RETRY: &str = "{ budget = 0 }";

#[tokio::test(start_paused = true)]
async fn every_instance_runs_once_after_its_needs_item_by_item() {
    let script = base_script()
        .on("patch", |_| {
            timed(Duration::from_secs(1), Ok(json!({"patched": true})))
        })
        .on("render", |_| {
            timed(Duration::from_secs(2), Ok(json!({"frames": 25})))
        });
    let ran = run_pipeline(&script, NO_RETRY, "", opts(8, false), Interrupt::new()).await;
    assert_eq!(ran.report.outcome, RunOutcome::Succeeded);
    let log = script.log();
    let mut ids: Vec<String> = log.iter().map(|l| l.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "frames[0]",
            "frames[1]",
            "frames[2]",
            "patch[0]",
            "patch[1]",
            "patch[2]",
            "render[0]",
            "render[1]",
            "render[2]",
            "story",
            "validate"
        ]
    );
    for i in 0..3 {
        let (p, r, f) = (
            first(&log, &format!("patch[{i}]")),
            first(&log, &format!("render[{i}]")),
            first(&log, &format!("frames[{i}]")),
        );
        assert!(first(&log, "story").end <= p.start);
        assert!(p.end <= r.start && r.end <= f.start, "item {i} in order");
        assert!(f.end <= first(&log, "validate").start, "validate gathers");
        // Each item sees its own scene and its own upstream output.
        assert_eq!(
            r.ctx.item.as_ref().and_then(|s| s.get("id")),
            Some(&json!(format!("scene-{}", i + 1)))
        );
        assert_eq!(f.ctx.input("render"), Some(&json!({"frames": 25})));
    }
    let v = first(&log, "validate");
    let gathered = v
        .ctx
        .input("frames")
        .and_then(Value::as_array)
        .expect("array");
    assert_eq!(gathered.len(), 3);
    assert_eq!(gathered[2], json!({"stage": "frames", "item": 2}));
    // Outputs are in the run folder, where the journal says they are.
    let out = ran
        .events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Succeeded {
                instance, output, ..
            } if instance.to_string() == "render[1]" => output.clone(),
            _ => None,
        })
        .expect("render[1] has an output");
    assert_eq!(out, "stages/render/1/output.json");
    let text = std::fs::read_to_string(ran.report.dir.join(out)).expect("output file");
    assert_eq!(
        serde_json::from_str::<Value>(&text).expect("json"),
        json!({"frames": 25})
    );
    assert!(matches!(
        ran.events
            .iter()
            .find(|e| matches!(e.kind, EventKind::FannedOut { .. }))
            .map(|e| &e.kind),
        Some(EventKind::FannedOut { count: 3, .. })
    ));
    assert!(matches!(
        ran.events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished {
            outcome: RunOutcome::Succeeded,
            succeeded: 11,
            ..
        })
    ));
}

#[tokio::test(start_paused = true)]
async fn scene_two_renders_while_scene_one_collects_frames() {
    let script = base_script()
        .on("render", |_| timed(Duration::from_secs(10), Ok(json!(1))))
        .on("frames", |_| timed(Duration::from_secs(10), Ok(json!(1))));
    run_pipeline(&script, NO_RETRY, "", opts(4, false), Interrupt::new()).await;
    let log = script.log();
    let (f0, r1) = (first(&log, "frames[0]"), first(&log, "render[1]"));
    assert!(
        f0.start < r1.end && r1.start < f0.end,
        "frames[0] {:?}..{:?} overlaps render[1] {:?}..{:?}",
        f0.start,
        f0.end,
        r1.start,
        r1.end
    );
}

#[tokio::test(start_paused = true)]
async fn jobs_and_service_slots_bound_concurrency() {
    let slow = |_: &StageContext| timed(Duration::from_secs(1), Ok(json!(1)));
    let six = |_: &StageContext| timed(Duration::ZERO, Ok(story(6)));
    // Global bound: 2 at a time, whatever the stages.
    let script = base_script()
        .on("story", six)
        .on("patch", slow)
        .on("render", slow)
        .on("frames", slow);
    run_pipeline(
        &script,
        NO_RETRY,
        "max_concurrent = 4",
        opts(2, false),
        Interrupt::new(),
    )
    .await;
    assert_eq!(max_overlap(&script.log(), |_| true), 2);

    // One ComfyUI server with one slot: renders never overlap, though jobs would allow it.
    let script = base_script()
        .on("story", six)
        .on("patch", slow)
        .on("render", slow)
        .on("frames", slow);
    run_pipeline(&script, NO_RETRY, "", opts(8, false), Interrupt::new()).await;
    let log = script.log();
    assert_eq!(max_overlap(&log, |id| id.starts_with("render")), 1);
    assert!(
        max_overlap(&log, |_| true) > 1,
        "other stages run beside the render"
    );

    // A pool of two servers, two slots each: four renders at once.
    let script = base_script()
        .on("story", six)
        .on("patch", slow)
        .on("render", slow)
        .on("frames", slow);
    let dir = tempfile::tempdir().expect("tempdir");
    let checked = pipeline(dir.path(), NO_RETRY, "")
        .comfy_urls(&["http://127.0.0.1:9", "http://127.0.0.1:10"])
        .set("services.comfy", "max_concurrent", 2)
        .check();
    let rd = RunDir::create(dir.path(), &checked, Path::new("t.toml")).expect("run dir");
    let journal = Journal::create(&rd.events()).expect("journal");
    let exec = Executor::new(Plan::new(checked), script.registry(), opts(16, false));
    let session = Session {
        dir: rd,
        journal,
        replay: None,
        spec_label: "t.toml".into(),
    };
    let report = exec.execute(session, &Interrupt::new(), vec![]).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(max_overlap(&script.log(), |id| id.starts_with("render")), 4);
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_policy_exactly_and_free_their_slot_while_waiting() {
    // Fails three times, then succeeds: exponential from 1 s, capped at 3 s: waits 1, 2, 3.
    let script = base_script().on("render", |ctx| {
        let r = if ctx.instance.item == Some(0) && ctx.attempt <= 3 {
            fail(FailureClass::Timeout)
        } else {
            Ok(json!("ok"))
        };
        timed(Duration::from_millis(500), r)
    });
    let ran = run_pipeline(
        &script,
        r#"{ budget = 3, backoff = "exponential", delay_s = 1, max_delay_s = 3, on = ["timeout"] }"#,
        "",
        opts(4, false),
        Interrupt::new(),
    )
    .await;
    assert_eq!(ran.report.outcome, RunOutcome::Succeeded);
    let log = script.log();
    let starts: Vec<f64> = log
        .iter()
        .filter(|l| l.id == "render[0]")
        .map(|l| {
            l.start
                .duration_since(first(&log, "render[0]").start)
                .as_secs_f64()
        })
        .collect();
    // Each attempt takes 0.5 s, then waits 1, 2, 3 s.
    assert_eq!(starts, [0.0, 1.5, 4.0, 7.5]);
    let waits: Vec<f64> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::AttemptFinished {
                instance,
                retry_in_s: Some(w),
                ..
            } if instance.to_string() == "render[0]" => Some(*w),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [1.0, 2.0, 3.0]);
    let r0 = ran
        .report
        .instances
        .iter()
        .find(|i| i.id.to_string() == "render[0]")
        .expect("render[0]");
    assert!(r0.flaky, "succeeded after failures");
    assert_eq!(r0.attempts.len(), 4);
    assert_eq!(r0.attempts[0].class, Some(FailureClass::Timeout));
    assert_eq!(r0.attempts[3].outcome, AttemptOutcome::Succeeded);
    assert!(matches!(
        ran.events.last().map(|e| &e.kind),
        Some(EventKind::RunFinished { flaky: 1, .. })
    ));
    // While render[0] waited for its retry, the one ComfyUI slot served the other scenes.
    let r1 = first(&log, "render[1]");
    assert!(
        r1.start
            < log
                .iter()
                .rfind(|l| l.id == "render[0]")
                .expect("last")
                .start
    );
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_or_an_unlisted_class_fails_the_instance() {
    let script = base_script().on("render", |ctx| {
        let class = if ctx.instance.item == Some(0) {
            FailureClass::Timeout
        } else {
            FailureClass::NodeError
        };
        timed(Duration::ZERO, fail(class))
    });
    let ran = run_pipeline(
        &script,
        r#"{ budget = 2, on = ["timeout"] }"#,
        "",
        opts(1, true),
        Interrupt::new(),
    )
    .await;
    assert_eq!(ran.report.outcome, RunOutcome::Failed);
    // budget = 2 retries after the first attempt: three attempts.
    assert_eq!(script.runs_of("render[0]"), 3);
    // node-error is not in `on`: one attempt.
    assert_eq!(script.runs_of("render[1]"), 1);
    assert_eq!(state(&ran.report, "render[0]"), InstanceState::Failed);
    assert!(ran.events.iter().any(|e| matches!(&e.kind,
        EventKind::Failed { instance, attempts: 3, class: Some(FailureClass::Timeout), .. } if instance.to_string() == "render[0]")));
}

#[tokio::test(start_paused = true)]
async fn a_requeue_reruns_the_target_and_spends_its_budget() {
    // frames[1] is short the first time only; frames[2] is always short.
    let script = base_script().on("frames", |ctx| {
        let short = match ctx.instance.item {
            Some(1) => ctx.attempt == 1,
            Some(2) => true,
            _ => false,
        };
        timed(
            Duration::ZERO,
            if short {
                fail(FailureClass::ShortFrames)
            } else {
                Ok(json!({"frames": 25}))
            },
        )
    });
    let ran = run_pipeline(
        &script,
        r#"{ budget = 1 }"#,
        "",
        opts(1, true),
        Interrupt::new(),
    )
    .await;
    assert_eq!(script.runs_of("render[0]"), 1);
    assert_eq!(script.runs_of("frames[0]"), 1);
    assert_eq!(script.runs_of("render[1]"), 2, "requeued once");
    assert_eq!(script.runs_of("frames[1]"), 2);
    assert_eq!(state(&ran.report, "frames[1]"), InstanceState::Succeeded);
    assert!(
        ran.report
            .instances
            .iter()
            .any(|i| i.id.to_string() == "frames[1]" && i.flaky)
    );
    let rq: Vec<(String, String, Vec<String>, u32)> = ran
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Requeued {
                instance,
                target,
                reset,
                budget_left,
                ..
            } => Some((
                instance.to_string(),
                target.to_string(),
                reset.iter().map(ToString::to_string).collect(),
                *budget_left,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        rq,
        [
            (
                "frames[1]".into(),
                "render[1]".into(),
                vec!["render[1]".to_owned(), "frames[1]".to_owned()],
                0
            ),
            (
                "frames[2]".into(),
                "render[2]".into(),
                vec!["render[2]".to_owned(), "frames[2]".to_owned()],
                0
            ),
        ]
    );
    // frames[2]: requeued once (render's budget of 1 is then spent), then frames' own retry
    // (budget 1, short-frames is retried by default), then it fails.
    assert_eq!(script.runs_of("render[2]"), 2);
    assert_eq!(script.runs_of("frames[2]"), 3);
    let lefts: Vec<Option<u32>> = script
        .log()
        .iter()
        .filter(|l| l.id == "frames[2]")
        .map(|l| l.ctx.requeues_left)
        .collect();
    assert_eq!(lefts, [Some(1), Some(0), Some(0)]);
    assert_eq!(state(&ran.report, "frames[2]"), InstanceState::Failed);
    assert_eq!(ran.report.outcome, RunOutcome::Failed);
}

#[tokio::test(start_paused = true)]
async fn the_first_failure_stops_new_work_unless_keep_going() {
    let script = || {
        base_script().on("render", |ctx| {
            let r = if ctx.instance.item == Some(1) {
                fail(FailureClass::NodeError)
            } else {
                Ok(json!(1))
            };
            timed(Duration::from_secs(1), r)
        })
    };
    // One job at a time, downstream first: scene 0 goes all the way, render[1] fails, and
    // nothing new starts.
    let s = script();
    let ran = run_pipeline(&s, NO_RETRY, "", opts(1, false), Interrupt::new()).await;
    assert_eq!(ran.report.outcome, RunOutcome::Failed);
    assert_eq!(state(&ran.report, "frames[0]"), InstanceState::Succeeded);
    assert_eq!(state(&ran.report, "render[1]"), InstanceState::Failed);
    assert_eq!(s.runs_of("patch[2]"), 0);
    assert_eq!(state(&ran.report, "patch[2]"), InstanceState::Skipped);
    assert!(ran.events.iter().any(|e| matches!(&e.kind,
        EventKind::Skipped { instance, reason: SkipReason::RunStopped, .. } if instance.to_string() == "patch[2]")));

    // Running work finishes cleanly: with room for all, render[0] and render[2] were running
    // beside render[1] (each starts 10 ms after the one before) and end normally.
    let s = script();
    let ran = run_pipeline(
        &s,
        NO_RETRY,
        "max_concurrent = 3",
        opts(8, false),
        Interrupt::new(),
    )
    .await;
    assert_eq!(state(&ran.report, "render[0]"), InstanceState::Succeeded);
    assert_eq!(state(&ran.report, "render[2]"), InstanceState::Succeeded);
    // render[2] ended after render[1] failed: what follows it is new work, not started.
    assert_eq!(state(&ran.report, "frames[2]"), InstanceState::Skipped);

    // --keep-going: the other scenes finish; only what needs scene 1 is skipped.
    let s = script();
    let ran = run_pipeline(&s, NO_RETRY, "", opts(1, true), Interrupt::new()).await;
    assert_eq!(ran.report.outcome, RunOutcome::Failed);
    assert_eq!(state(&ran.report, "frames[0]"), InstanceState::Succeeded);
    assert_eq!(state(&ran.report, "frames[2]"), InstanceState::Succeeded);
    assert_eq!(state(&ran.report, "frames[1]"), InstanceState::Skipped);
    assert_eq!(state(&ran.report, "validate"), InstanceState::Skipped);
    assert!(ran.events.iter().any(|e| matches!(&e.kind,
        EventKind::Skipped { instance, reason: SkipReason::NeedFailed, detail } if instance.to_string() == "frames[1]" && detail.contains("render[1]"))));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_past_its_bound_times_out() {
    // story's timeout_s is 5: an answer that takes a minute is a timeout.
    let script = base_script().on("story", |_| timed(Duration::from_secs(60), Ok(story(1))));
    let t0 = Instant::now();
    let ran = run_pipeline(&script, NO_RETRY, "", opts(2, false), Interrupt::new()).await;
    assert_eq!(t0.elapsed(), Duration::from_secs(5));
    assert_eq!(state(&ran.report, "story"), InstanceState::Failed);
    let a = &ran.report.instances[0].attempts[0];
    assert_eq!(
        (a.outcome, a.class),
        (AttemptOutcome::TimedOut, Some(FailureClass::Timeout))
    );
    assert!(
        matches!(ran.events.iter().find(|e| matches!(e.kind, EventKind::Skipped { .. })).map(|e| &e.kind),
        Some(EventKind::Skipped { instance, .. }) if instance.to_string() == "patch")
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_cancels_running_work_and_records_it() {
    let script = base_script().on("render", |_| timed(Duration::from_secs(3600), Ok(json!(1))));
    let interrupt = Interrupt::new();
    let i2 = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        i2.interrupt(Some("SIGINT"));
    });
    let ran = run_pipeline(&script, NO_RETRY, "", opts(4, false), interrupt).await;
    assert_eq!(ran.report.outcome, RunOutcome::Interrupted);
    let log = script.log();
    let r0 = first(&log, "render[0]");
    assert!(r0.cancelled, "the stage saw its cancel token");
    assert_eq!(r0.end.duration_since(r0.start), Duration::from_secs(5));
    assert_eq!(state(&ran.report, "render[0]"), InstanceState::NotRun);
    assert_eq!(
        state(&ran.report, "patch[2]"),
        InstanceState::Succeeded,
        "work done before stays done"
    );
    assert!(ran.events.iter().any(|e| matches!(&e.kind,
        EventKind::AttemptFinished { instance, outcome: AttemptOutcome::Cancelled, .. } if instance.to_string() == "render[0]")));
    assert!(
        !ran.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Skipped { .. } | EventKind::Failed { .. }))
    );
    assert!(matches!(ran.events.last().map(|e| &e.kind),
        Some(EventKind::RunInterrupted { signal: Some(s), cancelled: 1, .. }) if s == "SIGINT"));
    // The journal on disk ends the same way and parses.
    let r = journal::replay(&ran.report.dir.join("events.jsonl")).expect("replays");
    assert!(!r.torn);
    assert_eq!(r.events, ran.events.len());
}

#[tokio::test(start_paused = true)]
async fn a_stage_that_ignores_its_cancel_is_dropped_after_the_grace() {
    // Every stage but the story sleeps an hour and does not listen for its cancel.
    let deaf = Scripted::new()
        .on("story", |_| Step::ok(story(1)))
        .otherwise(|_| {
            Step::ok(Value::Null)
                .after(Duration::from_secs(3600))
                .ignoring_cancel()
        });
    let dir = tempfile::tempdir().expect("tempdir");
    let checked = pipeline(dir.path(), NO_RETRY, "").check();
    let rd = RunDir::create(dir.path(), &checked, Path::new("t.toml")).expect("run dir");
    let journal = Journal::create(&rd.events()).expect("journal");
    let registry = deaf.registry();
    let exec = Executor::new(
        Plan::new(checked),
        registry,
        ExecOptions {
            cancel_grace: Duration::from_secs(2),
            ..opts(2, false)
        },
    );
    let interrupt = Interrupt::new();
    let i2 = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        i2.interrupt(None);
    });
    let t0 = Instant::now();
    let session = Session {
        dir: rd,
        journal,
        replay: None,
        spec_label: "t.toml".into(),
    };
    let report = exec.execute(session, &interrupt, vec![]).await;
    assert_eq!(report.outcome, RunOutcome::Interrupted);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(3),
        "1 s of work, then 2 s of grace"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_stage_fails_its_instance_without_retry() {
    let script = base_script().on("patch", |ctx| {
        assert!(ctx.instance.item != Some(1), "scripted panic");
        timed(Duration::ZERO, Ok(json!(1)))
    });
    let ran = run_pipeline(&script, NO_RETRY, "", opts(1, true), Interrupt::new()).await;
    assert_eq!(state(&ran.report, "patch[1]"), InstanceState::Failed);
    assert_eq!(state(&ran.report, "frames[2]"), InstanceState::Succeeded);
    let p1 = ran
        .report
        .instances
        .iter()
        .find(|i| i.id.to_string() == "patch[1]")
        .expect("patch[1]");
    assert_eq!(p1.attempts.len(), 1);
    assert_eq!(p1.attempts[0].outcome, AttemptOutcome::Crashed);
}

#[tokio::test(start_paused = true)]
async fn a_list_source_without_its_list_is_invalid_output() {
    let script = base_script().on("story", |_| {
        timed(Duration::ZERO, Ok(json!({"title": "no scenes"})))
    });
    let ran = run_pipeline(&script, NO_RETRY, "", opts(1, false), Interrupt::new()).await;
    let a = &ran.report.instances[0].attempts[0];
    assert_eq!(a.class, Some(FailureClass::InvalidOutput));
    assert!(
        a.error
            .as_deref()
            .unwrap_or("")
            .contains("no list `scenes`"),
        "{a:?}"
    );
    assert_eq!(state(&ran.report, "patch"), InstanceState::Skipped);
}

#[tokio::test(start_paused = true)]
async fn unbuilt_kinds_fail_their_instances_and_the_rest_runs() {
    let script = base_script();
    let dir = tempfile::tempdir().expect("tempdir");
    let checked = pipeline(dir.path(), NO_RETRY, "").check();
    let rd = RunDir::create(dir.path(), &checked, Path::new("t.toml")).expect("run dir");
    let journal = Journal::create(&rd.events()).expect("journal");
    // Not `builtin()`: the test needs kinds without an implementation, whichever are built.
    let registry = script.alone(&[StageKind::Llm, StageKind::PatchWorkflow, StageKind::Queue]);
    let exec = Executor::new(Plan::new(checked), registry, opts(2, true));
    let session = Session {
        dir: rd,
        journal,
        replay: None,
        spec_label: "t.toml".into(),
    };
    let report = exec.execute(session, &Interrupt::new(), vec![]).await;
    assert_eq!(report.outcome, RunOutcome::Failed);
    let unbuilt: Vec<(&str, Vec<String>)> = report
        .unbuilt
        .iter()
        .map(|(k, s)| (k.as_str(), s.clone()))
        .collect();
    assert_eq!(
        unbuilt,
        [
            ("collect-frames", vec!["frames".to_owned()]),
            ("validate", vec!["validate".to_owned()])
        ]
    );
    assert_eq!(state(&report, "render[2]"), InstanceState::Succeeded);
    let f = report
        .instances
        .iter()
        .find(|i| i.id.to_string() == "frames[0]")
        .expect("frames[0]");
    assert_eq!(f.state, InstanceState::Failed);
    assert!(
        f.error
            .as_deref()
            .unwrap_or("")
            .contains("`collect-frames` is not built yet")
    );
}

/// Writes the pipeline spec to a file so that `run` (and its resume) can read it.
fn spec_file(dir: &Path, render_retry: &str) -> PathBuf {
    pipeline(&dir.join("runs"), render_retry, "").write(dir, "t.toml")
}

async fn run_req(script: &Scripted, mut req: RunRequest) -> RunReport {
    req.skip_services = true;
    run(req, script.registry(), &Interrupt::new(), vec![])
        .await
        .unwrap_or_else(|e| panic!("run: {e}"))
}

#[tokio::test(start_paused = true)]
async fn resume_finishes_a_failed_run_without_redoing_done_instances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_file(dir.path(), NO_RETRY);
    let broken = base_script().on("frames", |ctx| {
        let r = if ctx.instance.item == Some(2) {
            fail(FailureClass::NodeError)
        } else {
            Ok(json!({"n": ctx.instance.item}))
        };
        timed(Duration::ZERO, r)
    });
    let first_run = run_req(
        &broken,
        RunRequest {
            spec: Some(spec.clone()),
            options: opts(2, true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first_run.outcome, RunOutcome::Failed);

    let fixed = base_script();
    let second = run_req(
        &fixed,
        RunRequest {
            resume: Some(first_run.dir.clone()),
            options: opts(2, true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(second.outcome, RunOutcome::Succeeded);
    assert_eq!(second.session, 2);
    let mut ran: Vec<(String, u32)> = fixed
        .log()
        .iter()
        .map(|l| (l.id.clone(), l.attempt))
        .collect();
    ran.sort();
    // Only the failed instance and what needed it; attempt numbers go on from the first session.
    assert_eq!(
        ran,
        [("frames[2]".to_owned(), 2), ("validate".to_owned(), 1)]
    );
    assert_eq!(second.count(InstanceState::Reused), 9);
    // validate was given the outputs of earlier sessions, read back from the run folder.
    let v = first(&fixed.log(), "validate");
    assert_eq!(
        v.ctx.input("frames").and_then(|f| f.get(0)),
        Some(&json!({"n": 0}))
    );

    // A third resume has nothing left to do.
    let idle = base_script();
    let third = run_req(
        &idle,
        RunRequest {
            resume: Some(first_run.dir.clone()),
            options: opts(2, true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(third.outcome, RunOutcome::Succeeded);
    assert!(idle.log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn resume_after_an_interrupt_and_a_torn_journal_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_file(dir.path(), NO_RETRY);
    let script = base_script().on("render", |ctx| {
        let wait = if ctx.instance.item == Some(2) {
            3600
        } else {
            1
        };
        timed(
            Duration::from_secs(wait),
            Ok(json!({"r": ctx.instance.item})),
        )
    });
    let interrupt = Interrupt::new();
    let i2 = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        i2.interrupt(Some("SIGTERM"));
    });
    let req = RunRequest {
        spec: Some(spec.clone()),
        options: opts(4, false),
        skip_services: true,
        ..Default::default()
    };
    let first_run = run(req, script.registry(), &interrupt, vec![])
        .await
        .expect("runs");
    assert_eq!(first_run.outcome, RunOutcome::Interrupted);
    assert_eq!(state(&first_run, "frames[1]"), InstanceState::Succeeded);

    // A kill -9 in the middle of a line.
    let events = first_run.dir.join("events.jsonl");
    let mut bytes = std::fs::read(&events).expect("journal");
    bytes.extend_from_slice(br#"{"ts":"2026-11-21T12:00:00.000Z","event":"succ"#);
    std::fs::write(&events, bytes).expect("torn");

    let second = base_script();
    let report = run_req(
        &second,
        RunRequest {
            resume: Some(first_run.dir.clone()),
            options: opts(4, false),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    let mut ran: Vec<String> = second.log().iter().map(|l| l.id.clone()).collect();
    ran.sort();
    assert_eq!(ran, ["frames[2]", "render[2]", "validate"]);
    let r = journal::replay(&events).expect("replays");
    assert!(!r.torn, "the torn line was cut before appending");
    assert_eq!(r.sessions, 2);
    for line in std::fs::read_to_string(&events).expect("journal").lines() {
        serde_json::from_str::<Event>(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[tokio::test(start_paused = true)]
async fn resume_refuses_a_changed_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_file(dir.path(), NO_RETRY);
    let script = base_script();
    let first_run = run_req(
        &script,
        RunRequest {
            spec: Some(spec.clone()),
            options: opts(2, false),
            ..Default::default()
        },
    )
    .await;
    std::fs::write(
        &spec,
        pipeline(&dir.path().join("runs"), "{ budget = 3 }", "").text(),
    )
    .expect("edit");
    let e = run(
        RunRequest {
            resume: Some(first_run.dir.clone()),
            ..Default::default()
        },
        script.registry(),
        &Interrupt::new(),
        vec![],
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("/stages/render/retry/budget"), "{e}");
}

#[test]
fn instance_ids_in_events_parse_back() {
    let id: InstanceId = "render[2]".parse().expect("id");
    assert_eq!(
        RunDir::output_file(&id),
        Path::new("stages/render/2/output.json")
    );
    assert_eq!(
        RunDir::output_file(&"story".parse().expect("id")),
        Path::new("stages/story/output.json")
    );
}

#[tokio::test(start_paused = true)]
async fn every_journal_line_matches_the_generated_schema() {
    // A run with retries, a requeue, a failure and skips: most kinds of event.
    let script = base_script()
        .on("render", |ctx| {
            let r = if ctx.instance.item == Some(0) && ctx.attempt == 1 {
                fail(FailureClass::Timeout)
            } else {
                Ok(json!(1))
            };
            timed(Duration::ZERO, r)
        })
        .on("frames", |ctx| {
            let r = match ctx.instance.item {
                Some(1) if ctx.attempt == 1 => fail(FailureClass::ShortFrames),
                Some(2) => fail(FailureClass::NodeError),
                _ => Ok(json!(1)),
            };
            timed(Duration::ZERO, r)
        });
    let ran = run_pipeline(
        &script,
        "{ budget = 1, delay_s = 1 }",
        "",
        opts(2, true),
        Interrupt::new(),
    )
    .await;
    let schema = crate::schema::run_events_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let text = std::fs::read_to_string(ran.report.dir.join("events.jsonl")).expect("journal");
    let mut kinds = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{line}: {errors:?}");
        kinds.insert(v["event"].as_str().unwrap_or("").to_owned());
    }
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "attempt-finished",
            "attempt-started",
            "failed",
            "fanned-out",
            "instance-started",
            "requeued",
            "run-finished",
            "run-started",
            "skipped",
            "succeeded"
        ]
    );
}

/// A service watch that answers after `after` (or says no at its bound), and keeps what it
/// was asked.
struct SlowWatch {
    after: Duration,
    asked: Arc<Mutex<Vec<String>>>,
}

impl super::ServiceWatch for SlowWatch {
    fn until_answering(
        &self,
        _: Arc<crate::spec::CheckedSpec>,
        service: String,
        bound: Duration,
    ) -> super::BoxFuture<'static, bool> {
        let (after, asked) = (self.after, self.asked.clone());
        Box::pin(async move {
            asked.lock().expect("asked").push(service);
            tokio::time::sleep(after.min(bound)).await;
            after <= bound
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_transport_failure_waits_for_its_service_to_answer_before_the_retry() {
    // render[0] cannot reach its server once, render[1] times out once; the watch says the
    // server answers again 5 s after it is asked.
    let script = base_script().on("render", |ctx| {
        let r = match (ctx.instance.item, ctx.attempt) {
            (Some(0), 1) => fail(FailureClass::Transport),
            (Some(1), 1) => fail(FailureClass::Timeout),
            _ => Ok(json!("ok")),
        };
        timed(Duration::from_millis(500), r)
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let watch = SlowWatch {
        after: Duration::from_secs(5),
        asked: asked.clone(),
    };
    let registry = script.registry().with_service_watch(Arc::new(watch));
    let ran = run_registry(
        registry,
        r#"{ budget = 1, on = ["transport", "timeout"] }"#,
        "",
        opts(8, false),
        Interrupt::new(),
    )
    .await;
    assert_eq!(ran.report.outcome, RunOutcome::Succeeded);
    let log = script.log();
    let gap = |id: &str| {
        let starts: Vec<Instant> = log.iter().filter(|l| l.id == id).map(|l| l.start).collect();
        starts[1].duration_since(starts[0]).as_secs_f64()
    };
    // The attempt's 0.5 s, then the wait for the service; a timeout retries at once.
    assert_eq!(gap("render[0]"), 5.5);
    assert_eq!(gap("render[1]"), 0.5);
    assert_eq!(*asked.lock().expect("asked"), ["comfy"]);
}

#[tokio::test(start_paused = true)]
async fn a_service_that_never_answers_holds_the_retry_for_the_bound_only() {
    let script = base_script().on("render", |ctx| {
        let r = if ctx.instance.item == Some(0) && ctx.attempt == 1 {
            fail(FailureClass::Transport)
        } else {
            Ok(json!("ok"))
        };
        timed(Duration::from_millis(500), r)
    });
    let watch = SlowWatch {
        after: Duration::from_secs(3600),
        asked: Arc::default(),
    };
    let registry = script.registry().with_service_watch(Arc::new(watch));
    let ran = run_registry(
        registry,
        "{ budget = 1 }",
        "",
        opts(8, false),
        Interrupt::new(),
    )
    .await;
    assert_eq!(ran.report.outcome, RunOutcome::Succeeded);
    let log = script.log();
    let starts: Vec<Instant> = log
        .iter()
        .filter(|l| l.id == "render[0]")
        .map(|l| l.start)
        .collect();
    assert_eq!(
        starts[1].duration_since(starts[0]),
        Duration::from_millis(500) + super::SERVICE_RECOVERY_BOUND
    );
}
