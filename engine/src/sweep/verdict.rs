//! What a sweep concludes: one [`RunSummary`] per finished run (read from its run folder, then
//! the folder is let go), folded into one [`SpecVerdict`] per (spec, profile), judged against
//! the suite's gates. `sweep.json` is a [`SweepReport`].

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::jobs::Job;
use super::suite::{FlakyPolicy, GatesResolved, Suite};
use crate::telemetry::{ArtifactMetadata, AttemptOutcome, AttemptSummary, Outcome};

/// One run of the sweep, as its run folder tells it: small, so a sweep of thousands of runs
/// keeps only these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    /// The job's key, `SPEC|PROFILE|REPEAT`.
    pub key: String,
    pub spec: String,
    pub profile: String,
    pub repeat: u32,
    /// The run folder, relative to the sweep folder.
    pub run_dir: String,
    /// `success`, `failed`, `cancelled`, `incomplete` (the run's `Outcome`).
    pub outcome: String,
    /// It succeeded, but some stage instance only after a failed attempt.
    pub retried: bool,
    /// `artifact-metadata.json` and `run-summary.txt` verify against the contract.
    pub telemetry_complete: bool,
    /// The failed attempts, as `STAGE: CLASS` (a run that failed for good lists its last).
    pub failures: Vec<String>,
    /// Scenes of the run; those that waited for a done-marker (the spec has an
    /// `await-marker` stage and the scene reached it), and of those, the ones whose marker was
    /// seen; scenes with zero frames (counted only when the spec collects frames, where every
    /// scene counts, whether its render failed or not); scenes whose frames were force-copied.
    pub scenes: u32,
    pub marker_scenes: u32,
    pub done_markers: u32,
    pub frame_scenes: u32,
    pub zero_frame_scenes: u32,
    pub forced_copies: u32,
    /// Wall seconds of each scene (first attempt's start to last attempt's end).
    pub scene_seconds: Vec<f64>,
    /// Seconds of every finished attempt, by stage.
    pub stage_seconds: BTreeMap<String, Vec<f64>>,
    /// The run's wall seconds.
    pub seconds: Option<f64>,
}

