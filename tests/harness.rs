//! Real servers for the integration tests: one ComfyUI and one LLM server (llama.cpp's
//! `llama-server` with SmolLM2-135M) per test binary, started on free loopback ports the first
//! time a test asks, shared by every test after that, and stopped when the binary exits.
//!
//! - `COMFYUI_URL` (with `COMFYUI_OUTPUT_DIR` when the server is on this machine) and
//!   `LLM_BASE_URL` (with the `/v1`; `LLM_MODEL` names its model) point the tests at servers
//!   someone already runs instead.
//! - The servers come from `scripts/install-comfyui` and `scripts/install-llm-server` (which
//!   `scripts/test` runs first). When one cannot be started, a test that needs it fails under
//!   `CI=true`; elsewhere it says why on stderr and returns early.
//! - Tests share the servers, not their outputs: each test takes its own `filename_prefix`
//!   folder from [`unique`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use serde_json::Value;

use crate::common::root;

/// A server the tests talk to.
#[derive(Debug)]
pub struct Server {
    /// ComfyUI: `http://127.0.0.1:PORT`; LLM: `http://127.0.0.1:PORT/v1`.
    pub url: String,
    /// The model name the LLM server lists (LLM only).
    pub model: String,
    /// Where ComfyUI's SaveImage writes, when known.
    pub output_dir: Option<PathBuf>,
    /// The harness's own process, when it started the server.
    pub pid: Option<i32>,
}

pub const LLM_MODEL: &str = "smollm2-135m-instruct";

/// Whether this is CI, where a missing server fails the run.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The shared LLM server, or None (outside CI only) when it cannot be had.
pub fn llm() -> Option<&'static Server> {
    static LLM: OnceLock<Result<Server, String>> = OnceLock::new();
    require("the LLM server", LLM.get_or_init(start_llm))
}

/// The shared ComfyUI, or None (outside CI only) when it cannot be had.
pub fn comfyui() -> Option<&'static Server> {
    static COMFY: OnceLock<Result<Server, String>> = OnceLock::new();
    require("ComfyUI", COMFY.get_or_init(start_comfyui))
}

/// A ComfyUI with no custom node at all (not the done-marker node): what a server looks like
/// before `cinepipe install-node`. Started on first use, shared, stopped at exit.
pub fn comfyui_without_nodes() -> Option<&'static Server> {
    static BARE: OnceLock<Result<Server, String>> = OnceLock::new();
    require(
        "a ComfyUI without custom nodes",
        BARE.get_or_init(|| spawn_comfyui("comfyui-bare", &[])),
    )
}

/// The one rule for a test that cannot run here: under CI it fails, naming `why`; elsewhere it
/// prints `note: test skipped: WHY` (seen with `--nocapture`) and the caller returns.
///
/// # Panics
/// Under CI (see [`ci`]).
pub fn skip(why: &str) {
    assert!(!ci(), "CI=true, and this test cannot run: {why}");
    eprintln!("note: test skipped: {why}");
}

/// The output folder of `server`, where tests compare frames on disk: known for the harness's
/// own ComfyUI, and for `COMFYUI_URL` only with `COMFYUI_OUTPUT_DIR`. None (after [`skip`])
/// when unknown.
pub fn output_dir(server: &Server) -> Option<&Path> {
    let d = server.output_dir.as_deref();
    if d.is_none() {
        skip(
            "COMFYUI_OUTPUT_DIR is not set for COMFYUI_URL: the checks of ComfyUI's output folder",
        );
    }
    d
}

fn require(what: &str, r: &'static Result<Server, String>) -> Option<&'static Server> {
    match r {
        Ok(s) => Some(s),
        Err(why) if ci() => panic!("{what} is required (CI=true) but could not be started: {why}"),
        Err(why) => {
            eprintln!("note: test skipped: {what} could not be started: {why}");
            None
        }
    }
}

/// Tests that time the shared ComfyUI, or fill its queue with a long prompt, take turns: the
/// server runs one prompt at a time and its cache is shared by every prompt.
pub fn comfy_turn() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The end of the shared LLM server's log, for a failure message: what the server did while
/// a request went unanswered is otherwise lost with the scratch folder.
pub fn llm_log_tail() -> String {
    let log = scratch().join("llm.log");
    match std::fs::read_to_string(&log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            format!(
                "the end of {}:\n{}",
                log.display(),
                lines[from..].join("\n")
            )
        }
        Err(e) => format!("(no server log at {}: {e})", log.display()),
    }
}

/// A name no other test in this binary (or an earlier run of it) uses: for output folders.
pub fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port nothing listens on (the OS picks it; it stays free in practice because
/// ports are handed out round-robin).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// The folder for this test binary's servers and files, removed when it exits.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("cinepipe-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create the scratch dir");
        at_exit();
        d
    })
}

