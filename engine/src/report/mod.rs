//! `cinepipe report`: one self-contained HTML file (no network, no script) for a run folder or a
//! sweep folder, rendered by Handlebars with HTML escaping from view models built out of the
//! folders' typed files (`rundir::history`, `artifact_metadata`, `sweep::verdict`).

use std::path::{Path, PathBuf};

mod html;
mod links;
mod run;
mod sweep;
mod thumbs;
mod timeline;
pub mod trace;

pub use thumbs::ThumbOptions;

/// The file a report is written to when no `-o` is given, inside the folder it reports on.
pub const REPORT_FILE: &str = "report.html";

/// What `cinepipe report` was given, as far as a report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    Run,
    Sweep,
    Bench,
}

/// Why no report was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("`{}` is not a run folder (run.json, events.jsonl) or a sweep folder (sweep.json)", path.display())]
    NotAFolder { path: PathBuf },
    #[error("`{}` is a bench folder; reports of benches are not built yet", path.display())]
    Bench { path: PathBuf },
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` does not parse: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("cannot render the report: {0}")]
    Render(String),
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub kind: FolderKind,
    pub path: PathBuf,
    pub bytes: usize,
    pub thumbnails: usize,
}

/// Which kind of folder `dir` is: a sweep (`sweep.json`), a bench (`results.json`), a run
/// (`run.json` or `events.jsonl`), or none.
pub fn folder_kind(dir: &Path) -> Option<FolderKind> {
    if dir.join(crate::sweep::execute::REPORT).is_file() {
        Some(FolderKind::Sweep)
    } else if dir.join("results.json").is_file() {
        Some(FolderKind::Bench)
    } else if dir.join(crate::rundir::MANIFEST).is_file()
        || dir.join(crate::rundir::EVENTS).is_file()
    {
        Some(FolderKind::Run)
    } else {
        None
    }
}

/// The report page of the run folder `dir` as `cinepipe serve` serves it: links relative to the
/// run folder, and a rating form under each scene.
pub fn run_page(dir: &Path, opts: ThumbOptions) -> Result<String, ReportError> {
    let links = links::Links::new(dir, &dir.join(REPORT_FILE));
    let view = run::RunView::read(dir, &links, opts)?;
    html::render_run(&view, true)
}

/// Percent-encodes a path for a URL (what the report's links do).
pub fn url_encode(path: &str) -> String {
    links::encode(path)
}

/// Writes the report of `dir` to `out` (atomically) and says what it wrote.
pub fn write_report(dir: &Path, out: &Path, opts: ThumbOptions) -> Result<Written, ReportError> {
    let kind = folder_kind(dir).ok_or_else(|| ReportError::NotAFolder {
        path: dir.to_owned(),
    })?;
    let links = links::Links::new(dir, out);
    let (html, thumbnails) = match kind {
        FolderKind::Bench => {
            return Err(ReportError::Bench {
                path: dir.to_owned(),
            });
        }
        FolderKind::Run => {
            let view = run::RunView::read(dir, &links, opts)?;
            let n = view.thumbnail_count();
            (html::render_run(&view, false)?, n)
        }
        FolderKind::Sweep => {
            let view = sweep::SweepView::read(dir, &links, opts)?;
            let n = view.thumbnail_count();
            (html::render_sweep(&view)?, n)
        }
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ReportError::Write {
            path: out.to_owned(),
            source,
        })?;
    }
    crate::fsutil::write_atomic(out, html.as_bytes()).map_err(|source| ReportError::Write {
        path: out.to_owned(),
        source,
    })?;
    Ok(Written {
        kind,
        path: out.to_owned(),
        bytes: html.len(),
        thumbnails,
    })
}

#[cfg(test)]
mod tests;
