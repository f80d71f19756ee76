//! Real servers in the loop: the harness's servers answer, and `cinepipe run` probes, reuses,
//! launches and stops services (and fails clearly, in bounded time, leaving no process behind).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cinepipe::services::process_alive;
use serde_json::json;

use crate::common::{root, stderr};
use crate::harness::{self, free_port};

#[test]
fn harness_llm_lists_its_model_and_answers_a_chat() {
    let Some(llm) = harness::llm() else { return };
    let models = harness::get_json(&format!("{}/models", llm.url));
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data is a list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(ids.contains(&llm.model.as_str()), "{models}");

    let answer = harness::post_json(
        &format!("{}/chat/completions", llm.url),
        &json!({
            "model": llm.model,
            "messages": [{"role": "user", "content": "Say hello in one word."}],
            "max_tokens": 8,
            "temperature": 0,
        }),
    );
    let content = answer["choices"][0]["message"]["content"]
        .as_str()
        .expect("a message");
    assert!(!content.trim().is_empty(), "{answer}");
    assert!(
        answer["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{answer}"
    );
}

#[test]
fn harness_comfyui_runs_a_model_free_prompt_to_frames_on_disk() {
    let Some(comfy) = harness::comfyui() else {
        return;
    };
    let stats = harness::get_json(&format!("{}/system_stats", comfy.url));
    assert!(
        stats["devices"].as_array().is_some_and(|d| !d.is_empty()),
        "{stats}"
    );

    let text = std::fs::read_to_string(root().join("workflows/model-free/moving-square.json"))
        .expect("the workflow");
    let mut wf: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let prefix = format!("{}/frame", harness::unique("harness-comfy"));
    let save = wf
        .as_object_mut()
        .expect("an object")
        .values_mut()
        .find(|n| n["class_type"] == "SaveImage")
        .expect("a SaveImage node");
    save["inputs"]["filename_prefix"] = json!(prefix);

    let entry = harness::comfy_run(comfy, &wf);
    let images: Vec<&serde_json::Value> = entry["outputs"]
        .as_object()
        .expect("outputs")
        .values()
        .flat_map(|o| o["images"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(images.len(), 25, "{entry}");
    if let Some(out) = &comfy.output_dir {
        for img in images {
            let p = out
                .join(img["subfolder"].as_str().unwrap_or(""))
                .join(img["filename"].as_str().expect("a filename"));
            let len = std::fs::metadata(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .len();
            assert!(len > 0, "{} is empty", p.display());
        }
    }
}

/// A spec in its own folder whose paths resolve against the project root.
struct SpecDir {
    dir: tempfile::TempDir,
}

impl SpecDir {
    fn new(services: &str, stages: &str) -> SpecDir {
        let dir = tempfile::tempdir().expect("a temp dir");
        let text = format!(
            "[run]\nname = \"services-test\"\nbase_dir = {root:?}\noutput_dir = {out:?}\n\n\
             {services}\n{stages}",
            root = root().display().to_string(),
            out = dir.path().join("runs").display().to_string(),
        );
        std::fs::write(dir.path().join("spec.toml"), text).expect("write the spec");
        SpecDir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spec(&self) -> String {
        self.dir.path().join("spec.toml").display().to_string()
    }

    fn state_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("runs/.services")
    }

    /// Runs `cinepipe run` on the spec, bounded.
    fn run(&self, limit: Duration) -> (Output, Duration) {
        run_bounded(
            Command::new(env!("CARGO_BIN_EXE_cinepipe")).args(["run", &self.spec()]),
            limit,
        )
    }
}

fn run_bounded(cmd: &mut Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cinepipe starts");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "cinepipe run did not end within {limit:?}; stderr:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    (child.wait_with_output().expect("output"), elapsed)
}

const LLM_STAGE: &str = r#"
[stages.story]
kind = "llm"
service = "llm"
prompt = "prompts/story/v1/sci-fi.hbs"
vars = { scenes = 2, tone = "calm", premise = "a lighthouse keeper on a moon" }
# SmolLM2-135M writes short stories: the seeds' 150-token floor is for real models.
min_completion_tokens = 20
max_tokens = 600
temperature = 0.0
# Bounds for a busy CI machine: these tests are about services, not speed.
max_latency_s = 900
timeout_s = 900
"#;

/// The PIDs `cinepipe run` reports for the servers it started.
fn started_pids(err: &str) -> Vec<i32> {
    err.lines()
        .filter(|l| l.contains(": started `"))
        .filter_map(|l| {
            let rest = &l[l.find("(pid ")? + 5..];
            rest[..rest.find(')')?].parse().ok()
        })
        .collect()
}

fn gone_soon(pid: i32) -> bool {
    // The run waits for its children, so they are gone (or zombies reaped by init) at once;
    // allow a moment for init to reap them.
    let deadline = Instant::now() + Duration::from_secs(2);
    while process_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn run_launches_a_service_that_is_down_runs_the_stage_and_stops_it() {
    // The launch command is the project's start script; the harness proves it works here (and
    // fails under CI when it does not).
    if harness::llm().is_none() {
        return;
    }
    let port = free_port();
    let spec = SpecDir::new(
        &format!(
            r#"
[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
model = "smollm2-135m-instruct"
launch = {{ command = "scripts/start-llm-server", args = ["--port", "{port}"], ready_timeout_s = 120 }}
"#
        ),
        LLM_STAGE,
    );
    let (out, _) = spec.run(Duration::from_secs(300));
    let err = stderr(&out);
    let pids = started_pids(&err);
    assert_eq!(pids.len(), 1, "the service was started:\n{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        crate::common::stdout(&out).contains("succeeded: 1 succeeded"),
        "{}",
        crate::common::stdout(&out)
    );
    for pid in pids {
        assert!(gone_soon(pid), "server pid {pid} outlived the run:\n{err}");
    }
    assert_eq!(err.matches("stopped pid").count(), 1, "{err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
    let left: Vec<_> = std::fs::read_dir(spec.state_dir())
        .expect("state dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pid"))
        .collect();
    assert!(left.is_empty(), "PID files left: {left:?}");
}

#[test]
fn comfyui_and_the_llm_server_launch_side_by_side_and_stop() {
    // Through the library: no stage kind that talks to ComfyUI is built yet, and a run starts
    // only the services of stages it can run.
    if harness::llm().is_none() || harness::comfyui().is_none() {
        return;
    }
    let (llm_port, comfy_port) = (free_port(), free_port());
    let out_dir = harness::scratch().join(harness::unique("launched-out"));
    let spec = SpecDir::new(
        &format!(
            r#"
[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:{llm_port}/v1"
model = "smollm2-135m-instruct"
launch = {{ command = "scripts/start-llm-server", args = ["--port", "{llm_port}"], ready_timeout_s = 120 }}

[services.comfy]
kind = "comfyui"
urls = ["http://127.0.0.1:{comfy_port}"]
launch = {{ command = "scripts/start-comfyui", args = ["--port", "{comfy_port}", "--output-dir", "{out}"], ready_timeout_s = 120 }}
"#,
            out = out_dir.display()
        ),
        &format!(
            "{LLM_STAGE}\n[stages.render]\nkind = \"queue\"\nneeds = [\"story\"]\nservice = \"comfy\"\n"
        ),
    );
    let checked = cinepipe::spec::load(Path::new(&spec.spec()), None).expect("a valid spec");
    let names = cinepipe::services::used_services(&checked.spec);
    assert_eq!(names, ["llm", "comfy"]);
    let opts = cinepipe::services::ServiceOptions::new(spec.state_dir());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cancel = tokio_util::sync::CancellationToken::new();
    let up = rt
        .block_on(cinepipe::services::Services::ensure(
            &checked, &names, &opts, &cancel,
        ))
        .expect("both come up");
    let pids: Vec<i32> = up.launched().iter().map(|(_, p)| *p).collect();
    assert_eq!(pids.len(), 2, "{:?}", up.notes());
    harness::get_json(&format!("http://127.0.0.1:{llm_port}/v1/models"));
    harness::get_json(&format!("http://127.0.0.1:{comfy_port}/system_stats"));
    let lines = rt.block_on(up.shutdown());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for pid in pids {
        assert!(gone_soon(pid), "pid {pid} outlived the shutdown: {lines:?}");
    }
}

#[test]
fn run_reuses_a_server_that_already_answers_and_leaves_it_running() {
    let Some(llm) = harness::llm() else { return };
    // A launch that would fail loudly proves it is not used.
    let spec = SpecDir::new(
        &format!(
            r#"
[services.llm]
kind = "openai"
base_url = "{url}"
model = "{model}"
launch = {{ command = "false" }}
"#,
            url = llm.url,
            model = llm.model
        ),
        LLM_STAGE,
    );
    let (out, _) = spec.run(Duration::from_secs(300));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "reusing the server already answering at {}",
            llm.url
        )),
        "{err}"
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the story stage ran on it:\n{err}"
    );
    assert!(!err.contains("started"), "{err}");
    assert!(!err.contains("stopped"), "{err}");
    harness::get_json(&format!("{}/models", llm.url));
    if let Some(pid) = llm.pid {
        assert!(process_alive(pid), "the shared server was stopped");
    }
}

/// A launch command made of `sh -c SCRIPT`, for the ways a launch goes wrong.
fn shell_service(port: u16, script: &str, ready_timeout_s: f64) -> String {
    format!(
        r#"
[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
model = "m"
launch = {{ command = "sh", args = ["-c", {script:?}], ready_timeout_s = {ready_timeout_s}, stop_timeout_s = 2 }}
"#
    )
}

#[test]
fn a_launch_that_exits_at_once_is_a_clear_error_with_its_log() {
    let port = free_port();
    let spec = SpecDir::new(
        &shell_service(port, "echo 'model file is missing' >&2; exit 3", 30.0),
        LLM_STAGE,
    );
    let (out, took) = spec.run(Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("`sh` exited (exit status: 3)"), "{err}");
    assert!(err.contains("before it was ready"), "{err}");
    assert!(
        err.contains("    model file is missing"),
        "log tail quoted:\n{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!err.contains("not built yet"), "{err}");
}

#[test]
fn a_launch_that_never_gets_ready_is_stopped_with_everything_it_spawned() {
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tmp");
    let pids = tmp.path().join("pids");
    // The server forks a helper, then waits forever without listening.
    let script = format!(
        "sleep 300 & echo $! > {p}; echo $$ >> {p}; echo 'loading weights...'; exec sleep 300",
        p = pids.display()
    );
    let spec = SpecDir::new(&shell_service(port, &script, 1.5), LLM_STAGE);
    let (out, took) = spec.run(Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("not ready after 1.5 s"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("    loading weights..."), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let text = std::fs::read_to_string(&pids).expect("the script wrote its pids");
    let pids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 2, "{text}");
    for pid in pids {
        assert!(gone_soon(pid), "pid {pid} outlived the run:\n{err}");
    }
}

#[test]
fn a_service_that_is_down_without_launch_is_a_clear_error() {
    let port = free_port();
    let spec = SpecDir::new(
        &format!(
            "[services.llm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\n"
        ),
        LLM_STAGE,
    );
    let (out, took) = spec.run(Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains(&format!(
            "service `llm` does not answer at http://127.0.0.1:{port}/v1 (connection refused"
        )),
        "{err}"
    );
    assert!(err.contains("it has no `launch` to start it"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_port_held_by_something_else_is_not_launched_over() {
    // A listener that answers 404 to everything, like a different web server on the port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{Read, Write};
            let mut s = stream;
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let marker = tmp.path().join("launched");
    let spec = SpecDir::new(
        &shell_service(
            port,
            &format!("touch {}; exec sleep 300", marker.display()),
            5.0,
        ),
        LLM_STAGE,
    );
    let (out, _) = spec.run(Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(
        err.contains(&format!(
            "something else holds http://127.0.0.1:{port}/v1: answered HTTP 404"
        )),
        "{err}"
    );
    assert!(!marker.exists(), "the launch command ran:\n{err}");
}

#[test]
fn a_stale_pid_file_is_removed_and_an_orphan_of_a_killed_run_is_adopted() {
    let Some(_) = harness::llm() else { return };
    // Stale: the PID names no process.
    let port = free_port();
    let spec = SpecDir::new(
        &format!(
            r#"
[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:{port}/v1"
model = "smollm2-135m-instruct"
launch = {{ command = "scripts/start-llm-server", args = ["--port", "{port}"], ready_timeout_s = 60 }}
"#
        ),
        LLM_STAGE,
    );
    std::fs::create_dir_all(spec.state_dir()).expect("state dir");
    let pid_file = spec.state_dir().join("llm.pid");
    std::fs::write(
        &pid_file,
        json!({"service": "llm", "pid": i32::MAX - 1, "start_ticks": 1, "owner_pid": i32::MAX - 1,
               "owner_start_ticks": 1, "url": "", "command": ""})
        .to_string(),
    )
    .expect("write");
    let (out, _) = spec.run(Duration::from_secs(120));
    let err = stderr(&out);
    assert!(err.contains("removed a stale PID file"), "{err}");
    assert_eq!(started_pids(&err).len(), 1, "{err}");

    // Orphan: a server some earlier run launched, whose cinepipe died (kill -9) before
    // stopping it. Its owner is gone, so this run takes it over and stops it.
    let orphan = Command::new(root().join("scripts/start-llm-server"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start a server");
    let opid = orphan.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while harness::http("GET", &format!("http://127.0.0.1:{port}/v1/models"), None)
        .map_or(true, |(c, _)| c != 200)
    {
        assert!(Instant::now() < deadline, "the orphan never got ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ticks = |pid: i32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let rest = &stat[stat.rfind(')').expect(")") + 1..];
        rest.split_whitespace()
            .nth(19)
            .expect("field 22")
            .parse()
            .expect("ticks")
    };
    std::fs::write(
        &pid_file,
        json!({"service": "llm", "pid": opid, "start_ticks": ticks(opid),
               "owner_pid": i32::MAX - 1, "owner_start_ticks": 1, "url": "", "command": ""})
        .to_string(),
    )
    .expect("write");
    let (out, _) = spec.run(Duration::from_secs(120));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("adopted the server (pid {opid})")),
        "{err}"
    );
    let mut orphan = orphan;
    let status = orphan.wait().expect("wait");
    assert!(!status.success() || !process_alive(opid), "{err}");
    assert!(!pid_file.exists(), "{err}");
}

#[test]
fn ctrl_c_while_a_service_starts_stops_it_and_exits_130() {
    let port = free_port();
    let tmp = tempfile::tempdir().expect("tmp");
    let pids = tmp.path().join("pids");
    let script = format!("echo $$ > {}; exec sleep 300", pids.display());
    let spec = SpecDir::new(&shell_service(port, &script, 60.0), LLM_STAGE);
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["run", &spec.spec()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cinepipe starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pids.exists() {
        assert!(Instant::now() < deadline, "the launch never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals the child we just started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().expect("output");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("cancelled while starting service `llm`"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    let pid: i32 = std::fs::read_to_string(&pids)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(gone_soon(pid), "{err}");
    let _ = spec.path();
}
