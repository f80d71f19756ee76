//! Stopping what a run started: `SIGTERM` to the server's process group, `SIGKILL` after its
//! stop timeout; and telling whether a process is still the one that was started.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A server process this run owns.
#[derive(Debug)]
pub(super) struct Managed {
    pub(super) service: String,
    pub(super) pid: i32,
    pub(super) stop_timeout: Duration,
    pub(super) pid_file: PathBuf,
    /// The child handle, when this run spawned it (an adopted orphan has none).
    pub(super) child: Option<tokio::process::Child>,
}

impl Managed {
    /// SIGTERM to the group, SIGKILL after the stop timeout; removes the PID file.
    pub(super) async fn stop(mut self) -> String {
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
pub(super) fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill has no memory effects; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22), or None
/// when it does not exist (or is a zombie).
pub(super) fn start_ticks(pid: i32) -> Option<u64> {
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

pub(super) fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(10))
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
}
