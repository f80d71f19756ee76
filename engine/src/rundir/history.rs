//! A run folder read back: its manifest and its journal folded into stage instances, each with
//! every attempt of every session. `telemetry::build` turns it into `artifact-metadata.json`;
//! `cinepipe runs` and `cinepipe show` print it.
//!
//! Unlike `journal::replay` (which a resume must be able to trust, so a bad line is an
//! error), this reader is for looking: it never fails on a file's content. A broken line is
//! skipped and named in [`RunHistory::problems`], so one damaged run does not hide the others
//! from `cinepipe runs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::event::{AttemptOutcome, Event, EventKind, InstanceId, RunOutcome};
use super::layout::{EVENTS, MANIFEST, Manifest, RESOLVED_SPEC};
use crate::spec::model::FailureClass;

/// One session (`cinepipe run`, then each `--resume`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionHistory {
    pub number: u32,
    pub started: String,
    pub profile: String,
    pub unbuilt_kinds: Vec<String>,
    /// How it ended; `None` when it is still running or was killed (`kill -9`, a crash).
    pub end: Option<SessionEnd>,
}

/// The last event of a session that ended by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    pub ts: String,
    pub outcome: RunOutcome,
    pub duration_s: f64,
    /// The signal, for an interrupted session.
    pub signal: Option<String>,
}

/// One attempt of one instance (also what `cinepipe show --format json` prints of it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct AttemptHistory {
    pub attempt: u32,
    pub session: u32,
    pub started: String,
    /// Null when the attempt is running, or its session was killed during it.
    pub finished: Option<String>,
    /// Null while it runs, or when its session was killed during it.
    pub outcome: Option<AttemptOutcome>,
    pub duration_s: Option<f64>,
    pub class: Option<FailureClass>,
    pub error: Option<String>,
}

/// Where an instance stands after the last event about it.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceStatus {
    /// Started (or reset by a requeue, or waiting for a resume) and not finished.
    Pending,
    Succeeded {
        flaky: bool,
        /// The output file, relative to the run folder.
        output: Option<String>,
    },
    Failed {
        class: Option<FailureClass>,
        error: String,
    },
    Skipped {
        detail: String,
    },
}

/// One stage instance over the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceHistory {
    pub id: InstanceId,
    pub status: InstanceStatus,
    pub attempts: Vec<AttemptHistory>,
}

/// A run folder, as far as it could be read.
#[derive(Debug, Clone, Default)]
pub struct RunHistory {
    pub dir: PathBuf,
    /// `run.json`; `None` when it is missing or does not parse (see `problems`).
    pub manifest: Option<Manifest>,
    pub run_id: String,
    pub sessions: Vec<SessionHistory>,
    /// Every instance the journal names, in the order it first appeared.
    pub instances: Vec<InstanceHistory>,
    /// `STAGE.FIELD` lists that fanned out, with their length.
    pub lists: Vec<(String, u32)>,
    /// Stage names in the spec's order (from `resolved-spec.json`), for listing instances.
    pub stage_order: Vec<String>,
    /// What could not be read: a missing manifest, a broken journal line.
    pub problems: Vec<String>,
    /// Another process holds the journal's lock: the run is running now.
    pub locked: bool,
    /// The journal ends in a torn line (dropped): a writer killed mid-line, or one writing now.
    pub torn: bool,
}

