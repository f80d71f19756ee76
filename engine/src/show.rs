//! `cinepipe runs` (the runs under an output folder, one line each) and `cinepipe show` (one run
//! in detail), both read from the run folders alone ([`RunHistory`]), so they work for runs
//! that are running, failed, were interrupted or were killed.

use std::fmt::Write as _;
use std::path::Path;

use crate::rundir::history::{InstanceStatus, RunHistory, run_dirs};
use crate::telemetry::{METADATA_FILE, SUMMARY_FILE};

/// The table of `cinepipe runs`: oldest first, newest last (next to the prompt). A folder that
/// cannot be read is a row that says so, not an error.
pub fn runs_table(dir: &Path) -> std::io::Result<(String, usize)> {
    let dirs = run_dirs(dir)?;
    let mut rows: Vec<[String; 7]> = vec![[
        "RUN".into(),
        "STARTED".into(),
        "OUTCOME".into(),
        "SESSIONS".into(),
        "INSTANCES".into(),
        "SCENES".into(),
        "NAME".into(),
    ]];
    for d in &dirs {
        let name = d
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(h) = RunHistory::read(d) else {
            rows.push([
                name,
                "-".into(),
                "unreadable".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            continue;
        };
        let c = h.counts();
        let mut counts = format!("{} ok", c.succeeded);
        for (n, what) in [
            (c.failed, "failed"),
            (c.skipped, "skipped"),
            (c.pending, "pending"),
            (c.flaky, "flaky"),
        ] {
            if n > 0 {
                let _ = write!(counts, ", {n} {what}");
            }
        }
        let mut outcome = h.state().to_owned();
        if !h.problems.is_empty() {
            outcome.push_str(" (damaged)");
        }
        rows.push([
            h.run_id.clone(),
            h.started().map_or("-".into(), short_time),
            outcome,
            h.sessions.len().to_string(),
            counts,
            h.lists
                .first()
                .map(|(_, n)| *n as usize)
                .or_else(|| metadata_scenes(d))
                .map_or("-".into(), |n| n.to_string()),
            run_name(d).unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok((out, dirs.len()))
}

/// The scenes `artifact-metadata.json` records (a run whose stages do not fan out still has
/// its story's scenes there).
pub(crate) fn metadata_scenes(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join(METADATA_FILE)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("Scenes")?.as_array().map(Vec::len)
}

/// `run.name`, from the resolved spec.
pub(crate) fn run_name(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::rundir::RESOLVED_SPEC)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.pointer("/run/name")?.as_str().map(str::to_owned)
}

/// `2026-11-21T12:03:05.123Z` → `2026-11-21 12:03:05Z`.
fn short_time(ts: &str) -> String {
    let t = ts.replacen('T', " ", 1);
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t,
    }
}

/// Whether a folder looks like a run folder at all.
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join(crate::rundir::MANIFEST).exists() || dir.join(crate::rundir::EVENTS).exists()
}

/// The text of `cinepipe show`.
pub fn show_run(h: &RunHistory) -> String {
    let mut s = String::new();
    let dir = h.dir.display();
    let _ = writeln!(s, "run {}", h.run_id);
    if let Some(name) = run_name(&h.dir) {
        let _ = writeln!(s, "  name       {name}");
    }
    if let Some(m) = &h.manifest {
        let _ = writeln!(s, "  spec       {}", m.spec.display());
        let _ = writeln!(s, "  profile    {}", m.profile);
    }
    if let Some(t) = h.started() {
        let _ = writeln!(s, "  started    {}", short_time(t));
    }
    let mut outcome = h.state().to_owned();
    if let Some(end) = h.sessions.last().and_then(|x| x.end.as_ref()) {
        let _ = write!(
            outcome,
            " (ended {}, last session {:.1}s)",
            short_time(&end.ts),
            end.duration_s
        );
    }
    match h.state() {
        "killed" | "interrupted" | "failed" => {
            let _ = write!(outcome, "; finish it with: cinepipe run --resume {dir}");
        }
        _ => {}
    }
    let _ = writeln!(s, "  outcome    {outcome}");
    let _ = writeln!(s, "  sessions   {}", h.sessions.len());
    let c = h.counts();
    let _ = writeln!(
        s,
        "  instances  {} succeeded, {} failed, {} skipped, {} pending, {} flaky",
        c.succeeded, c.failed, c.skipped, c.pending, c.flaky
    );
    for (list, n) in &h.lists {
        let _ = writeln!(s, "  list       {list}: {n} items");
    }

    let ordered = h.ordered();
    if !ordered.is_empty() {
        let _ = writeln!(s, "\nstage instances:");
        let width = ordered
            .iter()
            .map(|i| i.id.to_string().len())
            .max()
            .unwrap_or(0);
        for i in &ordered {
            let (state, extra) = match &i.status {
                InstanceStatus::Succeeded { flaky: true, .. } => ("succeeded", " flaky"),
                InstanceStatus::Succeeded { .. } => ("succeeded", ""),
                InstanceStatus::Failed { .. } => ("FAILED", ""),
                InstanceStatus::Skipped { .. } => ("skipped", ""),
                InstanceStatus::Pending => ("pending", ""),
            };
            let n = i.attempts.len();
            let secs: f64 = i.attempts.iter().filter_map(|a| a.duration_s).sum();
            let mut line = format!(
                "  {:<width$}  {state:<9}  {n} attempt{}",
                i.id.to_string(),
                if n == 1 { "" } else { "s" }
            );
            if n > 0 {
                let _ = write!(line, "  {secs:.1}s");
            }
            line.push_str(extra);
            if let InstanceStatus::Skipped { detail } = &i.status {
                let _ = write!(line, "  ({detail})");
            }
            let _ = writeln!(s, "{}", line.trim_end());
        }
    }

    let failed: Vec<String> = ordered
        .iter()
        .flat_map(|i| {
            i.attempts.iter().filter_map(move |a| {
                let err = a.error.as_deref()?;
                let class = a
                    .class
                    .and_then(|c| serde_json::to_value(c).ok())
                    .and_then(|v| v.as_str().map(|s| format!(", {s}")))
                    .unwrap_or_default();
                let mut lines = err.lines();
                let mut text = format!(
                    "  {} attempt {}{class}: {}",
                    i.id,
                    a.attempt,
                    lines.next().unwrap_or("")
                );
                for l in lines {
                    let _ = write!(text, "\n      {l}");
                }
                Some(text)
            })
        })
        .chain(ordered.iter().filter_map(|i| match &i.status {
            // A failure with no failed attempt: the instance could not run at all.
            InstanceStatus::Failed { error, .. }
                if i.attempts.iter().all(|a| a.error.is_none()) =>
            {
                Some(format!("  {}: {error}", i.id))
            }
            _ => None,
        }))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nfailures:");
        for f in failed {
            let _ = writeln!(s, "{f}");
        }
    }

    let _ = writeln!(s, "\nfiles:");
    let file = |name: &str| {
        let p = h.dir.join(name);
        let mark = if p.exists() { "" } else { "  (missing)" };
        format!("{}{mark}", p.display())
    };
    let _ = writeln!(s, "  journal    {}", file(crate::rundir::EVENTS));
    let _ = writeln!(s, "  metadata   {}", file(METADATA_FILE));
    let _ = writeln!(s, "  summary    {}", file(SUMMARY_FILE));
    let _ = writeln!(s, "  outputs    {}", file("stages"));
    let _ = writeln!(s, "  spec       {}", file(crate::rundir::RESOLVED_SPEC));
    if !h.problems.is_empty() {
        let _ = writeln!(s, "\nproblems:");
        for p in &h.problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    s
}
