//! Services the engine manages: probe each server a run uses, reuse one that already answers,
//! launch the others with their `launch` command, wait for readiness within a bound, and stop
//! exactly the processes this run started (never one it found running).
//!
//! A launched server runs in its own process group, so stopping it also stops whatever it
//! spawned (ComfyUI's Python, a shell wrapper). It gets `SIGTERM`, then `SIGKILL` after the
//! launch's `stop_timeout_s`. Each launch leaves `<state_dir>/<service>.pid` (JSON) while it
//! runs: a later run that finds one whose owner died (`kill -9` of cinepipe) adopts the orphan
//! and stops it at its end, and one whose process is gone is removed as stale.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::fsutil::write_atomic;
use crate::spec::CheckedSpec;
use crate::spec::model::{Launch, Service, ServiceKind, SpecFile, Stage};

/// Bound on one health probe: a local server that takes longer than this to answer
/// `/system_stats` is not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of a launched server's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;

/// Hears each service step as it happens.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Where the supervisor keeps launched servers' logs and PID files, and who hears about it.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Folder for `<service>.log` and `<service>.pid`.
    pub state_dir: PathBuf,
    /// Told each step as it happens (a launch can take a while); the same lines end up in
    /// [`Services::notes`].
    pub progress: Option<Progress>,
}

impl ServiceOptions {
    pub fn new(state_dir: PathBuf) -> Self {
        ServiceOptions {
            state_dir,
            progress: None,
        }
    }

    fn tell(&self, line: &str) {
        if let Some(p) = &self.progress {
            p(line);
        }
    }
}

/// [`Services::ensure`] failed: the first error, and what was done before it (the servers
/// that did come up have been stopped again).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct EnsureError {
    pub error: ServiceError,
    pub notes: Vec<String>,
}

/// A service could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "service `{service}` does not answer at {url} ({why}), and it has no `launch` to start it\n\
         help: start the server, or give `[services.{service}]` a `launch` command"
    )]
    Down {
        service: String,
        url: String,
        why: String,
    },
    #[error(
        "service `{service}`: something else holds {url}: {answer}\n\
         help: stop whatever listens there, or move the service to a free port"
    )]
    PortTaken {
        service: String,
        url: String,
        answer: String,
    },
    #[error("service `{service}`: could not start `{command}`: {source}")]
    Spawn {
        service: String,
        command: String,
        source: std::io::Error,
    },
    #[error(
        "service `{service}`: `{command}` exited ({status}) after {after:.1} s, before it was ready\n\
         last lines of {log}:\n{tail}"
    )]
    Exited {
        service: String,
        command: String,
        status: String,
        after: f64,
        log: String,
        tail: String,
    },
    #[error(
        "service `{service}`: not ready after {timeout} s ({ready_url}: {last}); stopped it\n\
         help: raise `launch.ready_timeout_s`, or check the server's log\n\
         last lines of {log}:\n{tail}"
    )]
    NotReady {
        service: String,
        timeout: f64,
        ready_url: String,
        last: String,
        log: String,
        tail: String,
    },
    #[error("service `{service}`: {what}: {source}")]
    Io {
        service: String,
        what: String,
        source: std::io::Error,
    },
    #[error("service `{service}`: {message}")]
    Invalid { service: String, message: String },
    #[error("cancelled while starting service `{service}`")]
    Cancelled { service: String },
    #[error(
        "no service of the fallback chain of `{service}` could be brought up; tried {}:\n  {}",
        tried.len(),
        tried.join("\n  ")
    )]
    ChainDown { service: String, tried: Vec<String> },
}

/// What a health probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// HTTP 2xx.
    Up,
    /// Nothing accepts connections there.
    Refused(String),
    /// Something answered, but not with a 2xx (or not in time).
    Other(String),
}

impl Probe {
    fn describe(&self) -> &str {
        match self {
            Probe::Up => "up",
            Probe::Refused(s) | Probe::Other(s) => s,
        }
    }
}

/// The URL that answers 200 when a service is healthy: `/v1/models` for OpenAI-compatible
/// servers (the base URL carries the `/v1`), `/system_stats` for ComfyUI.
pub fn health_url(service: &Service) -> String {
    let base = service.urls().first().copied().unwrap_or_default();
    let base = base.trim_end_matches('/');
    match service.kind() {
        ServiceKind::Openai => format!("{base}/models"),
        ServiceKind::Comfyui => format!("{base}/system_stats"),
    }
}

