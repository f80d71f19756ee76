//! `cinepipe bench` through the real binary against the harness's real servers: a one-scene
//! spec under `standard` and `fast`, its `results.json` against its schema and the run
//! folders' journals, `ANALYSIS.md` and the plots; a killed bench resumed without redoing
//! runs; and the baseline gate, failed by a variant slowed for real (a sleep node, laid over
//! `fast` by a bench file) and passed by a plain rerun.

use std::path::Path;
use std::process::{Command, Output};

use cinepipe::testkit::SpecBuilder;
use serde_json::{Value, json};

use crate::common::{root, stderr, stdout};
use crate::harness::{self, Server};

fn spec(dir: &Path, llm: &Server, comfy: &Server) -> std::path::PathBuf {
    let out = comfy.output_dir.as_ref().expect("checked by the caller");
    SpecBuilder::chain(
        "bench-one",
        &["story", "patch", "render", "marker", "frames"],
    )
    .llm_url(&llm.url)
    .set("services.llm", "model", llm.model.as_str())
    .comfy_urls(&[&comfy.url])
    .small_model_story()
    .scenes(1)
    .toml(
        "stages.story",
        "max_tokens = 400\ntimeout_s = 300\nmax_latency_s = 300\nretry = { budget = 2 }",
    )
    // One story whatever the CPU: the bench is about the renders.
    .fixed_story()
    .set(
        "stages.patch",
        "workflow",
        root()
            .join("workflows/model-free/moving-square-done-marker.json")
            .display()
            .to_string(),
    )
    .set("services.comfy", "output_dir", out.display().to_string())
    .toml("stages.render", "max_wait_s = 120")
    .toml("stages.frames", "min_frames = 25")
    .write(dir, "one.toml")
}

fn bench(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .arg("bench")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("cinepipe runs")
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("reads")).expect("JSON")
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} vs {b}");
}

/// Every measured and warm-up run of `results` against its run folder's journal, read here
/// as plain JSON lines (not through the engine's reader).
fn figures_match_the_journals(bench_dir: &Path, results: &Value) {
    for v in results["variants"].as_array().expect("variants") {
        let runs = v["run_figures"].as_array().expect("runs");
        let warm = v["warmup_figures"].as_array().expect("warm-up");
        for f in runs.iter().chain(warm) {
            let dir = bench_dir.join(f["run_dir"].as_str().expect("run dir"));
            assert_eq!(f["outcome"], "success", "{}", dir.display());
            let journal = std::fs::read_to_string(dir.join("events.jsonl")).expect("journal");
            let mut wall = 0.0;
            let mut by_stage: std::collections::BTreeMap<String, f64> = Default::default();
            for line in journal.lines() {
                let e: Value = serde_json::from_str(line).expect("a journal line");
                match e["event"].as_str() {
                    Some("run-finished") => wall += e["duration_s"].as_f64().expect("secs"),
                    Some("attempt-finished") => {
                        let instance = e["instance"].as_str().expect("instance");
                        let stage = instance.split('[').next().expect("a stage");
                        *by_stage.entry(stage.to_owned()).or_default() +=
                            e["duration_s"].as_f64().expect("secs");
                    }
                    _ => {}
                }
            }
            close(
                f["wall_seconds"].as_f64().expect("wall"),
                wall,
                1e-9,
                "wall seconds",
            );
            let got = f["stage_seconds"].as_object().expect("stages");
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                by_stage.keys().collect::<Vec<_>>(),
                "{}",
                dir.display()
            );
            for (stage, secs) in &by_stage {
                close(got[stage].as_f64().expect("secs"), *secs, 1e-9, stage);
            }
            assert_eq!(
                f["scene_seconds"].as_array().map(Vec::len),
                Some(1),
                "one scene"
            );
        }
    }
}

