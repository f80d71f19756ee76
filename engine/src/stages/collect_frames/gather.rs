//! Where an attempt's frames come from and how they reach the run folder: a local output
//! folder listed, settled and copied, or a remote server's files downloaded with `/view`; both
//! into a staging folder that then replaces the instance's `frames/` whole.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::output::{FramesAttempt, MarkerOutput};
use super::comfy_files::{self, Listed, Remote, Upstream};
use super::{settle, skipped_files};
use crate::exec::{StageContext, StageFailure};
use crate::fsutil::write_atomic;
use crate::spec::model::{CollectFramesStage, FailureClass};

/// How deep a `**` pattern may walk below its literal folder.
const MAX_DEPTH: usize = 16;

/// What an attempt gathered into its staging folder: the names written, the files that could
/// not be, and the fallback notes so far.
type Gathered = (Vec<String>, Vec<String>, Vec<String>);

/// A staging folder or the instance's `frames/` that could not be made, filled or put in
/// place; `path` is the file or folder the operation failed on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub(super) struct StagingError {
    path: PathBuf,
    source: std::io::Error,
}

impl StagingError {
    /// The error of an operation on `path`, for `map_err`.
    fn at(path: &Path) -> impl FnOnce(std::io::Error) -> StagingError + '_ {
        move |source| StagingError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The frames of a local output folder: listed, settled, copied.
#[allow(clippy::too_many_arguments)]
pub(super) async fn collect_local(
    ctx: &StageContext,
    stage: &CollectFramesStage,
    up: &Upstream,
    out_dir: &Path,
    pattern: &str,
    matcher: &globset::GlobMatcher,
    staging: &Path,
    record: &mut FramesAttempt,
) -> Result<Gathered, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let base = comfy_files::literal_base(pattern);
    let depth = if pattern.contains("**") {
        MAX_DEPTH
    } else {
        pattern
            .split('/')
            .count()
            .saturating_sub(1 + base.components().count())
    };

    // The frames a detected marker (or `/history`, for the named node) lists are the only
    // ones to take, and whole files already.
    let named = super::named_frames(up, stage.node.as_deref());
    record.source = Some(named.as_ref().map_or("pattern", |(s, _)| s).to_owned());
    let vouched: HashSet<String> = named
        .as_ref()
        .map(|(_, n)| n.iter().cloned().collect())
        .unwrap_or_default();
    let only_named = named.is_some();

