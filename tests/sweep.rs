//! `cinepipe sweep` through the real binary against the harness's real servers: a suite of a
//! steady spec, one made flaky for real (a node that fails on its first attempt) and one that
//! always fails; verdicts, KPIs against the run folders, the schema, JUnit read back, the
//! exit code, and a killed sweep resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cinepipe::testkit::SpecBuilder;
use serde_json::{Value, json};

use crate::common::{cinepipe_in, root, stderr, stdout};
use crate::harness::{self, Server};

/// A one-scene chain on the harness's servers; `render` renders `workflow`.
fn spec(name: &str, llm: &Server, comfy: &Server, workflow: &Path, marker: bool) -> SpecBuilder {
    let stages: &[&str] = if marker {
        &["story", "patch", "render", "marker", "frames"]
    } else {
        &["story", "patch", "render"]
    };
    let mut b = SpecBuilder::chain(name, stages)
        .llm_url(&llm.url)
        .set("services.llm", "model", llm.model.as_str())
        .comfy_urls(&[&comfy.url])
        .small_model_story()
        .scenes(1)
        .toml(
            "stages.story",
            "max_tokens = 400\ntimeout_s = 300\nmax_latency_s = 300\nretry = { budget = 2 }",
        )
        // One story whatever the CPU: the verdicts are about the renders.
        .fixed_story()
        .set("stages.patch", "workflow", workflow.display().to_string())
        .toml("stages.render", "poll_interval_s = 0.5\nmax_wait_s = 120");
    if marker {
        let out = comfy.output_dir.as_ref().expect("checked by the caller");
        b = b
            .set("services.comfy", "output_dir", out.display().to_string())
            .toml("stages.frames", "min_frames = 25");
    }
    b
}

/// The suite: `steady.toml` (the demo's workflow, done-marker and frames), `flaky.toml` (fails
/// its first render attempt, passes the retry), `broken.toml` (a node that always raises).
fn suite(dir: &Path, llm: &Server, comfy: &Server) -> PathBuf {
    let suite = dir.join("suite");
    std::fs::create_dir_all(&suite).expect("mkdir");
    let image = json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}});
    let save = |from: &str| json!({"class_type": "SaveImage", "_meta": {"title": "save"}, "inputs": {"images": [from, 0], "filename_prefix": "x"}});
    let flaky_wf = json!({
        "1": image,
        "2": {"class_type": "CinepipeTestFailOnce", "_meta": {"title": "once"}, "inputs": {"images": ["1", 0], "key": "k"}},
        "3": save("2"),
    });
    let broken_wf = json!({
        "1": image,
        "2": {"class_type": "CinepipeTestRaise", "inputs": {"images": ["1", 0], "message": "always"}},
        "3": save("1"),
    });
    for (name, wf) in [("flaky.json", flaky_wf), ("broken.json", broken_wf)] {
        std::fs::write(suite.join(name), wf.to_string()).expect("workflow");
    }
    let demo_wf = root().join("workflows/model-free/moving-square-done-marker.json");
    spec("steady", llm, comfy, &demo_wf, true).write(&suite, "steady.toml");
    spec("flaky", llm, comfy, &suite.join("flaky.json"), false)
        // A key per run: each run's first attempt fails, its retry passes.
        .set(
            "stages.patch",
            "set",
            json!({"save.filename_prefix": "{{prefix}}", "once.key": "{{run.id}}"}),
        )
        .set("stages.patch", "check_object_info", false)
        .toml(
            "stages.render",
            "retry = { budget = 1, on = [\"execution-error\"] }",
        )
        .write(&suite, "flaky.toml");
    spec("broken", llm, comfy, &suite.join("broken.json"), false)
        .set("stages.patch", "check_object_info", false)
        .write(&suite, "broken.toml");
    std::fs::write(
        suite.join("suite.toml"),
        r#"#:schema ../../../schemas/suite.schema.json
name = "test-suite"
repeat = 2
# The story is the same request every time: answered once, then from the cache.
no_cache = false
"#,
    )
    .expect("suite.toml");
    suite
}

/// A suite of one spec, `quick.toml`: one 8×8 image saved, no marker; seconds a run.
fn quick_suite(dir: &Path, llm: &Server, comfy: &Server) -> PathBuf {
    let suite = dir.join("suite");
    std::fs::create_dir_all(&suite).expect("mkdir");
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "_meta": {"title": "save"}, "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    });
    std::fs::write(suite.join("quick.json"), wf.to_string()).expect("workflow");
    spec("quick", llm, comfy, &suite.join("quick.json"), false).write(&suite, "quick.toml");
    suite
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("reads")).expect("JSON")
}

