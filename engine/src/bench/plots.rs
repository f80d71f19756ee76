//! The bench's plots, as SVG (`plotters`): a histogram of each variant's wall times and a
//! scatter of every run in the order it ran (drift, warm-up effects and outliers show there).

use plotters::prelude::*;

use super::results::BenchResults;

pub(crate) const HISTOGRAM: &str = "wall-histogram.svg";
pub(crate) const SCATTER: &str = "wall-scatter.svg";

const SIZE: (u32, u32) = (900, 420);

fn colour(i: usize) -> RGBColor {
    // Colour-blind-safe (Okabe–Ito).
    const C: [RGBColor; 6] = [
        RGBColor(0, 114, 178),
        RGBColor(230, 159, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(86, 180, 233),
        RGBColor(213, 94, 0),
    ];
    C[i % C.len()]
}

/// Each plot's file name and its SVG text. A plot that cannot be drawn (no measured run with
/// a time) is an SVG that says so, so the links of `ANALYSIS.md` always lead somewhere.
pub fn plots(results: &BenchResults) -> Vec<(String, String)> {
    vec![
        (
            HISTOGRAM.to_owned(),
            histogram(results).unwrap_or_else(|e| empty(&e)),
        ),
        (
            SCATTER.to_owned(),
            scatter(results).unwrap_or_else(|e| empty(&e)),
        ),
    ]
}

fn empty(why: &str) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (600, 60)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = root.draw(&Text::new(
            format!("no plot: {why}"),
            (10, 20),
            ("sans-serif", 16).into_font(),
        ));
        let _ = root.present();
    }
    svg
}

/// (variant index, run order, seconds) of every measured run with a time.
fn points(results: &BenchResults) -> Vec<(usize, u32, f64)> {
    let mut out = Vec::new();
    for (i, v) in results.variants.iter().enumerate() {
        for r in &v.run_figures {
            if let Some(s) = r.wall_seconds {
                out.push((i, r.round, s));
            }
        }
    }
    out
}

fn range(points: &[(usize, u32, f64)]) -> Result<(f64, f64), String> {
    let lo = points.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return Err("no measured run has a wall time".into());
    }
    let pad = ((hi - lo) * 0.05).max(0.05);
    Ok(((lo - pad).max(0.0), hi + pad))
}

fn histogram(results: &BenchResults) -> Result<String, String> {
    let pts = points(results);
    let (lo, hi) = range(&pts)?;
    const BINS: usize = 24;
    let width = (hi - lo) / BINS as f64;
    let mut counts = vec![vec![0u32; BINS]; results.variants.len()];
    for (i, _, s) in &pts {
        let b = (((s - lo) / width) as usize).min(BINS - 1);
        counts[*i][b] += 1;
    }
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("wall seconds per run, by variant", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0u32..top + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("wall seconds")
            .y_desc("runs")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, v) in results.variants.iter().enumerate() {
            let c = colour(i);
            let bars = counts[i]
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(b, n)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0), (x0 + width, *n)], c.mix(0.45).filled())
                });
            chart
                .draw_series(bars)
                .map_err(|e| e.to_string())?
                .label(v.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

fn scatter(results: &BenchResults) -> Result<String, String> {
    let pts = points(results);
    let (lo, hi) = range(&pts)?;
    let last = pts.iter().map(|p| p.1).max().unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption("every measured run, by round", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0u32..last + 1, lo..hi)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("round")
            .y_desc("wall seconds")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, v) in results.variants.iter().enumerate() {
            let c = colour(i);
            let mine = pts.iter().filter(|p| p.0 == i);
            chart
                .draw_series(mine.map(|p| Circle::new((p.1, p.2), 4, c.filled())))
                .map_err(|e| e.to_string())?
                .label(v.name.clone())
                .legend(move |(x, y)| Circle::new((x + 6, y), 4, c.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
