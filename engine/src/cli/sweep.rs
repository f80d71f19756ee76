//! `cinepipe sweep`: the flags become a sweep request, a line per finished run (on stderr), the
//! verdict table (on stdout), JUnit when asked, and the exit code from the gates.

use std::io::IsTerminal;

use super::args::{SweepAction, SweepArgs};
use super::display::{Silent, SweepLines, SweepLive};
use super::output::{exit_for, outln, render};
use crate::exec::{self, Interrupt};
use crate::exit::ExitCode;
use crate::sweep::{self, SweepError, SweepProgress, SweepRequest};

/// Runs (or finishes) the sweep the flags name.
pub(crate) fn sweep(args: SweepArgs, color: bool) -> ExitCode {
    if let Some(SweepAction::Merge { shards, out, junit }) = args.action {
        return merge(&shards, &out, junit.as_deref());
    }
    let req = SweepRequest {
        inputs: args.inputs,
        repeat: args.repeat,
        profiles: args.profiles,
        partition: args.partition,
        jobs: args.jobs as usize,
        keep_going: args.keep_going,
        out: args.out,
        resume: args.resume,
        stress: args.stress_duration,
    };
    let rt = match super::output::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let interrupt = Interrupt::new();
    // Live rows on a terminal; plain lines in a CI log or a file (CI's stderr may be a pty).
    let progress: Box<dyn SweepProgress> = if args.quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() && !crate::cli::github::in_ci() {
        Box::new(SweepLive::new(args.jobs as usize, args.stress_duration))
    } else {
        Box::new(SweepLines)
    };
    let result = rt.block_on(async {
        if let Err(e) = exec::signals::listen(interrupt.clone()) {
            tracing::warn!("warning: cannot listen for Ctrl-C: {e}");
        }
        sweep::sweep(req, &interrupt, progress.as_ref()).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(progress);
    let outcome = match result {
        Ok(o) => o,
        Err(SweepError::Spec(errors)) => {
            eprint!("{}", render(&errors, color));
            return exit_for(&errors);
        }
        Err(SweepError::Suite(sweep::suite::SuiteError::Invalid(errors))) => {
            eprint!("{}", render(&errors, color));
            return ExitCode::InvalidSpec;
        }
        Err(e) => {
            tracing::error!("error: {e}");
            return match e {
                SweepError::Service(_) if interrupt.is_interrupted() => ExitCode::Interrupted,
                SweepError::Service(_) => ExitCode::ServiceUnavailable,
                SweepError::Io { .. } => ExitCode::Io,
                SweepError::Suite(_)
                | SweepError::MixedInputs
                | SweepError::NoInput
                | SweepError::Exists { .. }
                | SweepError::NotASweep { .. }
                | SweepError::EmptyShard { .. } => ExitCode::Usage,
                SweepError::Run { .. } | SweepError::Spec(_) => ExitCode::Failure,
            };
        }
    };
    let report = &outcome.report;
    print_report(report, outcome.ran);
    outln!("sweep folder: {}", outcome.dir.display());
    tell_github(&outcome.dir, report);
    if let Some(path) = &args.junit
        && let Err(code) = write_junit(&outcome.dir, report, path)
    {
        return code;
    }
    if outcome.interrupted || report.result == "incomplete" {
        tracing::warn!(
            "interrupted; finish it with: cinepipe sweep --resume {}",
            outcome.dir.display()
        );
        return ExitCode::Interrupted;
    }
    exit_of(report)
}

fn exit_of(report: &sweep::verdict::SweepReport) -> ExitCode {
    match report.result.as_str() {
        "pass" => ExitCode::Success,
        "incomplete" => ExitCode::Interrupted,
        _ => ExitCode::Failure,
    }
}

fn write_junit(
    dir: &std::path::Path,
    report: &sweep::verdict::SweepReport,
    path: &std::path::Path,
) -> Result<(), ExitCode> {
    let runs = sweep::execute::read_runs(&dir.join("runs.jsonl"));
    let xml = sweep::junit::junit(report, &runs).map_err(|e| {
        tracing::error!("error: cannot make the JUnit report: {e}");
        ExitCode::Io
    })?;
    crate::fsutil::write_atomic(path, xml.as_bytes()).map_err(|e| {
        tracing::error!("error: cannot write {}: {e}", path.display());
        ExitCode::Io
    })
}

/// `cinepipe sweep merge`.
fn merge(
    shards: &[std::path::PathBuf],
    out: &std::path::Path,
    junit: Option<&std::path::Path>,
) -> ExitCode {
    let report = match sweep::merge::merge(shards, out) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("error: {e}");
            return match e {
                sweep::merge::MergeError::Io { .. } => ExitCode::Io,
                _ => ExitCode::Usage,
            };
        }
    };
    print_report(&report, 0);
    outln!("sweep folder: {}", out.display());
    tell_github(out, &report);
    if let Some(path) = junit
        && let Err(code) = write_junit(out, &report, path)
    {
        return code;
    }
    exit_of(&report)
}

/// On GitHub Actions: annotations on stdout and the step summary.
fn tell_github(dir: &std::path::Path, report: &sweep::verdict::SweepReport) {
    if !super::github::active() {
        return;
    }
    if let Ok(manifest) = sweep::execute::read_manifest(dir) {
        for line in super::github::annotations(report, &manifest.suite) {
            outln!("{line}");
        }
    }
    if let Err(e) = super::github::step_summary(report) {
        tracing::warn!("warning: cannot append to $GITHUB_STEP_SUMMARY: {e}");
    }
}

/// The verdict table, on stdout.
fn print_report(report: &sweep::verdict::SweepReport, ran: u32) {
    outln!(
        "sweep {}{}: {} ({}/{} runs; {} this session)",
        report.suite,
        report
            .partition
            .as_ref()
            .map(|p| format!(" shard {p}"))
            .unwrap_or_default(),
        report.result,
        report.finished,
        report.planned,
        ran
    );
    for v in &report.verdicts {
        outln!(
            "  {:<7} {} [{}]: {}/{} passed ({} after a retry), pass rate {:.0} % (95 % CI {:.0}–{:.0} %)",
            v.status,
            v.spec,
            v.profile,
            v.passed,
            v.runs,
            v.retried,
            v.pass_rate * 100.0,
            v.pass_rate_low * 100.0,
            v.pass_rate_high * 100.0
        );
        for g in &v.gate_failures {
            outln!("          gate: {g}");
        }
        for w in &v.warnings {
            outln!("          warning: {w}");
        }
    }
}
