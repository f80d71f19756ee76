//! The `validate` stage: writes the run's `artifact-metadata.json` and `run-summary.txt` as they
//! stand (the run is still going: it is `incomplete`, and this attempt is not in it yet), then
//! checks them with `telemetry::verify::verify_run`, exactly as `cinepipe verify` does.
//! `telemetry` sits above the stages, so the composition root hands both in as a
//! [`TelemetryCheck`].
//!
//! The files are written again when the session ends, with the final outcome; the check here
//! proves that what the run produced keeps the contract while a stage can still fail the run
//! for it (`fail_on_violation`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::output::ValidateOutput;
use crate::artifact_metadata::{METADATA_FILE, SUMMARY_FILE};
use crate::exec::{Attempt, BoxFuture, EventKind, InstanceId, Stage, StageContext, StageFailure};
use crate::spec::CheckedSpec;
use crate::spec::model::{FailureClass, Stage as SpecStage};

/// How long an attempt waits for its own `attempt-started` line to reach the journal.
const JOURNAL_WAIT: Duration = Duration::from_secs(5);

/// Writes the run folder's telemetry files as they stand and checks them: the violations, as
/// printed, or why the files could not be made.
pub type TelemetryCheck =
    fn(&Path, &CheckedSpec) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>>;

/// The `validate` kind for the executor.
pub struct Validate {
    check: TelemetryCheck,
}

impl Validate {
    pub fn new(check: TelemetryCheck) -> Self {
        Validate { check }
    }
}

impl Stage for Validate {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move { validate(ctx, self.check).await.into() })
    }
}

/// One attempt: the run's telemetry written and checked.
async fn validate(ctx: &StageContext, check: TelemetryCheck) -> Result<Value, StageFailure> {
    let Some(SpecStage::Validate(cfg)) = ctx.stage() else {
        return Err(StageFailure::new(
            FailureClass::InvalidOutput,
            "the validate stage was handed a stage of another kind",
        ));
    };
    let fail_on_violation = cfg.fail_on_violation;
    // The walker spawns an attempt and then writes the journal lines it buffered (the
    // need that just succeeded, this attempt's start): wait for them, or the metadata
    // would miss the work this stage was waiting for.
    let events = ctx.run_dir.join(crate::rundir::EVENTS);
    let started = tokio::time::Instant::now();
    while !journal_has_start(&events, &ctx.instance, ctx.attempt)
        && started.elapsed() < JOURNAL_WAIT
    {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
            () = ctx.cancel.cancelled() => {
                return Err(StageFailure::new(FailureClass::Interrupted, "cancelled"));
            }
        }
    }
    let dir = ctx.run_dir.clone();
    let spec = ctx.spec.clone();
    let checked =
        tokio::task::spawn_blocking(move || check(&dir, &spec).map_err(|e| e.to_string()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    let violations: Vec<String> = match checked {
        Ok(v) => v,
        // Not a verdict on the run's telemetry: the files could not be made.
        Err(e) => {
            return Err(StageFailure::new(
                FailureClass::InvalidOutput,
                format!("cannot write or check the run's telemetry: {e}"),
            ));
        }
    };
    if !violations.is_empty() && fail_on_violation {
        let n = violations.len();
        return Err(StageFailure::new(
            FailureClass::InvalidOutput,
            format!(
                "the run breaks the telemetry contract ({n} violation{}):\n  {}",
                if n == 1 { "" } else { "s" },
                violations.join("\n  ")
            ),
        ));
    }
    Attempt::output(&ValidateOutput {
        passed: violations.is_empty(),
        checked: vec![METADATA_FILE.to_owned(), SUMMARY_FILE.to_owned()],
        violations,
    })
}

/// Whether the journal has the `attempt-started` line of this attempt.
fn journal_has_start(events: &Path, id: &InstanceId, attempt: u32) -> bool {
    let Ok(bytes) = std::fs::read(events) else {
        return false;
    };
    // The line is near the end; the search goes backwards over whole lines only.
    bytes
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(|l| serde_json::from_slice::<crate::exec::Event>(l).ok())
        .any(|e| {
            matches!(e.kind, EventKind::AttemptStarted { ref instance, attempt: a }
                if instance == id && a == attempt)
        })
}
