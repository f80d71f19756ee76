//! The telemetry of a scripted run end to end: what a finished run writes keeps the contract,
//! and a killed run is incomplete with its unfinished attempt cancelled.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::artifact_metadata::*;
use crate::exec::ExecOptions;
use crate::exec::{Attempt, Interrupt, Registry, RunOutcome, StageContext, StageFailure};
use crate::run::RunRequest;
use crate::spec::model::{FailureClass, Stage as SpecStage, StageKind};
use crate::stages::output::{
    LlmAttempt, LlmRecord, ProviderReport, QueueOutput, QueueTelemetry, RecordOutcome, RenderRef,
};
use crate::telemetry::build::write_run;
use crate::testkit::{Scripted, SpecBuilder, Step};

/// story (llm) → render (queue, per scene) → validate (gathers; the real stage).
fn spec(dir: &Path) -> PathBuf {
    SpecBuilder::chain("t", &["story", "render", "validate"])
        .output_dir(&dir.join("runs"))
        .toml(
            "stages.render",
            "max_wait_s = 100\npoll_interval_s = 4\nretry = { budget = 2 }",
        )
        .write(dir, "t.toml")
}

/// The story: its last scene repeats an id; the attempt's LLM record is written as the
/// `llm` stage writes it.
fn story_step(ctx: &StageContext) -> Step {
    let story = json!({
        "title": "T", "story_version": "2",
        "scenes": [
            {"id": "a", "prompt": "p1", "mood": "m1"},
            {"id": "b", "prompt": "p2", "mood": "m2", "keyframe": "k.png"},
            {"id": "b", "prompt": "p3", "mood": "m3"},
        ],
    });
    let record = LlmRecord {
        attempt: ctx.attempt,
        outcome: RecordOutcome::Succeeded,
        failure_class: None,
        error: None,
        body: LlmAttempt {
            service: Some("llm".into()),
            model: Some("m".into()),
            response_time_s: Some(1.5),
            prompt_tokens: Some(10),
            completion_tokens: Some(20),
            finish_reason: Some("stop".into()),
            providers: vec![ProviderReport {
                service: "llm".into(),
                base_url: "http://127.0.0.1:1".into(),
                model: "m".into(),
                health: "reachable".into(),
                error: None,
            }],
            fallback_notes: vec!["llm: a note".into()],
            ..LlmAttempt::default()
        },
    };
    let dir = ctx.run_dir.join(&ctx.instance_dir);
    std::fs::create_dir_all(&dir).expect("instance folder");
    let bytes = serde_json::to_vec_pretty(&record).expect("record");
    crate::fsutil::write_atomic(&dir.join(format!("attempt-{}.json", ctx.attempt)), &bytes)
        .expect("attempt record");
    Step::ok(story)
}

/// A render: `render[1]` fails once; every other reports queue telemetry the way a queue
/// stage does.
fn render_step(ctx: &StageContext) -> Step {
    if ctx.instance.item == Some(1) && ctx.attempt == 1 {
        return Step::with(Err(StageFailure::new(FailureClass::Transport, "refused")));
    }
    let Some(SpecStage::Queue(stage)) = ctx.stage() else {
        return Step::with(Err(StageFailure::new(
            FailureClass::InvalidOutput,
            "not a queue stage",
        )));
    };
    let mut out = QueueOutput::start(QueueTelemetry::configured(stage));
    out.telemetry.history_exit_reason = HistoryExitReason::Success;
    out.telemetry.execution_success_detected = true;
    out.gpu = Some(GpuTelemetry {
        source: GpuReadingSource::Nvml,
        vram_before_mb: Some(100),
        vram_after_mb: Some(150),
        ..GpuTelemetry::none()
    });
    let mut render = RenderRef::new("cinepipe/r/s/a1/frame");
    render.prompt_id = Some(format!("p-{}", ctx.instance.item.unwrap_or(0)));
    out.render = Some(render);
    Step::with(Attempt::output(&out))
}

/// The llm and queue kinds, scripted.
fn registry() -> Registry {
    Scripted::new()
        .on("story", story_step)
        .otherwise(render_step)
        .over_builtin(&[StageKind::Llm, StageKind::Queue])
}

fn metadata(dir: &Path) -> ArtifactMetadata {
    let text = std::fs::read_to_string(dir.join(METADATA_FILE)).expect("metadata");
    serde_json::from_str(&text).expect("parses into the types")
}

