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

use std::path::Path;
use std::time::Duration;

mod forced;
mod marker_file;
mod wait;

use forced::{Forced, forced_copy, forced_copy_over_http};
use marker_file::read_marker;
pub use marker_file::{MarkerError, parse_marker};
pub use wait::{ViewWaitOutcome, WaitOutcome, wait_for_file, wait_for_view};

use super::comfy_files::{self, Output, Remote, Upstream};
pub use super::output::{Detection, MarkerBody};
use super::output::{
    ForcedCopy, MarkerAttempt, MarkerOutput, MarkerRecord, RenderRef, StageSystem,
};
use crate::exec::{Attempt, BoxFuture, StageContext, StageFailure};
use crate::spec::model::{AwaitMarkerStage, FailureClass, OnTimeout, Stage as SpecStage};

/// Largest marker read: it is a few dozen bytes (plus the file list).
const MAX_MARKER_BYTES: u64 = 1 << 20;

/// The `await-marker` kind for the executor.
pub struct AwaitMarker;

impl crate::exec::Stage for AwaitMarker {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(SpecStage::AwaitMarker(stage)) = ctx.stage() else {
                return Attempt::from(Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the await-marker stage was handed a stage of another kind",
                )));
            };
            let result = attempt(ctx, stage).await;
            // A detected marker is the fast path (the engine acts on the rename within a
            // millisecond): its record is the output itself, which the executor writes to
            // `output.json`, so no fsync'd `attempt-<n>.json` stands between the rename and
            // the return. Failures and forced copies, which no output file records, get one.
            if let Ok(out) = &result
                && out.done_marker_detected
            {
                return Attempt::from(Attempt::output(out));
            }
            let output = result.as_ref().ok().cloned();
            let record = MarkerRecord::new(ctx.attempt, &result, MarkerAttempt { output });
            let result = result.and_then(|out| Attempt::output(&out));
            Attempt::recorded(result, &record)
        })
    }
}

async fn attempt(
    ctx: &StageContext,
    stage: &AwaitMarkerStage,
) -> Result<MarkerOutput, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let up = Upstream::find(ctx)?;
    // Before anything is asked of a disk or a server.
    comfy_files::check_relative("prefix", &up.render.prefix).map_err(|e| invalid(e.to_string()))?;
    comfy_files::check_relative("marker_suffix", &format!("x{}", stage.marker_suffix))
        .map_err(|e| invalid(e.to_string()))?;
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
    render: RenderRef,
    waited: Duration,
    path: String,
    via: Detection,
    body: MarkerBody,
    notes: Vec<String>,
) -> MarkerOutput {
    MarkerOutput {
        render,
        done_marker_detected: true,
        done_marker_wait_seconds: waited.as_secs_f64(),
        done_marker_path: path,
        forced_copy_triggered: false,
        forced_copy_debug_path: None,
        detected_by: Some(via),
        marker: Some(body),
        forced_copy: None,
        system: StageSystem {
            fallback_notes: notes,
        },
    }
}

/// The output of a forced copy.
fn forced_output(
    render: RenderRef,
    secs: f64,
    path: String,
    forced: Forced,
    timeout_s: f64,
    mut notes: Vec<String>,
) -> MarkerOutput {
    notes.push(format!(
        "done marker not seen within {timeout_s} s; copied the {} frames present (forced copy)",
        forced.count
    ));
    MarkerOutput {
        render,
        done_marker_detected: false,
        done_marker_wait_seconds: secs,
        done_marker_path: path,
        forced_copy_triggered: true,
        forced_copy_debug_path: Some(forced.debug_path),
        detected_by: None,
        marker: None,
        forced_copy: Some(ForcedCopy {
            directory: forced.directory,
            paths: forced.paths,
            count: forced.count,
        }),
        system: StageSystem {
            fallback_notes: notes,
        },
    }
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
) -> Result<MarkerOutput, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let marker = out_dir.join(format!("{}{}", up.render.prefix, stage.marker_suffix));
    let folder_rel = Path::new(&up.render.prefix)
        .parent()
        .unwrap_or(Path::new(""));
    // A symlinked folder on the way to the marker is refused before waiting on it.
    comfy_files::safe_join(out_dir, folder_rel).map_err(|e| invalid(e.to_string()))?;

    let outcome = wait_for_file(out_dir, &marker, timeout, poll, &ctx.cancel).await;

    let out = up.render.clone();
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
            Ok(found(out, waited, marker_str, via, body, notes))
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

/// The marker of a remote server, polled with `/view`.
async fn over_http(
    ctx: &StageContext,
    stage: &AwaitMarkerStage,
    up: Upstream,
    remote: &Remote,
    timeout: Duration,
    poll: Duration,
) -> Result<MarkerOutput, StageFailure> {
    let invalid = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let marker_rel = format!("{}{}", up.render.prefix, stage.marker_suffix);
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

    let out = up.render.clone();
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
            Ok(found(out, waited, url, Detection::Http, body, notes))
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

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

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
            assert!(e.to_string().contains(why), "{e}");
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
