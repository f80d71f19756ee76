//! The `await-marker` stage: wait for `<output_dir>/<prefix>.done`, which the project's
//! `WriteDoneMarker` node renames into place after the last frame, then read and check it.
//!
//! The wait is driven by file-system events (`notify`: inotify on Linux), so the stage acts
//! within a millisecond or so of the rename, with a polling fallback every `poll_interval_s`
//! for where events do not arrive (network file systems, an exhausted inotify limit). A marker
//! that already exists is found at once: the watch is set up *before* the first look, so a
//! rename between the two cannot be missed.
//!
//! **A remote server** (a service without `output_dir`, see [`super::comfy_files::output`]):
//! the marker is asked for with `GET /view?filename=<name>.done&subfolder=<prefix's
//! folder>&type=output` every `poll_interval_s` until `timeout_s` ([`wait_for_view`]). A 404 is
//! "not yet"; a request that gets no answer, times out (the service's `timeout_s`) or gets a
//! 5xx is noted once (with a count) and the polling goes on; another 4xx or a body over 1 MiB
//! fails the attempt at once; a cancel returns at once. A found marker is checked as a local
//! one is; its output says `DetectedBy = "http"`, `DoneMarkerPath` is the `/view` URL, and a
//! fallback note says the marker was read over HTTP because the service has no `output_dir`.
//!
//! On timeout, `on_timeout = "forced-copy"` copies the frames that exist into the instance
//! folder, writes a debug dump (a listing of the prefix folder, and `/history` and `/queue`
//! when the server answers) and succeeds with `ForcedCopyTriggered`; `"fail"` fails the
//! attempt with class `timeout`. For a remote server, "the frames that exist" are those
//! `/history/{prompt_id}` lists for the prompt (type `output`, in the prefix's folder, named
//! `<prefix>_*.png`, each a plain name), downloaded with `/view`, and the dump's `listing` is
//! that history file list (`"source": "history"`) in place of the folder's. Upstream's keys are
//! passed on (see [`super::comfy_files`]). Failed attempts and forced copies leave
//! `attempt-<n>.json` in the instance folder; a found marker's record is the stage's output
//! (`output.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::comfy_files::{self, Output, Remote, Upstream};
use crate::clients::comfyui::messages::{OutputFile, parse_history};
use crate::clients::comfyui::{ComfyClient, ComfyError};
use crate::exec::{BoxFuture, StageContext, StageFailure};
use crate::fsutil::write_atomic;
use crate::spec::model::{AwaitMarkerStage, FailureClass, OnTimeout, Stage as SpecStage};
use crate::telemetry::Timestamp;

/// Largest marker read: it is a few dozen bytes (plus the file list).
const MAX_MARKER_BYTES: u64 = 1 << 20;

/// How the marker was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// It was there at the first look.
    Existing,
    /// A file-system event woke the wait.
    Event,
    /// A poll found it.
    Poll,
    /// A `/view` request found it (a remote server: no output folder on this machine).
    Http,
}

/// How a wait for a file ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitOutcome {
    Found {
        waited: Duration,
        via: Detection,
        /// Why events were not available, when they were not (polling only).
        note: Option<String>,
    },
    TimedOut {
        waited: Duration,
        note: Option<String>,
    },
    Cancelled,
}

/// The deepest folder on the way from `root` to `folder` that exists (no symbolic links
/// followed), to watch until `folder` itself appears.
fn deepest_existing(root: &Path, folder: &Path) -> PathBuf {
    let mut best = root.to_path_buf();
    let Ok(rel) = folder.strip_prefix(root) else {
        return best;
    };
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => best.clone_from(&p),
            _ => break,
        }
    }
    best
}