impl RunSummary {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Success.as_str()
    }

    /// Reads the run folder `dir` (relative name `rel`) of `job`, whose spec has the stage
    /// kinds `kinds`. A folder without telemetry (a run that could not start) is a failed run
    /// with that reason.
    pub fn read(job: &Job, kinds: SpecKinds, dir: &Path, rel: &str) -> RunSummary {
        let mut s = RunSummary {
            key: job.key.clone(),
            spec: job.spec.clone(),
            profile: job.profile.clone(),
            repeat: job.repeat,
            run_dir: rel.to_owned(),
            outcome: Outcome::Failed.as_str().to_owned(),
            retried: false,
            telemetry_complete: false,
            failures: Vec::new(),
            scenes: 0,
            marker_scenes: 0,
            done_markers: 0,
            frame_scenes: 0,
            zero_frame_scenes: 0,
            forced_copies: 0,
            scene_seconds: Vec::new(),
            stage_seconds: BTreeMap::new(),
            seconds: None,
        };
        let meta = std::fs::read(dir.join("artifact-metadata.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<ArtifactMetadata>(&b).ok());
        let Some(m) = meta else {
            s.failures
                .push("run: no readable artifact-metadata.json".to_owned());
            return s;
        };
        s.outcome = m.outcome.as_str().to_owned();
        s.telemetry_complete = crate::verify::verify_run(dir).is_ok_and(|v| v.is_empty());
        // The time the run's sessions took, not the span from its first start to its last
        // end: a run interrupted and resumed later did not run in between.
        let sessions: Option<f64> = crate::rundir::history::RunHistory::read(dir).ok().map(|h| {
            h.sessions
                .iter()
                .filter_map(|x| x.end.as_ref().map(|e| e.duration_s))
                .sum()
        });
        s.seconds = sessions.filter(|d| *d > 0.0).or_else(|| {
            m.ended_at
                .as_ref()
                .map(|e| seconds_between(&m.started_at.0, &e.0))
        });
        let mut attempts: Vec<&AttemptSummary> = m.stage_attempt_summaries.iter().collect();
        // (scope, attempt): scope 0 is the run's own stages, n the n-th scene's.
        let mut scoped: Vec<(usize, &AttemptSummary)> = attempts.iter().map(|a| (0, *a)).collect();
        for (n, scene) in m.scenes.iter().enumerate() {
            scoped.extend(scene.scene_attempt_summaries.iter().map(|a| (n + 1, a)));
        }
        for scene in &m.scenes {
            s.scenes += 1;
            let t = &scene.telemetry;
            if kinds.awaits_marker
                && (t.done_marker_detected || t.done_marker_wait_seconds.is_some())
            {
                s.marker_scenes += 1;
                s.done_markers += u32::from(t.done_marker_detected);
            }
            if kinds.collects_frames {
                s.frame_scenes += 1;
                s.zero_frame_scenes += u32::from(scene.frames.count == 0);
            }
            s.forced_copies += u32::from(scene.telemetry.forced_copy_triggered);
            let a = &scene.scene_attempt_summaries;
            if let (Some(first), Some(last)) =
                (a.first(), a.iter().rev().find_map(|x| x.end.as_ref()))
            {
                s.scene_seconds
                    .push(seconds_between(&first.start.0, &last.0));
            }
            attempts.extend(a.iter());
        }
        // Retried: an instance that failed an attempt and then succeeded. (An attempt cut short
        // by a kill and redone on resume is cancelled, not failed: no retry.)
        let mut failed_before: std::collections::HashSet<(usize, &str)> = Default::default();
        for (scope, a) in &scoped {
            if a.outcome == AttemptOutcome::Failed {
                failed_before.insert((*scope, a.stage.as_str()));
            } else if a.outcome == AttemptOutcome::Success
                && failed_before.contains(&(*scope, a.stage.as_str()))
            {
                s.retried = true;
            }
        }
        for a in attempts {
            if a.outcome == AttemptOutcome::Failed {
                // The class as the spec writes it (`retry_on`), kebab-case.
                let class = a
                    .failure_class
                    .and_then(|c| serde_json::to_value(c).ok())
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                s.failures.push(format!("{}: {class}", a.stage));
            }
            if let Some(end) = &a.end {
                s.stage_seconds
                    .entry(a.stage.clone())
                    .or_default()
                    .push(seconds_between(&a.start.0, &end.0));
            }
        }
        s
    }
}

/// Which of the KPIs a spec can have: set from its stage kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecKinds {
    pub awaits_marker: bool,
    pub collects_frames: bool,
}

impl SpecKinds {
    pub fn of(spec: &crate::spec::model::SpecFile) -> SpecKinds {
        use crate::spec::model::StageKind;
        let has = |k: StageKind| spec.stages.values().any(|s| s.kind() == k);
        SpecKinds {
            awaits_marker: has(StageKind::AwaitMarker),
            collects_frames: has(StageKind::CollectFrames),
        }
    }
}

fn seconds_between(a: &jiff::Timestamp, b: &jiff::Timestamp) -> f64 {
    b.duration_since(*a).as_secs_f64()
}

/// `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "cinepipe sweep report",
    description = "What `cinepipe sweep` concluded: a verdict per spec and profile, judged against the suite's gates."
)]
pub struct SweepReport {
    pub format: u32,
    pub suite: String,
    /// The shard this folder ran (`hash:K/N`), or null for the whole suite.
    pub partition: Option<String>,
    /// Runs planned for this folder, and finished.
    pub planned: u32,
    pub finished: u32,
    /// `pass`, `fail` (a gate failed), or `incomplete` (runs are missing: interrupted).
    pub result: String,
    /// Flaky and failing (spec, profile) first, then by spec and profile.
    pub verdicts: Vec<SpecVerdict>,
}

pub const REPORT_FORMAT: u32 = 1;

