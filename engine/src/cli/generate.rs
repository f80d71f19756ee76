//! The commands that write generated files: `docs` (the spec reference), `schema` (the JSON
//! Schemas), `completions` (bash, zsh, fish) and `man` (the man pages). Each writes its files
//! atomically, or with `--check` compares them and writes nothing; tests compare the checked-in
//! copies the same way, so none can drift from the code.

use std::path::{Path, PathBuf};

use super::args::Shell;
use super::output::outln;
use crate::exit::ExitCode;

pub mod completions;
pub mod man;
pub mod schemas;
pub mod spec_reference;

pub use spec_reference::spec_reference;

/// `cinepipe docs`: `docs/spec.md`.
pub(crate) fn docs(out: PathBuf, check: bool) -> ExitCode {
    write_generated(&[(out, spec_reference())], check, "cinepipe docs")
}

/// `cinepipe schema`: the JSON Schemas in `schemas/`.
pub(crate) fn schema(out_dir: &Path, check: bool) -> ExitCode {
    write_generated(&in_dir(out_dir, schemas::files()), check, "cinepipe schema")
}

/// `cinepipe completions`: one script per shell in a folder, or one shell's script on stdout.
pub(crate) fn completions(out_dir: &Path, shell: Option<Shell>, check: bool) -> ExitCode {
    if let Some(shell) = shell {
        use std::io::Write as _;
        // A closed pipe is the reader's choice, as for every stdout of ours.
        let _ = std::io::stdout()
            .lock()
            .write_all(completions::script(shell).as_bytes());
        return ExitCode::Success;
    }
    write_generated(
        &in_dir(out_dir, completions::files()),
        check,
        "cinepipe completions",
    )
}

/// `cinepipe man`: `cinepipe.1` and one page per command.
pub(crate) fn man(out_dir: &Path, check: bool) -> ExitCode {
    write_generated(&in_dir(out_dir, man::pages()), check, "cinepipe man")
}

fn in_dir<N: AsRef<Path>>(dir: &Path, files: Vec<(N, String)>) -> Vec<(PathBuf, String)> {
    files
        .into_iter()
        .map(|(name, text)| (dir.join(name), text))
        .collect()
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
