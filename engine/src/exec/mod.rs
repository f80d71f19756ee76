//! Running a plan: the scheduler, retries, timeouts and cancellation, and resume from the run
//! folder's journal (`crate::rundir`).
//!
//! The [`Executor`] runs stage instances through the [`Stage`] implementations of a
//! [`Registry`] and records every state change as an [`Event`]. Which stage kinds exist, and the
//! services and telemetry around a run, are the composition root's (`crate::run`).

pub mod retry;
mod scheduler;
pub mod signals;
pub mod stage;

#[cfg(test)]
pub(crate) mod tests;

/// The events the executor emits and its observers are told: the run folder's journal
/// vocabulary, named here too because every stage and observer speaks it.
pub use crate::rundir::event::{
    AttemptOutcome, Event, EventKind, InstanceId, RunOutcome, SkipReason,
};
pub use scheduler::{
    AttemptRecord, CANCEL_GRACE, ExecOptions, Executor, InstanceReport, InstanceState, Observer,
    RunReport, SERVICE_RECOVERY_BOUND, Session, default_jobs,
};
pub use signals::Interrupt;
pub use stage::{
    Attempt, BoxFuture, DEFAULT_ATTEMPT_BOUND, Registry, ServiceWatch, Stage, StageContext,
    StageFailure, default_attempt_bound,
};
