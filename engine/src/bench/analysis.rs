//! `ANALYSIS.md`: the verdict a person can act on, the figures, where the time goes per
//! stage, the plots, the baseline check and how it was measured; all from `results.json`.

use std::fmt::Write as _;

use super::results::{BenchResults, VariantResults};
use super::stats::{MannWhitney, Ratio, Summary};

pub(crate) const ANALYSIS: &str = "ANALYSIS.md";

/// The rank test's level: a difference with a larger p-value is called noise.
pub const SIGNIFICANCE: f64 = 0.05;

/// A difference the runs cannot tell from noise: the ratio's interval contains 1, or the
/// rank test does not reach [`SIGNIFICANCE`] (a bootstrap of a handful of runs draws too
/// narrow an interval; the exact rank test says how little a handful can show).
pub fn within_noise(ratio: &Ratio, mw: Option<&MannWhitney>) -> bool {
    ratio.ci.contains(1.0) || mw.is_some_and(|m| m.p_value >= SIGNIFICANCE)
}

/// One sentence on `candidate` against `reference`.
pub fn verdict(
    reference: &VariantResults,
    candidate: &VariantResults,
    ratio: Option<&Ratio>,
    mw: Option<&MannWhitney>,
) -> String {
    let (c, r) = (&candidate.name, &reference.name);
    let (Some(ratio), Some(cw), Some(rw)) =
        (ratio, &candidate.wall_seconds, &reference.wall_seconds)
    else {
        return format!(
            "`{c}` and `{r}` cannot be compared: {} has no passed run",
            if candidate.wall_seconds.is_none() {
                c
            } else {
                r
            }
        );
    };
    let p = mw.map_or(String::new(), |m| {
        format!(", Mann–Whitney p = {}", p_value(m.p_value))
    });
    let medians = format!("median {:.2} s vs {:.2} s", cw.p50, rw.p50);
    let head = if within_noise(ratio, mw) {
        let few = mw
            .filter(|m| m.method == super::stats::RankMethod::Exact)
            .map(|_| super::stats::smallest_exact_p(cw.n as usize, rw.n as usize))
            .filter(|p| *p >= SIGNIFICANCE)
            .map_or(String::new(), |p| {
                format!(
                    " ({} and {} runs are too few: the rank test cannot go below p = {p:.3}; run more)",
                    cw.n, rw.n
                )
            });
        format!(
            "`{c}` and `{r}` take the same time within noise ({medians}; ratio {:.2}, 95 % CI {:.2}–{:.2}{p}): the runs cannot tell them apart{few}, so choose on other grounds",
            ratio.ratio, ratio.ci.low, ratio.ci.high
        )
    } else if ratio.ci.high < 1.0 {
        format!(
            "`{c}` finishes a run {:.2}× faster than `{r}` ({medians}; 95 % CI {:.2}–{:.2}×{p})",
            1.0 / ratio.ratio,
            1.0 / ratio.ci.high,
            1.0 / ratio.ci.low
        )
    } else {
        format!(
            "`{c}` is {:.2}× slower than `{r}` ({medians}; 95 % CI {:.2}–{:.2}×{p})",
            ratio.ratio, ratio.ci.low, ratio.ci.high
        )
    };
    let rate = |v: &VariantResults| {
        v.kpis
            .done_marker_rate
            .map_or("n/a".to_owned(), |x| format!("{:.0} %", x * 100.0))
    };
    let same_rate = candidate.kpis.done_marker_rate == reference.kpis.done_marker_rate;
    let markers = if same_rate {
        format!("the same done-marker rate ({})", rate(candidate))
    } else {
        format!(
            "done-marker rate {} vs {}",
            rate(candidate),
            rate(reference)
        )
    };
    let zero = if candidate.kpis.zero_frame_scenes == reference.kpis.zero_frame_scenes {
        format!(
            "{} zero-frame scenes in both",
            candidate.kpis.zero_frame_scenes
        )
    } else {
        format!(
            "{} vs {} zero-frame scenes",
            candidate.kpis.zero_frame_scenes, reference.kpis.zero_frame_scenes
        )
    };
    let failed = if candidate.failed + reference.failed > 0 {
        format!(
            "; {} of {} and {} of {} runs failed",
            candidate.failed, candidate.runs, reference.failed, reference.runs
        )
    } else {
        String::new()
    };
    format!("{head}, with {markers} and {zero}{failed}.")
}