    let window = Duration::try_from_secs_f64(stage.stability_s).unwrap_or(Duration::from_secs(1));
    let cancel = ctx.cancel.clone();
    let settled = settle(
        || {
            comfy_files::list(out_dir, &base, matcher, depth).map(|mut listing| {
                if only_named {
                    listing.files.retain(|f| vouched.contains(&f.rel));
                    listing.skipped.retain(|(rel, _)| vouched.contains(rel));
                }
                listing
            })
        },
        |d| {
            let cancel = cancel.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(d) => true,
                    () = cancel.cancelled() => false,
                }
            }
        },
        window,
        stage.stability_retries,
        &vouched,
    )
    .await
    .map_err(|e| {
        if ctx.cancel.is_cancelled() {
            StageFailure::new(FailureClass::Timeout, e.to_string())
        } else {
            invalid(e.to_string())
        }
    })?;

    let mut notes: Vec<String> = Vec::new();
    if !settled.skipped.is_empty() {
        notes.push(format!(
            "{} matching entries were not collected: {}",
            settled.skipped.len(),
            settled
                .skipped
                .iter()
                .take(5)
                .map(|(f, why)| format!("{f} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !settled.unstable.is_empty() {
        notes.push(format!(
            "{} frames were still changing (or empty) after {} listings {} s apart and were not collected",
            settled.unstable.len(),
            settled.listings,
            stage.stability_s
        ));
    }
    if let Some((source, named)) = &named {
        let found = |rel: &String| {
            settled.stable.iter().any(|f| &f.rel == rel)
                || settled.unstable.contains(rel)
                || settled.skipped.iter().any(|(r, _)| r == rel)
        };
        let missing: Vec<&String> = named
            .iter()
            .filter(|rel| matcher.is_match(rel.as_str()) && !found(rel))
            .collect();
        if let Some(first) = missing.first() {
            notes.push(format!(
                "{} frames the {source} names were not found in the output folder; the first: {first}",
                missing.len()
            ));
        }
    }
    record.listings = Some(settled.listings);
    record.unstable = Some(settled.unstable.clone());
    record.skipped = Some(skipped_files(&settled.skipped));

    let (out2, staging2, files) = (out_dir.to_path_buf(), staging.to_path_buf(), settled.stable);
    let (names, problems) = tokio::task::spawn_blocking(move || copy_all(&out2, &files, &staging2))
        .await
        .map_err(|e| invalid(format!("copying frames failed: {e}")))?
        .map_err(|e| invalid(e.to_string()))?;
    Ok((names, problems, notes))
}

/// The frames of a remote server, downloaded with `/view`: those a detected marker lists
/// (`Marker.Files`), else those `/history` listed for the prompt (upstream's `files`; the
/// spec's save `node`'s only, when it names one), that the pattern matches. Both lists name
/// finished files only, so no stability window is waited.
pub(super) async fn collect_over_http(
    ctx: &StageContext,
    up: &Upstream,
    node: Option<&str>,
    remote: &Remote,
    matcher: &globset::GlobMatcher,
    staging: &Path,
    record: &mut FramesAttempt,
) -> Result<Gathered, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let folder = comfy_files::prefix_folder(&up.render.prefix);
    let mut notes = vec![remote.note("frames were")];
    let marker_files: Option<Vec<String>> = up
        .marker
        .as_ref()
        .and_then(MarkerOutput::listed_frames)
        .map(<[String]>::to_vec);
    // (file name, subfolder, type), as the server gave them.
    let (source, listed): (&str, Vec<(String, String, String)>) = match marker_files {
        Some(names) => (
            "marker",
            names
                .into_iter()
                .map(|n| (n, folder.clone(), "output".to_owned()))
                .collect(),
        ),
        // Without a marker's list: what `/history` lists, of the named save node only when
        // the spec names one (other save nodes may write under the same prefix).
        None => match &up.render.files {
            Some(files) => (
                if node.is_some() { "node" } else { "history" },
                files
                    .iter()
                    .filter(|f| node.is_none_or(|n| f.node == n))
                    .map(|f| (f.filename.clone(), f.subfolder.clone(), f.kind.clone()))
                    .collect(),
            ),
            None => {
                notes.push(
                    "no file list upstream (no detected marker's `Files`, no `files` from the queue stage): nothing to download"
                        .into(),
                );
                ("none", Vec::new())
            }
        },
    };
    record.source = Some(source.to_owned());
    record.listed = Some(listed.len());

    let mut skipped: Vec<(String, String)> = Vec::new();
    let mut fetch: Vec<comfy_files::Fetch> = Vec::new();
    for (filename, subfolder, kind) in &listed {
        let rel = comfy_files::server_rel(subfolder, filename);
        if !matcher.is_match(&rel) {
            continue;
        }
        if let Err(why) = comfy_files::check_server_file(filename, subfolder, kind, &folder) {
            skipped.push((rel, why.to_string()));
            continue;
        }
        if fetch.iter().any(|f| &f.filename == filename) {
            continue;
        }
        fetch.push(comfy_files::Fetch {
            filename: filename.clone(),
            subfolder: subfolder.clone(),
            dest: staging.join(filename),
        });
    }
    fetch.sort_by(|a, b| a.filename.cmp(&b.filename));
    if !skipped.is_empty() {
        notes.push(format!(
            "{} matching entries were not collected: {}",
            skipped.len(),
            skipped
                .iter()
                .take(5)
                .map(|(f, why)| format!("{f} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    record.skipped = Some(skipped_files(&skipped));

    let staging2 = staging.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_dir_all(&staging2);
        std::fs::create_dir_all(&staging2).map_err(StagingError::at(&staging2))
    })
    .await
    .map_err(|e| invalid(format!("downloading frames failed: {e}")))?
    .map_err(|e| invalid(e.to_string()))?;
    let client = remote.client()?;
    let downloaded = comfy_files::download_into(&client, &fetch, &ctx.cancel).await?;
    if let Some(first) = downloaded.retried.first() {
        notes.push(format!(
            "{} downloads got no answer and were asked for once more; the first: {first}",
            downloaded.retried.len()
        ));
    }
    record.retried = Some(downloaded.retried.clone());
    let mut names = Vec::with_capacity(fetch.len());
    let mut problems = Vec::new();
    for (f, r) in fetch.into_iter().zip(downloaded.results) {
        match r {
            Ok(()) => names.push(f.filename),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let staging2 = staging.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || comfy_files::sync_dir(&staging2)).await;
    Ok((names, problems, notes))
}

/// Copies `files` into `dest` (created anew). Returns the names written, in order, and the
/// files that could not be copied (they are left out, not fatal: the floor judges the count).
fn copy_all(
    root: &Path,
    files: &[Listed],
    dest: &Path,
) -> Result<(Vec<String>, Vec<String>), StagingError> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(StagingError::at(dest))?;
    let base_names: Vec<String> = files
        .iter()
        .map(|f| {
            Path::new(&f.rel)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    // A `**` pattern can match the same name in two folders: then the whole relative path
    // names each copy.
    let unique = base_names.iter().collect::<HashSet<_>>().len() == base_names.len();
    let names: Vec<String> = files
        .iter()
        .zip(base_names)
        .map(|(f, base)| {
            if unique {
                base
            } else {
                f.rel.replace('/', "__")
            }
        })
        .collect();
    let jobs: Vec<(&Listed, PathBuf)> = files
        .iter()
        .zip(&names)
        .map(|(f, n)| (f, dest.join(n)))
        .collect();
    let mut copied = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (result, name) in comfy_files::copy_into_staging(root, &jobs)
        .into_iter()
        .zip(names)
    {
        match result {
            Ok(()) => copied.push(name),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let names = copied;
    comfy_files::sync_dir(dest);
    Ok((names, problems))
}

/// Makes `staging` the instance's `frames/` (replacing the old one) and writes `frames.json`.
pub(super) fn promote_staging(
    staging: &Path,
    frames: &Path,
    kept: &Path,
    body: &[u8],
) -> Result<(), StagingError> {
    let old: PathBuf = frames.with_file_name(format!(".frames-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    if frames.exists() {
        std::fs::rename(frames, &old).map_err(StagingError::at(frames))?;
    }
    std::fs::rename(staging, frames).map_err(StagingError::at(staging))?;
    write_atomic(kept, body).map_err(StagingError::at(kept))?;
    let _ = std::fs::remove_dir_all(&old);
    if let Some(parent) = frames.parent() {
        comfy_files::sync_dir(parent);
    }
    Ok(())
}
