//! `cinepipe runs --format json` and `cinepipe show --format json`: the same facts as their text
//! (`show`), as typed documents for scripts, with schemas generated from these types
//! (`schemas/runs.schema.json`, `schemas/show.schema.json`).

use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;

use crate::rundir::history::{AttemptHistory, InstanceStatus, RunHistory, run_dirs};

/// What `cinepipe runs --format json` prints.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(
    title = "cinepipe runs",
    description = "The run folders under an output folder, oldest first."
)]
pub struct RunsListing {
    /// The output folder, as given.
    pub dir: String,
    pub runs: Vec<RunRow>,
}

/// One run folder.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RunRow {
    pub run_id: String,
    /// The run folder, as found under `dir`.
    pub path: String,
    /// When the first session started (RFC 3339, UTC); null when nothing says.
    pub started: Option<String>,
    /// `succeeded`, `failed`, `interrupted` (how the last session ended), `running` (a process
    /// holds the journal), `killed` (no end recorded), `not started`, or `unreadable`.
    pub outcome: String,
    /// A file could not be read or a journal line is broken (see `problems`).
    pub damaged: bool,
    pub problems: Vec<String>,
    pub sessions: u32,
    pub instances: InstanceCounts,
    /// Items of the fanned-out list (else the scenes the metadata records); null when neither
    /// says.
    pub scenes: Option<u32>,
    /// `run.name` of the spec; null when the resolved spec does not say.
    pub name: Option<String>,
}

/// Stage instances per state.
#[derive(Debug, Serialize, JsonSchema)]
pub struct InstanceCounts {
    pub succeeded: u32,
    pub failed: u32,
    pub skipped: u32,
    pub pending: u32,
    /// Succeeded after a failed attempt (counted in `succeeded` too).
    pub flaky: u32,
}

