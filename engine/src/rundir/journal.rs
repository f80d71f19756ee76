//! `events.jsonl`: the append-only journal of a run, and its replay for `--resume`.
//!
//! Each event is one JSON line, appended with a single `write`. A process that is killed
//! (`kill -9`) loses nothing it wrote; at worst the last line is torn, and replay drops it. The
//! file is fsync'd at most every [`SYNC_EVERY`] and when the session ends, so that journaling
//! 10,000 instances does not cost 10,000 disk flushes: a power loss can lose the last moments of
//! the journal, and resume then redoes those instances.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::event::{Event, EventKind, InstanceId, JOURNAL_VERSION};

/// The longest time between two fsyncs of the journal while a run writes it.
pub const SYNC_EVERY: Duration = Duration::from_millis(200);

/// Appends events to `events.jsonl`. It holds an exclusive lock on the file for its life, so two
/// processes cannot write (or resume) one run at once.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    last_sync: Instant,
    dirty: bool,
    /// The first write error; the run goes on (a failure to record never fails the work), and
    /// the error is reported when the session ends.
    error: Option<io::Error>,
}

/// A journal that cannot be opened, read or trusted.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "`{path}` is in use by another cinepipe process (a run is written by one process at a time)"
    )]
    Locked { path: PathBuf },
    #[error("`{path}` line {line} is not a journal event: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "`{path}` was written in journal format {found}; this cinepipe reads format {JOURNAL_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
}

impl Journal {
    /// Creates a new, empty journal; fails if the file exists.
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|source| JournalError::Io {
                path: path.to_owned(),
                source,
            })?;
        Journal::with_file(file, path)
    }

    /// Opens an existing journal for appending, first cutting off a torn last line (what
    /// [`replay`] dropped), so a new line is never glued to it. The cut is judged again once the
    /// lock is held, not from the caller's replay: whole lines appended in between (a rating by
    /// `cinepipe feedback`, see [`append_event`]) are kept.
    pub fn append_to(path: &Path) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        let journal = Journal::with_file(file, path)?;
        let bytes = std::fs::read(path).map_err(io)?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1) as u64;
        if (bytes.len() as u64) > whole {
            journal.file.set_len(whole).map_err(io)?;
            journal.file.sync_data().map_err(io)?;
        }
        Ok(journal)
    }

    fn with_file(file: File, path: &Path) -> Result<Journal, JournalError> {
        lock(&file).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                JournalError::Locked {
                    path: path.to_owned(),
                }
            } else {
                JournalError::Io {
                    path: path.to_owned(),
                    source: e,
                }
            }
        })?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            buf: Vec::with_capacity(64 * 1024),
            last_sync: Instant::now(),
            dirty: false,
            error: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds an event to the buffer; [`Journal::flush`] writes it.
    pub fn record(&mut self, event: &Event) {
        // Serializing our own types into a Vec cannot fail; if it ever did, the line is left
        // out rather than half-written.
        let start = self.buf.len();
        if serde_json::to_writer(&mut self.buf, event).is_ok() {
            self.buf.push(b'\n');
        } else {
            self.buf.truncate(start);
        }
    }

    /// Writes what is buffered (whole lines, one `write`), and fsyncs when the last fsync is
    /// older than [`SYNC_EVERY`].
    pub fn flush(&mut self) {
        if !self.buf.is_empty() {
            if let Err(e) = self.file.write_all(&self.buf) {
                self.error.get_or_insert(e);
            }
            self.buf.clear();
            self.dirty = true;
        }
        if self.dirty && self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync();
        }
    }

    /// Writes what is buffered and fsyncs now (the session's last events).
    pub fn sync(&mut self) {
        if !self.buf.is_empty() {
            self.dirty = true;
            if let Err(e) = self.file.write_all(&self.buf) {
                self.error.get_or_insert(e);
            }
            self.buf.clear();
        }
        if self.dirty {
            if let Err(e) = self.file.sync_data() {
                self.error.get_or_insert(e);
            }
            self.dirty = false;
        }
        self.last_sync = Instant::now();
    }

    /// The first write error, if any.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }
}

/// Appends one event from outside the run's writer (`cinepipe feedback`). When no process
/// holds the journal, this takes its lock like a writer (cutting a torn last line first); when
/// a run or resume holds it, the line is appended with one `write` on an `O_APPEND` file: the
/// running writer appends whole lines the same way, so the kernel places each whole line after
/// the other and none is interleaved or overwritten. Callers serialise among themselves with
/// the run folder's lock (`rundir::lock`).
pub fn append_event(path: &Path, event: &Event) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_owned(),
        source,
    };
    if !path.is_file() {
        return Err(io(io::Error::new(
            io::ErrorKind::NotFound,
            "the run has no journal yet",
        )));
    }
    match Journal::append_to(path) {
        Ok(mut j) => {
            j.record(event);
            j.sync();
            j.take_error().map_or(Ok(()), |e| Err(io(e)))
        }
        Err(JournalError::Locked { .. }) => {
            let mut line = serde_json::to_vec(event).map_err(|e| io(e.into()))?;
            line.push(b'\n');
            let mut file = OpenOptions::new().append(true).open(path).map_err(io)?;
            file.write_all(&line).map_err(io)?;
            file.sync_data().map_err(io)
        }
        Err(e) => Err(e),
    }
}