/// The services the stages of a spec name, in the spec's order, without repeats (fallbacks are
/// not included: [`Services::ensure`] reaches them only when needed).
pub fn used_services(spec: &SpecFile) -> Vec<String> {
    services_of(spec, |_| true)
}

/// [`used_services`], counting only the stages `keep` accepts (a run: the kinds it can run).
pub fn services_of(spec: &SpecFile, keep: impl Fn(&Stage) -> bool) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for stage in spec.stages.values().filter(|s| keep(s)) {
        for (_, name) in stage.services() {
            if seen.insert(name) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// One GET with a short bound.
///
/// A server that wants a key it was not given (401/403) is up: the server is there, and the
/// stage that talks to it reports the key problem in its own words.
pub async fn probe(client: &reqwest::Client, url: &str, key: Option<&str>) -> Probe {
    let mut req = client.get(url).timeout(PROBE_TIMEOUT);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Probe::Up,
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Probe::Up,
        Ok(r) => Probe::Other(format!("answered HTTP {}", r.status())),
        Err(e) if e.is_connect() => Probe::Refused(format!("connection refused: {}", root(&e))),
        Err(e) if e.is_timeout() => {
            Probe::Other(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))
        }
        Err(e) => Probe::Other(root(&e)),
    }
}

/// The API key of an `openai` service, when its variable is set (never logged).
fn api_key(service: &Service) -> Option<String> {
    match service {
        Service::Openai(s) => s
            .api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty()),
        Service::Comfyui(_) => None,
    }
}

fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// The services of one run. [`Services::shutdown`] stops the ones this run started; dropping
/// it without a shutdown kills them (a last resort for panics).
#[derive(Default)]
pub struct Services {
    notes: Vec<String>,
    managed: Vec<Managed>,
    progress: Option<Progress>,
}

/// A server process this run owns.
#[derive(Debug)]
struct Managed {
    service: String,
    pid: i32,
    stop_timeout: Duration,
    pid_file: PathBuf,
    /// The child handle, when this run spawned it (an adopted orphan has none).
    child: Option<tokio::process::Child>,
}

/// The PID file of a launched server.
#[derive(Debug, Serialize, Deserialize)]
struct PidFile {
    service: String,
    pid: i32,
    /// `/proc/<pid>/stat` start time, so a reused PID is not mistaken for the server.
    start_ticks: Option<u64>,
    owner_pid: i32,
    owner_start_ticks: Option<u64>,
    url: String,
    command: String,
}

impl Services {
    /// Probes every named service, reusing those that answer and launching the others; a
    /// service that is down and cannot be launched hands over to its `fallback`, if any.
    /// Launches run side by side.
    pub async fn ensure(
        spec: &CheckedSpec,
        names: &[String],
        opts: &ServiceOptions,
        cancel: &CancellationToken,
    ) -> Result<Services, EnsureError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| EnsureError {
                error: ServiceError::Invalid {
                    service: names.first().cloned().unwrap_or_default(),
                    message: format!("cannot build an HTTP client: {e}"),
                },
                notes: Vec::new(),
            })?;
        let mut set = JoinSet::new();
        for name in names {
            let task = Task {
                client: client.clone(),
                spec: spec.spec.clone(),
                base_dir: spec.base_dir.clone(),
                opts: opts.clone(),
                cancel: cancel.clone(),
            };
            let name = name.clone();
            set.spawn(async move { task.bring_up(name).await });
        }
        let mut services = Services {
            notes: Vec::new(),
            managed: Vec::new(),
            progress: opts.progress.clone(),
        };
        let mut first_err = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((notes, managed, result)) => {
                    services.notes.extend(notes);
                    services.managed.extend(managed);
                    if let Err(e) = result {
                        first_err.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(ServiceError::Invalid {
                        service: String::new(),
                        message: format!("the task starting a service failed: {e}"),
                    });
                }
            }
        }
        match first_err {
            None => Ok(services),
            Some(error) => {
                // Stop what did come up: a run that cannot start leaves nothing behind.
                let mut notes = std::mem::take(&mut services.notes);
                notes.extend(services.shutdown().await);
                Err(EnsureError { error, notes })
            }
        }
    }

    /// What happened to each service (reused, launched, adopted, fell back), in order.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// PIDs of the servers this run started (or adopted), by service name.
    pub fn launched(&self) -> Vec<(&str, i32)> {
        self.managed
            .iter()
            .map(|m| (m.service.as_str(), m.pid))
            .collect()
    }

    /// Stops the processes this run started, each with `SIGTERM` then `SIGKILL` after its
    /// stop timeout; returns what was done.
    pub async fn shutdown(mut self) -> Vec<String> {
        let managed = std::mem::take(&mut self.managed);
        let mut set = JoinSet::new();
        for m in managed {
            set.spawn(m.stop());
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(line) = r {
                if let Some(p) = &self.progress {
                    p(&line);
                }
                out.push(line);
            }
        }
        out
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("notes", &self.notes)
            .field("managed", &self.managed)
            .finish_non_exhaustive()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for m in &self.managed {
            kill_group(m.pid, libc::SIGKILL);
            let _ = std::fs::remove_file(&m.pid_file);
        }
    }
}

