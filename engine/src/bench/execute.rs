//! Running a bench: the bench folder made (or reopened by `--resume`), every variant's spec
//! checked, the services brought up once (the sweep's `bring_up`), the runs one at a time in
//! the interleaved order (each a normal run folder, run by the sweep's `run_job`), a line per
//! finished run in `runs.jsonl`, then `results.json`, `ANALYSIS.md` and the plots.
//!
//! | file | what |
//! | --- | --- |
//! | `bench-manifest.json` | variants, seed, the work list in its order: what `--resume` reads |
//! | `variants/<name>.toml` | a bench file's overlay variant: the spec with the overlay as a profile |
//! | `runs/<variant>.<profile>.r<round>.<hash>/<run id>/` | each run's folder |
//! | `runs.jsonl` | one [`BenchRun`] per finished run |
//! | `results.json`, `ANALYSIS.md`, `*.svg` | written at the end (also when interrupted) |

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::plan::{self, BenchJob, MANIFEST, MANIFEST_FORMAT, Manifest, PlanError, Variant};
use super::results::{self, BenchResults, BenchRun};
use crate::exec::Interrupt;
use crate::fsutil::write_atomic;
use crate::spec::{self, SpecErrors};
use crate::sweep::SweepError;
use crate::sweep::verdict::SpecKinds;

pub(crate) const RUNS_LOG: &str = "runs.jsonl";
pub(crate) const RESULTS: &str = "results.json";

/// What to bench.
#[derive(Debug, Clone, Default)]
pub struct BenchRequest {
    pub spec: Option<PathBuf>,
    /// Variants as profiles (`--profiles standard,fast`).
    pub profiles: Vec<String>,
    /// A bench file (`--compare bench.toml`).
    pub compare: Option<PathBuf>,
    pub runs: Option<u32>,
    pub warmup: Option<u32>,
    pub no_cache: bool,
    pub seed: Option<u64>,
    pub keep_going: bool,
    pub out: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub baseline: Option<PathBuf>,
    /// As a fraction.
    pub max_regression: f64,
}

/// How the bench went.
#[derive(Debug)]
pub struct BenchOutcome {
    pub dir: PathBuf,
    pub results: BenchResults,
    pub ran: u32,
    pub interrupted: bool,
    pub service_notes: Vec<String>,
}