/// Waits until `path` (inside `root`) is a regular file, by file-system events and a poll
/// every `poll`, for at most `timeout`.
pub async fn wait_for_file(
    root: &Path,
    path: &Path,
    timeout: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> WaitOutcome {
    use notify::Watcher;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let folder = path.parent().unwrap_or(root).to_path_buf();
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut note = None;
    let mut watcher = {
        let wake = wake.clone();
        // `notify_one` keeps a permit when nobody waits yet, so an event between two looks
        // is not lost.
        match notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok() {
                wake.notify_one();
            }
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                note = Some(format!("file-system events unavailable ({e}); polling"));
                None
            }
        }
    };
    let mut watched: Option<PathBuf> = None;
    let mut first = true;
    let mut via = Detection::Existing;
    loop {
        // Watch the deepest folder that exists; until the marker's own folder exists, move
        // the watch down as folders appear. Re-checked after each watch: a folder made between
        // the look and the watch would otherwise go unseen until the next poll.
        while let Some(w) = watcher.as_mut() {
            let target = deepest_existing(root, &folder);
            if watched.as_ref() == Some(&target) {
                break;
            }
            if let Some(old) = watched.take() {
                let _ = w.unwatch(&old);
            }
            match w.watch(&target, notify::RecursiveMode::NonRecursive) {
                Ok(()) => watched = Some(target),
                Err(e) => {
                    note = Some(format!("cannot watch {} ({e}); polling", target.display()));
                    watcher = None;
                }
            }
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
            return WaitOutcome::Found {
                waited: started.elapsed(),
                via: if first { Detection::Existing } else { via },
                note,
            };
        }
        first = false;
        tokio::select! {
            () = wake.notified() => via = Detection::Event,
            () = tokio::time::sleep(poll) => via = Detection::Poll,
            () = tokio::time::sleep_until(deadline) => {
                // One last look: the deadline and the rename may have raced.
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
                    return WaitOutcome::Found { waited: started.elapsed(), via: Detection::Poll, note };
                }
                return WaitOutcome::TimedOut { waited: started.elapsed(), note };
            }
            () = cancel.cancelled() => return WaitOutcome::Cancelled,
        }
    }
}

/// The marker's content, as `WriteDoneMarker` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MarkerBody {
    pub timestamp: Timestamp,
    pub frame_count: u32,
    /// The frame files (base names), when the writer lists them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// Reads and checks a marker: a JSON object with an RFC 3339 `Timestamp` and a non-negative
/// integer `FrameCount`; `Files`, when present, lists `FrameCount` base names.
pub fn parse_marker(bytes: &[u8]) -> Result<MarkerBody, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let ts = obj
        .get("Timestamp")
        .and_then(Value::as_str)
        .ok_or("no `Timestamp` string")?;
    let timestamp = ts
        .parse::<Timestamp>()
        .map_err(|e| format!("`Timestamp` {ts:?} is not an ISO-8601 instant: {e}"))?;
    let frame_count = obj
        .get("FrameCount")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("`FrameCount` is not a non-negative integer")?;
    let files = match obj.get("Files") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let names: Option<Vec<String>> = a
                .iter()
                .map(|f| {
                    f.as_str()
                        .filter(|s| !s.is_empty() && !s.contains(['/', '\\']) && *s != "..")
                        .map(str::to_owned)
                })
                .collect();
            let names = names.ok_or("`Files` holds something other than plain file names")?;
            if names.len() != frame_count as usize {
                return Err(format!(
                    "`Files` lists {} files but `FrameCount` is {frame_count}",
                    names.len()
                ));
            }
            Some(names)
        }
        Some(_) => return Err("`Files` is not a list".to_owned()),
    };
    Ok(MarkerBody {
        timestamp,
        frame_count,
        files,
    })
}

fn read_marker(path: &Path) -> Result<MarkerBody, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(MAX_MARKER_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    parse_marker(&bytes)
}

/// The `await-marker` kind for the executor.
pub struct AwaitMarker;

impl crate::exec::Stage for AwaitMarker {
    fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
        Box::pin(async move {
            let Some(SpecStage::AwaitMarker(stage)) = ctx.stage() else {
                return Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the await-marker stage was handed a stage of another kind",
                ));
            };
            let result = attempt(ctx, stage).await;
            // A detected marker is the fast path (the engine acts on the rename within a
            // millisecond): its record is the output itself, which the executor writes to
            // `output.json`, so no fsync'd `attempt-<n>.json` stands between the rename and
            // the return. Failures and forced copies, which no output file records, get one.
            if let Ok(v) = &result
                && v["DoneMarkerDetected"] == true
            {
                return result;
            }
            let record = match &result {
                Ok(v) => json!({ "attempt": ctx.attempt, "outcome": "succeeded", "output": v }),
                Err(f) => json!({
                    "attempt": ctx.attempt, "outcome": "failed",
                    "failure_class": f.class, "error": f.message,
                }),
            };
            super::write_attempt_record(ctx, &record)?;
            result
        })
    }
}

