//! The stage kinds this cinepipe runs, wired to what they need from the layers above them.

use crate::exec::Registry;
use crate::telemetry;

/// Every stage kind this cinepipe has built, wired to what they need from above them.
pub fn registry() -> Registry {
    crate::stages::registry(write_and_verify_telemetry)
}

/// The `validate` stage's check: the telemetry written as it stands, then verified exactly as
/// `cinepipe verify` does.
fn write_and_verify_telemetry(
    dir: &std::path::Path,
    spec: &crate::spec::CheckedSpec,
) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    telemetry::build::write_run(dir, spec)?;
    let violations = telemetry::verify::verify_run(dir)?;
    Ok(violations.iter().map(ToString::to_string).collect())
}
