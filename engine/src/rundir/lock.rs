//! The run folder's metadata lock: an exclusive `flock` on the run folder itself, held by every
//! read-modify-write of `artifact-metadata.json` (the telemetry writer at the end of a session
//! and in the `validate` stage, and `cinepipe feedback`), so that a rating given while a run or
//! a resume writes its telemetry is never lost. The kernel drops the lock when its holder
//! exits, also by `kill -9`.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held while it lives.
#[derive(Debug)]
pub struct FolderLock {
    _dir: File,
}

impl FolderLock {
    /// Takes the lock of the run folder `dir`, waiting up to `wait` for another holder (whose
    /// work takes milliseconds) to let it go; `ErrorKind::WouldBlock` after that.
    pub fn exclusive(dir: &Path, wait: Duration) -> io::Result<FolderLock> {
        use std::os::fd::AsRawFd;
        let file = File::open(dir)?;
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock on a file descriptor we own; it touches no memory.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FolderLock { _dir: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock || Instant::now() >= deadline {
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// How long the telemetry writer and `cinepipe feedback` wait for each other.
pub const METADATA_LOCK_WAIT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_waits_and_then_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = FolderLock::exclusive(dir.path(), Duration::ZERO).expect("free");
        let e = FolderLock::exclusive(dir.path(), Duration::from_millis(20)).expect_err("held");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        FolderLock::exclusive(dir.path(), Duration::ZERO).expect("free again");
    }
}
