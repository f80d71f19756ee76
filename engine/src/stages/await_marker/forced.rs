//! The forced copy of `on_timeout = "forced-copy"`: the frames that exist copied into the
//! instance folder (or downloaded from a remote server), and a debug dump beside them.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::clients::comfyui::ComfyClient;
use crate::clients::comfyui::messages::{OutputFile, parse_history};
use crate::exec::{StageContext, StageFailure};
use crate::fsutil::write_atomic;
use crate::spec::model::FailureClass;
use crate::stages::comfy_files::{self, Upstream};

/// Why the frames could not be copied or downloaded into the forced-copy folder.
#[derive(Debug, thiserror::Error)]
enum ForcedCopyError {
    #[error(transparent)]
    List(#[from] comfy_files::ComfyFilesError),
    #[error("{path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl ForcedCopyError {
    /// The error of creating the folder `path`, for `map_err`.
    fn create_dir(path: &Path) -> impl FnOnce(std::io::Error) -> ForcedCopyError + '_ {
        move |source| ForcedCopyError::CreateDir {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why a server's answer for the debug dump was not read.
#[derive(Debug, thiserror::Error)]
enum DumpBodyError {
    #[error(transparent)]
    Body(#[from] crate::clients::BodyError),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
}

pub(super) struct Forced {
    pub(super) count: usize,
    pub(super) directory: String,
    pub(super) paths: Vec<String>,
    pub(super) debug_path: String,
}

/// Copies the frames that exist and writes the debug dump.
pub(super) async fn forced_copy(
    ctx: &StageContext,
    up: &Upstream,
    out_dir: &Path,
    marker: &Path,
    waited_s: f64,
) -> Result<Forced, StageFailure> {
    let io_fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let dest = inst.join(format!("forced-copy-{}", ctx.attempt));
    let folder_rel = Path::new(&up.render.prefix)
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let matcher = frame_matcher(&up.render.prefix)?;
    let (out2, folder2, dest2) = (out_dir.to_path_buf(), folder_rel.clone(), dest.clone());
    // File work stays off the runtime's threads.
    let copied = tokio::task::spawn_blocking(
        move || -> Result<(Vec<String>, Value, Vec<String>), ForcedCopyError> {
            let listing = comfy_files::list(&out2, &folder2, &matcher, 0)?;
            std::fs::create_dir_all(&dest2).map_err(ForcedCopyError::create_dir(&dest2))?;
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
                    Err(e) => problems.push(e.to_string()),
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
        "prefix": up.render.prefix,
        "marker": marker,
        "waited_seconds": waited_s,
        "prompt_id": up.render.prompt_id,
        "server": up.render.server,
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
pub(super) async fn forced_copy_over_http(
    ctx: &StageContext,
    up: &Upstream,
    client: &ComfyClient,
    marker_url: &str,
    waited_s: f64,
) -> Result<Forced, StageFailure> {
    let io_fail = |m: String| StageFailure::new(FailureClass::InvalidOutput, m);
    let inst = ctx.run_dir.join(&ctx.instance_dir);
    let dest = inst.join(format!("forced-copy-{}", ctx.attempt));
    let folder = comfy_files::prefix_folder(&up.render.prefix);
    let matcher = frame_matcher(&up.render.prefix)?;
    let (history, queue) = server_state(ctx, up).await;

    let mut problems: Vec<String> = Vec::new();
    let listed: Vec<OutputFile> = match &up.render.prompt_id {
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
            problems.push(e.to_string());
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
        std::fs::create_dir_all(&dest2).map_err(ForcedCopyError::create_dir(&dest2))
    })
    .await
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?
    .map_err(|e| io_fail(format!("the forced copy failed: {e}")))?;
    let downloaded = comfy_files::download_into(client, &fetch, &ctx.cancel).await?;
    let mut copied: Vec<String> = Vec::new();
    for (f, r) in fetch.iter().zip(downloaded.results) {
        match r {
            Ok(()) => copied.push(f.dest.display().to_string()),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let dest2 = dest.clone();
    let _ = tokio::task::spawn_blocking(move || comfy_files::sync_dir(&dest2)).await;

    let listing = json!({
        "source": "history",
        // Downloads that got no answer and were asked for once more, with that error.
        "retried": downloaded.retried,
        "server": client.base_url(),
        "prompt_id": up.render.prompt_id,
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
        Err(e) => return json!({ "error": e.to_string() }),
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
    let server = up.render.server.clone().or_else(|| {
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
            let why = json!({ "error": e.to_string() });
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
                    Ok(r) if r.status().is_success() => json_within(r)
                        .await
                        .unwrap_or_else(|e| json!({ "url": url, "error": e.to_string() })),
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
    let history = match &up.render.prompt_id {
        Some(id) => get(format!("{base}/history/{id}")).await,
        None => json!({ "error": "no prompt_id upstream" }),
    };
    let queue = get(format!("{base}/queue")).await;
    (history, queue)
}

/// A JSON body read within the client's size bound: a server's dump is outside data.
async fn json_within(r: reqwest::Response) -> Result<Value, DumpBodyError> {
    let body = crate::clients::read_body_within(r, crate::clients::comfyui::MAX_BODY_BYTES).await?;
    serde_json::from_slice(&body).map_err(DumpBodyError::NotJson)
}
