//! The timeline (a row per stage instance, a bar per attempt, the waits between attempts) and
//! the per-stage duration histograms, as numbers a template places with CSS and SVG.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rundir::event::AttemptOutcome;
use crate::rundir::history::{InstanceHistory, InstanceStatus, RunHistory};

/// Seconds since the epoch of an RFC 3339 time; `None` when it does not parse.
pub(crate) fn seconds(ts: &str) -> Option<f64> {
    ts.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond() as f64 / 1000.0)
}

/// One bar or wait on a row, in percent of the timeline's width.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Span {
    pub left: String,
    pub width: String,
    /// CSS class: `succeeded`, `failed`, `timed-out`, `cancelled`, `crashed`, `running`, `wait`.
    pub class: &'static str,
    pub title: String,
}

/// One stage instance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub instance: String,
    pub status: &'static str,
    pub attempts: usize,
    pub spans: Vec<Span>,
}

/// The rows of one scene (or of the run's once-per-run stages).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Group {
    pub title: String,
    pub rows: Vec<Row>,
}

/// A time mark on the axis.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tick {
    pub left: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Timeline {
    pub total: String,
    pub ticks: Vec<Tick>,
    pub groups: Vec<Group>,
}

fn outcome_class(o: Option<AttemptOutcome>) -> &'static str {
    match o {
        Some(AttemptOutcome::Succeeded) => "succeeded",
        Some(AttemptOutcome::Failed) => "failed",
        Some(AttemptOutcome::TimedOut) => "timed-out",
        Some(AttemptOutcome::Cancelled) => "cancelled",
        Some(AttemptOutcome::Crashed) => "crashed",
        None => "running",
    }
}

pub(crate) fn status_class(s: &InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Succeeded { flaky: true, .. } => "flaky",
        InstanceStatus::Succeeded { .. } => "succeeded",
        InstanceStatus::Failed { .. } => "failed",
        InstanceStatus::Skipped { .. } => "skipped",
        InstanceStatus::Pending => "pending",
    }
}

/// The name a serde enum is written with (`short-frames`, `maxWait`).
pub(crate) fn name_of<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x.clamp(0.0, 100.0))
}

/// A duration as people read it: `850 ms`, `12.4 s`, `3 min 5 s`.
pub(crate) fn human(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {:.0} s", (s / 60.0).floor(), s % 60.0)
    }
}