async fn attempt(ctx: &StageContext, stage: &AwaitMarkerStage) -> Result<Value, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let up = Upstream::find(&ctx.inputs)?;
    // Before anything is asked of a disk or a server.
    comfy_files::check_relative("prefix", &up.prefix).map_err(invalid)?;
    comfy_files::check_relative("marker_suffix", &format!("x{}", stage.marker_suffix))
        .map_err(invalid)?;
    let timeout = Duration::try_from_secs_f64(stage.timeout_s).unwrap_or(Duration::from_secs(60));
    let poll =
        Duration::try_from_secs_f64(stage.poll_interval_s).unwrap_or(Duration::from_millis(250));
    match comfy_files::output(ctx, &up)? {
        Output::Local(out_dir) => local(ctx, stage, up, &out_dir, timeout, poll).await,
        Output::Remote(remote) => over_http(ctx, stage, up, &remote, timeout, poll).await,
    }
}

/// The output of a found marker.
fn found(
    mut out: Map<String, Value>,
    waited: Duration,
    path: String,
    via: Detection,
    body: &MarkerBody,
    notes: Vec<String>,
) -> Value {
    out.insert("DoneMarkerDetected".into(), true.into());
    out.insert("DoneMarkerWaitSeconds".into(), json!(waited.as_secs_f64()));
    out.insert("DoneMarkerPath".into(), path.into());
    out.insert("ForcedCopyTriggered".into(), false.into());
    out.insert("ForcedCopyDebugPath".into(), Value::Null);
    out.insert("DetectedBy".into(), json!(via));
    out.insert("Marker".into(), json!(body));
    out.insert("System".into(), json!({ "FallbackNotes": notes }));
    Value::Object(out)
}

/// The output of a forced copy.
fn forced_output(
    mut out: Map<String, Value>,
    secs: f64,
    path: String,
    forced: Forced,
    timeout_s: f64,
    mut notes: Vec<String>,
) -> Value {
    notes.push(format!(
        "done marker not seen within {timeout_s} s; copied the {} frames present (forced copy)",
        forced.count
    ));
    out.insert("DoneMarkerDetected".into(), false.into());
    out.insert("DoneMarkerWaitSeconds".into(), json!(secs));
    out.insert("DoneMarkerPath".into(), path.into());
    out.insert("ForcedCopyTriggered".into(), true.into());
    out.insert("ForcedCopyDebugPath".into(), forced.debug_path.into());
    out.insert("Marker".into(), Value::Null);
    out.insert(
        "ForcedCopy".into(),
        json!({ "Directory": forced.directory, "Paths": forced.paths, "Count": forced.count }),
    );
    out.insert("System".into(), json!({ "FallbackNotes": notes }));
    Value::Object(out)
}

fn no_marker(marker: &str, secs: f64) -> StageFailure {
    StageFailure::new(
        FailureClass::Timeout,
        format!("no done marker at {marker} after {secs:.1} s (on_timeout = \"fail\")"),
    )
}

