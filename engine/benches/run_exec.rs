//! Benchmark: the executor with a no-op stage. A story of 10,000 scenes fans out into 10,000
//! `patch` instances (plus a gathering `validate`), all scheduled and journaled; then the
//! journal is replayed for a resume. Each measurement runs in a child process of its own, so
//! its peak RSS is the run's alone.
//!
//! Targets (issue #4): 10,000 instances scheduled and journaled in under 1 s, engine RSS under
//! 50 MB, journal replay for resume under 200 ms. Run with `cargo bench --bench run_exec`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use cinepipe::exec::{
    Attempt, BoxFuture, ExecOptions, Executor, Interrupt, RunOutcome, Session, Stage, StageContext,
};
use cinepipe::rundir::RunDir;
use cinepipe::rundir::journal::{self, Journal};
use cinepipe::spec::model::StageKind;
use serde_json::{Value, json};

const ITEMS: usize = 10_000;

/// Does nothing; the list source answers with `ITEMS` scenes.
struct NoOp;

impl Stage for NoOp {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(Attempt::unrecorded(async move {
            if ctx.instance.stage == "story" {
                let scenes: Vec<Value> = (0..ITEMS)
                    .map(|i| json!({"id": format!("scene-{i}"), "prompt": "p", "mood": "m"}))
                    .collect();
                return Ok(json!({"title": "t", "story_version": "1", "scenes": scenes}));
            }
            Ok(Value::Null)
        }))
    }
}

