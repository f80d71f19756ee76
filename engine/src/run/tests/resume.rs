//! Resuming a run folder: a failed run finished, an interrupted run with a torn journal line
//! finished, a changed spec refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::exec::tests::{NO_RETRY, base_script, fail, first, opts, pipeline, state, timed};
use crate::exec::{Event, InstanceState, Interrupt, RunOutcome, RunReport};
use crate::run::{RunRequest, run};
use crate::rundir::journal;
use crate::spec::model::FailureClass;
use crate::testkit::Scripted;

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
async fn resume_of_a_run_killed_before_its_journal_began_runs_it_in_its_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_file(dir.path(), NO_RETRY);
    // What a kill right after the folder was made leaves: its manifest, no journal.
    let checked = crate::spec::load(&spec, None).expect("spec");
    let made = crate::rundir::RunDir::create(&dir.path().join("runs"), &checked, &spec)
        .expect("run folder");
    assert!(!made.events().exists());
    let script = base_script();
    let resumed = run_req(
        &script,
        RunRequest {
            resume: Some(made.path.clone()),
            options: opts(2, true),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(resumed.outcome, RunOutcome::Succeeded);
    assert_eq!(resumed.dir, made.path);
    assert_eq!(resumed.session, 1);
    assert!(made.events().is_file());
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
