//! `cinepipe sentinel`: done-markers for workflows that do not carry the marker node. It follows
//! one ComfyUI (`/history`, polled, and woken early by the WebSocket's `status` messages, which
//! ComfyUI sends to every client when its queue moves) and, for each finished prompt, writes
//! `<prefix>.done` beside each group of frames its output nodes saved, in the node's format
//! (`Timestamp`, `FrameCount`, `Files`, `ContractVersion`), once the files are on disk and
//! their sizes hold still; so `await-marker` works unchanged.
//!
//! A state file (written atomically after each pass) remembers the prompts handled, so a
//! restart neither marks a prompt again nor misses one that finished while it was down (it is
//! still in `/history`). Memory is bounded: the state keeps the last `keep` prompt ids, and a
//! pass reads at most `HISTORY_ITEMS` entries. A marker that exists already (the node wrote it,
//! or an earlier sentinel) is never rewritten.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::artifact_metadata::Timestamp;
use crate::clients::comfyui::ComfyClient;
use crate::clients::comfyui::messages::{
    HistoryStatus, OutputFile, WsEvent, parse_history, parse_ws,
};
use crate::fsutil::write_atomic;

/// Entries of `/history` read per pass (the most recent): more prompts than this finishing
/// between two passes would be missed, so the poll interval must stay short against it.
pub const HISTORY_ITEMS: u32 = 1000;
/// The marker contract the sentinel writes (the node's `CONTRACT_VERSION`).
pub const CONTRACT_VERSION: u32 = 1;
const STATE_FORMAT: u32 = 1;
/// Largest `/history` answer read.
const HISTORY_LIMIT: u64 = 256 * 1024 * 1024;

/// How the sentinel runs.
#[derive(Debug, Clone)]
pub struct SentinelOptions {
    /// The ComfyUI server's base URL.
    pub comfyui: String,
    /// Its output folder (`--output-dir` of ComfyUI), where the frames and markers are.
    pub output_dir: PathBuf,
    /// The state file.
    pub state: PathBuf,
    /// Time between passes when nothing wakes it earlier.
    pub poll: Duration,
    /// How long a prompt's files must keep their sizes before the marker is written.
    pub stable_for: Duration,
    /// Prompt ids remembered.
    pub keep: usize,
    /// One pass, then stop.
    pub once: bool,
    /// A Prometheus metrics file to keep counts in.
    pub metrics: Option<PathBuf>,
}

/// The state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct State {
    format: u32,
    /// Handled prompt ids, oldest first.
    handled: VecDeque<String>,
}

/// What a sentinel did, for its log and its caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub passes: u64,
    pub markers: u64,
    /// Prompts that finished without output files to mark (failed, or cached with nothing new).
    pub without_files: u64,
}

/// Why the sentinel stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SentinelError {
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file {path} is not a sentinel state: {why}")]
    BadState { path: PathBuf, why: String },
    #[error("{0}")]
    Client(String),
}

/// A written marker, in the node's format.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Marker<'a> {
    timestamp: Timestamp,
    frame_count: usize,
    files: &'a [String],
    contract_version: u32,
}

