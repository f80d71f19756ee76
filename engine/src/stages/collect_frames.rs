//! The `collect-frames` stage: find the attempt's frames in the ComfyUI output folder, copy
//! the finished ones into the run folder, and enforce the frame floor.
//!
//! - **Which files**: `pattern` (a glob relative to the output folder, `{{prefix}}` standing
//!   for the attempt's prefix), by default `<prefix>_*.png` — what SaveImage and
//!   `WriteDoneMarker` both write. `*` does not cross `/`.
//! - **Only the scene's own frames**: a workflow may hold more than one save node, all
//!   writing under the prefix. When a detected done marker lists its `Files`, exactly those
//!   (that the pattern matches) are the frames; else, when the spec names the save `node`,
//!   the files `/history` listed for that node; else every match of the pattern (with a
//!   note when `/history` shows more than one save node writing files it matches). A count
//!   that disagrees with a detected marker's `FrameCount` is a problem: more frames than it
//!   counts fail the attempt (`invalid-output`: nothing tells the extra files apart), fewer
//!   are collected with a note (the floor judges). Frames are kept in file-name order (the
//!   order the save node numbered them), never in the order a server listed its outputs.
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
//!   class `short-frames`; `"accept"` keeps it (not an empty one: no frame at all fails);
//!   `{ requeue = "render" }` fails with
//!   `short-frames` while the target has requeues left (the executor then runs `render` and
//!   the stages after it again); once none are left the scene is still short and fails with
//!   `short-frames`, unless `keep_best_short = true` keeps its best attempt (one with at least
//!   one frame) as a short scene.
//! - **The best attempt** is the one that meets the floor, else (short attempts, kept only
//!   with `keep_best_short`) the one with the most frames copied; a tie goes to the later
//!   attempt (its frames are the newest render of the same scene). `frames/` in the instance
//!   folder always holds the best attempt so far, so no requeue loses frames that were
//!   collected before it; `frames.json` beside it says which attempt they are.

use std::collections::HashSet;
use std::time::Duration;

use super::comfy_files::{self, ComfyFilesError, Listed, Output, Upstream};
use super::output::{
    FramesAttempt, FramesOutput, FramesRecord, MarkerOutput, SkippedFile, StageSystem,
};
use crate::artifact_metadata::Frames;
use crate::exec::{Attempt, BoxFuture, StageContext, StageFailure};
use crate::spec::model::{CollectFramesStage, FailureClass, OnShort, Stage as SpecStage};

mod gather;

use gather::{collect_local, collect_over_http, promote_staging};

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

/// Why the matches did not settle.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("cancelled while waiting for frames to settle")]
    Cancelled,
    #[error(transparent)]
    List(#[from] ComfyFilesError),
}

/// Lists the matches until every one is stable or the re-checks run out. `list` takes one
/// listing; `sleep` waits `window` (and says `false` when cancelled).
pub async fn settle<L, S, F>(
    mut list: L,
    mut sleep: S,
    window: Duration,
    retries: u32,
    vouched: &HashSet<String>,
) -> Result<Stable, SettleError>
where
    L: FnMut() -> Result<comfy_files::Listing, ComfyFilesError>,
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
            return Err(SettleError::Cancelled);
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

