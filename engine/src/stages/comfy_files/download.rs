//! Frames fetched from a remote server with `/view`, a few at a time, into files of the run.

use std::fs::File;
use std::path::PathBuf;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::local::{flush_written, start_writeback};
use super::{ComfyFilesError, server_rel};
use crate::clients::comfyui::{ComfyClient, ComfyError};
use crate::exec::StageFailure;
use crate::spec::model::FailureClass;

/// Largest frame fetched over HTTP (a 4K PNG is some tens of MB).
pub const MAX_FRAME_BYTES: u64 = 256 * 1024 * 1024;

/// A file to fetch with `/view` into `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub filename: String,
    pub subfolder: String,
    pub dest: PathBuf,
}

/// What [`download_into`] did.
#[derive(Debug, Default)]
pub struct Downloaded {
    /// One per file, in order.
    pub results: Vec<Result<(), ComfyFilesError>>,
    /// The files whose first request got no answer (a transport error or the client's
    /// timeout) and that were asked for once more, with that first error.
    pub retried: Vec<String>,
}

/// One download, sent once more when the first request got no answer; the retry's note.
async fn fetch_once_more(
    client: &ComfyClient,
    f: &Fetch,
    cancel: &CancellationToken,
) -> (Result<Option<(File, u64)>, ComfyError>, Option<String>) {
    let fetch = || client.view_to_file(&f.filename, &f.subfolder, &f.dest, MAX_FRAME_BYTES, cancel);
    let got = fetch().await;
    match &got {
        Err(e) if e.is_unreachable() => {
            let note = format!("{}: {e}", server_rel(&f.subfolder, &f.filename));
            (fetch().await, Some(note))
        }
        _ => (got, None),
    }
}

/// Downloads in flight at once. A remote server is usually a network round trip away, which
/// a one-at-a-time loop would pay once per frame; four at once keep a CPU ComfyUI (one Python
/// process) busy without queueing much on it.
const DOWNLOADS_IN_FLIGHT: usize = 4;

/// Downloads each file into its destination inside a folder of ours (created anew by the
/// caller), a few at a time, and flushes them as [`copy_into_staging`] flushes copies:
/// writeback is started as each is written, each is fsync'd after the last. A request that
/// gets no answer (a reset or closed connection, the client's timeout on a loaded server) is
/// sent once more: a GET of a finished file is idempotent, and the stage's own bound still
/// holds. A file that is not there (404), is empty or fails is
/// removed and reported; a cancel stops the whole batch (`Err`).
pub async fn download_into(
    client: &ComfyClient,
    files: &[Fetch],
    cancel: &CancellationToken,
) -> Result<Downloaded, StageFailure> {
    // The futures are made first: a stream that maps with a closure over borrowed items is
    // not `Send` for the stages' boxed futures.
    let pending: Vec<_> = files
        .iter()
        .map(|f| fetch_once_more(client, f, cancel))
        .collect();
    let fetched: Vec<_> = futures_util::stream::iter(pending)
        .buffered(DOWNLOADS_IN_FLIGHT)
        .collect()
        .await;
    let mut open: Vec<Result<File, ComfyFilesError>> = Vec::with_capacity(files.len());
    let mut retried = Vec::new();
    for (f, (got, again)) in files.iter().zip(fetched) {
        retried.extend(again);
        open.push(match got {
            Ok(Some((_, 0))) => {
                let _ = std::fs::remove_file(&f.dest);
                Err(ComfyFilesError::Empty {
                    rel: server_rel(&f.subfolder, &f.filename),
                })
            }
            Ok(Some((out, _))) => {
                start_writeback(&out);
                Ok(out)
            }
            Ok(None) => Err(ComfyFilesError::NotOnServer {
                rel: server_rel(&f.subfolder, &f.filename),
            }),
            Err(ComfyError::Cancelled { .. }) => {
                // The other downloads of the batch stopped too; what they left is the caller's
                // staging folder, which a cancelled attempt does not promote.
                return Err(StageFailure::new(
                    FailureClass::Timeout,
                    format!(
                        "cancelled while downloading {}",
                        server_rel(&f.subfolder, &f.filename)
                    ),
                ));
            }
            Err(e) => Err(ComfyFilesError::Download(e)),
        });
    }
    let files2: Vec<PathBuf> = files.iter().map(|f| f.dest.clone()).collect();
    // The fsyncs stay off the runtime's threads.
    let synced = tokio::task::spawn_blocking(move || {
        flush_written(open, files2.iter().map(PathBuf::as_path))
    })
    .await
    .map_err(|e| {
        StageFailure::new(
            FailureClass::InvalidOutput,
            format!("flushing downloads failed: {e}"),
        )
    })?;
    Ok(Downloaded {
        results: synced,
        retried,
    })
}
