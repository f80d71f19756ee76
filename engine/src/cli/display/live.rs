//! The live display of `cinepipe run` on a terminal: a header with the run and the elapsed time,
//! a row per stage (indicatif), and failures printed above the rows. Log lines written while it
//! is drawn go above it too ([`log_writer`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exec::{AttemptOutcome, Event, EventKind, Observer};
use crate::spec::{CheckedSpec, Fan};

/// One row per stage: a bar of its instances, and what is running, retried or failed.
struct Row {
    bar: ProgressBar,
    kind: &'static str,
    /// The list it fans out over (`story.scenes`), for stages that run once per item.
    list: Option<String>,
    running: u32,
    attempts: u32,
    retries: u32,
    failed: u32,
    skipped: u32,
    flaky: u32,
    done: bool,
}

/// The display being drawn, if any: log lines are written above it.
static SCREEN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Where log lines go: stderr, above the live display while one is drawn (it is hidden for the
/// write and drawn again), so that a warning does not tear its rows.
pub(crate) fn log_writer() -> LogWriter {
    LogWriter
}

/// The writer of [`log_writer`].
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The subscriber writes each line whole, in one call.
        let screen = SCREEN.lock().ok().and_then(|s| s.clone());
        match screen {
            Some(multi) => multi.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The live display: a header with the run and the elapsed time, and a row per stage with its
/// instances done out of all, its running and retried attempts, failures and flaky ones.
/// Failures, retries and requeues are also printed above the rows, so they stay on screen.
pub struct Live {
    multi: MultiProgress,
    /// Made when the run starts, not before: the services' start-up lines come first, as plain
    /// lines, and a spinner drawn meanwhile would be torn by them.
    header: Option<ProgressBar>,
    rows: Vec<Row>,
    index: HashMap<String, usize>,
}

impl Live {
    /// A display on stderr (call it only when stderr is a terminal).
    pub fn new() -> Live {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        if let Ok(mut screen) = SCREEN.lock() {
            *screen = Some(multi.clone());
        }
        Live {
            multi,
            header: None,
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn finish(&mut self, message: String) {
        if let Some(h) = &self.header {
            h.finish_with_message(message);
        }
        for row in &mut self.rows {
            row.done = true;
            row.bar.abandon();
        }
    }

    fn row(&mut self, stage: &str) -> Option<&mut Row> {
        let i = *self.index.get(stage)?;
        self.rows.get_mut(i)
    }

    fn print(&self, line: String) {
        // Printed above the rows; a terminal that went away is not the run's problem.
        let _ = self.multi.println(line);
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new()
    }
}

fn refresh(row: &Row) {
    let mut parts = vec![row.kind.to_owned()];
    if row.bar.length() == Some(0)
        && let Some(l) = &row.list
    {
        parts.push(format!("waiting for {l}"));
    }
    for (n, what) in [
        (row.running, "running"),
        (row.attempts, "attempts"),
        (row.retries, "retries"),
        (row.failed, "failed"),
        (row.skipped, "skipped"),
        (row.flaky, "flaky"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    row.bar.set_message(parts.join(" · "));
}

impl Observer for Live {
    fn spec(&mut self, spec: &CheckedSpec) {
        let header = self.multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg} · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.set_message(format!("run {}", spec.spec.run.name));
        // The elapsed time moves even while nothing happens (a long render).
        header.enable_steady_tick(Duration::from_millis(200));
        self.header = Some(header);
        let width = spec.spec.stages.keys().map(String::len).max().unwrap_or(5);
        let style = ProgressStyle::with_template(&format!(
            "  {{prefix:{width}}} [{{bar:24}}] {{pos:>4}}/{{len:<4}} {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        for (name, stage) in &spec.spec.stages {
            let list = match spec.fans.get(name) {
                Some(Fan::PerItem { source, .. }) => Some(source.clone()),
                _ => None,
            };
            let bar = self
                .multi
                .add(ProgressBar::new(if list.is_some() { 0 } else { 1 }));
            bar.set_style(style.clone());
            bar.set_prefix(name.clone());
            let row = Row {
                bar,
                kind: stage.kind().as_str(),
                list,
                running: 0,
                attempts: 0,
                retries: 0,
                failed: 0,
                skipped: 0,
                flaky: 0,
                done: false,
            };
            refresh(&row);
            self.index.insert(name.clone(), self.rows.len());
            self.rows.push(row);
        }
    }

    fn event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::RunStarted {
                run_id, session, ..
            } => {
                let what = if *session > 1 {
                    format!("resuming run {run_id} (session {session})")
                } else {
                    format!("run {run_id}")
                };
                if let Some(h) = &self.header {
                    h.set_message(what);
                }
            }
            EventKind::FannedOut { list, count } => {
                for row in self
                    .rows
                    .iter_mut()
                    .filter(|r| r.list.as_ref() == Some(list))
                {
                    row.bar.set_length(u64::from(*count));
                    refresh(row);
                }
            }
            EventKind::AttemptStarted { instance, attempt } => {
                if let Some(row) = self.row(&instance.stage) {
                    row.running += 1;
                    row.attempts += 1;
                    if *attempt > 1 {
                        row.retries += 1;
                    }
                    refresh(row);
                }
            }
            EventKind::AttemptFinished {
                instance,
                attempt,
                outcome,
                error,
                retry_in_s,
                ..
            } => {
                if let Some(row) = self.row(&instance.stage) {
                    row.running = row.running.saturating_sub(1);
                    refresh(row);
                }
                if *outcome != AttemptOutcome::Succeeded && *outcome != AttemptOutcome::Cancelled {
                    let next = retry_in_s.map_or(String::new(), |s| format!("; retry in {s:.1}s"));
                    let first = error
                        .as_deref()
                        .and_then(|e| e.lines().next())
                        .unwrap_or("");
                    self.print(format!("  attempt {instance} #{attempt}: {first}{next}"));
                }
            }
            EventKind::Requeued {
                instance, target, ..
            } => self.print(format!("  requeue {target} (asked by {instance})")),
            EventKind::Succeeded {
                instance, flaky, ..
            } => {
                if let Some(row) = self.row(&instance.stage) {
                    row.bar.inc(1);
                    row.flaky += u32::from(*flaky);
                    refresh(row);
                }
            }
            EventKind::Failed {
                instance, error, ..
            } => {
                if let Some(row) = self.row(&instance.stage) {
                    row.failed += 1;
                    refresh(row);
                }
                let first = error.lines().next().unwrap_or("");
                self.print(format!("  FAILED  {instance}: {first}"));
            }
            EventKind::Skipped { instance, .. } => {
                if let Some(row) = self.row(&instance.stage) {
                    row.skipped += 1;
                    refresh(row);
                }
            }
            EventKind::RunFinished { outcome, .. } => {
                self.finish(format!("run {}", outcome.as_str()));
            }
            EventKind::RunInterrupted { .. } => self.finish("run interrupted".to_owned()),
            EventKind::InstanceStarted { .. } | EventKind::FeedbackGiven { .. } => {}
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(mut screen) = SCREEN.lock() {
            *screen = None;
        }
        // A run that ended without its last event (an error) still leaves the rows as they
        // were, not a spinner that stops mid-line.
        if let Some(h) = &self.header {
            h.abandon();
        }
        for row in self.rows.iter().filter(|r| !r.done) {
            row.bar.abandon();
        }
    }
}
