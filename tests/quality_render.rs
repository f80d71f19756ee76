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
    // The failure: the model wrote one scene twice.
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
