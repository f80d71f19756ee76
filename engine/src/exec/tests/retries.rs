//! Retries: the policy's delays and classes, a spent budget, and a requeue that reruns its
//! target.

use super::*;

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

/// A service watch that answers after `after` (or says no at its bound), and keeps what it
/// was asked.
struct SlowWatch {
    after: Duration,
    asked: Arc<Mutex<Vec<String>>>,
}

impl crate::exec::ServiceWatch for SlowWatch {
    fn until_answering(
        &self,
        _: Arc<crate::spec::CheckedSpec>,
        service: String,
        bound: Duration,
    ) -> crate::exec::BoxFuture<'static, bool> {
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
        Duration::from_millis(500) + crate::exec::SERVICE_RECOVERY_BOUND
    );
}
