//! Benchmark: analysing a large bench folder (issue #16): `cinepipe bench --resume` on a
//! finished folder of RUNS (default 10,000) recorded runs, which reads `runs.jsonl`, computes
//! every summary, bootstrap interval and rank test, and writes `results.json`, `ANALYSIS.md`
//! and the plots again. No server is involved. Targets: ≤ 2 s and ≤ 100 MB peak RSS.
//!
//! Run with `cargo build --release && cargo bench --bench bench_analysis` (`RUNS=N`).

use std::process::{Command, Stdio};

use cinepipe::testkit::bench::synthesise_bench_folder;
use cinepipe::testkit::measure::{measured, release_binary};
use cinepipe::testkit::project_root;

fn main() {
    let runs: u32 = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let bin = release_binary();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("bench");
    synthesise_bench_folder(&dir, &project_root().join("specs/demo.toml"), runs);
    println!("analysing {runs} recorded runs (cinepipe bench --resume, 3 times)");
    for i in 1..=3 {
        let (wall, rss, status) = measured(
            Command::new(&bin)
                .args(["bench", "--quiet", "--resume"])
                .arg(&dir)
                .env("CI", "true")
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        assert!(status.success(), "cinepipe bench --resume: {status}");
        println!(
            "  {i}: {:.2} s, peak RSS {:.1} MB (targets <= 2 s, <= 100 MB)",
            wall.as_secs_f64(),
            rss as f64 / 1024.0
        );
    }
}
