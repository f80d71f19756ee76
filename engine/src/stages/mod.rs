//! The stage kinds, one file each. A stage attempt takes its typed config and what the run
//! gives it, and returns an outcome or a classified failure; the executor owns retries.

pub mod await_marker;
pub mod collect_frames;
pub mod comfy_files;
pub mod llm;
pub mod output;
pub mod patch_workflow;
pub mod quality;
pub mod queue;
pub mod service_watch;
pub mod validate;

use std::sync::Arc;

use crate::exec::Registry;
use crate::spec::model::StageKind;

/// The stage kinds this cinepipe has built; each comes with its own issue and registers itself
/// here (stages sit above `exec`, so the executor never names a kind). The composition root
/// hands in what the stages cannot name themselves: `telemetry`'s writer and checker.
pub fn registry(telemetry: validate::TelemetryCheck) -> Registry {
    Registry::default()
        .with(StageKind::Llm, Arc::new(llm::Llm))
        .with(
            StageKind::PatchWorkflow,
            Arc::new(patch_workflow::PatchWorkflow),
        )
        .with(StageKind::Queue, Arc::new(queue::Queue))
        .with(
            StageKind::Validate,
            Arc::new(validate::Validate::new(telemetry)),
        )
        .with(StageKind::AwaitMarker, Arc::new(await_marker::AwaitMarker))
        .with(
            StageKind::CollectFrames,
            Arc::new(collect_frames::CollectFrames),
        )
        .with(StageKind::Quality, Arc::new(quality::Quality))
        .with_service_watch(Arc::new(service_watch::HealthWatch))
}
