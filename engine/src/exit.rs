//! The process exit codes, one enum; `docs/cli.md` documents each.

/// How `cinepipe` exits. The numbers are part of the CLI's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for was done and every check passed.
    Success,
    /// A check found a difference (`cinepipe schema --check` when the files drifted), or a run
    /// failed: a stage instance failed, was skipped, or its kind is not built yet.
    Failure,
    /// A spec broke a rule (every problem is printed, nothing is written).
    InvalidSpec,
    /// A run's files break the telemetry contract (`cinepipe verify`): every violation is printed.
    ContractViolation,
    /// The command line was wrong (unknown flag, missing argument).
    Usage,
    /// A service the run needs does not answer and could not be started.
    ServiceUnavailable,
    /// A file could not be read or written.
    Io,
    /// A run was interrupted (Ctrl-C, SIGTERM); `cinepipe run --resume` finishes it.
    Interrupted,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::InvalidSpec => 2,
            ExitCode::ContractViolation => 3,
            ExitCode::Usage => 64,
            ExitCode::ServiceUnavailable => 69,
            ExitCode::Io => 74,
            ExitCode::Interrupted => 130,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}