/// The marker in a local output folder.
async fn local(
    ctx: &StageContext,
    stage: &AwaitMarkerStage,
    up: Upstream,
    out_dir: &Path,
    timeout: Duration,
    poll: Duration,
) -> Result<Value, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let marker = out_dir.join(format!("{}{}", up.prefix, stage.marker_suffix));
    let folder_rel = Path::new(&up.prefix).parent().unwrap_or(Path::new(""));
    // A symlinked folder on the way to the marker is refused before waiting on it.
    comfy_files::safe_join(out_dir, folder_rel).map_err(invalid)?;

    let outcome = wait_for_file(out_dir, &marker, timeout, poll, &ctx.cancel).await;

    let out: Map<String, Value> = up.passed_on();
    let mut notes: Vec<String> = Vec::new();
    let marker_str = marker.display().to_string();
    match outcome {
        WaitOutcome::Cancelled => Err(StageFailure::new(
            FailureClass::Timeout,
            format!("cancelled while waiting for {marker_str}"),
        )),
        WaitOutcome::Found { waited, via, note } => {
            notes.extend(note);
            let body = read_marker(&marker)
                .map_err(|e| invalid(format!("the done marker {marker_str} is not valid: {e}")))?;
            Ok(found(out, waited, marker_str, via, &body, notes))
        }
        WaitOutcome::TimedOut { waited, note } => {
            notes.extend(note);
            let secs = waited.as_secs_f64();
            if stage.on_timeout == OnTimeout::Fail {
                return Err(no_marker(&marker_str, secs));
            }
            let forced = forced_copy(ctx, &up, out_dir, &marker, secs).await?;
            Ok(forced_output(
                out,
                secs,
                marker_str,
                forced,
                stage.timeout_s,
                notes,
            ))
        }
    }
}

/// How a wait for a file over HTTP ended.
#[derive(Debug)]
pub enum ViewWaitOutcome {
    Found {
        body: Vec<u8>,
        waited: Duration,
        /// Requests that failed on the way (transport, timeout, 5xx), when any did.
        note: Option<String>,
    },
    TimedOut {
        waited: Duration,
        note: Option<String>,
    },
    Cancelled,
    /// An answer that polling again cannot change (a 4xx other than 404, a body over the
    /// bound).
    Failed(ComfyError),
}

/// Asks `/view` for `subfolder/filename` every `poll` until it is there (200), for at most
/// `timeout`: a 404 is "not yet"; a request that fails (no answer, a timeout, a 5xx) is noted
/// and the polling goes on; a cancel returns at once. At the deadline, one last look is given
/// at most `poll` more.
pub async fn wait_for_view(
    client: &ComfyClient,
    filename: &str,
    subfolder: &str,
    timeout: Duration,
    poll: Duration,
    cancel: &CancellationToken,
) -> ViewWaitOutcome {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut failed = 0u32;
    let mut first_failure: Option<String> = None;
    let note = |failed: u32, first: &Option<String>| {
        first.as_ref().map(|e| {
            format!("{failed} `/view` requests for the marker failed and were polled past; the first: {e}")
        })
    };
    let mut last = false;
    loop {
        let bound = if last {
            tokio::time::Instant::now() + poll
        } else {
            deadline
        };
        let answer = tokio::select! {
            r = client.view(filename, subfolder, MAX_MARKER_BYTES, cancel) => Some(r),
            () = tokio::time::sleep_until(bound) => None,
        };
        match answer {
            None => {
                return ViewWaitOutcome::TimedOut {
                    waited: started.elapsed(),
                    note: note(failed, &first_failure),
                };
            }
            Some(Ok(Some(body))) => {
                return ViewWaitOutcome::Found {
                    body,
                    waited: started.elapsed(),
                    note: note(failed, &first_failure),
                };
            }
            Some(Ok(None)) => {}
            Some(Err(ComfyError::Cancelled { .. })) => return ViewWaitOutcome::Cancelled,
            Some(Err(e))
                if e.is_unreachable()
                    || matches!(e, ComfyError::Http { status, .. } if status >= 500) =>
            {
                failed += 1;
                first_failure.get_or_insert_with(|| e.to_string());
            }
            Some(Err(e)) => return ViewWaitOutcome::Failed(e),
        }
        if last {
            return ViewWaitOutcome::TimedOut {
                waited: started.elapsed(),
                note: note(failed, &first_failure),
            };
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = tokio::time::sleep_until(deadline) => last = true,
            () = cancel.cancelled() => return ViewWaitOutcome::Cancelled,
        }
    }
}

