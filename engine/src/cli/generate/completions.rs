//! Shell completions (bash, zsh, fish), generated from the clap definitions by `clap_complete`
//! and checked in under `completions/`.

use clap::CommandFactory;
use clap_complete::Generator;

use crate::cli::args::{Cli, Shell};

/// The command the scripts complete.
const BIN: &str = "cinepipe";

/// The shells a script is written for, in the order the files are written.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

fn generator(shell: Shell) -> clap_complete::Shell {
    match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    }
}

/// The completion script of one shell.
pub fn script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(generator(shell), &mut cmd, BIN, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Every script with the file name its shell looks for: `cinepipe.bash`, `_cinepipe` (zsh
/// loads completion functions by that name from `$fpath`), `cinepipe.fish`.
pub fn files() -> Vec<(String, String)> {
    SHELLS
        .iter()
        .map(|&shell| (generator(shell).file_name(BIN), script(shell)))
        .collect()
}