impl RunHistory {
    /// Reads a run folder. Only a folder that cannot be listed is an error.
    pub fn read(dir: &Path) -> std::io::Result<RunHistory> {
        std::fs::read_dir(dir)?;
        let mut h = RunHistory {
            dir: dir.to_owned(),
            ..RunHistory::default()
        };
        match std::fs::read_to_string(dir.join(MANIFEST)) {
            Ok(text) => match serde_json::from_str::<Manifest>(&text) {
                Ok(m) => {
                    h.run_id = m.run_id.clone();
                    h.manifest = Some(m);
                }
                Err(e) => h.problems.push(format!("{MANIFEST} does not parse: {e}")),
            },
            Err(e) => h.problems.push(format!("cannot read {MANIFEST}: {e}")),
        }
        if h.run_id.is_empty() {
            h.run_id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        if let Ok(text) = std::fs::read_to_string(dir.join(RESOLVED_SPEC))
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && let Some(stages) = v.get("stages").and_then(Value::as_object)
        {
            h.stage_order = stages.keys().cloned().collect();
        }
        let events = dir.join(EVENTS);
        match std::fs::read(&events) {
            Ok(bytes) => {
                for e in h.parse(&bytes) {
                    h.apply(e);
                }
            }
            Err(e) => h.problems.push(format!("cannot read {EVENTS}: {e}")),
        }
        h.locked = is_locked(&events);
        // A run being written can end in half a line for a moment; only a dead writer's is news.
        if h.torn && !h.locked {
            h.problems.push(format!(
                "{EVENTS} ends in a torn line (the run was killed while writing it)"
            ));
        }
        Ok(h)
    }

    fn parse(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        for (n, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let Some(line) = raw.strip_suffix(b"\n") else {
                // Dropped, as `--resume` drops it; reported by `read` unless a writer is active.
                self.torn = true;
                break;
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => out.push(e),
                Err(e) => self
                    .problems
                    .push(format!("{EVENTS} line {} is not an event: {e}", n + 1)),
            }
        }
        out
    }

    fn instance(&mut self, id: &InstanceId) -> &mut InstanceHistory {
        let i = match self.instances.iter().position(|i| &i.id == id) {
            Some(i) => i,
            None => {
                self.instances.push(InstanceHistory {
                    id: id.clone(),
                    status: InstanceStatus::Pending,
                    attempts: Vec::new(),
                });
                self.instances.len() - 1
            }
        };
        &mut self.instances[i]
    }

    fn apply(&mut self, e: Event) {
        let session = self.sessions.last().map_or(0, |s| s.number);
        match e.kind {
            EventKind::RunStarted {
                session,
                profile,
                unbuilt_kinds,
                run_id,
                ..
            } => {
                if self.manifest.is_none() {
                    self.run_id = run_id;
                }
                // A new session runs again whatever did not succeed before.
                for i in &mut self.instances {
                    if !matches!(i.status, InstanceStatus::Succeeded { .. }) {
                        i.status = InstanceStatus::Pending;
                    }
                }
                self.sessions.push(SessionHistory {
                    number: session,
                    started: e.ts,
                    profile,
                    unbuilt_kinds,
                    end: None,
                });
            }
            EventKind::FannedOut { list, count } => {
                match self.lists.iter_mut().find(|(l, _)| *l == list) {
                    Some(l) => l.1 = count,
                    None => self.lists.push((list, count)),
                }
            }
            EventKind::InstanceStarted { instance } => {
                self.instance(&instance);
            }
            EventKind::AttemptStarted { instance, attempt } => {
                self.instance(&instance).attempts.push(AttemptHistory {
                    attempt,
                    session,
                    started: e.ts,
                    finished: None,
                    outcome: None,
                    duration_s: None,
                    class: None,
                    error: None,
                });
            }
            EventKind::AttemptFinished {
                instance,
                attempt,
                outcome,
                duration_s,
                class,
                error,
                ..
            } => {
                let inst = self.instance(&instance);
                if let Some(a) = inst
                    .attempts
                    .iter_mut()
                    .rev()
                    .find(|a| a.attempt == attempt)
                {
                    a.finished = Some(e.ts);
                    a.outcome = Some(outcome);
                    a.duration_s = Some(duration_s);
                    a.class = class;
                    a.error = error;
                }
            }
            EventKind::Requeued { reset, .. } => {
                for id in &reset {
                    self.instance(id).status = InstanceStatus::Pending;
                }
            }
            EventKind::Succeeded {
                instance,
                flaky,
                output,
                ..
            } => {
                self.instance(&instance).status = InstanceStatus::Succeeded { flaky, output };
            }
            EventKind::Failed {
                instance,
                class,
                error,
                ..
            } => {
                self.instance(&instance).status = InstanceStatus::Failed { class, error };
            }
            EventKind::Skipped {
                instance, detail, ..
            } => {
                self.instance(&instance).status = InstanceStatus::Skipped { detail };
            }
            EventKind::RunFinished {
                outcome,
                duration_s,
                ..
            } => {
                if let Some(s) = self.sessions.last_mut() {
                    s.end = Some(SessionEnd {
                        ts: e.ts,
                        outcome,
                        duration_s,
                        signal: None,
                    });
                }
            }
            // The rating is in the metadata; the journal says only that it was given.
            EventKind::FeedbackGiven { .. } => {}
            EventKind::RunInterrupted {
                signal, duration_s, ..
            } => {
                if let Some(s) = self.sessions.last_mut() {
                    s.end = Some(SessionEnd {
                        ts: e.ts,
                        outcome: RunOutcome::Interrupted,
                        duration_s,
                        signal,
                    });
                }
            }
        }
    }

    /// How the run stands: the last session's ending, `running` while a process holds it,
    /// `killed` when its last session never recorded an end.
    pub fn state(&self) -> &'static str {
        match self.sessions.last().and_then(|s| s.end.as_ref()) {
            Some(end) => end.outcome.as_str(),
            None if self.locked => "running",
            None if self.sessions.is_empty() => "not started",
            None => "killed",
        }
    }