/// The marker of a remote server, polled with `/view`.
async fn over_http(
    ctx: &StageContext,
    stage: &AwaitMarkerStage,
    up: Upstream,
    remote: &Remote,
    timeout: Duration,
    poll: Duration,
) -> Result<Value, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let marker_rel = format!("{}{}", up.prefix, stage.marker_suffix);
    let subfolder = comfy_files::prefix_folder(&marker_rel);
    let filename = Path::new(&marker_rel)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let client = remote.client()?;
    let url = client.view_url(&filename, &subfolder).map_err(|e| {
        invalid(format!(
            "the done marker `{marker_rel}` cannot be asked for: {e}"
        ))
    })?;

    let outcome = wait_for_view(&client, &filename, &subfolder, timeout, poll, &ctx.cancel).await;

    let out: Map<String, Value> = up.passed_on();
    let mut notes = vec![remote.note("the done marker was")];
    match outcome {
        ViewWaitOutcome::Cancelled => Err(StageFailure::new(
            FailureClass::Timeout,
            format!("cancelled while waiting for {url}"),
        )),
        ViewWaitOutcome::Failed(e) => Err(StageFailure::new(
            e.class(),
            format!("the done marker cannot be read: {e}"),
        )),
        ViewWaitOutcome::Found { body, waited, note } => {
            notes.extend(note);
            let body = parse_marker(&body)
                .map_err(|e| invalid(format!("the done marker {url} is not valid: {e}")))?;
            Ok(found(out, waited, url, Detection::Http, &body, notes))
        }
        ViewWaitOutcome::TimedOut { waited, note } => {
            notes.extend(note);
            let secs = waited.as_secs_f64();
            if stage.on_timeout == OnTimeout::Fail {
                return Err(no_marker(&url, secs));
            }
            let forced = forced_copy_over_http(ctx, &up, &client, &url, secs).await?;
            Ok(forced_output(
                out,
                secs,
                url,
                forced,
                stage.timeout_s,
                notes,
            ))
        }
    }
}

struct Forced {
    count: usize,
    directory: String,
    paths: Vec<String>,
    debug_path: String,
}

/// Copies the frames that exist and writes the debug dump.
async fn forced_copy(
    ctx: &StageContext,
    up: &Upstream,
    out_dir: &Path,
    marker: &Path,
    waited_s: f64,
) -> Result<Forced, StageFailure> {
    let io_fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let dest = inst.join(format!("forced-copy-{}", ctx.attempt));
    let folder_rel = Path::new(&up.prefix)
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let matcher = frame_matcher(&up.prefix)?;
    let (out2, folder2, dest2) = (out_dir.to_path_buf(), folder_rel.clone(), dest.clone());
    // File work stays off the runtime's threads.
    let copied = tokio::task::spawn_blocking(
        move || -> Result<(Vec<String>, Value, Vec<String>), String> {
            let listing = comfy_files::list(&out2, &folder2, &matcher, 0)?;
            std::fs::create_dir_all(&dest2).map_err(|e| format!("{}: {e}", dest2.display()))?;
            let mut copied = Vec::new();
            let mut problems: Vec<String> = listing
                .skipped
                .iter()
                .map(|(f, why)| format!("{f}: {why}"))
                .collect();
            for f in &listing.files {
                let name = Path::new(&f.rel)
                    .file_name()
                    .map(|n| n.to_owned())
                    .unwrap_or_default();
                let target = dest2.join(&name);
                match comfy_files::copy_nofollow(&out2, f, &target) {
                    Ok(()) => copied.push(target.display().to_string()),
                    Err(e) => problems.push(e),
                }
            }
            comfy_files::sync_dir(&dest2);
            Ok((copied, folder_listing(&out2, &folder2), problems))
        },
    )
    .await
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?;
    let (copied, listing, problems) = copied;

    let (history, queue) = server_state(ctx, up).await;
    write_forced(
        ctx,
        up,
        &dest,
        &marker.display().to_string(),
        waited_s,
        listing,
        copied,
        problems,
        history,
        queue,
    )
}

/// The frames a forced copy takes: `<prefix>_*.png`, `*` not crossing `/`.
fn frame_matcher(prefix: &str) -> Result<globset::GlobMatcher, StageFailure> {
    let pattern = format!("{}_*.png", globset::escape(prefix));
    Ok(globset::GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| {
            StageFailure::new(
                FailureClass::InvalidOutput,
                format!("bad frame glob {pattern}: {e}"),
            )
        })?
        .compile_matcher())
}

