//! The composition root: wires spec → services → stages → executor → telemetry. [`run`] is what
//! `cinepipe run` calls: it makes (or reopens) the run folder, brings up the services, hands the
//! plan to the executor with the stage kinds of [`registry`], and writes the telemetry when the
//! session ends. Below it, `exec` knows the `Stage` trait and scheduling, not which stages,
//! services or telemetry exist.

mod registry;
mod session;
#[cfg(test)]
mod tests;

pub use registry::registry;
pub use session::{RunError, RunRequest, run};
