//! The `collect-frames` stage: find the attempt's frames in the ComfyUI output folder, copy
//! the finished ones into the run folder, and enforce the frame floor.
//!
//! - **Which files**: `pattern` (a glob relative to the output folder, `{{prefix}}` standing
//!   for the attempt's prefix), by default `<prefix>_*.png` — what SaveImage and
//!   `WriteDoneMarker` both write. `*` does not cross `/`.
//! - **Finished files**: a file is copied only when its size and mtime are the same at two
//!   listings `stability_s` apart; files still changing are listed again, up to
//!   `stability_retries` times, and then left out (and named in the attempt's record). Frames
//!   that a detected done marker lists (`Marker.Files` of `await-marker`) need no window:
//!   `WriteDoneMarker` renames each frame into place whole before it writes the marker.
//!   Empty files never count.
//! - **A remote server** (a service without `output_dir`): there is no folder to list. The
//!   candidates are the files a detected marker lists (`Marker.Files`, names in the prefix's
//!   folder), else those the `queue` stage recorded from `/history` (upstream's `files`),
//!   filtered by the same pattern. Both lists name finished files only (the marker is written
//!   after its frames, `/history` after the prompt ended), so no stability window is waited.
//!   Each must be of type `output`, a plain name (no `/`, `\`, `..`, not empty) in the
//!   prefix's folder, or it is left out with a note; the rest are downloaded with `/view`
//!   under their base names into the staging folder and flushed together, like local copies.
//!   A download that gets no answer is sent once more; a file that is not there (404), is
//!   empty or fails to download is left out with a note.
//! - **Never out of the output folder**: the prefix and pattern must be relative without `..`;
//!   no symbolic link is followed, neither a folder on the way nor a frame (a frame is opened
//!   with `O_NOFOLLOW` and must still be the file that was listed). A server's names are
//!   never used as paths unchecked.
//! - **The floor**: fewer than `min_frames` is a short scene. `on_short = "fail"` fails with
//!   class `short-frames`; `"accept"` keeps it; `{ requeue = "render" }` fails with
//!   `short-frames` while the target has requeues left (the executor then runs `render` and
//!   the stages after it again) and, once none are left, keeps the best attempt.
//! - **The best attempt** is the one with the most frames copied; a tie goes to the later
//!   attempt (its frames are the newest render of the same scene). `frames/` in the instance
//!   folder always holds the best attempt so far, so no requeue loses frames that were
//!   collected before it; `frames.json` beside it says which attempt they are.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::comfy_files::{self, Listed, Output, Remote, Upstream};
use super::output::{
    FramesAttempt, FramesOutput, FramesRecord, MarkerOutput, SkippedFile, StageSystem,
};
use crate::exec::{Attempt, BoxFuture, StageContext, StageFailure};
use crate::fsutil::write_atomic;
use crate::spec::model::{CollectFramesStage, FailureClass, OnShort, Stage as SpecStage};
use crate::telemetry::Frames;

/// How deep a `**` pattern may walk below its literal folder.
const MAX_DEPTH: usize = 16;

/// What the stability check decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stable {
    /// Files to copy, sorted by path.
    pub stable: Vec<Listed>,
    /// Files still changing after the last re-check (or empty), by path.
    pub unstable: Vec<String>,
    /// Matches that are not regular files (symbolic links...), with why.
    pub skipped: Vec<(String, String)>,
    /// Listings taken.
    pub listings: u32,
}

/// Files of `cur` whose size and mtime are what they were in `prev` (and not empty), or that
/// the marker vouches for; the rest are unstable.
pub fn split_stable(
    prev: &[Listed],
    cur: &[Listed],
    vouched: &HashSet<String>,
) -> (Vec<Listed>, Vec<Listed>) {
    cur.iter().cloned().partition(|f| {
        f.size > 0
            && (vouched.contains(&f.rel)
                || prev
                    .iter()
                    .any(|p| p.rel == f.rel && p.size == f.size && p.mtime == f.mtime))
    })
}

/// Lists the matches until every one is stable or the re-checks run out. `list` takes one
/// listing; `sleep` waits `window` (and says `false` when cancelled).
pub async fn settle<L, S, F>(
    mut list: L,
    mut sleep: S,
    window: Duration,
    retries: u32,
    vouched: &HashSet<String>,
) -> Result<Stable, String>
where
    L: FnMut() -> Result<comfy_files::Listing, String>,
    S: FnMut(Duration) -> F,
    F: std::future::Future<Output = bool>,
{
    let first = list()?;
    let mut out = Stable {
        listings: 1,
        skipped: first.skipped,
        ..Stable::default()
    };
    let mut prev = first.files;
    let all_vouched =
        |files: &[Listed]| files.iter().all(|f| f.size > 0 && vouched.contains(&f.rel));
    if window.is_zero() || all_vouched(&prev) {
        let (stable, unstable) = split_stable(&prev, &prev, vouched);
        out.stable = stable;
        out.unstable = unstable.into_iter().map(|f| f.rel).collect();
        return Ok(out);
    }
    for _ in 0..=retries {
        if !sleep(window).await {
            return Err("cancelled while waiting for frames to settle".to_owned());
        }
        let cur = list()?;
        out.listings += 1;
        out.skipped = cur.skipped;
        let (stable, unstable) = split_stable(&prev, &cur.files, vouched);
        out.stable = stable;
        out.unstable = unstable.iter().map(|f| f.rel.clone()).collect();
        if unstable.is_empty() {
            break;
        }
        prev = cur.files;
    }
    Ok(out)
}

