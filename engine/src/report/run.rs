//! The view of one run folder: its journal ([`RunHistory`]) for the outcome, the timeline and
//! the histograms; its `artifact-metadata.json` ([`ArtifactMetadata`]) for the scenes, their
//! telemetry, quality checks, fallback notes and ratings; the story stage's output for the
//! story.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ReportError;
use super::links::Links;
use super::thumbs::{self, ThumbOptions};
use super::timeline::{self, Histogram, Timeline, human, name_of};
use crate::artifact_metadata::{ArtifactMetadata, METADATA_FILE, SUMMARY_FILE, SceneRecord};
use crate::rundir::history::{InstanceStatus, RunHistory};
use crate::rundir::{EVENTS, MANIFEST, RESOLVED_SPEC, RunDir};
use crate::telemetry::{Subject, Summary};

#[derive(Debug, Serialize)]
pub(crate) struct RunView {
    /// The `id` of the run's section (`run-<run id>`).
    pub anchor: String,
    pub run_id: String,
    pub name: String,
    pub profile: String,
    pub outcome: String,
    /// `good`, `bad` or `other`: the outcome's colour.
    pub tone: &'static str,
    pub started: String,
    pub ended: String,
    pub sessions: Vec<String>,
    pub counts: String,
    pub problems: Vec<String>,
    pub metadata_note: Option<String>,
    pub timeline: Timeline,
    pub histograms: Vec<Histogram>,
    pub kpis: Vec<Kpi>,
    pub run_checks: Vec<CheckView>,
    pub run_notes: Vec<String>,
    pub llm: Vec<LlmView>,
    pub story: Option<StoryView>,
    pub scenes: Vec<SceneView>,
    pub failures: Vec<Failure>,
    pub files: Vec<FileLink>,
    pub feedback: Vec<FeedbackView>,
    /// Wall seconds over the sessions that recorded an end.
    pub seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Kpi {
    pub name: &'static str,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct CheckView {
    pub check: String,
    pub value: String,
    pub threshold: String,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct LlmView {
    pub stage: String,
    pub provider: String,
    pub model: String,
    pub response: String,
    pub tokens: String,
    pub finish: String,
    pub cache_hit: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StoryView {
    pub title: String,
    pub version: String,
    pub href: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Thumb {
    pub src: Option<String>,
    pub href: String,
    pub title: String,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SceneView {
    pub anchor: String,
    pub id: String,
    pub prompt: String,
    pub mood: String,
    pub outcome: String,
    pub tone: &'static str,
    pub frames: String,
    pub frames_href: Option<String>,
    pub workflow_href: Option<String>,
    pub thumbs: Vec<Thumb>,
    pub telemetry_line: Option<String>,
    pub checks: Vec<CheckView>,
    pub notes: Vec<String>,
    pub feedback: Vec<FeedbackView>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FeedbackView {
    pub scene: String,
    pub stars: String,
    pub comment: String,
    pub author: String,
    pub at: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Failure {
    pub instance: String,
    pub class: String,
    pub error: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct FileLink {
    pub name: String,
    pub href: String,
}

fn tone(outcome: &str) -> &'static str {
    match outcome {
        "success" | "succeeded" => "good",
        "failed" | "killed" => "bad",
        _ => "other",
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(
        || "—".to_owned(),
        |v| {
            format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned()
        },
    )
}

fn read_metadata(dir: &Path) -> Result<ArtifactMetadata, String> {
    let text = std::fs::read_to_string(dir.join(METADATA_FILE))
        .map_err(|e| format!("{METADATA_FILE} cannot be read: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{METADATA_FILE} does not parse: {e}"))
}

/// The `[Scene <id>] Telemetry: …` line of each scene, as `run-summary.txt` has it.
fn telemetry_lines(meta: &ArtifactMetadata) -> Vec<(String, String)> {
    Summary::from_metadata(meta)
        .lines
        .into_iter()
        .filter(|l| l.label == "Telemetry")
        .filter_map(|l| {
            let Subject::Scene(id) = &l.subject else {
                return None;
            };
            let id = id.clone();
            let text = Summary { lines: vec![l] }.render();
            let line = text.lines().find(|t| !t.starts_with('#'))?.to_owned();
            Some((id, line))
        })
        .collect()
}

fn feedback_views(meta: &ArtifactMetadata) -> Vec<FeedbackView> {
    meta.feedback
        .iter()
        .map(|f| FeedbackView {
            scene: f.scene_id.clone().unwrap_or_else(|| "(the run)".to_owned()),
            stars: format!(
                "{}{}",
                "★".repeat(usize::from(f.rating.min(5))),
                "☆".repeat(usize::from(5 - f.rating.min(5)))
            ),
            comment: f.comment.clone().unwrap_or_default(),
            author: f.author.clone().unwrap_or_default(),
            at: f.submitted_at.to_string(),
        })
        .collect()
}

impl RunView {
    pub(crate) fn read(
        dir: &Path,
        links: &Links,
        opts: ThumbOptions,
    ) -> Result<RunView, ReportError> {
        let h = RunHistory::read(dir).map_err(|source| ReportError::Read {
            path: dir.to_owned(),
            source,
        })?;
        let meta = read_metadata(dir);
        Ok(RunView::build(dir, &h, meta, links, opts))
    }

    fn build(
        dir: &Path,
        h: &RunHistory,
        meta: Result<ArtifactMetadata, String>,
        links: &Links,
        opts: ThumbOptions,
    ) -> RunView {
        let (meta, metadata_note) = match meta {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e)),
        };
        let scene_ids: Vec<String> = meta
            .as_ref()
            .map(|m| m.scenes.iter().map(|s| s.scene_id.clone()).collect())
            .unwrap_or_default();
        let outcome = match &meta {
            // A session still running or killed is the journal's news; the metadata says
            // `incomplete` for both.
            Some(m) if h.sessions.last().is_some_and(|s| s.end.is_some()) => {
                m.outcome.as_str().to_owned()
            }
            _ => h.state().to_owned(),
        };
        let c = h.counts();
        let counts = format!(
            "{} succeeded, {} failed, {} skipped, {} pending, {} flaky",
            c.succeeded, c.failed, c.skipped, c.pending, c.flaky
        );
        let sessions = h
            .sessions
            .iter()
            .map(|s| {
                let end = s.end.as_ref().map_or_else(
                    || "no end recorded".to_owned(),
                    |e| format!("{} after {}", e.outcome.as_str(), human(e.duration_s)),
                );
                format!(
                    "session {} ({}) started {}: {end}",
                    s.number, s.profile, s.started
                )
            })
            .collect();
        let failures = h
            .ordered()
            .into_iter()
            .filter_map(|i| match &i.status {
                InstanceStatus::Failed { class, error } => Some(Failure {
                    instance: i.id.to_string(),
                    class: class.map(|c| name_of(&c)).unwrap_or_default(),
                    error: error.clone(),
                }),
                InstanceStatus::Skipped { detail } => Some(Failure {
                    instance: i.id.to_string(),
                    class: "skipped".to_owned(),
                    error: detail.clone(),
                }),
                _ => None,
            })
            .collect();
        let mut files: Vec<FileLink> =
            [MANIFEST, RESOLVED_SPEC, EVENTS, METADATA_FILE, SUMMARY_FILE]
                .into_iter()
                .filter(|f| dir.join(f).is_file())
                .map(|f| FileLink {
                    name: f.to_owned(),
                    href: links.href(f),
                })
                .collect();
        for i in h.ordered() {
            if let InstanceStatus::Succeeded {
                output: Some(out), ..
            } = &i.status
            {
                files.push(FileLink {
                    name: format!("{} output", i.id),
                    href: links.href(out),
                });
            }
        }
        let story = story_view(dir, h, meta.as_ref(), links);
        let (scenes, kpis, run_checks, run_notes, llm, feedback) = match &meta {
            Some(m) => (
                scene_views(dir, m, links, opts),
                kpis(m),
                m.quality_metrics
                    .checks
                    .iter()
                    .filter(|c| c.scene_id.is_none())
                    .map(check_view)
                    .collect(),
                m.system.fallback_notes.clone(),
                llm_views(m),
                feedback_views(m),
            ),
            None => Default::default(),
        };
        RunView {
            anchor: format!("run-{}", h.run_id),
            run_id: h.run_id.clone(),
            name: meta
                .as_ref()
                .map(|m| m.run_name.clone())
                .unwrap_or_default(),
            profile: meta
                .as_ref()
                .map(|m| m.profile.clone())
                .or_else(|| h.manifest.as_ref().map(|m| m.profile.clone()))
                .unwrap_or_default(),
            tone: tone(&outcome),
            outcome,
            started: h.started().unwrap_or("—").to_owned(),
            ended: meta
                .as_ref()
                .and_then(|m| m.ended_at)
                .map_or_else(|| "—".to_owned(), |t| t.to_string()),
            sessions,
            counts,
            problems: h.problems.clone(),
            metadata_note,
            timeline: timeline::timeline(h, &scene_ids),
            histograms: timeline::histograms(h),
            kpis,
            run_checks,
            run_notes,
            llm,
            story,
            scenes,
            failures,
            files,
            feedback,
            seconds: h
                .sessions
                .iter()
                .filter_map(|s| s.end.as_ref().map(|e| e.duration_s))
                .reduce(|a, b| a + b),
        }
    }

    pub(crate) fn thumbnail_count(&self) -> usize {
        self.scenes
            .iter()
            .flat_map(|s| &s.thumbs)
            .filter(|t| t.src.is_some())
            .count()
    }
}

fn check_view(c: &crate::artifact_metadata::QualityCheckResult) -> CheckView {
    CheckView {
        check: name_of(&c.check),
        value: num(c.value),
        threshold: num(Some(c.threshold)),
        passed: c.passed,
    }
}

fn kpis(m: &ArtifactMetadata) -> Vec<Kpi> {
    let q = &m.quality_metrics;
    vec![
        Kpi {
            name: "quality passed",
            value: q.passed.map_or_else(|| "—".to_owned(), |p| p.to_string()),
        },
        Kpi {
            name: "frames per scene",
            value: num(q.avg_frames_per_scene),
        },
        Kpi {
            name: "zero-frame scenes",
            value: q.zero_frame_scenes.to_string(),
        },
        Kpi {
            name: "short scenes",
            value: q.short_scenes.to_string(),
        },
        Kpi {
            name: "done-marker rate",
            value: num(q.done_marker_detection_rate),
        },
        Kpi {
            name: "P95 scene",
            value: q.p95_scene_seconds.map_or_else(|| "—".to_owned(), human),
        },
        Kpi {
            name: "diversity",
            value: num(q.diversity_entropy),
        },
    ]
}

fn llm_views(m: &ArtifactMetadata) -> Vec<LlmView> {
    m.llm
        .iter()
        .map(|l| LlmView {
            stage: l.stage.clone(),
            provider: l.provider.clone().unwrap_or_else(|| "—".to_owned()),
            model: l.model.clone().unwrap_or_else(|| "—".to_owned()),
            response: l
                .response_time_seconds
                .map_or_else(|| "—".to_owned(), human),
            tokens: format!(
                "{} in, {} out",
                l.prompt_tokens
                    .map_or_else(|| "—".to_owned(), |t| t.to_string()),
                l.completion_tokens
                    .map_or_else(|| "—".to_owned(), |t| t.to_string())
            ),
            finish: l.finish_reason.clone().unwrap_or_else(|| "—".to_owned()),
            cache_hit: l.cache_hit,
            error: l.error.clone(),
        })
        .collect()
}

/// The story: the output of the stage the scenes fanned out from (free-form JSON: its schema
/// is the spec author's), shown as written.
fn story_view(
    dir: &Path,
    h: &RunHistory,
    meta: Option<&ArtifactMetadata>,
    links: &Links,
) -> Option<StoryView> {
    let stage = h
        .lists
        .first()
        .map(|(l, _)| l.split('.').next().unwrap_or(l).to_owned())?;
    let rel = RunDir::output_file(&crate::rundir::event::InstanceId::new(stage, None));
    let rel = rel.to_string_lossy().replace('\\', "/");
    let text = std::fs::read_to_string(dir.join(&rel)).ok()?;
    let text = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    let info = meta.and_then(|m| m.story.as_ref());
    Some(StoryView {
        title: info.map(|s| s.title.clone()).unwrap_or_default(),
        version: info.map(|s| s.story_version.clone()).unwrap_or_default(),
        href: links.href(&rel),
        text,
    })
}

fn scene_views(
    dir: &Path,
    m: &ArtifactMetadata,
    links: &Links,
    opts: ThumbOptions,
) -> Vec<SceneView> {
    let lines = telemetry_lines(m);
    // Every scene's chosen frames, thumbnailed in one parallel pass.
    let picked: Vec<Vec<usize>> = m
        .scenes
        .iter()
        .map(|s| thumbs::pick(s.frames.paths.len(), opts.frames_per_scene))
        .collect();
    let paths: Vec<PathBuf> = m
        .scenes
        .iter()
        .zip(&picked)
        .flat_map(|(s, p)| p.iter().map(|&i| dir.join(&s.frames.paths[i])))
        .collect();
    let mut made = thumbs::thumbnails(&paths, opts.size).into_iter();
    let feedback = feedback_views(m);
    m.scenes
        .iter()
        .zip(&picked)
        .enumerate()
        .map(|(n, (s, p))| {
            let thumbs = p
                .iter()
                .map(|&i| {
                    let path = &s.frames.paths[i];
                    let (src, error) = match made.next() {
                        Some(Ok(url)) => (Some(url), None),
                        Some(Err(e)) => (None, Some(e)),
                        None => (None, Some("no thumbnail".to_owned())),
                    };
                    Thumb {
                        src,
                        href: links.href(path),
                        title: format!("frame {} of {}: {path}", i + 1, s.frames.paths.len()),
                        error,
                    }
                })
                .collect();
            scene_view(n, s, thumbs, &lines, &feedback, m, links)
        })
        .collect()
}

fn scene_view(
    n: usize,
    s: &SceneRecord,
    thumbs: Vec<Thumb>,
    lines: &[(String, String)],
    feedback: &[FeedbackView],
    m: &ArtifactMetadata,
    links: &Links,
) -> SceneView {
    let outcome = s.outcome.as_str().to_owned();
    let mut frames = format!("{} frames (floor {})", s.frames.count, s.frames.min_frames);
    if s.frames.short {
        frames.push_str(", short");
    }
    if thumbs.len() < s.frames.paths.len() {
        frames.push_str(&format!(", {} shown", thumbs.len()));
    }
    SceneView {
        anchor: format!("scene-{n}"),
        id: s.scene_id.clone(),
        prompt: s.prompt.clone(),
        mood: s.mood.clone(),
        tone: tone(&outcome),
        outcome,
        frames,
        frames_href: s.frames.directory.as_deref().map(|d| links.href(d)),
        workflow_href: s.workflow_path.as_deref().map(|w| links.href(w)),
        thumbs,
        telemetry_line: lines
            .iter()
            .find(|(id, _)| *id == s.scene_id)
            .map(|(_, l)| l.clone()),
        checks: m
            .quality_metrics
            .checks
            .iter()
            .filter(|c| c.scene_id.as_deref() == Some(s.scene_id.as_str()))
            .map(check_view)
            .collect(),
        notes: s.telemetry.system.fallback_notes.clone(),
        feedback: feedback
            .iter()
            .filter(|f| f.scene == s.scene_id)
            .cloned()
            .collect(),
    }
}
