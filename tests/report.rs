//! `cinepipe report` through the real binary, on a run made for real against the harness's
//! servers: a one-scene story whose prompt carries a `<script>` tag (the LLM server's grammar
//! leaves the model only that story), rendered, awaited, collected and scored on the real
//! ComfyUI. The report shows the prompt as text, every journal attempt on the timeline, the
//! frames as thumbnails that decode, and links that reach the files; a sweep folder holding
//! the run gets its verdict table, failing specs first, linking to the run's section.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use cinepipe::testkit::SpecBuilder;
use serde_json::json;

use crate::common::{cinepipe_in, root, stderr, stdout};
use crate::harness::{self, Server};

pub const SCRIPT_PROMPT: &str = "<script>alert(1)</script> a lighthouse on a grey moon";

/// A one-scene run's spec on the harness's servers, the scene's prompt fixed to
/// [`SCRIPT_PROMPT`].
pub fn one_scene_spec(dir: &Path, llm: &Server, comfy: &Server) -> PathBuf {
    let schema =
        std::fs::read_to_string(root().join("tests/fixtures/schemas/fixed-story.schema.json"))
            .expect("schema")
            .replace("a lighthouse on a grey moon, slow pan", SCRIPT_PROMPT);
    let schema_path = dir.join("script-story.schema.json");
    std::fs::write(&schema_path, schema).expect("schema");
    let out = harness::output_dir(comfy).expect("checked by the caller");
    SpecBuilder::chain(
        "report",
        &[
            "story", "patch", "render", "marker", "frames", "quality", "validate",
        ],
    )
    .llm_url(&llm.url)
    .set("services.llm", "model", llm.model.as_str())
    .comfy_urls(&[&comfy.url])
    .set("services.comfy", "output_dir", out.display().to_string())
    .small_model_story()
    .scenes(1)
    .toml("stages.story", "max_tokens = 400\nretry = { budget = 2 }")
    .set(
        "stages.story",
        "output_schema",
        schema_path.display().to_string(),
    )
    .set("stages.story", "min_completion_tokens", 1)
    .set(
        "stages.patch",
        "workflow",
        root()
            .join("workflows/model-free/moving-square-done-marker.json")
            .display()
            .to_string(),
    )
    .toml("stages.render", "poll_interval_s = 0.5\nmax_wait_s = 120")
    .toml("stages.frames", "min_frames = 25")
    .output_dir(&dir.join("runs"))
    .write(dir, "report.toml")
}

/// Runs the spec and returns its run folder.
pub fn real_run(dir: &Path, spec: &Path) -> PathBuf {
    let out = cinepipe_in(dir, &["run", spec.to_str().expect("utf-8"), "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let runs = cinepipe::rundir::history::run_dirs(&dir.join("runs")).expect("runs/");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// Percent-decoding of a relative URL.
fn decode(href: &str) -> String {
    let b = href.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// Every value of `attr="…"` in the page, HTML entities of `=` and `&` read back.
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let key = format!(" {attr}=\"");
    html.split(key.as_str())
        .skip(1)
        .map(|s| {
            s[..s.find('"').expect("attribute ends")]
                .replace("&#x3D;", "=")
                .replace("&amp;", "&")
        })
        .collect()
}

fn assert_links_reach_files(html: &str, report: &Path) {
    let base = report.parent().expect("folder");
    let hrefs = attrs(html, "href");
    assert!(!hrefs.is_empty());
    for h in hrefs.iter().filter(|h| !h.starts_with('#')) {
        assert!(
            !h.contains("://") && !h.starts_with('/'),
            "not relative: {h}"
        );
        let p = base.join(decode(h));
        assert!(p.exists(), "{h} → {} is missing", p.display());
    }
}

/// One real run for every test of this file (each copies it before changing it); None where
/// the servers cannot be had (outside CI).
pub fn shared_run() -> Option<&'static Path> {
    static RUN: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
            return None;
        };
        harness::output_dir(comfy)?;
        let _turn = harness::comfy_turn();
        let top = harness::scratch().join(harness::unique("report"));
        std::fs::create_dir_all(&top).expect("mkdir");
        let spec = one_scene_spec(&top, llm, comfy);
        Some(real_run(&top, &spec))
    })
    .as_deref()
}

