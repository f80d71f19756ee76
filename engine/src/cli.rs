//! The command line: argument definitions (clap) and what each command does.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::exit::ExitCode;
use crate::plan::Plan;
use crate::services;
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
    /// Run a spec: start the services it needs, run its stages, stop what it started.
    Run {
        /// The spec file.
        spec: PathBuf,
        /// Profile to apply (`standard`, `fast`, or one the spec defines).
        #[arg(long, short)]
        profile: Option<String>,
    },
    /// Check a run folder against the telemetry contract: `artifact-metadata.json` against its
    /// schema, `run-summary.txt` against the metadata.
    Verify {
        /// The run folder (`runs/<run-id>`).
        run_dir: PathBuf,
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
        Command::Run { spec, profile } => run_spec(&spec, profile.as_deref(), color),
        Command::Verify { run_dir } => verify(&run_dir, color),
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

/// `cinepipe run`: services up, stages, services down.
fn run_spec(path: &Path, profile: Option<&str>, color: bool) -> ExitCode {
    let checked = match spec::load(path, profile) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{}", render(&errors, color));
            return exit_for(&errors);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    runtime.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        spawn_signal_watch(cancel.clone());
        let names = services::used_services(&checked.spec);
        let mut opts = services::ServiceOptions::new(spec::check::tidy(
            &checked
                .resolve_path(&checked.spec.run.output_dir)
                .join(".services"),
        ));
        opts.progress = Some(std::sync::Arc::new(|line: &str| {
            eprintln!("[cinepipe] {line}");
        }));
        let up = match services::Services::ensure(&checked, &names, &opts, &cancel).await {
            Ok(up) => up,
            Err(e) => {
                eprintln!("error: {e}");
                return if cancel.is_cancelled() {
                    ExitCode::Interrupted
                } else {
                    ExitCode::ServiceUnavailable
                };
            }
        };
        // No stage kind is built yet (issues #4-#6): say so instead of pretending.
        let mut kinds: Vec<&str> = Vec::new();
        for stage in checked.spec.stages.values() {
            let k = stage.kind().as_str();
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        let first = checked.spec.stages.keys().next().map_or("", String::as_str);
        eprintln!(
            "error: not built yet: stage kind{} {}; the run stops before stage `{first}`",
            if kinds.len() == 1 { "" } else { "s" },
            kinds.join(", ")
        );
        // The progress hook has printed the notes; shutdown lines are printed here.
        for line in up.shutdown().await {
            eprintln!("[cinepipe] {line}");
        }
        ExitCode::Failure
    })
}

/// Turns SIGINT/SIGTERM into a cancel; a second one exits at once (every file the engine
/// writes is written atomically, so nothing is left half-written).
fn spawn_signal_watch(cancel: tokio_util::sync::CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if n > 0 {
                std::process::exit(i32::from(ExitCode::Interrupted.code()));
            }
            eprintln!("[cinepipe] interrupted: stopping (again to exit at once)");
            cancel.cancel();
        }
    });
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
