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
//! the queue policy from the spec, the scenes from the fanned-out list) and then asks each
//! instance's kind for its part in [`contribute`], the one place a kind's telemetry is mapped:
//!
//! | kind | contributes |
//! | --- | --- |
//! | `llm` | an `LLM[]` entry from its attempt records; `Story`; run fallback notes; LLM latency percentiles |
//! | `collect-frames` | `FrameCount` of each attempt, from its attempt record's `frame_count` |
//! | `quality` (per scene) | the run's `QualityMetrics.Checks`/`Passed`/`DiversityEntropy`, from each instance's output (else last attempt record) in `run_quality` |
//! | every kind | its output's `telemetry` member, merged in (below) |
//!
//! The run's frame KPIs (`AvgFramesPerScene`, `ZeroFrameScenes`, `ShortScenes`,
//! `DoneMarkerDetectionRate`, `P95SceneSeconds`, `SemanticAlignment`) come from the scene records.
//!
//! A stage whose numbers belong to a scene (`patch-workflow`, `queue`, `await-marker`,
//! `collect-frames`) puts them in its output under `telemetry`, shaped like a part of the
//! scene's record with the contract's names (`{"PromptId": …, "Telemetry": {"QueueStart": …,
//! "GPU": {…}}, "Frames": {…}}`); a once-per-run stage (`quality`) puts a part of the run's
//! record there (`{"QualityMetrics": {…}}`). The part is merged over the defaults (objects
//! key by key, other values replaced) and must still make a valid record, or it is left out
//! with a fallback note saying why. Fields no stage filled keep the contract's "not measured"
//! values: null readings, zero counts, false flags, `HistoryExitReason = unknown`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::metadata::*;
use crate::exec::{InstanceId, RunDir, RunOutcome};
use crate::history::{AttemptHistory, InstanceHistory, InstanceStatus, RunHistory};
use crate::spec::model::{Stage as SpecStage, StageKind};
use crate::spec::{CheckedSpec, Fan};

/// `service-notes.json` in the run folder: what each session did with the services (reused,
/// launched, fell back), written by `exec::run` so that the `validate` stage sees them too.
pub const SERVICE_NOTES_FILE: &str = "service-notes.json";

