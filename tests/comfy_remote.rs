//! A remote ComfyUI: a `comfyui` service without `output_dir`, whose markers and frames the
//! engine reads over HTTP (`/view`), never through the disk it shares with the harness's
//! server. The server is the harness's real one; the test only reads its output folder to
//! check that what came over HTTP is byte for byte what ComfyUI wrote.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinepipe::clients::comfyui::messages::output_files;
use cinepipe::exec::{Stage, StageContext};
use cinepipe::spec::CheckedSpec;
use cinepipe::spec::model::FailureClass;
use cinepipe::stages::await_marker::AwaitMarker;
use cinepipe::stages::collect_frames::CollectFrames;
use cinepipe::stages::patch_workflow::PatchWorkflow;
use cinepipe::stages::queue::Queue;
use cinepipe::testkit::{ContextExt, SpecBuilder, context};
use serde_json::{Value, json};

use crate::common::{bounded, root, rt};
use crate::harness::{self, Server};

/// A spec whose ComfyUI service is `url` with no `output_dir`: story → patch (the model-free
/// moving square with the marker node) → render → marker → frames.
fn remote_spec(url: &str, marker_extra: &str, frames_extra: &str) -> Arc<CheckedSpec> {
    let spec = SpecBuilder::chain(
        "remote-test",
        &["story", "patch", "render", "marker", "frames"],
    )
    .set("run", "seed", 7)
    .set("services.llm", "model", "unused")
    .comfy_urls(&[url])
    .set("services.comfy", "timeout_s", 10)
    .set(
        "stages.story",
        "vars",
        json!({"scenes": 1, "tone": "calm", "premise": "a square"}),
    )
    .set(
        "stages.patch",
        "workflow",
        "workflows/model-free/moving-square-done-marker.json",
    )
    .toml(
        "stages.render",
        "poll_interval_s = 0.5\nmax_wait_s = 60\npost_execution_timeout_s = 5",
    )
    .toml("stages.marker", marker_extra)
    .toml("stages.frames", frames_extra)
    .check();
    let comfy = &spec.spec.services["comfy"];
    assert!(
        matches!(comfy, cinepipe::spec::model::Service::Comfyui(s) if s.output_dir.is_none()),
        "the service must have no output_dir"
    );
    Arc::new(spec)
}

struct Run {
    dir: tempfile::TempDir,
    spec: Arc<CheckedSpec>,
    run_id: String,
}

