//! A realistic three-scene run, built from the types: the source of the corpus fixture
//! `tests/runs/valid/` and of the round-trip tests.

use crate::artifact_metadata::*;

fn ts(s: &str) -> Timestamp {
    #[expect(clippy::expect_used, reason = "literal timestamps of a test fixture")]
    s.parse().expect("a valid timestamp literal")
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row of the fixture's attempt table per call"
)]
fn attempt(
    stage: &str,
    n: u32,
    start: &str,
    end: &str,
    outcome: AttemptOutcome,
    failure: Option<(FailureClass, &str)>,
    flaky: bool,
    frames: Option<u32>,
) -> AttemptSummary {
    AttemptSummary {
        stage: stage.to_owned(),
        attempt: n,
        start: ts(start),
        end: Some(ts(end)),
        outcome,
        failure_class: failure.map(|f| f.0),
        error: failure.map(|f| f.1.to_owned()),
        flaky,
        frame_count: frames,
    }
}

fn frames(scene: &str, count: u32, best: u32) -> Frames {
    Frames {
        count,
        min_frames: 25,
        short: count < 25,
        directory: Some(format!("frames/{scene}")),
        paths: (1..=count)
            .map(|i| format!("frames/{scene}/{scene}_{i:05}_.png"))
            .collect(),
        best_attempt: Some(best),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one literal fixture, easier to read whole"
)]
pub fn example() -> ArtifactMetadata {
    let ok = AttemptOutcome::Success;
    let queue = QueueConfig {
        history_poll_interval_seconds: 1.0,
        post_execution_timeout_seconds: 10.0,
        ..QueueConfig::default()
    };
    let telemetry = |start: &str, end: &str, polls: u32, success_at: &str| Telemetry {
        duration_seconds: (ts(end).0 - ts(start).0)
            .total(jiff::Unit::Second)
            .unwrap_or_default(),
        queue_start: Some(ts(start)),
        queue_end: Some(ts(end)),
        history_attempts: polls,
        history_attempt_limit: queue.history_max_attempts,
        poll_limit: queue.poll_limit(),
        max_wait_seconds: queue.history_max_wait_seconds,
        poll_interval_seconds: queue.history_poll_interval_seconds,
        history_exit_reason: HistoryExitReason::Success,
        execution_success_detected: true,
        execution_success_at: Some(ts(success_at)),
        post_execution_timeout_seconds: queue.post_execution_timeout_seconds,
        history_post_execution_timeout_reached: false,
        scene_retry_budget: queue.scene_retry_budget,
        gpu: GpuTelemetry::new(
            GpuReadingSource::Nvml,
            Some("NVIDIA GeForce RTX 3090".to_owned()),
            Some(22_600),
            Some(24_000),
        ),
        done_marker_detected: true,
        done_marker_wait_seconds: Some(0.4),
        done_marker_path: None,
        forced_copy_triggered: false,
        forced_copy_debug_path: None,
        system: SceneSystem::default(),
    };
    let run = "01JCX0Q5B7WZ3M4T6R8N2K1HPD";

    let mut t1 = telemetry(
        "2025-11-13T10:00:12.5Z",
        "2025-11-13T10:00:58Z",
        45,
        "2025-11-13T10:00:57.2Z",
    );
    t1.done_marker_path = Some(format!("/srv/ComfyUI/output/{run}/scene-1.done"));

    let mut t2 = telemetry(
        "2025-11-13T10:02:40Z",
        "2025-11-13T10:03:31.25Z",
        51,
        "2025-11-13T10:03:30Z",
    );
    t2.gpu = GpuTelemetry::new(
        GpuReadingSource::NvidiaSmi,
        Some("NVIDIA GeForce RTX 3090".to_owned()),
        Some(22_610),
        Some(23_950),
    );
    t2.done_marker_wait_seconds = Some(1.1);
    t2.done_marker_path = Some(format!("/srv/ComfyUI/output/{run}/scene-2.done"));
    t2.system.fallback_notes = vec![
        "GPU readings from nvidia-smi: NVML could not be loaded (libnvidia-ml.so.1 not found)"
            .to_owned(),
    ];

    let mut t3 = telemetry(
        "2025-11-13T10:03:35Z",
        "2025-11-13T10:04:20Z",
        45,
        "2025-11-13T10:04:19Z",
    );
    t3.gpu = GpuTelemetry::none();
    t3.done_marker_detected = false;
    t3.done_marker_wait_seconds = Some(10.0);
    t3.done_marker_path = Some(format!("/srv/ComfyUI/output/{run}/scene-3.done"));
    t3.forced_copy_triggered = true;
    t3.forced_copy_debug_path = Some("scenes/scene-3/forced-copy-debug.json".to_owned());
    t3.system.fallback_notes = vec![
        "no GPU readings: NVML, /system_stats and nvidia-smi all failed".to_owned(),
        "done marker not seen within 10 s; copied the 25 frames present (forced copy)".to_owned(),
    ];

    let scene = |id: &str, prompt: &str, mood: &str, t: Telemetry| SceneRecord {
        scene_id: id.to_owned(),
        prompt: prompt.to_owned(),
        mood: mood.to_owned(),
        keyframe: None,
        outcome: Outcome::Success,
        prompt_id: None,
        server: Some("http://127.0.0.1:8188".to_owned()),
        workflow_path: Some(format!("scenes/{id}/workflow.json")),
        frames: frames(id, 25, 1),
        quality_metrics: SceneQualityMetrics {
            width: Some(512),
            height: Some(512),
            blank_fraction: Some(0.0),
            frozen_fraction: Some(0.04),
            alignment: Some(0.81),
            score: None,
        },
        scene_attempt_summaries: Vec::new(),
        telemetry: t,
    };

    let mut s1 = scene(
        "scene-1",
        "A derelict orbital station drifts over a red planet, emergency lights pulsing",
        "tense",
        t1,
    );
    s1.keyframe = Some("keyframes/station.png".to_owned());
    s1.prompt_id = Some("5f0c7e0a-3b1d-4f39-9a52-8c7f3f1f2a11".to_owned());
    s1.scene_attempt_summaries = vec![
        attempt(
            "patch",
            1,
            "2025-11-13T10:00:12Z",
            "2025-11-13T10:00:12.4Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "render",
            1,
            "2025-11-13T10:00:12.5Z",
            "2025-11-13T10:00:58Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "marker",
            1,
            "2025-11-13T10:00:58Z",
            "2025-11-13T10:00:58.4Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "frames",
            1,
            "2025-11-13T10:00:58.4Z",
            "2025-11-13T10:01:04Z",
            ok,
            None,
            false,
            Some(25),
        ),
    ];

    let mut s2 = scene(
        "scene-2",
        "Inside the station a lone engineer floats toward a flickering reactor core",
        "anxious",
        t2,
    );
    s2.prompt_id = Some("9d2b61c4-77e0-4e8a-b0f3-2e6c5d4a7b90".to_owned());
    s2.frames = frames("scene-2", 25, 2);
    // Its one check (frame-count) passed: a weighted score of 1.
    s2.quality_metrics.score = Some(1.0);
    s2.scene_attempt_summaries = vec![
        attempt(
            "patch",
            1,
            "2025-11-13T10:01:04Z",
            "2025-11-13T10:01:04.3Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "render",
            1,
            "2025-11-13T10:01:04.3Z",
            "2025-11-13T10:01:51Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "marker",
            1,
            "2025-11-13T10:01:51Z",
            "2025-11-13T10:01:52Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "frames",
            1,
            "2025-11-13T10:01:52Z",
            "2025-11-13T10:02:40Z",
            AttemptOutcome::Failed,
            Some((
                FailureClass::ShortFrames,
                "12 frames, fewer than min_frames 25; requeued to render",
            )),
            false,
            Some(12),
        ),
        attempt(
            "render",
            2,
            "2025-11-13T10:02:40Z",
            "2025-11-13T10:03:31.25Z",
            ok,
            None,
            true,
            None,
        ),
        attempt(
            "marker",
            2,
            "2025-11-13T10:03:31.25Z",
            "2025-11-13T10:03:32.35Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "frames",
            2,
            "2025-11-13T10:03:32.35Z",
            "2025-11-13T10:03:35Z",
            ok,
            None,
            true,
            Some(25),
        ),
    ];

    let mut s3 = scene(
        "scene-3",
        "The core stabilises and the station's windows fill with dawn light",
        "hopeful",
        t3,
    );
    s3.prompt_id = Some("c4a1e9f2-0d6b-4c3e-8f7a-1b2d3e4f5a6b".to_owned());
    s3.quality_metrics.alignment = Some(0.77);
    s3.scene_attempt_summaries = vec![
        attempt(
            "patch",
            1,
            "2025-11-13T10:03:34.8Z",
            "2025-11-13T10:03:35Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "render",
            1,
            "2025-11-13T10:03:35Z",
            "2025-11-13T10:04:20Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "marker",
            1,
            "2025-11-13T10:04:20Z",
            "2025-11-13T10:04:30Z",
            ok,
            None,
            false,
            None,
        ),
        attempt(
            "frames",
            1,
            "2025-11-13T10:04:30Z",
            "2025-11-13T10:04:36Z",
            ok,
            None,
            false,
            Some(25),
        ),
    ];

    ArtifactMetadata {
        contract_version: CONTRACT_VERSION,
        run_id: run.to_owned(),
        run_name: "story-to-video".to_owned(),
        profile: "fast".to_owned(),
        started_at: ts("2025-11-13T09:59:30Z"),
        ended_at: Some(ts("2025-11-13T10:04:41Z")),
        outcome: Outcome::Success,
        story: Some(StoryInfo {
            title: "Dawn over Kepler Station".to_owned(),
            story_version: "1".to_owned(),
        }),
        queue_config: queue,
        llm: vec![LlmTelemetry {
            stage: "story".to_owned(),
            provider: Some("ollama".to_owned()),
            model: Some("qwen2.5:0.5b-instruct".to_owned()),
            health: LlmHealth::Reachable,
            providers_tried: vec!["lmstudio".to_owned(), "ollama".to_owned()],
            fallback_used: true,
            response_time_seconds: Some(38.5),
            prompt_tokens: Some(412),
            completion_tokens: Some(655),
            tokens_per_second: Some(17.01),
            finish_reason: Some("stop".to_owned()),
            cache_hit: false,
            error: None,
        }],
        scenes: vec![s1, s2, s3],
        stage_attempt_summaries: vec![
            attempt(
                "story",
                1,
                "2025-11-13T09:59:31Z",
                "2025-11-13T10:00:11.9Z",
                ok,
                None,
                false,
                None,
            ),
            attempt(
                "quality",
                1,
                "2025-11-13T10:04:36Z",
                "2025-11-13T10:04:40Z",
                ok,
                None,
                false,
                None,
            ),
            attempt(
                "validate",
                1,
                "2025-11-13T10:04:40Z",
                "2025-11-13T10:04:41Z",
                ok,
                None,
                false,
                None,
            ),
        ],
        quality_metrics: QualityMetrics {
            passed: Some(true),
            narrative_coherence: Some(4.2),
            diversity_entropy: Some(2.32),
            semantic_alignment: Some(0.8),
            avg_frames_per_scene: Some(25.0),
            zero_frame_scenes: 0,
            short_scenes: 0,
            done_marker_detection_rate: Some(0.667),
            p95_scene_seconds: Some(51.25),
            score: Some(1.0),
            checks: vec![
                QualityCheckResult {
                    check: QualityCheck::FrameCount,
                    scene_id: Some("scene-2".to_owned()),
                    value: Some(25.0),
                    threshold: 25.0,
                    passed: true,
                    weight: 1.0,
                    metric: "frame-count".to_owned(),
                    advisory: false,
                },
                QualityCheckResult {
                    check: QualityCheck::Diversity,
                    scene_id: None,
                    value: Some(2.32),
                    threshold: 2.0,
                    passed: true,
                    weight: 2.0,
                    metric: "theme-diversity".to_owned(),
                    advisory: false,
                },
                QualityCheckResult {
                    check: QualityCheck::Coherence,
                    scene_id: None,
                    value: Some(4.2),
                    threshold: 4.0,
                    passed: true,
                    weight: 1.0,
                    metric: "coherence".to_owned(),
                    advisory: true,
                },
            ],
        },
        system: RunSystem {
            resource_metrics: ResourceMetrics {
                gpu_utilization_percent: Some(71.5),
                peak_vram_used_mb: Some(24_000),
                max_queue_depth: Some(1),
                llm_response_p50_seconds: Some(38.5),
                llm_response_p95_seconds: Some(38.5),
                engine_peak_rss_mb: Some(23),
                samples: vec![
                    ResourceSample {
                        at: ts("2025-11-13T10:00:30Z"),
                        gpu_utilization_percent: Some(93.0),
                        vram_used_mb: Some(23_410),
                        queue_depth: Some(1),
                    },
                    ResourceSample {
                        at: ts("2025-11-13T10:04:00Z"),
                        gpu_utilization_percent: None,
                        vram_used_mb: None,
                        queue_depth: Some(1),
                    },
                ],
            },
            fallback_notes: vec![
                "LLM service `lmstudio` failed its health check (connection refused); used `ollama`"
                    .to_owned(),
            ],
        },
        feedback: vec![Feedback {
            scene_id: Some("scene-2".to_owned()),
            rating: 4,
            comment: Some("good motion, slightly dark".to_owned()),
            author: None,
            submitted_at: ts("2025-11-13T11:20:00Z"),
        }],
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::example;
    use crate::telemetry::{ArtifactMetadata, METADATA_FILE, SUMMARY_FILE, Summary, write_summary};

    fn metadata_json(m: &ArtifactMetadata) -> String {
        let mut s = serde_json::to_string_pretty(m).expect("serialises");
        s.push('\n');
        s
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let m = example();
        let back: ArtifactMetadata =
            serde_json::from_str(&metadata_json(&m)).expect("deserialises");
        assert_eq!(back, m);
    }

    #[test]
    fn summary_written_then_parsed_is_equal() {
        let m = example();
        let summary = Summary::from_metadata(&m);
        assert_eq!(Summary::parse(&write_summary(&m)), Ok(summary));
    }

    #[test]
    fn written_run_verifies_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = example();
        crate::fsutil::write_atomic(
            &dir.path().join(METADATA_FILE),
            metadata_json(&m).as_bytes(),
        )
        .expect("write");
        crate::fsutil::write_atomic(&dir.path().join(SUMMARY_FILE), write_summary(&m).as_bytes())
            .expect("write");
        let violations = crate::telemetry::verify::verify_run(dir.path()).expect("readable");
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// The corpus's valid run is this example, written by the writer. Set
    /// `CINEPIPE_UPDATE_FIXTURES=1` to rewrite it after changing the types.
    #[test]
    fn corpus_fixture_is_the_example() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/runs/valid");
        let m = example();
        let files = [
            (METADATA_FILE, metadata_json(&m)),
            (SUMMARY_FILE, write_summary(&m)),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            if std::env::var_os("CINEPIPE_UPDATE_FIXTURES").is_some() {
                std::fs::create_dir_all(&dir).expect("mkdir");
                crate::fsutil::write_atomic(&path, text.as_bytes()).expect("write");
            }
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} is not what the example writes; rerun with CINEPIPE_UPDATE_FIXTURES=1",
                path.display()
            );
        }
    }
}