/// Top-level keys of a scene record the engine owns; a stage's `telemetry` cannot set them.
const ENGINE_SCENE_KEYS: &[&str] = &[
    "SceneId",
    "Prompt",
    "Mood",
    "Keyframe",
    "Outcome",
    "SceneAttemptSummaries",
];
/// Top-level keys of the run record a once-per-run stage's `telemetry` may set.
const STAGE_RUN_KEYS: &[&str] = &["QualityMetrics"];

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

    let mut ids: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut notes = Vec::new();
        let mut id = text("id").unwrap_or_else(|| format!("scene-{}", i + 1));
        if ids.contains(&id) {
            // Scene ids must be unique in the metadata; the story's own id stays in the note.
            let mut n = i + 1;
            while ids.contains(&format!("{id}@{n}")) {
                n += 1;
            }
            let new = format!("{id}@{n}");
            notes.push(format!(
                "scene id `{id}` repeats in the story; recorded as `{new}`"
            ));
            id = new;
        }
        ids.push(id.clone());
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

    /// The record a stage left for one attempt, if any.
    fn attempt_record(&self, id: &InstanceId, attempt: u32) -> Option<Value> {
        read_json(
            &self
                .dir
                .join(RunDir::instance_dir(id))
                .join(format!("attempt-{attempt}.json")),
        )
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
                    .attempt_record(&inst.id, a.attempt)
                    .and_then(|r| r.get("frame_count").and_then(Value::as_u64))
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
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
                let (part, stage_notes) = scene_part(kind, &output);
                notes.extend(stage_notes);
                if let Some(part) = part {
                    scene = merge_scene(scene, &inst.id, part);
                }
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
        if let Some(part) = self.output(inst).and_then(|o| o.get("telemetry").cloned()) {
            self.merge_run(&inst.id, part);
        }
    }

    /// The `llm` part: one `LLM[]` entry per instance that ran, from its attempt records
    /// (`stages/<stage>/attempt-<n>.json`, written by `stages::llm`).
    fn llm(&mut self, stage: &SpecStage, inst: &InstanceHistory) {
        let SpecStage::Llm(cfg) = stage else { return };
        let attempts: Vec<&AttemptHistory> = inst
            .attempts
            .iter()
            .filter(|a| !self.in_flight(a))
            .collect();
        let Some(kept) = attempts.last() else { return };
        let records: Vec<(u32, Option<LlmRecord>)> = attempts
            .iter()
            .map(|a| {
                let r = self
                    .attempt_record(&inst.id, a.attempt)
                    .and_then(|v| serde_json::from_value::<LlmRecord>(v).ok());
                (a.attempt, r)
            })
            .collect();
        for (_, r) in &records {
            if let Some(r) = r
                && !r.cache_hit
                && let Some(t) = r.response_time_s
                && r.outcome == "succeeded"
            {
                self.response_times.push(t);
            }
        }
        let rec = records
            .iter()
            .rev()
            .find(|(n, _)| *n == kept.attempt)
            .and_then(|(_, r)| r.clone())
            .unwrap_or_default();
        // The last error of the instance: the record's, else the journal's.
        let error = attempts.iter().rev().find_map(|a| {
            records
                .iter()
                .find(|(n, _)| *n == a.attempt)
                .and_then(|(_, r)| r.as_ref().and_then(|r| r.error.clone()))
                .or_else(|| a.error.clone())
        });
        let reachable = rec.cache_hit || rec.providers.iter().any(|p| p.health == "reachable");
        let provider = rec.service.clone();
        let fallback_used = provider.as_deref().is_some_and(|p| p != cfg.service);
        self.meta.llm.push(LlmTelemetry {
            stage: inst.id.stage.clone(),
            fallback_used,
            provider,
            model: rec.model.clone(),
            health: if reachable {
                LlmHealth::Reachable
            } else {
                LlmHealth::Unavailable
            },
            providers_tried: rec.providers.iter().map(|p| p.service.clone()).collect(),
            response_time_seconds: if rec.cache_hit {
                None
            } else {
                rec.response_time_s.filter(|t| t.is_finite() && *t >= 0.0)
            },
            prompt_tokens: rec.prompt_tokens.map(saturate),
            completion_tokens: rec.completion_tokens.map(saturate),
            tokens_per_second: rec.tokens_per_second.filter(|t| t.is_finite() && *t >= 0.0),
            finish_reason: rec.finish_reason.clone(),
            cache_hit: rec.cache_hit,
            error,
        });
        for n in &rec.fallback_notes {
            if !self.meta.system.fallback_notes.contains(n) {
                self.meta.system.fallback_notes.push(n.clone());
            }
        }
    }

    fn merge_run(&mut self, id: &InstanceId, part: Value) {
        let Value::Object(part) = part else { return };
        let allowed: Map<String, Value> = part
            .into_iter()
            .filter(|(k, _)| STAGE_RUN_KEYS.contains(&k.as_str()))
            .collect();
        let Ok(mut doc) = serde_json::to_value(&self.meta) else {
            return;
        };
        merge(&mut doc, Value::Object(allowed));
        match serde_json::from_value::<ArtifactMetadata>(doc) {
            Ok(m) => self.meta = m,
            Err(e) => self
                .meta
                .system
                .fallback_notes
                .push(format!("telemetry of `{id}` left out: {e}")),
        }
    }
}

