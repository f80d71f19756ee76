//! Measuring a child process for the benches: its wall time and peak RSS.

use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// Runs `cmd`, returning its wall time, its peak RSS in KiB (wait4's rusage, which std's
/// `wait` does not give) and its exit status.
// The child is reaped by wait4.
#[allow(clippy::zombie_processes)]
pub fn measured(cmd: &mut Command) -> (Duration, i64, ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data filled by the kernel; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    (
        start.elapsed(),
        usage.ru_maxrss,
        ExitStatus::from_raw(status),
    )
}

/// The release `cinepipe` binary beside the running bench (`target/release/deps/..` →
/// `target/release/cinepipe`).
pub fn release_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/release");
    let b = dir.join("cinepipe");
    assert!(
        b.is_file(),
        "{} is missing: run `cargo build --release` first",
        b.display()
    );
    b
}
