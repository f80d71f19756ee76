//! `results.json`: the environment, every run's figures per variant (read from its run
//! folder), the summaries with their intervals, and each variant against the reference.
//! Built by streaming `runs.jsonl`: only the numbers of each run are kept.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::environment::Environment;
use super::plan::{Manifest, Variant};
use super::stats::{self, BootstrapPlan, MannWhitney, Ratio, Summary};
use crate::sweep::verdict::RunSummary;

pub(crate) const RESULTS_FORMAT: u32 = 1;

/// One finished run of a bench: a line of `runs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchRun {
    pub variant: String,
    pub round: u32,
    pub warmup: bool,
    /// What the sweep reads from a run folder (outcome, KPI counts, scene and stage seconds).
    pub run: RunSummary,
    /// Mean tokens per second of the run's LLM calls that report it (not from the cache).
    pub llm_tokens_per_second: Option<f64>,
    /// The run's quality checks all passed (null: no quality stage ran).
    pub quality_passed: Option<bool>,
    pub diversity_entropy: Option<f64>,
    pub avg_frames_per_scene: Option<f64>,
}

impl BenchRun {
    /// Adds to `run` what a bench reads beyond a sweep, from the run folder `dir`. The run's
    /// wall seconds and every attempt's seconds are the journal's (`events.jsonl`, read by
    /// `RunHistory`): measured on the engine's monotonic clock, where the telemetry's
    /// timestamps are wall-clock milliseconds; a run resumed after a kill counts the time its
    /// sessions ran, not the time between them.
    pub fn read(variant: &str, round: u32, warmup: bool, run: RunSummary, dir: &Path) -> BenchRun {
        let mut run = run;
        if let Ok(h) = crate::rundir::history::RunHistory::read(dir) {
            let ended: Vec<f64> = h
                .sessions
                .iter()
                .filter_map(|s| s.end.as_ref().map(|e| e.duration_s))
                .collect();
            if !ended.is_empty() {
                run.seconds = Some(ended.iter().sum());
            }
            let mut stages: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for i in &h.instances {
                for a in &i.attempts {
                    if let Some(d) = a.duration_s {
                        stages.entry(i.id.stage.clone()).or_default().push(d);
                    }
                }
            }
            run.stage_seconds = stages;
        }
        let meta = std::fs::read(dir.join("artifact-metadata.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::telemetry::ArtifactMetadata>(&b).ok());
        let tps: Vec<f64> = meta
            .iter()
            // An answer from the cache measured the server once, in an earlier run.
            .flat_map(|m| {
                m.llm
                    .iter()
                    .filter(|l| !l.cache_hit)
                    .filter_map(|l| l.tokens_per_second)
            })
            .collect();
        BenchRun {
            variant: variant.to_owned(),
            round,
            warmup,
            run,
            llm_tokens_per_second: stats::mean(&tps),
            quality_passed: meta.as_ref().and_then(|m| m.quality_metrics.passed),
            diversity_entropy: meta
                .as_ref()
                .and_then(|m| m.quality_metrics.diversity_entropy),
            avg_frames_per_scene: meta
                .as_ref()
                .and_then(|m| m.quality_metrics.avg_frames_per_scene),
        }
    }
}

/// `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "cinepipe bench results",
    description = "What `cinepipe bench` measured: the environment, every run of every variant, the summaries with 95 % bootstrap intervals, and each variant against the reference."
)]
pub struct BenchResults {
    pub format: u32,
    pub name: String,
    /// `complete`, or `incomplete` (runs are missing: interrupted).
    pub status: String,
    pub planned: u32,
    pub finished: u32,
    pub environment: Environment,
    /// Measured runs per variant, and warm-up runs (recorded apart, not summarised).
    pub runs_per_variant: u32,
    pub warmup_per_variant: u32,
    /// The seed of each round's order and of the bootstrap, and the resamples drawn.
    pub bootstrap: BootstrapPlan,
    /// The first is the reference of the comparisons.
    pub variants: Vec<VariantResults>,
    /// Each variant after the first against the first.
    pub comparisons: Vec<Comparison>,
    /// Against `--baseline`, when given.
    pub baseline: Option<BaselineReport>,
}

