//! The typed outputs (`output.json`) and attempt records (`attempt-<n>.json`) of the stage
//! kinds: one type per kind, written by its stage and read back by the stages after it,
//! telemetry, verify and show, so that a renamed field fails to compile on the reading side.
//!
//! The `llm` stage's output is the story itself, whose schema the spec's author supplies: it
//! stays JSON. Every other kind's output is a type here.

mod frames;
mod llm;
mod marker;
mod patch;
mod quality;
mod queue;
mod record;
mod render;
mod schema;
mod validate;

pub use frames::{FramesAttempt, FramesOutput, FramesRecord, SkippedFile};
pub use llm::{LlmAttempt, LlmRecord, ProviderReport};
pub use marker::{
    Detection, ForcedCopy, MarkerAttempt, MarkerBody, MarkerOutput, MarkerRecord, StageSystem,
};
pub use patch::{ObjectInfoCheck, PatchOutput, SceneMeta};
pub use quality::{
    CoherenceRecord, FrameSignature, QualityOutput, QualityPart, QualityRecord, QualityTelemetry,
    RunQuality,
};
pub use queue::{QueueOutput, QueueRecord, QueueTelemetry, WebsocketReport};
pub use record::{AttemptRecord, RecordOutcome};
pub use render::RenderRef;
pub use schema::stage_schemas;
pub use validate::ValidateOutput;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::artifact_metadata::{QueueConfig, SceneQualityMetrics};

    #[test]
    fn a_queue_output_reads_back_as_itself_and_as_its_render() {
        let mut out = QueueOutput::start(QueueTelemetry::from_config(&QueueConfig::default()));
        let mut render = RenderRef::new("cinepipe/r/s/a2/frame");
        render.server = Some("http://127.0.0.1:8188".into());
        render.attempt = Some(2);
        out.render = Some(render.clone());
        out.workflow_path = Some("stages/render/0/workflow-2.json".into());
        let v = serde_json::to_value(&out).expect("serialises");
        // The render's fields sit at the top of the output, where the stages after it look.
        assert_eq!(v["prefix"], json!("cinepipe/r/s/a2/frame"));
        assert_eq!(v["gpu"], json!(null));
        assert!(v.get("client_id").is_none(), "not reached: left out");
        let back: QueueOutput = serde_json::from_value(v.clone()).expect("reads back");
        assert_eq!(back, out);
        let seen: RenderRef = serde_json::from_value(v).expect("a render");
        assert_eq!(seen, render);
        // Before the prefix is known there is no render.
        let start = QueueOutput::start(QueueTelemetry::from_config(&QueueConfig::default()));
        let back: QueueOutput =
            serde_json::from_value(serde_json::to_value(&start).expect("serialises"))
                .expect("reads back");
        assert_eq!(back.render, None);
    }

    #[test]
    fn a_quality_part_is_told_apart_by_its_shape() {
        let scene = QualityPart::Scene(SceneQualityMetrics {
            width: Some(64),
            ..SceneQualityMetrics::default()
        });
        let run = QualityPart::Run(RunQuality {
            passed: true,
            diversity_entropy: None,
            semantic_alignment: Some(0.8),
            narrative_coherence: Some(3.5),
            checks: Vec::new(),
        });
        for part in [scene, run] {
            let v = serde_json::to_value(&part).expect("serialises");
            assert_eq!(
                serde_json::from_value::<QualityPart>(v).expect("reads"),
                part
            );
        }
    }

    #[test]
    fn a_failed_attempt_record_has_its_head_and_no_output() {
        let result: Result<(), crate::exec::StageFailure> = Err(crate::exec::StageFailure::new(
            crate::spec::model::FailureClass::Timeout,
            "no marker",
        ));
        let record = MarkerRecord::new(3, &result, MarkerAttempt { output: None });
        let v = serde_json::to_value(&record).expect("serialises");
        assert_eq!(
            v,
            json!({"attempt": 3, "outcome": "failed", "failure_class": "timeout", "error": "no marker"})
        );
        assert_eq!(
            serde_json::from_value::<MarkerRecord>(v).expect("reads"),
            record
        );
    }
}
