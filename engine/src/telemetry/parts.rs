//! How each stage kind's typed output goes into the telemetry contract's types: the one place
//! a kind's output is mapped onto a scene's record or the run's.

use serde_json::Value;

use crate::artifact_metadata::{QualityMetrics, SceneRecord, Telemetry};
use crate::exec::InstanceId;
use crate::spec::model::StageKind;
use crate::stages::output::{
    FramesOutput, MarkerOutput, QualityOutput, QualityPart, QueueOutput, QueueTelemetry, RunQuality,
};

/// Puts a per-scene stage's output into its scene's record, and its fallback notes into
/// `notes` (gathered apart: every stage's notes belong in the scene's `System.FallbackNotes`,
/// after those of the engine). An output that is not its kind's type is left out with a note.
pub(super) fn scene_part(
    scene: &mut SceneRecord,
    kind: StageKind,
    id: &InstanceId,
    output: Value,
    notes: &mut Vec<String>,
) {
    let read = match kind {
        StageKind::Queue => serde_json::from_value(output).map(|q: QueueOutput| {
            queue(scene, &q);
            notes.extend(q.fallback_notes);
        }),
        StageKind::AwaitMarker => serde_json::from_value(output).map(|m: MarkerOutput| {
            marker(&mut scene.telemetry, &m);
            notes.extend(m.system.fallback_notes);
        }),
        StageKind::CollectFrames => serde_json::from_value(output).map(|f: FramesOutput| {
            scene.frames = f.frames;
            notes.extend(f.system.fallback_notes);
        }),
        StageKind::Quality => serde_json::from_value(output).map(|q: QualityOutput| {
            if let QualityPart::Scene(m) = q.telemetry.quality_metrics {
                scene.quality_metrics = m;
            }
        }),
        // The story, the patched graph and the validation carry no scene telemetry.
        StageKind::Llm | StageKind::PatchWorkflow | StageKind::Validate => Ok(()),
    };
    if let Err(e) = read {
        scene
            .telemetry
            .system
            .fallback_notes
            .push(format!("telemetry of `{id}` left out: {e}"));
    }
}

/// Puts a once-per-run stage's output into the run's `QualityMetrics` (a `quality` stage over
/// every scene; no other kind reports there). An output that is not its kind's type is left
/// out with a note in `notes`.
pub(super) fn run_part(
    quality: &mut QualityMetrics,
    kind: StageKind,
    id: &InstanceId,
    output: Value,
    notes: &mut Vec<String>,
) {
    if kind != StageKind::Quality {
        return;
    }
    match serde_json::from_value::<QualityOutput>(output) {
        Ok(q) => {
            if let QualityPart::Run(r) = &q.telemetry.quality_metrics {
                run_quality(quality, r);
            }
        }
        Err(e) => notes.push(format!("telemetry of `{id}` left out: {e}")),
    }
}

/// A `queue` output: the attempt's queue telemetry and GPU readings, and where it ran.
fn queue(scene: &mut SceneRecord, q: &QueueOutput) {
    queue_telemetry(&mut scene.telemetry, &q.telemetry);
    if let Some(gpu) = &q.gpu {
        scene.telemetry.gpu = gpu.clone();
        // Derived, so that a stage that reports both readings cannot get it wrong.
        let g = &mut scene.telemetry.gpu;
        g.vram_delta_mb = g.vram_before_mb.zip(g.vram_after_mb).map(|(b, a)| a - b);
    }
    if let Some(render) = &q.render {
        if render.prompt_id.is_some() {
            scene.prompt_id.clone_from(&render.prompt_id);
        }
        if render.server.is_some() {
            scene.server.clone_from(&render.server);
        }
    }
    if q.workflow_path.is_some() {
        scene.workflow_path.clone_from(&q.workflow_path);
    }
}

/// The queue fields of a scene's `Telemetry`.
pub(super) fn queue_telemetry(t: &mut Telemetry, q: &QueueTelemetry) {
    t.duration_seconds = q.duration_seconds;
    t.queue_start = q.queue_start;
    t.queue_end = q.queue_end;
    t.history_attempts = q.history_attempts;
    t.history_attempt_limit = q.history_attempt_limit;
    t.poll_limit = q.poll_limit;
    t.max_wait_seconds = q.max_wait_seconds;
    t.poll_interval_seconds = q.poll_interval_seconds;
    t.history_exit_reason = q.history_exit_reason;
    t.execution_success_detected = q.execution_success_detected;
    t.execution_success_at = q.execution_success_at;
    t.post_execution_timeout_seconds = q.post_execution_timeout_seconds;
    t.history_post_execution_timeout_reached = q.history_post_execution_timeout_reached;
    t.scene_retry_budget = q.scene_retry_budget;
}

/// An `await-marker` output: how the wait for the done marker ended.
fn marker(t: &mut Telemetry, m: &MarkerOutput) {
    t.done_marker_detected = m.done_marker_detected;
    t.done_marker_wait_seconds = Some(m.done_marker_wait_seconds);
    t.done_marker_path = Some(m.done_marker_path.clone());
    t.forced_copy_triggered = m.forced_copy_triggered;
    t.forced_copy_debug_path
        .clone_from(&m.forced_copy_debug_path);
}

/// A once-per-run `quality` stage's verdict, over what the scenes gave.
fn run_quality(q: &mut QualityMetrics, r: &RunQuality) {
    q.passed = Some(r.passed);
    q.diversity_entropy = r.diversity_entropy;
    q.semantic_alignment = r.semantic_alignment;
    q.narrative_coherence = r.narrative_coherence;
    q.checks.clone_from(&r.checks);
}