/// One (spec, profile) over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SpecVerdict {
    pub spec: String,
    pub profile: String,
    /// `stable` (every run passed at its first try), `flaky` (some passed only after a retry,
    /// or some failed and some passed), `broken` (none passed).
    pub status: String,
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    /// Runs that passed only after a retry.
    pub retried: u32,
    pub pass_rate: f64,
    /// Wilson score interval (95 %) of the pass rate.
    pub pass_rate_low: f64,
    pub pass_rate_high: f64,
    /// Every one of the repeats passed (pass^k).
    pub pass_all: bool,
    /// Failed attempts by `STAGE: CLASS`, most frequent first.
    pub failures: IndexMap<String, u32>,
    pub kpis: Kpis,
    /// The gates this (spec, profile) did not meet, as sentences; empty when it passes.
    pub gate_failures: Vec<String>,
    /// Flaky under `flaky = "warn"`, and other things worth a look.
    pub warnings: Vec<String>,
    /// Its runs' folders, relative to the sweep folder, by repeat.
    pub run_dirs: Vec<String>,
}

/// The seeds' stability KPIs over a (spec, profile)'s runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Kpis {
    /// Runs whose telemetry verifies, as a fraction of runs.
    pub telemetry_complete: f64,
    /// Scenes whose done-marker was seen, as a fraction of the scenes that waited for one
    /// (null: none did, or the spec has no `await-marker` stage).
    pub done_marker_rate: Option<f64>,
    /// Scenes with zero frames, as a fraction of scenes (null: the spec collects no frames).
    pub zero_frame_scene_rate: Option<f64>,
    pub forced_copies: u32,
    pub scenes: u32,
    pub scene_seconds: Percentiles,
    /// By stage name.
    pub stage_seconds: BTreeMap<String, Percentiles>,
    pub run_seconds: Percentiles,
}

/// P50, P95, P99 (nearest rank), null when there is no value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Percentiles {
    pub n: u32,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Percentiles {
    pub fn of(values: &[f64]) -> Percentiles {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let at = |p: f64| -> Option<f64> {
            if v.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least p of the values at or below it.
            let rank = (p * v.len() as f64).ceil().max(1.0) as usize;
            v.get(rank - 1).copied()
        };
        Percentiles {
            n: u32::try_from(v.len()).unwrap_or(u32::MAX),
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
        }
    }
}

/// The Wilson score interval of `k` successes in `n` trials at 95 % (z = 1.96).
pub fn wilson(k: u32, n: u32) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (f64::from(k), f64::from(n));
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Folds run summaries into verdicts, one (spec, profile) at a time, judged by the suite's
/// gates (the spec's own `min_pass_rate`).
pub fn judge(suite: &Suite, runs: &[RunSummary]) -> Vec<SpecVerdict> {
    let mut groups: IndexMap<(String, String), Vec<&RunSummary>> = IndexMap::new();
    for r in runs {
        groups
            .entry((r.spec.clone(), r.profile.clone()))
            .or_default()
            .push(r);
    }
    let mut out: Vec<SpecVerdict> = groups
        .into_iter()
        .map(|((spec, profile), mut rs)| {
            rs.sort_by_key(|r| r.repeat);
            let min_pass = suite
                .specs
                .iter()
                .find(|s| s.name == spec)
                .map_or(1.0, |s| s.min_pass_rate);
            verdict(spec, profile, &rs, &suite.gates, min_pass)
        })
        .collect();
    out.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.spec.cmp(&b.spec))
            .then_with(|| a.profile.cmp(&b.profile))
    });
    out
}

fn rank(v: &SpecVerdict) -> u8 {
    match (v.gate_failures.is_empty(), v.status.as_str()) {
        (false, _) => 0,
        (true, "flaky") => 1,
        _ => 2,
    }
}