fn read_state(path: &Path) -> Result<State, SentinelError> {
    match std::fs::read(path) {
        Ok(b) => {
            let s: State = serde_json::from_slice(&b).map_err(|e| SentinelError::BadState {
                path: path.to_path_buf(),
                why: e.to_string(),
            })?;
            if s.format != STATE_FORMAT {
                return Err(SentinelError::BadState {
                    path: path.to_path_buf(),
                    why: format!("format {}, this cinepipe reads {STATE_FORMAT}", s.format),
                });
            }
            Ok(s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
            format: STATE_FORMAT,
            handled: VecDeque::new(),
        }),
        Err(source) => Err(SentinelError::State {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `frame_00001_.png` → `frame` (SaveImage's counter suffix taken off); other names keep
/// their stem.
fn basename(filename: &str) -> String {
    let stem = filename.rsplit_once('.').map_or(filename, |(s, _)| s);
    let trimmed = stem.strip_suffix('_').unwrap_or(stem);
    match trimmed.rsplit_once('_') {
        Some((base, counter))
            if !base.is_empty()
                && counter.len() >= 5
                && counter.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base.to_owned()
        }
        _ => stem.to_owned(),
    }
}

/// A subfolder from the server, kept inside the output folder (no `..`, not absolute).
fn safe_subfolder(sub: &str) -> Option<PathBuf> {
    let p = Path::new(sub);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// A finished prompt not handled yet: its id, and each group to mark with the file sizes seen.
type Pending = (String, Vec<(Group, Vec<u64>)>);

/// One marker to write: the folder, the base name, the frames (sorted).
#[derive(Debug, Clone, PartialEq)]
struct Group {
    folder: PathBuf,
    base: String,
    files: Vec<String>,
}

/// A prompt's output files grouped by (folder, base name): one marker per group.
fn groups(output_dir: &Path, files: &[OutputFile]) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    for f in files.iter().filter(|f| f.kind == "output") {
        let Some(sub) = safe_subfolder(&f.subfolder) else {
            continue;
        };
        if f.filename.contains('/') || f.filename.contains('\\') {
            continue;
        }
        let folder = output_dir.join(sub);
        let base = basename(&f.filename);
        match out
            .iter_mut()
            .find(|g| g.folder == folder && g.base == base)
        {
            Some(g) => g.files.push(f.filename.clone()),
            None => out.push(Group {
                folder,
                base,
                files: vec![f.filename.clone()],
            }),
        }
    }
    for g in &mut out {
        g.files.sort();
        g.files.dedup();
    }
    out
}

fn sizes(g: &Group) -> Option<Vec<u64>> {
    g.files
        .iter()
        .map(|f| std::fs::metadata(g.folder.join(f)).ok().map(|m| m.len()))
        .collect()
}

/// Runs until `cancel` (or after one pass with `once`).
pub async fn run(
    opts: &SentinelOptions,
    cancel: &CancellationToken,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Tally, SentinelError> {
    let mut state = read_state(&opts.state)?;
    let mut seen: HashSet<String> = state.handled.iter().cloned().collect();
    let client = ComfyClient::shared(&opts.comfyui, Duration::from_secs(30))
        .map_err(|e| SentinelError::Client(e.to_string()))?;
    let http = crate::clients::http().map_err(|e| SentinelError::Client(e.to_string()))?;
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = (!opts.once).then(|| {
        let (client, wake, cancel) = (client.clone(), wake.clone(), cancel.clone());
        tokio::spawn(async move { listen(&client, &wake, &cancel).await })
    });
    let mut tally = Tally::default();
    let base = opts.comfyui.trim_end_matches('/').to_owned();
    // Counts written to the metrics file so far: each write adds what is new since.
    let mut counted = Tally::default();
    let mut last_write = std::time::Instant::now();
    loop {
        match pass(&http, &base, opts, &mut state, &mut seen, &mut tally, log).await {
            Ok(true) => persist(&opts.state, &state)?,
            Ok(false) => {}
            Err(why) => log(&format!("warning: {why}; trying again")),
        }
        tally.passes += 1;
        // After a pass that wrote a marker, and at least once a minute for the passes.
        if tally != counted
            && (tally.markers != counted.markers
                || tally.without_files != counted.without_files
                || last_write.elapsed() >= Duration::from_secs(60)
                || opts.once)
        {
            count(opts, &tally, &mut counted, log);
            last_write = std::time::Instant::now();
        }
        if opts.once {
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(opts.poll) => {}
            () = wake.notified() => {}
        }
    }
    if let Some(l) = listener {
        l.abort();
    }
    persist(&opts.state, &state)?;
    if tally != counted {
        count(opts, &tally, &mut counted, log);
    }
    Ok(tally)
}

/// Adds to the metrics file what `tally` has beyond `counted`. A metrics file that cannot be
/// written is said, and does not stop the markers.
fn count(opts: &SentinelOptions, tally: &Tally, counted: &mut Tally, log: &(dyn Fn(&str) + Sync)) {
    let Some(path) = &opts.metrics else {
        return;
    };
    let delta = |now: u64, before: u64| now.saturating_sub(before) as f64;
    let result = crate::metrics::update(path, |s| {
        s.add(
            "cinepipe_sentinel_passes_total",
            &[],
            delta(tally.passes, counted.passes),
        );
        s.add(
            "cinepipe_sentinel_markers_total",
            &[],
            delta(tally.markers, counted.markers),
        );
        s.add(
            "cinepipe_sentinel_prompts_without_frames_total",
            &[],
            delta(tally.without_files, counted.without_files),
        );
    });
    match result {
        Ok(()) => *counted = tally.clone(),
        Err(e) => log(&format!("warning: cannot write the metrics: {e}")),
    }
}

fn persist(path: &Path, state: &State) -> Result<(), SentinelError> {
    let bytes = serde_json::to_vec(state).map_err(|e| SentinelError::State {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(path, &bytes).map_err(|source| SentinelError::State {
        path: path.to_path_buf(),
        source,
    })
}

/// Wakes the loop on each `status` message (the queue moved); reconnects after a lost socket.
async fn listen(client: &ComfyClient, wake: &tokio::sync::Notify, cancel: &CancellationToken) {
    let id = format!("cinepipe-sentinel-{}", std::process::id());
    while !cancel.is_cancelled() {
        if let Ok(mut ws) = client.connect_ws(&id).await {
            while let Some(Ok(msg)) = tokio::select! {
                m = ws.next() => m,
                () = cancel.cancelled() => None,
            } {
                if let Ok(text) = msg.into_text()
                    && matches!(parse_ws(&text), Some(WsEvent::Status { .. }))
                {
                    wake.notify_one();
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// One pass over `/history`: markers for the finished prompts not handled yet. `Ok(true)` when
/// the state changed.
async fn pass(
    http: &reqwest::Client,
    base: &str,
    opts: &SentinelOptions,
    state: &mut State,
    seen: &mut HashSet<String>,
    tally: &mut Tally,
    log: &(dyn Fn(&str) + Sync),
) -> Result<bool, String> {
    let url = format!("{base}/history?max_items={HISTORY_ITEMS}");
    let resp = http
        .get(&url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let body = crate::clients::read_body_within(resp, HISTORY_LIMIT)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let history: Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let Some(ids) = history
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
    else {
        return Err(format!("GET {url}: not a JSON object"));
    };
    // Finished prompts not handled yet, with their groups and the sizes seen now.
    let mut todo: Vec<Pending> = Vec::new();
    for id in ids.into_iter().filter(|id| !seen.contains(id)) {
        let Ok(Some(entry)) = parse_history(&history, &id) else {
            continue;
        };
        // ComfyUI adds a prompt to its history when it has finished; one that failed or was
        // interrupted gets no marker (await-marker's timeout policy applies). Older servers
        // send no status: judged by their outputs.
        if !matches!(
            entry.status,
            HistoryStatus::Success | HistoryStatus::Unknown
        ) {
            todo.push((id, Vec::new()));
            continue;
        }
        let gs: Vec<(Group, Vec<u64>)> = groups(&opts.output_dir, &entry.files())
            .into_iter()
            .filter(|g| !g.folder.join(format!("{}.done", g.base)).exists())
            .filter_map(|g| sizes(&g).map(|s| (g, s)))
            .collect();
        todo.push((id, gs));
    }
    if todo.is_empty() {
        return Ok(false);
    }
    if todo.iter().any(|(_, gs)| !gs.is_empty()) {
        tokio::time::sleep(opts.stable_for).await;
    }
    let mut changed = false;
    for (id, gs) in todo {
        let mut stable = true;
        for (g, before) in &gs {
            if sizes(g).as_ref() != Some(before) {
                stable = false;
                continue;
            }
            let marker = g.folder.join(format!("{}.done", g.base));
            if marker.exists() {
                continue;
            }
            let body = Marker {
                timestamp: Timestamp(jiff::Timestamp::now()),
                frame_count: g.files.len(),
                files: &g.files,
                contract_version: CONTRACT_VERSION,
            };
            let mut bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            write_atomic(&marker, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
            tally.markers += 1;
            log(&format!(
                "marked {} ({} frames, prompt {id})",
                marker.display(),
                g.files.len()
            ));
        }
        if !stable {
            // Looked at again next pass.
            continue;
        }
        if gs.is_empty() {
            tally.without_files += 1;
        }
        seen.insert(id.clone());
        state.handled.push_back(id);
        while state.handled.len() > opts.keep.max(1) {
            if let Some(old) = state.handled.pop_front() {
                seen.remove(&old);
            }
        }
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_grouped_by_folder_and_saveimage_base_name() {
        assert_eq!(basename("frame_00001_.png"), "frame");
        assert_eq!(basename("a_b_00012_.png"), "a_b");
        assert_eq!(basename("cover.png"), "cover");
        assert_eq!(basename("x_12_.png"), "x_12_");
        let f = |sub: &str, name: &str, kind: &str| OutputFile {
            node: "9".into(),
            key: "images".into(),
            filename: name.into(),
            subfolder: sub.into(),
            kind: kind.into(),
        };
        let out = Path::new("/out");
        let gs = groups(
            out,
            &[
                f("run/a1", "frame_00002_.png", "output"),
                f("run/a1", "frame_00001_.png", "output"),
                f("run/a1", "side_00001_.png", "output"),
                f("run/a1", "preview_00001_.png", "temp"),
                f("../escape", "frame_00001_.png", "output"),
                f("/abs", "frame_00001_.png", "output"),
            ],
        );
        assert_eq!(gs.len(), 2, "{gs:?}");
        assert_eq!(gs[0].folder, Path::new("/out/run/a1"));
        assert_eq!(gs[0].base, "frame");
        assert_eq!(gs[0].files, ["frame_00001_.png", "frame_00002_.png"]);
        assert_eq!(gs[1].base, "side");
    }

    #[test]
    fn a_broken_state_file_is_refused_not_overwritten() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("state.json");
        assert!(read_state(&p).expect("missing is empty").handled.is_empty());
        std::fs::write(&p, "{not json").expect("write");
        assert!(matches!(
            read_state(&p),
            Err(SentinelError::BadState { .. })
        ));
        std::fs::write(&p, r#"{"format": 9, "handled": []}"#).expect("write");
        assert!(matches!(
            read_state(&p),
            Err(SentinelError::BadState { .. })
        ));
    }
}