/// The frame glob for an attempt: `pattern` with `{{prefix}}` replaced by the escaped prefix,
/// or `<prefix>_*.png`.
pub fn frame_glob(pattern: Option<&str>, prefix: &str) -> String {
    let escaped = globset::escape(prefix);
    match pattern {
        Some(p) => p.replace("{{prefix}}", &escaped),
        None => format!("{escaped}_*.png"),
    }
}

/// The `collect-frames` kind for the executor.
pub struct CollectFrames;

impl crate::exec::Stage for CollectFrames {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(SpecStage::CollectFrames(stage)) = ctx.stage() else {
                return Attempt::from(Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the collect-frames stage was handed a stage of another kind",
                )));
            };
            let mut seen = FramesAttempt::default();
            let result = attempt(ctx, stage, &mut seen)
                .await
                .and_then(|out| Attempt::output(&out));
            let record = FramesRecord::new(ctx.attempt, &result, seen);
            Attempt::recorded(result, &record)
        })
    }
}

/// Files left out, with why, as the attempt record lists them.
fn skipped_files(skipped: &[(String, String)]) -> Vec<SkippedFile> {
    skipped
        .iter()
        .map(|(file, why)| SkippedFile {
            file: file.clone(),
            why: why.clone(),
        })
        .collect()
}

/// What `frames.json` says about the frames in `frames/`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Kept {
    /// The collect-frames attempt that copied them.
    attempt: u32,
    /// The render (queue) attempt that made them.
    render_attempt: u32,
    prefix: String,
    /// File names in `frames/`, in order.
    files: Vec<String>,
}

