//! The order and concurrency of instances: each runs once after its needs, item by item,
//! scenes overlap across stages, and `jobs` and service slots bound how many run at once.

use super::*;

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
