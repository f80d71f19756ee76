//! Failures: the first stops new work unless `--keep-going`, an attempt past its bound times
//! out, a panic, a list source without its list, and stage kinds that are not built.

use super::*;

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
