//! The quality stage over real renders: a scripted story, then the real patch, queue, marker,
//! frames and quality stages on the harness's ComfyUI with the project's `SceneCardFrames`
//! node (`workflows/model-free/scene-card-done-marker.json`). The same scene twice fails the
//! text checks and the cross-scene frame check; a varied story's frames differ and pass.

use std::path::Path;

use cinepipe::exec::{ExecOptions, Interrupt, RunOutcome};
use cinepipe::run::RunRequest;
use cinepipe::spec::model::{QualityCheck, StageKind};
use cinepipe::telemetry::ArtifactMetadata;
use cinepipe::testkit::{Scripted, SpecBuilder, Step};
use serde_json::json;

use crate::harness::{self, Server};

/// Runs the two-scene story `scenes` ((prompt, mood) each) through the real stages.
fn run(server: &Server, out: &Path, scenes: [(&'static str, &'static str); 2]) -> ArtifactMetadata {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = SpecBuilder::chain(
        "quality-render",
        &["story", "patch", "render", "marker", "frames", "quality"],
    )
    .output_dir(&tmp.path().join("runs"))
    .comfy_urls(&[&server.url])
    .set("services.comfy", "output_dir", out.display().to_string())
    .set(
        "stages.patch",
        "workflow",
        "workflows/model-free/scene-card-done-marker.json",
    )
    .set(
        "stages.patch",
        "set",
        json!({
            "save.filename_prefix": "{{prefix}}",
            "card.text": "{{scene.prompt}}",
            "card.mood": "{{scene.mood}}",
        }),
    )
    .set("stages.marker", "timeout_s", 60)
    .write(tmp.path(), "q.toml");
    let scripted = Scripted::new().on("story", move |_| {
        Step::ok(json!({
            "title": "T", "story_version": "1",
            "scenes": [
                {"id": "one", "prompt": scenes[0].0, "mood": scenes[0].1},
                {"id": "two", "prompt": scenes[1].0, "mood": scenes[1].1},
            ],
        }))
    });
    let req = RunRequest {
        spec: Some(spec),
        options: ExecOptions::default(),
        skip_services: true,
        ..Default::default()
    };
    let registry = scripted.over_builtin(&[StageKind::Llm]);
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(cinepipe::run::run(req, registry, &Interrupt::new(), vec![]))
        .expect("runs");
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(
        cinepipe::verify::verify_run(&report.dir).expect("reads"),
        []
    );
    let text = std::fs::read_to_string(report.dir.join(cinepipe::telemetry::METADATA_FILE))
        .expect("metadata");
    serde_json::from_str(&text).expect("parses")
}

/// Each check of `check`'s kind: (scene, value, passed).
fn verdicts(m: &ArtifactMetadata, check: QualityCheck) -> Vec<(Option<String>, Option<f64>, bool)> {
    m.quality_metrics
        .checks
        .iter()
        .filter(|c| c.check == check)
        .map(|c| (c.scene_id.clone(), c.value, c.passed))
        .collect()
}

#[test]
fn the_same_scene_rendered_twice_fails_and_a_varied_story_s_frames_differ() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    // The issue's failure: the model wrote one scene twice.
    let same = ("The light of the world", "calm");
    let m = run(server, out, [same, same]);
    for s in &m.scenes {
        let q = &s.quality_metrics;
        // The scene cards: 256×144, never blank, never frozen (the disc moves).
        assert_eq!((q.width, q.height), (Some(256), Some(144)), "{q:?}");
        assert_eq!(
            (q.blank_fraction, q.frozen_fraction),
            (Some(0.0), Some(0.0))
        );
    }
    let one = Some("one".to_owned());
    let two = Some("two".to_owned());
    assert_eq!(
        verdicts(&m, QualityCheck::SameFrames),
        [
            (one.clone(), Some(0.0), false),
            (two.clone(), Some(0.0), false)
        ]
    );
    assert_eq!(
        verdicts(&m, QualityCheck::Diversity),
        [(None, Some(1.0), false)]
    );
    assert_eq!(
        verdicts(&m, QualityCheck::Duplicate),
        [
            (one.clone(), Some(1.0), false),
            (two.clone(), Some(1.0), false)
        ]
    );
    assert_eq!(m.quality_metrics.passed, Some(false));

    // A varied story: other words, another mood; every check passes and the frames differ.
    let m = run(
        server,
        out,
        [
            ("A lighthouse keeper climbs the stairs on a moon", "calm"),
            ("Dust storms sweep over the crater at night", "tense"),
        ],
    );
    let frames = verdicts(&m, QualityCheck::SameFrames);
    assert_eq!(frames.len(), 2, "{frames:?}");
    for (scene, value, passed) in &frames {
        assert!(*passed, "{scene:?}: {value:?}");
        assert!(value.is_some_and(|v| v >= 0.5), "{scene:?}: {value:?}");
    }
    assert!(
        m.quality_metrics.checks.iter().all(|c| c.passed),
        "{:?}",
        m.quality_metrics.checks
    );
    assert_eq!(m.quality_metrics.passed, Some(true));
    assert_eq!(m.quality_metrics.score, Some(1.0));
}