    /// When the run started: the manifest's time, else the first session's.
    pub fn started(&self) -> Option<&str> {
        self.manifest
            .as_ref()
            .map(|m| m.created.as_str())
            .or_else(|| self.sessions.first().map(|s| s.started.as_str()))
    }

    /// The instance with this id, if the journal names it.
    pub fn get(&self, id: &InstanceId) -> Option<&InstanceHistory> {
        self.instances.iter().find(|i| &i.id == id)
    }

    /// The instances in the spec's stage order, items in order (journal order for stages the
    /// resolved spec does not name).
    pub fn ordered(&self) -> Vec<&InstanceHistory> {
        let rank: HashMap<&str, usize> = self
            .stage_order
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let mut v: Vec<(usize, &InstanceHistory)> = self.instances.iter().enumerate().collect();
        v.sort_by_key(|(n, i)| {
            (
                rank.get(i.id.stage.as_str()).copied().unwrap_or(usize::MAX),
                i.id.item,
                *n,
            )
        });
        v.into_iter().map(|(_, i)| i).collect()
    }

    /// How many instances are in each state: succeeded, failed, skipped, pending, flaky.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for i in &self.instances {
            match &i.status {
                InstanceStatus::Succeeded { flaky, .. } => {
                    c.succeeded += 1;
                    c.flaky += usize::from(*flaky);
                }
                InstanceStatus::Failed { .. } => c.failed += 1,
                InstanceStatus::Skipped { .. } => c.skipped += 1,
                InstanceStatus::Pending => c.pending += 1,
            }
        }
        c
    }
}

/// Instances per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: usize,
    pub failed: usize,
    pub skipped: usize,
    pub pending: usize,
    pub flaky: usize,
}

/// Whether another process holds the journal's lock (the writer takes an exclusive `flock` for
/// its whole life, and the kernel drops it when the process dies, also by `kill -9`).
fn is_locked(path: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; it touches no memory. The shared lock, if
    // taken, is released when `file` is closed at the end of this function.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    rc != 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

/// The run folders under `dir` (folders with a `run.json` or an `events.jsonl`), sorted by name,
/// which is by start time for cinepipe's ids. Hidden folders (`.services`, `.cache`) are not
/// runs.
pub fn run_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.is_dir() && (path.join(MANIFEST).exists() || path.join(EVENTS).exists())
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
