//! `cinepipe bench`: the flags become a bench request, a line per finished run (stderr), the
//! verdicts (stdout), JUnit and the GitHub step summary when asked, and the exit code: 4 when
//! a variant regressed against `--baseline`.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::args::BenchArgs;
use super::output::{exit_for, outln, render};
use crate::bench::results::{BenchResults, BenchRun};
use crate::bench::{self, BenchError, BenchRequest};
use crate::exec::{self, Interrupt};
use crate::exit::ExitCode;

/// Runs (or finishes) the bench the flags name.
pub(crate) fn bench(args: BenchArgs, color: bool) -> ExitCode {
    let req = BenchRequest {
        spec: args.spec,
        profiles: args.profiles,
        compare: args.compare,
        runs: args.runs,
        warmup: args.warmup,
        no_cache: args.no_cache,
        seed: args.seed,
        keep_going: args.keep_going,
        out: args.out,
        resume: args.resume,
        baseline: args.baseline,
        max_regression: args.max_regression,
    };
    let rt = match super::output::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let interrupt = Interrupt::new();
    let quiet = args.quiet;
    let progress = move |r: &BenchRun, done: usize, total: usize| {
        if !quiet {
            let how = if r.run.passed() {
                "pass".to_owned()
            } else {
                format!(
                    "FAIL ({})",
                    r.run
                        .failures
                        .last()
                        .map_or(r.run.outcome.as_str(), String::as_str)
                )
            };
            eprintln!(
                "[{done}/{total}] {} round {}{}: {how}{}",
                r.variant,
                r.round,
                if r.warmup { " (warm-up)" } else { "" },
                r.run
                    .seconds
                    .map(|s| format!(" in {s:.2}s"))
                    .unwrap_or_default()
            );
        }
    };
    let result = rt.block_on(async {
        if let Err(e) = exec::signals::listen(interrupt.clone()) {
            tracing::warn!("warning: cannot listen for Ctrl-C: {e}");
        }
        bench::bench(req, &interrupt, &progress).await
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let outcome = match result {
        Ok(o) => o,
        Err(BenchError::Spec(errors)) => {
            eprint!("{}", render(&errors, color));
            return exit_for(&errors);
        }
        Err(e) => {
            tracing::error!("error: {e}");
            return match e {
                BenchError::Sweep(crate::sweep::SweepError::Service(_))
                    if interrupt.is_interrupted() =>
                {
                    ExitCode::Interrupted
                }
                BenchError::Sweep(crate::sweep::SweepError::Service(_)) => {
                    ExitCode::ServiceUnavailable
                }
                BenchError::Io { .. } => ExitCode::Io,
                BenchError::Sweep(_) => ExitCode::Failure,
                BenchError::Plan(_)
                | BenchError::Spec(_)
                | BenchError::NoInput
                | BenchError::Exists { .. }
                | BenchError::NotABench { .. }
                | BenchError::Baseline { .. } => ExitCode::Usage,
            };
        }
    };
    let r = &outcome.results;
    outln!(
        "bench {}: {} ({}/{} runs; {} this session)",
        r.name,
        r.status,
        r.finished,
        r.planned,
        outcome.ran
    );
    for c in &r.comparisons {
        outln!("  {}", c.verdict);
    }
    if let Some(b) = &r.baseline {
        for v in &b.variants {
            outln!("  baseline: {}", v.message);
        }
    }
    outln!(
        "bench folder: {} (results.json, ANALYSIS.md)",
        outcome.dir.display()
    );
    if super::github::active()
        && let Err(e) = step_summary(&outcome.dir)
    {
        tracing::warn!("warning: cannot append to $GITHUB_STEP_SUMMARY: {e}");
    }
    if let Some(path) = &args.junit
        && let Err(code) = write_junit(r, path)
    {
        return code;
    }
    if outcome.interrupted || r.status != "complete" {
        tracing::warn!(
            "interrupted; finish it with: cinepipe bench --resume {}",
            outcome.dir.display()
        );
        return ExitCode::Interrupted;
    }
    exit_of(r)
}

fn exit_of(r: &BenchResults) -> ExitCode {
    if r.baseline.as_ref().is_some_and(|b| b.regressed) {
        ExitCode::Regression
    } else if r.variants.iter().any(|v| v.failed > 0) {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

/// `ANALYSIS.md` on the step's summary page.
fn step_summary(dir: &Path) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let md = std::fs::read_to_string(dir.join(crate::bench::analysis::ANALYSIS))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(md.as_bytes())
}

/// A test suite for the bench, a test case per variant: a failure when some of its runs
/// failed or it regressed against the baseline.
fn write_junit(r: &BenchResults, path: &Path) -> Result<(), ExitCode> {
    let mut doc = Report::new(format!("cinepipe-bench-{}", r.name));
    let mut suite = TestSuite::new(format!("bench {}", r.name));
    for v in &r.variants {
        let regression = r
            .baseline
            .as_ref()
            .and_then(|b| b.variants.iter().find(|x| x.name == v.name && x.regressed));
        let status = if let Some(reg) = regression {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(reg.message.clone());
            s.set_type("regression");
            s
        } else if v.failed > 0 {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!("{} of {} runs failed", v.failed, v.runs));
            s.set_type("failed runs");
            s
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(v.name.clone(), status);
        case.set_classname(format!("bench.{}", r.name));
        if let Some(w) = &v.wall_seconds {
            case.set_time(Duration::from_secs_f64(w.p50.max(0.0)));
        }
        suite.add_test_case(case);
    }
    doc.add_test_suite(suite);
    let xml = doc.to_string().map_err(|e| {
        tracing::error!("error: cannot make the JUnit report: {e}");
        ExitCode::Io
    })?;
    crate::fsutil::write_atomic(path, xml.as_bytes()).map_err(|e| {
        tracing::error!("error: cannot write {}: {e}", path.display());
        ExitCode::Io
    })
}
