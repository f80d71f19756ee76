//! Cancellation: an interrupt cancels running work and records it; a stage that ignores its
//! cancel is dropped after the grace.

use super::*;

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