fn spec(root: &Path, out: &Path) -> String {
    format!(
        r#"
[run]
name = "bench"
base_dir = "{root}"
output_dir = "{out}"

[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "m"

[stages.story]
kind = "llm"
service = "llm"
prompt = "prompts/story/v1/sci-fi.hbs"
vars = {{ scenes = 3, tone = "calm", premise = "" }}

[stages.patch]
kind = "patch-workflow"
needs = ["story"]
for_each = "story.scenes"
workflow = "workflows/model-free/frames.json"
set = {{ "save.filename_prefix" = "{{{{prefix}}}}" }}

[stages.validate]
kind = "validate"
needs = ["patch"]
"#,
        root = root.display(),
        out = out.display()
    )
}

fn registry() -> cinepipe::exec::Registry {
    StageKind::ALL
        .into_iter()
        .fold(cinepipe::run::registry(), |r, k| r.with(k, Arc::new(NoOp)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Child: one fresh run. Prints `run <ms> <run-dir>`.
fn child_run(spec_path: &Path) {
    let checked = cinepipe::spec::load(spec_path, None).expect("bench spec is valid");
    let out = checked.resolve_path(&checked.spec.run.output_dir);
    let rt = runtime();
    let start = Instant::now();
    let report = rt.block_on(async {
        let dir = RunDir::create(&out, &checked, spec_path).expect("run dir");
        let journal = Journal::create(&dir.events()).expect("journal");
        let exec = Executor::new(
            cinepipe::plan::Plan::new(checked),
            registry(),
            ExecOptions::default(),
        );
        let session = Session {
            dir,
            journal,
            replay: None,
            spec_label: "bench.toml".into(),
        };
        exec.execute(session, &Interrupt::new(), Vec::new()).await
    });
    let wall = start.elapsed();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(report.instances.len(), ITEMS + 2);
    println!("run {} {}", wall.as_secs_f64() * 1e3, report.dir.display());
}

/// Child: replay the journal, then a whole resume session (nothing left to run). Prints
/// `resume <replay ms> <session ms> <events>`.
fn child_resume(spec_path: &Path, run_dir: &Path) {
    let start = Instant::now();
    let replay = journal::replay(&run_dir.join("events.jsonl")).expect("replays");
    let replay_wall = start.elapsed();
    let events = replay.events;
    let checked = cinepipe::spec::load(spec_path, None).expect("bench spec is valid");
    let rt = runtime();
    let start = Instant::now();
    let report = rt.block_on(async {
        let (dir, _) = RunDir::open(run_dir).expect("run dir");
        let replay = journal::replay(&dir.events()).expect("replays");
        let journal = Journal::append_to(&dir.events()).expect("journal");
        let exec = Executor::new(
            cinepipe::plan::Plan::new(checked),
            registry(),
            ExecOptions::default(),
        );
        let session = Session {
            dir,
            journal,
            replay: Some(replay),
            spec_label: "bench.toml".into(),
        };
        exec.execute(session, &Interrupt::new(), Vec::new()).await
    });
    let session_wall = start.elapsed();
    assert_eq!(report.outcome, RunOutcome::Succeeded);
    assert_eq!(
        report.count(cinepipe::exec::InstanceState::Reused),
        ITEMS + 2
    );
    println!(
        "resume {} {} {events}",
        replay_wall.as_secs_f64() * 1e3,
        session_wall.as_secs_f64() * 1e3
    );
}

/// Runs this benchmark binary as a child; returns its stdout and peak RSS (KiB).
fn child(args: &[&str]) -> (String, i64) {
    let me = std::env::current_exe().expect("own path");
    let mut child = Command::new(me)
        .args(args)
        .env("CINEPIPE_BENCH_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let out = child.stdout.take().map(|mut s| {
        let mut t = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut t);
        t
    });
    // SAFETY: wait4 on our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {args:?} failed"
    );
    // Already reaped by wait4; this only lets `Child` know.
    let _ = child.try_wait();
    (out.unwrap_or_default(), usage.ru_maxrss)
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os("CINEPIPE_BENCH_CHILD").is_some() {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["run", spec] => child_run(Path::new(spec)),
            ["resume", spec, dir] => child_resume(Path::new(spec), Path::new(dir)),
            _ => panic!("unknown child mode {args:?}"),
        }
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_path = dir.path().join("bench.toml");
    std::fs::write(&spec_path, spec(&root, &dir.path().join("runs"))).expect("spec");
    let spec_arg = spec_path.to_string_lossy().into_owned();

    let rounds = 7;
    let (mut runs, mut replays, mut sessions) = (Vec::new(), Vec::new(), Vec::new());
    let (mut run_rss, mut resume_rss) = (0, 0);
    let mut journal_bytes = 0;
    let mut events = String::new();
    for _ in 0..rounds {
        let (out, rss) = child(&["run", &spec_arg]);
        let mut f = out.split_whitespace().skip(1);
        runs.push(f.next().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN));
        let run_dir = f.next().expect("run dir").to_owned();
        run_rss = run_rss.max(rss);
        journal_bytes = std::fs::metadata(Path::new(&run_dir).join("events.jsonl"))
            .map(|m| m.len())
            .unwrap_or(0);
        let (out, rss) = child(&["resume", &spec_arg, &run_dir]);
        let f: Vec<&str> = out.split_whitespace().collect();
        replays.push(f.get(1).and_then(|x| x.parse().ok()).unwrap_or(f64::NAN));
        sessions.push(f.get(2).and_then(|x| x.parse().ok()).unwrap_or(f64::NAN));
        events = f.get(3).copied().unwrap_or("?").to_owned();
        resume_rss = resume_rss.max(rss);
    }
    let mb = |kib: i64| kib as f64 / 1024.0;
    let (p50, max) = stats(runs);
    println!(
        "run: {} instances scheduled and journaled ({events} events, {} KiB journal): wall p50 {p50:.1} ms  max {max:.1} ms  peak RSS {:.1} MB",
        ITEMS + 2,
        journal_bytes / 1024,
        mb(run_rss)
    );
    let (p50, max) = stats(replays);
    println!("journal replay: p50 {p50:.1} ms  max {max:.1} ms");
    let (p50, max) = stats(sessions);
    println!(
        "resume session (replay, load outputs, nothing to run): p50 {p50:.1} ms  max {max:.1} ms  peak RSS {:.1} MB",
        mb(resume_rss)
    );
}
