//! Plain progress lines for a stderr that is not a terminal (a CI log, a file): one per
//! noteworthy event of the run, the same events the live display draws.

use std::io::Write;

use crate::exec::{AttemptOutcome, Event, EventKind, Observer};

/// Writes one line per started, finished, retried, requeued, failed or skipped instance.
pub struct Lines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> Lines<W> {
    pub fn new(out: W) -> Lines<W> {
        Lines { out }
    }
}

impl<W: Write + Send> Observer for Lines<W> {
    fn event(&mut self, e: &Event) {
        let line = match &e.kind {
            EventKind::RunStarted {
                run_id,
                session,
                unbuilt_kinds,
                ..
            } => {
                let mut l = if *session > 1 {
                    format!("resuming run {run_id} (session {session})")
                } else {
                    format!("run {run_id}")
                };
                if !unbuilt_kinds.is_empty() {
                    l.push_str(&format!(
                        "\nerror: stage kinds not built yet: {}; the run goes as far as it can without them",
                        unbuilt_kinds.join(", ")
                    ));
                }
                l
            }
            EventKind::FannedOut { list, count } => format!("  {list}: {count} items"),
            EventKind::AttemptStarted { instance, attempt } => {
                if *attempt > 1 {
                    format!("  start   {instance} (attempt {attempt})")
                } else {
                    format!("  start   {instance}")
                }
            }
            EventKind::AttemptFinished {
                instance,
                attempt,
                outcome,
                duration_s,
                class,
                error,
                retry_in_s,
            } => match outcome {
                AttemptOutcome::Succeeded => return,
                _ => {
                    let class = class.map_or(String::new(), |c| {
                        serde_json::to_value(c)
                            .ok()
                            .and_then(|v| v.as_str().map(|s| format!(" ({s})")))
                            .unwrap_or_default()
                    });
                    let next = retry_in_s.map_or(String::new(), |s| format!("; retry in {s:.1}s"));
                    format!(
                        "  attempt {instance} #{attempt} {}{class} after {duration_s:.1}s: {}{next}",
                        outcome_word(*outcome),
                        error.as_deref().unwrap_or("")
                    )
                }
            },
            EventKind::Requeued {
                instance,
                target,
                budget_left,
                ..
            } => format!("  requeue {target} (asked by {instance}; {budget_left} retries left)"),
            EventKind::Succeeded {
                instance, flaky, ..
            } => {
                if *flaky {
                    format!("  ok      {instance} (flaky)")
                } else {
                    format!("  ok      {instance}")
                }
            }
            EventKind::Failed {
                instance, error, ..
            } => format!("  FAILED  {instance}: {error}"),
            EventKind::Skipped {
                instance, detail, ..
            } => format!("  skip    {instance}: {detail}"),
            EventKind::InstanceStarted { .. }
            | EventKind::RunFinished { .. }
            | EventKind::RunInterrupted { .. }
            | EventKind::FeedbackGiven { .. } => return,
        };
        let _ = writeln!(self.out, "{line}");
    }
}

fn outcome_word(o: AttemptOutcome) -> &'static str {
    match o {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::TimedOut => "timed out",
        AttemptOutcome::Cancelled => "cancelled",
        AttemptOutcome::Crashed => "crashed",
    }
}
