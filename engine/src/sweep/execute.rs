//! Running a sweep: the work list into a sweep folder, services brought up once for every
//! run, each job a normal run folder (resumed when a killed sweep left one), a summary line per
//! finished run, and `sweep.json` from those lines.
//!
//! The sweep folder:
//!
//! | file | what |
//! | --- | --- |
//! | `sweep-manifest.json` | the suite, the shard, the work list, the options: what `--resume` reads |
//! | `runs/<job>/<run id>/` | each job's run folder (`cinepipe show`, `verify`, `run --resume` work on it) |
//! | `runs.jsonl` | one [`RunSummary`] per finished run, appended as each ends |
//! | `sweep.json` | the verdicts ([`SweepReport`]), written at the end (also when interrupted) |
//! | `.services/` | state of servers the sweep launched |

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde::Serialize;

use super::jobs::{self, Job, Partition};
use super::suite::{self, SuiteError};
use super::verdict::{self, REPORT_FORMAT, RunSummary, SweepReport};
use crate::exec::{ExecOptions, Interrupt};
use crate::fsutil::write_atomic;
use crate::run::{RunError, RunRequest};
use crate::services::{EnsureError, ServiceOptions, Services};
use crate::spec::{self, SpecErrors};

pub(super) const RUNS_LOG: &str = "runs.jsonl";
pub const REPORT: &str = "sweep.json";
pub(super) use super::manifest::{MANIFEST, MANIFEST_FORMAT, next_round, write_manifest};
pub use super::manifest::{Manifest, Stress, read_manifest};

/// What to sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepRequest {
    /// A suite folder, or spec files.
    pub inputs: Vec<PathBuf>,
    /// Runs of each (spec, profile), over the suite's.
    pub repeat: Option<u32>,
    /// Profiles, over the suite's.
    pub profiles: Vec<String>,
    pub partition: Option<Partition>,
    /// Runs at a time.
    pub jobs: usize,
    /// Each run goes on past a failed stage with what does not depend on it.
    pub keep_going: bool,
    /// The sweep folder to make (it must not exist, or be empty).
    pub out: Option<PathBuf>,
    /// A sweep folder to finish.
    pub resume: Option<PathBuf>,
    /// A stress sweep: rounds of every (spec, profile) until this much time has passed, in
    /// place of a repeat count.
    pub stress: Option<std::time::Duration>,
}

/// What hears of a sweep's progress (the command line's display).
pub trait SweepProgress: Sync {
    /// The work list (again after each new stress round), and the runs an earlier session
    /// finished.
    fn planned(&self, _jobs: &[Job], _finished: &[RunSummary]) {}
    /// A run starts.
    fn started(&self, _job: &Job) {}
    /// A run ended: `done` of `total` runs of the work list so far.
    fn finished(&self, run: &RunSummary, done: usize, total: usize);
}

/// How the sweep went, for the command line.
#[derive(Debug)]
pub struct SweepOutcome {
    pub dir: PathBuf,
    pub report: SweepReport,
    /// Runs done in this session (the rest were done by an earlier one).
    pub ran: u32,
    pub interrupted: bool,
    pub service_notes: Vec<String>,
}

/// Why a sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Suite(#[from] SuiteError),
    #[error("{0}")]
    Spec(SpecErrors),
    #[error("give a suite folder, or spec files, not both a folder and other inputs")]
    MixedInputs,
    #[error("nothing to sweep: give a suite folder or spec files, or `--resume SWEEP_DIR`")]
    NoInput,
    #[error(
        "the sweep folder {path} exists and is not empty (choose another `--out`, or `--resume` it)"
    )]
    Exists { path: PathBuf },
    #[error("{path} is not a sweep folder: {why}")]
    NotASweep { path: PathBuf, why: String },
    #[error("shard {partition} has no run of this suite's {total}")]
    EmptyShard { partition: String, total: usize },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Service(Box<EnsureError>),
    #[error("{job}: {error}")]
    Run { job: String, error: Box<RunError> },
}

