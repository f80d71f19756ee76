//! Building `artifact-metadata.json` (and with it `run-summary.txt`) from a run folder: the
//! journal over every session ([`RunHistory`]), each instance's output, and the per-attempt
//! records stages leave beside it (`stages/<stage>[/<item>]/attempt-<n>.json`).
//!
//! The run folder is the only input, on purpose: the `validate` stage (inside the run, from
//! the state so far) and the end of every session (success, failure, interrupt) build the same
//! document the same way, and a resumed run's metadata covers its earlier sessions too.
//!
//! # How stage kinds contribute
//!
//! [`from_run`] fills what the engine itself knows (instances, attempts, outcomes, flaky flags,
//! the queue policy from the spec, the scenes from the fanned-out list) and then reads each
//! instance's output and attempt records as its kind's type ([`crate::stages::output`]) and
//! maps them onto the contract's types in Rust code (`parts`, and here):
//!
//! | kind | contributes |
//! | --- | --- |
//! | `llm` | an `LLM[]` entry from its attempt records; `Story`; run fallback notes; LLM latency percentiles |
//! | `queue` | the scene's queue `Telemetry`, `GPU` (with `VramDeltaMB` derived), `PromptId`, `Server`, `WorkflowPath`; fallback notes |
//! | `await-marker` | the scene's `DoneMarker*` and `ForcedCopy*` fields; fallback notes |
//! | `collect-frames` | the scene's `Frames`; `FrameCount` of each attempt, from its attempt record; fallback notes |
//! | `quality` (per scene) | the scene's `QualityMetrics`; the run's `QualityMetrics.Checks`/`Passed`/`DiversityEntropy`, from each instance's output (else last attempt record) in `run_quality` |
//! | `quality` (once per run) | the run's `QualityMetrics.Passed`/`DiversityEntropy`/`SemanticAlignment`/`Checks` |
//!
//! The run's frame KPIs (`AvgFramesPerScene`, `ZeroFrameScenes`, `ShortScenes`,
//! `DoneMarkerDetectionRate`, `P95SceneSeconds`, `SemanticAlignment`) come from the scene records.
//! An output that is not its kind's type is left out with a fallback note saying why. Fields
//! no stage filled keep the contract's "not measured" values: null readings, zero counts,
//! false flags, `HistoryExitReason = unknown`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

mod llm;
mod quality;

use super::parts;
use crate::artifact_metadata::*;
use crate::rundir::RunDir;
use crate::rundir::event::{InstanceId, RunOutcome};
use crate::rundir::history::{AttemptHistory, InstanceHistory, InstanceStatus, RunHistory};
use crate::rundir::lock::{FolderLock, METADATA_LOCK_WAIT};
use crate::spec::model::{Stage as SpecStage, StageKind};
use crate::spec::{CheckedSpec, Fan};
use crate::stages::output::FramesRecord;

/// `service-notes.json` in the run folder: what each session did with the services (reused,
/// launched, fell back), written by `run::run` so that the `validate` stage sees them too.
pub const SERVICE_NOTES_FILE: &str = "service-notes.json";

/// What [`write_run`] could not do.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot read the run folder `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Builds the metadata from the run folder and writes `artifact-metadata.json` and
/// `run-summary.txt` into it, each atomically. Ratings already in an earlier metadata file
/// (`Feedback`) are kept.
pub fn write_run(dir: &Path, spec: &CheckedSpec) -> Result<ArtifactMetadata, WriteError> {
    let history = RunHistory::read(dir).map_err(|source| WriteError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let notes = read_service_notes(dir);
    let mut meta = from_run(spec, &history, &notes);
    // Held from reading the ratings already given to writing them back, so that a rating
    // `cinepipe feedback` adds meanwhile is not lost (see `rundir::lock`).
    let _lock =
        FolderLock::exclusive(dir, METADATA_LOCK_WAIT).map_err(|source| WriteError::Write {
            path: dir.join(METADATA_FILE),
            source,
        })?;
    if let Ok(text) = std::fs::read_to_string(dir.join(METADATA_FILE))
        && let Ok(old) = serde_json::from_str::<Value>(&text)
        && let Some(fb) = old.get("Feedback")
        && let Ok(fb) = serde_json::from_value::<Vec<Feedback>>(fb.clone())
    {
        meta.feedback = fb;
    }
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        crate::fsutil::write_atomic(&path, bytes).map_err(|source| WriteError::Write {
            path: path.clone(),
            source,
        })
    };
    let mut json = serde_json::to_vec_pretty(&meta).map_err(|e| WriteError::Write {
        path: dir.join(METADATA_FILE),
        source: e.into(),
    })?;
    json.push(b'\n');
    write(METADATA_FILE, &json)?;
    write(SUMMARY_FILE, super::write_summary(&meta).as_bytes())?;
    Ok(meta)
}

