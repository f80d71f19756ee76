//! Interrupting a run: Ctrl-C (SIGINT) and SIGTERM stop scheduling and cancel the attempts in
//! flight; a second signal exits at once with code 130. Each is logged as a warning.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// The run's interrupt: a cancellation token every attempt's token descends from, and the
/// signal that fired it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    signal: Arc<OnceLock<&'static str>>,
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Interrupts the run; `signal` names the cause (`SIGINT`, `SIGTERM`) when there is one.
    pub fn interrupt(&self, signal: Option<&'static str>) {
        if let Some(s) = signal {
            let _ = self.signal.set(s);
        }
        self.token.cancel();
    }

    pub fn is_interrupted(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn signal(&self) -> Option<&'static str> {
        self.signal.get().copied()
    }
}

/// The exit status of a process that stops on a second signal (128 + SIGINT, as shells do).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Listens for SIGINT and SIGTERM for the rest of the process: the first interrupts the run
/// (the executor writes what it has and returns), the second exits at once. Exiting at once
/// leaves no half-written file: JSON files are written by rename, and the journal's lines are
/// appended whole (a resume drops a torn last line).
pub fn listen(interrupt: Interrupt) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(tokio::spawn(async move {
        let mut seen = 0;
        loop {
            let name = tokio::select! {
                Some(()) = int.recv() => "SIGINT",
                Some(()) = term.recv() => "SIGTERM",
                else => return,
            };
            seen += 1;
            if seen == 1 {
                tracing::warn!(
                    "cinepipe: {name}: stopping; cancelling running stages and writing the journal (again to exit at once)"
                );
                interrupt.interrupt(Some(name));
            } else {
                tracing::warn!("cinepipe: {name} again: exiting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
        }
    }))
}