const KEEPER: [&str; 2] = [
    "A lighthouse keeper on the moon climbs to the lamp at dusk",
    "The keeper lights the lamp and a lost ship turns toward it",
];

/// story (scripted) → frames (scripted: a moving square per scene) → quality with only the
/// `coherence` check (advisory), judged by the `openai` service at `base_url`.
fn judge_run(base_url: &str, model: &str) -> (ArtifactMetadata, serde_json::Value) {
    let quality = r#"checks = [{ check = "coherence", advisory = true }]
judge_service = "llm"
retry = { budget = 1 }"#;
    scripted_run(base_url, model, quality, KEEPER)
}

/// story (scripted: `prompts`) → frames (scripted: a moving square per scene) → quality as
/// `quality` says, with the `openai` service `llm` at `base_url` serving `model`.
fn scripted_run(
    base_url: &str,
    model: &str,
    quality: &str,
    prompts: [&'static str; 2],
) -> (ArtifactMetadata, serde_json::Value) {
    scripted_run_with(base_url, model, quality, prompts, "")
}

/// [`scripted_run`] with `story` (TOML) set in the story stage.
fn scripted_run_with(
    base_url: &str,
    model: &str,
    quality: &str,
    prompts: [&'static str; 2],
    story: &str,
) -> (ArtifactMetadata, serde_json::Value) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = SpecBuilder::chain("judge", &["story", "frames", "quality"])
        .output_dir(&tmp.path().join("runs"))
        .service("llm", cinepipe::testkit::openai(base_url))
        .set("services.llm", "model", model)
        .set("services.llm", "timeout_s", 300)
        .toml("stages.quality", quality)
        .toml("stages.story", story)
        .write(tmp.path(), "judge.toml");
    let scripted = Scripted::new()
        .on("story", move |_| {
            Step::ok(json!({
                "title": "T", "story_version": "1",
                "scenes": [
                    {"id": "one", "prompt": prompts[0], "mood": "calm"},
                    {"id": "two", "prompt": prompts[1], "mood": "hopeful"},
                ],
            }))
        })
        .otherwise(|ctx| {
            let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
            std::fs::create_dir_all(&dir).expect("mkdir");
            let paths: Vec<String> = cinepipe::testkit::moving_square(&dir, 25)
                .iter()
                .map(|p| {
                    let rel = p.strip_prefix(&ctx.run_dir).expect("inside");
                    rel.display().to_string()
                })
                .collect();
            Step::ok(json!({
                "prefix": "p",
                "Frames": {"Count": 25, "MinFrames": 25, "Short": false, "Directory": null,
                           "Paths": paths, "BestAttempt": 1},
                "FramesCollectedThisAttempt": 25,
                "System": {"FallbackNotes": []},
            }))
        });
    let req = RunRequest {
        spec: Some(spec),
        options: ExecOptions::default(),
        skip_services: true,
        ..Default::default()
    };
    let registry = scripted.over_builtin(&[StageKind::Llm, StageKind::CollectFrames]);
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(cinepipe::run::run(req, registry, &Interrupt::new(), vec![]))
        .expect("runs");
    // Advisory: whatever the grade, the stage and the run succeed.
    assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
    assert_eq!(
        cinepipe::verify::verify_run(&report.dir).expect("reads"),
        []
    );
    let m: ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join(cinepipe::telemetry::METADATA_FILE))
            .expect("metadata"),
    )
    .expect("parses");
    let out: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("stages/quality/0/output.json")).expect("output"),
    )
    .expect("json");
    (m, out)
}

#[test]
fn the_judge_grades_coherence_on_the_real_llm_server_by_its_logprobs() {
    let Some(server) = harness::llm() else {
        return;
    };
    let (m, out) = judge_run(&server.url, &server.model);
    let rec = &out["coherence"];
    // llama.cpp's server gives `top_logprobs`: the G-Eval mean over the grade distribution.
    assert_eq!(rec["method"], "logprobs", "{out:#}");
    assert_eq!(rec["model"], server.model.as_str());
    assert_eq!(rec["rubric"], "prompts/judge/v1/coherence.hbs");
    assert_eq!(rec["rubric_version"], "1.0.0");
    assert_eq!(rec["requests"], 1, "{rec}");
    let p: Vec<f64> = serde_json::from_value(rec["distribution"].clone()).expect("five numbers");
    assert_eq!(p.len(), 5);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{p:?}");
    let mean: f64 = p
        .iter()
        .enumerate()
        .map(|(i, x)| (i as f64 + 1.0) * x)
        .sum();
    let coherence = m.quality_metrics.narrative_coherence.expect("graded");
    assert!((coherence - mean).abs() < 1e-9, "{coherence} vs {p:?}");
    assert!((1.0..=5.0).contains(&coherence));
    assert!(rec["reason"].is_string(), "{rec}");
    let check = m
        .quality_metrics
        .checks
        .iter()
        .find(|c| c.check == QualityCheck::Coherence)
        .expect("the check");
    assert_eq!(check.value, Some(coherence));
    assert_eq!((check.threshold, check.advisory), (4.0, true));
}

