//! Benchmark: `cinepipe sweep` against the same runs as a shell loop of `cinepipe run`, and the
//! memory of aggregating 1,000 run folders (issue #15).
//!
//! Starts the project's ComfyUI and LLM server (`scripts/start-comfyui`,
//! `scripts/start-llm-server`; install them with the `scripts/install-*` scripts) on free ports,
//! writes the demo spec (`specs/demo.toml`) pointed at them, and primes the story cache with one
//! run. Then, side by side on the same servers:
//! - **loop**: RUNS (default 10) `cinepipe run SPEC` processes one after another, as a shell loop
//!   does: each process starts, checks the spec, probes the services, runs, writes its folder;
//! - **sweep**: one `cinepipe sweep` of a suite holding that spec with `repeat = RUNS` and
//!   `no_cache = false`: services probed once, runs in one process.
//!
//! Both use the cached story, so the LLM does no work and each run renders its two scenes on
//! ComfyUI. Reported: runs/min of each and their ratio (target: the sweep ≥ 1.5× the loop), and
//! the engine's own cost per run, wall time minus ComfyUI's execution time (its
//! `execution_start` → final `executing` on its own clock, written by the bench-only extension
//! `benches/comfyui_clock/`, summed over the phase's prompts). ComfyUI's share is the same for both: what differs is what the engine adds.
//!
//! **Aggregation**: a sweep folder of 1,000 jobs whose run folders are copies of the sweep's
//! finished ones (no `runs.jsonl`), finished by `cinepipe sweep --resume`: every run folder is
//! opened, found complete and read into its summary, as a sweep aggregates as it goes. Reported:
//! wall time and peak RSS of that process (target ≤ 50 MB).
//!
//! Run with `cargo bench --bench sweep` (`RUNS=N` to change the count).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cinepipe::testkit::measure::{measured, release_binary};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_up(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ok = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", url])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not answer");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// ComfyUI's own execution time (s) of the prompts it started at or after `since_ns`: its
/// `execution_start` to its final `executing` (node null), from the clock extension's log.
fn comfy_work_s(clock_log: &Path, since_ns: i128) -> f64 {
    let text = std::fs::read_to_string(clock_log)
        .expect("the clock extension wrote its log (is it loaded?)");
    let mut start: std::collections::HashMap<String, i128> = Default::default();
    let mut total = 0i128;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(id), Some(t)) = (v["prompt_id"].as_str(), v["t_ns"].as_i64()) else {
            continue;
        };
        let t = i128::from(t);
        match v["event"].as_str() {
            Some("execution_start") if t >= since_ns => {
                start.insert(id.to_owned(), t);
            }
            Some("executing") if v["node"].is_null() => {
                if let Some(s) = start.remove(id) {
                    total += t - s;
                }
            }
            _ => {}
        }
    }
    total as f64 / 1e9
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn main() {
    let runs: u32 = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let bin = release_binary();
    let tmp = tempfile::tempdir().expect("tmp");
    let t = tmp.path();
    let comfy_out = t.join("comfy-out");
    let clock_log = t.join("clock.jsonl");
    let (llm_port, comfy_port) = (free_port(), free_port());
    let llm = Server(
        Command::new(root().join("scripts/start-llm-server"))
            .args(["--port", &llm_port.to_string(), "--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/start-llm-server"),
    );
    let comfy = Server(
        Command::new(root().join("scripts/start-comfyui"))
            .args(["--port", &comfy_port.to_string(), "--output-dir"])
            .arg(&comfy_out)
            .arg("--state-dir")
            .arg(t.join("comfy-state"))
            .arg("--custom-nodes")
            .arg(root().join("comfyui_nodes"))
            .arg("--custom-nodes")
            .arg(root().join("engine/benches/comfyui_clock"))
            .env("CINEPIPE_BENCH_CLOCK_LOG", &clock_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scripts/start-comfyui"),
    );
    let comfy_url = format!("http://127.0.0.1:{comfy_port}");
    wait_up(&format!("http://127.0.0.1:{llm_port}/health"));
    wait_up(&format!("{comfy_url}/system_stats"));

    // The demo spec on these servers, its paths from the project root, output in the temp dir.
    let demo = std::fs::read_to_string(root().join("specs/demo.toml")).expect("demo.toml");
    assert!(
        demo.contains("18080") && demo.contains("18188"),
        "demo.toml's ports moved"
    );
    let spec_text = demo
        .replace("18080", &llm_port.to_string())
        .replace("18188", &comfy_port.to_string())
        .replace("runs/.comfyui/output", &comfy_out.display().to_string())
        .replace(
            "base_dir = \"..\"",
            &format!("base_dir = {:?}", root().display().to_string()),
        )
        .replace(
            "output_dir = \"runs\"",
            &format!("output_dir = {:?}", t.join("runs").display().to_string()),
        );
    let suite = t.join("suite");
    std::fs::create_dir_all(&suite).expect("mkdir");
    std::fs::write(suite.join("demo.toml"), &spec_text).expect("spec");
    std::fs::write(
        suite.join("suite.toml"),
        format!("name = \"bench\"\nrepeat = {runs}\nno_cache = false\n"),
    )
    .expect("suite.toml");
    let spec = suite.join("demo.toml");
    let run = |quiet: bool| {
        let mut c = Command::new(&bin);
        c.arg("run").arg(&spec).current_dir(t).env("CI", "true");
        if quiet {
            c.arg("--quiet");
        }
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    // Prime: the story is cached by this run; ComfyUI has loaded its nodes.
    assert!(
        run(true).status().expect("run").success(),
        "the priming run failed"
    );

    println!("sweep vs loop: {runs} runs of the demo spec (cached story, 2 scenes each)");
    let since = now_ns();
    let started = Instant::now();
    for i in 0..runs {
        let ok = run(true).status().expect("run").success();
        assert!(ok, "loop run {i} failed");
    }
    let loop_wall = started.elapsed().as_secs_f64();
    let loop_comfy = comfy_work_s(&clock_log, since);

    let since = now_ns();
    let sweep_dir = t.join("sweep");
    let (wall, sweep_rss, status) = measured(
        Command::new(&bin)
            .args(["sweep", "--quiet", "--out"])
            .arg(&sweep_dir)
            .arg(&suite)
            .current_dir(t)
            .env("CI", "true")
            .stdout(Stdio::null()),
    );
    assert!(status.success(), "the sweep failed: {status}");
    let sweep_wall = wall.as_secs_f64();
    let sweep_comfy = comfy_work_s(&clock_log, since);
    let per_min = |w: f64| f64::from(runs) * 60.0 / w;
    println!(
        "  loop : {loop_wall:>7.2} s  {:>6.1} runs/min  ComfyUI {loop_comfy:>6.2} s  engine {:>6.0} ms/run",
        per_min(loop_wall),
        (loop_wall - loop_comfy) * 1000.0 / f64::from(runs)
    );
    println!(
        "  sweep: {sweep_wall:>7.2} s  {:>6.1} runs/min  ComfyUI {sweep_comfy:>6.2} s  engine {:>6.0} ms/run  (peak RSS {:.1} MB)",
        per_min(sweep_wall),
        (sweep_wall - sweep_comfy) * 1000.0 / f64::from(runs),
        sweep_rss as f64 / 1024.0
    );
    println!(
        "  sweep / loop: {:.2}x the runs per minute (target >= 1.5x)",
        loop_wall / sweep_wall
    );

    // 1,000 jobs, each with a copy of a finished run folder of the sweep, no runs.jsonl.
    let n = 1000u32;
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(sweep_dir.join("sweep-manifest.json")).expect("manifest"),
    )
    .expect("json");
    let first = &manifest["jobs"][0];
    let job0: cinepipe::sweep::jobs::Job = serde_json::from_value(first.clone()).expect("a job");
    let src = std::fs::read_dir(sweep_dir.join("runs").join(job0.folder()))
        .expect("job folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a run folder");
    let agg = t.join("agg");
    let mut jobs = Vec::new();
    for r in 1..=n {
        let job = cinepipe::sweep::jobs::Job {
            key: format!("{}|{}|{r}", job0.spec, job0.profile),
            repeat: r,
            index: r - 1,
            ..job0.clone()
        };
        let dest = agg.join("runs").join(job.folder());
        std::fs::create_dir_all(&dest).expect("mkdir");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dest)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cp");
        jobs.push(serde_json::to_value(&job).expect("job"));
    }
    let mut m = manifest.clone();
    m["jobs"] = Value::Array(jobs);
    std::fs::write(
        agg.join("sweep-manifest.json"),
        serde_json::to_vec_pretty(&m).expect("json"),
    )
    .expect("manifest");
    let (wall, rss, status) = measured(
        Command::new(&bin)
            .args(["sweep", "--quiet", "--resume"])
            .arg(&agg)
            .current_dir(t)
            .env("CI", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(agg.join("sweep.json")).expect("sweep.json"))
            .expect("json");
    assert_eq!(report["finished"], n, "every copied run is read: {report}");
    drop(llm);
    drop(comfy);
    println!(
        "aggregating {n} run folders (sweep --resume, {status}): {:.2} s, peak RSS {:.1} MB (target <= 50 MB)",
        wall.as_secs_f64(),
        rss as f64 / 1024.0
    );
}