/// Takes an exclusive, non-blocking advisory lock; it is released when the file is closed,
/// also when the process is killed.
fn lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor we own; it touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What a journal says about a run: which instances are done, how many attempts each had, how
/// many sessions there were.
#[derive(Debug, Default)]
pub struct Replay {
    pub run_id: Option<String>,
    /// Sessions so far (`run-started` events).
    pub sessions: u32,
    /// Done instances and their output file (relative to the run folder), in the order they
    /// finished.
    pub done: HashMap<InstanceId, Option<String>>,
    /// Attempts started per instance, over every session.
    pub attempts: HashMap<InstanceId, u32>,
    /// Instances that had a failed attempt (for the flaky flag).
    pub had_failure: HashMap<InstanceId, bool>,
    /// The whole lines, in bytes: what a resume keeps.
    pub valid_len: u64,
    /// The file ended in a torn line (a process killed while writing), which was dropped.
    pub torn: bool,
    /// Events read.
    pub events: usize,
}

/// Reads a journal. A last line without its newline is torn (the writer was killed) and is
/// dropped; any other line that does not parse makes the journal untrustworthy.
pub fn replay(path: &Path) -> Result<Replay, JournalError> {
    let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut r = Replay::default();
    let mut offset = 0usize;
    for (n, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let Some(line) = raw.strip_suffix(b"\n") else {
            r.torn = true;
            break;
        };
        offset += raw.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: Event = serde_json::from_slice(line).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            line: n + 1,
            message: e.to_string(),
        })?;
        r.events += 1;
        r.apply(event.kind, path)?;
    }
    r.valid_len = offset as u64;
    Ok(r)
}

impl Replay {
    fn apply(&mut self, kind: EventKind, path: &Path) -> Result<(), JournalError> {
        match kind {
            EventKind::RunStarted {
                journal_version,
                run_id,
                ..
            } => {
                if journal_version != JOURNAL_VERSION {
                    return Err(JournalError::Version {
                        path: path.to_owned(),
                        found: journal_version,
                    });
                }
                self.sessions += 1;
                self.run_id.get_or_insert(run_id);
            }
            EventKind::AttemptStarted { instance, attempt } => {
                let a = self.attempts.entry(instance).or_default();
                *a = (*a).max(attempt);
            }
            EventKind::AttemptFinished {
                instance, outcome, ..
            } => {
                use super::event::AttemptOutcome as O;
                if matches!(outcome, O::Failed | O::TimedOut | O::Crashed) {
                    self.had_failure.insert(instance, true);
                }
            }
            EventKind::Succeeded {
                instance, output, ..
            } => {
                self.done.insert(instance, output);
            }
            EventKind::Requeued { reset, .. } => {
                for id in &reset {
                    self.done.remove(id);
                }
            }
            EventKind::Failed { instance, .. } => {
                self.done.remove(&instance);
            }
            EventKind::FannedOut { .. }
            | EventKind::InstanceStarted { .. }
            | EventKind::Skipped { .. }
            | EventKind::RunFinished { .. }
            | EventKind::RunInterrupted { .. }
            | EventKind::FeedbackGiven { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::event::EventKind;

    fn started(run: &str) -> Event {
        Event::now(EventKind::RunStarted {
            journal_version: JOURNAL_VERSION,
            run_id: run.into(),
            session: 1,
            spec: "s.toml".into(),
            profile: "standard".into(),
            jobs: 2,
            keep_going: false,
            no_cache: false,
            version: "0".into(),
            unbuilt_kinds: vec![],
        })
    }

    fn ok(id: &str) -> Event {
        Event::now(EventKind::Succeeded {
            instance: id.parse().expect("id"),
            attempts: 1,
            flaky: false,
            output: None,
        })
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_before_appending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("events.jsonl");
        let mut j = Journal::create(&p).expect("create");
        j.record(&started("r"));
        j.record(&ok("story"));
        j.record(&ok("patch[0]"));
        j.sync();
        drop(j);
        // A kill in the middle of a write leaves half a line.
        let mut text = std::fs::read(&p).expect("read");
        let whole = text.len();
        text.extend_from_slice(br#"{"ts":"2026-11-21T12:00:00.000Z","event":"succeeded","inst"#);
        std::fs::write(&p, &text).expect("write");

        let r = replay(&p).expect("replays");
        assert!(r.torn);
        assert_eq!(r.valid_len, whole as u64);
        assert_eq!(r.events, 3);
        assert!(r.done.contains_key(&"patch[0]".parse().expect("id")));

        let mut j = Journal::append_to(&p).expect("reopen");
        j.record(&ok("patch[1]"));
        j.sync();
        drop(j);
        let r = replay(&p).expect("replays again");
        assert!(!r.torn);
        assert_eq!(r.done.len(), 3);
    }

    #[test]
    fn a_broken_middle_line_is_an_error_with_its_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("events.jsonl");
        let line = serde_json::to_string(&started("r")).expect("json");
        std::fs::write(&p, format!("{line}\nnot json\n{line}\n")).expect("write");
        let e = replay(&p).expect_err("corrupt");
        assert!(matches!(e, JournalError::Corrupt { line: 2, .. }), "{e}");
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("events.jsonl");
        let _first = Journal::create(&p).expect("create");
        let e = Journal::append_to(&p).expect_err("locked");
        assert!(matches!(e, JournalError::Locked { .. }), "{e}");
    }
}
