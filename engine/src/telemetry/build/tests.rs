//! Tests of building the telemetry from a run folder: stage parts that do not fit (scripted runs
//! end to end are in `run/tests/telemetry.rs`).

use serde_json::json;

use super::*;

#[test]
fn an_output_that_is_not_its_kinds_type_is_left_out_with_a_note() {
    let q = QueueConfig::default();
    let scene = SceneRecord {
        scene_id: "s".into(),
        prompt: String::new(),
        mood: String::new(),
        keyframe: None,
        outcome: Outcome::Success,
        prompt_id: None,
        server: None,
        workflow_path: None,
        frames: Frames {
            count: 0,
            min_frames: 0,
            short: false,
            directory: None,
            paths: vec![],
            best_attempt: None,
        },
        quality_metrics: SceneQualityMetrics::default(),
        scene_attempt_summaries: vec![],
        telemetry: never_queued(&q, vec![]),
    };
    let id = InstanceId::new("render", Some(0));
    let mut bad = scene.clone();
    let mut notes = Vec::new();
    parts::scene_part(
        &mut bad,
        StageKind::Queue,
        &id,
        json!({"telemetry": {"HistoryExitReason": "timeout"}}),
        &mut notes,
    );
    assert_eq!(
        bad.telemetry.history_exit_reason,
        HistoryExitReason::Unknown
    );
    assert_eq!(bad.telemetry.system.fallback_notes.len(), 1);
    assert!(
        bad.telemetry.system.fallback_notes[0].starts_with("telemetry of `render[0]` left out")
    );
    // A kind that reports no scene telemetry changes nothing, whatever its output holds.
    let mut same = scene.clone();
    parts::scene_part(
        &mut same,
        StageKind::PatchWorkflow,
        &id,
        json!({"SceneId": "x", "Outcome": "failed"}),
        &mut notes,
    );
    assert_eq!(same, scene);
    assert!(notes.is_empty());
}