/// Everything one service's bring-up needs, owned so it can run on its own task.
struct Task {
    client: reqwest::Client,
    spec: SpecFile,
    base_dir: PathBuf,
    opts: ServiceOptions,
    cancel: CancellationToken,
}

type BringUp = (Vec<String>, Vec<Managed>, Result<(), ServiceError>);

impl Task {
    fn note(&self, notes: &mut Vec<String>, line: String) {
        self.opts.tell(&line);
        notes.push(line);
    }

    /// Brings up `name`, walking its fallback chain when it is down and cannot be launched.
    async fn bring_up(self, name: String) -> BringUp {
        let mut notes = Vec::new();
        let mut managed = Vec::new();
        let mut visited = HashSet::new();
        let mut tried: Vec<String> = Vec::new();
        let first = name.clone();
        let mut current = name;
        loop {
            if !visited.insert(current.clone()) {
                // The checker refuses fallback cycles; this only guards the loop.
                return (notes, managed, Ok(()));
            }
            let Some(service) = self.spec.services.get(&current) else {
                let err = ServiceError::Invalid {
                    service: current.clone(),
                    message: "no such service in the spec".into(),
                };
                return (notes, managed, Err(err));
            };
            match self.one(&current, service, &mut notes).await {
                Ok(m) => {
                    managed.extend(m);
                    return (notes, managed, Ok(()));
                }
                Err(e) => match service.fallback() {
                    Some(next)
                        if !matches!(e, ServiceError::Cancelled { .. })
                            && !visited.contains(next) =>
                    {
                        tried.push(format!("`{current}`: {}", first_line(&e.to_string())));
                        self.note(
                            &mut notes,
                            format!(
                                "service `{current}` unavailable, falling back to `{next}`: {}",
                                first_line(&e.to_string())
                            ),
                        );
                        current = next.to_string();
                    }
                    _ if tried.is_empty() || matches!(e, ServiceError::Cancelled { .. }) => {
                        return (notes, managed, Err(e));
                    }
                    _ => {
                        tried.push(format!("`{current}`: {}", first_line(&e.to_string())));
                        let err = ServiceError::ChainDown {
                            service: first,
                            tried,
                        };
                        return (notes, managed, Err(err));
                    }
                },
            }
        }
    }

    /// Reuses, adopts or launches one service.
    async fn one(
        &self,
        name: &str,
        service: &Service,
        notes: &mut Vec<String>,
    ) -> Result<Option<Managed>, ServiceError> {
        let health = health_url(service);
        let url = service
            .urls()
            .first()
            .copied()
            .unwrap_or_default()
            .to_string();
        let pid_path = self.opts.state_dir.join(format!("{}.pid", file_stem(name)));
        let adopted = self.check_pid_file(name, &pid_path, notes);

        let key = api_key(service);
        let probed = probe(&self.client, &health, key.as_deref()).await;
        if probed == Probe::Up {
            return Ok(match adopted {
                Some(m) => {
                    self.note(
                        notes,
                        format!(
                            "service `{name}`: adopted the server (pid {}) an earlier cinepipe run \
                         started and did not stop; it is stopped when this run ends",
                            m.pid
                        ),
                    );
                    Some(m)
                }
                None => {
                    self.note(
                        notes,
                        format!("service `{name}`: reusing the server already answering at {url}"),
                    );
                    None
                }
            });
        }
        if let Some(m) = adopted {
            // An orphan that no longer answers is of no use: stop it and start afresh.
            self.note(notes, m.stop().await);
        }
        let Some(launch) = service.launch() else {
            return Err(ServiceError::Down {
                service: name.to_string(),
                url,
                why: probed.describe().to_string(),
            });
        };
        if let Probe::Other(answer) = probed {
            return Err(ServiceError::PortTaken {
                service: name.to_string(),
                url,
                answer,
            });
        }
        let ready_url = launch.ready_url.clone().unwrap_or(health);
        let m = self
            .launch(name, launch, &url, &ready_url, &pid_path, notes)
            .await?;
        Ok(Some(m))
    }