/// One variant: its runs and their summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VariantResults {
    pub name: String,
    pub profile: String,
    pub base_profile: String,
    /// Values laid over `base_profile` (a bench file's `overlay`).
    pub overlay: Option<serde_json::Map<String, serde_json::Value>>,
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    /// Passed only after a retry.
    pub flaky: u32,
    /// Wall seconds of its passed runs.
    pub wall_seconds: Option<Summary>,
    /// Wall seconds of every scene of its passed runs.
    pub scene_seconds: Option<Summary>,
    pub llm_tokens_per_second: Option<Summary>,
    /// Seconds per stage and run (attempts added up), over its passed runs, by stage.
    pub stage_seconds: BTreeMap<String, Figure>,
    pub kpis: BenchKpis,
    /// Every measured run, in the order they ran.
    pub run_figures: Vec<RunFigures>,
    pub warmup_figures: Vec<RunFigures>,
}

/// Mean and percentiles (type 7), without intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Figure {
    pub n: u32,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Figure {
    fn of(values: &[f64]) -> Option<Figure> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        Some(Figure {
            n: u32::try_from(v.len()).unwrap_or(u32::MAX),
            mean: stats::mean(&v)?,
            p50: stats::quantile(&v, 0.5)?,
            p95: stats::quantile(&v, 0.95)?,
            max: *v.last()?,
        })
    }
}

/// The telemetry KPIs and quality over a variant's measured runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BenchKpis {
    pub scenes: u32,
    /// Scenes whose done-marker was seen, of those that waited for one (null: none did).
    pub done_marker_rate: Option<f64>,
    pub zero_frame_scenes: u32,
    pub forced_copies: u32,
    /// Runs whose telemetry verifies, as a fraction.
    pub telemetry_complete: f64,
    /// Runs whose quality checks all passed, of those with a quality stage (null: none had).
    pub quality_pass_rate: Option<f64>,
    pub diversity_entropy_mean: Option<f64>,
    pub avg_frames_per_scene_mean: Option<f64>,
}

/// One run's figures, as its run folder has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunFigures {
    pub round: u32,
    /// Relative to the bench folder.
    pub run_dir: String,
    pub outcome: String,
    pub retried: bool,
    pub wall_seconds: Option<f64>,
    /// By stage: the seconds of its finished attempts, added up.
    pub stage_seconds: BTreeMap<String, f64>,
    pub scene_seconds: Vec<f64>,
    pub llm_tokens_per_second: Option<f64>,
    pub done_markers: u32,
    pub marker_scenes: u32,
    pub zero_frame_scenes: u32,
    pub forced_copies: u32,
    pub quality_passed: Option<bool>,
}

/// A variant against the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    pub reference: String,
    pub candidate: String,
    /// `median(candidate wall) / median(reference wall)` with its 95 % interval.
    pub wall_ratio: Option<Ratio>,
    pub scene_ratio: Option<Ratio>,
    /// Mann–Whitney U over the passed runs' wall seconds.
    pub mann_whitney: Option<MannWhitney>,
    /// The ratio's interval contains 1, or the rank test's p is 0.05 or more: no difference
    /// the runs can tell from noise.
    pub within_noise: bool,
    /// One sentence a person can act on.
    pub verdict: String,
}

/// This bench against an earlier `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineReport {
    pub path: String,
    /// The largest slowdown allowed, as a fraction (0.1 = 10 %).
    pub max_regression: f64,
    pub variants: Vec<BaselineVariant>,
    /// Some variant regressed past `max_regression` with its interval above 1.
    pub regressed: bool,
}

/// One variant against the same-named variant of the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineVariant {
    pub name: String,
    /// `median(now) / median(baseline)` of the wall seconds (null: a side has no passed run).
    pub ratio: Option<Ratio>,
    pub regressed: bool,
    pub message: String,
}

/// Per variant, what is kept while `runs.jsonl` streams by.
#[derive(Default)]
struct Acc {
    runs: Vec<RunFigures>,
    warmup: Vec<RunFigures>,
    telemetry_complete: u32,
    quality: (u32, u32),
    entropy: Vec<f64>,
    frames: Vec<f64>,
}

/// Reads `runs.jsonl` line by line (a line torn by a kill is skipped; only this manifest's
/// jobs, each once) into per-variant figures.
fn gather(manifest: &Manifest, log: &Path) -> (IndexMap<String, Acc>, u32) {
    let mut acc: IndexMap<String, Acc> = manifest
        .variants
        .iter()
        .map(|v| (v.name.clone(), Acc::default()))
        .collect();
    let wanted: std::collections::HashSet<&str> =
        manifest.jobs.iter().map(|j| j.job.key.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut finished = 0;
    let Ok(file) = std::fs::File::open(log) else {
        return (acc, 0);
    };
    for line in std::io::BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        let Ok(r) = serde_json::from_str::<BenchRun>(&line) else {
            continue;
        };
        if !wanted.contains(r.run.key.as_str()) || !seen.insert(r.run.key.clone()) {
            continue;
        }
        let Some(a) = acc.get_mut(&r.variant) else {
            continue;
        };
        finished += 1;
        let fig = figures(&r);
        if r.warmup {
            a.warmup.push(fig);
            continue;
        }
        a.telemetry_complete += u32::from(r.run.telemetry_complete);
        if let Some(p) = r.quality_passed {
            a.quality.0 += u32::from(p);
            a.quality.1 += 1;
        }
        a.entropy.extend(r.diversity_entropy);
        a.frames.extend(r.avg_frames_per_scene);
        a.runs.push(fig);
    }
    (acc, finished)
}