/// The service notes recorded so far; none when the file is missing or broken (the notes are
/// a record, not something the run depends on).
pub fn read_service_notes(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(SERVICE_NOTES_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Adds a session's service notes to the run folder's record (atomically).
pub fn append_service_notes(dir: &Path, session: u32, notes: &[String]) -> std::io::Result<()> {
    let mut all = read_service_notes(dir);
    // Notes of a resume say which session they belong to: "reused" twice is two sessions.
    all.extend(notes.iter().map(|n| {
        if session > 1 {
            format!("(session {session}) {n}")
        } else {
            n.clone()
        }
    }));
    let mut bytes = serde_json::to_vec_pretty(&all)?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&dir.join(SERVICE_NOTES_FILE), &bytes)
}

/// The metadata of a run, from what its folder holds now. A run whose last session recorded no
/// end (it is running: the `validate` stage; or it was killed) is `incomplete` with no
/// `EndedAt`; attempts still running are left out.
pub fn from_run(
    spec: &CheckedSpec,
    history: &RunHistory,
    service_notes: &[String],
) -> ArtifactMetadata {
    let last = history.sessions.last();
    let end = last.and_then(|s| s.end.as_ref());
    let current = last.map_or(0, |s| s.number);
    let running = end.is_none();
    let outcome = match end.map(|e| e.outcome) {
        Some(RunOutcome::Succeeded) => Outcome::Success,
        Some(RunOutcome::Failed) => Outcome::Failed,
        Some(RunOutcome::Interrupted) => Outcome::Cancelled,
        None => Outcome::Incomplete,
    };
    let started_at = history
        .started()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(Timestamp::now);
    let queue_config = queue_config(spec);

    let mut b = Builder {
        dir: &history.dir,
        meta: ArtifactMetadata {
            contract_version: CONTRACT_VERSION,
            run_id: history.run_id.clone(),
            run_name: spec.spec.run.name.clone(),
            profile: spec.profile.clone(),
            started_at,
            ended_at: end.and_then(|e| e.ts.parse().ok()),
            outcome,
            story: None,
            queue_config: queue_config.clone(),
            llm: Vec::new(),
            scenes: Vec::new(),
            stage_attempt_summaries: Vec::new(),
            quality_metrics: QualityMetrics::default(),
            system: RunSystem {
                resource_metrics: ResourceMetrics {
                    engine_peak_rss_mb: peak_rss_mb(),
                    ..ResourceMetrics::default()
                },
                fallback_notes: service_notes.to_vec(),
            },
            feedback: Vec::new(),
        },
        history,
        response_times: Vec::new(),
        running,
        current,
    };

    for note in &history.problems {
        b.meta
            .system
            .fallback_notes
            .push(format!("journal: {note}"));
    }

    // The scenes: the list the per-item stages fan out over, else the story of an `llm` stage.
    let list = spec.fans.values().find_map(|f| match f {
        Fan::PerItem { source, .. } | Fan::Gather { source } => Some(source.clone()),
        Fan::Once => None,
    });
    let (list_stage, list_field) = match &list {
        Some(l) => {
            let (s, f) = l.split_once('.').unwrap_or((l.as_str(), ""));
            (Some(s.to_owned()), f.to_owned())
        }
        None => (
            spec.spec
                .stages
                .iter()
                .find(|(_, s)| s.kind() == StageKind::Llm)
                .map(|(n, _)| n.clone()),
            "scenes".to_owned(),
        ),
    };
    let story = list_stage
        .as_deref()
        .and_then(|s| history.get(&InstanceId::new(s, None)))
        .and_then(|i| b.output(i));
    if let Some(story) = &story {
        b.meta.story = story_info(story);
    }
    let items: Vec<Value> = story
        .as_ref()
        .and_then(|s| s.get(&list_field))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let per_item: Vec<(&String, &SpecStage)> = spec
        .spec
        .stages
        .iter()
        .filter(|(n, _)| {
            matches!(spec.fans.get(*n), Some(Fan::PerItem { source, .. }) if Some(source) == list.as_ref())
        })
        .collect();
    let min_frames = per_item.iter().find_map(|(_, s)| match s {
        SpecStage::CollectFrames(c) => Some(c.min_frames),
        _ => None,
    });

    // Scene ids must be unique in the metadata; the story's own id stays in the note.
    let ids = crate::story::scene_ids(&items);
    for (i, (item, (id, note))) in items.iter().zip(ids).enumerate() {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        let notes: Vec<String> = note.into_iter().collect();
        let scene = SceneRecord {
            scene_id: id,
            prompt: text("prompt").unwrap_or_default(),
            mood: text("mood").unwrap_or_default(),
            keyframe: text("keyframe"),
            outcome: Outcome::Incomplete,
            prompt_id: None,
            server: None,
            workflow_path: None,
            frames: Frames {
                count: 0,
                min_frames: min_frames.unwrap_or(0),
                short: false,
                directory: None,
                paths: Vec::new(),
                best_attempt: None,
            },
            quality_metrics: SceneQualityMetrics::default(),
            scene_attempt_summaries: Vec::new(),
            telemetry: never_queued(&queue_config, notes),
        };
        let scene = b.scene(scene, i as u32, &per_item, outcome);
        b.meta.scenes.push(scene);
    }
    b.run_quality(&per_item);

    // The once-per-run stages, in the spec's order.
    for (name, stage) in &spec.spec.stages {
        if matches!(spec.fans.get(name), Some(Fan::PerItem { .. })) {
            continue;
        }
        let Some(inst) = history.get(&InstanceId::new(name.clone(), None)) else {
            continue;
        };
        let mut attempts = b.attempts(inst, stage.kind());
        b.meta.stage_attempt_summaries.append(&mut attempts);
        b.contribute(stage, inst);
    }
    b.meta.stage_attempt_summaries.sort_by_key(|a| a.start);
    b.weighted_scores();

    let mut times = std::mem::take(&mut b.response_times);
    times.sort_by(f64::total_cmp);
    b.meta.system.resource_metrics.llm_response_p50_seconds = percentile(&times, 50.0);
    b.meta.system.resource_metrics.llm_response_p95_seconds = percentile(&times, 95.0);
    b.meta
}

struct Builder<'a> {
    dir: &'a Path,
    history: &'a RunHistory,
    meta: ArtifactMetadata,
    /// LLM response times of every answered request, for the percentiles.
    response_times: Vec<f64>,
    /// The last session recorded no end: it is the one running now.
    running: bool,
    /// The last session's number.
    current: u32,
}

