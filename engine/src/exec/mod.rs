//! Running a plan: the scheduler, retries, timeouts and cancellation, the run folder with its
//! event journal, and resume.
//!
//! [`run`] is what `cinepipe run` calls: it makes (or reopens) the run folder, brings up the
//! services, and hands the plan to the [`Executor`], which runs stage instances through the
//! [`Stage`] implementations of a [`Registry`] and records every state change as an [`Event`].

pub mod event;
pub mod journal;
pub mod retry;
mod run;
pub mod rundir;
mod scheduler;
pub mod signals;
pub mod stage;

#[cfg(test)]
mod tests;

pub use event::{AttemptOutcome, Event, EventKind, InstanceId, RunOutcome, SkipReason};
pub use journal::{Journal, JournalError, Replay};
pub use run::{RunError, RunRequest, run};
pub use rundir::{RunDir, RunDirError};
pub use scheduler::{
    AttemptRecord, CANCEL_GRACE, ExecOptions, Executor, InstanceReport, InstanceState, Observer,
    RunReport, SERVICE_RECOVERY_BOUND, Session, default_jobs,
};
pub use signals::Interrupt;
pub use stage::{
    Attempt, BoxFuture, DEFAULT_ATTEMPT_BOUND, Registry, ServiceWatch, Stage, StageContext,
    StageFailure, default_attempt_bound,
};
