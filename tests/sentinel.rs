//! `cinepipe sentinel` on a real ComfyUI that has no marker node (the harness's bare one): a
//! run whose workflow only has SaveImage gets its done-marker from the sentinel, and
//! `await-marker` accepts it; a sentinel stopped with SIGTERM and started again marks the
//! prompts that finished while it was down, and rewrites no marker it already wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cinepipe::testkit::SpecBuilder;
use serde_json::{Value, json};

use crate::common::{cinepipe_in, root, stderr, stdout};
use crate::harness::{self, Server};

fn start(server: &Server, out: &Path, state: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["sentinel", "--comfyui", &server.url, "--output-dir"])
        .arg(out)
        .arg("--state")
        .arg(state)
        .arg("--metrics-file")
        .arg(state.with_file_name("sentinel.prom"))
        .args(["--poll-interval", "0.2", "--stable-for", "0.2"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("cinepipe sentinel starts")
}

fn stop(mut child: Child) {
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().expect("reaped");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

fn wait_for(path: &Path, log: &Path) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(b) = std::fs::read(path) {
            return serde_json::from_slice(&b).expect("a whole marker (written atomically)");
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared; sentinel log: {}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics file's text, after `promtool check metrics` (Debian's prometheus package, from
/// scripts/install-validators) found nothing to say about it.
fn promtool_checked(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("the metrics file");
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            harness::skip(&format!(
                "promtool cannot run (scripts/install-validators): {e}"
            ));
            return text;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn save_only(prefix: &str, frames: u32) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": frames, "color": 255}},
        "2": {"class_type": "SaveImage", "_meta": {"title": "save"}, "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    })
}

#[test]
fn the_sentinel_marks_prompts_without_the_node_and_a_restart_misses_none() {
    let (Some(llm), Some(bare)) = (harness::llm(), harness::comfyui_without_nodes()) else {
        return;
    };
    let Some(out) = harness::output_dir(bare).map(Path::to_path_buf) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state.json");
    let log = tmp.path().join("sentinel.log");
    let sentinel = start(bare, &out, &state, &log);

    // A whole run whose workflow has no marker node: await-marker waits for the sentinel's.
    let spec = SpecBuilder::chain(
        "sentinel",
        &["story", "patch", "render", "marker", "frames"],
    )
    .llm_url(&llm.url)
    .set("services.llm", "model", llm.model.as_str())
    .comfy_urls(&[&bare.url])
    .set("services.comfy", "output_dir", out.display().to_string())
    .small_model_story()
    .scenes(1)
    .fixed_story()
    .set(
        "stages.patch",
        "workflow",
        root()
            .join("workflows/model-free/frames.json")
            .display()
            .to_string(),
    )
    .toml("stages.render", "poll_interval_s = 0.5\nmax_wait_s = 120")
    .toml("stages.marker", "on_timeout = \"fail\"\ntimeout_s = 60")
    .toml("stages.frames", "min_frames = 25")
    .output_dir(&tmp.path().join("runs"))
    .write(tmp.path(), "sentinel.toml");
    let prom = tmp.path().join("cinepipe.prom");
    let run = cinepipe_in(
        tmp.path(),
        &[
            "run",
            spec.to_str().expect("utf-8"),
            "--metrics-file",
            prom.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}{}\nsentinel log: {}",
        stdout(&run),
        stderr(&run),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let runs: Vec<PathBuf> = std::fs::read_dir(tmp.path().join("runs"))
        .expect("runs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("artifact-metadata.json").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let meta: Value = serde_json::from_slice(
        &std::fs::read(runs[0].join("artifact-metadata.json")).expect("metadata"),
    )
    .expect("json");
    assert_eq!(
        meta["QualityMetrics"]["DoneMarkerDetectionRate"], 1.0,
        "the marker was seen, not forced: {meta}"
    );
    let verify = cinepipe_in(tmp.path(), &["verify", runs[0].to_str().expect("utf-8")]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    // The run's metrics: Prometheus' own checker accepts them, and they count this run.
    let metrics = promtool_checked(&prom);
    for line in [
        "cinepipe_runs_total{spec=\"sentinel\",profile=\"standard\",outcome=\"success\"} 1",
        "cinepipe_done_markers_total{spec=\"sentinel\",seen=\"true\"} 1",
        "cinepipe_scenes_total{spec=\"sentinel\",frames=\"some\"} 1",
        "cinepipe_stage_duration_seconds_count{spec=\"sentinel\",stage=\"render\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }

    // One more prompt while it runs, then a clean stop.
    let tag = harness::unique("sentinel");
    let first = out.join(&tag).join("before");
    harness::comfy_run(bare, &save_only(&format!("{tag}/before/frame"), 3));
    let marker = wait_for(&first.join("frame.done"), &log);
    assert_eq!(marker["FrameCount"], 3, "{marker}");
    assert_eq!(
        marker["Files"],
        json!(["frame_00001_.png", "frame_00002_.png", "frame_00003_.png"])
    );
    assert_eq!(marker["ContractVersion"], 1);
    let first_bytes = std::fs::read(first.join("frame.done")).expect("marker");
    stop(sentinel);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("json");
    assert!(
        saved["handled"].as_array().is_some_and(|h| !h.is_empty()),
        "{saved}"
    );

    // Two prompts finish while it is down; the restarted sentinel marks both, and leaves the
    // marker it wrote before as it was.
    for name in ["down1", "down2"] {
        harness::comfy_run(bare, &save_only(&format!("{tag}/{name}/frame"), 2));
    }
    assert!(!out.join(&tag).join("down1/frame.done").exists());
    let log2 = tmp.path().join("sentinel2.log");
    let again = start(bare, &out, &state, &log2);
    for name in ["down1", "down2"] {
        let m = wait_for(&out.join(&tag).join(name).join("frame.done"), &log2);
        assert_eq!(m["FrameCount"], 2, "{m}");
    }
    stop(again);
    assert_eq!(
        std::fs::read(first.join("frame.done")).expect("marker"),
        first_bytes,
        "a marker is written once"
    );
    // The sentinel's counters grew across the restart: 1 run + 1 + 2 markers at least.
    let counts = promtool_checked(&tmp.path().join("sentinel.prom"));
    let markers: f64 = counts
        .lines()
        .find_map(|l| l.strip_prefix("cinepipe_sentinel_markers_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no marker count in:\n{counts}"));
    assert!(markers >= 4.0, "{counts}");
    let said = std::fs::read_to_string(&log2).expect("log");
    assert!(
        !said.contains("/before/"),
        "the restart marked an old prompt again: {said}"
    );
}
