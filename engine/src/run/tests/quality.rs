//! The quality stage in a run end to end: each scene's scores and the run's checks recorded in
//! the telemetry, and an enforced miss failing the stage.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::artifact_metadata::{ArtifactMetadata, METADATA_FILE};
use crate::exec::{Attempt, ExecOptions, Interrupt, RunOutcome, StageContext, StageFailure};
use crate::run::RunRequest;
use crate::spec::model::{FailureClass, QualityCheck, StageKind};
use crate::stages::output::FramesOutput;
use crate::testkit::{Scripted, SpecBuilder, Step, flat, moving_square};

/// story (scripted llm) → frames (scripted collect-frames, per scene, writing PNGs) →
/// quality (the real stage) → validate (the real stage).
fn spec(dir: &Path, enforce: bool) -> PathBuf {
    SpecBuilder::chain("q", &["story", "frames", "quality", "validate"])
        .output_dir(&dir.join("runs"))
        .scenes(2)
        .set("stages.quality", "enforce", enforce)
        .write(dir, "q.toml")
}

/// The frames of one scene instance: 25 written PNGs, scene `b`'s (item 1) black.
fn frames_step(ctx: &StageContext) -> Step {
    let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let paths = if ctx.instance.item == Some(1) {
        flat(&dir, 25, [0, 0, 0])
    } else {
        moving_square(&dir, 25)
    };
    let rel: Vec<String> = paths
        .iter()
        .map(|p| {
            p.strip_prefix(&ctx.run_dir)
                .expect("inside")
                .display()
                .to_string()
        })
        .collect();
    let frames = crate::artifact_metadata::Frames {
        count: 25,
        min_frames: 25,
        short: false,
        directory: None,
        paths: rel,
        best_attempt: Some(1),
    };
    Step::with(Attempt::output(&FramesOutput {
        render: crate::stages::output::RenderRef::new("p"),
        frames,
        frames_collected_this_attempt: 25,
        system: crate::stages::output::StageSystem::default(),
    }))
}

/// The story has two scenes, `a` and `second`; the second's frames are black.
fn scripted(second: &'static str) -> Scripted {
    Scripted::new()
        .on("story", move |_| {
            Step::ok(json!({
                "title": "T", "story_version": "1",
                "scenes": [
                    {"id": "a", "prompt": "a lighthouse keeper on a moon", "mood": "calm"},
                    {"id": second, "prompt": "dust storms over the crater", "mood": "calm"},
                ],
            }))
        })
        .otherwise(frames_step)
}

async fn run(
    enforce: bool,
    second: &'static str,
) -> (crate::exec::RunReport, ArtifactMetadata, tempfile::TempDir) {
    run_with(enforce, scripted(second)).await
}

async fn run_with(
    enforce: bool,
    scripted: Scripted,
) -> (crate::exec::RunReport, ArtifactMetadata, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let req = RunRequest {
        spec: Some(spec(tmp.path(), enforce)),
        options: ExecOptions::default(),
        skip_services: true,
        ..Default::default()
    };
    let registry = scripted.over_builtin(&[StageKind::Llm, StageKind::CollectFrames]);
    let report = crate::run::run(req, registry, &Interrupt::new(), vec![])
        .await
        .expect("runs");
    let text = std::fs::read_to_string(report.dir.join(METADATA_FILE)).expect("metadata");
    let m: ArtifactMetadata = serde_json::from_str(&text).expect("parses");
    assert_eq!(
        crate::telemetry::verify::verify_run(&report.dir).expect("reads"),
        []
    );
    (report, m, tmp)
}

