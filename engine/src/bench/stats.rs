//! The statistics of a bench: mean, percentiles, seeded bootstrap intervals, the ratio of two
//! medians with its interval, and the Mann–Whitney U rank test.
//!
//! Definitions (each checked against SciPy/NumPy in the tests below):
//! - **percentile**: linear interpolation between the closest ranks, Hyndman & Fan's type 7
//!   (`numpy.percentile`'s default). Nearest rank would make P99 of 20 runs the slowest run,
//!   and jump as runs are added; type 7 moves smoothly.
//! - **bootstrap interval**: the percentile bootstrap, 95 %, `resamples` resamples with
//!   replacement drawn by `fastrand` from a recorded seed, so the same runs and seed give the
//!   same interval on every machine.
//! - **ratio of medians**: `median(candidate) / median(reference)`; its interval pairs the
//!   b-th resample of each group (the groups are resampled independently).
//! - **Mann–Whitney U**, two-sided, as `scipy.stats.mannwhitneyu` does by default: the exact
//!   distribution when there are no ties and one group has at most 8 values, else the normal
//!   approximation with the tie correction and a continuity correction of 0.5.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How intervals are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BootstrapPlan {
    pub resamples: u32,
    pub seed: u64,
}

impl BootstrapPlan {
    pub const DEFAULT_RESAMPLES: u32 = 2000;
}

/// A 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.low <= x && x <= self.high
    }
}

/// Mean and the percentiles of one figure over a variant's runs, with 95 % bootstrap intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub n: u32,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub mean_ci: Interval,
    pub p50_ci: Interval,
    pub p95_ci: Interval,
    pub p99_ci: Interval,
}

/// A summary and the resampled medians it was drawn with (for ratios against another group).
#[derive(Debug, Clone)]
pub struct Summarised {
    pub summary: Summary,
    pub boot_medians: Vec<f64>,
}

/// The arithmetic mean; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The `p`-th quantile (0 ≤ p ≤ 1) of sorted values, type 7; `None` when empty.
pub fn quantile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = p.clamp(0.0, 1.0) * last as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    let (a, b) = (sorted[lo], sorted[hi]);
    Some(a + (h - lo as f64) * (b - a))
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn interval_of(mut draws: Vec<f64>) -> Interval {
    draws.sort_by(f64::total_cmp);
    Interval {
        low: quantile(&draws, 0.025).unwrap_or(f64::NAN),
        high: quantile(&draws, 0.975).unwrap_or(f64::NAN),
    }
}

/// Summarises `values` (non-finite ones are dropped); `None` when nothing is left. One pass of
/// resamples serves every statistic: each resample is sorted once.
pub fn summarise(values: &[f64], plan: BootstrapPlan) -> Option<Summarised> {
    let v = sorted(values);
    let n = v.len();
    let q = |p| quantile(&v, p);
    let (p50, p95, p99) = (q(0.5)?, q(0.95)?, q(0.99)?);
    let b = plan.resamples.max(1) as usize;
    let mut rng = fastrand::Rng::with_seed(plan.seed);
    let (mut means, mut m50, mut m95, mut m99) = (
        Vec::with_capacity(b),
        Vec::with_capacity(b),
        Vec::with_capacity(b),
        Vec::with_capacity(b),
    );
    // A resample of sorted values is described by how often it drew each one: walking those
    // counts visits the resample in order, so no resample is sorted (O(n), not O(n log n):
    // what keeps 10,000 runs within the time budget).
    let mut counts = vec![0u32; n];
    let ranks = |p: f64| p * (n - 1) as f64;
    let wanted = [ranks(0.5), ranks(0.95), ranks(0.99)];
    for _ in 0..b {
        counts.iter_mut().for_each(|c| *c = 0);
        for _ in 0..n {
            counts[rng.usize(..n)] += 1;
        }
        let mut sum = 0.0;
        for (c, x) in counts.iter().zip(&v) {
            sum += f64::from(*c) * x;
        }
        means.push(sum / n as f64);
        let q = resample_quantiles(&counts, &v, wanted);
        m50.push(q[0]);
        m95.push(q[1]);
        m99.push(q[2]);
    }
    let summary = Summary {
        n: u32::try_from(n).unwrap_or(u32::MAX),
        mean: mean(&v)?,
        p50,
        p95,
        p99,
        min: v[0],
        max: v[n - 1],
        mean_ci: interval_of(means),
        p50_ci: interval_of(m50.clone()),
        p95_ci: interval_of(m95),
        p99_ci: interval_of(m99),
    };
    Some(Summarised {
        summary,
        boot_medians: m50,
    })
}