    /// Reads a PID file left by an earlier launch: removes it when stale, returns the server
    /// when its owner died (an orphan to adopt), and leaves it alone when its owner still runs
    /// (another cinepipe run owns that server; this run only reuses it).
    fn check_pid_file(&self, name: &str, path: &Path, notes: &mut Vec<String>) -> Option<Managed> {
        let text = std::fs::read_to_string(path).ok()?;
        let Ok(pf) = serde_json::from_str::<PidFile>(&text) else {
            self.note(
                notes,
                format!(
                    "service `{name}`: removed an unreadable PID file {}",
                    path.display()
                ),
            );
            let _ = std::fs::remove_file(path);
            return None;
        };
        let server_alive =
            pf.pid > 0 && start_ticks(pf.pid).is_some_and(|t| Some(t) == pf.start_ticks);
        if !server_alive {
            self.note(
                notes,
                format!(
                    "service `{name}`: removed a stale PID file (pid {} is gone)",
                    pf.pid
                ),
            );
            let _ = std::fs::remove_file(path);
            return None;
        }
        let owner_alive =
            start_ticks(pf.owner_pid).is_some_and(|t| Some(t) == pf.owner_start_ticks);
        if owner_alive {
            return None;
        }
        let stop_timeout = self
            .spec
            .services
            .get(name)
            .and_then(Service::launch)
            .map_or(Duration::from_secs(10), |l| secs(l.stop_timeout_s));
        Some(Managed {
            service: name.to_string(),
            pid: pf.pid,
            stop_timeout,
            pid_file: path.to_path_buf(),
            child: None,
        })
    }

    async fn launch(
        &self,
        name: &str,
        launch: &Launch,
        url: &str,
        ready_url: &str,
        pid_path: &Path,
        notes: &mut Vec<String>,
    ) -> Result<Managed, ServiceError> {
        let io = |what: String| {
            let service = name.to_string();
            move |source| ServiceError::Io {
                service,
                what,
                source,
            }
        };
        std::fs::create_dir_all(&self.opts.state_dir).map_err(io(format!(
            "cannot create {}",
            self.opts.state_dir.display()
        )))?;
        let log_path = self.opts.state_dir.join(format!("{}.log", file_stem(name)));
        let log =
            File::create(&log_path).map_err(io(format!("cannot create {}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io(format!("cannot open {}", log_path.display())))?;

        let cwd = match &launch.cwd {
            Some(c) => self.base_dir.join(c),
            None => self.base_dir.clone(),
        };
        // A command with a slash is a path (relative to the base dir); a bare name is looked
        // up on PATH, as a shell would.
        let program = if launch.command.contains('/') {
            self.base_dir.join(&launch.command)
        } else {
            PathBuf::from(&launch.command)
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&launch.args)
            .current_dir(&cwd)
            .envs(&launch.env)
            .env("CINEPIPE_SERVICE", name)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            // Its own group: stopping the server reaches everything it spawned, and a Ctrl-C
            // at the terminal reaches cinepipe alone (which then stops the server in order).
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGTERM the server if
        // cinepipe dies without stopping it (kill -9), so no server outlives its run.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        self.note(
            notes,
            format!(
                "service `{name}`: nothing answers at {url}; starting `{}` (ready within {} s)",
                launch.command, launch.ready_timeout_s
            ),
        );
        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| ServiceError::Spawn {
            service: name.to_string(),
            command: program.display().to_string(),
            source,
        })?;
        let pid = child.id().map_or(-1, |p| p as i32);
        let stop_timeout = secs(launch.stop_timeout_s);
        let mut managed = Managed {
            service: name.to_string(),
            pid,
            stop_timeout,
            pid_file: pid_path.to_path_buf(),
            child: Some(child),
        };
        let me = std::process::id() as i32;
        let pf = PidFile {
            service: name.to_string(),
            pid,
            start_ticks: start_ticks(pid),
            owner_pid: me,
            owner_start_ticks: start_ticks(me),
            url: url.to_string(),
            command: program.display().to_string(),
        };
        if let Ok(bytes) = serde_json::to_vec_pretty(&pf)
            && let Err(e) = write_atomic(pid_path, &bytes)
        {
            managed.stop().await;
            return Err(ServiceError::Io {
                service: name.to_string(),
                what: format!("cannot write {}", pid_path.display()),
                source: std::io::Error::other(e.to_string()),
            });
        }

        let key = self.spec.services.get(name).and_then(api_key);
        let timeout = secs(launch.ready_timeout_s);
        let deadline = started + timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            if let Some(child) = managed.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let _ = std::fs::remove_file(pid_path);
                // The process group may still hold what it spawned.
                kill_group(pid, libc::SIGKILL);
                managed.child = None;
                return Err(ServiceError::Exited {
                    service: name.to_string(),
                    command: program.display().to_string(),
                    status: status.to_string(),
                    after: started.elapsed().as_secs_f64(),
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path),
                });
            }
            let last = match probe(&self.client, ready_url, key.as_deref()).await {
                Probe::Up => break,
                p => p.describe().to_string(),
            };
            let now = Instant::now();
            if now >= deadline {
                managed.stop().await;
                return Err(ServiceError::NotReady {
                    service: name.to_string(),
                    timeout: launch.ready_timeout_s,
                    ready_url: ready_url.to_string(),
                    last,
                    log: log_path.display().to_string(),
                    tail: log_tail(&log_path),
                });
            }
            tokio::select! {
                () = self.cancel.cancelled() => {
                    managed.stop().await;
                    return Err(ServiceError::Cancelled { service: name.to_string() });
                }
                () = tokio::time::sleep(wait.min(deadline - now)) => {}
            }
            wait = (wait * 2).min(Duration::from_millis(500));
        }
        self.note(
            notes,
            format!(
                "service `{name}`: started `{}` (pid {pid}), ready in {:.1} s; log: {}",
                launch.command,
                started.elapsed().as_secs_f64(),
                log_path.display()
            ),
        );
        Ok(managed)
    }
}