/// Test servers run llama.cpp on one thread. Several of them generate at once here (the shared
/// one and tests' own, beside ComfyUI), and llama.cpp's threads of one server meet at a busy-wait
/// barrier per graph node: on 2 cores, three 2-thread servers gave 8 tokens/s each, three
/// 1-thread servers 23.5 each, and a 23-token answer waited over a minute. See
/// docs/operations.md ("Several llama.cpp servers on few cores").
const LLM_THREADS: &str = "1";

fn start_llm() -> Result<Server, String> {
    if let Ok(url) = std::env::var("LLM_BASE_URL") {
        let model = std::env::var("LLM_MODEL").unwrap_or_else(|_| LLM_MODEL.to_string());
        wait_ready(&format!("{}/models", url.trim_end_matches('/')), None, None)?;
        return Ok(Server {
            url,
            model,
            output_dir: None,
            pid: None,
        });
    }
    let port = free_port();
    let log = scratch().join("llm.log");
    let mut cmd = Command::new(root().join("scripts/start-llm-server"));
    cmd.args(["--port", &port.to_string(), "--alias", LLM_MODEL])
        .args(["--threads", LLM_THREADS]);
    let child = spawn_server(cmd, &log)?;
    let pid = child.id() as i32;
    let url = format!("http://127.0.0.1:{port}/v1");
    wait_ready(&format!("{url}/models"), Some(child), Some(&log))?;
    Ok(Server {
        url,
        model: LLM_MODEL.to_string(),
        output_dir: None,
        pid: Some(pid),
    })
}

/// The shared embedding server (llama.cpp's server with `--embeddings` and the model of
/// `scripts/install-embedding-model`), or None (outside CI only) when it cannot be had.
pub fn embeddings() -> Option<&'static Server> {
    static EMB: OnceLock<Result<Server, String>> = OnceLock::new();
    require("the embedding server", EMB.get_or_init(start_embeddings))
}

pub const EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

fn start_embeddings() -> Result<Server, String> {
    let out = Command::new(root().join("scripts/install-embedding-model"))
        .arg("--print-env")
        .output()
        .map_err(|e| format!("scripts/install-embedding-model: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the embedding model is not installed (scripts/install-embedding-model): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_owned))
            .ok_or_else(|| format!("install-embedding-model --print-env gave no {k}"))
    };
    let (server, model) = (get("LLAMA_SERVER")?, get("EMBEDDING_MODEL")?);
    let port = free_port();
    let log = scratch().join("embeddings.log");
    let mut cmd = Command::new(server);
    cmd.args(["-m", &model, "--embeddings", "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--alias", EMBEDDING_MODEL])
        .args(["-t", LLM_THREADS]);
    let child = spawn_server(cmd, &log)?;
    let pid = child.id() as i32;
    let url = format!("http://127.0.0.1:{port}/v1");
    wait_ready(&format!("{url}/models"), Some(child), Some(&log))?;
    Ok(Server {
        url,
        model: EMBEDDING_MODEL.to_string(),
        output_dir: None,
        pid: Some(pid),
    })
}

fn start_comfyui() -> Result<Server, String> {
    if let Ok(url) = std::env::var("COMFYUI_URL") {
        wait_ready(
            &format!("{}/system_stats", url.trim_end_matches('/')),
            None,
            None,
        )?;
        return Ok(Server {
            url,
            model: String::new(),
            output_dir: std::env::var_os("COMFYUI_OUTPUT_DIR").map(PathBuf::from),
            pid: None,
        });
    }
    spawn_comfyui(
        "comfyui",
        &[
            root().join("comfyui_nodes"),
            // Test-only nodes (raise, sleep-with-interrupt-checks): tests/comfyui_nodes/.
            root().join("tests/comfyui_nodes"),
        ],
    )
}

/// A ComfyUI of the project's install on a free port, its folders and log named `name` in the
/// scratch folder, with `custom_nodes` loaded; ready when it returns.
fn spawn_comfyui(name: &str, custom_nodes: &[PathBuf]) -> Result<Server, String> {
    let port = free_port();
    let out = scratch().join(format!("{name}-output"));
    let log = scratch().join(format!("{name}.log"));
    let mut cmd = Command::new(root().join("scripts/start-comfyui"));
    cmd.args(["--port", &port.to_string()])
        .arg("--output-dir")
        .arg(&out)
        .arg("--state-dir")
        .arg(scratch().join(format!("{name}-state")));
    for dir in custom_nodes {
        cmd.arg("--custom-nodes").arg(dir);
    }
    let child = spawn_server(cmd, &log)?;
    let pid = child.id() as i32;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{url}/system_stats"), Some(child), Some(&log))?;
    Ok(Server {
        url,
        model: String::new(),
        output_dir: Some(out),
        pid: Some(pid),
    })
}

/// PIDs (= process groups) of the servers the harness started, stopped at exit.
static STARTED: Mutex<Vec<i32>> = Mutex::new(Vec::new());

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns a server from a thread that lives as long as the test binary: the servers are
/// started with `PR_SET_PDEATHSIG`, which fires when the spawning *thread* ends, and test
/// threads end with their test.
fn spawn_server(mut cmd: Command, log: &Path) -> Result<Child, String> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let f = File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (reply, rx) = mpsc::channel();
    tx.lock()
        .map_err(|_| "spawner lock poisoned".to_string())?
        .send((cmd, reply))
        .map_err(|_| "spawner thread gone".to_string())?;
    let child = rx
        .recv()
        .map_err(|_| "spawner thread gone".to_string())?
        .map_err(|e| format!("cannot start the server: {e}"))?;
    if let Ok(mut v) = STARTED.lock() {
        v.push(child.id() as i32);
    }
    Ok(child)
}

