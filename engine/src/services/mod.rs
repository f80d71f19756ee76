//! Services the engine manages: probe each server a run uses, reuse one that already answers,
//! launch the others with their `launch` command, wait for readiness within a bound, and stop
//! exactly the processes this run started (never one it found running).
//!
//! A launched server runs in its own process group, so stopping it also stops whatever it
//! spawned (ComfyUI's Python, a shell wrapper). It gets `SIGTERM`, then `SIGKILL` after the
//! launch's `stop_timeout_s`. Each launch leaves `<state_dir>/<service>.pid` (JSON) while it
//! runs: a later run that finds one whose owner died (`kill -9` of cinepipe) adopts the orphan
//! and stops it at its end, and one whose process is gone is removed as stale.
//!
//! `ensure` brings a run's services up (walking fallbacks), `probe` asks a server whether it is
//! up, `launch` starts one and waits for it, `stop` ends what this run started. Each step is
//! logged (`tracing`, info) as it happens and kept in [`Services::notes`].

mod ensure;
mod error;
mod launch;
mod probe;
mod stop;

pub use ensure::{ServiceOptions, Services, services_of, used_services};
pub use error::{EnsureError, ServiceError};
pub use probe::{Probe, health_url, health_urls, probe};
pub use stop::process_alive;