impl Run {
    fn new(spec: Arc<CheckedSpec>) -> Run {
        Run {
            dir: tempfile::tempdir().expect("run dir"),
            spec,
            run_id: harness::unique("remote"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn ctx(&self, stage: &str, attempt: u32, inputs: Vec<(&str, &Value)>) -> StageContext {
        let ctx = StageContext {
            run_id: self.run_id.clone(),
            ..context(&self.spec, self.path(), stage)
                .with_attempt(attempt)
                .with_item(json!({"id": "scene-1", "prompt": "a square", "mood": "calm"}))
        };
        inputs.into_iter().fold(ctx, |ctx, (need, output)| {
            ctx.with_input(need, output.clone())
        })
    }
}

/// The sorted names of the files in `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts that every file of `got` is byte-identical to the file of that name in the
/// server's output folder `server_folder` (when the harness knows where that is).
fn assert_same_bytes(server: &Server, server_folder: &str, got: &Path, names: &[String]) {
    let Some(out) = harness::output_dir(server) else {
        return;
    };
    for n in names {
        let theirs = std::fs::read(out.join(server_folder).join(n))
            .unwrap_or_else(|e| panic!("{server_folder}/{n} in the server's folder: {e}"));
        let ours = std::fs::read(got.join(n)).expect("downloaded frame");
        assert!(!ours.is_empty(), "{n} is empty");
        assert!(ours == theirs, "{n} differs from the server's file");
    }
}

fn frames_wf(prefix: &str, frames: u32) -> Value {
    let text =
        std::fs::read_to_string(root().join("workflows/model-free/frames.json")).expect("workflow");
    let mut w: Value = serde_json::from_str(&text).expect("workflow JSON");
    for node in w.as_object_mut().expect("object").values_mut() {
        if node["class_type"] == "SaveImage" {
            node["inputs"]["filename_prefix"] = prefix.into();
        }
        if node["class_type"] == "EmptyImage" && node["_meta"]["title"] == "frames" {
            node["inputs"]["batch_size"] = frames.into();
        }
    }
    w
}

/// Queues a plain-SaveImage graph (no marker) and waits for its history entry: (prompt id,
/// entry).
fn render_without_marker(server: &Server, prefix: &str, frames: u32) -> (String, Value) {
    let queued = harness::post_json(
        &format!("{}/prompt", server.url),
        &json!({ "prompt": frames_wf(prefix, frames), "client_id": harness::unique("c") }),
    );
    let id = queued["prompt_id"].as_str().expect("prompt_id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let h = harness::get_json(&format!("{}/history/{id}", server.url));
        if let Some(entry) = h.get(&id)
            && entry["outputs"].as_object().is_some_and(|o| !o.is_empty())
        {
            return (id, entry.clone());
        }
        assert!(Instant::now() < deadline, "prompt {id} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn folder_of(prefix: &str) -> String {
    prefix
        .rsplit_once('/')
        .map(|(d, _)| d.to_owned())
        .unwrap_or_default()
}

fn notes(v: &Value) -> Vec<String> {
    v["System"]["FallbackNotes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_remote_scene_goes_end_to_end_over_view() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    // A stability window a local folder would wait 5 s for: the marker's list needs none.
    let run = Run::new(remote_spec(
        &server.url,
        "timeout_s = 60",
        "min_frames = 25\nstability_s = 5",
    ));
    let story = json!({"title": "t", "story_version": "1.0", "scenes": [
        {"id": "scene-1", "prompt": "a square", "mood": "calm"}
    ]});
    let patch = bounded(
        &rt,
        60,
        PatchWorkflow.run(&run.ctx("patch", 1, vec![("story", &story)])),
    )
    .expect("patched");
    let render = bounded(
        &rt,
        90,
        Queue.run(&run.ctx("render", 1, vec![("patch", &patch)])),
    )
    .expect("rendered");
    let prefix = render["prefix"].as_str().expect("prefix").to_owned();
    assert_eq!(
        prefix,
        format!("cinepipe/{}/render/0-scene-1/a1/frame", run.run_id),
        "{render}"
    );
    assert_eq!(render["server"], json!(server.url.trim_end_matches('/')));
    let folder = folder_of(&prefix);

    let marker = bounded(
        &rt,
        90,
        AwaitMarker.run(&run.ctx("marker", 1, vec![("render", &render)])),
    )
    .expect("marker found");
    assert_eq!(marker["DoneMarkerDetected"], true, "{marker}");
    assert_eq!(marker["DetectedBy"], "http", "{marker}");
    assert_eq!(marker["ForcedCopyTriggered"], false, "{marker}");
    assert_eq!(marker["Marker"]["FrameCount"], 25, "{marker}");
    assert_eq!(
        marker["Marker"]["Files"].as_array().map(Vec::len),
        Some(25),
        "{marker}"
    );
    let encoded_folder = folder.replace('/', "%2F");
    assert_eq!(
        marker["DoneMarkerPath"],
        json!(format!(
            "{}/view?filename=frame.done&subfolder={encoded_folder}&type=output",
            server.url.trim_end_matches('/')
        )),
        "{marker}"
    );
    assert!(
        marker["DoneMarkerWaitSeconds"].as_f64() < Some(5.0),
        "{marker}"
    );
    assert!(
        notes(&marker)
            .iter()
            .any(|n| n.contains("read over HTTP") && n.contains("no `output_dir`")),
        "{marker}"
    );
    assert_eq!(marker["prefix"], json!(prefix), "passes upstream on");
    assert_eq!(
        marker["files"].as_array().map(Vec::len),
        render["files"].as_array().map(Vec::len),
        "passes the history's file list on"
    );

    let started = Instant::now();
    let frames = bounded(
        &rt,
        90,
        CollectFrames.run(&run.ctx("frames", 1, vec![("marker", &marker)])),
    )
    .expect("frames");
    assert!(
        started.elapsed() < Duration::from_secs(3),
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
    assert_eq!(f["Paths"][24], "stages/frames/0/frames/frame_00025_.png");
    let frames_dir = run.path().join("stages/frames/0/frames");
    let got = names_in(&frames_dir);
    let want: Vec<String> = (1..=25).map(|i| format!("frame_{i:05}_.png")).collect();
    assert_eq!(got, want);
    assert_same_bytes(server, &folder, &frames_dir, &got);
    assert!(
        !run.path().join("stages/frames/0/.attempt-1").exists(),
        "the staging folder was promoted"
    );
    let record: Value = serde_json::from_slice(
        &std::fs::read(run.path().join("stages/frames/0/attempt-1.json")).expect("record"),
    )
    .expect("JSON");
    assert_eq!(record["source"], "marker", "{record}");
    assert_eq!(record["frame_count"], 25, "{record}");
    assert!(
        notes(&frames)
            .iter()
            .any(|n| n.contains("frames were read over HTTP")),
        "{frames}"
    );
}

#[test]
fn a_remote_marker_never_written_forces_a_copy_over_view_or_fails() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let prefix = format!("{}/a1/frame", harness::unique("remote-nomarker"));
    let folder = folder_of(&prefix);
    let (id, _) = render_without_marker(server, &prefix, 25);
    let render = json!({
        "prefix": prefix, "service": "comfy", "server": server.url, "prompt_id": id, "attempt": 1,
    });

    let run = Run::new(remote_spec(
        &server.url,
        "timeout_s = 0.5\npoll_interval_s = 0.1",
        "",
    ));
    let m = bounded(
        &rt,
        60,
        AwaitMarker.run(&run.ctx("marker", 1, vec![("render", &render)])),
    )
    .expect("forced copy succeeds");
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
            .is_some_and(|s| (0.5..5.0).contains(&s)),
        "{m}"
    );
    assert!(
        m["DoneMarkerPath"]
            .as_str()
            .is_some_and(|p| p.contains("/view?filename=frame.done&")),
        "{m}"
    );
    let debug_rel = m["ForcedCopyDebugPath"].as_str().expect("debug path");
    assert_eq!(debug_rel, "stages/marker/0/forced-copy-1-debug.json");
    let debug: Value =
        serde_json::from_slice(&std::fs::read(run.path().join(debug_rel)).expect("dump"))
            .expect("JSON");
    assert_eq!(
        m["ForcedCopy"]["Count"], 25,
        "{m}\nproblems: {}\nretried: {}",
        debug["problems"], debug["listing"]["retried"]
    );
    assert_eq!(
        m["ForcedCopy"]["Directory"],
        "stages/marker/0/forced-copy-1"
    );
    let n = notes(&m);
    assert!(n.iter().any(|n| n.contains("read over HTTP")), "{m}");
    assert!(n.iter().any(|n| n.contains("forced copy")), "{m}");

    let copy_dir = run.path().join("stages/marker/0/forced-copy-1");
    let got = names_in(&copy_dir);
    assert_eq!(got.len(), 25, "{got:?}");
    assert_eq!(got[0], "frame_00001_.png");
    assert_same_bytes(server, &folder, &copy_dir, &got);

    assert!(debug["history"].get(&id).is_some(), "{debug}");
    assert!(debug["queue"].get("queue_running").is_some(), "{debug}");
    assert_eq!(debug["listing"]["source"], "history", "{debug}");
    assert_eq!(debug["listing"]["folder"], json!(folder), "{debug}");
    assert_eq!(
        debug["listing"]["entries"].as_array().map(Vec::len),
        Some(25),
        "{debug}"
    );
    assert_eq!(debug["copied"], 25, "{debug}");
    assert_eq!(debug["problems"], json!([]), "{debug}");

    // With on_timeout = "fail": a timeout failure naming the /view URL, no copy.
    let run = Run::new(remote_spec(
        &server.url,
        "timeout_s = 0.3\npoll_interval_s = 0.1\non_timeout = \"fail\"",
        "",
    ));
    let e = bounded(
        &rt,
        60,
        AwaitMarker.run(&run.ctx("marker", 1, vec![("render", &render)])),
    )
    .expect_err("fails");
    assert_eq!(e.class, FailureClass::Timeout, "{e}");
    assert!(
        e.message.contains("no done marker at") && e.message.contains("/view?filename=frame.done"),
        "{e}"
    );
    assert!(!run.path().join("stages/marker/0/forced-copy-1").exists());
}

#[test]
fn remote_collect_frames_takes_only_the_named_save_nodes_files() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let prefix = format!("{}/a1/frame", harness::unique("remote-two-savers"));
    // The scene's SaveImage (node 3, 4 frames) and a side SaveImage (node 9, 3 frames) under
    // one prefix: which numbers its files first is up to the server.
    let mut w = frames_wf(&prefix, 4);
    w["8"] = json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 3, "color": 0}});
    w["9"] = json!({"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}});
    let entry = harness::comfy_run(server, &w);
    let files = output_files(entry["outputs"].as_object().expect("outputs"));
    assert_eq!(files.len(), 7, "{entry}");
    let mut own: Vec<String> = files
        .iter()
        .filter(|f| f.node == "3")
        .map(|f| f.filename.clone())
        .collect();
    own.sort();
    let render = json!({
        "prefix": prefix, "service": "comfy", "server": server.url, "prompt_id": "x",
        "attempt": 1, "files": files,
    });

    let run = Run::new(remote_spec(&server.url, "", "min_frames = 4\nnode = \"3\""));
    let r = bounded(
        &rt,
        60,
        CollectFrames.run(&run.ctx("frames", 1, vec![("render", &render)])),
    )
    .expect("frames");
    assert_eq!(r["Frames"]["Count"], 4, "{r}");
    let frames_dir = run.path().join("stages/frames/0/frames");
    let got = names_in(&frames_dir);
    assert_eq!(got, own, "node 3's files, in name order");
    assert_same_bytes(server, &folder_of(&prefix), &frames_dir, &got);
    let record: Value = serde_json::from_slice(
        &std::fs::read(run.path().join("stages/frames/0/attempt-1.json")).expect("record"),
    )
    .expect("JSON");
    assert_eq!(record["source"], "node", "{record}");

    // Without `node`, both nodes' files are taken, and a note says which nodes wrote them.
    let run = Run::new(remote_spec(&server.url, "", "min_frames = 4"));
    let r = bounded(
        &rt,
        60,
        CollectFrames.run(&run.ctx("frames", 1, vec![("render", &render)])),
    )
    .expect("frames");
    assert_eq!(r["Frames"]["Count"], 7, "{r}");
    assert!(
        r["System"]["FallbackNotes"]
            .to_string()
            .contains("the frames of save nodes 3, 9 match the pattern"),
        "{r}"
    );
}

#[test]
fn remote_collect_frames_without_a_marker_takes_the_history_list_and_refuses_odd_names() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let prefix = format!("{}/a1/frame", harness::unique("remote-history"));
    let folder = folder_of(&prefix);
    let (id, entry) = render_without_marker(server, &prefix, 5);
    let files = output_files(entry["outputs"].as_object().expect("outputs"));
    assert_eq!(files.len(), 5, "{entry}");
    // What the queue stage records (its `files`), with no marker stage in between.
    let render = json!({
        "prefix": prefix, "service": "comfy", "server": server.url, "prompt_id": id,
        "attempt": 1, "files": files,
    });

    // A long stability window that a local folder would wait: the history's list needs none.
    let run = Run::new(remote_spec(
        &server.url,
        "",
        "min_frames = 5\non_short = \"accept\"\nstability_s = 5",
    ));
    let started = Instant::now();
    let r = bounded(
        &rt,
        60,
        CollectFrames.run(&run.ctx("frames", 1, vec![("render", &render)])),
    )
    .expect("frames");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r["Frames"]["Count"], 5, "{r}");
    assert_eq!(r["Frames"]["Short"], false, "{r}");
    let frames_dir = run.path().join("stages/frames/0/frames");
    let got = names_in(&frames_dir);
    assert_eq!(
        got,
        (1..=5)
            .map(|i| format!("frame_{i:05}_.png"))
            .collect::<Vec<_>>()
    );
    assert_same_bytes(server, &folder, &frames_dir, &got);
    let record: Value = serde_json::from_slice(
        &std::fs::read(run.path().join("stages/frames/0/attempt-1.json")).expect("record"),
    )
    .expect("JSON");
    assert_eq!(record["source"], "history", "{record}");

    // A server (or an upstream) that names files outside the prefix's folder, paths, other
    // types, or files it does not have: with a pattern that matches them all, each is refused
    // or left out with a note, and nothing is written outside the instance's folders.
    let mut hostile = render.clone();
    let list = hostile["files"].as_array_mut().expect("files");
    for (name, sub, kind) in [
        ("../../escape.png", folder.as_str(), "output"),
        ("frame_00001_.png", "elsewhere", "output"),
        ("frame_00002_.png", "", "output"),
        ("frame_00003_.png", folder.as_str(), "temp"),
        ("frame_00099_.png", folder.as_str(), "output"),
    ] {
        list.push(
            json!({"node": "9", "key": "images", "filename": name, "subfolder": sub, "type": kind}),
        );
    }
    let spec = remote_spec(
        &server.url,
        "",
        "min_frames = 5\non_short = \"accept\"\npattern = \"**/*.png\"",
    );
    let run = Run::new(spec);
    let r = bounded(
        &rt,
        60,
        CollectFrames.run(&run.ctx("frames", 1, vec![("render", &hostile)])),
    )
    .expect("frames");
    assert_eq!(r["Frames"]["Count"], 5, "{r}");
    let n = notes(&r).join("\n");
    assert!(n.contains("not a plain file name"), "{n}");
    assert!(n.contains("not in the prefix's folder"), "{n}");
    assert!(n.contains("of type `temp`"), "{n}");
    assert!(
        n.contains("1 frames could not be copied")
            && n.contains("frame_00099_.png: not on the server (HTTP 404)"),
        "{n}"
    );
    assert_eq!(names_in(&run.path().join("stages/frames/0/frames")), got);
    assert_eq!(
        names_in(&run.path().join("stages/frames/0")),
        ["attempt-1.json", "frames", "frames.json"]
    );
    assert!(!run.path().join("escape.png").exists());

    // A marker's `Files` with a path in it is refused the same way (the upstream is not
    // trusted to have checked it): only the plain name is fetched.
    // The whole output of an `await-marker` stage, as collect-frames reads it.
    let mut marked = render.clone();
    marked["DoneMarkerDetected"] = json!(true);
    marked["DoneMarkerWaitSeconds"] = json!(0.1);
    marked["DoneMarkerPath"] = json!("x.done");
    marked["ForcedCopyTriggered"] = json!(false);
    marked["ForcedCopyDebugPath"] = json!(null);
    marked["System"] = json!({"FallbackNotes": []});
    marked["Marker"] = json!({
        "Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 3,
        "Files": ["frame_00001_.png", "../x.png", "a/b.png"],
    });
    let r = bounded(
        &rt,
        60,
        CollectFrames.run(&run.ctx("frames", 2, vec![("marker", &marked)])),
    )
    .expect("frames");
    assert_eq!(r["FramesCollectedThisAttempt"], 1, "{r}");
    assert_eq!(r["Frames"]["Count"], 5, "the best attempt is kept: {r}");
    let n = notes(&r).join("\n");
    assert!(n.contains("2 matching entries were not collected"), "{n}");
}

#[test]
fn a_remote_wait_is_cancelled_promptly_and_an_unreachable_server_is_polled_until_the_timeout() {
    let Some(server) = harness::comfyui() else {
        return;
    };
    let rt = rt();
    let prefix = format!("{}/a1/frame", harness::unique("remote-cancel"));
    let render = json!({
        "prefix": prefix, "service": "comfy", "server": server.url, "prompt_id": "none", "attempt": 1,
    });
    let run = Run::new(remote_spec(&server.url, "timeout_s = 60", ""));
    let ctx = run.ctx("marker", 1, vec![("render", &render)]);
    let cancel = ctx.cancel.clone();
    let started = Instant::now();
    let e = bounded(&rt, 30, async {
        let stop = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::join!(AwaitMarker.run(&ctx), stop);
        r
    })
    .expect_err("cancelled");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.class, FailureClass::Timeout, "{e}");
    assert!(e.message.contains("cancelled while waiting for"), "{e}");

