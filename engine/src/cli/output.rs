//! What every command shares for its output: stdout lines that tolerate a closed pipe, spec
//! diagnostics rendered the way they are printed, and the exit code of a refused spec.

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::exit::ExitCode;
use crate::spec::{self, SpecErrors};

/// Prints a line to stdout, ignoring a closed pipe (`cinepipe validate specs | head -1` is the
/// reader's choice, not an error of ours).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use outln;

/// Renders diagnostics the way they are printed: `file:line:col`, the line, a caret, a hint.
pub(crate) fn render(errors: &SpecErrors, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for d in &errors.diagnostics {
        let _ = handler.render_report(&mut out, d);
    }
    out.push_str(&format!("error: {errors}\n"));
    out
}

/// `74` when every problem is a file that could not be read, `2` otherwise.
pub(crate) fn exit_for(errors: &SpecErrors) -> ExitCode {
    if errors.diagnostics.iter().all(|d| d.code == spec::Code::Io) {
        ExitCode::Io
    } else {
        ExitCode::InvalidSpec
    }
}

/// The multi-threaded runtime `run` and `sweep` work on; it cannot be had only when the OS
/// refuses threads, which is an I/O failure for the exit code.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!("error: cannot start the async runtime: {e}");
            ExitCode::Io
        })
}