fn figures(r: &BenchRun) -> RunFigures {
    RunFigures {
        round: r.round,
        run_dir: r.run.run_dir.clone(),
        outcome: r.run.outcome.clone(),
        retried: r.run.retried,
        wall_seconds: r.run.seconds,
        stage_seconds: r
            .run
            .stage_seconds
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().sum()))
            .collect(),
        scene_seconds: r.run.scene_seconds.clone(),
        llm_tokens_per_second: r.llm_tokens_per_second,
        done_markers: r.run.done_markers,
        marker_scenes: r.run.marker_scenes,
        zero_frame_scenes: r.run.zero_frame_scenes,
        forced_copies: r.run.forced_copies,
        quality_passed: r.quality_passed,
    }
}

/// What the bench shows: variants summarised and compared, from the runs recorded so far.
pub struct Built {
    pub results: BenchResults,
    /// Each variant's passed wall and scene seconds, resampled (for ratios against a baseline).
    pub walls: Vec<Option<stats::Summarised>>,
}

/// Builds `results.json` from the bench folder's `runs.jsonl`.
pub fn build(manifest: &Manifest, dir: &Path, environment: Environment) -> Built {
    let (acc, finished) = gather(manifest, &dir.join(super::execute::RUNS_LOG));
    let plan = |salt: u64| BootstrapPlan {
        resamples: BootstrapPlan::DEFAULT_RESAMPLES,
        seed: manifest.seed.wrapping_add(salt),
    };
    let mut variants = Vec::new();
    let mut walls = Vec::new();
    let mut scenes = Vec::new();
    let mut passed_walls: Vec<Vec<f64>> = Vec::new();
    for (i, (name, a)) in acc.into_iter().enumerate() {
        let v: &Variant = &manifest.variants[i];
        let passed: Vec<&RunFigures> = a.runs.iter().filter(|r| r.outcome == "success").collect();
        let wall: Vec<f64> = passed.iter().filter_map(|r| r.wall_seconds).collect();
        let scene: Vec<f64> = passed
            .iter()
            .flat_map(|r| r.scene_seconds.iter().copied())
            .collect();
        let tps: Vec<f64> = passed
            .iter()
            .filter_map(|r| r.llm_tokens_per_second)
            .collect();
        let salt = 3 * i as u64;
        let w = stats::summarise(&wall, plan(salt));
        let s = stats::summarise(&scene, plan(salt + 1));
        let mut by_stage: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for r in &passed {
            for (k, x) in &r.stage_seconds {
                by_stage.entry(k.clone()).or_default().push(*x);
            }
        }
        let runs = u32::try_from(a.runs.len()).unwrap_or(u32::MAX);
        let npassed = u32::try_from(passed.len()).unwrap_or(u32::MAX);
        let sum = |f: fn(&RunFigures) -> u32| a.runs.iter().map(f).sum::<u32>();
        let marker_scenes = sum(|r| r.marker_scenes);
        variants.push(VariantResults {
            name,
            profile: v.profile.clone(),
            base_profile: v.base_profile.clone(),
            overlay: v.overlay.clone(),
            runs,
            passed: npassed,
            failed: runs - npassed,
            flaky: u32::try_from(passed.iter().filter(|r| r.retried).count()).unwrap_or(0),
            wall_seconds: w.as_ref().map(|x| x.summary.clone()),
            scene_seconds: s.as_ref().map(|x| x.summary.clone()),
            llm_tokens_per_second: stats::summarise(&tps, plan(salt + 2)).map(|x| x.summary),
            stage_seconds: by_stage
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), Figure::of(v)?)))
                .collect(),
            kpis: BenchKpis {
                scenes: a.runs.iter().map(|r| r.scene_seconds.len() as u32).sum(),
                done_marker_rate: (marker_scenes > 0)
                    .then(|| f64::from(sum(|r| r.done_markers)) / f64::from(marker_scenes)),
                zero_frame_scenes: sum(|r| r.zero_frame_scenes),
                forced_copies: sum(|r| r.forced_copies),
                telemetry_complete: if runs == 0 {
                    0.0
                } else {
                    f64::from(a.telemetry_complete) / f64::from(runs)
                },
                quality_pass_rate: (a.quality.1 > 0)
                    .then(|| f64::from(a.quality.0) / f64::from(a.quality.1)),
                diversity_entropy_mean: stats::mean(&a.entropy),
                avg_frames_per_scene_mean: stats::mean(&a.frames),
            },
            run_figures: a.runs,
            warmup_figures: a.warmup,
        });
        walls.push(w);
        scenes.push(s);
        passed_walls.push(wall);
    }
    let mut comparisons = Vec::new();
    for i in 1..variants.len() {
        let wall_ratio = match (&walls[i], &walls[0]) {
            (Some(c), Some(r)) => stats::ratio_of_medians(c, r),
            _ => None,
        };
        let scene_ratio = match (&scenes[i], &scenes[0]) {
            (Some(c), Some(r)) => stats::ratio_of_medians(c, r),
            _ => None,
        };
        let mann_whitney = stats::mann_whitney(&passed_walls[i], &passed_walls[0]);
        let within_noise = wall_ratio
            .as_ref()
            .is_none_or(|r| super::analysis::within_noise(r, mann_whitney.as_ref()));
        let verdict = super::analysis::verdict(
            &variants[0],
            &variants[i],
            wall_ratio.as_ref(),
            mann_whitney.as_ref(),
        );
        comparisons.push(Comparison {
            reference: variants[0].name.clone(),
            candidate: variants[i].name.clone(),
            wall_ratio,
            scene_ratio,
            mann_whitney,
            within_noise,
            verdict,
        });
    }
    let planned = u32::try_from(manifest.jobs.len()).unwrap_or(u32::MAX);
    Built {
        results: BenchResults {
            format: RESULTS_FORMAT,
            name: manifest.name.clone(),
            status: if finished < planned {
                "incomplete"
            } else {
                "complete"
            }
            .to_owned(),
            planned,
            finished,
            environment,
            runs_per_variant: manifest.runs,
            warmup_per_variant: manifest.warmup,
            bootstrap: plan(0),
            variants,
            comparisons,
            baseline: None,
        },
        walls,
    }
}