async fn attempt(
    ctx: &StageContext,
    stage: &CollectFramesStage,
    record: &mut FramesAttempt,
) -> Result<FramesOutput, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let up = Upstream::find(ctx)?;
    comfy_files::check_relative("prefix", &up.render.prefix).map_err(invalid)?;
    let pattern = frame_glob(stage.pattern.as_deref(), &up.render.prefix);
    comfy_files::check_relative("pattern", &pattern).map_err(invalid)?;
    let matcher = globset::GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| invalid(format!("pattern `{pattern}` is not a valid glob: {e}")))?
        .compile_matcher();
    let output = comfy_files::output(ctx, &up)?;
    let render_attempt = up.attempt.unwrap_or(ctx.attempt);
    record.prefix = Some(up.render.prefix.clone());
    record.pattern = Some(pattern.clone());
    record.render_attempt = Some(render_attempt);

    // This attempt's frames go into a staging folder first.
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let staging = inst.join(format!(".attempt-{}", ctx.attempt));
    let (names, problems, mut notes) = match output {
        Output::Local(out_dir) => {
            collect_local(
                ctx, stage, &up, &out_dir, &pattern, &matcher, &staging, record,
            )
            .await?
        }
        Output::Remote(remote) => {
            collect_over_http(ctx, &up, &remote, &matcher, &staging, record).await?
        }
    };
    if !problems.is_empty() {
        notes.push(format!(
            "{} frames could not be copied: {}",
            problems.len(),
            problems
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
    record.frame_count = Some(count);
    let short = count < stage.min_frames;

    // Keep the best attempt in `frames/`.
    let frames_dir = inst.join("frames");
    let kept_file = inst.join("frames.json");
    let previous: Option<Kept> = std::fs::read(&kept_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|_| frames_dir.is_dir());
    let this = Kept {
        attempt: ctx.attempt,
        render_attempt,
        prefix: up.render.prefix.clone(),
        files: names,
    };
    let promote = !short
        || previous
            .as_ref()
            .is_none_or(|p| this.files.len() >= p.files.len());
    let kept = if promote {
        let (s, f, k) = (staging.clone(), frames_dir.clone(), kept_file.clone());
        let body = serde_json::to_vec_pretty(&this).unwrap_or_default();
        tokio::task::spawn_blocking(move || promote_staging(&s, &f, &k, &body))
            .await
            .map_err(|e| invalid(format!("keeping frames failed: {e}")))?
            .map_err(invalid)?;
        this.clone()
    } else {
        let _ = std::fs::remove_dir_all(&staging);
        previous.clone().unwrap_or_else(|| this.clone())
    };

    let frames = |k: &Kept, short: bool| {
        let paths: Vec<String> = k
            .files
            .iter()
            .map(|n| comfy_files::run_relative(&ctx.run_dir, &frames_dir.join(n)))
            .collect();
        Frames {
            count: u32::try_from(k.files.len()).unwrap_or(u32::MAX),
            min_frames: stage.min_frames,
            short,
            directory: (!k.files.is_empty())
                .then(|| comfy_files::run_relative(&ctx.run_dir, &frames_dir)),
            paths,
            best_attempt: (!k.files.is_empty()).then_some(k.render_attempt),
        }
    };
    let finish = |k: &Kept, short: bool, notes: Vec<String>| FramesOutput {
        render: up.render.clone(),
        frames: frames(k, short),
        frames_collected_this_attempt: count,
        system: StageSystem {
            fallback_notes: notes,
        },
    };
    record.notes = Some(notes.clone());

    if !short {
        return Ok(finish(&kept, false, notes));
    }
    let what = format!(
        "{count} of {} frames for `{}` (pattern `{pattern}`)",
        stage.min_frames, up.render.prefix
    );
    match &stage.on_short {
        OnShort::Accept => {
            notes.push(format!(
                "short scene accepted (on_short = \"accept\"): {what}"
            ));
            Ok(finish(
                &kept,
                kept.files.len() < stage.min_frames as usize,
                notes,
            ))
        }
        OnShort::Fail => Err(StageFailure::new(
            FailureClass::ShortFrames,
            format!("short scene: {what}"),
        )),
        OnShort::Requeue(target) => match ctx.requeues_left {
            Some(n) if n > 0 => Err(StageFailure::new(
                FailureClass::ShortFrames,
                format!("short scene: {what}; requeueing into `{target}` ({n} left)"),
            )),
            _ => {
                notes.push(format!(
                    "requeue budget of `{target}` spent with {what}; kept the best attempt: {} frames from render attempt {}",
                    kept.files.len(),
                    kept.render_attempt
                ));
                Ok(finish(
                    &kept,
                    kept.files.len() < stage.min_frames as usize,
                    notes,
                ))
            }
        },
    }
}

/// What an attempt gathered into its staging folder: the names written, the files that could
/// not be, and the fallback notes so far.
type Gathered = (Vec<String>, Vec<String>, Vec<String>);

/// The frames of a local output folder: listed, settled, copied.
#[allow(clippy::too_many_arguments)]
async fn collect_local(
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

    // The frames a detected marker lists are whole files already.
    let folder_rel = Path::new(&up.render.prefix)
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let vouched: HashSet<String> = up
        .marker
        .as_ref()
        .and_then(MarkerOutput::listed_frames)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| folder_rel.join(n).to_str().map(str::to_owned))
        .collect();

    let window = Duration::try_from_secs_f64(stage.stability_s).unwrap_or(Duration::from_secs(1));
    let cancel = ctx.cancel.clone();
    let settled = settle(
        || comfy_files::list(out_dir, &base, matcher, depth),
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
            StageFailure::new(FailureClass::Timeout, e)
        } else {
            invalid(e)
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
    record.listings = Some(settled.listings);
    record.unstable = Some(settled.unstable.clone());
    record.skipped = Some(skipped_files(&settled.skipped));

    let (out2, staging2, files) = (out_dir.to_path_buf(), staging.to_path_buf(), settled.stable);
    let (names, problems) = tokio::task::spawn_blocking(move || copy_all(&out2, &files, &staging2))
        .await
        .map_err(|e| invalid(format!("copying frames failed: {e}")))?
        .map_err(invalid)?;
    Ok((names, problems, notes))
}

/// The frames of a remote server, downloaded with `/view`: those a detected marker lists
/// (`Marker.Files`), else those `/history` listed for the prompt (upstream's `files`), that
/// the pattern matches. Both lists name finished files only, so no stability window is waited.
async fn collect_over_http(
    ctx: &StageContext,
    up: &Upstream,
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
        None => match &up.render.files {
            Some(files) => (
                "history",
                files
                    .iter()
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
            skipped.push((rel, why));
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
        std::fs::create_dir_all(&staging2).map_err(|e| format!("{}: {e}", staging2.display()))
    })
    .await
    .map_err(|e| invalid(format!("downloading frames failed: {e}")))?
    .map_err(invalid)?;
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
            Err(e) => problems.push(e),
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
) -> Result<(Vec<String>, Vec<String>), String> {
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
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
            Err(e) => problems.push(e),
        }
    }
    let names = copied;
    comfy_files::sync_dir(dest);
    Ok((names, problems))
}