/// A server that answers every chat request with text that is not `{score, reason}`, counting
/// the requests: the judge's fault case, made on purpose.
fn unparsable_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read the headers and the body (Content-Length) of one request.
            loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = json!({
                "model": "broken",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "I think it is quite good."}}],
            })
            .to_string();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, count)
}

#[test]
fn an_unparsable_judge_is_asked_again_within_the_budget_then_recorded_null() {
    let (url, count) = unparsable_server();
    let (m, out) = judge_run(&url, "broken");
    // Budget 1: the first answer and one retry, then null with a note, never a guess.
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(m.quality_metrics.narrative_coherence, None);
    let rec = &out["coherence"];
    assert_eq!(
        (rec["requests"].as_u64(), rec["method"].is_null()),
        (Some(2), true),
        "{rec}"
    );
    let notes = out["notes"].to_string();
    assert!(notes.contains("is not {score: 1-5, reason}"), "{notes}");
    assert!(notes.contains("coherence not measured"), "{notes}");
    let check = m
        .quality_metrics
        .checks
        .iter()
        .find(|c| c.check == QualityCheck::Coherence)
        .expect("the check");
    assert_eq!(
        (check.value, check.passed, check.advisory),
        (None, false, true)
    );
    // Advisory: a null grade does not fail the run's verdict.
    assert_eq!(m.quality_metrics.passed, Some(true));
}

#[test]
fn alignment_and_duplicates_by_a_real_embedding_model() {
    let Some(server) = harness::embeddings() else {
        return;
    };
    let quality = r#"checks = ["alignment", "duplicate"]
embedding_service = "llm""#;
    // all-MiniLM-L6-v2 on llama.cpp's server: two scenes of one story are related, not alike;
    // each is aligned with the story's premise.
    let premise =
        r#"vars = { scenes = 2, tone = "calm", premise = "a lighthouse keeper on the moon" }"#;
    let (m, out) = scripted_run_with(&server.url, &server.model, quality, KEEPER, premise);
    let notes = out["notes"].to_string();
    assert!(
        !notes.contains("not measured") && !notes.contains("failed"),
        "{notes}"
    );
    assert!(!notes.contains("whole story"), "{notes}");
    let q = &m.quality_metrics;
    let of = |check: QualityCheck| -> Vec<(Option<f64>, bool)> {
        q.checks
            .iter()
            .filter(|c| c.check == check)
            .map(|c| (c.value, c.passed))
            .collect()
    };
    let duplicate = of(QualityCheck::Duplicate);
    assert_eq!(duplicate.len(), 2, "{q:?}");
    for (value, passed) in &duplicate {
        // Held to the embedding threshold (0.9), not the lexical one.
        let v = value.expect("measured");
        assert!(v > 0.2 && v < 0.9 && *passed, "{v}");
    }
    assert!(
        q.checks
            .iter()
            .filter(|c| c.check == QualityCheck::Duplicate)
            .all(|c| c.threshold == 0.9)
    );
    let alignment = of(QualityCheck::Alignment);
    assert_eq!(alignment.len(), 2, "{q:?}");
    for (value, _) in &alignment {
        assert!(value.is_some_and(|v| (0.3..=1.0).contains(&v)), "{value:?}");
    }
    assert!(q.semantic_alignment.is_some());
    // A scene about something else is far from the premise.
    let (m, _) = scripted_run_with(
        &server.url,
        &server.model,
        "checks = [\"alignment\"]\nembedding_service = \"llm\"",
        [KEEPER[0], "Quarterly sales figures rise in the spreadsheet"],
        premise,
    );
    let values: Vec<f64> = m
        .quality_metrics
        .checks
        .iter()
        .filter_map(|c| c.value)
        .collect();
    assert_eq!(values.len(), 2, "{:?}", m.quality_metrics);
    assert!(values[0] > values[1] + 0.3, "{values:?}");
    assert!(values[1] < 0.75, "{values:?}");

    // One scene twice: the embeddings are the same, cosine 1, a duplicate.
    let (m, _) = scripted_run(&server.url, &server.model, quality, [KEEPER[0], KEEPER[0]]);
    for c in m
        .quality_metrics
        .checks
        .iter()
        .filter(|c| c.check == QualityCheck::Duplicate)
    {
        assert!(c.value.is_some_and(|v| v > 0.999) && !c.passed, "{c:?}");
    }
}