/// Type-7 quantiles at 0-based fractional ranks `at` (ascending) of the resample that drew
/// `counts[i]` copies of `sorted[i]`.
fn resample_quantiles(counts: &[u32], sorted: &[f64], at: [f64; 3]) -> [f64; 3] {
    // The value at 0-based rank r of the resample: the first i whose cumulative count passes r.
    let mut out = [0.0; 3];
    let mut want: Vec<(usize, usize)> = Vec::with_capacity(6);
    for (k, h) in at.iter().enumerate() {
        want.push((h.floor() as usize, k));
    }
    let mut values = [[0.0f64; 2]; 3];
    let mut targets: Vec<(usize, usize, usize)> = Vec::with_capacity(6);
    for (r, k) in want {
        targets.push((r, k, 0));
        targets.push((r + 1, k, 1));
    }
    targets.sort_unstable();
    let last = sorted.len() - 1;
    let mut t = 0;
    let mut seen = 0usize;
    for (i, c) in counts.iter().enumerate() {
        seen += *c as usize;
        while t < targets.len() && (targets[t].0 < seen || i == last) {
            values[targets[t].1][targets[t].2] = sorted[i];
            t += 1;
        }
    }
    for (k, h) in at.iter().enumerate() {
        let frac = h - h.floor();
        let [a, b] = values[k];
        out[k] = if frac == 0.0 { a } else { a + frac * (b - a) };
    }
    out
}

/// `median(candidate) / median(reference)` with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Ratio {
    pub ratio: f64,
    pub ci: Interval,
}

/// The ratio of two summarised groups' medians; `None` when the reference median is 0.
pub fn ratio_of_medians(candidate: &Summarised, reference: &Summarised) -> Option<Ratio> {
    if reference.summary.p50 == 0.0 {
        return None;
    }
    let draws: Vec<f64> = candidate
        .boot_medians
        .iter()
        .zip(&reference.boot_medians)
        .filter(|(_, r)| **r != 0.0)
        .map(|(c, r)| c / r)
        .collect();
    Some(Ratio {
        ratio: candidate.summary.p50 / reference.summary.p50,
        ci: interval_of(draws),
    })
}

/// How a Mann–Whitney p-value was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RankMethod {
    Exact,
    Asymptotic,
}

/// The Mann–Whitney U test of two groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MannWhitney {
    /// U of the first group (SciPy's `statistic`).
    pub u: f64,
    /// Two-sided.
    pub p_value: f64,
    pub method: RankMethod,
}

/// The two-sided Mann–Whitney U test; `None` when a group is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Midranks over both groups, and the tie groups' sizes.
    let mut all: Vec<(f64, bool)> = a.iter().map(|x| (*x, true)).collect();
    all.extend(b.iter().map(|x| (*x, false)));
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        let midrank = (i + j + 1) as f64 / 2.0;
        rank_sum_a += midrank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = rank_sum_a - f1 * (f1 + 1.0) / 2.0;
    let u2 = f1 * f2 - u1;
    let u = u1.max(u2);
    let (p, method) = if tie_term == 0.0 && n1.min(n2) <= 8 {
        (
            exact_sf(u as usize, n1.min(n2), n1.max(n2)),
            RankMethod::Exact,
        )
    } else {
        let n = f1 + f2;
        let sd = (f1 * f2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let z = (u - f1 * f2 / 2.0 - 0.5) / sd;
        (
            0.5 * libm::erfc(z / std::f64::consts::SQRT_2),
            RankMethod::Asymptotic,
        )
    };
    Some(MannWhitney {
        u: u1,
        p_value: (2.0 * p).clamp(0.0, 1.0),
        method,
    })
}