/// Polls `url` until it answers 2xx; fails early, with the log's tail, when the server exits.
fn wait_ready(url: &str, mut child: Option<Child>, log: Option<&Path>) -> Result<(), String> {
    let started = Instant::now();
    let limit = Duration::from_secs(180);
    let tail = |log: Option<&Path>| {
        log.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .unwrap_or_default()
    };
    loop {
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            return Err(format!(
                "the server exited ({status}) before answering {url}; its log:\n{}",
                tail(log)
            ));
        }
        if let Ok((code, _)) = http("GET", url, None)
            && (200..300).contains(&code)
        {
            // The handle is dropped, not waited on: the server runs until the binary ends.
            drop(child);
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "{url} did not answer 2xx within {} s; log:\n{}",
                limit.as_secs(),
                tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn at_exit() {
    extern "C" fn stop_servers() {
        if let Ok(pids) = STARTED.lock() {
            for &pid in pids.iter() {
                // SAFETY: signals the server's process group; no memory effects.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }
        let d = std::env::temp_dir().join(format!("cinepipe-tests-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(d);
    }
    // SAFETY: registers a plain extern "C" function once.
    unsafe {
        libc::atexit(stop_servers);
    }
}

/// One HTTP request with a 120 s bound: (status, body).
pub fn http(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, String), String> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime for the tests' HTTP client")
    });
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client")
    });
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = client.request(method, url);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((code, text))
    })
}

/// GET that must answer 2xx with JSON.
pub fn get_json(url: &str) -> Value {
    let (code, body) = http("GET", url, None).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!((200..300).contains(&code), "GET {url}: HTTP {code}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// POST JSON that must answer 2xx with JSON.
pub fn post_json(url: &str, body: &Value) -> Value {
    let (code, text) = http("POST", url, Some(body)).unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert!(
        (200..300).contains(&code),
        "POST {url}: HTTP {code}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {text}"))
}

/// Queues an API-format workflow on ComfyUI and waits (bounded) for its history entry.
pub fn comfy_run(server: &Server, workflow: &Value) -> Value {
    let queued = post_json(
        &format!("{}/prompt", server.url),
        &serde_json::json!({ "prompt": workflow, "client_id": unique("harness") }),
    );
    let id = queued["prompt_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no prompt_id in {queued}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = get_json(&format!("{}/history/{id}", server.url));
        if let Some(entry) = h.get(&id)
            && entry["outputs"].as_object().is_some_and(|o| !o.is_empty())
        {
            return entry.clone();
        }
        assert!(
            Instant::now() < deadline,
            "prompt {id} not done in 120 s: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An LLM server of one test's own (for what a shared server cannot show: its request
/// counters, an API key); stopped when dropped.
pub struct OwnLlm {
    pub url: String,
    pub model: String,
    pid: i32,
}

impl Drop for OwnLlm {
    fn drop(&mut self) {
        // SAFETY: signals the server's own process group.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
    }
}

/// Starts a dedicated LLM server with extra `llama-server` arguments (e.g. `--metrics`,
/// `--api-key K`); None outside CI when the install is missing.
pub fn own_llm(extra: &[&str]) -> Option<OwnLlm> {
    // `LLM_BASE_URL` replaces the shared server only: these tests need a server of their own
    // with their own flags, so they start one from the install whatever the variable says.
    let port = free_port();
    let log = scratch().join(format!("{}.log", unique("own-llm")));
    let mut cmd = Command::new(root().join("scripts/start-llm-server"));
    cmd.args(["--port", &port.to_string(), "--alias", LLM_MODEL])
        .args(["--threads", LLM_THREADS, "--"])
        .args(extra);
    let started = spawn_server(cmd, &log).and_then(|child| {
        let pid = child.id() as i32;
        // /health needs no key even when the server has one.
        wait_ready(
            &format!("http://127.0.0.1:{port}/health"),
            Some(child),
            Some(&log),
        )
        .map(|()| pid)
    });
    match started {
        Ok(pid) => Some(OwnLlm {
            url: format!("http://127.0.0.1:{port}/v1"),
            model: LLM_MODEL.to_string(),
            pid,
        }),
        Err(why) => {
            skip(&format!(
                "a dedicated LLM server could not be started: {why}"
            ));
            None
        }
    }
}
