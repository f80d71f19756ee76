//! The `await-marker` stage: wait for `<output_dir>/<prefix>.done`, which the project's
//! `WriteDoneMarker` node renames into place after the last frame, then read and check it.
//!
//! The wait is driven by file-system events (`notify`: inotify on Linux), so the stage acts
//! within a millisecond or so of the rename, with a polling fallback every `poll_interval_s`
//! for where events do not arrive (network file systems, an exhausted inotify limit). A marker
//! that already exists is found at once: the watch is set up *before* the first look, so a
//! rename between the two cannot be missed.
//!
//! On timeout, `on_timeout = "forced-copy"` copies the frames that exist into the instance
//! folder, writes a debug dump (a listing of the prefix folder, and `/history` and `/queue`
//! when the server answers) and succeeds with `ForcedCopyTriggered`; `"fail"` fails the
//! attempt with class `timeout`. Upstream's keys are passed on (see [`super::comfy_files`]).
//! Failed attempts and forced copies leave `attempt-<n>.json` in the instance folder; a found
//! marker's record is the stage's output (`output.json`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::comfy_files::{self, Upstream};
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
    comfy_files::check_relative("prefix", &up.prefix).map_err(invalid)?;
    comfy_files::check_relative("marker_suffix", &format!("x{}", stage.marker_suffix))
        .map_err(invalid)?;
    let out_dir = comfy_files::output_dir(ctx, &up)?;
    let marker = out_dir.join(format!("{}{}", up.prefix, stage.marker_suffix));
    let folder_rel = Path::new(&up.prefix).parent().unwrap_or(Path::new(""));
    // A symlinked folder on the way to the marker is refused before waiting on it.
    comfy_files::safe_join(&out_dir, folder_rel).map_err(invalid)?;

    let timeout = Duration::try_from_secs_f64(stage.timeout_s).unwrap_or(Duration::from_secs(60));
    let poll =
        Duration::try_from_secs_f64(stage.poll_interval_s).unwrap_or(Duration::from_millis(250));
    let outcome = wait_for_file(&out_dir, &marker, timeout, poll, &ctx.cancel).await;

    let mut out: Map<String, Value> = up.passed_on();
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
            out.insert("DoneMarkerDetected".into(), true.into());
            out.insert("DoneMarkerWaitSeconds".into(), json!(waited.as_secs_f64()));
            out.insert("DoneMarkerPath".into(), marker_str.into());
            out.insert("ForcedCopyTriggered".into(), false.into());
            out.insert("ForcedCopyDebugPath".into(), Value::Null);
            out.insert("DetectedBy".into(), json!(via));
            out.insert("Marker".into(), json!(body));
            out.insert("System".into(), json!({ "FallbackNotes": notes }));
            Ok(Value::Object(out))
        }
        WaitOutcome::TimedOut { waited, note } => {
            notes.extend(note);
            let secs = waited.as_secs_f64();
            if stage.on_timeout == OnTimeout::Fail {
                return Err(StageFailure::new(
                    FailureClass::Timeout,
                    format!(
                        "no done marker at {marker_str} after {secs:.1} s (on_timeout = \"fail\")"
                    ),
                ));
            }
            let forced = forced_copy(ctx, &up, &out_dir, &marker, secs).await?;
            notes.push(format!(
                "done marker not seen within {} s; copied the {} frames present (forced copy)",
                stage.timeout_s, forced.count
            ));
            out.insert("DoneMarkerDetected".into(), false.into());
            out.insert("DoneMarkerWaitSeconds".into(), json!(secs));
            out.insert("DoneMarkerPath".into(), marker_str.into());
            out.insert("ForcedCopyTriggered".into(), true.into());
            out.insert("ForcedCopyDebugPath".into(), forced.debug_path.into());
            out.insert("Marker".into(), Value::Null);
            out.insert(
                "ForcedCopy".into(),
                json!({ "Directory": forced.directory, "Paths": forced.paths, "Count": forced.count }),
            );
            out.insert("System".into(), json!({ "FallbackNotes": notes }));
            Ok(Value::Object(out))
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
    let pattern = format!("{}_*.png", globset::escape(&up.prefix));
    let matcher = globset::GlobBuilder::new(&pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| io_fail(format!("bad frame glob {pattern}: {e}")))?
        .compile_matcher();
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
    let debug = json!({
        "prefix": up.prefix,
        "marker": marker.display().to_string(),
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
        directory: comfy_files::run_relative(run_dir, &dest),
        paths: copied
            .iter()
            .map(|p| comfy_files::run_relative(run_dir, Path::new(p)))
            .collect(),
        debug_path: comfy_files::run_relative(run_dir, &debug_file),
    })
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
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let why = json!({ "error": e.to_string() });
            return (why.clone(), why);
        }
    };
    let base = server.trim_end_matches('/');
    let get = |url: String| {
        let client = client.clone();
        async move {
            match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                    Ok(v) => v,
                    Err(e) => json!({ "url": url, "error": format!("not JSON: {e}") }),
                },
                Ok(r) => json!({ "url": url, "error": format!("HTTP {}", r.status()) }),
                Err(e) => json!({ "url": url, "error": e.to_string() }),
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
