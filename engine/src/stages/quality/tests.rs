//! Tests of the quality stage: frame scores, diversity, and `enforce` over a scripted run.

use std::path::{Path, PathBuf};

use super::*;
use crate::exec::{ExecOptions, Interrupt, RunOutcome, RunRequest};
use crate::spec::model::QualityThresholds;
use crate::telemetry::{ArtifactMetadata, METADATA_FILE};
use crate::testkit::{Scripted, SpecBuilder, Step};

/// Writes an 8-bit RGB PNG of `w`×`h` filled by `pixel(x, y)`.
fn write_png(path: &Path, w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) {
    let file = std::fs::File::create(path).expect("create");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().expect("header");
    let data: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| pixel(x, y))
        .collect();
    writer.write_image_data(&data).expect("data");
}

/// The demo's frames: a 16×16 square moving over a 64×64 background.
fn moving_square(dir: &Path, n: u32) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("frame_{i:05}_.png"));
            let (sx, sy) = (2 * i, 8 + i);
            write_png(&p, 64, 64, |x, y| {
                if (sx..sx + 16).contains(&x) && (sy..sy + 16).contains(&y) {
                    [240, 192, 32]
                } else {
                    [48, 80, 112]
                }
            });
            p
        })
        .collect()
}

fn flat(dir: &Path, n: u32, colour: [u8; 3]) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("flat_{i:05}_.png"));
            write_png(&p, 64, 64, |_, _| colour);
            p
        })
        .collect()
}

#[test]
fn a_moving_square_is_neither_blank_nor_frozen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = analyse(&moving_square(tmp.path(), 25));
    assert_eq!(s.count, 25);
    assert_eq!(s.size, Some((64, 64)));
    assert_eq!((s.blank, s.frozen), (0, 0), "{s:?}");
    assert!(s.notes.is_empty());
}

#[test]
fn all_black_frames_are_blank_and_identical_frames_frozen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = analyse(&flat(tmp.path(), 10, [0, 0, 0]));
    assert_eq!(s.blank_fraction(), Some(1.0));
    // Every frame after the first repeats the one before.
    assert_eq!(s.frozen_fraction(), Some(0.9));
}

#[test]
fn a_repeated_non_blank_frame_is_frozen_but_not_blank() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = moving_square(tmp.path(), 1).remove(0);
    let s = analyse(&vec![one; 4]);
    assert_eq!((s.blank, s.frozen), (0, 3));
}

#[test]
fn the_blank_rule_tolerates_noise_and_a_few_odd_pixels() {
    // Dark noise of a few levels is still a black frame.
    let noisy: Vec<u8> = (0..1000u32).map(|i| (i % 5) as u8).collect();
    assert!(is_blank(&noisy, 1));
    // 1% odd pixels: still blank; 2%: not.
    let mut px = vec![0u8; 1000];
    px[..10].fill(255);
    assert!(is_blank(&px, 1));
    px[..20].fill(255);
    assert!(!is_blank(&px, 1));
}

#[test]
fn a_frame_that_is_not_a_png_counts_as_blank_with_a_note() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("bad.png");
    std::fs::write(&p, b"not a png").expect("write");
    let s = analyse(&[p]);
    assert_eq!((s.count, s.blank, s.size), (1, 1, None));
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
}

/// CRC-32 (the PNG chunk checksum), bit by bit: enough for the few bytes of a test header.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG of a few dozen bytes whose header claims `w`×`h` pixels: a 1×1 image with its IHDR
/// size rewritten (and the chunk's CRC with it), as a hostile or broken writer could leave.
fn write_huge_header_png(path: &Path, w: u32, h: u32) {
    let tmp = path.with_extension("small.png");
    write_png(&tmp, 1, 1, |_, _| [1, 2, 3]);
    let mut bytes = std::fs::read(&tmp).expect("read");
    std::fs::remove_file(&tmp).expect("rm");
    // Signature (8), IHDR length (4) and type (4), then width and height; the CRC covers the
    // type and the 13 data bytes.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(path, &bytes).expect("write");
}

#[test]
fn a_frame_claiming_200000_by_200000_pixels_is_not_decoded_and_counts_as_blank() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("huge.png");
    write_huge_header_png(&p, 200_000, 200_000);
    assert!(std::fs::metadata(&p).expect("stat").len() < 1024);
    let s = analyse(&[p]);
    assert_eq!((s.count, s.blank, s.size), (1, 1, None));
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("cannot be decoded")
            && s.notes[0].contains("200000×200000")
            && s.notes[0].contains(&MAX_FRAME_PIXELS.to_string()),
        "{:?}",
        s.notes
    );
}

#[test]
fn a_frame_at_the_pixel_limit_is_read_past_its_header() {
    // 7680×4320 is within the limit: the decoder gets past the size check and fails only on
    // the missing pixel data, which is what shows the limit is not set below 8K.
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("eight-k.png");
    write_huge_header_png(&p, 7680, 4320);
    let s = analyse(&[p]);
    assert_eq!(s.blank, 1);
    assert!(!s.notes[0].contains("over the limit"), "{:?}", s.notes);
}

#[test]
fn a_noisy_frame_stops_the_blank_count_early_and_is_not_blank() {
    // Every pixel distinct: far more values than a blank frame can have.
    let px: Vec<u8> = (0..300u32 * 300)
        .flat_map(|i| i.to_le_bytes()[..3].to_vec())
        .collect();
    assert!(!is_blank(&px, 3));
}