/// Writes a forced copy's debug dump and says what was copied.
#[allow(clippy::too_many_arguments)]
fn write_forced(
    ctx: &StageContext,
    up: &Upstream,
    dest: &Path,
    marker: &str,
    waited_s: f64,
    listing: Value,
    copied: Vec<String>,
    problems: Vec<String>,
    history: Value,
    queue: Value,
) -> Result<Forced, StageFailure> {
    let io_fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let debug = json!({
        "prefix": up.prefix,
        "marker": marker,
        "waited_seconds": waited_s,
        "prompt_id": up.prompt_id,
        "server": up.server,
        "listing": listing,
        "copied": copied.len(),
        "problems": problems,
        "history": history,
        "queue": queue,
    });
    let debug_file = inst.join(format!("forced-copy-{}-debug.json", ctx.attempt));
    write_atomic(
        &debug_file,
        &serde_json::to_vec_pretty(&debug).unwrap_or_default(),
    )
    .map_err(|e| io_fail(format!("cannot write {}: {e}", debug_file.display())))?;
    let run_dir = &ctx.run_dir;
    Ok(Forced {
        count: copied.len(),
        directory: comfy_files::run_relative(run_dir, dest),
        paths: copied
            .iter()
            .map(|p| comfy_files::run_relative(run_dir, Path::new(p)))
            .collect(),
        debug_path: comfy_files::run_relative(run_dir, &debug_file),
    })
}

/// The forced copy of a remote server: the frames `/history` lists for the prompt (type
/// `output`, in the prefix's folder, named `<prefix>_*.png`), downloaded with `/view`; the
/// dump holds the history's file list where a local copy has the folder's listing.
async fn forced_copy_over_http(
    ctx: &StageContext,
    up: &Upstream,
    client: &ComfyClient,
    marker_url: &str,
    waited_s: f64,
) -> Result<Forced, StageFailure> {
    let io_fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let dest = inst.join(format!("forced-copy-{}", ctx.attempt));
    let folder = comfy_files::prefix_folder(&up.prefix);
    let matcher = frame_matcher(&up.prefix)?;
    let (history, queue) = server_state(ctx, up).await;

    let mut problems: Vec<String> = Vec::new();
    let listed: Vec<OutputFile> = match &up.prompt_id {
        None => {
            problems.push("no prompt_id upstream: /history cannot list the frames".into());
            Vec::new()
        }
        Some(id) => match parse_history(&history, id) {
            Ok(Some(entry)) => entry.files(),
            Ok(None) => {
                problems.push(match history.get("error") {
                    Some(e) => format!("/history/{id} could not be read: {e}"),
                    None => format!(
                        "prompt {id} is not in /history of {}: no frames to copy",
                        client.base_url()
                    ),
                });
                Vec::new()
            }
            Err(e) => {
                problems.push(format!("/history/{id}: {e}"));
                Vec::new()
            }
        },
    };
    let mut fetch: Vec<comfy_files::Fetch> = Vec::new();
    for f in &listed {
        if !matcher.is_match(comfy_files::server_rel(&f.subfolder, &f.filename)) {
            continue;
        }
        if let Err(e) = comfy_files::check_server_file(&f.filename, &f.subfolder, &f.kind, &folder)
        {
            problems.push(e);
            continue;
        }
        if fetch.iter().any(|x| x.filename == f.filename) {
            continue;
        }
        fetch.push(comfy_files::Fetch {
            filename: f.filename.clone(),
            subfolder: f.subfolder.clone(),
            dest: dest.join(&f.filename),
        });
    }
    let dest2 = dest.clone();
    tokio::task::spawn_blocking(move || {
        // A folder of an earlier try of this attempt number holds nothing to keep.
        let _ = std::fs::remove_dir_all(&dest2);
        std::fs::create_dir_all(&dest2).map_err(|e| format!("{}: {e}", dest2.display()))
    })
    .await
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?;
    let downloaded = comfy_files::download_into(client, &fetch, &ctx.cancel).await?;
    let mut copied: Vec<String> = Vec::new();
    for (f, r) in fetch.iter().zip(downloaded.results) {
        match r {
            Ok(()) => copied.push(f.dest.display().to_string()),
            Err(e) => problems.push(e),
        }
    }
    let dest2 = dest.clone();
    let _ = tokio::task::spawn_blocking(move || comfy_files::sync_dir(&dest2)).await;

    let listing = json!({
        "source": "history",
        // Downloads that got no answer and were asked for once more, with that error.
        "retried": downloaded.retried,
        "server": client.base_url(),
        "prompt_id": up.prompt_id,
        "folder": folder,
        "entries": listed
            .iter()
            .map(|f| json!({
                "name": f.filename, "subfolder": f.subfolder, "type": f.kind,
                "node": f.node, "key": f.key,
            }))
            .collect::<Vec<_>>(),
    });
    write_forced(
        ctx, up, &dest, marker_url, waited_s, listing, copied, problems, history, queue,
    )
}