/// The first attempt's start and the last end (or start) of the run, in epoch seconds.
fn bounds(h: &RunHistory) -> Option<(f64, f64)> {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for a in h.instances.iter().flat_map(|i| &i.attempts) {
        if let Some(s) = seconds(&a.started) {
            lo = lo.min(s);
            hi = hi.max(s);
        }
        if let Some(e) = a.finished.as_deref().and_then(seconds) {
            hi = hi.max(e);
        }
    }
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

fn row(i: &InstanceHistory, t0: f64, span: f64) -> Row {
    let at = |s: f64| (s - t0) / span * 100.0;
    let mut spans = Vec::new();
    let mut prev_end: Option<f64> = None;
    for a in &i.attempts {
        let Some(start) = seconds(&a.started) else {
            continue;
        };
        if let Some(end) = prev_end.filter(|e| start > *e) {
            spans.push(Span {
                left: pct(at(end)),
                width: pct(at(start) - at(end)),
                class: "wait",
                title: format!(
                    "{} waited {} before attempt {}",
                    i.id,
                    human(start - end),
                    a.attempt
                ),
            });
        }
        let end = a
            .finished
            .as_deref()
            .and_then(seconds)
            .or_else(|| a.duration_s.map(|d| start + d))
            .unwrap_or(start);
        let mut title = format!(
            "{} attempt {} (session {}): {}",
            i.id,
            a.attempt,
            a.session,
            outcome_class(a.outcome)
        );
        if let Some(d) = a.duration_s {
            title.push_str(&format!(", {}", human(d)));
        }
        if let Some(c) = a.class {
            title.push_str(&format!(", {}", name_of(&c)));
        }
        if let Some(e) = &a.error {
            title.push_str(&format!(": {e}"));
        }
        spans.push(Span {
            left: pct(at(start)),
            // Wide enough to see and hover, however short the attempt.
            width: pct((at(end) - at(start)).max(0.4)),
            class: outcome_class(a.outcome),
            title,
        });
        prev_end = Some(end);
    }
    Row {
        instance: i.id.to_string(),
        status: status_class(&i.status),
        attempts: i.attempts.len(),
        spans,
    }
}

/// The timeline: the once-per-run stages first, then one group per item (scene), in the
/// spec's stage order. `scene_ids[i]` names item `i`.
pub(crate) fn timeline(h: &RunHistory, scene_ids: &[String]) -> Timeline {
    let (t0, t1) = bounds(h).unwrap_or((0.0, 0.0));
    let span = (t1 - t0).max(0.001);
    let mut run_rows = Vec::new();
    let mut items: BTreeMap<u32, Vec<Row>> = BTreeMap::new();
    for i in h.ordered() {
        let r = row(i, t0, span);
        match i.id.item {
            None => run_rows.push(r),
            Some(n) => items.entry(n).or_default().push(r),
        }
    }
    let mut groups = Vec::new();
    if !run_rows.is_empty() {
        groups.push(Group {
            title: "run".to_owned(),
            rows: run_rows,
        });
    }
    for (n, rows) in items {
        let title = scene_ids
            .get(n as usize)
            .map_or_else(|| format!("item {n}"), |id| format!("scene {id}"));
        groups.push(Group { title, rows });
    }
    let ticks = (0..=4)
        .map(|k| Tick {
            left: pct(f64::from(k) * 25.0),
            label: format!("+{}", human(span * f64::from(k) / 4.0)),
        })
        .collect();
    Timeline {
        total: human(t1 - t0),
        ticks,
        groups,
    }
}

/// One bar of a histogram, in SVG user units.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub title: String,
}

/// The attempt durations of one stage.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Histogram {
    pub stage: String,
    pub n: usize,
    pub min: String,
    pub median: String,
    pub max: String,
    pub bars: Vec<Bar>,
}

/// Width and height of a histogram's plot area, in SVG units.
const PLOT_W: f64 = 240.0;
const PLOT_H: f64 = 60.0;
const BINS: usize = 12;

/// Every finished attempt's duration, binned per stage, stages in the spec's order.
pub(crate) fn histograms(h: &RunHistory) -> Vec<Histogram> {
    let mut by_stage: Vec<(String, Vec<f64>)> = Vec::new();
    for i in h.ordered() {
        let ds = i.attempts.iter().filter_map(|a| a.duration_s);
        match by_stage.iter_mut().find(|(s, _)| *s == i.id.stage) {
            Some((_, v)) => v.extend(ds),
            None => by_stage.push((i.id.stage.clone(), ds.collect())),
        }
    }
    by_stage
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(stage, mut v)| {
            v.sort_by(f64::total_cmp);
            let (lo, hi) = (v[0], v[v.len() - 1]);
            let width = ((hi - lo) / BINS as f64).max(1e-9);
            let mut counts = [0usize; BINS];
            for d in &v {
                let b = (((d - lo) / width) as usize).min(BINS - 1);
                counts[b] += 1;
            }
            let most = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
            let bw = PLOT_W / BINS as f64;
            let bars = counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(b, c)| {
                    let bh = (*c as f64 / most * PLOT_H).max(1.0);
                    let from = lo + width * b as f64;
                    Bar {
                        x: format!("{:.1}", bw * b as f64),
                        y: format!("{:.1}", PLOT_H - bh),
                        w: format!("{:.1}", bw - 1.0),
                        h: format!("{bh:.1}"),
                        title: format!(
                            "{c} attempt{} of {} to {}",
                            if *c == 1 { "" } else { "s" },
                            human(from),
                            human(from + width)
                        ),
                    }
                })
                .collect();
            Histogram {
                n: v.len(),
                min: human(lo),
                median: human(v[v.len() / 2]),
                max: human(hi),
                stage,
                bars,
            }
        })
        .collect()
}