/// What `cinepipe show --format json` prints.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(
    title = "cinepipe show",
    description = "One run folder: outcome, sessions, stage instances with every attempt, files."
)]
pub struct RunDetail {
    pub run_id: String,
    pub path: String,
    pub name: Option<String>,
    /// The spec file the run was started with (from `run.json`).
    pub spec: Option<String>,
    pub profile: Option<String>,
    pub started: Option<String>,
    /// As in `cinepipe runs`.
    pub outcome: String,
    pub sessions: Vec<SessionDetail>,
    pub instances: InstanceCounts,
    /// `STAGE.FIELD` lists that fanned out, with their length.
    pub lists: Vec<ListDetail>,
    /// Every stage instance, in the spec's stage order.
    pub stage_instances: Vec<InstanceDetail>,
    pub files: Files,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SessionDetail {
    pub number: u32,
    pub started: String,
    pub profile: String,
    /// How it ended; null while it runs or when it was killed.
    pub ended: Option<String>,
    pub outcome: Option<String>,
    pub duration_s: Option<f64>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListDetail {
    pub list: String,
    pub count: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct InstanceDetail {
    /// `STAGE` or `STAGE[N]`.
    pub instance: String,
    /// `succeeded`, `failed`, `skipped` or `pending`.
    pub status: String,
    pub flaky: bool,
    /// Why it failed or was skipped.
    pub detail: Option<String>,
    /// Its output file, relative to the run folder.
    pub output: Option<String>,
    /// Seconds over its finished attempts.
    pub seconds: f64,
    pub attempts: Vec<AttemptHistory>,
}

/// The run's files, relative to the run folder, and whether each exists.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Files {
    pub journal: FileRef,
    pub metadata: FileRef,
    pub summary: FileRef,
    pub outputs: FileRef,
    pub spec: FileRef,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileRef {
    pub path: String,
    pub exists: bool,
}

fn counts(h: &RunHistory) -> InstanceCounts {
    let c = h.counts();
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    InstanceCounts {
        succeeded: n(c.succeeded),
        failed: n(c.failed),
        skipped: n(c.skipped),
        pending: n(c.pending),
        flaky: n(c.flaky),
    }
}

/// The listing of `cinepipe runs --format json`; a folder that cannot be read is a row that
/// says so.
pub fn runs_listing(dir: &Path) -> std::io::Result<RunsListing> {
    let mut runs = Vec::new();
    for d in run_dirs(dir)? {
        let path = d.display().to_string();
        let Ok(h) = RunHistory::read(&d) else {
            runs.push(RunRow {
                run_id: d
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path,
                started: None,
                outcome: "unreadable".to_owned(),
                damaged: true,
                problems: vec!["the folder cannot be listed".to_owned()],
                sessions: 0,
                instances: InstanceCounts {
                    succeeded: 0,
                    failed: 0,
                    skipped: 0,
                    pending: 0,
                    flaky: 0,
                },
                scenes: None,
                name: None,
            });
            continue;
        };
        runs.push(RunRow {
            run_id: h.run_id.clone(),
            path,
            started: h.started().map(str::to_owned),
            outcome: h.state().to_owned(),
            damaged: !h.problems.is_empty(),
            problems: h.problems.clone(),
            sessions: u32::try_from(h.sessions.len()).unwrap_or(u32::MAX),
            instances: counts(&h),
            scenes: h
                .lists
                .first()
                .map(|(_, n)| *n)
                .or_else(|| crate::show::metadata_scenes(&d).and_then(|n| u32::try_from(n).ok())),
            name: crate::show::run_name(&d),
        });
    }
    Ok(RunsListing {
        dir: dir.display().to_string(),
        runs,
    })
}

/// The document of `cinepipe show --format json`.
pub fn run_detail(h: &RunHistory) -> RunDetail {
    let file = |name: &str| FileRef {
        path: name.to_owned(),
        exists: h.dir.join(name).exists(),
    };
    RunDetail {
        run_id: h.run_id.clone(),
        path: h.dir.display().to_string(),
        name: crate::show::run_name(&h.dir),
        spec: h.manifest.as_ref().map(|m| m.spec.display().to_string()),
        profile: h.manifest.as_ref().map(|m| m.profile.clone()),
        started: h.started().map(str::to_owned),
        outcome: h.state().to_owned(),
        sessions: h
            .sessions
            .iter()
            .map(|s| SessionDetail {
                number: s.number,
                started: s.started.clone(),
                profile: s.profile.clone(),
                ended: s.end.as_ref().map(|e| e.ts.clone()),
                outcome: s.end.as_ref().map(|e| e.outcome.as_str().to_owned()),
                duration_s: s.end.as_ref().map(|e| e.duration_s),
            })
            .collect(),
        instances: counts(h),
        lists: h
            .lists
            .iter()
            .map(|(list, count)| ListDetail {
                list: list.clone(),
                count: *count,
            })
            .collect(),
        stage_instances: h
            .ordered()
            .into_iter()
            .map(|i| {
                let (status, flaky, detail, output) = match &i.status {
                    InstanceStatus::Succeeded { flaky, output } => {
                        ("succeeded", *flaky, None, output.clone())
                    }
                    InstanceStatus::Failed { error, .. } => {
                        ("failed", false, Some(error.clone()), None)
                    }
                    InstanceStatus::Skipped { detail } => {
                        ("skipped", false, Some(detail.clone()), None)
                    }
                    InstanceStatus::Pending => ("pending", false, None, None),
                };
                InstanceDetail {
                    instance: i.id.to_string(),
                    status: status.to_owned(),
                    flaky,
                    detail,
                    output,
                    seconds: i.attempts.iter().filter_map(|a| a.duration_s).sum(),
                    attempts: i.attempts.clone(),
                }
            })
            .collect(),
        files: Files {
            journal: file(crate::rundir::EVENTS),
            metadata: file(crate::artifact_metadata::METADATA_FILE),
            summary: file(crate::artifact_metadata::SUMMARY_FILE),
            outputs: file("stages"),
            spec: file(crate::rundir::RESOLVED_SPEC),
        },
        problems: h.problems.clone(),
    }
}

/// The schema of `cinepipe runs --format json`.
pub fn runs_schema() -> serde_json::Value {
    crate::json_schema::draft07::<RunsListing>()
}

/// The schema of `cinepipe show --format json`.
pub fn show_schema() -> serde_json::Value {
    crate::json_schema::draft07::<RunDetail>()
}
