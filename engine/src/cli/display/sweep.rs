//! What `cinepipe sweep` shows while it sweeps: on a terminal, a live row per (spec, profile)
//! with its runs done out of all, passes, flaky passes, failures and an ETA; elsewhere (a CI
//! log, a file) a plain line per finished run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sweep::SweepProgress;
use crate::sweep::jobs::Job;
use crate::sweep::verdict::RunSummary;

/// How a finished run is shown: `pass`, `pass after retry` or `FAIL (STAGE: CLASS)`.
fn how(r: &RunSummary) -> String {
    match (r.passed(), r.retried) {
        (true, false) => "pass".to_owned(),
        (true, true) => "pass after retry".to_owned(),
        (false, _) => format!(
            "FAIL ({})",
            r.failures.last().map_or(r.outcome.as_str(), String::as_str)
        ),
    }
}

/// A line per finished run, on stderr: `[3/12] spec.toml [fast] #2: pass in 4.1s`.
pub struct SweepLines;

impl SweepProgress for SweepLines {
    fn finished(&self, r: &RunSummary, done: usize, total: usize) {
        eprintln!(
            "[{done}/{total}] {} [{}] #{}: {}{}",
            r.spec,
            r.profile,
            r.repeat,
            how(r),
            r.seconds
                .map(|s| format!(" in {s:.1}s"))
                .unwrap_or_default()
        );
    }
}

/// Says nothing (`--quiet`).
pub struct Silent;

impl SweepProgress for Silent {
    fn finished(&self, _: &RunSummary, _: usize, _: usize) {}
}

#[derive(Default)]
struct Tally {
    planned: u32,
    done: u32,
    running: u32,
    passed: u32,
    flaky: u32,
    failed: u32,
}

struct State {
    rows: IndexMap<(String, String), (Tally, ProgressBar)>,
    header: ProgressBar,
    /// Seconds of the runs finished in this session (the ETA is their mean).
    seconds: Vec<f64>,
    done: usize,
    total: usize,
}

/// The live display: a header (runs done, elapsed, ETA or time left of a stress sweep) and a
/// row per (spec, profile). Failures are also printed above the rows, so they stay on screen.
pub struct SweepLive {
    multi: MultiProgress,
    state: Mutex<State>,
    jobs: usize,
    started: Instant,
    /// A stress sweep's end, for the header.
    deadline: Option<Instant>,
}

impl SweepLive {
    /// A display on stderr (call it only when stderr is a terminal). `jobs`: runs at a time.
    pub fn new(jobs: usize, stress: Option<Duration>) -> SweepLive {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        header.enable_steady_tick(Duration::from_millis(250));
        let started = Instant::now();
        SweepLive {
            multi,
            state: Mutex::new(State {
                rows: IndexMap::new(),
                header,
                seconds: Vec::new(),
                done: 0,
                total: 0,
            }),
            jobs: jobs.max(1),
            started,
            deadline: stress.map(|d| started + d),
        }
    }

    fn redraw(&self, state: &State) {
        let elapsed = self.started.elapsed();
        let left = match self.deadline {
            Some(end) => format!(
                "stress: {} left",
                clock(end.saturating_duration_since(Instant::now()))
            ),
            None => eta(
                &state.seconds,
                state.total.saturating_sub(state.done),
                self.jobs,
            )
            .map_or_else(|| "ETA –".to_owned(), |d| format!("ETA {}", clock(d))),
        };
        state.header.set_message(format!(
            "sweep: {}/{} runs · {} elapsed · {left}",
            state.done,
            state.total,
            clock(elapsed)
        ));
        for ((spec, profile), (t, bar)) in &state.rows {
            bar.set_message(row_line(spec, profile, t));
        }
    }

    fn with_row(&self, spec: &str, profile: &str, f: impl FnOnce(&mut Tally)) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let key = (spec.to_owned(), profile.to_owned());
        if !state.rows.contains_key(&key) {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template("  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            state.rows.insert(key.clone(), (Tally::default(), bar));
        }
        if let Some((t, _)) = state.rows.get_mut(&key) {
            f(t);
        }
        self.redraw(&state);
    }
}

