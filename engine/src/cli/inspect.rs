//! The commands that read run folders: `runs` lists them, `show` summarises one, `verify` checks
//! one against the telemetry contract.

use std::io::Write;
use std::path::Path;

use super::args::InspectFormat;
use super::output::outln;
use crate::exit::ExitCode;

/// One JSON document on stdout.
fn print_json<T: serde::Serialize>(doc: &T) -> ExitCode {
    match serde_json::to_string_pretty(doc) {
        Ok(text) => {
            outln!("{text}");
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: cannot write JSON: {e}");
            ExitCode::Io
        }
    }
}

/// `cinepipe runs`: the table (or the JSON document) on stdout.
pub(crate) fn runs(dir: &Path, format: InspectFormat) -> ExitCode {
    if format == InspectFormat::Json {
        return match crate::run_listing::runs_listing(dir) {
            Ok(listing) => print_json(&listing),
            Err(e) => {
                eprintln!("error: cannot read folder `{}`: {e}", dir.display());
                ExitCode::Io
            }
        };
    }
    match crate::show::runs_table(dir) {
        Ok((_, 0)) => {
            eprintln!("no runs in `{}`", dir.display());
            ExitCode::Success
        }
        Ok((table, _)) => {
            outln!("{}", table.trim_end());
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: cannot read folder `{}`: {e}", dir.display());
            ExitCode::Io
        }
    }
}

/// `cinepipe show`: one run, on stdout.
pub(crate) fn show(dir: &Path, format: InspectFormat) -> ExitCode {
    if dir.is_dir() && !crate::show::is_run_dir(dir) {
        eprintln!(
            "error: `{}` is not a run folder (it has no run.json or events.jsonl)",
            dir.display()
        );
        return ExitCode::Failure;
    }
    match crate::rundir::history::RunHistory::read(dir) {
        Ok(h) if format == InspectFormat::Json => print_json(&crate::run_listing::run_detail(&h)),
        Ok(h) => {
            outln!("{}", crate::show::show_run(&h).trim_end());
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: cannot read run folder `{}`: {e}", dir.display());
            ExitCode::Io
        }
    }
}

/// `cinepipe verify`: `ok` on stdout, or every violation and a verdict on stderr.
pub(crate) fn verify(dir: &Path, color: bool) -> ExitCode {
    let paint = |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let violations = match crate::verify::verify_run(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}: {e}", paint("1;31", "error"));
            return ExitCode::Io;
        }
    };
    if violations.is_empty() {
        outln!(
            "ok       {}: {} and {} keep the telemetry contract",
            dir.display(),
            crate::telemetry::METADATA_FILE,
            crate::telemetry::SUMMARY_FILE
        );
        return ExitCode::Success;
    }
    let mut err = std::io::stderr().lock();
    for v in &violations {
        let text = v.to_string();
        // The location is what a reader scans for; the message follows it.
        let _ = match text.split_once(": ") {
            Some((at, msg)) => writeln!(err, "{}: {msg}", paint("1", at)),
            None => writeln!(err, "{text}"),
        };
    }
    let n = violations.len();
    let _ = writeln!(
        err,
        "{}: {} breaks the telemetry contract ({n} violation{})",
        paint("1;31", "error"),
        dir.display(),
        if n == 1 { "" } else { "s" }
    );
    ExitCode::ContractViolation
}
