//! Running a plan: the scheduler, retries, timeouts and cancellation, the run folder with its
//! event journal, and resume.
//!
//! The [`Executor`] runs stage instances through the [`Stage`] implementations of a
//! [`Registry`] and records every state change as an [`Event`]. Which stage kinds exist, and the
//! services and telemetry around a run, are the composition root's (`crate::run`).

pub mod event;
pub mod journal;
pub mod retry;
pub mod rundir;
mod scheduler;
pub mod signals;
pub mod stage;

#[cfg(test)]
pub(crate) mod tests;

pub use event::{AttemptOutcome, Event, EventKind, InstanceId, RunOutcome, SkipReason};
pub use journal::{Journal, JournalError, Replay};
pub use rundir::{RunDir, RunDirError};
pub use scheduler::{
    AttemptRecord, CANCEL_GRACE, ExecOptions, Executor, InstanceReport, InstanceState, Observer,
    RunReport, Session, default_jobs,
};
pub use signals::Interrupt;
pub use stage::{
    Attempt, BoxFuture, DEFAULT_ATTEMPT_BOUND, Registry, Stage, StageContext, StageFailure,
    default_attempt_bound,
};