/// A per-scene stage's part of its scene's record, and its fallback notes, from its output.
///
/// The ComfyUI stages report under the contract's names, each in its own place: `queue` its
/// `Telemetry` fields under `telemetry` (and `gpu`, `prompt_id`, `server`, `workflow_path`
/// beside it), `await-marker` the `DoneMarker*`/`ForcedCopy*` fields at the top of its output,
/// `collect-frames` a whole `Frames`. Any other kind's `telemetry` member is taken as a part of
/// the scene record as it is. Notes are gathered apart: merging replaces arrays, and every
/// stage's notes belong in the scene's `System.FallbackNotes`.
fn scene_part(kind: StageKind, output: &Value) -> (Option<Value>, Vec<String>) {
    let notes = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // A `telemetry` member already shaped like a part of the scene record is taken as it is.
    let queue_shaped = output
        .get("telemetry")
        .is_some_and(|t| t.get("HistoryExitReason").is_some() || t.get("QueueStart").is_some());
    match kind {
        StageKind::Queue if queue_shaped => {
            let mut telemetry = output.get("telemetry").cloned().unwrap_or(Value::Null);
            if let (Value::Object(t), Some(gpu)) =
                (&mut telemetry, output.get("gpu").filter(|g| !g.is_null()))
            {
                t.insert("GPU".into(), gpu.clone());
            }
            let mut part = Map::new();
            if telemetry.is_object() {
                part.insert("Telemetry".into(), telemetry);
            }
            for (from, to) in [
                ("prompt_id", "PromptId"),
                ("server", "Server"),
                ("workflow_path", "WorkflowPath"),
            ] {
                if let Some(v) = output.get(from).filter(|v| v.is_string()) {
                    part.insert(to.into(), v.clone());
                }
            }
            (
                Some(Value::Object(part)),
                notes(output.get("fallback_notes")),
            )
        }
        StageKind::AwaitMarker => {
            let mut t = Map::new();
            for key in [
                "DoneMarkerDetected",
                "DoneMarkerWaitSeconds",
                "DoneMarkerPath",
                "ForcedCopyTriggered",
                "ForcedCopyDebugPath",
            ] {
                if let Some(v) = output.get(key) {
                    t.insert(key.into(), v.clone());
                }
            }
            let mut part = Map::new();
            part.insert("Telemetry".into(), Value::Object(t));
            (
                Some(Value::Object(part)),
                notes(output.pointer("/System/FallbackNotes")),
            )
        }
        StageKind::CollectFrames => {
            let part = output.get("Frames").map(|f| {
                let mut m = Map::new();
                m.insert("Frames".into(), f.clone());
                Value::Object(m)
            });
            (part, notes(output.pointer("/System/FallbackNotes")))
        }
        _ => (output.get("telemetry").cloned(), Vec::new()),
    }
}

/// The run's `QualityMetrics` from its scenes.
impl Builder<'_> {
    /// The frame and marker KPIs from the scene records, and the checks of a per-scene
    /// `quality` stage gathered over its instances (the output of one that succeeded, else the
    /// record of its last finished attempt, which an `enforce`d failure leaves with its checks).
    /// A once-per-run `quality` stage's own `telemetry` is merged over this later.
    fn run_quality(&mut self, per_item: &[(&String, &SpecStage)]) {
        let scenes = &self.meta.scenes;
        if scenes.is_empty() {
            return;
        }
        let n = scenes.len() as f64;
        let q = &mut self.meta.quality_metrics;
        q.avg_frames_per_scene = Some(
            scenes
                .iter()
                .map(|s| f64::from(s.frames.count))
                .sum::<f64>()
                / n,
        );
        q.zero_frame_scenes =
            saturate(scenes.iter().filter(|s| s.frames.count == 0).count() as u64);
        q.short_scenes = saturate(scenes.iter().filter(|s| s.frames.short).count() as u64);
        if per_item
            .iter()
            .any(|(_, s)| s.kind() == StageKind::AwaitMarker)
        {
            let seen = scenes
                .iter()
                .filter(|s| s.telemetry.done_marker_detected)
                .count();
            q.done_marker_detection_rate = Some(seen as f64 / n);
        }
        let mut times: Vec<f64> = scenes
            .iter()
            .filter(|s| s.telemetry.queue_start.is_some())
            .map(|s| s.telemetry.duration_seconds)
            .collect();
        times.sort_by(f64::total_cmp);
        q.p95_scene_seconds = percentile(&times, 95.0);
        let aligned: Vec<f64> = scenes
            .iter()
            .filter_map(|s| s.quality_metrics.alignment)
            .collect();
        if !aligned.is_empty() {
            q.semantic_alignment = Some(aligned.iter().sum::<f64>() / aligned.len() as f64);
        }

        let count = scenes.len();
        for (name, stage) in per_item {
            if stage.kind() != StageKind::Quality {
                continue;
            }
            for item in 0..count {
                let id = InstanceId::new((*name).clone(), Some(item as u32));
                let Some(inst) = self.history.get(&id) else {
                    continue;
                };
                let part = self.output(inst).or_else(|| {
                    let last = inst.attempts.iter().rev().find(|a| !self.in_flight(a))?;
                    self.attempt_record(&id, last.attempt)
                });
                let Some(part) = part else { continue };
                let checks: Vec<QualityCheckResult> = part
                    .get("checks")
                    .cloned()
                    .and_then(|c| serde_json::from_value(c).ok())
                    .unwrap_or_default();
                let q = &mut self.meta.quality_metrics;
                for c in checks {
                    // A run-wide check (no scene) is the same in every scene's instance.
                    if c.scene_id.is_none()
                        && q.checks
                            .iter()
                            .any(|k| k.check == c.check && k.scene_id.is_none())
                    {
                        continue;
                    }
                    q.passed = Some(q.passed.unwrap_or(true) && c.passed);
                    q.checks.push(c);
                }
                if let Some(p) = part.get("passed").and_then(Value::as_bool) {
                    q.passed = Some(q.passed.unwrap_or(true) && p);
                }
                if q.diversity_entropy.is_none() {
                    q.diversity_entropy = part.get("diversity_entropy").and_then(Value::as_f64);
                }
            }
        }
    }
}

