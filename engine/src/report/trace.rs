//! `cinepipe trace`: a run as Chrome/Perfetto trace-event JSON (ui.perfetto.dev and
//! chrome://tracing open it). One process for the run, a track (thread) per scene and one for
//! the once-per-run stages; a complete event (`ph: "X"`) per attempt, from the journal; instant
//! events (`ph: "i"`) where an attempt was retried or its instance requeued, and for the
//! fallback notes the metadata records.

use std::path::Path;

use serde::Serialize;

use super::timeline::{name_of, seconds};
use crate::artifact_metadata::{ArtifactMetadata, METADATA_FILE};
use crate::rundir::history::{InstanceHistory, RunHistory};

/// The file a trace is written to when no `-o` is given, inside the run folder.
pub const TRACE_FILE: &str = "trace.json";

/// The whole file: the JSON Object Format of the trace-event format.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub trace_events: Vec<TraceEvent>,
    pub display_time_unit: &'static str,
}

/// One trace event. Times are microseconds from the run's first attempt.
#[derive(Debug, Clone, Serialize)]
pub struct TraceEvent {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cat: String,
    /// `X` (complete: an attempt), `i` (instant: a retry, a requeue, a fallback), `M` (metadata:
    /// process and track names).
    pub ph: &'static str,
    pub ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<u64>,
    pub pid: u32,
    pub tid: u32,
    /// Scope of an instant event: `t`, its track.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s: Option<&'static str>,
    pub args: TraceArgs,
}

/// What an event carries besides its place and time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Of a `thread_sort_index` event: keeps the scenes' tracks in story order under the run's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort_index: Option<u32>,
}

const PID: u32 = 1;

fn micros(s: f64) -> u64 {
    (s.max(0.0) * 1_000_000.0).round() as u64
}

fn metadata_event(name: &str, tid: u32, value: String) -> TraceEvent {
    TraceEvent {
        name: name.to_owned(),
        cat: String::new(),
        ph: "M",
        ts: 0,
        dur: None,
        pid: PID,
        tid,
        s: None,
        args: TraceArgs {
            name: Some(value),
            ..TraceArgs::default()
        },
    }
}

fn instant(name: &str, cat: &str, at: u64, tid: u32, args: TraceArgs) -> TraceEvent {
    TraceEvent {
        name: name.to_owned(),
        cat: cat.to_owned(),
        ph: "i",
        ts: at,
        dur: None,
        pid: PID,
        tid,
        s: Some("t"),
        args,
    }
}

/// The spans and instants of one instance on track `tid`; returns the end of its last attempt.
fn instance_events(
    i: &InstanceHistory,
    t0: f64,
    t_end: f64,
    tid: u32,
    out: &mut Vec<TraceEvent>,
) -> Option<f64> {
    let mut last_end = None;
    let mut prev: Option<(f64, bool)> = None; // (end, succeeded)
    for a in &i.attempts {
        let Some(start) = seconds(&a.started) else {
            continue;
        };
        if let Some((end, succeeded)) = prev {
            // Another attempt after a success is a requeue (a later stage sent it back); after
            // a failure, a retry.
            let what = if succeeded { "requeue" } else { "retry" };
            out.push(instant(
                &format!("{what} {}", i.id),
                what,
                micros(end - t0),
                tid,
                TraceArgs {
                    instance: Some(i.id.to_string()),
                    attempt: Some(a.attempt),
                    wait_s: Some((start - end).max(0.0)),
                    ..TraceArgs::default()
                },
            ));
        }
        let end = a
            .finished
            .as_deref()
            .and_then(seconds)
            .or_else(|| a.duration_s.map(|d| start + d))
            .unwrap_or(t_end);
        let outcome = a
            .outcome
            .map_or_else(|| "no end".to_owned(), |o| name_of(&o));
        out.push(TraceEvent {
            name: i.id.to_string(),
            cat: i.id.stage.clone(),
            ph: "X",
            ts: micros(start - t0),
            dur: Some(micros(end - start)),
            pid: PID,
            tid,
            s: None,
            args: TraceArgs {
                instance: Some(i.id.to_string()),
                attempt: Some(a.attempt),
                session: Some(a.session),
                outcome: Some(outcome),
                class: a.class.map(|c| name_of(&c)),
                error: a.error.clone(),
                ..TraceArgs::default()
            },
        });
        prev = Some((
            end,
            a.outcome == Some(crate::rundir::event::AttemptOutcome::Succeeded),
        ));
        last_end = Some(end);
    }
    last_end
}

