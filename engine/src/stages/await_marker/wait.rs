//! Waiting for the done marker: on a local folder by file-system events with a polling
//! fallback ([`wait_for_file`]), on a remote server by polling `/view` ([`wait_for_view`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::MAX_MARKER_BYTES;
use crate::clients::comfyui::{ComfyClient, ComfyError};
use crate::stages::output::Detection;

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
