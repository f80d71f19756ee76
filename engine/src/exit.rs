//! The process exit codes, one enum; `docs/cli.md` and the man page document each.

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
    /// `cinepipe bench --baseline`: a variant's median regressed past `--max-regression`.
    Regression,
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
    /// Every code, in numeric order (the man page lists them).
    pub const ALL: [ExitCode; 9] = [
        ExitCode::Success,
        ExitCode::Failure,
        ExitCode::InvalidSpec,
        ExitCode::ContractViolation,
        ExitCode::Regression,
        ExitCode::Usage,
        ExitCode::ServiceUnavailable,
        ExitCode::Io,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failure => 1,
            ExitCode::InvalidSpec => 2,
            ExitCode::ContractViolation => 3,
            ExitCode::Regression => 4,
            ExitCode::Usage => 64,
            ExitCode::ServiceUnavailable => 69,
            ExitCode::Io => 74,
            ExitCode::Interrupted => 130,
        }
    }

    /// One line on when the code is returned (`Self::`, so that the test reading the numbers
    /// from `code` above does not take these for numbers).
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Success => "everything asked for was done and every check passed",
            Self::Failure => {
                "a check found a difference (--check), or a run failed: a stage instance failed or was skipped"
            }
            Self::InvalidSpec => "a spec broke a rule; every problem is printed",
            Self::ContractViolation => {
                "a run folder breaks the telemetry contract (cinepipe verify)"
            }
            Self::Regression => {
                "cinepipe bench --baseline: a variant's median regressed past --max-regression, its interval above no change"
            }
            Self::Usage => "the command line was wrong",
            Self::ServiceUnavailable => {
                "a service the run needs does not answer and could not be started"
            }
            Self::Io => "a file could not be read or written",
            Self::Interrupted => {
                "a run was interrupted (Ctrl-C, SIGTERM); cinepipe run --resume finishes it"
            }
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}
