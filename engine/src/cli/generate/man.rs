//! The man pages, generated from the clap definitions by `clap_mangen` and checked in under
//! `docs/man/`: `cinepipe.1` (with the environment and the exit codes) and `cinepipe-<command>.1`
//! for each command.

use clap::CommandFactory;

use crate::cli::args::Cli;
use crate::exit::ExitCode;

/// Every page, `(file name, roff text)`, the main page first.
pub fn pages() -> Vec<(String, String)> {
    // `cinepipe help` is the same text as `--help`; it gets no page of its own.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = vec![page(&cmd, &extra_sections())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(page(sub, ""));
    }
    out
}

fn page(cmd: &clap::Command, extra: &str) -> (String, String) {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    // Rendering into memory cannot fail; a page that somehow did would show up in the drift test.
    let _ = man.render(&mut buf);
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    text.push_str(extra);
    (man.get_filename(), text)
}

/// What the flags do not say: the variables cinepipe reads, and its exit codes (from the one
/// [`ExitCode`] enum, so the page and the code agree).
fn extra_sections() -> String {
    let mut s = String::from(".SH ENVIRONMENT\n");
    s.push_str(
        ".TP\n\\fBCINEPIPE_LOG\\fR\n\
         Which log lines cinepipe writes on stderr: a level (error, warn, info, debug, trace, off) \
         or comma\\-separated target=level directives (tracing\\-subscriber's env filter). \
         Default: info; with \\-\\-quiet, warnings and errors only.\n",
    );
    s.push_str(
        ".TP\n\\fBNO_COLOR\\fR\n\
         Set (to any value) to turn off colored diagnostics under \\-\\-color auto.\n",
    );
    s.push_str(".SH \"EXIT STATUS\"\n");
    for code in ExitCode::ALL {
        s.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            code.code(),
            code.meaning().replace('-', "\\-")
        ));
    }
    s
}