impl SweepProgress for SweepLive {
    fn planned(&self, jobs: &[Job], finished: &[RunSummary]) {
        if let Ok(mut state) = self.state.lock() {
            state.total = jobs.len();
            state.done = finished.len();
            for (_, (t, _)) in state.rows.iter_mut() {
                t.planned = 0;
            }
        }
        for j in jobs {
            self.with_row(&j.spec, &j.profile, |t| t.planned += 1);
        }
        // Runs of an earlier session: counted once, when the display starts.
        if self.state.lock().is_ok_and(|s| s.seconds.is_empty()) {
            for r in finished {
                self.with_row(&r.spec, &r.profile, |t| count(t, r));
            }
        }
    }

    fn started(&self, job: &Job) {
        self.with_row(&job.spec, &job.profile, |t| t.running += 1);
    }

    fn finished(&self, r: &RunSummary, done: usize, total: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.done = done;
            state.total = total;
            if let Some(s) = r.seconds {
                state.seconds.push(s);
            }
        }
        self.with_row(&r.spec, &r.profile, |t| {
            t.running = t.running.saturating_sub(1);
            count(t, r);
        });
        if !r.passed() {
            let _ = self.multi.println(format!(
                "FAIL {} [{}] #{}: {} ({})",
                r.spec,
                r.profile,
                r.repeat,
                how(r),
                r.run_dir
            ));
        }
    }
}

impl Drop for SweepLive {
    fn drop(&mut self) {
        if let Ok(state) = self.state.lock() {
            state.header.finish_and_clear();
            for (_, bar) in state.rows.values() {
                bar.abandon();
            }
        }
    }
}

fn count(t: &mut Tally, r: &RunSummary) {
    t.done += 1;
    match (r.passed(), r.retried) {
        (true, false) => t.passed += 1,
        (true, true) => t.flaky += 1,
        (false, _) => t.failed += 1,
    }
}

fn row_line(spec: &str, profile: &str, t: &Tally) -> String {
    let mut parts = vec![format!("{spec} [{profile}]: {}/{} runs", t.done, t.planned)];
    for (n, what) in [
        (t.running, "running"),
        (t.passed, "pass"),
        (t.flaky, "flaky"),
        (t.failed, "fail"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(" · ")
}

/// Time left: the runs still to do at the mean run time seen so far, `jobs` at a time.
fn eta(seconds: &[f64], left: usize, jobs: usize) -> Option<Duration> {
    if seconds.is_empty() {
        return None;
    }
    let mean = seconds.iter().sum::<f64>() / seconds.len() as f64;
    let secs = mean * left.div_ceil(jobs) as f64;
    secs.is_finite()
        .then(|| Duration::from_secs_f64(secs.max(0.0)))
}

/// `1h02m`, `4m05s`, `12s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_the_mean_run_time_over_the_runs_left_in_parallel() {
        assert_eq!(eta(&[], 5, 1), None);
        assert_eq!(eta(&[2.0, 4.0], 6, 1), Some(Duration::from_secs(18)));
        // 5 runs left, 2 at a time: three more waves of 3 s.
        assert_eq!(eta(&[3.0], 5, 2), Some(Duration::from_secs(9)));
        assert_eq!(clock(Duration::from_secs(12)), "12s");
        assert_eq!(clock(Duration::from_secs(245)), "4m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn a_row_counts_passes_flaky_passes_and_failures_apart() {
        let t = Tally {
            planned: 5,
            done: 3,
            running: 1,
            passed: 1,
            flaky: 1,
            failed: 1,
        };
        assert_eq!(
            row_line("a.toml", "fast", &t),
            "a.toml [fast]: 3/5 runs · 1 running · 1 pass · 1 flaky · 1 fail"
        );
    }
}