fn checks_all() -> Vec<QualityCheck> {
    vec![
        QualityCheck::FrameCount,
        QualityCheck::Resolution,
        QualityCheck::Blank,
        QualityCheck::Frozen,
    ]
}

fn scene(dir: &Path, paths: &[PathBuf]) -> SceneInput {
    SceneInput {
        id: "s1".into(),
        prompt: "p".into(),
        frames: paths
            .iter()
            .map(|p| p.strip_prefix(dir).expect("inside").display().to_string())
            .collect(),
    }
}

fn verdicts(s: &SceneScore) -> Vec<(QualityCheck, Option<f64>, bool)> {
    s.checks
        .iter()
        .map(|c| (c.check, c.value, c.passed))
        .collect()
}

#[test]
fn thresholds_pass_the_demo_frames_and_fail_broken_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = QualityThresholds::default();
    let good = moving_square(tmp.path(), 25);
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &good),
        &checks_all(),
        &t,
        None,
    );
    assert_eq!(
        verdicts(&s),
        [
            (QualityCheck::FrameCount, Some(25.0), true),
            (QualityCheck::Resolution, Some(1.0), true),
            (QualityCheck::Blank, Some(0.0), true),
            (QualityCheck::Frozen, Some(0.0), true),
        ]
    );
    assert_eq!(s.metrics.width, Some(64));

    let black = flat(tmp.path(), 30, [0, 0, 0]);
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &black),
        &checks_all(),
        &t,
        None,
    );
    let failed: Vec<QualityCheck> = s
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check)
        .collect();
    assert_eq!(failed, [QualityCheck::Blank, QualityCheck::Frozen]);

    // No frames: the count fails, the rest cannot be measured and so do not pass.
    let s = score_frames(tmp.path(), &scene(tmp.path(), &[]), &checks_all(), &t, None);
    assert_eq!(
        verdicts(&s),
        [
            (QualityCheck::FrameCount, Some(0.0), false),
            (QualityCheck::Resolution, None, false),
            (QualityCheck::Blank, None, false),
            (QualityCheck::Frozen, None, false),
        ]
    );
    assert!(
        s.notes.iter().any(|n| n.contains("no frames")),
        "{:?}",
        s.notes
    );

    // Too small for a raised floor.
    let t = QualityThresholds {
        min_width: 128,
        ..QualityThresholds::default()
    };
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &good),
        &[QualityCheck::Resolution],
        &t,
        None,
    );
    assert_eq!(verdicts(&s), [(QualityCheck::Resolution, Some(0.5), false)]);
}

#[test]
fn diversity_is_normalised_word_entropy() {
    assert_eq!(diversity(&["lighthouse keeper", "moon dust"]), Some(1.0));
    // "the" and "of" are stop words: light, world twice each.
    let d = diversity(&["The Light of the World", "The Light of the World"]).expect("d");
    assert!((d - 0.5).abs() < 1e-9, "{d}");
    assert_eq!(diversity(&["moon moon moon moon"]), Some(0.0));
    assert_eq!(diversity(&["moon", "of the"]), None);
}

#[test]
fn cosine_of_vectors() {
    assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]), Some(1.0));
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), Some(0.0));
    assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
    assert_eq!(cosine(&[0.0], &[1.0]), None);
}

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
    let frames = crate::telemetry::Frames {
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

/// The story has two scenes; scene `b`'s frames are black.
fn scripted() -> Scripted {
    Scripted::new()
        .on("story", story_step)
        .otherwise(frames_step)
}

fn story_step(_: &StageContext) -> Step {
    Step::ok(json!({
        "title": "T", "story_version": "1",
        "scenes": [
            {"id": "a", "prompt": "a lighthouse keeper on a moon", "mood": "calm"},
            {"id": "b", "prompt": "dust storms over the crater", "mood": "calm"},
        ],
    }))
}

async fn run(enforce: bool) -> (crate::exec::RunReport, ArtifactMetadata, tempfile::TempDir) {
    run_with(enforce, scripted()).await
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
    let report = crate::exec::run(req, registry, &Interrupt::new(), vec![])
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
    let (report, m, _tmp) = run(false).await;
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
    let (report, m, _tmp) = run(true).await;
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

/// Scene `b`'s last frame is a small file whose header claims 200000×200000 pixels (decoding
/// it unbounded asks for 160 GB and aborts the process).
fn bomb_frames_step(ctx: &StageContext) -> Step {
    let step = frames_step(ctx);
    if ctx.instance.item == Some(1) {
        let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
        write_huge_header_png(&dir.join("flat_00024_.png"), 200_000, 200_000);
    }
    step
}

#[tokio::test]
async fn a_frame_claiming_a_huge_size_leaves_a_finished_run() {
    let bomb = Scripted::new()
        .on("story", story_step)
        .otherwise(bomb_frames_step);
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
    let stopped = Scripted::new()
        .on("story", story_step)
        .on("quality", |_| {
            Step::with(Err(StageFailure::new(
                FailureClass::Interrupted,
                "stopped here",
            )))
        })
        .otherwise(bomb_frames_step);
    let first = crate::exec::run(
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
    let again = crate::exec::run(
        RunRequest {
            resume: Some(first.dir.clone()),
            skip_services: true,
            ..Default::default()
        },
        scripted().over_builtin(&[StageKind::Llm, StageKind::CollectFrames]),
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