/// Every entry of the prefix's folder (not only frames), for the dump.
fn folder_listing(out_dir: &Path, folder_rel: &Path) -> Value {
    let (dir, exists) = match comfy_files::safe_join(out_dir, folder_rel) {
        Ok(x) => x,
        Err(e) => return json!({ "error": e }),
    };
    if !exists {
        return json!({ "folder": dir.display().to_string(), "exists": false, "entries": [] });
    }
    let mut entries: Vec<Value> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                let m = e.metadata().ok();
                let kind = m.as_ref().map_or("unknown", |m| {
                    let t = m.file_type();
                    if t.is_symlink() {
                        "symlink"
                    } else if t.is_dir() {
                        "dir"
                    } else if t.is_file() {
                        "file"
                    } else {
                        "other"
                    }
                });
                let mtime = m
                    .as_ref()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .map(|t| t.to_string());
                json!({
                    "name": e.file_name().to_string_lossy(),
                    "kind": kind,
                    "size": m.as_ref().map(std::fs::Metadata::len),
                    "mtime": mtime,
                })
            })
            .collect(),
        Err(e) => return json!({ "folder": dir.display().to_string(), "error": e.to_string() }),
    };
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({ "folder": dir.display().to_string(), "exists": true, "entries": entries })
}

/// `/history/<prompt_id>` and `/queue` of the server that rendered the item, each the JSON or
/// why it could not be had (bounded to 5 s each).
async fn server_state(ctx: &StageContext, up: &Upstream) -> (Value, Value) {
    let server = up.server.clone().or_else(|| {
        comfy_files::service(ctx, up)
            .ok()
            .and_then(|(_, s)| s.urls.first().cloned())
    });
    let Some(server) = server else {
        let why = json!({ "error": "no ComfyUI server known for this item" });
        return (why.clone(), why);
    };
    let client = match crate::clients::http() {
        Ok(c) => c,
        Err(e) => {
            let why = json!({ "error": e });
            return (why.clone(), why);
        }
    };
    let base = server.trim_end_matches('/');
    // The dump is for a person reading it later: a cancel (Ctrl-C) ends it at once, and says so.
    let get = |url: String| {
        let client = client.clone();
        let cancel = ctx.cancel.clone();
        async move {
            let fetch = async {
                match client
                    .get(&url)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                        Ok(v) => v,
                        Err(e) => json!({ "url": url, "error": format!("not JSON: {e}") }),
                    },
                    Ok(r) => json!({ "url": url, "error": format!("HTTP {}", r.status()) }),
                    Err(e) => json!({ "url": url, "error": e.to_string() }),
                }
            };
            tokio::select! {
                v = fetch => v,
                () = cancel.cancelled() => json!({ "url": url, "error": "not asked: the run was cancelled" }),
            }
        }
    };
    let history = match &up.prompt_id {
        Some(id) => get(format!("{base}/history/{id}")).await,
        None => json!({ "error": "no prompt_id upstream" }),
    };
    let queue = get(format!("{base}/queue")).await;
    (history, queue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_that_parse_and_markers_that_do_not() {
        let ok = parse_marker(br#"{"Timestamp": "2025-01-02T03:04:05.123456Z", "FrameCount": 2, "Files": ["a_00001_.png", "a_00002_.png"]}"#)
            .expect("valid");
        assert_eq!(ok.frame_count, 2);
        // The recorded test node's marker had no `Files`; Python's isoformat with an offset.
        let ok = parse_marker(br#"{"Timestamp": "2025-01-02T03:04:05+00:00", "FrameCount": 4}"#)
            .expect("valid");
        assert_eq!((ok.frame_count, ok.files), (4, None));
        for (bad, why) in [
            (&b""[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (br#"{"FrameCount": 1}"#, "no `Timestamp`"),
            (
                br#"{"Timestamp": "yesterday", "FrameCount": 1}"#,
                "not an ISO-8601",
            ),
            (
                br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": -1}"#,
                "FrameCount",
            ),
            (
                br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": "3"}"#,
                "FrameCount",
            ),
            (
                br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 2, "Files": ["a"]}"#,
                "lists 1 files",
            ),
            (
                br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 1, "Files": ["../x"]}"#,
                "plain file names",
            ),
        ] {
            let e = parse_marker(bad).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn finds_an_existing_marker_at_once() {
        let d = tempfile::tempdir().expect("tempdir");
        let m = d.path().join("a/b/frame.done");
        std::fs::create_dir_all(m.parent().expect("parent")).expect("mkdir");
        std::fs::write(&m, b"{}").expect("write");
        let r = rt().block_on(wait_for_file(
            d.path(),
            &m,
            Duration::from_secs(5),
            Duration::from_secs(5),
            &CancellationToken::new(),
        ));
        assert!(
            matches!(
                r,
                WaitOutcome::Found {
                    via: Detection::Existing,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn an_event_wakes_the_wait_even_when_the_folder_comes_later() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().to_path_buf();
        let m = root.join("run/scene/a1/frame.done");
        let m2 = m.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let dir = m2.parent().expect("parent");
            // Folder by folder, as SaveImage's makedirs does, then the atomic rename.
            std::fs::create_dir_all(dir).expect("mkdir");
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(dir.join("frame.done.tmp"), b"{}").expect("write");
            std::fs::rename(dir.join("frame.done.tmp"), &m2).expect("rename");
        });
        // Polling every 30 s: only an event can find it in time.
        let r = rt().block_on(wait_for_file(
            &root,
            &m,
            Duration::from_secs(10),
            Duration::from_secs(30),
            &CancellationToken::new(),
        ));
        writer.join().expect("writer");
        match r {
            WaitOutcome::Found { via, waited, .. } => {
                assert_eq!(via, Detection::Event);
                assert!(waited < Duration::from_secs(5), "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn times_out_and_cancels() {
        let d = tempfile::tempdir().expect("tempdir");
        let m = d.path().join("never.done");
        let r = rt().block_on(wait_for_file(
            d.path(),
            &m,
            Duration::from_millis(150),
            Duration::from_millis(20),
            &CancellationToken::new(),
        ));
        assert!(
            matches!(r, WaitOutcome::TimedOut { waited, .. } if waited >= Duration::from_millis(150)),
            "{r:?}"
        );
        let c = CancellationToken::new();
        c.cancel();
        let r = rt().block_on(wait_for_file(
            d.path(),
            &m,
            Duration::from_secs(30),
            Duration::from_secs(30),
            &c,
        ));
        assert_eq!(r, WaitOutcome::Cancelled);
    }

    #[test]
    fn a_symlink_is_not_a_marker() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("elsewhere"),
            br#"{"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 1}"#,
        )
        .expect("write");
        let m = d.path().join("frame.done");
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &m).expect("symlink");
        let r = rt().block_on(wait_for_file(
            d.path(),
            &m,
            Duration::from_millis(100),
            Duration::from_millis(20),
            &CancellationToken::new(),
        ));
        assert!(matches!(r, WaitOutcome::TimedOut { .. }), "{r:?}");
        assert!(read_marker(&m).is_err(), "O_NOFOLLOW refuses it");
    }
}