/// Why a bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{0}")]
    Spec(SpecErrors),
    #[error(
        "nothing to bench: give a spec with `--profiles A,B`, `--compare BENCH_FILE`, or `--resume BENCH_DIR`"
    )]
    NoInput,
    #[error(
        "the bench folder {path} exists and is not empty (choose another `--out`, or `--resume` it)"
    )]
    Exists { path: PathBuf },
    #[error("{path} is not a bench folder: {why}")]
    NotABench { path: PathBuf, why: String },
    #[error("cannot read the baseline {path}: {why}")]
    Baseline { path: PathBuf, why: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Sweep(#[from] SweepError),
}

/// Runs (or finishes) a bench. `progress` hears of every run that ends.
pub async fn bench(
    req: BenchRequest,
    interrupt: &Interrupt,
    progress: &(dyn Fn(&BenchRun, usize, usize) + Sync),
) -> Result<BenchOutcome, BenchError> {
    let (dir, manifest) = match &req.resume {
        Some(dir) => (dir.clone(), read_manifest(dir)?),
        None => create(&req)?,
    };
    // A baseline that cannot be read is found before an hour of runs, not after.
    let baseline = req.baseline.as_deref().map(read_baseline).transpose()?;
    let log = dir.join(RUNS_LOG);
    let finished: HashSet<String> = read_keys(&log);
    let mut checked = Vec::new();
    for v in &manifest.variants {
        let c = spec::load(&v.spec_path, Some(&v.profile)).map_err(BenchError::Spec)?;
        checked.push((v.name.clone(), c));
    }
    let plain: Vec<spec::CheckedSpec> = checked.iter().map(|(_, c)| c.clone()).collect();
    let kinds = plain
        .first()
        .map(|c| SpecKinds::of(&c.spec))
        .unwrap_or_default();
    let pending: Vec<&BenchJob> = manifest
        .jobs
        .iter()
        .filter(|j| !finished.contains(&j.job.key))
        .collect();
    // A finished bench analysed again (another baseline, a newer cinepipe) needs no server:
    // the environment is the one recorded when it ran.
    let recorded = if pending.is_empty() {
        std::fs::read(dir.join(RESULTS))
            .ok()
            .and_then(|b| serde_json::from_slice::<BenchResults>(&b).ok())
            .map(|r| r.environment)
    } else {
        None
    };
    let (services, mut notes) = if recorded.is_some() {
        (Vec::new(), Vec::new())
    } else {
        crate::sweep::execute::bring_up(&plain, &dir, interrupt).await?
    };
    let total = manifest.jobs.len();
    let mut done = finished.len();
    let mut ran = 0u32;
    let mut first_error: Option<BenchError> = None;
    for j in pending {
        let result = crate::sweep::execute::run_job(
            &dir,
            &j.job,
            kinds,
            manifest.no_cache,
            manifest.keep_going,
            interrupt,
        )
        .await;
        match result {
            Ok(Some(summary)) => {
                let run_dir = dir.join(&summary.run_dir);
                let line = BenchRun::read(&j.variant, j.round, j.warmup, summary, &run_dir);
                if let Err(source) = crate::sweep::execute::append_line(&log, &line) {
                    first_error = Some(BenchError::Io {
                        path: log.clone(),
                        source,
                    });
                    break;
                }
                ran += 1;
                done += 1;
                progress(&line, done, total);
            }
            Ok(None) => break,
            Err(error) => {
                first_error = Some(BenchError::Sweep(SweepError::Run {
                    job: j.job.key.clone(),
                    error: Box::new(error),
                }));
                break;
            }
        }
    }
    let refs: Vec<(String, &spec::CheckedSpec)> =
        checked.iter().map(|(n, c)| (n.clone(), c)).collect();
    let env = match recorded {
        Some(env) => env,
        None => {
            super::environment::gather(
                &manifest.spec.display().to_string(),
                &manifest.spec_hash,
                &refs,
            )
            .await
        }
    };
    for s in services {
        notes.extend(s.shutdown().await);
    }
    let mut built = results::build(&manifest, &dir, env);
    if let (Some(b), Some(path)) = (&baseline, &req.baseline) {
        built.results.baseline = Some(results::compare_baseline(
            &built,
            b,
            &path.display().to_string(),
            req.max_regression,
        ));
    }
    write_outputs(&dir, &built.results)?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(BenchOutcome {
        dir,
        results: built.results,
        ran,
        interrupted: interrupt.is_interrupted(),
        service_notes: notes,
    })
}

/// `results.json`, `ANALYSIS.md` and the plots, into the bench folder.
pub fn write_outputs(dir: &Path, results: &BenchResults) -> Result<(), BenchError> {
    let io = |path: PathBuf| move |source| BenchError::Io { path, source };
    let bytes = serde_json::to_vec_pretty(results)
        .map_err(|e| io(dir.join(RESULTS))(std::io::Error::other(e)))?;
    write_atomic(&dir.join(RESULTS), &bytes).map_err(io(dir.join(RESULTS)))?;
    for (name, svg) in super::plots::plots(results) {
        write_atomic(&dir.join(&name), svg.as_bytes()).map_err(io(dir.join(&name)))?;
    }
    let md = super::analysis::markdown(results);
    write_atomic(&dir.join(super::analysis::ANALYSIS), md.as_bytes())
        .map_err(io(dir.join(super::analysis::ANALYSIS)))?;
    Ok(())
}

fn read_baseline(path: &Path) -> Result<BenchResults, BenchError> {
    let bad = |why: String| BenchError::Baseline {
        path: path.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

/// The keys of the runs `runs.jsonl` records (whole lines only).
fn read_keys(log: &Path) -> HashSet<String> {
    use std::io::BufRead;
    #[derive(serde::Deserialize)]
    struct Key {
        run: KeyOnly,
    }
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        key: String,
    }
    let Ok(f) = std::fs::File::open(log) else {
        return HashSet::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<Key>(&l).ok())
        .map(|k| k.run.key)
        .collect()
}

fn create(req: &BenchRequest) -> Result<(PathBuf, Manifest), BenchError> {
    let (spec_path, mut defs, mut runs, mut warmup, mut no_cache) = match (&req.compare, &req.spec)
    {
        (Some(file), _) => {
            let b = plan::read_bench_file(file)?;
            let base = file.parent().unwrap_or(Path::new("."));
            let spec = req.spec.clone().unwrap_or_else(|| base.join(&b.spec));
            let defs: Vec<(String, plan::VariantDef)> = b.variants.into_iter().collect();
            (spec, defs, b.runs, b.warmup, b.no_cache)
        }
        (None, Some(spec)) => {
            let defs = req
                .profiles
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        plan::VariantDef {
                            profile: p.clone(),
                            overlay: None,
                        },
                    )
                })
                .collect();
            (spec.clone(), defs, None, None, None)
        }
        (None, None) => return Err(BenchError::NoInput),
    };
    runs = req.runs.or(runs);
    warmup = req.warmup.or(warmup);
    if req.no_cache {
        no_cache = Some(true);
    }
    if defs.len() < 2 {
        return Err(PlanError::TooFewVariants(defs.len()).into());
    }
    let mut names = HashSet::new();
    for (n, _) in &defs {
        if !names.insert(n.clone()) {
            return Err(PlanError::Duplicate(n.clone()).into());
        }
    }
    let spec_hash = plan::file_hash(&spec_path)?;
    let name = spec_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    let dir = match &req.out {
        Some(d) => d.clone(),
        None => PathBuf::from("benches").join(format!(
            "{}-{name}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        )),
    };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BenchError::Exists { path: dir });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BenchError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("runs")).map_err(io(&dir))?;
    let mut variants = Vec::new();
    for (vname, d) in defs.drain(..) {
        let v = match &d.overlay {
            None => Variant {
                name: vname,
                profile: d.profile.clone(),
                base_profile: d.profile,
                spec_path: spec_path.clone(),
                overlay: None,
            },
            Some(overlay) => {
                let profile = format!("bench-{vname}");
                let text = plan::overlay_spec(&spec_path, &d.profile, &profile, overlay)?;
                let folder = dir.join("variants");
                std::fs::create_dir_all(&folder).map_err(io(&folder))?;
                let path = folder.join(format!("{vname}.toml"));
                write_atomic(&path, text.as_bytes()).map_err(io(&path))?;
                Variant {
                    name: vname,
                    profile,
                    base_profile: d.profile,
                    spec_path: std::path::absolute(&path).map_err(io(&path))?,
                    overlay: Some(overlay.clone()),
                }
            }
        };
        variants.push(v);
    }
    // Every variant checks before its folder is written to.
    for v in &variants {
        spec::load(&v.spec_path, Some(&v.profile)).map_err(BenchError::Spec)?;
    }
    let seed = req.seed.unwrap_or_else(|| fastrand::u64(..));
    let runs = runs.unwrap_or(5).max(1);
    let warmup = warmup.unwrap_or(1);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        name,
        spec: spec_path,
        spec_hash,
        jobs: plan::jobs(&variants, runs, warmup, seed),
        variants,
        runs,
        warmup,
        seed,
        no_cache: no_cache.unwrap_or(false),
        keep_going: req.keep_going,
    };
    let bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| io(&dir)(std::io::Error::other(e)))?;
    write_atomic(&dir.join(MANIFEST), &bytes).map_err(io(&dir.join(MANIFEST)))?;
    Ok((dir, manifest))
}

/// Reads a bench folder's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, BenchError> {
    let not = |why: String| BenchError::NotABench {
        path: dir.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|e| not(format!("{MANIFEST}: {e}")))?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| not(format!("{MANIFEST}: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(not(format!(
            "{MANIFEST} has format {}, this cinepipe reads {MANIFEST_FORMAT}",
            m.format
        )));
    }
    Ok(m)
}
