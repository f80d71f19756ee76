//! One session of a run, `cinepipe run` as a library call: find or make the run folder, bring up the services, run the
//! plan, stop the services.

use std::path::PathBuf;

use tracing::Instrument;

use crate::exec::{ExecOptions, Executor, Interrupt, Observer, Registry, RunReport, Session};
use crate::plan::Plan;
use crate::rundir::journal::{self, Journal, JournalError};
use crate::rundir::{self, RunDir, RunDirError};
use crate::services::{EnsureError, ServiceOptions, Services};
use crate::spec::{self, SpecErrors};
use crate::telemetry;

/// What to run.
#[derive(Clone, Default)]
pub struct RunRequest {
    /// The spec file. With `resume`, optional: the run's manifest names it.
    pub spec: Option<PathBuf>,
    /// The profile; with `resume`, the run's own profile when not given.
    pub profile: Option<String>,
    /// A run folder to finish (`--resume`).
    pub resume: Option<PathBuf>,
    pub options: ExecOptions,
    /// Where the run folder is made, instead of the spec's `[run] output_dir` (a sweep keeps
    /// its runs under its own folder). Ignored with `resume`.
    pub output_dir: Option<PathBuf>,
    /// Neither probe nor launch the services (the executor's own tests, whose test stages
    /// talk to no server).
    pub skip_services: bool,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("spec", &self.spec)
            .field("profile", &self.profile)
            .field("resume", &self.resume)
            .field("options", &self.options)
            .field("output_dir", &self.output_dir)
            .field("skip_services", &self.skip_services)
            .finish()
    }
}

/// Why a run could not start (a run that starts and fails is a [`RunReport`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Spec(#[from] SpecErrors),
    #[error("no spec to run: give a spec file, or `--resume RUN_DIR`")]
    NoSpec,
    #[error("{0}")]
    RunDir(#[from] RunDirError),
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error(
        "the spec differs from the one run `{run_id}` started with (resume needs the same spec and profile): {detail}"
    )]
    SpecChanged { run_id: String, detail: String },
    #[error("{0}")]
    Service(#[from] EnsureError),
}

impl RunError {
    /// A file could not be read or written (as opposed to a spec or a run that cannot be used).
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            RunError::RunDir(RunDirError::Create { .. } | RunDirError::Write { .. })
                | RunError::Journal(JournalError::Io { .. })
        )
    }
}