#[test]
fn a_report_of_a_real_run_shows_the_prompt_as_text_every_attempt_and_decodable_frames() {
    let Some(shared) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    // A copy of its own: the report written into the run folder below changes it.
    let run = top
        .path()
        .join("runs")
        .join(shared.file_name().expect("id"));
    copy_dir(shared, &run);
    let meta: cinepipe::artifact_metadata::ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(run.join("artifact-metadata.json")).expect("metadata"),
    )
    .expect("typed");
    assert_eq!(
        meta.scenes[0].prompt, SCRIPT_PROMPT,
        "the grammar fixed the prompt"
    );
    let frames = meta.scenes[0].frames.paths.len();
    assert!(frames >= 25, "{frames}");

    // Into a folder of its own: every link must climb back to the run.
    let report = top.path().join("out/report.html");
    let out = cinepipe_in(
        top.path(),
        &[
            "report",
            run.to_str().expect("utf-8"),
            "-o",
            report.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("wrote "), "{}", stdout(&out));
    let html = std::fs::read_to_string(&report).expect("report");

    // The prompt is text, and the page has no script at all.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; a lighthouse on a grey moon"));
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "a script element is in the page"
    );

    // The contact sheet: six of the scene's frames (first and last among them), each a PNG.
    let srcs: Vec<String> = attrs(&html, "src");
    assert_eq!(srcs.len(), 6, "{srcs:?}");
    for src in &srcs {
        let b64 = src
            .strip_prefix("data:image/png;base64,")
            .expect("embedded");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let img = image::load_from_memory(&bytes).expect("a thumbnail decodes");
        assert!(img.width() <= 80 && img.height() <= 80);
    }
    assert!(html.contains(&format!("frame 1 of {frames}")));
    assert!(html.contains(&format!("frame {frames} of {frames}")));

    // The timeline has one row per journal instance and one bar per journal attempt.
    let events = crate::common::journal_events(&run);
    let mut instances: Vec<String> = Vec::new();
    let mut attempts = 0;
    for e in &events {
        if let cinepipe::exec::EventKind::AttemptStarted { instance, .. } = &e.kind {
            attempts += 1;
            if !instances.contains(&instance.to_string()) {
                instances.push(instance.to_string());
            }
        }
    }
    let mut rows = attrs(&html, "data-instance");
    rows.sort();
    instances.sort();
    assert_eq!(rows, instances);
    let bars = [
        "succeeded",
        "failed",
        "timed-out",
        "cancelled",
        "crashed",
        "running",
    ]
    .iter()
    .map(|c| html.matches(&format!("<span class=\"sp {c}\"")).count())
    .sum::<usize>();
    assert_eq!(bars, attempts);
    // A histogram per stage, the story, the telemetry line, the quality checks.
    for stage in [
        "story", "patch", "render", "marker", "frames", "quality", "validate",
    ] {
        assert!(
            html.contains(&format!("aria-label=\"durations of {stage}\"")),
            "{stage}"
        );
    }
    assert!(html.contains("The keeper"));
    assert!(
        html.replace("&#x3D;", "=")
            .contains("[Scene scene-1] Telemetry: DurationSeconds=")
    );
    assert!(html.contains("<td>frame-count</td>"));
    assert_links_reach_files(&html, &report);

    // Without -o: report.html in the run folder; the run still keeps its contract.
    let out = cinepipe_in(top.path(), &["report", run.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let inside = run.join("report.html");
    assert_links_reach_files(&std::fs::read_to_string(&inside).expect("report"), &inside);
    assert_eq!(
        cinepipe_in(top.path(), &["verify", run.to_str().expect("utf-8")])
            .status
            .code(),
        Some(0)
    );

    // A sweep folder holding the run twice, under a stable spec and a broken one.
    let sweep = top.path().join("sweep");
    let id = run.file_name().expect("id").to_string_lossy().into_owned();
    for job in ["steady", "broken"] {
        let to = sweep.join("runs").join(job).join(&id);
        copy_dir(&run, &to);
    }
    let verdict = |spec: &str, status: &str| {
        json!({
            "spec": spec, "profile": "standard", "status": status, "runs": 1,
            "passed": u32::from(status == "stable"), "failed": u32::from(status != "stable"),
            "retried": 0, "pass_rate": if status == "stable" { 1.0 } else { 0.0 },
            "pass_rate_low": 0.0, "pass_rate_high": 1.0, "pass_all": status == "stable",
            "failures": if status == "stable" { json!({}) } else { json!({"render: execution-error": 1}) },
            "kpis": {"telemetry_complete": 1.0, "done_marker_rate": 1.0, "zero_frame_scene_rate": 0.0,
                "forced_copies": 0, "scenes": 1,
                "scene_seconds": {"n": 1, "p50": 3.0, "p95": 3.0, "p99": 3.0},
                "stage_seconds": {}, "run_seconds": {"n": 1, "p50": 9.0, "p95": 9.0, "p99": 9.0}},
            "gate_failures": if status == "stable" { json!([]) } else { json!(["pass rate 0% < 100%"]) },
            "warnings": [], "run_dirs": [format!("runs/{spec}/{id}")]
        })
    };
    // Written stable first: the report must put the broken one first.
    let report_json = json!({
        "format": 1, "suite": "s", "partition": null, "planned": 2, "finished": 2, "result": "fail",
        "verdicts": [verdict("steady", "stable"), verdict("broken", "broken")]
    });
    let typed: cinepipe::sweep::verdict::SweepReport =
        serde_json::from_value(report_json).expect("a sweep.json of the real type");
    std::fs::write(
        sweep.join("sweep.json"),
        serde_json::to_vec(&typed).expect("json"),
    )
    .expect("write");
    let out = cinepipe_in(top.path(), &["report", sweep.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = sweep.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report");
    let broken = html.find("<td>broken</td>").expect("broken row");
    let steady = html.find("<td>steady</td>").expect("steady row");
    assert!(broken < steady, "failing specs first");
    for job in ["broken", "steady"] {
        let anchor = format!("run-runs-{job}-{id}");
        assert!(html.contains(&format!("href=\"#{anchor}\"")), "{anchor}");
        assert!(html.contains(&format!("id=\"{anchor}\"")), "{anchor}");
    }
    assert_eq!(
        attrs(&html, "src").len(),
        2 * 3,
        "three frames per scene in a sweep"
    );
    assert_links_reach_files(&html, &page);
    assert!(!html.to_ascii_lowercase().contains("<script"));
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("lists") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn a_trace_of_a_real_run_has_a_well_formed_span_for_each_journal_attempt() {
    let Some(run) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    let out_file = top.path().join("traces/trace.json");
    let out = cinepipe_in(
        top.path(),
        &[
            "trace",
            run.to_str().expect("utf-8"),
            "-o",
            out_file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).expect("trace")).expect("JSON");
    assert_eq!(v["displayTimeUnit"], "ms");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let mut spans = Vec::new();
    for e in events {
        let ph = e["ph"].as_str().expect("every event has ph");
        assert!(["X", "i", "M"].contains(&ph), "{e}");
        for key in ["ts", "pid", "tid"] {
            assert!(e[key].is_u64(), "{key} of {e}");
        }
        assert!(e["name"].is_string(), "{e}");
        match ph {
            "X" => {
                assert!(e["dur"].is_u64(), "dur of {e}");
                spans.push((
                    e["args"]["instance"].as_str().expect("instance").to_owned(),
                    e["args"]["attempt"].as_u64().expect("attempt"),
                ));
            }
            "i" => assert_eq!(e["s"], "t", "{e}"),
            _ => {}
        }
    }
    let mut attempts: Vec<(String, u64)> = crate::common::journal_events(run)
        .iter()
        .filter_map(|e| match &e.kind {
            cinepipe::exec::EventKind::AttemptStarted { instance, attempt } => {
                Some((instance.to_string(), u64::from(*attempt)))
            }
            _ => None,
        })
        .collect();
    spans.sort();
    attempts.sort();
    assert!(!attempts.is_empty());
    assert_eq!(spans, attempts, "one span per journal attempt, no other");
    // The scene's stages share its track; the story is on the run's.
    let tid = |name: &str| {
        events
            .iter()
            .find(|e| e["ph"] == "X" && e["name"] == name)
            .map(|e| e["tid"].clone())
    };
    assert_eq!(tid("story"), Some(json!(0)));
    assert_eq!(tid("render[0]"), Some(json!(1)));
    assert_eq!(tid("frames[0]"), Some(json!(1)));
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "scene scene-1")
    );

    // Without -o: trace.json in the run folder is not written here (a shared run); a folder
    // that is not a run is refused.
    let out = cinepipe_in(top.path(), &["trace", top.path().to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!top.path().join("trace.json").exists());
}

#[test]
fn runs_and_show_print_json_that_keeps_their_generated_schemas() {
    let Some(shared) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    let runs = top.path().join("runs");
    let run = runs.join(shared.file_name().expect("id"));
    copy_dir(shared, &run);
    let broken = runs.join("20000101T000000Z-broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("run.json"), "{").expect("write");
    let schema = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(root().join("schemas").join(name)).expect("schema"),
        )
        .expect("JSON")
    };
    let valid = |doc: &serde_json::Value, name: &str| {
        let v = jsonschema::validator_for(&schema(name)).expect("compiles");
        let errors: Vec<String> = v
            .iter_errors(doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{doc}");
    };

    let out = cinepipe_in(top.path(), &["runs", "runs", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    valid(&doc, "runs.schema.json");
    let rows = doc["runs"].as_array().expect("runs");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["damaged"], true);
    let id = run.file_name().expect("id").to_string_lossy().into_owned();
    assert_eq!(rows[1]["run_id"], id.as_str());
    assert_eq!(rows[1]["outcome"], "succeeded");
    assert_eq!(rows[1]["scenes"], 1);
    assert_eq!(rows[1]["name"], "report");
    assert_eq!(rows[1]["instances"]["failed"], 0);

    let out = cinepipe_in(
        top.path(),
        &["show", run.to_str().expect("utf-8"), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    valid(&doc, "show.schema.json");
    let mut attempts: Vec<(String, u64)> = doc["stage_instances"]
        .as_array()
        .expect("instances")
        .iter()
        .flat_map(|i| {
            i["attempts"]
                .as_array()
                .expect("attempts")
                .iter()
                .map(move |a| {
                    (
                        i["instance"].as_str().expect("id").to_owned(),
                        a["attempt"].as_u64().expect("n"),
                    )
                })
        })
        .collect();
    let mut journal: Vec<(String, u64)> = crate::common::journal_events(&run)
        .iter()
        .filter_map(|e| match &e.kind {
            cinepipe::exec::EventKind::AttemptStarted { instance, attempt } => {
                Some((instance.to_string(), u64::from(*attempt)))
            }
            _ => None,
        })
        .collect();
    attempts.sort();
    journal.sort();
    assert_eq!(attempts, journal);
    assert_eq!(doc["files"]["metadata"]["exists"], true);
    let out = cinepipe_in(
        top.path(),
        &["show", broken.to_str().expect("utf-8"), "--format", "json"],
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    valid(&doc, "show.schema.json");
    assert!(!doc["problems"].as_array().expect("problems").is_empty());
}