/// Merges a per-scene stage's `telemetry` part into the scene, or notes why it could not.
fn merge_scene(scene: SceneRecord, id: &InstanceId, part: Value) -> SceneRecord {
    let Value::Object(part) = part else {
        return scene;
    };
    let allowed: Map<String, Value> = part
        .into_iter()
        .filter(|(k, _)| !ENGINE_SCENE_KEYS.contains(&k.as_str()))
        .collect();
    let Ok(mut doc) = serde_json::to_value(&scene) else {
        return scene;
    };
    merge(&mut doc, Value::Object(allowed));
    match serde_json::from_value::<SceneRecord>(doc) {
        Ok(mut s) => {
            // Derived, so that a stage that reports both readings cannot get it wrong.
            let g = &mut s.telemetry.gpu;
            g.vram_delta_mb = g.vram_before_mb.zip(g.vram_after_mb).map(|(b, a)| a - b);
            s
        }
        Err(e) => {
            let mut s = scene;
            s.telemetry
                .system
                .fallback_notes
                .push(format!("telemetry of `{id}` left out: {e}"));
            s
        }
    }
}

/// Objects merge key by key; anything else replaces.
fn merge(base: &mut Value, part: Value) {
    match (base, part) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
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

/// What `stages::llm` writes per attempt (`attempt-<n>.json`); fields it may lack default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct LlmRecord {
    outcome: String,
    error: Option<String>,
    service: Option<String>,
    model: Option<String>,
    cache_hit: bool,
    response_time_s: Option<f64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    tokens_per_second: Option<f64>,
    finish_reason: Option<String>,
    providers: Vec<ProviderRecord>,
    fallback_notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct ProviderRecord {
    service: String,
    health: String,
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
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::exec::{
        BoxFuture, ExecOptions, Interrupt, Registry, RunRequest, Stage, StageContext, StageFailure,
    };
    use crate::spec::model::FailureClass;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("engine/ has a parent")
            .to_path_buf()
    }

    /// story (llm) → render (queue, per scene) → validate (gathers; the real stage).
    fn spec(dir: &Path) -> PathBuf {
        let text = format!(
            r#"
[run]
name = "t"
base_dir = "{root}"
output_dir = "{out}"

[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "m"

[services.comfy]
kind = "comfyui"
urls = ["http://127.0.0.1:9"]

[stages.story]
kind = "llm"
service = "llm"
prompt = "prompts/story/v1/sci-fi.hbs"
vars = {{ scenes = 3, tone = "calm", premise = "" }}

[stages.render]
kind = "queue"
needs = ["story"]
for_each = "story.scenes"
service = "comfy"
max_wait_s = 100
poll_interval_s = 4
retry = {{ budget = 2 }}

[stages.validate]
kind = "validate"
needs = ["render"]
"#,
            root = root().display(),
            out = dir.join("runs").display(),
        );
        let p = dir.join("t.toml");
        std::fs::write(&p, text).expect("spec");
        p
    }

    /// The llm and queue kinds, scripted: a story whose last scene repeats an id; `render[1]`
    /// fails once; every render reports queue telemetry the way a queue stage does.
    struct Scripted;

    impl Stage for Scripted {
        fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
            Box::pin(async move {
                if ctx.instance.stage == "story" {
                    let dir = ctx.run_dir.join(&ctx.instance_dir);
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    let record = json!({
                        "attempt": ctx.attempt, "outcome": "succeeded", "service": "llm",
                        "model": "m", "cache_hit": false, "response_time_s": 1.5,
                        "prompt_tokens": 10, "completion_tokens": 20, "finish_reason": "stop",
                        "providers": [{"service": "llm", "health": "reachable"}],
                        "fallback_notes": ["llm: a note"],
                    });
                    std::fs::write(dir.join("attempt-1.json"), record.to_string()).expect("w");
                    return Ok(json!({
                        "title": "T", "story_version": "2",
                        "scenes": [
                            {"id": "a", "prompt": "p1", "mood": "m1"},
                            {"id": "b", "prompt": "p2", "mood": "m2", "keyframe": "k.png"},
                            {"id": "b", "prompt": "p3", "mood": "m3"},
                        ],
                    }));
                }
                if ctx.instance.item == Some(1) && ctx.attempt == 1 {
                    return Err(StageFailure::new(FailureClass::Transport, "refused"));
                }
                Ok(json!({"telemetry": {
                    "PromptId": format!("p-{}", ctx.instance.item.unwrap_or(0)),
                    "Telemetry": {
                        "HistoryExitReason": "success",
                        "ExecutionSuccessDetected": true,
                        "GPU": {"Source": "nvml", "VramBeforeMB": 100, "VramAfterMB": 150},
                    },
                }}))
            })
        }
    }

    fn registry() -> Registry {
        Registry::builtin()
            .with(StageKind::Llm, Arc::new(Scripted))
            .with(StageKind::Queue, Arc::new(Scripted))
    }

    fn metadata(dir: &Path) -> ArtifactMetadata {
        let text = std::fs::read_to_string(dir.join(METADATA_FILE)).expect("metadata");
        serde_json::from_str(&text).expect("parses into the types")
    }

    #[tokio::test]
    async fn a_finished_run_writes_telemetry_that_keeps_the_contract() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let req = RunRequest {
            spec: Some(spec(tmp.path())),
            options: ExecOptions::default(),
            skip_services: true,
            ..Default::default()
        };
        let report = crate::exec::run(req, registry(), &Interrupt::new(), vec![])
            .await
            .expect("runs");
        assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
        assert_eq!(report.telemetry_error, None);
        let dir = report.dir.clone();
        assert_eq!(crate::verify::verify_run(&dir).expect("reads"), []);

        // The validate stage checked the files as they were before it, and passed.
        let out: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("stages/validate/output.json")).expect("output"),
        )
        .expect("json");
        assert_eq!(out["passed"], true, "{out}");

        let m = metadata(&dir);
        assert_eq!(m.outcome, Outcome::Success);
        assert!(m.ended_at.is_some());
        assert_eq!(
            m.story,
            Some(StoryInfo {
                title: "T".into(),
                story_version: "2".into()
            })
        );
        assert_eq!(m.queue_config.history_max_wait_seconds, 100.0);
        assert_eq!(m.queue_config.scene_retry_budget, 2);
        let ids: Vec<&str> = m.scenes.iter().map(|s| s.scene_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "b@3"]);
        assert_eq!(
            m.scenes[2].telemetry.system.fallback_notes,
            ["scene id `b` repeats in the story; recorded as `b@3`"]
        );
        assert_eq!(m.scenes[1].keyframe.as_deref(), Some("k.png"));
        let s1 = &m.scenes[1];
        assert_eq!(s1.outcome, Outcome::Success);
        let flaky: Vec<(u32, AttemptOutcome, bool)> = s1
            .scene_attempt_summaries
            .iter()
            .map(|a| (a.attempt, a.outcome, a.flaky))
            .collect();
        assert_eq!(
            flaky,
            [
                (1, AttemptOutcome::Failed, false),
                (2, AttemptOutcome::Success, true)
            ]
        );
        // The queue stage's part, merged; the delta derived.
        assert_eq!(s1.prompt_id.as_deref(), Some("p-1"));
        let t = &s1.telemetry;
        assert_eq!(t.history_exit_reason, HistoryExitReason::Success);
        assert_eq!(t.gpu.vram_delta_mb, Some(50));
        assert_eq!(t.poll_limit, 25);
        assert_eq!(t.max_wait_seconds, 100.0);
        // The llm part.
        assert_eq!(m.llm.len(), 1);
        assert_eq!(m.llm[0].provider.as_deref(), Some("llm"));
        assert_eq!(m.llm[0].completion_tokens, Some(20));
        assert_eq!(
            m.system.resource_metrics.llm_response_p50_seconds,
            Some(1.5)
        );
        assert!(m.system.resource_metrics.engine_peak_rss_mb.is_some());
        assert!(m.system.fallback_notes.contains(&"llm: a note".to_owned()));
        let once: Vec<&str> = m
            .stage_attempt_summaries
            .iter()
            .map(|a| a.stage.as_str())
            .collect();
        assert_eq!(once, ["story", "validate"]);
    }

    #[tokio::test]
    async fn a_killed_run_is_incomplete_and_its_unfinished_attempt_cancelled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = spec(tmp.path());
        let req = RunRequest {
            spec: Some(path.clone()),
            skip_services: true,
            ..Default::default()
        };
        let report = crate::exec::run(req, registry(), &Interrupt::new(), vec![])
            .await
            .expect("runs");
        let dir = report.dir.clone();
        let checked = crate::spec::load(&path, None).expect("spec");
        // Cut the journal back to `validate`'s start, as a `kill -9` during it would.
        let events = dir.join(crate::exec::rundir::EVENTS);
        let text = std::fs::read_to_string(&events).expect("journal");
        let keep: Vec<&str> = text
            .lines()
            .take_while(|l| !l.contains(r#""event":"attempt-finished","instance":"validate""#))
            .collect();
        std::fs::write(&events, format!("{}\n", keep.join("\n"))).expect("write");

        // Running (the view of the validate stage itself): its attempt is left out.
        let m = write_run(&dir, &checked).expect("writes");
        assert_eq!(m.outcome, Outcome::Incomplete);
        assert_eq!(m.ended_at, None);
        assert_eq!(m.stage_attempt_summaries.len(), 1);
        assert_eq!(crate::verify::verify_run(&dir).expect("reads"), []);

        // A later session started: the attempt was killed, so it is cancelled, with no end.
        let first = keep
            .first()
            .copied()
            .unwrap_or("")
            .replace(r#""session":1"#, r#""session":2"#);
        std::fs::write(&events, format!("{}\n{first}\n", keep.join("\n"))).expect("write");
        let m = write_run(&dir, &checked).expect("writes");
        let v = m.stage_attempt_summaries.last().expect("validate");
        assert_eq!(
            (v.stage.as_str(), v.outcome, v.end),
            ("validate", AttemptOutcome::Cancelled, None)
        );
        assert_eq!(crate::verify::verify_run(&dir).expect("reads"), []);
    }

    #[test]
    fn a_part_that_breaks_the_record_is_left_out_with_a_note() {
        let q = QueueConfig::default();
        let scene = SceneRecord {
            scene_id: "s".into(),
            prompt: String::new(),
            mood: String::new(),
            keyframe: None,
            outcome: Outcome::Success,
            prompt_id: None,
            server: None,
            workflow_path: None,
            frames: Frames {
                count: 0,
                min_frames: 0,
                short: false,
                directory: None,
                paths: vec![],
                best_attempt: None,
            },
            quality_metrics: SceneQualityMetrics::default(),
            scene_attempt_summaries: vec![],
            telemetry: never_queued(&q, vec![]),
        };
        let id = InstanceId::new("render", Some(0));
        let bad = merge_scene(
            scene.clone(),
            &id,
            json!({"Telemetry": {"HistoryExitReason": "timeout"}}),
        );
        assert_eq!(
            bad.telemetry.history_exit_reason,
            HistoryExitReason::Unknown
        );
        assert_eq!(bad.telemetry.system.fallback_notes.len(), 1);
        assert!(
            bad.telemetry.system.fallback_notes[0].starts_with("telemetry of `render[0]` left out")
        );
        // The engine's own keys are not a stage's to set.
        let same = merge_scene(
            scene.clone(),
            &id,
            json!({"SceneId": "x", "Outcome": "failed"}),
        );
        assert_eq!(same, scene);
    }
}
