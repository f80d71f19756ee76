//! Recorded bench runs without servers: a bench manifest, an environment and `runs.jsonl` lines
//! made up for the analysis tests (`bench::tests`) and the analysis benchmark
//! (`cargo bench --bench bench_analysis`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::bench::environment::{Environment, Host};
use crate::bench::plan::{self, Manifest, Variant};
use crate::bench::results::{self, BenchRun};
use crate::sweep::verdict::RunSummary;

pub fn variant(name: &str) -> Variant {
    Variant {
        name: name.into(),
        profile: name.into(),
        base_profile: name.into(),
        spec_path: "s.toml".into(),
        overlay: None,
    }
}

pub fn manifest(names: &[&str], runs: u32) -> Manifest {
    let variants: Vec<Variant> = names.iter().map(|n| variant(n)).collect();
    Manifest {
        format: plan::MANIFEST_FORMAT,
        version: "0".into(),
        name: "t".into(),
        spec: "s.toml".into(),
        spec_hash: "00".into(),
        jobs: plan::jobs(&variants, runs, 1, 9),
        variants,
        runs,
        warmup: 1,
        seed: 9,
        no_cache: false,
        keep_going: false,
    }
}

pub fn env() -> Environment {
    Environment {
        cinepipe_version: "0".into(),
        spec: "s.toml".into(),
        spec_hash: "00".into(),
        resolved_specs: Default::default(),
        servers: Vec::new(),
        host: Host {
            os: "linux".into(),
            arch: "x86_64".into(),
            cpu_model: None,
            cpu_cores: 2,
            render_device: Some("cpu".into()),
        },
    }
}

/// Writes `runs.jsonl` for `m` with each run's wall seconds from `secs(variant, round)`.
pub fn record(dir: &Path, m: &Manifest, secs: impl Fn(&str, u32) -> f64) {
    let mut text = String::new();
    for j in &m.jobs {
        let s = secs(&j.variant, j.round);
        let run = RunSummary {
            key: j.job.key.clone(),
            spec: j.variant.clone(),
            profile: j.job.profile.clone(),
            repeat: j.round,
            run_dir: format!("runs/{}", j.job.folder().display()),
            outcome: "success".into(),
            retried: false,
            telemetry_complete: true,
            failures: Vec::new(),
            scenes: 1,
            marker_scenes: 1,
            done_markers: 1,
            frame_scenes: 1,
            zero_frame_scenes: 0,
            forced_copies: 0,
            scene_seconds: vec![s * 0.8],
            stage_seconds: BTreeMap::from([
                ("render".to_owned(), vec![s * 0.7]),
                ("story".to_owned(), vec![s * 0.2]),
            ]),
            seconds: Some(s),
        };
        let line = BenchRun {
            variant: j.variant.clone(),
            round: j.round,
            warmup: j.warmup,
            run,
            llm_tokens_per_second: Some(40.0),
            quality_passed: Some(true),
            diversity_entropy: Some(0.9),
            avg_frames_per_scene: Some(25.0),
        };
        text.push_str(&serde_json::to_string(&line).expect("json"));
        text.push('\n');
    }
    std::fs::write(dir.join(crate::bench::execute::RUNS_LOG), text).expect("write runs.jsonl");
}

/// A finished bench folder of `runs` recorded runs of `spec` (two variants, `standard` and
/// `fast`, `fast` 5 % quicker), with its `results.json`: what `cinepipe bench --resume` analyses
/// again without running anything.
pub fn synthesise_bench_folder(dir: &Path, spec: &Path, runs: u32) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut m = manifest(&["standard", "fast"], runs / 2);
    m.warmup = 0;
    for v in &mut m.variants {
        v.spec_path = spec.to_path_buf();
    }
    m.jobs = plan::jobs(&m.variants, runs / 2, 0, 9);
    m.spec = spec.to_path_buf();
    std::fs::write(
        dir.join(plan::MANIFEST),
        serde_json::to_vec_pretty(&m).expect("json"),
    )
    .expect("manifest");
    record(dir, &m, |v, r| {
        let base = if v == "fast" { 9.5 } else { 10.0 };
        base + f64::from((r * 7919) % 1000) * 0.001
    });
    let mut out = results::build(&m, dir, env()).results;
    out.baseline = None;
    std::fs::write(
        dir.join(crate::bench::execute::RESULTS),
        serde_json::to_vec(&out).expect("json"),
    )
    .expect("results");
}