fn verdict(
    spec: String,
    profile: String,
    rs: &[&RunSummary],
    gates: &GatesResolved,
    min_pass_rate: f64,
) -> SpecVerdict {
    let runs = u32::try_from(rs.len()).unwrap_or(u32::MAX);
    let passed = u32::try_from(rs.iter().filter(|r| r.passed()).count()).unwrap_or(0);
    let retried = u32::try_from(rs.iter().filter(|r| r.passed() && r.retried).count()).unwrap_or(0);
    let failed = runs - passed;
    let status = if passed == 0 {
        "broken"
    } else if failed > 0 || retried > 0 {
        "flaky"
    } else {
        "stable"
    };
    let pass_rate = if runs == 0 {
        0.0
    } else {
        f64::from(passed) / f64::from(runs)
    };
    let (low, high) = wilson(passed, runs);
    let mut failures: IndexMap<String, u32> = IndexMap::new();
    for f in rs.iter().flat_map(|r| r.failures.iter()) {
        *failures.entry(f.clone()).or_default() += 1;
    }
    failures.sort_by(|ka, a, kb, b| b.cmp(a).then_with(|| ka.cmp(kb)));
    let kpis = kpis(rs);
    let mut gate_failures = Vec::new();
    let mut warnings = Vec::new();
    if pass_rate < min_pass_rate {
        gate_failures.push(format!(
            "pass rate {passed}/{runs} ({:.1} %) is below min_pass_rate {:.1} %",
            pass_rate * 100.0,
            min_pass_rate * 100.0
        ));
    }
    if kpis.telemetry_complete < gates.telemetry_complete {
        gate_failures.push(format!(
            "telemetry complete in {:.1} % of runs, below the gate's {:.1} %",
            kpis.telemetry_complete * 100.0,
            gates.telemetry_complete * 100.0
        ));
    }
    if let Some(rate) = kpis.done_marker_rate
        && rate < gates.done_marker_rate
    {
        gate_failures.push(format!(
            "done-marker seen for {:.1} % of scenes, below the gate's {:.1} %",
            rate * 100.0,
            gates.done_marker_rate * 100.0
        ));
    }
    if let Some(rate) = kpis.zero_frame_scene_rate
        && rate > gates.zero_frame_scene_rate
    {
        gate_failures.push(format!(
            "{:.1} % of scenes have zero frames, above the gate's {:.1} %",
            rate * 100.0,
            gates.zero_frame_scene_rate * 100.0
        ));
    }
    if status == "flaky" {
        let what = format!("flaky: {passed}/{runs} passed, {retried} only after a retry");
        match gates.flaky {
            FlakyPolicy::Fail => gate_failures.push(format!("{what} (flaky = \"fail\")")),
            FlakyPolicy::Warn => warnings.push(what),
        }
    }
    SpecVerdict {
        spec,
        profile,
        status: status.to_owned(),
        runs,
        passed,
        failed,
        retried,
        pass_rate,
        pass_rate_low: low,
        pass_rate_high: high,
        pass_all: runs > 0 && passed == runs,
        failures,
        kpis,
        gate_failures,
        warnings,
        run_dirs: rs.iter().map(|r| r.run_dir.clone()).collect(),
    }
}

fn kpis(rs: &[&RunSummary]) -> Kpis {
    let runs = rs.len().max(1) as f64;
    let complete = rs.iter().filter(|r| r.telemetry_complete).count() as f64;
    let scenes: u32 = rs.iter().map(|r| r.scenes).sum();
    let rate = |n: u32, of: u32| (of > 0).then(|| f64::from(n) / f64::from(of));
    let mut stage: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in rs {
        for (k, v) in &r.stage_seconds {
            stage.entry(k.clone()).or_default().extend(v);
        }
    }
    let scene_secs: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.scene_seconds.iter().copied())
        .collect();
    let run_secs: Vec<f64> = rs.iter().filter_map(|r| r.seconds).collect();
    Kpis {
        telemetry_complete: if rs.is_empty() { 0.0 } else { complete / runs },
        done_marker_rate: rate(
            rs.iter().map(|r| r.done_markers).sum(),
            rs.iter().map(|r| r.marker_scenes).sum(),
        ),
        zero_frame_scene_rate: rate(
            rs.iter().map(|r| r.zero_frame_scenes).sum(),
            rs.iter().map(|r| r.frame_scenes).sum(),
        ),
        forced_copies: rs.iter().map(|r| r.forced_copies).sum(),
        scenes,
        scene_seconds: Percentiles::of(&scene_secs),
        stage_seconds: stage
            .iter()
            .map(|(k, v)| (k.clone(), Percentiles::of(v)))
            .collect(),
        run_seconds: Percentiles::of(&run_secs),
    }
}