#[test]
fn a_bench_compares_two_profiles_resumes_and_gates_a_real_regression() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    if harness::output_dir(comfy).is_none() {
        return;
    }
    let _turn = harness::comfy_turn();
    let top = tempfile::tempdir().expect("tempdir");
    let spec = spec(top.path(), llm, comfy);
    let spec_s = spec.display().to_string();

    // 1. standard vs fast, 2 runs each after a warm-up.
    let a = top.path().join("a");
    let out = bench(
        top.path(),
        &[
            &spec_s,
            "--profiles",
            "standard,fast",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--seed",
            "5",
            "--out",
            a.to_str().expect("utf-8"),
        ],
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert!(
        o.starts_with("bench one: complete (6/6 runs; 6 this session)"),
        "{o}"
    );
    assert!(e.contains("(warm-up)"), "{e}");
    let results = read(&a.join("results.json"));
    let schema = read(&root().join("schemas/bench-results.schema.json"));
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let problems: Vec<String> = validator
        .iter_errors(&results)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let names: Vec<&str> = results["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["standard", "fast"]);
    for v in results["variants"].as_array().expect("variants") {
        assert_eq!(
            (v["runs"].as_u64(), v["passed"].as_u64()),
            (Some(2), Some(2)),
            "{v}"
        );
        assert_eq!(v["warmup_figures"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["kpis"]["done_marker_rate"].as_f64(), Some(1.0), "{v}");
        assert_eq!(v["kpis"]["zero_frame_scenes"].as_u64(), Some(0));
    }
    // The resolved profiles differ where `fast` says.
    let resolved = &results["environment"]["resolved_specs"];
    assert_eq!(
        resolved["fast"]["stages"]["render"]["post_execution_timeout_s"].as_f64(),
        Some(10.0)
    );
    assert_eq!(
        resolved["standard"]["stages"]["render"]["post_execution_timeout_s"].as_f64(),
        Some(30.0)
    );
    let servers = results["environment"]["servers"]
        .as_array()
        .expect("servers");
    assert!(
        servers
            .iter()
            .any(|s| s["kind"] == "comfyui" && s["device"] == "cpu"),
        "{servers:?}"
    );
    assert!(
        servers
            .iter()
            .any(|s| s["models"].as_array().is_some_and(|m| !m.is_empty())),
        "{servers:?}"
    );
    figures_match_the_journals(&a, &results);
    // Interleaved: each round ran both variants.
    let manifest = read(&a.join("bench-manifest.json"));
    let jobs = manifest["jobs"].as_array().expect("jobs");
    for round in jobs.chunks(2) {
        assert_eq!(round[0]["round"], round[1]["round"]);
        assert_ne!(round[0]["variant"], round[1]["variant"]);
    }
    let analysis = std::fs::read_to_string(a.join("ANALYSIS.md")).expect("ANALYSIS.md");
    for needle in [
        "`standard`",
        "`fast`",
        "## Verdict",
        "## Where the time goes",
        "(wall-histogram.svg)",
        "(wall-scatter.svg)",
    ] {
        assert!(analysis.contains(needle), "{needle}:\n{analysis}");
    }
    for svg in ["wall-histogram.svg", "wall-scatter.svg"] {
        let text = std::fs::read_to_string(a.join(svg)).expect("svg");
        assert!(
            text.starts_with("<svg") && text.contains("standard") && text.contains("fast"),
            "{svg}"
        );
    }

    // 2. Killed after four runs: the resume runs the last two only, in their own folders.
    let log = a.join("runs.jsonl");
    let text = std::fs::read_to_string(&log).expect("runs.jsonl");
    let kept: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, kept).expect("truncate");
    let folders_before = std::fs::read_dir(a.join("runs")).expect("runs").count();
    let out = bench(top.path(), &["--resume", a.to_str().expect("utf-8")]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert!(
        o.starts_with("bench one: complete (6/6 runs; 2 this session)"),
        "{o}"
    );
    assert_eq!(
        std::fs::read_dir(a.join("runs")).expect("runs").count(),
        folders_before
    );
    assert_eq!(
        std::fs::read_to_string(&log).expect("log").lines().count(),
        6
    );

    // 3. The gate. `fast` slowed for real by a 1.5 s sleep node before its save node (one
    //    ComfyUI never takes from its cache, else only the first run would sleep): 4x
    //    slower or so, past even a 100 % allowance, interval above 1 → exit 4.
    let slow_wf = top.path().join("slow.json");
    let mut wf = read(&root().join("workflows/model-free/moving-square-done-marker.json"));
    let save = wf
        .as_object()
        .expect("graph")
        .iter()
        .find(|(_, n)| n["_meta"]["title"] == "save")
        .map(|(id, n)| (id.clone(), n["inputs"]["images"].clone()))
        .expect("a save node");
    wf["9001"] = json!({"class_type": "CinepipeTestSleepUncached", "inputs": {"images": save.1, "seconds": 1.5}});
    wf[&save.0]["inputs"]["images"] = json!(["9001", 0]);
    std::fs::write(&slow_wf, wf.to_string()).expect("slow workflow");
    std::fs::write(
        top.path().join("slow.toml"),
        format!(
            "#:schema {}\nspec = \"one.toml\"\nruns = 3\nwarmup = 0\n[variants.standard]\nprofile = \"standard\"\n[variants.fast]\nprofile = \"fast\"\noverlay = {{ stages = {{ patch = {{ workflow = {:?}, check_object_info = false }} }} }}\n",
            root().join("schemas/bench.schema.json").display(),
            slow_wf.display().to_string()
        ),
    )
    .expect("bench file");
    let baseline = a.join("results.json");
    let b = top.path().join("b");
    let junit = top.path().join("bench.xml");
    let out = bench(
        top.path(),
        &[
            "--compare",
            "slow.toml",
            "--out",
            b.to_str().expect("utf-8"),
            "--seed",
            "6",
            "--baseline",
            baseline.to_str().expect("utf-8"),
            "--max-regression",
            "100%",
            "--junit",
            junit.to_str().expect("utf-8"),
        ],
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(4), "{o}{e}");
    assert!(
        o.contains("baseline: fast: median +") && o.contains("past the 100 % allowed"),
        "{o}"
    );
    let slow = read(&b.join("results.json"));
    assert_eq!(slow["baseline"]["regressed"], true);
    let fast = &slow["variants"][1];
    assert_eq!(fast["base_profile"], "fast");
    assert!(fast["overlay"].is_object());
    assert!(b.join("variants/fast.toml").is_file());
    // JUnit: `fast` is the failed test case, with the regression as its message.
    let xml = std::fs::read_to_string(&junit).expect("JUnit written");
    assert!(
        xml.contains(r#"tests="2""#) && xml.contains(r#"failures="1""#),
        "{xml}"
    );
    let fast_case = xml
        .split("<testcase")
        .find(|c| c.contains(r#"name="fast""#))
        .expect("a case for fast");
    assert!(
        fast_case.contains("<failure") && fast_case.contains("regression"),
        "{xml}"
    );

    // 4. A plain rerun of the same variants is within the same allowance: exit 0.
    let c = top.path().join("c");
    let out = bench(
        top.path(),
        &[
            &spec_s,
            "--profiles",
            "standard,fast",
            "--runs",
            "3",
            "--warmup",
            "0",
            "--seed",
            "7",
            "--out",
            c.to_str().expect("utf-8"),
            "--baseline",
            baseline.to_str().expect("utf-8"),
            "--max-regression",
            "100%",
        ],
    );
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert_eq!(
        read(&c.join("results.json"))["baseline"]["regressed"],
        false
    );
}