/// The trace of a run folder: its journal, and the fallback notes of its metadata when it has
/// one.
pub fn trace(h: &RunHistory, meta: Option<&ArtifactMetadata>) -> Trace {
    let times = h
        .instances
        .iter()
        .flat_map(|i| &i.attempts)
        .flat_map(|a| [Some(a.started.as_str()), a.finished.as_deref()])
        .flatten()
        .filter_map(seconds);
    let (t0, t_end) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    let (t0, t_end) = if t0.is_finite() {
        (t0, t_end)
    } else {
        (0.0, 0.0)
    };
    let scene_ids: Vec<String> = meta
        .map(|m| m.scenes.iter().map(|s| s.scene_id.clone()).collect())
        .unwrap_or_default();
    let mut events = vec![
        meta_name(h),
        metadata_event("thread_name", 0, "run".to_owned()),
    ];
    let mut named = std::collections::BTreeSet::new();
    let mut track_end: std::collections::BTreeMap<u32, f64> = Default::default();
    for i in h.ordered() {
        // Track 0: the once-per-run stages; track n + 1: item n (scene n).
        let tid = i.id.item.map_or(0, |n| n + 1);
        if let Some(n) = i.id.item
            && named.insert(n)
        {
            let title = scene_ids
                .get(n as usize)
                .map_or_else(|| format!("item {n}"), |id| format!("scene {id}"));
            events.push(metadata_event("thread_name", tid, title));
            events.push(TraceEvent {
                args: TraceArgs {
                    sort_index: Some(tid),
                    ..TraceArgs::default()
                },
                ..metadata_event("thread_sort_index", tid, String::new())
            });
        }
        if let Some(end) = instance_events(i, t0, t_end, tid, &mut events) {
            let e = track_end.entry(tid).or_insert(end);
            *e = e.max(end);
        }
    }
    if let Some(m) = meta {
        let notes = m.system.fallback_notes.iter().map(|n| (0u32, n)).chain(
            m.scenes.iter().enumerate().flat_map(|(n, s)| {
                s.telemetry
                    .system
                    .fallback_notes
                    .iter()
                    .map(move |note| (n as u32 + 1, note))
            }),
        );
        for (tid, note) in notes {
            // The notes carry no time: they are shown where their track's work ended.
            let at = track_end.get(&tid).copied().unwrap_or(t0);
            events.push(instant(
                "fallback",
                "fallback",
                micros(at - t0),
                tid,
                TraceArgs {
                    note: Some(note.clone()),
                    ..TraceArgs::default()
                },
            ));
        }
    }
    Trace {
        trace_events: events,
        display_time_unit: "ms",
    }
}

fn meta_name(h: &RunHistory) -> TraceEvent {
    metadata_event("process_name", 0, format!("cinepipe run {}", h.run_id))
}

/// Why no trace was written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("`{}` is not a run folder (it has no run.json or events.jsonl)", path.display())]
    NotARun { path: std::path::PathBuf },
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Writes the trace of the run folder `dir` to `out` (atomically); returns the events written.
pub fn write_trace(dir: &Path, out: &Path) -> Result<usize, TraceError> {
    if super::folder_kind(dir) != Some(super::FolderKind::Run) {
        return Err(TraceError::NotARun {
            path: dir.to_owned(),
        });
    }
    let h = RunHistory::read(dir).map_err(|source| TraceError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let meta: Option<ArtifactMetadata> = std::fs::read_to_string(dir.join(METADATA_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let t = trace(&h, meta.as_ref());
    let write = |source| TraceError::Write {
        path: out.to_owned(),
        source,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write)?;
    }
    let mut bytes = serde_json::to_vec(&t).map_err(|e| write(e.into()))?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(out, &bytes).map_err(write)?;
    Ok(t.trace_events.len())
}