#[tokio::test]
async fn a_finished_run_writes_telemetry_that_keeps_the_contract() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let req = RunRequest {
        spec: Some(spec(tmp.path())),
        options: ExecOptions::default(),
        skip_services: true,
        ..Default::default()
    };
    let report = crate::run::run(req, registry(), &Interrupt::new(), vec![])
        .await
        .expect("runs");
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(report.telemetry_error, None);
    let dir = report.dir.clone();
    assert_eq!(
        crate::telemetry::verify::verify_run(&dir).expect("reads"),
        []
    );

    // The validate stage checked the files as they were before it, and passed.
    let out: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("stages/validate/output.json")).expect("output"),
    )
    .expect("json");
    assert_eq!(out["passed"], true, "{out}");

    let m = metadata(&dir);
    assert_eq!(m.outcome, Outcome::Success);
    assert!(m.ended_at.is_some());
    assert_eq!(
        m.story,
        Some(StoryInfo {
            title: "T".into(),
            story_version: "2".into()
        })
    );
    assert_eq!(m.queue_config.history_max_wait_seconds, 100.0);
    assert_eq!(m.queue_config.scene_retry_budget, 2);
    let ids: Vec<&str> = m.scenes.iter().map(|s| s.scene_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "b@3"]);
    assert_eq!(
        m.scenes[2].telemetry.system.fallback_notes,
        ["scene id `b` repeats in the story; recorded as `b@3`"]
    );
    assert_eq!(m.scenes[1].keyframe.as_deref(), Some("k.png"));
    let s1 = &m.scenes[1];
    assert_eq!(s1.outcome, Outcome::Success);
    let flaky: Vec<(u32, AttemptOutcome, bool)> = s1
        .scene_attempt_summaries
        .iter()
        .map(|a| (a.attempt, a.outcome, a.flaky))
        .collect();
    assert_eq!(
        flaky,
        [
            (1, AttemptOutcome::Failed, false),
            (2, AttemptOutcome::Success, true)
        ]
    );
    // The queue stage's part, merged; the delta derived.
    assert_eq!(s1.prompt_id.as_deref(), Some("p-1"));
    let t = &s1.telemetry;
    assert_eq!(t.history_exit_reason, HistoryExitReason::Success);
    assert_eq!(t.gpu.vram_delta_mb, Some(50));
    assert_eq!(t.poll_limit, 25);
    assert_eq!(t.max_wait_seconds, 100.0);
    // The llm part.
    assert_eq!(m.llm.len(), 1);
    assert_eq!(m.llm[0].provider.as_deref(), Some("llm"));
    assert_eq!(m.llm[0].completion_tokens, Some(20));
    assert_eq!(
        m.system.resource_metrics.llm_response_p50_seconds,
        Some(1.5)
    );
    assert!(m.system.resource_metrics.engine_peak_rss_mb.is_some());
    assert!(m.system.fallback_notes.contains(&"llm: a note".to_owned()));
    let once: Vec<&str> = m
        .stage_attempt_summaries
        .iter()
        .map(|a| a.stage.as_str())
        .collect();
    assert_eq!(once, ["story", "validate"]);
}

#[tokio::test]
async fn a_killed_run_is_incomplete_and_its_unfinished_attempt_cancelled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = spec(tmp.path());
    let req = RunRequest {
        spec: Some(path.clone()),
        skip_services: true,
        ..Default::default()
    };
    let report = crate::run::run(req, registry(), &Interrupt::new(), vec![])
        .await
        .expect("runs");
    let dir = report.dir.clone();
    let checked = crate::spec::load(&path, None).expect("spec");
    // Cut the journal back to `validate`'s start, as a `kill -9` during it would.
    let events = dir.join(crate::rundir::EVENTS);
    let text = std::fs::read_to_string(&events).expect("journal");
    let keep: Vec<&str> = text
        .lines()
        .take_while(|l| !l.contains(r#""event":"attempt-finished","instance":"validate""#))
        .collect();
    std::fs::write(&events, format!("{}\n", keep.join("\n"))).expect("write");

    // Running (the view of the validate stage itself): its attempt is left out.
    let m = write_run(&dir, &checked).expect("writes");
    assert_eq!(m.outcome, Outcome::Incomplete);
    assert_eq!(m.ended_at, None);
    assert_eq!(m.stage_attempt_summaries.len(), 1);
    assert_eq!(
        crate::telemetry::verify::verify_run(&dir).expect("reads"),
        []
    );

    // A later session started: the attempt was killed, so it is cancelled, with no end.
    let first = keep
        .first()
        .copied()
        .unwrap_or("")
        .replace(r#""session":1"#, r#""session":2"#);
    std::fs::write(&events, format!("{}\n{first}\n", keep.join("\n"))).expect("write");
    let m = write_run(&dir, &checked).expect("writes");
    let v = m.stage_attempt_summaries.last().expect("validate");
    assert_eq!(
        (v.stage.as_str(), v.outcome, v.end),
        ("validate", AttemptOutcome::Cancelled, None)
    );
    assert_eq!(
        crate::telemetry::verify::verify_run(&dir).expect("reads"),
        []
    );
}