/// Compares `built` with an earlier `results.json`: a variant regresses when its median wall
/// time is more than `max_regression` above the baseline's and the interval of the ratio lies
/// wholly above 1 (a slowdown the runs can tell from noise).
pub fn compare_baseline(
    built: &Built,
    baseline: &BenchResults,
    path: &str,
    max_regression: f64,
) -> BaselineReport {
    let mut out = Vec::new();
    for (i, v) in built.results.variants.iter().enumerate() {
        let Some(old) = baseline.variants.iter().find(|b| b.name == v.name) else {
            continue;
        };
        let old_walls: Vec<f64> = old
            .run_figures
            .iter()
            .filter(|r| r.outcome == "success")
            .filter_map(|r| r.wall_seconds)
            .collect();
        let old_s = stats::summarise(
            &old_walls,
            BootstrapPlan {
                resamples: built.results.bootstrap.resamples,
                seed: built.results.bootstrap.seed ^ 0x5eed,
            },
        );
        let ratio = match (&built.walls[i], &old_s) {
            (Some(now), Some(then)) => stats::ratio_of_medians(now, then),
            _ => None,
        };
        let regressed = ratio.is_some_and(|r| r.ratio - 1.0 > max_regression && r.ci.low > 1.0);
        let message = match ratio {
            None => format!("{}: no passed run on one side, nothing to compare", v.name),
            Some(r) => format!(
                "{}: median {:+.1} % against the baseline (95 % CI {:+.1} to {:+.1} %){}",
                v.name,
                (r.ratio - 1.0) * 100.0,
                (r.ci.low - 1.0) * 100.0,
                (r.ci.high - 1.0) * 100.0,
                if regressed {
                    format!(", past the {:.0} % allowed", max_regression * 100.0)
                } else if r.ci.contains(1.0) {
                    ", within noise".to_owned()
                } else {
                    String::new()
                }
            ),
        };
        out.push(BaselineVariant {
            name: v.name.clone(),
            ratio,
            regressed,
            message,
        });
    }
    BaselineReport {
        path: path.to_owned(),
        max_regression,
        regressed: out.iter().any(|v| v.regressed),
        variants: out,
    }
}

/// The JSON Schema of `results.json`.
pub fn results_schema() -> serde_json::Value {
    crate::json_schema::draft07::<BenchResults>()
}