/// Runs (or finishes) a sweep. `progress` hears of every run that ends.
pub async fn sweep(
    req: SweepRequest,
    interrupt: &Interrupt,
    progress: &dyn SweepProgress,
) -> Result<SweepOutcome, SweepError> {
    let (dir, manifest) = match &req.resume {
        Some(dir) => (dir.clone(), read_manifest(dir)?),
        None => create(&req)?,
    };
    let done: Vec<RunSummary> = read_runs(&dir.join(RUNS_LOG));
    let finished: HashSet<String> = done.iter().map(|r| r.key.clone()).collect();
    let pending: Vec<Job> = manifest
        .jobs
        .iter()
        .filter(|j| !finished.contains(&j.key))
        .cloned()
        .collect();

    // Every spec under every profile it runs with, checked before the first run starts.
    let mut kinds: std::collections::HashMap<PathBuf, verdict::SpecKinds> = Default::default();
    let mut checked = Vec::new();
    let mut problems: Vec<SpecErrors> = Vec::new();
    let mut seen = HashSet::new();
    // A stress sweep may start new rounds of every spec, so all of them are checked.
    let to_check: &[Job] = if manifest.stress.is_some() {
        &manifest.jobs
    } else {
        &pending
    };
    for job in to_check {
        if seen.insert((job.spec_path.clone(), job.profile.clone())) {
            match spec::load(&job.spec_path, Some(&job.profile)) {
                Ok(c) => {
                    kinds.insert(job.spec_path.clone(), verdict::SpecKinds::of(&c.spec));
                    checked.push(c);
                }
                Err(e) => problems.push(e),
            }
        }
    }
    if let Some(first) = problems.into_iter().next() {
        return Err(SweepError::Spec(first));
    }

    let (services, mut notes) = bring_up(&checked, &dir, interrupt).await?;

    let mut manifest = manifest;
    let mut batch = Batch {
        dir: &dir,
        kinds: &kinds,
        no_cache: manifest.suite.no_cache,
        keep_going: manifest.keep_going,
        jobs: req.jobs.max(1),
        interrupt,
        progress,
        done,
        ran: 0,
        first_error: None,
    };
    let mut pending = pending;
    progress.planned(&manifest.jobs, &batch.done);
    loop {
        batch.run(pending, manifest.jobs.len()).await;
        if batch.first_error.is_some() || interrupt.is_interrupted() {
            break;
        }
        // A stress sweep: another round while time is left.
        match next_round(&dir, &mut manifest) {
            Ok(Some(next)) => {
                progress.planned(&manifest.jobs, &batch.done);
                pending = next;
            }
            Ok(None) => break,
            Err(e) => {
                batch.first_error = Some(e);
                break;
            }
        }
    }
    let Batch {
        done,
        ran,
        first_error,
        ..
    } = batch;
    for s in services {
        notes.extend(s.shutdown().await);
    }
    let report = report(&manifest, &done);
    let bytes = serde_json::to_vec_pretty(&report).map_err(|e| SweepError::Io {
        path: dir.join(REPORT),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&dir.join(REPORT), &bytes).map_err(|source| SweepError::Io {
        path: dir.join(REPORT),
        source,
    })?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(SweepOutcome {
        dir,
        interrupted: interrupt.is_interrupted(),
        report,
        ran,
        service_notes: notes,
    })
}

/// The runs of one batch (the work list, or a stress round), `jobs` at a time.
struct Batch<'a> {
    dir: &'a Path,
    kinds: &'a std::collections::HashMap<PathBuf, verdict::SpecKinds>,
    no_cache: bool,
    keep_going: bool,
    jobs: usize,
    interrupt: &'a Interrupt,
    progress: &'a dyn SweepProgress,
    done: Vec<RunSummary>,
    ran: u32,
    first_error: Option<SweepError>,
}

impl Batch<'_> {
    async fn run(&mut self, pending: Vec<Job>, total: usize) {
        let (dir, kinds, interrupt) = (self.dir, self.kinds, self.interrupt);
        let (no_cache, keep_going) = (self.no_cache, self.keep_going);
        let progress = self.progress;
        let log = dir.join(RUNS_LOG);
        let mut results = futures_util::stream::iter(pending.into_iter().map(|job| async move {
            if !interrupt.is_interrupted() {
                progress.started(&job);
            }
            let k = kinds.get(&job.spec_path).copied().unwrap_or_default();
            let summary = run_job(dir, &job, k, no_cache, keep_going, interrupt).await;
            (job, summary)
        }))
        .buffer_unordered(self.jobs);
        while let Some((job, result)) = results.next().await {
            match result {
                Ok(Some(summary)) => {
                    if let Err(source) = append_line(&log, &summary) {
                        self.first_error.get_or_insert(SweepError::Io {
                            path: log.clone(),
                            source,
                        });
                        interrupt.interrupt(None);
                        continue;
                    }
                    self.ran += 1;
                    self.progress.finished(&summary, self.done.len() + 1, total);
                    self.done.push(summary);
                }
                // Interrupted: its folder is resumed by `--resume`.
                Ok(None) => {}
                Err(error) => {
                    self.first_error.get_or_insert(SweepError::Run {
                        job: job.key.clone(),
                        error: Box::new(error),
                    });
                    interrupt.interrupt(None);
                }
            }
        }
    }
}