#[tokio::test]
async fn a_run_records_each_scene_s_scores_and_the_run_s_checks() {
    let (report, m, _tmp) = run(false, "b").await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    let a = &m.scenes[0].quality_metrics;
    assert_eq!((a.width, a.height), (Some(64), Some(64)));
    assert_eq!(
        (a.blank_fraction, a.frozen_fraction),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(m.scenes[1].quality_metrics.blank_fraction, Some(1.0));
    let q = &m.quality_metrics;
    assert_eq!(q.passed, Some(false));
    assert_eq!(q.avg_frames_per_scene, Some(25.0));
    assert!(q.diversity_entropy.is_some_and(|d| d > 0.9), "{q:?}");
    let failed: Vec<(QualityCheck, Option<&str>)> = q
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.check, c.scene_id.as_deref()))
        .collect();
    assert_eq!(
        failed,
        [
            (QualityCheck::Blank, Some("b")),
            (QualityCheck::Frozen, Some("b"))
        ]
    );
    // Diversity is run-wide: once, not once per scene.
    let diversity = q
        .checks
        .iter()
        .filter(|c| c.check == QualityCheck::Diversity);
    assert_eq!(diversity.count(), 1);
}

#[tokio::test]
async fn an_enforced_miss_fails_the_stage_and_keeps_its_checks() {
    let (report, m, _tmp) = run(true, "b").await;
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("stages/quality/1/attempt-1.json"))
            .expect("record"),
    )
    .expect("json");
    assert_eq!(rec["failure_class"], "invalid-output", "{rec}");
    assert!(
        rec["error"]
            .as_str()
            .is_some_and(|e| e.contains("blank of scene `b`")),
        "{rec}"
    );
    assert_eq!(m.quality_metrics.passed, Some(false));
    assert!(
        m.quality_metrics
            .checks
            .iter()
            .any(|c| c.scene_id.as_deref() == Some("b"))
    );
}

#[tokio::test]
async fn a_repeated_scene_id_names_each_scene_s_checks_as_the_telemetry_does() {
    // The model gave both scenes the id `a`: the telemetry records the second as `a@2`, and
    // its failed checks must name `a@2`, not the first scene.
    let (report, m, _tmp) = run(false, "a").await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(m.scenes[1].scene_id, "a@2");
    let failed: Vec<(QualityCheck, Option<&str>)> = m
        .quality_metrics
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.check, c.scene_id.as_deref()))
        .collect();
    assert_eq!(
        failed,
        [
            (QualityCheck::Blank, Some("a@2")),
            (QualityCheck::Frozen, Some("a@2"))
        ]
    );
}

/// Scene `b`'s last frame is a small file whose header claims 200000×200000 pixels (decoding
/// it unbounded asks for 160 GB and aborts the process).
fn bomb_frames_step(ctx: &StageContext) -> Step {
    let step = frames_step(ctx);
    if ctx.instance.item == Some(1) {
        let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
        crate::testkit::write_huge_header_png(&dir.join("flat_00024_.png"), 200_000, 200_000);
    }
    step
}

#[tokio::test]
async fn a_frame_claiming_a_huge_size_leaves_a_finished_run() {
    let bomb = scripted("b").otherwise(bomb_frames_step);
    let (report, m, _tmp) = run_with(false, bomb).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert!(report.dir.join(crate::telemetry::SUMMARY_FILE).is_file());
    assert_eq!(m.scenes[1].quality_metrics.blank_fraction, Some(1.0));
    let rec: Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("stages/quality/1/attempt-1.json"))
            .expect("record"),
    )
    .expect("json");
    let notes = rec.to_string();
    assert!(
        notes.contains("flat_00024_.png") && notes.contains("cannot be decoded"),
        "{rec}"
    );
}