/// Runs a spec, or finishes a run folder. Stage kinds the registry lacks fail their instances
/// (and the run), after everything that can run without them has.
pub async fn run(
    req: RunRequest,
    registry: Registry,
    interrupt: &Interrupt,
    observers: Vec<Box<dyn Observer>>,
) -> Result<RunReport, RunError> {
    let (checked, session) = match &req.resume {
        Some(dir) => {
            let (dir, manifest) = RunDir::open(dir)?;
            let spec_path = req.spec.clone().unwrap_or_else(|| manifest.spec.clone());
            let profile = req.profile.clone().unwrap_or(manifest.profile.clone());
            let checked = spec::load(&spec_path, Some(&profile))?;
            let then = dir.resolved_spec()?;
            let now = rundir::resolved(&checked);
            if then != now {
                return Err(RunError::SpecChanged {
                    run_id: dir.id.clone(),
                    detail: first_difference(&then, &now, String::new())
                        .unwrap_or_else(|| "the resolved specs differ".into()),
                });
            }
            // A run killed between making its folder and starting its journal did nothing:
            // it starts now, in its own folder.
            let (journal, replay) = if dir.events().exists() {
                let replay = journal::replay(&dir.events())?;
                (Journal::append_to(&dir.events())?, Some(replay))
            } else {
                (Journal::create(&dir.events())?, None)
            };
            let session = Session {
                dir,
                journal,
                replay,
                spec_label: spec_path.display().to_string(),
            };
            (checked, session)
        }
        None => {
            let spec_path = req.spec.clone().ok_or(RunError::NoSpec)?;
            let checked = spec::load(&spec_path, req.profile.as_deref())?;
            let out = req
                .output_dir
                .clone()
                .unwrap_or_else(|| checked.resolve_path(&checked.spec.run.output_dir));
            let dir = RunDir::create(&out, &checked, &spec_path)?;
            let journal = Journal::create(&dir.events())?;
            let session = Session {
                dir,
                journal,
                replay: None,
                spec_label: spec_path.display().to_string(),
            };
            (checked, session)
        }
    };

    // Only the services of stages that can run: a spec of unbuilt kinds starts no server.
    let mut names =
        crate::services::services_of(&checked.spec, |s| registry.get(s.kind()).is_some());
    // One place per output folder, not per run: the next run must find the PID file of a
    // server an earlier run (killed with -9) left behind.
    let opts = ServiceOptions::new(crate::spec::check::tidy(
        &checked
            .resolve_path(&checked.spec.run.output_dir)
            .join(".services"),
    ));
    if req.skip_services {
        names.clear();
    }
    let session_no = session.replay.as_ref().map_or(0, |r| r.sessions) + 1;
    // Every log line of the session (service notes, stage instances) carries the run's id.
    let span = tracing::info_span!("run", run_id = %session.dir.id, session = session_no);
    let services = Services::ensure(&checked, &names, &opts, interrupt.token())
        .instrument(span.clone())
        .await?;
    if registry
        .get(crate::spec::model::StageKind::PatchWorkflow)
        .is_some()
    {
        prefetch_object_info(&checked, &names);
    }
    let dir = session.dir.path.clone();
    let notes = services.notes().to_vec();
    // On disk, not only in the report: the `validate` stage records them from inside the run.
    // A note that cannot be recorded costs the telemetry a line, not the run.
    let _ = telemetry::build::append_service_notes(&dir, session_no, &notes);
    let exec = Executor::new(Plan::new(checked), registry, req.options);
    let spec = exec.spec().clone();
    let mut observers = observers;
    for o in &mut observers {
        o.spec(&spec);
    }
    let mut report = exec
        .execute(session, interrupt, observers)
        .instrument(span.clone())
        .await;
    report.service_notes = notes;
    // Every session ends with the telemetry written (success, failure, interrupt), before the
    // services are stopped: a slow stop that is cut short by a second Ctrl-C loses nothing.
    let written =
        tokio::task::spawn_blocking(move || telemetry::build::write_run(&dir, &spec).map(|_| ()))
            .await;
    report.telemetry_error = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(format!("the telemetry writer failed: {e}")),
    };
    services.shutdown().instrument(span).await;
    Ok(report)
}

/// Starts fetching `/object_info` of each ComfyUI server the run uses while the first stages
/// (the story) run: the `patch-workflow` stage checks every graph against it, and the first
/// fetch (a few MB, 100 ms or more) would otherwise fall on the first scene. The fetch fills
/// the process-wide client that the stages share; a stage that needs it before it has arrived
/// waits for this fetch rather than starting another, and a server that does not answer is
/// left to the stage to report.
fn prefetch_object_info(spec: &crate::spec::CheckedSpec, used: &[String]) {
    use crate::spec::model::{Service, Stage};
    let checks = spec
        .spec
        .stages
        .values()
        .any(|s| matches!(s, Stage::PatchWorkflow(p) if p.check_object_info));
    if !checks {
        return;
    }
    for name in used {
        let Some(Service::Comfyui(svc)) = spec.spec.services.get(name) else {
            continue;
        };
        let timeout = std::time::Duration::try_from_secs_f64(svc.timeout_s)
            .unwrap_or(std::time::Duration::from_secs(30));
        for url in &svc.urls {
            if let Ok(client) = crate::clients::comfyui::ComfyClient::shared(url, timeout) {
                tokio::spawn(async move {
                    let _ = client.object_info().await;
                });
            }
        }
    }
}

/// The JSON pointer of the first place two resolved specs differ, for the error message.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{at}/{k}");
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, p) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("`{p}` was removed")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("`{at}/{k}` was added"))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{at}/{i}"))),
        _ if a == b => None,
        _ => Some(format!("`{at}` was {a}, is now {b}")),
    }
}