/// The smallest two-sided p-value the exact test can give groups of `m` and `n` values
/// (every value of one group below every value of the other): 2 / C(m+n, m).
pub fn smallest_exact_p(m: usize, n: usize) -> f64 {
    let mut c = 1.0f64;
    for i in 0..m.min(n) {
        c = c * (m + n - i) as f64 / (i + 1) as f64;
    }
    (2.0 / c).min(1.0)
}

/// P(U ≥ k) for groups of sizes m ≤ n without ties: the counts of U are the coefficients of
/// the Gaussian binomial [m+n choose m], built as ∏ (1 − q^(n+i)) / (1 − q^i), i = 1..m; each
/// partial product is itself a polynomial, so the divisions are exact.
fn exact_sf(k: usize, m: usize, n: usize) -> f64 {
    let top = m * n;
    let mut c = vec![0.0f64; top + 1];
    c[0] = 1.0;
    for i in 1..=m {
        let shift = n + i;
        for d in (shift..=top).rev() {
            c[d] -= c[d - shift];
        }
        for d in i..=top {
            c[d] += c[d - i];
        }
    }
    let total: f64 = c.iter().sum();
    c.iter().skip(k).sum::<f64>() / total
}

#[cfg(test)]
mod tests {
    use super::*;

    // The expected values come from SciPy 1.17.1 / NumPy (Python 3), run once; the calls are
    // beside each literal.
    const A: [f64; 10] = [12.1, 11.8, 12.6, 13.0, 11.9, 12.4, 12.2, 14.1, 12.0, 12.3];
    const B: [f64; 10] = [6.4, 6.1, 6.9, 6.3, 6.2, 7.5, 6.6, 6.0, 6.5, 6.3];

    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
    }

    #[test]
    fn mean_and_percentiles_match_numpy() {
        close(mean(&A).expect("mean"), 12.44, 1e-12); // np.mean(A)
        let s = sorted(&A);
        close(quantile(&s, 0.50).expect("p50"), 12.25, 1e-12); // np.percentile(A, 50)
        close(quantile(&s, 0.95).expect("p95"), 13.604999999999999, 1e-12); // np.percentile(A, 95)
        close(quantile(&s, 0.99).expect("p99"), 14.001, 1e-12); // np.percentile(A, 99)
        // np.percentile([3.0, 1.0, 2.0, 10.0], 95)
        close(
            quantile(&sorted(&[3.0, 1.0, 2.0, 10.0]), 0.95).expect("p95"),
            8.949999999999998,
            1e-12,
        );
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // st.mannwhitneyu(A, B, alternative='two-sided') → U=100, p=0.00018165114609146497
        // (asymptotic: both groups have more than 8 values)
        let r = mann_whitney(&A, &B).expect("test");
        assert_eq!((r.u, r.method), (100.0, RankMethod::Asymptotic));
        close(r.p_value, 0.00018165114609146497, 1e-12);
        // With ties: st.mannwhitneyu(c, d, alternative='two-sided') → U=23.5, p=0.027589528525118492
        let c = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0, 5.0, 6.0];
        let d = [2.0, 3.0, 4.0, 4.0, 5.0, 6.0, 6.0, 7.0, 7.0, 8.0, 8.0];
        let r = mann_whitney(&c, &d).expect("test");
        assert_eq!((r.u, r.method), (23.5, RankMethod::Asymptotic));
        close(r.p_value, 0.027589528525118492, 1e-12);
        // Small, no ties → exact: st.mannwhitneyu(e, f, alternative='two-sided')
        // → U=4, p=0.05194805194805195
        let e = [1.1, 2.3, 0.7, 4.2, 3.3];
        let f = [2.0, 5.1, 6.3, 4.9, 7.7, 3.9];
        let r = mann_whitney(&e, &f).expect("test");
        assert_eq!((r.u, r.method), (4.0, RankMethod::Exact));
        close(r.p_value, 0.05194805194805195, 1e-12);
        // st.mannwhitneyu([1,2,3], [4,5,6], method='exact') → U=0, p=0.1
        let r = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).expect("test");
        close(r.p_value, 0.1, 1e-12);
        close(smallest_exact_p(3, 3), 0.1, 1e-12);
        // One group of 20, one of 5: exact. st.mannwhitneyu(np.arange(1,21), [3.5,...,7.5])
        // → U=75, p=0.09696969696969696
        let big: Vec<f64> = (1..=20).map(f64::from).collect();
        let small = [3.5, 4.5, 5.5, 6.5, 7.5];
        let r = mann_whitney(&big, &small).expect("test");
        assert_eq!((r.u, r.method), (75.0, RankMethod::Exact));
        close(r.p_value, 0.09696969696969696, 1e-12);
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    fn plan() -> BootstrapPlan {
        BootstrapPlan {
            resamples: 20_000,
            seed: 7,
        }
    }

    #[test]
    fn bootstrap_intervals_match_scipy_within_resampling_noise() {
        // st.bootstrap((A,), np.mean, n_resamples=200000, method='percentile') → (12.1, 12.88)
        // st.bootstrap((A,), np.median, ...) → (12.0, 12.7)
        // Different generators: equal up to the noise of 20,000 resamples. A median of ten
        // values resampled takes discrete values 0.05 apart, and P(median ≤ 12.65) = 0.973
        // (NumPy, 400,000 resamples) sits on the 97.5 % cut: either neighbour is right.
        let s = summarise(&A, plan()).expect("summary").summary;
        close(s.mean_ci.low, 12.1, 0.03);
        close(s.mean_ci.high, 12.88, 0.03);
        close(s.p50_ci.low, 12.0, 0.051);
        close(s.p50_ci.high, 12.7, 0.051);
        assert_eq!((s.n, s.min, s.max), (10, 11.8, 14.1));
        assert!(s.p95_ci.contains(s.p95) && s.p99_ci.high <= 14.1);
    }

    #[test]
    fn ratio_of_medians_matches_scipy_within_resampling_noise() {
        // st.bootstrap((B, A), lambda x, y, axis: np.median(x, axis=axis)/np.median(y, axis=axis),
        //   n_resamples=200000, method='percentile', vectorized=True)
        // → (0.49609374999999994, 0.5465587044534412); point 0.5183673469387755
        let a = summarise(&A, plan()).expect("a");
        let b = summarise(&B, BootstrapPlan { seed: 8, ..plan() }).expect("b");
        let r = ratio_of_medians(&b, &a).expect("ratio");
        close(r.ratio, 0.5183673469387755, 1e-12);
        close(r.ci.low, 0.49609374999999994, 0.006);
        close(r.ci.high, 0.5465587044534412, 0.006);
    }

    #[test]
    fn quantiles_from_draw_counts_equal_those_of_the_sorted_resample() {
        let v = sorted(&A);
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..200 {
            let mut counts = vec![0u32; v.len()];
            let mut draw = Vec::new();
            for _ in 0..v.len() {
                let i = rng.usize(..v.len());
                counts[i] += 1;
                draw.push(v[i]);
            }
            draw.sort_by(f64::total_cmp);
            let at = [0.5 * 9.0, 0.95 * 9.0, 0.99 * 9.0];
            let got = resample_quantiles(&counts, &v, at);
            for (g, p) in got.iter().zip([0.5, 0.95, 0.99]) {
                close(*g, quantile(&draw, p).expect("q"), 1e-12);
            }
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_interval() {
        let small = BootstrapPlan {
            resamples: 500,
            seed: 42,
        };
        let one = summarise(&A, small).expect("one").summary;
        let two = summarise(&A, small).expect("two").summary;
        assert_eq!(one, two);
        let other = summarise(&A, BootstrapPlan { seed: 43, ..small })
            .expect("other")
            .summary;
        assert_ne!(one.mean_ci, other.mean_ci);
    }
}