fn verdict<'a>(report: &'a Value, spec: &str) -> &'a Value {
    report["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["spec"] == spec)
        .unwrap_or_else(|| panic!("no verdict for {spec}: {report}"))
}

#[test]
fn a_sweep_tells_stable_flaky_and_broken_apart_and_gates_the_exit_code() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    if harness::output_dir(comfy).is_none() {
        return;
    }
    let _turn = harness::comfy_turn();
    let top = tempfile::tempdir().expect("tempdir");
    let suite = suite(top.path(), llm, comfy);
    let out_dir = top.path().join("sweep");
    let junit = top.path().join("junit.xml");
    let summary = top.path().join("step-summary.md");
    // As a GitHub Actions step: annotations and the step summary too.
    let out = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["sweep", "--out"])
        .arg(&out_dir)
        .arg("--junit")
        .arg(&junit)
        .arg(&suite)
        .current_dir(top.path())
        .env("NO_COLOR", "1")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("cinepipe runs");
    let (o, e) = (stdout(&out), stderr(&out));
    // `broken` fails its pass-rate gate: exit 1.
    assert_eq!(out.status.code(), Some(1), "{o}{e}");
    assert!(
        o.starts_with("sweep test-suite: fail (6/6 runs; 6 this session)"),
        "{o}"
    );
    let progress =
        |l: &&str| l.starts_with('[') && l[1..].starts_with(|c: char| c.is_ascii_digit());
    assert_eq!(e.lines().filter(progress).count(), 6, "{e}");
    // Each service is probed once for the whole sweep, not once per spec or run.
    assert_eq!(e.matches("service `llm`: reusing").count(), 1, "{e}");

    let report = read(&out_dir.join("sweep.json"));
    let schema = read(&root().join("schemas/sweep.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let problems: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        (report["planned"].as_u64(), report["finished"].as_u64()),
        (Some(6), Some(6))
    );
    assert_eq!(report["result"], "fail");

    let steady = verdict(&report, "steady.toml");
    assert_eq!(steady["status"], "stable", "{steady}");
    assert_eq!(
        (steady["runs"].as_u64(), steady["passed"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(steady["pass_all"], true);
    assert_eq!(steady["gate_failures"], json!([]), "{steady}");
    // The KPIs are what the run folders say.
    let mut scenes = 0;
    let mut markers = 0;
    for rel in steady["run_dirs"].as_array().expect("run dirs") {
        let run = out_dir.join(rel.as_str().expect("a path"));
        assert_eq!(
            cinepipe::verify::verify_run(&run).expect("reads"),
            [],
            "{}",
            run.display()
        );
        let m = read(&run.join("artifact-metadata.json"));
        for s in m["Scenes"].as_array().expect("scenes") {
            scenes += 1;
            markers += u32::from(s["Telemetry"]["DoneMarkerDetected"] == true);
        }
    }
    assert_eq!(steady["kpis"]["scenes"].as_u64(), Some(scenes));
    assert_eq!(
        steady["kpis"]["done_marker_rate"].as_f64(),
        Some(f64::from(markers) / scenes as f64)
    );
    assert_eq!(steady["kpis"]["telemetry_complete"].as_f64(), Some(1.0));
    assert!(
        steady["kpis"]["scene_seconds"]["p50"].as_f64() > Some(0.0),
        "{steady}"
    );

    let flaky = verdict(&report, "flaky.toml");
    assert_eq!(flaky["status"], "flaky", "{flaky}");
    assert_eq!(
        (flaky["passed"].as_u64(), flaky["retried"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        flaky["failures"]["render: execution-error"].as_u64(),
        Some(2),
        "{flaky}"
    );
    assert_eq!(
        flaky["gate_failures"],
        json!([]),
        "flaky warns by default: {flaky}"
    );
    assert_eq!(
        flaky["warnings"].as_array().map(Vec::len),
        Some(1),
        "{flaky}"
    );

    let broken = verdict(&report, "broken.toml");
    assert_eq!(broken["status"], "broken", "{broken}");
    assert_eq!(
        (broken["passed"].as_u64(), broken["failed"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(
        broken["failures"]["render: execution-error"].as_u64(),
        Some(2),
        "{broken}"
    );
    assert_eq!(
        broken["gate_failures"][0], "pass rate 0/2 (0.0 %) is below min_pass_rate 100.0 %",
        "{broken}"
    );
    // Failing (spec, profile) first.
    assert_eq!(report["verdicts"][0]["spec"], "broken.toml");

    // GitHub: an error at the line of broken.toml's render stage, a warning for the flaky one,
    // nothing for the stable one; the step summary has a row per (spec, profile).
    let render_line = std::fs::read_to_string(suite.join("broken.toml"))
        .expect("spec")
        .lines()
        .position(|l| l.trim() == "[stages.render]")
        .expect("a render table")
        + 1;
    let errors: Vec<&str> = o.lines().filter(|l| l.starts_with("::error ")).collect();
    assert_eq!(errors.len(), 1, "{o}");
    assert!(
        errors[0].contains("broken.toml,line=")
            && errors[0].ends_with("render: execution-error (2)"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains(&format!(",line={render_line},")),
        "{} (line {render_line})",
        errors[0]
    );
    let warnings: Vec<&str> = o.lines().filter(|l| l.starts_with("::warning ")).collect();
    assert_eq!(warnings.len(), 1, "{o}");
    assert!(warnings[0].contains("flaky.toml"), "{}", warnings[0]);
    let md = std::fs::read_to_string(&summary).expect("step summary");
    assert!(
        md.starts_with("### cinepipe sweep `test-suite`: fail"),
        "{md}"
    );
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| ") && l.contains(".toml`"))
            .count(),
        3,
        "{md}"
    );

    // JUnit, read back: a suite per (spec, profile), a case per repeat; the flaky runs are
    // successes with a flakyFailure, the broken ones failures.
    let xml = std::fs::read_to_string(&junit).expect("junit");
    let doc = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit parses");
    assert_eq!(doc.test_suites.len(), 3);
    for ts in &doc.test_suites {
        assert_eq!(ts.test_cases.len(), 2, "{:?}", ts.name);
        for case in &ts.test_cases {
            match (ts.name.as_str(), &case.status) {
                ("flaky.toml [standard]", quick_junit::TestCaseStatus::Success { flaky_runs }) => {
                    assert_eq!(flaky_runs.len(), 1);
                }
                ("steady.toml [standard]", quick_junit::TestCaseStatus::Success { flaky_runs }) => {
                    assert!(flaky_runs.is_empty());
                }
                ("broken.toml [standard]", quick_junit::TestCaseStatus::NonSuccess { .. }) => {}
                (name, status) => panic!("{name}: {status:?}"),
            }
        }
    }
}

#[test]
fn a_killed_sweep_resumes_and_redoes_no_finished_run() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let _turn = harness::comfy_turn();
    let top = tempfile::tempdir().expect("tempdir");
    let suite = top.path().join("suite");
    std::fs::create_dir_all(&suite).expect("mkdir");
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CinepipeTestSleep", "inputs": {"images": ["1", 0], "seconds": 1.0}},
        "3": {"class_type": "SaveImage", "_meta": {"title": "save"}, "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    });
    std::fs::write(suite.join("slow.json"), wf.to_string()).expect("workflow");
    spec("slow", llm, comfy, &suite.join("slow.json"), false)
        .set("stages.patch", "check_object_info", false)
        .write(&suite, "slow.toml");
    let out_dir = top.path().join("sweep");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["sweep", "--repeat", "4", "--out"])
        .arg(&out_dir)
        .arg(&suite)
        .current_dir(top.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    // Killed once two runs are recorded.
    let log = out_dir.join("runs.jsonl");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "two runs never finished");
        let lines = std::fs::read_to_string(&log)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 2 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the sweep ended ({status}) before the kill");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let before: Vec<String> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(str::to_owned)
        .collect();

    let out = cinepipe_in(
        top.path(),
        &["sweep", "--resume", out_dir.to_str().expect("utf-8")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let after: Vec<Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole line"))
        .collect();
    // The lines before the kill are kept as they were; each job is recorded once.
    for (i, line) in before
        .iter()
        .enumerate()
        .filter(|(_, l)| serde_json::from_str::<Value>(l).is_ok())
    {
        assert_eq!(
            serde_json::to_string(&after[i]).ok().as_deref(),
            Some(line.as_str())
        );
    }
    let mut keys: Vec<&str> = after.iter().filter_map(|r| r["key"].as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 4, "{after:?}");
    assert_eq!(after.len(), 4, "{after:?}");
    // One run folder per job: nothing was started twice.
    for job in std::fs::read_dir(out_dir.join("runs")).expect("runs") {
        let job = job.expect("entry").path();
        let runs = std::fs::read_dir(&job).expect("job dir").count();
        assert_eq!(runs, 1, "{}", job.display());
    }
    assert!(
        !stdout(&out).contains("::"),
        "no workflow commands off GitHub: {}",
        stdout(&out)
    );
    let report = read(&out_dir.join("sweep.json"));
    assert_eq!(report["result"], "pass", "{report}");
    assert_eq!(verdict(&report, "slow.toml")["passed"].as_u64(), Some(4));
}

#[test]
fn a_bad_suite_file_is_refused_with_every_problem_at_its_span_before_any_run() {
    let top = tempfile::tempdir().expect("tempdir");
    let suite = top.path().join("suite");
    std::fs::create_dir_all(&suite).expect("mkdir");
    SpecBuilder::chain("one", &["story", "validate"]).write(&suite, "one.toml");
    std::fs::write(
        suite.join("suite.toml"),
        "repeats = 3\nspecs = [\"one.toml\", \"two.toml\"]\n\n[gates]\ndone_marker_rate = 1.5\nflaky = \"sometimes\"\n\n[overrides.\"three.toml\"]\nrepeat = 2\n",
    )
    .expect("suite.toml");
    let out_dir = top.path().join("sweep");
    let out = cinepipe_in(
        top.path(),
        &[
            "sweep",
            "--color",
            "never",
            suite.to_str().expect("utf-8"),
            "--out",
            out_dir.to_str().expect("utf-8"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for want in [
        "unknown key `repeats`",
        "did you mean `repeat`",
        "no spec file `two.toml`",
        "`gates.done_marker_rate`",
        "`gates.flaky`",
        "`overrides.\"three.toml\"` names no spec of the suite",
        "suite.toml:1:1",
        "has 5 problems",
    ] {
        assert!(err.contains(want), "{want:?} in:\n{err}");
    }
    assert!(!out_dir.exists(), "nothing is written for a refused suite");
    // `validate` checks a suite file as a suite.
    let out = cinepipe_in(
        top.path(),
        &[
            "validate",
            "--color",
            "never",
            suite.join("suite.toml").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown key `repeats`"));
}

#[test]
fn a_stress_sweep_deals_rounds_until_its_time_is_up_and_draws_live_rows_on_a_terminal() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let _turn = harness::comfy_turn();
    let top = tempfile::tempdir().expect("tempdir");
    let suite = quick_suite(top.path(), llm, comfy);
    let out_dir = top.path().join("sweep");
    // Shard 2 of 2 of a one-run round holds the even rounds only: its first round is empty.
    // Under a pty (`script`) and outside CI, the live display is drawn.
    let command = format!(
        "{} sweep --stress-duration 6s --profile standard --partition count:2/2 --out {} {}",
        env!("CARGO_BIN_EXE_cinepipe"),
        out_dir.display(),
        suite.display()
    );
    let started = Instant::now();
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .current_dir(top.path())
        .output()
        .expect("script (util-linux) runs");
    let wall = started.elapsed();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{screen}");
    assert!(wall >= Duration::from_secs(6), "stopped early: {wall:?}");
    assert!(
        screen.contains("quick.toml [standard]: ") && screen.contains("stress: "),
        "no live rows on the terminal: {screen}"
    );
    assert!(
        !screen.contains("[1/"),
        "plain lines where the live display belongs: {screen}"
    );

    let manifest = read(&out_dir.join("sweep-manifest.json"));
    let rounds = manifest["stress"]["rounds"].as_u64().expect("rounds");
    let repeats: Vec<u64> = manifest["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["repeat"].as_u64().expect("repeat"))
        .collect();
    assert!(!repeats.is_empty(), "{manifest}");
    assert_eq!(
        repeats,
        (1..=rounds).filter(|r| r % 2 == 0).collect::<Vec<u64>>(),
        "shard 2/2 runs the even rounds, every one it made: {manifest}"
    );
    let report = read(&out_dir.join("sweep.json"));
    assert_eq!(report["result"], "pass", "{report}");
    assert_eq!(report["planned"], report["finished"], "{report}");
    assert_eq!(
        verdict(&report, "quick.toml")["runs"].as_u64(),
        Some(repeats.len() as u64)
    );

    // Its time is up: a resume finishes what was started and starts no new round.
    let again = cinepipe_in(
        top.path(),
        &["sweep", "--resume", out_dir.to_str().expect("utf-8")],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("; 0 this session)"),
        "{}",
        stdout(&again)
    );
    assert_eq!(read(&out_dir.join("sweep-manifest.json")), manifest);
}

/// Shards of a real sweep (count:K/3), merged by `cinepipe sweep merge`, report exactly what
/// one unsharded sweep folder of the same run folders reports when it aggregates them.
#[test]
fn real_shards_merge_into_what_the_same_runs_report_unsharded() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let _turn = harness::comfy_turn();
    let top = tempfile::tempdir().expect("tempdir");
    let suite = quick_suite(top.path(), llm, comfy);
    let dir = |name: &str| top.path().join(name);
    for k in 1..=3 {
        let out = cinepipe_in(
            top.path(),
            &[
                "sweep",
                "--repeat",
                "2",
                "--profile",
                "standard",
                "--profile",
                "fast",
                "--partition",
                &format!("count:{k}/3"),
                "--out",
                dir(&format!("s{k}")).to_str().expect("utf-8"),
                suite.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "shard {k}: {}", stderr(&out));
    }
    let shards: Vec<String> = (1..=3)
        .map(|k| dir(&format!("s{k}")).display().to_string())
        .collect();
    let mut args = vec!["sweep", "merge"];
    args.extend(shards.iter().map(String::as_str));
    let merged_junit = dir("merged.xml").display().to_string();
    let merged = dir("merged").display().to_string();
    args.extend(["--out", &merged, "--junit", &merged_junit]);
    let out = cinepipe_in(top.path(), &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The unsharded folder of the same runs: the whole work list, the shards' run folders,
    // no runs.jsonl; `--resume` reads every finished run folder, as a sweep does as it goes.
    let whole = dir("whole");
    std::fs::create_dir_all(whole.join("runs")).expect("mkdir");
    let mut manifest = read(&dir("s1").join("sweep-manifest.json"));
    let mut jobs: Vec<Value> = Vec::new();
    for s in &shards {
        let m = read(&Path::new(s).join("sweep-manifest.json"));
        jobs.extend(m["jobs"].as_array().expect("jobs").iter().cloned());
        for entry in std::fs::read_dir(Path::new(s).join("runs")).expect("runs") {
            let from = entry.expect("entry").path();
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&from)
                .arg(whole.join("runs"))
                .status()
                .is_ok_and(|st| st.success());
            assert!(ok, "cp {}", from.display());
        }
    }
    jobs.sort_by_key(|j| j["index"].as_u64());
    assert_eq!(jobs.len(), 4, "2 repeats x 2 profiles, each in one shard");
    manifest["jobs"] = Value::Array(jobs);
    manifest["partition"] = Value::Null;
    std::fs::write(
        whole.join("sweep-manifest.json"),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    )
    .expect("manifest");
    let whole_junit = dir("whole.xml").display().to_string();
    let out = cinepipe_in(
        top.path(),
        &[
            "sweep",
            "--resume",
            whole.to_str().expect("utf-8"),
            "--junit",
            &whole_junit,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(4/4 runs; 4 this session)"),
        "{}",
        stdout(&out)
    );
    let a = std::fs::read_to_string(dir("merged").join("sweep.json")).expect("merged");
    let b = std::fs::read_to_string(whole.join("sweep.json")).expect("whole");
    assert_eq!(a, b, "the merged report is the unsharded one");
    assert_eq!(
        std::fs::read_to_string(&merged_junit).expect("junit"),
        std::fs::read_to_string(&whole_junit).expect("junit"),
    );
    assert_eq!(read(&dir("merged").join("sweep.json"))["finished"], 4);

    // A shard given twice overlaps; refused, with nothing written.
    let twice = dir("twice").display().to_string();
    let out = cinepipe_in(
        top.path(),
        &["sweep", "merge", &shards[0], &shards[0], "--out", &twice],
    );
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("overlap"), "{}", stderr(&out));
    assert!(!dir("twice").join("sweep.json").exists());
}