impl Managed {
    /// SIGTERM to the group, SIGKILL after the stop timeout; removes the PID file.
    async fn stop(mut self) -> String {
        let started = Instant::now();
        kill_group(self.pid, libc::SIGTERM);
        let how = match self.child.as_mut() {
            Some(child) => match tokio::time::timeout(self.stop_timeout, child.wait()).await {
                Ok(_) => "stopped",
                Err(_) => {
                    kill_group(self.pid, libc::SIGKILL);
                    let _ = child.wait().await;
                    "killed (did not stop on SIGTERM)"
                }
            },
            None => {
                // An adopted orphan is not our child: poll for it to go.
                let deadline = started + self.stop_timeout;
                loop {
                    if start_ticks(self.pid).is_none() {
                        break "stopped";
                    }
                    if Instant::now() >= deadline {
                        kill_group(self.pid, libc::SIGKILL);
                        break "killed (did not stop on SIGTERM)";
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        // Whatever the server left in its group goes with it.
        kill_group(self.pid, libc::SIGKILL);
        let _ = std::fs::remove_file(&self.pid_file);
        self.child = None;
        format!(
            "service `{}`: {how} pid {} in {:.1} s",
            self.service,
            self.pid,
            started.elapsed().as_secs_f64()
        )
    }
}

/// Signals a process group (the server was made its leader).
fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory effects; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22), or None
/// when it does not exist (or is a zombie).
fn start_ticks(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    start_ticks(pid).is_some()
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(10))
}

fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The last lines of a log, indented, read from its end (a server may log megabytes).
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = len.saturating_sub(16 * 1024);
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "    (the log is empty)".into();
    }
    let mut out = String::new();
    for l in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
        let _ = writeln!(out, "    {l}");
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_self_and_of_nothing() {
        let me = std::process::id() as i32;
        assert!(start_ticks(me).is_some());
        assert_eq!(start_ticks(start_ticks(me).map_or(0, |_| -5)), None);
        assert_eq!(start_ticks(i32::MAX), None);
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let p = dir.path().join("x.log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).expect("write the log");
        let tail = log_tail(&p);
        assert!(tail.starts_with("    line 80"), "{tail}");
        assert!(tail.ends_with("line 99"), "{tail}");
        assert_eq!(log_tail(&dir.path().join("none")), "    (the log is empty)");
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("comfy"), "comfy");
        assert_eq!(file_stem("../x y"), "___x_y");
    }
}