#[tokio::test]
async fn a_resume_scores_the_huge_frame_it_stopped_at_and_finishes() {
    // The first session stops at quality (as a process killed there would leave it); the
    // resume runs the real quality stage over the same frames and finishes the run.
    let tmp = tempfile::tempdir().expect("tempdir");
    let stopped = scripted("b")
        .on("quality", |_| {
            Step::with(Err(StageFailure::new(
                FailureClass::Interrupted,
                "stopped here",
            )))
        })
        .otherwise(bomb_frames_step);
    let first = crate::run::run(
        RunRequest {
            spec: Some(spec(tmp.path(), false)),
            skip_services: true,
            ..Default::default()
        },
        stopped.over_builtin(&[StageKind::Llm, StageKind::CollectFrames, StageKind::Quality]),
        &Interrupt::new(),
        vec![],
    )
    .await
    .expect("runs");
    assert_eq!(first.outcome, RunOutcome::Failed, "{first:?}");
    let again = crate::run::run(
        RunRequest {
            resume: Some(first.dir.clone()),
            skip_services: true,
            ..Default::default()
        },
        scripted("b").over_builtin(&[StageKind::Llm, StageKind::CollectFrames]),
        &Interrupt::new(),
        vec![],
    )
    .await
    .expect("resumes");
    assert_eq!(again.outcome, RunOutcome::Succeeded, "{again:?}");
    // The resumed session scored scene `b` for real, huge frame and all.
    let scored = std::fs::read_dir(again.dir.join("stages/quality/1"))
        .expect("instance folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("attempt-"))
        .any(|e| {
            std::fs::read_to_string(e.path())
                .is_ok_and(|t| t.contains("flat_00024_.png") && t.contains("cannot be decoded"))
        });
    assert!(
        scored,
        "no attempt record of the resumed quality stage notes the frame"
    );
    assert!(again.dir.join(METADATA_FILE).is_file());
    assert!(again.dir.join(crate::telemetry::SUMMARY_FILE).is_file());
}

/// The story is `prompts`; scene a's frames are a moving square, and so are scene b's when
/// `same_frames`, else another moving picture.
fn story_of(prompts: [&'static str; 2], same_frames: bool) -> Scripted {
    Scripted::new()
        .on("story", move |_| {
            Step::ok(json!({
                "title": "T", "story_version": "1",
                "scenes": [
                    {"id": "a", "prompt": prompts[0], "mood": "calm"},
                    {"id": "b", "prompt": prompts[1], "mood": "calm"},
                ],
            }))
        })
        .otherwise(move |ctx| {
            let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
            std::fs::create_dir_all(&dir).expect("mkdir");
            // Scene b draws another picture (a ramp with a dark bar moving down) unless the
            // story asks for the same frames in both scenes.
            let paths = if ctx.instance.item == Some(1) && !same_frames {
                (0..25u32)
                    .map(|i| {
                        let p = dir.join(format!("ramp_{i:05}_.png"));
                        crate::testkit::write_png(&p, 64, 64, |x, y| {
                            if y / 2 == i {
                                [0; 3]
                            } else {
                                [(x * 4) as u8; 3]
                            }
                        });
                        p
                    })
                    .collect()
            } else {
                moving_square(&dir, 25)
            };
            let rel: Vec<String> = paths
                .iter()
                .map(|p| {
                    let rel = p.strip_prefix(&ctx.run_dir).expect("inside");
                    rel.display().to_string()
                })
                .collect();
            Step::with(Attempt::output(&FramesOutput {
                render: crate::stages::output::RenderRef::new("p"),
                frames: crate::artifact_metadata::Frames {
                    count: 25,
                    min_frames: 25,
                    short: false,
                    directory: None,
                    paths: rel,
                    best_attempt: Some(1),
                },
                frames_collected_this_attempt: 25,
                system: crate::stages::output::StageSystem::default(),
            }))
        })
}

#[tokio::test]
async fn the_same_scene_twice_fails_diversity_and_duplicate_and_a_varied_story_passes() {
    // The demo's failure as the issue saw it: one prompt for both scenes. Themes {light,
    // world} from each scene once: 1 bit, under 2.0; each scene is 1.0 like the other.
    let same = story_of(["The light of the world", "The light of the world"], true);
    let (report, m, _tmp) = run_with(false, same).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    let q = &m.quality_metrics;
    assert_eq!(q.passed, Some(false));
    assert_eq!(q.diversity_entropy, Some(1.0));
    let failed: Vec<(QualityCheck, Option<&str>, Option<f64>)> = q
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| (c.check, c.scene_id.as_deref(), c.value))
        .collect();
    assert_eq!(
        failed,
        [
            (QualityCheck::Duplicate, Some("a"), Some(1.0)),
            (QualityCheck::Diversity, None, Some(1.0)),
            (QualityCheck::Duplicate, Some("b"), Some(1.0)),
            // Rendered alike too: the frames of one scene are the other's (distance 0 bits).
            (QualityCheck::SameFrames, Some("a"), Some(0.0)),
            (QualityCheck::SameFrames, Some("b"), Some(0.0)),
        ]
    );

    // Enforced, the same story fails the stage, naming both checks.
    let tmp = tempfile::tempdir().expect("tempdir");
    let req = RunRequest {
        spec: Some(spec(tmp.path(), true)),
        skip_services: true,
        ..Default::default()
    };
    let same = story_of(["The light of the world", "The light of the world"], true);
    let report = crate::run::run(
        req,
        same.over_builtin(&[StageKind::Llm, StageKind::CollectFrames]),
        &Interrupt::new(),
        vec![],
    )
    .await
    .expect("runs");
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    let rec = std::fs::read_to_string(report.dir.join("stages/quality/0/attempt-1.json"))
        .expect("record");
    assert!(
        rec.contains("duplicate of scene `a`: 1.000") && rec.contains("diversity: 1.000"),
        "{rec}"
    );

    // A varied story: six key themes (log2 6 bits), nothing shared.
    let varied = story_of(
        [
            "a lighthouse keeper on a moon",
            "dust storms over the crater",
        ],
        false,
    );
    let (report, m, _tmp) = run_with(true, varied).await;
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(
        m.quality_metrics.passed,
        Some(true),
        "{:?}",
        m.quality_metrics
    );
    assert_eq!(m.quality_metrics.diversity_entropy, Some(6f64.log2()));
    let same_frames = m
        .quality_metrics
        .checks
        .iter()
        .filter(|c| c.check == QualityCheck::SameFrames && c.passed);
    assert_eq!(same_frames.count(), 2);
}

#[tokio::test]
async fn checks_entries_carry_a_threshold_a_weight_and_a_metric_into_the_weighted_scores() {
    // Scene `b`'s frames are black: blank 1.0 and frozen 0.96 (24 of 25). Its entries: blank
    // raised to 1.0 (so it passes), frozen weight 3 under the metric `still`, frame-count
    // weight 0 (out of the score), diversity weight 2.
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = SpecBuilder::chain("q", &["story", "frames", "quality", "validate"])
        .output_dir(&tmp.path().join("runs"))
        .scenes(2)
        .toml(
            "stages.quality",
            r#"checks = [
                { check = "frame-count", weight = 0 },
                { check = "blank", threshold = 1.0 },
                { check = "frozen", weight = 3, metric = "still" },
                { check = "diversity", weight = 2 },
            ]"#,
        )
        .write(tmp.path(), "q.toml");
    let req = RunRequest {
        spec: Some(spec),
        skip_services: true,
        ..Default::default()
    };
    let report = crate::run::run(
        req,
        scripted("b").over_builtin(&[StageKind::Llm, StageKind::CollectFrames]),
        &Interrupt::new(),
        vec![],
    )
    .await
    .expect("runs");
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    let m: ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join(METADATA_FILE)).expect("metadata"),
    )
    .expect("parses");
    assert_eq!(
        crate::telemetry::verify::verify_run(&report.dir).expect("reads"),
        []
    );
    let q = &m.quality_metrics;
    let of = |check: QualityCheck, scene: &str| {
        q.checks
            .iter()
            .find(|c| c.check == check && c.scene_id.as_deref() == Some(scene))
            .map(|c| (c.threshold, c.passed, c.weight, c.metric.as_str()))
    };
    assert_eq!(
        of(QualityCheck::Blank, "b"),
        Some((1.0, true, 1.0, "blank"))
    );
    assert_eq!(
        of(QualityCheck::Frozen, "b"),
        Some((0.5, false, 3.0, "still"))
    );
    assert_eq!(
        of(QualityCheck::FrameCount, "b"),
        Some((25.0, true, 0.0, "frame-count"))
    );
    // Scene a: everything passed. Scene b: blank 1 of weight 1 passed, frozen 3 failed,
    // frame-count weight 0: 1 / 4.
    assert_eq!(m.scenes[0].quality_metrics.score, Some(1.0));
    assert_eq!(m.scenes[1].quality_metrics.score, Some(0.25));
    // The run: a (blank 1 + frozen 3) passed, b 1 of 4, diversity 2 passed: (4 + 1 + 2) / 10.
    assert_eq!(q.score, Some(0.7));
    assert_eq!(q.passed, Some(false));
}