impl<'a> Builder<'a> {
    /// An attempt with no end in the session that is running is in flight (left out); one of
    /// an earlier or ended session was killed during it (recorded as cancelled, no end).
    fn in_flight(&self, a: &AttemptHistory) -> bool {
        self.running && a.session == self.current && a.finished.is_none()
    }

    /// An instance's output, read back from the run folder.
    fn output(&self, inst: &InstanceHistory) -> Option<Value> {
        let InstanceStatus::Succeeded {
            output: Some(rel), ..
        } = &inst.status
        else {
            return None;
        };
        read_json(&self.dir.join(rel))
    }

    /// The record a stage left for one attempt, read as its kind's type, if any.
    fn attempt_record<R: DeserializeOwned>(&self, id: &InstanceId, attempt: u32) -> Option<R> {
        let path = self
            .dir
            .join(RunDir::instance_dir(id))
            .join(format!("attempt-{attempt}.json"));
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// An instance's attempts as the contract records them.
    fn attempts(&self, inst: &InstanceHistory, kind: StageKind) -> Vec<AttemptSummary> {
        let mut failed_before = false;
        let mut out = Vec::new();
        for a in inst.attempts.iter().filter(|a| !self.in_flight(a)) {
            let outcome = match a.outcome {
                Some(crate::exec::AttemptOutcome::Succeeded) => AttemptOutcome::Success,
                Some(
                    crate::exec::AttemptOutcome::Failed
                    | crate::exec::AttemptOutcome::TimedOut
                    | crate::exec::AttemptOutcome::Crashed,
                ) => AttemptOutcome::Failed,
                // Cancelled, or killed during the attempt (no end was recorded).
                Some(crate::exec::AttemptOutcome::Cancelled) | None => AttemptOutcome::Cancelled,
            };
            let frame_count = match kind {
                StageKind::CollectFrames => self
                    .attempt_record::<FramesRecord>(&inst.id, a.attempt)
                    .and_then(|r| r.body.frame_count),
                _ => None,
            };
            out.push(AttemptSummary {
                stage: inst.id.stage.clone(),
                attempt: a.attempt.max(1),
                start: a.started.parse().unwrap_or_else(|_| Timestamp::now()),
                end: a.finished.as_deref().and_then(|t| t.parse().ok()),
                outcome,
                failure_class: a.class,
                error: a.error.clone(),
                flaky: outcome == AttemptOutcome::Success && failed_before,
                frame_count,
            });
            failed_before |= outcome == AttemptOutcome::Failed;
        }
        out
    }

    /// One scene: its per-item instances' attempts, outcome and contributions.
    fn scene(
        &mut self,
        mut scene: SceneRecord,
        item: u32,
        per_item: &[(&String, &SpecStage)],
        run: Outcome,
    ) -> SceneRecord {
        let mut statuses = Vec::new();
        let mut parts = Vec::new();
        for (name, stage) in per_item {
            let id = InstanceId::new((*name).clone(), Some(item));
            let history = self.history;
            let Some(inst) = history.get(&id) else {
                statuses.push(None);
                continue;
            };
            statuses.push(Some(inst.status.clone()));
            scene
                .scene_attempt_summaries
                .extend(self.attempts(inst, stage.kind()));
            parts.push((stage.kind(), inst));
        }
        scene.scene_attempt_summaries.sort_by_key(|a| a.start);
        scene.outcome = scene_outcome(&statuses, run);
        let mut notes = Vec::new();
        for (kind, inst) in parts {
            if let Some(output) = self.output(inst) {
                parts::scene_part(&mut scene, kind, &inst.id, output, &mut notes);
            }
        }
        scene.telemetry.system.fallback_notes.extend(notes);
        scene
    }

    /// What a once-per-run instance's kind adds (the table in the module docs).
    fn contribute(&mut self, stage: &SpecStage, inst: &InstanceHistory) {
        if stage.kind() == StageKind::Llm {
            self.llm(stage, inst);
        }
        if let Some(output) = self.output(inst) {
            let meta = &mut self.meta;
            parts::run_part(
                &mut meta.quality_metrics,
                stage.kind(),
                &inst.id,
                output,
                &mut meta.system.fallback_notes,
            );
        }
    }
}

/// A scene's outcome from its per-item instances (`None`: not created yet).
fn scene_outcome(statuses: &[Option<InstanceStatus>], run: Outcome) -> Outcome {
    use InstanceStatus as S;
    if statuses.iter().any(|s| matches!(s, Some(S::Failed { .. }))) {
        return Outcome::Failed;
    }
    if statuses
        .iter()
        .all(|s| matches!(s, Some(S::Succeeded { .. })))
    {
        return Outcome::Success;
    }
    if run == Outcome::Cancelled {
        return Outcome::Cancelled;
    }
    if statuses
        .iter()
        .any(|s| matches!(s, Some(S::Skipped { .. })))
    {
        return Outcome::Skipped;
    }
    // A run that ended without reaching the scene's stages skipped them.
    if matches!(run, Outcome::Failed) {
        return Outcome::Skipped;
    }
    Outcome::Incomplete
}

/// The scene telemetry of a scene no queue stage has reported on: the policy applied, nothing
/// measured.
fn never_queued(q: &QueueConfig, notes: Vec<String>) -> Telemetry {
    Telemetry {
        duration_seconds: 0.0,
        queue_start: None,
        queue_end: None,
        history_attempts: 0,
        history_attempt_limit: q.history_max_attempts,
        poll_limit: q.poll_limit(),
        max_wait_seconds: q.history_max_wait_seconds,
        poll_interval_seconds: q.history_poll_interval_seconds,
        history_exit_reason: HistoryExitReason::Unknown,
        execution_success_detected: false,
        execution_success_at: None,
        post_execution_timeout_seconds: q.post_execution_timeout_seconds,
        history_post_execution_timeout_reached: false,
        scene_retry_budget: q.scene_retry_budget,
        gpu: GpuTelemetry::none(),
        done_marker_detected: false,
        done_marker_wait_seconds: None,
        done_marker_path: None,
        forced_copy_triggered: false,
        forced_copy_debug_path: None,
        system: SceneSystem {
            fallback_notes: notes,
        },
    }
}

/// The queue policy of the spec's first `queue` stage (profile applied), else the seeds'
/// defaults.
pub fn queue_config(spec: &CheckedSpec) -> QueueConfig {
    spec.spec
        .stages
        .values()
        .find_map(|s| match s {
            SpecStage::Queue(q) => Some(QueueConfig {
                scene_retry_budget: q.retry.budget,
                history_max_wait_seconds: q.max_wait_s,
                history_poll_interval_seconds: q.poll_interval_s,
                history_max_attempts: q.max_attempts,
                post_execution_timeout_seconds: q.post_execution_timeout_s,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

fn story_info(story: &Value) -> Option<StoryInfo> {
    Some(StoryInfo {
        title: story.get("title")?.as_str()?.to_owned(),
        story_version: story.get("story_version")?.as_str()?.to_owned(),
    })
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn read_json(path: &Path) -> Option<Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Nearest-rank percentile of sorted values; null when there are none.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// This process's peak resident memory, in MB (`getrusage`; Linux reports KiB).
pub fn peak_rss_mb() -> Option<i64> {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (rc == 0)
        .then(|| i64::try_from((usage.ru_maxrss.max(0) as u64).div_ceil(1024)).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