/// The JSON Schema of `sweep.json`.
pub fn sweep_schema() -> serde_json::Value {
    crate::json_schema::draft07::<SweepReport>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_worked_values() {
        // 8 of 10: p = 0.8, z = 1.96 → (0.4902, 0.9433) (worked by hand from the formula).
        let (lo, hi) = wilson(8, 10);
        assert!((lo - 0.4902).abs() < 5e-4, "{lo}");
        assert!((hi - 0.9433).abs() < 5e-4, "{hi}");
        // 5 of 5 cannot claim certainty: the lower bound is 0.5655.
        let (lo, hi) = wilson(5, 5);
        assert!((lo - 0.5655).abs() < 5e-4, "{lo}");
        assert!((hi - 1.0).abs() < 1e-12);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p95, p.p99), (Some(50.0), Some(95.0), Some(99.0)));
        let p = Percentiles::of(&[3.0, 1.0, 2.0]);
        assert_eq!((p.n, p.p50, p.p99), (3, Some(2.0), Some(3.0)));
        assert_eq!(Percentiles::of(&[]).p50, None);
    }

    fn run(repeat: u32, outcome: &str, retried: bool) -> RunSummary {
        RunSummary {
            key: format!("a.toml|standard|{repeat}"),
            spec: "a.toml".into(),
            profile: "standard".into(),
            repeat,
            run_dir: format!("runs/{repeat}"),
            outcome: outcome.into(),
            retried,
            telemetry_complete: true,
            failures: if outcome == "success" {
                vec![]
            } else {
                vec!["render: timeout".into()]
            },
            scenes: 2,
            marker_scenes: 2,
            done_markers: 2,
            frame_scenes: 2,
            zero_frame_scenes: 0,
            forced_copies: 0,
            scene_seconds: vec![1.0, 2.0],
            stage_seconds: BTreeMap::new(),
            seconds: Some(3.0),
        }
    }

    fn suite(flaky: FlakyPolicy, min_pass_rate: f64) -> Suite {
        let mut s = super::super::suite::from_specs(&[std::path::PathBuf::from("a.toml")]);
        s.specs[0].name = "a.toml".into();
        s.specs[0].min_pass_rate = min_pass_rate;
        s.gates.flaky = flaky;
        s
    }

    #[test]
    fn stable_flaky_and_broken_are_told_apart_and_gated() {
        let stable = judge(
            &suite(FlakyPolicy::Warn, 1.0),
            &[run(1, "success", false), run(2, "success", false)],
        );
        assert_eq!(stable[0].status, "stable");
        assert!(stable[0].pass_all && stable[0].gate_failures.is_empty());

        // Passed, but only after a retry: flaky; a warning by default, a gate failure with "fail".
        let retried = [run(1, "success", true), run(2, "success", false)];
        let v = &judge(&suite(FlakyPolicy::Warn, 1.0), &retried)[0];
        assert_eq!((v.status.as_str(), v.retried), ("flaky", 1));
        assert!(v.gate_failures.is_empty() && v.warnings.len() == 1, "{v:?}");
        let v = &judge(&suite(FlakyPolicy::Fail, 1.0), &retried)[0];
        assert_eq!(v.gate_failures.len(), 1, "{v:?}");

        // One of two failed: flaky, and below a 100 % pass rate.
        let mixed = [run(1, "success", false), run(2, "failed", false)];
        let v = &judge(&suite(FlakyPolicy::Warn, 1.0), &mixed)[0];
        assert_eq!(v.status, "flaky");
        assert_eq!(v.failures.get("render: timeout"), Some(&1));
        assert!(
            v.gate_failures[0].starts_with("pass rate 1/2 (50.0 %)"),
            "{v:?}"
        );
        // A 50 % floor lets it through.
        let v = &judge(&suite(FlakyPolicy::Warn, 0.5), &mixed)[0];
        assert!(v.gate_failures.is_empty(), "{v:?}");

        let broken = [run(1, "failed", false)];
        assert_eq!(
            judge(&suite(FlakyPolicy::Warn, 0.0), &broken)[0].status,
            "broken"
        );
    }

    #[test]
    fn kpi_gates_count_scenes() {
        let mut r = run(1, "success", false);
        r.done_markers = 1;
        r.zero_frame_scenes = 1;
        let v = &judge(&suite(FlakyPolicy::Warn, 1.0), &[r])[0];
        assert_eq!(v.kpis.done_marker_rate, Some(0.5));
        assert_eq!(v.kpis.zero_frame_scene_rate, Some(0.5));
        assert_eq!(v.gate_failures.len(), 2, "{v:?}");
    }
}
