//! `cinepipe report` (the HTML report of a run or sweep folder) and `cinepipe trace` (a run as
//! trace-event JSON), both from `crate::report`.

use std::path::{Path, PathBuf};

use super::args::ReportArgs;
use super::output::outln;
use crate::exit::ExitCode;
use crate::report::{REPORT_FILE, ReportError, ThumbOptions, write_report};

pub(crate) fn report(args: &ReportArgs) -> ExitCode {
    let out: PathBuf = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(REPORT_FILE));
    let opts = ThumbOptions {
        frames_per_scene: args.frames_per_scene,
        size: args.thumb_size,
    };
    let started = std::time::Instant::now();
    match write_report(&args.dir, &out, opts) {
        Ok(w) => {
            outln!(
                "wrote {} ({} KiB, {} thumbnails, {} ms)",
                w.path.display(),
                w.bytes.div_ceil(1024),
                w.thumbnails,
                started.elapsed().as_millis()
            );
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                ReportError::NotAFolder { .. } | ReportError::Bench { .. } => ExitCode::Failure,
                ReportError::Render(_) => ExitCode::Failure,
                ReportError::Read { .. }
                | ReportError::Parse { .. }
                | ReportError::Write { .. } => ExitCode::Io,
            }
        }
    }
}

pub(crate) fn trace(dir: &Path, out: Option<PathBuf>) -> ExitCode {
    use crate::report::trace::{TRACE_FILE, TraceError, write_trace};
    let out = out.unwrap_or_else(|| dir.join(TRACE_FILE));
    match write_trace(dir, &out) {
        Ok(n) => {
            outln!(
                "wrote {} ({n} trace events; open it in ui.perfetto.dev or chrome://tracing)",
                out.display()
            );
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                TraceError::NotARun { .. } => ExitCode::Failure,
                TraceError::Read { .. } | TraceError::Write { .. } => ExitCode::Io,
            }
        }
    }
}