    // Nothing listens on the server's port: each poll fails, the failures are noted once, the
    // wait goes on to its timeout, and the forced copy finds no history to copy from.
    let dead = format!("http://127.0.0.1:{}", harness::free_port());
    let run = Run::new(remote_spec(
        &dead,
        "timeout_s = 0.6\npoll_interval_s = 0.1",
        "",
    ));
    let render = json!({ "prefix": prefix, "service": "comfy", "server": dead, "prompt_id": "p", "attempt": 1 });
    let m = bounded(
        &rt,
        30,
        AwaitMarker.run(&run.ctx("marker", 1, vec![("render", &render)])),
    )
    .expect("a forced copy of nothing");
    assert!(m["DoneMarkerWaitSeconds"].as_f64() >= Some(0.6), "{m}");
    assert_eq!(m["ForcedCopy"]["Count"], 0, "{m}");
    let failed: Vec<String> = notes(&m)
        .into_iter()
        .filter(|n| n.contains("requests for the marker failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{m}");
    assert!(failed[0].contains("cannot connect"), "{m}");
    let debug: Value = serde_json::from_slice(
        &std::fs::read(run.path().join("stages/marker/0/forced-copy-1-debug.json")).expect("dump"),
    )
    .expect("JSON");
    assert!(
        debug["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("/history/p could not be read")),
        "{debug}"
    );
}
