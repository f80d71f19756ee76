//! Launching a server: its command in its own process group, its output in a log file, a PID
//! file while it runs (adopted by a later run if cinepipe dies), and polling until it is ready.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ensure::Task;
use super::error::ServiceError;
use super::probe::{Probe, api_key, probe};
use super::stop::{Managed, kill_group, secs, start_ticks};
use crate::fsutil::write_atomic;
use crate::spec::model::{Launch, Service};

/// Lines of a launched server's log quoted in an error.
const LOG_TAIL_LINES: usize = 20;

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

impl Task {
    /// Reads a PID file left by an earlier launch: removes it when stale, returns the server
    /// when its owner died (an orphan to adopt), and leaves it alone when its owner still runs
    /// (another cinepipe run owns that server; this run only reuses it).
    pub(super) fn check_pid_file(
        &self,
        name: &str,
        path: &Path,
        notes: &mut Vec<String>,
    ) -> Option<Managed> {
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

    pub(super) async fn launch(
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

pub(super) fn file_stem(name: &str) -> String {
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
