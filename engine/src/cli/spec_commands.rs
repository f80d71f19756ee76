//! The commands that read a spec and print what it says: `validate`, `plan` and `graph`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::args::{GraphFormat, PlanFormat};
use super::output::{exit_for, outln, render};
use crate::exit::ExitCode;
use crate::plan::Plan;
use crate::spec;

/// A folder given to `validate` could not be searched for specs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CollectError {
    #[error("cannot read folder `{}`: {source}", dir.display())]
    Folder {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read `{}`: {source}", path.display())]
    Entry {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `cinepipe plan`: the resolved values and the stage order, as text or JSON.
pub(crate) fn plan(
    path: &Path,
    profile: Option<&str>,
    format: PlanFormat,
    color: bool,
) -> ExitCode {
    with_plan(path, profile, color, |plan, w| match format {
        PlanFormat::Text => plan.write_text(w),
        PlanFormat::Json => plan.write_json(w),
    })
}

/// `cinepipe graph`: the stage graph for Graphviz or Mermaid.
pub(crate) fn graph(path: &Path, format: GraphFormat, color: bool) -> ExitCode {
    with_plan(path, None, color, |plan, w| match format {
        GraphFormat::Dot => w.write_all(plan.to_dot().as_bytes()),
        GraphFormat::Mermaid => w.write_all(plan.to_mermaid().as_bytes()),
    })
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

/// Finds the specs to check: files as given, folders searched for `*.toml`, sorted.
fn collect_specs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CollectError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let folder = |source| CollectError::Folder {
                    dir: dir.clone(),
                    source,
                };
                for entry in std::fs::read_dir(&dir).map_err(folder)? {
                    let entry = entry.map_err(folder)?;
                    let path = entry.path();
                    let ft = entry.file_type().map_err(|source| CollectError::Entry {
                        path: path.clone(),
                        source,
                    })?;
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

/// `cinepipe validate`: every spec checked completely; the worst exit code wins.
pub(crate) fn validate(paths: &[PathBuf], quiet: bool, color: bool) -> ExitCode {
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
        // A sweep's `suite.toml` beside the specs it names is checked as a suite.
        if path
            .file_name()
            .is_some_and(|n| n == crate::sweep::suite::SUITE_FILE)
        {
            let folder = path.parent().unwrap_or(std::path::Path::new("."));
            match crate::sweep::suite::load(folder) {
                Ok(suite) => {
                    if !quiet {
                        let n = suite.specs.len();
                        let plural = if n == 1 { "" } else { "s" };
                        outln!("ok       {} (suite of {n} spec{plural})", path.display());
                    }
                }
                Err(crate::sweep::suite::SuiteError::Invalid(errors)) => {
                    bad += 1;
                    eprint!("{}", render(&errors, color));
                    worst = ExitCode::InvalidSpec;
                }
                Err(e) => {
                    bad += 1;
                    eprintln!("error: {e}");
                    worst = ExitCode::InvalidSpec;
                }
            }
            continue;
        }
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