/// Brings up, once, the services the specs `checked` use (state under `dir/.services`): a
/// service that several specs name alike (same name, same settings) is brought up once. On an
/// error, the ones already up are stopped. A bench brings its variants' services up with it.
pub(crate) async fn bring_up(
    checked: &[spec::CheckedSpec],
    dir: &Path,
    interrupt: &Interrupt,
) -> Result<(Vec<Services>, Vec<String>), SweepError> {
    let registry = crate::run::registry();
    let opts = ServiceOptions::new(dir.join(".services"));
    let mut services = Vec::new();
    let mut notes = Vec::new();
    let mut ensured: HashSet<String> = HashSet::new();
    for c in checked {
        let names: Vec<String> =
            crate::services::services_of(&c.spec, |s| registry.get(s.kind()).is_some())
                .into_iter()
                .filter(|n| {
                    let settings = c
                        .spec
                        .services
                        .get(n)
                        .and_then(|s| serde_json::to_string(s).ok())
                        .unwrap_or_default();
                    ensured.insert(format!("{n}\u{0}{settings}"))
                })
                .collect();
        if names.is_empty() {
            continue;
        }
        match Services::ensure(c, &names, &opts, interrupt.token()).await {
            Ok(s) => {
                notes.extend(s.notes().iter().cloned());
                services.push(s);
            }
            Err(e) => {
                for s in services {
                    s.shutdown().await;
                }
                return Err(SweepError::Service(Box::new(e)));
            }
        }
    }
    Ok((services, notes))
}

/// The report of the runs done so far.
pub fn report(manifest: &Manifest, done: &[RunSummary]) -> SweepReport {
    // Only this folder's jobs, each once (a log line written twice by a crash between the
    // append and the next run counts once).
    let wanted: HashSet<&str> = manifest.jobs.iter().map(|j| j.key.as_str()).collect();
    let mut seen = HashSet::new();
    let runs: Vec<RunSummary> = done
        .iter()
        .filter(|r| wanted.contains(r.key.as_str()) && seen.insert(r.key.clone()))
        .cloned()
        .collect();
    let verdicts = verdict::judge(&manifest.suite, &runs);
    let planned = u32::try_from(manifest.jobs.len()).unwrap_or(u32::MAX);
    let finished = u32::try_from(runs.len()).unwrap_or(u32::MAX);
    let result = if finished < planned {
        "incomplete"
    } else if verdicts.iter().any(|v| !v.gate_failures.is_empty()) {
        "fail"
    } else {
        "pass"
    };
    SweepReport {
        format: REPORT_FORMAT,
        suite: manifest.suite.name.clone(),
        partition: manifest.partition.map(|p| p.to_string()),
        planned,
        finished,
        result: result.to_owned(),
        verdicts,
    }
}

/// One job: its run folder made or resumed, run, and read back. `Ok(None)` when the run was
/// interrupted (it is resumed by the next session).
pub(crate) async fn run_job(
    dir: &Path,
    job: &Job,
    kinds: verdict::SpecKinds,
    no_cache: bool,
    keep_going: bool,
    interrupt: &Interrupt,
) -> Result<Option<RunSummary>, RunError> {
    if interrupt.is_interrupted() {
        return Ok(None);
    }
    let job_dir = dir.join("runs").join(job.folder());
    let existing = run_folder_in(&job_dir);
    // A run that finished (passed or failed) but was not recorded (killed between its end and
    // the log line) is read as it is: resuming it would add a session to a finished run.
    if let Some(run_dir) = existing.as_deref().filter(|d| finished(d)) {
        let rel = run_dir
            .strip_prefix(dir)
            .unwrap_or(run_dir)
            .display()
            .to_string();
        return Ok(Some(RunSummary::read(job, kinds, run_dir, &rel)));
    }
    let req = RunRequest {
        spec: Some(job.spec_path.clone()),
        profile: Some(job.profile.clone()),
        resume: existing,
        options: ExecOptions {
            keep_going,
            no_cache,
            ..Default::default()
        },
        output_dir: Some(job_dir.clone()),
        skip_services: true,
    };
    let report = crate::run::run(req, crate::run::registry(), interrupt, Vec::new()).await?;
    if report.outcome == crate::exec::RunOutcome::Interrupted {
        return Ok(None);
    }
    let rel = report
        .dir
        .strip_prefix(dir)
        .unwrap_or(&report.dir)
        .display()
        .to_string();
    // A few small files: read in place.
    Ok(Some(RunSummary::read(job, kinds, &report.dir, &rel)))
}