/// Where an attempt's frames are named: the detected marker's `Files` (in the prefix's
/// folder), else the files `/history` listed for the spec's save `node`; `None` when neither
/// names them (the pattern alone decides). Paths are relative to the output folder, sorted.
/// A workflow with more than one save node writes other files under the same prefix: only
/// the list of the node that made the frames tells them apart.
pub fn named_frames(up: &Upstream, node: Option<&str>) -> Option<(&'static str, Vec<String>)> {
    let folder = comfy_files::prefix_folder(&up.render.prefix);
    let (source, mut named): (&'static str, Vec<String>) =
        match up.marker.as_ref().and_then(MarkerOutput::listed_frames) {
            Some(files) => (
                "marker",
                files
                    .iter()
                    .map(|n| comfy_files::server_rel(&folder, n))
                    .collect(),
            ),
            None => {
                let node = node?;
                (
                    "node",
                    up.render
                        .files
                        .iter()
                        .flatten()
                        .filter(|f| f.node == node && f.kind == "output")
                        .map(|f| comfy_files::server_rel(&f.subfolder, &f.filename))
                        .collect(),
                )
            }
        };
    named.sort();
    named.dedup();
    Some((source, named))
}

/// The frame count a detected done marker states (`FrameCount`).
fn marker_count(up: &Upstream) -> Option<u32> {
    up.marker
        .as_ref()
        .filter(|m| m.done_marker_detected)
        .and_then(|m| m.marker.as_ref())
        .map(|m| m.frame_count)
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
    comfy_files::check_relative("prefix", &up.render.prefix).map_err(|e| invalid(e.to_string()))?;
    let pattern = frame_glob(stage.pattern.as_deref(), &up.render.prefix);
    comfy_files::check_relative("pattern", &pattern).map_err(|e| invalid(e.to_string()))?;
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
            collect_over_http(
                ctx,
                &up,
                stage.node.as_deref(),
                &remote,
                &matcher,
                &staging,
                record,
            )
            .await?
        }
    };
    if named_frames(&up, stage.node.as_deref()).is_none() {
        // Nothing names the frames: say so when `/history` shows several save nodes writing
        // files that the pattern takes.
        let mut writers: Vec<&str> = up
            .render
            .files
            .iter()
            .flatten()
            .filter(|f| {
                f.kind == "output"
                    && matcher.is_match(comfy_files::server_rel(&f.subfolder, &f.filename))
            })
            .map(|f| f.node.as_str())
            .collect();
        writers.sort_unstable();
        writers.dedup();
        if writers.len() > 1 {
            notes.push(format!(
                "the frames of save nodes {} match the pattern and were all collected; name the scene's with `node`",
                writers.join(", ")
            ));
        }
    }
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
    // The marker counts what its node wrote: more frames than that are another node's (or
    // another prompt's), which nothing here can tell apart; fewer are frames lost on the way.
    if let Some(stated) = marker_count(&up)
        && stated != count
    {
        let what = format!(
            "the done marker counts {stated} frames but {count} were collected (pattern `{pattern}`)"
        );
        if count > stated {
            record.notes = Some(notes);
            return Err(invalid(format!(
                "{what}: files of another save node share the prefix; have the marker list its `Files`, or name the save node with `node`"
            )));
        }
        notes.push(what);
    }
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
            .map_err(|e| invalid(e.to_string()))?;
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
        // An empty scene is not a short one: nothing was rendered to accept.
        OnShort::Accept if kept.files.is_empty() => Err(StageFailure::new(
            FailureClass::ShortFrames,
            format!(
                "no frame at all: {what}; on_short = \"accept\" keeps a short scene, not an empty one"
            ),
        )),
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
            // The spec asked for the best of the short attempts: keep it when it has frames.
            _ if stage.keep_best_short && !kept.files.is_empty() => {
                notes.push(format!(
                    "requeue budget of `{target}` spent with {what}; kept the best attempt (keep_best_short = true): {} frames from render attempt {}",
                    kept.files.len(),
                    kept.render_attempt
                ));
                Ok(finish(
                    &kept,
                    kept.files.len() < stage.min_frames as usize,
                    notes,
                ))
            }
            // Below the floor after the budget: a failed scene, never a success with fewer
            // frames (or none).
            _ => Err(StageFailure::new(
                FailureClass::ShortFrames,
                format!(
                    "short scene: {what}; the requeue budget of `{target}` is spent (best attempt: {} frames from render attempt {})",
                    kept.files.len(),
                    kept.render_attempt
                ),
            )),
        },
    }
}

#[cfg(test)]
mod tests;
