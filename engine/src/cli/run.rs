//! `cinepipe run`: the flags become a run request, the progress display is chosen, the library
//! runs, and this prints the outcome and picks the exit code. Messages go through `tracing`
//! (see `cli::logging`); the result goes to stdout.

use std::io::IsTerminal;

use super::args::{LogFormat, RunArgs};
use super::display::{JsonLines, Lines, Live};
use super::output::{exit_for, outln, render};
use crate::exec::{self, ExecOptions, InstanceState, Interrupt, Observer, RunOutcome};
use crate::exit::ExitCode;
use crate::run::{RunError, RunRequest};

/// Runs the spec (or resumes the run folder) the flags name.
pub(crate) fn run(args: RunArgs, color: bool) -> ExitCode {
    let mut options = ExecOptions {
        keep_going: args.keep_going,
        no_cache: args.no_cache,
        ..Default::default()
    };
    if let Some(j) = args.jobs {
        options.jobs = j as usize;
    }
    let req = RunRequest {
        spec: args.spec,
        profile: args.profile,
        resume: args.resume,
        options,
        output_dir: None,
        skip_services: false,
    };
    let observers: Vec<Box<dyn Observer>> = match args.log_format {
        _ if args.quiet => Vec::new(),
        LogFormat::Json => vec![Box::new(JsonLines::new(std::io::stderr()))],
        LogFormat::Text if std::io::stderr().is_terminal() => vec![Box::new(Live::new())],
        LogFormat::Text => vec![Box::new(Lines::new(std::io::stderr()))],
    };
    run_request(req, observers, color, args.quiet, args.metrics_file)
}

/// `quiet`: no observer showed the failures as they happened, so a failed run ends with why.
fn run_request(
    req: RunRequest,
    observers: Vec<Box<dyn Observer>>,
    color: bool,
    quiet: bool,
    metrics_file: Option<std::path::PathBuf>,
) -> ExitCode {
    let rt = match super::output::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let interrupt = Interrupt::new();
    let result = rt.block_on(async {
        if let Err(e) = exec::signals::listen(interrupt.clone()) {
            tracing::warn!("warning: cannot listen for Ctrl-C: {e}");
        }
        crate::run::run(req, crate::run::registry(), &interrupt, observers).await
    });
    // Blocking tasks still writing are given a moment; nothing the run needs is left to them.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    let report = match result {
        Ok(r) => r,
        Err(RunError::Spec(errors)) => {
            eprint!("{}", render(&errors, color));
            return exit_for(&errors);
        }
        Err(e) => {
            tracing::error!("error: {e}");
            return match e {
                // Ctrl-C while the services were coming up.
                RunError::Service(_) if interrupt.is_interrupted() => ExitCode::Interrupted,
                RunError::Service(_) => ExitCode::ServiceUnavailable,
                RunError::SpecChanged { .. } => ExitCode::InvalidSpec,
                e if e.is_io() => ExitCode::Io,
                _ => ExitCode::Failure,
            };
        }
    };
    if !report.unbuilt.is_empty() {
        let kinds: Vec<String> = report
            .unbuilt
            .iter()
            .map(|(k, stages)| format!("{} (stages: {})", k.as_str(), stages.join(", ")))
            .collect();
        tracing::error!(
            "error: stage kinds not built yet: {}; this cinepipe cannot run them",
            kinds.join("; ")
        );
    }
    let flaky = report.instances.iter().filter(|i| i.flaky).count();
    outln!(
        "run {} {}: {} succeeded ({} from earlier sessions), {} failed, {} skipped, {} not run, {flaky} flaky, in {:.1}s",
        report.run_id,
        report.outcome.as_str(),
        report.count(InstanceState::Succeeded) + report.count(InstanceState::Reused),
        report.count(InstanceState::Reused),
        report.count(InstanceState::Failed),
        report.count(InstanceState::Skipped),
        report.count(InstanceState::NotRun),
        report.duration.as_secs_f64(),
    );
    outln!("run folder: {}", report.dir.display());
    if let Some(e) = &report.journal_error {
        tracing::error!("error: the journal could not be written completely: {e}");
    }
    if let Some(e) = &report.telemetry_error {
        tracing::error!("error: the run's telemetry could not be written: {e}");
    }
    // Metrics of a run that ended (an interrupted one is counted when it is finished).
    let mut metrics_failed = false;
    if let Some(path) = &metrics_file
        && report.outcome != RunOutcome::Interrupted
    {
        let meta = std::fs::read(report.dir.join("artifact-metadata.json"))
            .ok()
            .and_then(|b| {
                serde_json::from_slice::<crate::artifact_metadata::ArtifactMetadata>(&b).ok()
            });
        match meta {
            Some(m) => {
                if let Err(e) =
                    crate::metrics::update(path, |s| crate::metrics::record_run(s, &m.run_name, &m))
                {
                    tracing::error!("error: cannot write the metrics: {e}");
                    metrics_failed = true;
                }
            }
            None => {
                tracing::error!(
                    "error: no readable artifact-metadata.json to count in the metrics"
                );
                metrics_failed = true;
            }
        }
    }
    if quiet && report.outcome == RunOutcome::Failed {
        for instance in &report.instances {
            if let (InstanceState::Failed, Some(why)) = (instance.state, &instance.error) {
                tracing::error!("error: {} failed: {why}", instance.id);
            }
        }
    }
    match report.outcome {
        RunOutcome::Interrupted => {
            tracing::warn!(
                "interrupted; finish it with: cinepipe run --resume {}",
                report.dir.display()
            );
            ExitCode::Interrupted
        }
        RunOutcome::Failed => ExitCode::Failure,
        RunOutcome::Succeeded
            if report.journal_error.is_some()
                || report.telemetry_error.is_some()
                || metrics_failed =>
        {
            ExitCode::Io
        }
        RunOutcome::Succeeded => ExitCode::Success,
    }
}
