//! The command line: the clap definitions (`args`), one file per command family, what they
//! print (`output`, `display`), the logs (`logging`), and the generated files (`generate`).

use std::ffi::OsString;
use std::io::IsTerminal;

use clap::Parser;

use crate::exit::ExitCode;

mod args;
mod bench;
pub mod display;
mod doctor;
mod feedback;
pub mod generate;
mod github;
mod inspect;
mod install_node;
pub mod logging;
mod output;
mod report;
mod run;
mod sentinel;
mod serve;
mod spec_commands;
mod sweep;

pub use args::{
    Cli, Color, Command, GraphFormat, InspectFormat, LogFormat, PlanFormat, RunArgs, Shell,
};

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
    let (log_format, quiet) = match &cli.command {
        Command::Run(run) => (run.log_format, run.quiet),
        Command::Sweep(s) => (LogFormat::Text, s.quiet),
        Command::Bench(b) => (LogFormat::Text, b.quiet),
        _ => (LogFormat::Text, false),
    };
    logging::init(log_format, quiet);
    match cli.command {
        Command::Validate { paths, quiet } => spec_commands::validate(&paths, quiet, color),
        Command::Plan {
            spec,
            profile,
            format,
        } => spec_commands::plan(&spec, profile.as_deref(), format, color),
        Command::Graph { spec, format } => spec_commands::graph(&spec, format, color),
        Command::Run(args) => run::run(args, color),
        Command::Sweep(args) => sweep::sweep(args, color),
        Command::Doctor {
            spec,
            profile,
            format,
            min_free_gb,
        } => doctor::doctor(
            spec.as_deref(),
            profile.as_deref(),
            format,
            min_free_gb,
            color,
        ),
        Command::Sentinel(args) => sentinel::sentinel(args),
        Command::Bench(args) => bench::bench(args, color),
        Command::Runs { dir, format } => inspect::runs(&dir, format),
        Command::Show { run_dir, format } => inspect::show(&run_dir, format),
        Command::Report(args) => report::report(&args),
        Command::Trace { run_dir, out } => report::trace(&run_dir, out),
        Command::Feedback(args) => feedback::feedback(&args),
        Command::Serve {
            runs_dir,
            addr,
            allow_remote,
        } => serve::serve(runs_dir, addr, allow_remote),
        Command::Verify { run_dir } => inspect::verify(&run_dir, color),
        Command::InstallNode { comfyui_dir } => install_node::install_node(&comfyui_dir),
        Command::Docs { out, check } => generate::docs(out, check),
        Command::Schema { out_dir, check } => generate::schema(&out_dir, check),
        Command::Completions {
            out_dir,
            shell,
            check,
        } => generate::completions(&out_dir, shell, check),
        Command::Man { out_dir, check } => generate::man(&out_dir, check),
    }
}