fn p_value(p: f64) -> String {
    if p < 1e-300 {
        "< 1e-300".to_owned()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn ci(s: &Summary) -> String {
    format!("{:.2} ({:.2}–{:.2})", s.p50, s.p50_ci.low, s.p50_ci.high)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or("–".to_owned(), f)
}

/// The whole document.
pub fn markdown(r: &BenchResults) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Bench `{}`: {}\n",
        r.name,
        r.variants
            .iter()
            .map(|v| format!("`{}`", v.name))
            .collect::<Vec<_>>()
            .join(" vs ")
    );
    if r.status != "complete" {
        let _ = writeln!(
            md,
            "> **Incomplete**: {} of {} runs finished; `cinepipe bench --resume` finishes it.\n",
            r.finished, r.planned
        );
    }
    let _ = writeln!(md, "## Verdict\n");
    for c in &r.comparisons {
        let _ = writeln!(md, "- {}", c.verdict);
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(
            md,
            "- Against the baseline `{}`: {}",
            b.path,
            if b.regressed {
                format!(
                    "**regressed** past the {:.0} % allowed.",
                    b.max_regression * 100.0
                )
            } else {
                format!(
                    "no variant regressed past the {:.0} % allowed.",
                    b.max_regression * 100.0
                )
            }
        );
    }
    let _ = writeln!(md, "\n## Figures\n");
    let _ = writeln!(
        md,
        "Wall seconds of the passed measured runs: median with its 95 % bootstrap interval, then mean, P95, P99, min, max. Warm-up runs are listed in `results.json`, not counted here.\n"
    );
    let _ = writeln!(
        md,
        "| variant | profile | runs | passed | failed | flaky | wall P50 (95 % CI) | mean | P95 | P99 | min | max | scene P50 (95 % CI) | LLM tokens/s | done-marker rate | zero-frame scenes | forced copies | quality passed |"
    );
    let _ = writeln!(md, "|{}", "---|".repeat(18));
    for v in &r.variants {
        let w = v.wall_seconds.as_ref();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            v.name,
            if v.overlay.is_some() {
                format!("{} + overlay", v.base_profile)
            } else {
                v.profile.clone()
            },
            v.runs,
            v.passed,
            v.failed,
            v.flaky,
            opt(w, ci),
            opt(w, |s| format!("{:.2}", s.mean)),
            opt(w, |s| format!("{:.2}", s.p95)),
            opt(w, |s| format!("{:.2}", s.p99)),
            opt(w, |s| format!("{:.2}", s.min)),
            opt(w, |s| format!("{:.2}", s.max)),
            opt(v.scene_seconds.as_ref(), ci),
            opt(v.llm_tokens_per_second.as_ref(), |s| format!(
                "{:.1}",
                s.p50
            )),
            opt(v.kpis.done_marker_rate, |x| format!("{:.0} %", x * 100.0)),
            v.kpis.zero_frame_scenes,
            v.kpis.forced_copies,
            opt(v.kpis.quality_pass_rate, |x| format!("{:.0} %", x * 100.0)),
        );
    }
    if !r.comparisons.is_empty() {
        let _ = writeln!(
            md,
            "\n| candidate / reference | wall median ratio (95 % CI) | scene median ratio (95 % CI) | Mann–Whitney U | p (two-sided) | within noise |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for c in &r.comparisons {
            let ratio = |x: Option<&Ratio>| {
                opt(x, |x| {
                    format!("{:.3} ({:.3}–{:.3})", x.ratio, x.ci.low, x.ci.high)
                })
            };
            let _ = writeln!(
                md,
                "| `{}` / `{}` | {} | {} | {} | {} | {} |",
                c.candidate,
                c.reference,
                ratio(c.wall_ratio.as_ref()),
                ratio(c.scene_ratio.as_ref()),
                opt(c.mann_whitney, |m| format!("{:.1}", m.u)),
                opt(c.mann_whitney, |m| format!(
                    "{} ({:?})",
                    p_value(m.p_value),
                    m.method
                )
                .to_lowercase()),
                if c.within_noise { "yes" } else { "no" }
            );
        }
    }
    let _ = writeln!(md, "\n## Where the time goes\n");
    let _ = writeln!(
        md,
        "Median seconds per run spent in each stage (its attempts added up; scenes of a per-scene stage added up), passed runs only.\n"
    );
    let mut stages: Vec<&String> = r
        .variants
        .iter()
        .flat_map(|v| v.stage_seconds.keys())
        .collect();
    stages.sort();
    stages.dedup();
    let _ = writeln!(
        md,
        "| stage | {} |",
        r.variants
            .iter()
            .map(|v| format!("`{}`", v.name))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(r.variants.len()));
    for s in stages {
        let _ = writeln!(
            md,
            "| {s} | {} |",
            r.variants
                .iter()
                .map(|v| opt(v.stage_seconds.get(s), |f| format!("{:.3}", f.p50)))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(md, "\n## Plots\n");
    let _ = writeln!(
        md,
        "![wall seconds per run, by variant]({})\n",
        super::plots::HISTOGRAM
    );
    let _ = writeln!(
        md,
        "![every measured run, by round]({})\n",
        super::plots::SCATTER
    );
    if let Some(b) = &r.baseline {
        let _ = writeln!(md, "## Against the baseline\n");
        for v in &b.variants {
            let _ = writeln!(md, "- {}", v.message);
        }
        let _ = writeln!(md);
    }
    let e = &r.environment;
    let _ = writeln!(md, "## Environment\n");
    let _ = writeln!(
        md,
        "- cinepipe {}; spec `{}` (SHA-256 `{}`)",
        e.cinepipe_version, e.spec, e.spec_hash
    );
    let _ = writeln!(
        md,
        "- host: {} {}, {} cores{}; renders on {}",
        e.host.os,
        e.host.arch,
        e.host.cpu_cores,
        opt(e.host.cpu_model.as_ref(), |m| format!(" ({m})")),
        e.host.render_device.as_deref().unwrap_or("unknown")
    );
    for s in &e.servers {
        let _ = writeln!(
            md,
            "- `{}` ({}) at {}: {}",
            s.service,
            s.kind,
            s.url,
            match (&s.error, s.kind.as_str()) {
                (Some(err), _) => format!("not asked ({err})"),
                (None, "comfyui") => format!(
                    "ComfyUI {}, PyTorch {}, Python {}, device {}",
                    s.version.as_deref().unwrap_or("(version not reported)"),
                    s.pytorch_version.as_deref().unwrap_or("?"),
                    s.python_version.as_deref().unwrap_or("?"),
                    s.device.as_deref().unwrap_or("?")
                ),
                (None, _) => format!("models {}", s.models.join(", ")),
            }
        );
    }
    let _ = writeln!(md, "\n## Method\n");
    let _ = writeln!(
        md,
        "{} measured runs of each variant after {} warm-up run(s), interleaved: each round runs every variant once, in an order shuffled per round from seed {} (so both see the same drift of the machine). Percentiles are type 7 (NumPy's default); intervals are 95 % percentile bootstraps of {} resamples from the same seed; the ratio is median(candidate) / median(reference), within noise when its interval contains 1 or the rank test's p is 0.05 or more; the Mann–Whitney U test is two-sided (exact without ties when a side has at most 8 runs, else the normal approximation with tie and continuity corrections, as SciPy).",
        r.runs_per_variant, r.warmup_per_variant, r.bootstrap.seed, r.bootstrap.resamples
    );
    md
}
