//! SIGTERM during a running stage, and a second signal while the first one's cancel is still
//! waiting, through the real binary against the real servers: a ComfyUI render of a workflow
//! that sleeps, behind a TCP relay the test can freeze (a server that stops answering).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cinepipe::exec::EventKind;
use cinepipe::testkit::SpecBuilder;
use serde_json::{Value, json};

use crate::common::{
    assert_json_files_parse, cinepipe_in, event_is as is, journal_events as events, stderr, stdout,
};
use crate::harness::{self, Server};

/// A TCP relay to `upstream` on a loopback port. While `frozen` is set it passes nothing in
/// either direction and accepts connections without answering: to a client, a server that
/// hangs.
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let f = frozen.clone();
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                let Ok(up) = TcpStream::connect(&upstream) else {
                    continue;
                };
                for (from, to) in [
                    (down.try_clone(), up.try_clone()),
                    (up.try_clone(), down.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let f = f.clone();
                    std::thread::spawn(move || pipe(from, to, &f));
                }
            }
        });
        Relay { port, frozen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Copies `from` to `to` until either end closes; holds every byte while `frozen`.
fn pipe(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// story (the harness's LLM) → patch (a workflow that sleeps `seconds`) → render on `comfy`.
fn spec_in(dir: &Path, llm: &Server, comfy_url: &str, seconds: f64) -> PathBuf {
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "CinepipeTestSleep", "inputs": {"images": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "_meta": {"title": "save"}, "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    });
    std::fs::write(dir.join("sleep.json"), wf.to_string()).expect("workflow");
    SpecBuilder::chain("signals", &["story", "patch", "render"])
        .output_dir(&dir.join("runs"))
        .llm_url(&llm.url)
        .set("services.llm", "model", llm.model.as_str())
        .comfy_urls(&[comfy_url])
        .set("services.comfy", "timeout_s", 10)
        .small_model_story()
        .scenes(1)
        .toml(
            "stages.story",
            "max_tokens = 400\ntimeout_s = 300\nmax_latency_s = 300\nretry = { budget = 2 }",
        )
        // The signal comes during the render: a fixed story, whatever the small model writes.
        .fixed_story()
        .set(
            "stages.patch",
            "workflow",
            dir.join("sleep.json").display().to_string(),
        )
        .set("stages.patch", "check_object_info", false)
        .toml("stages.render", "poll_interval_s = 0.5\nmax_wait_s = 120")
        .write(dir, "signals.toml")
}

fn run_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir.join("runs"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("events.jsonl").exists())
}

fn started(dir: &Path, spec: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["run", spec.to_str().expect("utf-8"), "--no-cache"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cinepipe starts")
}

/// Every prompt id ComfyUI knows of (its history and queue).
fn known_prompts(comfy: &Server) -> Vec<String> {
    let mut ids: Vec<String> = harness::get_json(&format!("{}/history", comfy.url))
        .as_object()
        .map(|h| h.keys().cloned().collect())
        .unwrap_or_default();
    let queue = harness::get_json(&format!("{}/queue", comfy.url));
    for list in ["queue_running", "queue_pending"] {
        for p in queue[list].as_array().into_iter().flatten() {
            if let Some(id) = p[1].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// Waits until the run's render attempt has started and ComfyUI is running its prompt (one
/// not in `before`).
fn until_rendering(dir: &Path, child: &mut Child, comfy: &Server, before: &[String]) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(400);
    loop {
        assert!(Instant::now() < deadline, "the render never started");
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the run ended ({status}) before the render:\n{err}");
        }
        if let Some(run) = run_dir(dir) {
            let rendering = events(&run)
                .iter()
                .any(|e| is(e, "attempt-started", "render[0]"));
            let queue = harness::get_json(&format!("{}/queue", comfy.url));
            // Running on the server, and ours: a prompt no earlier test queued.
            let running = queue["queue_running"].as_array().is_some_and(|q| {
                q.iter()
                    .filter_map(|p| p[1].as_str())
                    .any(|id| !before.iter().any(|b| b == id))
            });
            if rendering && running {
                return run;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signals the child this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// Stops whatever our test left running on the shared ComfyUI.
fn clear(comfy: &Server) {
    let _ = harness::http(
        "POST",
        &format!("{}/queue", comfy.url),
        Some(&json!({"clear": true})),
    );
    let _ = harness::http("POST", &format!("{}/interrupt", comfy.url), None);
}

#[test]
fn sigterm_during_a_render_cancels_it_on_the_server_exits_130_and_resumes() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let _turn = harness::comfy_turn();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_in(dir.path(), llm, &comfy.url, 6.0);
    let before = known_prompts(comfy);
    let mut child = started(dir.path(), &spec);
    let run = until_rendering(dir.path(), &mut child, comfy, &before);
    let signalled = Instant::now();
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("exits");
    let took = signalled.elapsed();
    clear(comfy);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        took < Duration::from_secs(12),
        "within the cancel grace: {took:?}"
    );
    assert_json_files_parse(&run);

    let ev = events(&run);
    assert!(
        ev.iter().any(|e| matches!(
            &e.kind,
            EventKind::RunInterrupted { signal: Some(s), cancelled: 1, .. } if s == "SIGTERM"
        )),
        "{ev:#?}"
    );
    // The render's attempt is recorded cancelled, and its prompt was stopped on the server.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/render/0/attempt-1.json"))
            .expect("the render's attempt record"),
    )
    .expect("JSON");
    assert_eq!(record["outcome"], json!("cancelled"), "{record}");
    let text = record.to_string();
    assert!(text.contains("sent /interrupt"), "{record}");

    // `--resume` finishes the run: the story is not asked for again.
    let out = cinepipe_in(
        dir.path(),
        &["run", "--resume", run.to_str().expect("utf-8")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let ev = events(&run);
    assert_eq!(ev.iter().filter(|e| is(e, "succeeded", "story")).count(), 1);
    assert_eq!(
        ev.iter()
            .filter(|e| is(e, "succeeded", "render[0]"))
            .count(),
        1
    );
}

#[test]
fn a_second_signal_exits_at_once_while_the_first_waits_on_a_server_that_hangs() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let _turn = harness::comfy_turn();
    let relay = Relay::start(&comfy.url);
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec_in(dir.path(), llm, &relay.url(), 60.0);
    let before = known_prompts(comfy);
    let mut child = started(dir.path(), &spec);
    let run = until_rendering(dir.path(), &mut child, comfy, &before);
    // The server stops answering: the first signal's cancel (/interrupt) waits for its bound.
    relay.frozen.store(true, Ordering::SeqCst);
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(700));
    let second = Instant::now();
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().expect("exits");
    let took = second.elapsed();
    relay.frozen.store(false, Ordering::SeqCst);
    clear(comfy);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    // The cancel alone would have waited ~5 s (its bound) before the run could end.
    assert!(
        took < Duration::from_secs(2),
        "the second signal exits at once: {took:?}"
    );
    assert_json_files_parse(&run);
    // The journal's lines are whole (a torn last line is dropped by `events`, and by resume).
    let ev = events(&run);
    assert!(
        ev.iter().any(|e| is(e, "attempt-started", "render[0]")),
        "{ev:#?}"
    );
}
