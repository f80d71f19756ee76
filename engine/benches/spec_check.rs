//! Benchmark: check and plan a generated spec of 1,000 stages and ~5,000 edges, in process and
//! through the real binary (wall time and peak RSS), and time `cinepipe --version`.
//!
//! Targets (issue #2, on a 2-core machine): validate + plan under 50 ms and 30 MB peak RSS;
//! `--version` under 5 ms. Run with `cargo bench --bench spec_check`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const STAGES: usize = 1000;
const FAN_IN: usize = 5;

/// A spec of `STAGES` stages; each needs up to `FAN_IN` of the stages before it.
fn generate(root: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "[run]\nname = \"bench\"\nbase_dir = \"{}\"\n",
        root.display()
    );
    s.push_str("[services.llm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:18080/v1\"\nmodel = \"m\"\n\n");
    s.push_str("[services.comfy]\nkind = \"comfyui\"\nurls = [\"http://127.0.0.1:18188\"]\n\n");
    s.push_str("[stages.s0]\nkind = \"llm\"\nservice = \"llm\"\nprompt = \"prompts/story/v1/sci-fi.hbs\"\n");
    s.push_str("vars = { scenes = 3, tone = \"calm\", premise = \"\" }\n\n");
    let mut last_queue = None;
    for i in 1..STAGES {
        let needs: Vec<String> = (i.saturating_sub(FAN_IN)..i)
            .map(|j| format!("\"s{j}\""))
            .collect();
        let _ = writeln!(s, "[stages.s{i}]\nneeds = [{}]", needs.join(", "));
        match i % 6 {
            0 => {
                s.push_str(
                    "kind = \"patch-workflow\"\nworkflow = \"workflows/model-free/frames.json\"\n",
                );
                s.push_str("set = { \"save.filename_prefix\" = \"{{prefix}}\", \"frames.batch_size\" = 25 }\n");
            }
            1 => {
                s.push_str("kind = \"queue\"\nservice = \"comfy\"\nretry = { budget = 2, backoff = \"exponential\", delay_s = 1 }\n");
                last_queue = Some(i);
            }
            2 => s.push_str("kind = \"await-marker\"\ntimeout_s = 30\n"),
            3 => match last_queue {
                Some(q) => {
                    let _ = writeln!(
                        s,
                        "kind = \"collect-frames\"\non_short = {{ requeue = \"s{q}\" }}"
                    );
                }
                None => s.push_str("kind = \"collect-frames\"\n"),
            },
            4 => s.push_str("kind = \"quality\"\n"),
            _ => s.push_str("kind = \"validate\"\n"),
        }
        s.push('\n');
    }
    s.push_str("[profiles.ci]\ninherits = \"fast\"\nkinds.queue.max_wait_s = 120\n");
    s
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let n = v.len();
    (v[n / 2], v[(n * 95 / 100).min(n - 1)], v[n - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs the binary, returning its wall time and the peak RSS of the child (KiB).
fn run(bin: &Path, args: &[&str]) -> (Duration, i64) {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cinepipe starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(r, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "cinepipe {args:?} failed"
    );
    let _ = child.try_wait();
    (wall, usage.ru_maxrss)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = dir.path().join("bench.toml");
    let text = generate(&root);
    std::fs::write(&spec_path, &text).expect("write spec");
    let edges: usize = (1..STAGES).map(|i| i.min(FAN_IN)).sum();
    println!(
        "spec: {STAGES} stages, {edges} edges, {} KiB",
        text.len() / 1024
    );

    // The binary first, while this process is still small: a spawned child begins life
    // sharing this process's memory, and its peak RSS (ru_maxrss) outlives its exec, so
    // measuring after the in-process loop would report this process's peak, not cinepipe's.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_cinepipe"));
    let spec = spec_path.to_string_lossy().into_owned();
    for (label, args) in [
        (
            "cinepipe validate",
            vec!["validate", "--quiet", spec.as_str()],
        ),
        (
            "cinepipe plan --format json",
            vec!["plan", spec.as_str(), "--profile", "ci", "--format", "json"],
        ),
        (
            "cinepipe plan (text)",
            vec!["plan", spec.as_str(), "--profile", "ci"],
        ),
        ("cinepipe --version", vec!["--version"]),
    ] {
        let mut walls = Vec::new();
        let mut rss = 0;
        for _ in 0..20 {
            let (w, r) = run(&bin, &args);
            walls.push(w);
            rss = rss.max(r);
        }
        let (p50, p95, max) = stats(walls);
        println!(
            "{label:<30} wall p50 {}  p95 {}  max {}  peak RSS {:.1} MB",
            ms(p50),
            ms(p95),
            ms(max),
            rss as f64 / 1024.0
        );
    }

    // In process: check + plan.
    let iterations = 30;
    let mut times = Vec::new();
    for _ in 0..iterations {
        let start = Instant::now();
        let checked =
            cinepipe::spec::load(&spec_path, Some("ci")).expect("generated spec is valid");
        let plan = cinepipe::plan::Plan::new(checked);
        assert_eq!(plan.order().len(), STAGES);
        times.push(start.elapsed());
    }
    let (p50, p95, max) = stats(times);
    println!(
        "in process, check + plan (profile ci):  p50 {}  p95 {}  max {}",
        ms(p50),
        ms(p95),
        ms(max)
    );

    // In process: rendering the plan (what `cinepipe plan` prints), into memory.
    let checked = cinepipe::spec::load(&spec_path, Some("ci")).expect("generated spec is valid");
    let plan = cinepipe::plan::Plan::new(checked);
    for (label, json) in [("text", false), ("json", true)] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..iterations {
            let mut out = Vec::new();
            let start = Instant::now();
            let r = if json {
                plan.write_json(&mut out)
            } else {
                plan.write_text(&mut out)
            };
            times.push(start.elapsed());
            r.expect("rendered");
            bytes = out.len();
        }
        let (p50, p95, max) = stats(times);
        println!(
            "in process, render the plan as {label} ({} KiB):  p50 {}  p95 {}  max {}",
            bytes / 1024,
            ms(p50),
            ms(p95),
            ms(max)
        );
    }
}