/// Whether a run folder's last session ended with a verdict (not interrupted, not killed) and
/// its telemetry was written.
fn finished(run_dir: &Path) -> bool {
    use crate::rundir::event::RunOutcome;
    run_dir.join("artifact-metadata.json").is_file()
        && crate::rundir::history::RunHistory::read(run_dir).is_ok_and(|h| {
            h.sessions
                .last()
                .and_then(|s| s.end.as_ref())
                .is_some_and(|e| matches!(e.outcome, RunOutcome::Succeeded | RunOutcome::Failed))
        })
}

/// The run folder a job's folder holds, if an earlier session made one (with or without a
/// journal: a run killed right after its folder was made resumes from nothing, in it). A
/// folder killed while it was being made (no manifest yet, so no journal either) held no work:
/// it is removed, and the job starts a new run.
fn run_folder_in(job_dir: &Path) -> Option<PathBuf> {
    let mut found = None;
    for entry in std::fs::read_dir(job_dir).ok()?.filter_map(Result::ok) {
        let p = entry.path();
        if !p.is_dir() {
            continue;
        }
        if crate::rundir::RunDir::open(&p).is_ok() {
            found = Some(p);
        } else if !p.join("events.jsonl").exists() {
            tracing::info!(
                "removing {}: a run folder killed while it was made",
                p.display()
            );
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    found
}

fn create(req: &SweepRequest) -> Result<(PathBuf, Manifest), SweepError> {
    let suite = match req.inputs.as_slice() {
        [] => return Err(SweepError::NoInput),
        [one] => suite::load(one)?,
        many if many.iter().any(|p| p.is_dir()) => return Err(SweepError::MixedInputs),
        many => {
            for p in many {
                if !p.is_file() {
                    return Err(SuiteError::NotFound { path: p.clone() }.into());
                }
            }
            suite::from_specs(many)
        }
    };
    let stress = req.stress.map(|d| Stress {
        duration_s: d.as_secs_f64(),
        started: jiff::Timestamp::now().to_string(),
        profiles: req.profiles.clone(),
        rounds: 1,
    });
    let all = match &stress {
        Some(_) => jobs::round(&suite, &req.profiles, 1, 0),
        None => jobs::jobs(&suite, req.repeat, &req.profiles),
    };
    let total = all.len();
    let selected = match req.partition {
        Some(p) => p.select(all),
        None => all,
    };
    // A stress shard with no run in the first round takes one from a later round.
    if selected.is_empty() && stress.is_none() {
        return Err(SweepError::EmptyShard {
            partition: req.partition.map(|p| p.to_string()).unwrap_or_default(),
            total,
        });
    }
    let dir = match &req.out {
        Some(d) => d.clone(),
        None => PathBuf::from("sweeps").join(format!(
            "{}-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
            suite.name
        )),
    };
    let io = |path: &Path, source| SweepError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SweepError::Exists { path: dir });
    }
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| io(&dir, e))?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        suite,
        partition: req.partition,
        keep_going: req.keep_going,
        stress,
        jobs: selected,
    };
    write_manifest(&dir, &manifest)?;
    Ok((dir, manifest))
}

/// The summaries of `runs.jsonl`: whole lines only (a line torn by a kill is dropped; its run
/// is read again from its folder when the sweep resumes).
pub fn read_runs(path: &Path) -> Vec<RunSummary> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..=i]);
    whole
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn append_line<T: Serialize>(path: &Path, summary: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(summary).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_folder_killed_while_its_run_folder_was_made_starts_afresh() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let job = tmp.path().join("job");
        // Killed before the manifest: only the resolved spec (or a temp file) is there.
        std::fs::create_dir_all(job.join("half")).expect("mkdir");
        std::fs::write(job.join("half/resolved-spec.json"), "{}").expect("write");
        assert_eq!(run_folder_in(&job), None);
        assert!(!job.join("half").exists(), "the half-made folder is gone");
        // A made run folder (manifest, no journal yet) is the one to resume.
        let spec = crate::testkit::SpecBuilder::chain("t", &["story", "validate"]);
        let made = crate::rundir::RunDir::create(&job, &spec.check(), Path::new("t.toml"))
            .expect("run folder");
        assert_eq!(run_folder_in(&job), Some(made.path.clone()));
    }
}
