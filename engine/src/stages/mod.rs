//! The stage kinds, one file each. A stage attempt takes its typed config and what the run
//! gives it, and returns an outcome or a classified failure; the executor owns retries.

pub mod await_marker;
pub mod collect_frames;
pub mod comfy_files;
pub mod llm;
pub mod patch_workflow;
pub mod quality;
pub mod queue;
pub mod validate;

/// Writes `attempt-<n>.json` (the attempt's record) into the instance folder, atomically; a
/// record that cannot be written fails the attempt, since the run's telemetry is built from it.
pub(crate) fn write_attempt_record(
    ctx: &crate::exec::StageContext,
    record: &impl serde::Serialize,
) -> Result<(), crate::exec::StageFailure> {
    let dir = ctx.run_dir.join(&ctx.instance_dir);
    let path = dir.join(format!("attempt-{}.json", ctx.attempt));
    let written = serde_json::to_vec_pretty(record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            std::fs::create_dir_all(&dir)?;
            crate::fsutil::write_atomic(&path, &bytes)
        });
    written.map_err(|e| {
        crate::exec::StageFailure::new(
            crate::spec::model::FailureClass::InvalidOutput,
            format!("cannot write {}: {e}", path.display()),
        )
    })
}
