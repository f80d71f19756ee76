//! The command line: argument definitions (clap) and what each command does.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::exit::ExitCode;
use crate::plan::Plan;
use crate::spec::{self, SpecErrors};

/// cinepipe: turn a TOML run spec into a story-to-video run.
#[derive(Debug, Parser)]
#[command(name = "cinepipe", version, about, max_term_width = 100)]
pub struct Cli {
    /// When to color diagnostics.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check specs completely (every rule, every profile); folders are searched for `*.toml`.
    Validate {
        /// Spec files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print only problems, not the specs that pass.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Print the resolved values of a spec (with where each came from) and its stage order.
    Plan {
        /// The spec file.
        spec: PathBuf,
        /// Profile to apply (`standard`, `fast`, or one the spec defines).
        #[arg(long, short)]
        profile: Option<String>,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Draw a spec's stage graph.
    Graph {
        /// The spec file.
        spec: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Run a spec into a new run folder, or finish an interrupted or failed run with `--resume`.
    Run {
        /// The spec file (optional with `--resume`: the run folder records its spec).
        #[arg(required_unless_present = "resume")]
        spec: Option<PathBuf>,
        /// Profile to apply (`standard`, `fast`, or one the spec defines); with `--resume`, the
        /// run's own profile by default.
        #[arg(long, short)]
        profile: Option<String>,
        /// Stage attempts running at the same time, at most [default: the number of CPUs, at
        /// least 4].
        #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..))]
        jobs: Option<u32>,
        /// After a failure, let the work that does not depend on it finish (default: stop
        /// scheduling at the first failure and let running stages end).
        #[arg(long, short)]
        keep_going: bool,
        /// Finish the run in this folder without redoing the stage instances it completed.
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Do not reuse cached LLM answers; ask again.
        #[arg(long)]
        no_cache: bool,
        /// Print no progress (no live display, no lines, no logs), only the result.
        #[arg(long, short)]
        quiet: bool,
        /// How progress is written on stderr: `text` (a live display on a terminal, plain
        /// lines otherwise) or `json` (one JSON object per event, as in `events.jsonl`).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// List the runs in an output folder: id, start, outcome, sessions, instances, scenes.
    Runs {
        /// The output folder (`run.output_dir` of the specs).
        #[arg(default_value = "runs")]
        dir: PathBuf,
    },
    /// Summarise one run: outcome, stage instances with their attempts, failures, its files.
    Show {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
    },
    /// Check a run folder against the telemetry contract: `artifact-metadata.json` against its
    /// schema, `run-summary.txt` against the metadata.
    Verify {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
    },
    /// Install cinepipe's ComfyUI node package (the done-marker writer) into a ComfyUI's
    /// `custom_nodes/`.
    InstallNode {
        /// The ComfyUI folder (the one that holds `main.py` and `custom_nodes/`).
        #[arg(long, value_name = "DIR")]
        comfyui_dir: PathBuf,
    },
    /// Write the spec reference (Markdown) generated from cinepipe's types.
    Docs {
        /// File to write.
        #[arg(long, default_value = "docs/spec.md")]
        out: PathBuf,
        /// Write nothing; exit 1 if the file differs from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Write the JSON Schemas generated from cinepipe's types.
    Schema {
        /// Folder to write them into.
        #[arg(long, default_value = "schemas")]
        out_dir: PathBuf,
        /// Write nothing; exit 1 if the files in the folder differ from what would be written.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// Prints a line to stdout, ignoring a closed pipe (`cinepipe validate specs | head -1` is the
/// reader's choice, not an error of ours).
macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Parses the arguments, runs the command, and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::Success
                }
                _ => ExitCode::Usage,
            };
        }
    };
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    match cli.command {
        Command::Validate { paths, quiet } => validate(&paths, quiet, color),
        Command::Plan {
            spec,
            profile,
            format,
        } => with_plan(&spec, profile.as_deref(), color, |plan, w| match format {
            PlanFormat::Text => plan.write_text(w),
            PlanFormat::Json => plan.write_json(w),
        }),
        Command::Graph { spec, format } => with_plan(&spec, None, color, |plan, w| match format {
            GraphFormat::Dot => w.write_all(plan.to_dot().as_bytes()),
            GraphFormat::Mermaid => w.write_all(plan.to_mermaid().as_bytes()),
        }),
        Command::Run {
            spec,
            profile,
            jobs,
            keep_going,
            resume,
            no_cache,
            quiet,
            log_format,
        } => {
            let mut options = crate::exec::ExecOptions {
                keep_going,
                no_cache,
                ..Default::default()
            };
            if let Some(j) = jobs {
                options.jobs = j as usize;
            }
            let service_progress: Option<crate::services::Progress> = if quiet {
                None
            } else {
                Some(std::sync::Arc::new(move |line: &str| {
                    say(log_format, "info", line);
                }))
            };
            let req = crate::exec::RunRequest {
                spec,
                profile,
                resume,
                options,
                service_progress,
                skip_services: false,
            };
            run_spec(req, quiet, log_format, color)
        }
        Command::Verify { run_dir } => verify(&run_dir, color),
        Command::Runs { dir } => runs(&dir),
        Command::Show { run_dir } => show(&run_dir),
        Command::InstallNode { comfyui_dir } => install_node(&comfyui_dir),
        Command::Schema { out_dir, check } => {
            let files: Vec<(PathBuf, String)> = crate::schema::files()
                .into_iter()
                .map(|(n, t)| (out_dir.join(n), t))
                .collect();
            write_generated(&files, check, "cinepipe schema")
        }
        Command::Docs { out, check } => write_generated(
            &[(out, crate::docs::spec_reference())],
            check,
            "cinepipe docs",
        ),
    }
}

/// `cinepipe install-node`: says what it did on stdout, why it could not on stderr.
fn install_node(comfyui_dir: &Path) -> ExitCode {
    use crate::custom_nodes::{self, Action};
    match custom_nodes::install(comfyui_dir) {
        Ok(done) => {
            let what = match done.action {
                Action::Installed => "installed",
                Action::Updated => "updated",
                Action::UpToDate => "up to date:",
            };
            outln!(
                "{what} {} (node WriteDoneMarker, {} files)",
                done.dest.display(),
                custom_nodes::FILES.len()
            );
            if done.action != Action::UpToDate {
                outln!("restart ComfyUI to load it");
            }
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_usage() {
                ExitCode::Usage
            } else {
                ExitCode::Io
            }
        }
    }
}

/// Renders diagnostics the way they are printed: `file:line:col`, the line, a caret, a hint.
pub fn render(errors: &SpecErrors, color: bool) -> String {
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

fn with_plan(
    path: &Path,
    profile: Option<&str>,
    color: bool,
    f: impl FnOnce(&Plan, &mut dyn Write) -> std::io::Result<()>,
) -> ExitCode {
    match spec::load(path, profile) {
        Ok(checked) => {
            let plan = Plan::new(checked);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match f(&plan, &mut out).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::Success,
                // A closed pipe (`| head`) is the reader's choice, not an error of ours.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::Success,
                Err(_) => ExitCode::Io,
            }
        }
        Err(errors) => {
            eprint!("{}", render(&errors, color));
            exit_for(&errors)
        }
    }
}

/// `cinepipe run`: the library runs; this prints the outcome and picks the exit code.
fn run_spec(
    req: crate::exec::RunRequest,
    quiet: bool,
    log_format: LogFormat,
    color: bool,
) -> ExitCode {
    use crate::exec::{self, Interrupt, Observer, RunError, RunOutcome};
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Io;
        }
    };
    let interrupt = Interrupt::new();
    let observers: Vec<Box<dyn Observer>> = match log_format {
        _ if quiet => Vec::new(),
        LogFormat::Json => vec![Box::new(crate::display::JsonLines::new(std::io::stderr()))],
        LogFormat::Text if std::io::stderr().is_terminal() => {
            vec![Box::new(crate::display::Live::new())]
        }
        LogFormat::Text => vec![Box::new(exec::progress::Lines::new(std::io::stderr()))],
    };
    let result = rt.block_on(async {
        if let Err(e) = exec::signals::listen(interrupt.clone()) {
            eprintln!("warning: cannot listen for Ctrl-C: {e}");
        }
        exec::run(req, exec::Registry::builtin(), &interrupt, observers).await
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
            say(log_format, "error", &format!("error: {e}"));
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
        say(
            log_format,
            "error",
            &format!(
                "error: stage kinds not built yet: {}; this cinepipe cannot run them",
                kinds.join("; ")
            ),
        );
    }
    use crate::exec::InstanceState as S;
    let flaky = report.instances.iter().filter(|i| i.flaky).count();
    outln!(
        "run {} {}: {} succeeded ({} from earlier sessions), {} failed, {} skipped, {} not run, {flaky} flaky, in {:.1}s",
        report.run_id,
        report.outcome.as_str(),
        report.count(S::Succeeded) + report.count(S::Reused),
        report.count(S::Reused),
        report.count(S::Failed),
        report.count(S::Skipped),
        report.count(S::NotRun),
        report.duration.as_secs_f64(),
    );
    outln!("run folder: {}", report.dir.display());
    if let Some(e) = &report.journal_error {
        say(
            log_format,
            "error",
            &format!("error: the journal could not be written completely: {e}"),
        );
    }
    if let Some(e) = &report.telemetry_error {
        say(
            log_format,
            "error",
            &format!("error: the run's telemetry could not be written: {e}"),
        );
    }
    match report.outcome {
        RunOutcome::Interrupted => {
            say(
                log_format,
                "warn",
                &format!(
                    "interrupted; finish it with: cinepipe run --resume {}",
                    report.dir.display()
                ),
            );
            ExitCode::Interrupted
        }
        RunOutcome::Failed => ExitCode::Failure,
        RunOutcome::Succeeded
            if report.journal_error.is_some() || report.telemetry_error.is_some() =>
        {
            ExitCode::Io
        }
        RunOutcome::Succeeded => ExitCode::Success,
    }
}

/// A message of `cinepipe run` on stderr: `[cinepipe] …` lines for people (errors as they
/// are), one JSON object per message with `--log-format json`.
fn say(format: LogFormat, level: &str, message: &str) {
    match format {
        LogFormat::Json => eprintln!("{}", crate::display::json_message(level, message)),
        LogFormat::Text if level == "info" => eprintln!("[cinepipe] {message}"),
        LogFormat::Text => eprintln!("{message}"),
    }
}

/// `cinepipe runs`: the table on stdout.
fn runs(dir: &Path) -> ExitCode {
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
fn show(dir: &Path) -> ExitCode {
    if dir.is_dir() && !crate::show::is_run_dir(dir) {
        eprintln!(
            "error: `{}` is not a run folder (it has no run.json or events.jsonl)",
            dir.display()
        );
        return ExitCode::Failure;
    }
    match crate::history::RunHistory::read(dir) {
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

fn exit_for(errors: &SpecErrors) -> ExitCode {
    if errors.diagnostics.iter().all(|d| d.code == spec::Code::Io) {
        ExitCode::Io
    } else {
        ExitCode::InvalidSpec
    }
}

/// Finds the specs to check: files as given, folders searched for `*.toml`, sorted.
fn collect_specs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir)
                    .map_err(|e| format!("cannot read folder `{}`: {e}", dir.display()))?;
                for entry in entries {
                    let entry = entry
                        .map_err(|e| format!("cannot read folder `{}`: {e}", dir.display()))?;
                    let path = entry.path();
                    let ft = entry
                        .file_type()
                        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                    if ft.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "toml") {
                        out.push(path);
                    }
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn validate(paths: &[PathBuf], quiet: bool, color: bool) -> ExitCode {
    let specs = match collect_specs(paths) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Io;
        }
    };
    if specs.is_empty() {
        eprintln!(
            "error: no `*.toml` specs found in {}",
            paths
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::InvalidSpec;
    }
    let mut worst = ExitCode::Success;
    let mut bad = 0;
    for path in &specs {
        match spec::load(path, None) {
            Ok(checked) => {
                if !quiet {
                    let n = checked.spec.stages.len();
                    let plural = if n == 1 { "" } else { "s" };
                    outln!("ok       {} ({n} stage{plural})", path.display());
                }
            }
            Err(errors) => {
                bad += 1;
                eprint!("{}", render(&errors, color));
                let code = exit_for(&errors);
                if worst == ExitCode::Success || code == ExitCode::InvalidSpec {
                    worst = code;
                }
            }
        }
    }
    if specs.len() > 1 || bad > 0 {
        let summary = format!(
            "{} spec{} checked: {} ok, {bad} invalid",
            specs.len(),
            if specs.len() == 1 { "" } else { "s" },
            specs.len() - bad
        );
        if bad > 0 {
            eprintln!("{summary}")
        } else if !quiet {
            outln!("{summary}")
        }
    }
    worst
}

fn verify(dir: &Path, color: bool) -> ExitCode {
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

/// Writes generated files atomically, or with `check` compares them and writes nothing.
fn write_generated(files: &[(PathBuf, String)], check: bool, command: &str) -> ExitCode {
    if check {
        let drifted: Vec<String> = files
            .iter()
            .filter(|(path, text)| {
                std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str())
            })
            .map(|(path, _)| path.display().to_string())
            .collect();
        if drifted.is_empty() {
            outln!(
                "up to date: {}",
                files
                    .iter()
                    .map(|(p, _)| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return ExitCode::Success;
        }
        eprintln!(
            "error: these files differ from what the code generates; run `{command}` to rewrite them:"
        );
        for d in drifted {
            eprintln!("  {d}");
        }
        return ExitCode::Failure;
    }
    for (path, text) in files {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            eprintln!("error: cannot create `{}`: {e}", dir.display());
            return ExitCode::Io;
        }
        if let Err(e) = crate::fsutil::write_atomic(path, text.as_bytes()) {
            eprintln!("error: cannot write `{}`: {e}", path.display());
            return ExitCode::Io;
        }
        outln!("wrote {}", path.display());
    }
    ExitCode::Success
}