/// Makes `staging` the instance's `frames/` (replacing the old one) and writes `frames.json`.
fn promote_staging(staging: &Path, frames: &Path, kept: &Path, body: &[u8]) -> Result<(), String> {
    let old: PathBuf = frames.with_file_name(format!(".frames-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&old);
    if frames.exists() {
        std::fs::rename(frames, &old).map_err(|e| format!("{}: {e}", frames.display()))?;
    }
    std::fs::rename(staging, frames).map_err(|e| format!("{}: {e}", staging.display()))?;
    write_atomic(kept, body).map_err(|e| format!("{}: {e}", kept.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    if let Some(parent) = frames.parent() {
        comfy_files::sync_dir(parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::time::SystemTime;

    fn f(rel: &str, size: u64, t: u64) -> Listed {
        Listed {
            rel: rel.to_owned(),
            size,
            mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(t)),
        }
    }

    fn listing(files: Vec<Listed>) -> comfy_files::Listing {
        comfy_files::Listing {
            files,
            skipped: vec![],
        }
    }

    fn run_settle(seq: Vec<Vec<Listed>>, retries: u32, vouched: &[&str]) -> Stable {
        let seq = RefCell::new(seq.into_iter());
        let last = RefCell::new(Vec::new());
        let vouched: HashSet<String> = vouched.iter().map(|s| (*s).to_owned()).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(settle(
            || {
                let next = seq
                    .borrow_mut()
                    .next()
                    .unwrap_or_else(|| last.borrow().clone());
                last.replace(next.clone());
                Ok(listing(next))
            },
            |_| async { true },
            Duration::from_millis(1),
            retries,
            &vouched,
        ))
        .expect("settle")
    }

    #[test]
    fn files_unchanged_over_the_window_are_stable() {
        let s = run_settle(
            vec![
                vec![f("a", 10, 1), f("b", 10, 1)],
                vec![f("a", 10, 1), f("b", 10, 1)],
            ],
            3,
            &[],
        );
        assert_eq!(s.stable.len(), 2);
        assert!(s.unstable.is_empty());
        assert_eq!(s.listings, 2);
    }

    #[test]
    fn a_growing_file_is_rechecked_then_left_out() {
        // `b` grows at every listing: after 1 + 2 re-checks it is still changing.
        let seq = vec![
            vec![f("a", 10, 1), f("b", 1, 1)],
            vec![f("a", 10, 1), f("b", 2, 2)],
            vec![f("a", 10, 1), f("b", 3, 3)],
            vec![f("a", 10, 1), f("b", 4, 4)],
        ];
        let s = run_settle(seq, 2, &[]);
        assert_eq!(
            s.stable.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(s.unstable, ["b"]);
        assert_eq!(s.listings, 4);
    }

    #[test]
    fn a_file_that_settles_within_the_retries_is_kept() {
        let seq = vec![
            vec![f("a", 1, 1)],
            vec![f("a", 5, 2), f("b", 5, 2)],
            vec![f("a", 5, 2), f("b", 5, 2)],
        ];
        let s = run_settle(seq, 5, &[]);
        assert_eq!(s.stable.len(), 2);
        assert!(s.unstable.is_empty());
        assert_eq!(s.listings, 3);
    }

    #[test]
    fn empty_files_never_count_and_vouched_files_need_no_window() {
        let s = run_settle(vec![vec![f("a", 0, 1)], vec![f("a", 0, 1)]], 0, &[]);
        assert!(s.stable.is_empty());
        assert_eq!(s.unstable, ["a"]);
        // Everything vouched for: one listing, no wait.
        let s = run_settle(
            vec![vec![f("p/a", 3, 1), f("p/b", 3, 1)]],
            3,
            &["p/a", "p/b"],
        );
        assert_eq!((s.stable.len(), s.listings), (2, 1));
    }

    #[test]
    fn globs_from_the_prefix() {
        assert_eq!(
            frame_glob(None, "cinepipe/r/s/a1/frame"),
            "cinepipe/r/s/a1/frame_*.png"
        );
        assert_eq!(frame_glob(None, "odd[1]/f*"), "odd[[]1[]]/f[*]_*.png");
        assert_eq!(frame_glob(Some("{{prefix}}_*.webp"), "p/f"), "p/f_*.webp");
        let g = globset::GlobBuilder::new(&frame_glob(None, "p/f"))
            .literal_separator(true)
            .build()
            .expect("glob")
            .compile_matcher();
        assert!(g.is_match("p/f_00001_.png"));
        assert!(!g.is_match("p/f_00001_.png/x"));
        assert!(!g.is_match("p/f.done"));
        assert!(!g.is_match("p/ff_00001_.png"));
        assert!(!g.is_match("p/.f_00001_.png.tmp"));
    }
}
