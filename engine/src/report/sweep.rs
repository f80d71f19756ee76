//! The view of a sweep folder: `sweep.json` read as its type ([`SweepReport`]), flaky and
//! failing (spec, profile) first, each with its KPIs and a trend over its repeats, then a
//! section per run folder (the run report, with fewer frames per scene).

use std::path::Path;

use serde::Serialize;

use super::ReportError;
use super::links::Links;
use super::run::{Kpi, RunView};
use super::thumbs::ThumbOptions;
use super::timeline::human;
use crate::sweep::verdict::{Percentiles, SpecVerdict, SweepReport};

/// Frames per scene in a sweep's run sections: a sweep has many runs of one spec.
const SWEEP_FRAMES_PER_SCENE: usize = 3;

#[derive(Debug, Serialize)]
pub(crate) struct SweepView {
    pub suite: String,
    pub result: String,
    pub tone: &'static str,
    pub planned: u32,
    pub finished: u32,
    pub partition: Option<String>,
    pub verdicts: Vec<VerdictView>,
    pub runs: Vec<RunView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RunLink {
    pub label: String,
    pub href: String,
    pub tone: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct VerdictView {
    pub spec: String,
    pub profile: String,
    pub status: String,
    pub tone: &'static str,
    pub runs: u32,
    pub passed: u32,
    pub failed: u32,
    pub retried: u32,
    pub pass_rate: String,
    pub failures: Vec<String>,
    pub gate_failures: Vec<String>,
    pub warnings: Vec<String>,
    pub kpis: Vec<Kpi>,
    pub run_links: Vec<RunLink>,
    /// Each repeat's wall time, as bars (SVG units, 120 × 30).
    pub trend: Vec<TrendBar>,
}

/// One repeat's bar in a verdict's trend.
#[derive(Debug, Serialize)]
pub(crate) struct TrendBar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub tone: &'static str,
    pub title: String,
}

/// Broken first, then flaky, then a (spec, profile) that failed a gate, then the rest.
fn rank(v: &SpecVerdict) -> u8 {
    match v.status.as_str() {
        "broken" => 0,
        "flaky" => 1,
        _ if !v.gate_failures.is_empty() => 2,
        _ => 3,
    }
}

fn tone(status: &str) -> &'static str {
    match status {
        "stable" | "pass" => "good",
        "broken" | "fail" => "bad",
        _ => "other",
    }
}

fn pct(p: &Percentiles) -> String {
    match (p.p50, p.p95) {
        (Some(a), Some(b)) => format!("{} / {}", human(a), human(b)),
        _ => "—".to_owned(),
    }
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

impl SweepView {
    pub(crate) fn read(
        dir: &Path,
        links: &Links,
        opts: ThumbOptions,
    ) -> Result<SweepView, ReportError> {
        let path = dir.join(crate::sweep::execute::REPORT);
        let text = std::fs::read_to_string(&path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        let mut report: SweepReport =
            serde_json::from_str(&text).map_err(|e| ReportError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
        report.verdicts.sort_by_key(rank);
        let run_opts = ThumbOptions {
            frames_per_scene: match opts.frames_per_scene {
                0 => SWEEP_FRAMES_PER_SCENE,
                n => n.min(SWEEP_FRAMES_PER_SCENE),
            },
            ..opts
        };
        let mut runs = Vec::new();
        let mut verdicts = Vec::new();
        for v in &report.verdicts {
            let mut run_links = Vec::new();
            let mut seconds = Vec::new();
            for (repeat, rel) in v.run_dirs.iter().enumerate() {
                let run_dir = dir.join(rel);
                let label = format!("#{}", repeat + 1);
                match RunView::read(&run_dir, &links.below(rel), run_opts) {
                    Ok(mut view) => {
                        // Two specs' runs may share an id only across folders; the folder is unique.
                        view.anchor = format!("run-{}", rel.replace(['/', '\\'], "-"));
                        seconds.push((view.seconds, view.tone));
                        run_links.push(RunLink {
                            label,
                            href: format!("#{}", view.anchor),
                            tone: view.tone,
                        });
                        runs.push(view);
                    }
                    Err(_) => run_links.push(RunLink {
                        label: format!("{label} (unreadable)"),
                        href: links.href(rel),
                        tone: "bad",
                    }),
                }
            }
            let most = seconds
                .iter()
                .filter_map(|(s, _)| *s)
                .fold(0.0_f64, f64::max)
                .max(0.001);
            let bw = 120.0 / seconds.len().max(1) as f64;
            let trend = seconds
                .iter()
                .enumerate()
                .map(|(i, &(s, t))| {
                    let h = s.map_or(2.0, |s| (s / most * 30.0).max(2.0));
                    TrendBar {
                        tone: t,
                        x: format!("{:.1}", bw * i as f64),
                        y: format!("{:.1}", 30.0 - h),
                        w: format!("{:.1}", (bw - 1.0).max(1.0)),
                        h: format!("{h:.1}"),
                        title: format!(
                            "repeat {}: {} ({t})",
                            i + 1,
                            s.map_or_else(|| "no end".to_owned(), human)
                        ),
                    }
                })
                .collect();
            let k = &v.kpis;
            verdicts.push(VerdictView {
                spec: v.spec.clone(),
                profile: v.profile.clone(),
                status: v.status.clone(),
                tone: tone(&v.status),
                runs: v.runs,
                passed: v.passed,
                failed: v.failed,
                retried: v.retried,
                pass_rate: format!(
                    "{:.0}% ({:.0}–{:.0}%)",
                    v.pass_rate * 100.0,
                    v.pass_rate_low * 100.0,
                    v.pass_rate_high * 100.0
                ),
                failures: v
                    .failures
                    .iter()
                    .map(|(f, n)| format!("{f} ×{n}"))
                    .collect(),
                gate_failures: v.gate_failures.clone(),
                warnings: v.warnings.clone(),
                kpis: vec![
                    Kpi {
                        name: "telemetry complete",
                        value: rate(Some(k.telemetry_complete)),
                    },
                    Kpi {
                        name: "done-marker rate",
                        value: rate(k.done_marker_rate),
                    },
                    Kpi {
                        name: "zero-frame scenes",
                        value: rate(k.zero_frame_scene_rate),
                    },
                    Kpi {
                        name: "scene P50 / P95",
                        value: pct(&k.scene_seconds),
                    },
                    Kpi {
                        name: "run P50 / P95",
                        value: pct(&k.run_seconds),
                    },
                ],
                run_links,
                trend,
            });
        }
        Ok(SweepView {
            suite: report.suite,
            tone: tone(&report.result),
            result: report.result,
            planned: report.planned,
            finished: report.finished,
            partition: report.partition,
            verdicts,
            runs,
        })
    }

    pub(crate) fn thumbnail_count(&self) -> usize {
        self.runs.iter().map(RunView::thumbnail_count).sum()
    }
}
