//! The bench's analysis over recorded runs: verdicts, noise, the baseline gate, the
//! documents. (The bench against real servers is in tests/bench.rs.)

use super::results;
use crate::testkit::bench::{env, manifest, record};

/// Small noise that repeats: runs differ, and no two are equal.
fn jitter(round: u32) -> f64 {
    f64::from((round * 7919) % 13) * 0.01
}

#[test]
fn a_clear_speed_up_is_called_with_its_factor_and_interval() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = manifest(&["standard", "fast"], 12);
    record(tmp.path(), &m, |v, r| {
        // The warm-up is slow, and must not count.
        let base = if r == 1 { 100.0 } else { 10.0 };
        (if v == "fast" { base / 2.0 } else { base }) + jitter(r)
    });
    let built = results::build(&m, tmp.path(), env());
    let r = &built.results;
    assert_eq!(
        (r.status.as_str(), r.finished, r.planned),
        ("complete", 26, 26)
    );
    assert_eq!(r.variants[0].runs, 12);
    assert_eq!(r.variants[0].warmup_figures.len(), 1);
    let c = &r.comparisons[0];
    assert!(!c.within_noise, "{c:?}");
    let ratio = c.wall_ratio.expect("ratio");
    assert!(ratio.ci.high < 0.55 && ratio.ci.low > 0.45, "{ratio:?}");
    assert!(
        c.verdict.starts_with("`fast` finishes a run 1.9")
            || c.verdict.starts_with("`fast` finishes a run 2.0"),
        "{}",
        c.verdict
    );
    assert!(
        c.verdict.contains("same done-marker rate (100 %)"),
        "{}",
        c.verdict
    );
    let md = super::analysis::markdown(r);
    for needle in [
        "`standard`",
        "`fast`",
        "wall-histogram.svg",
        "wall-scatter.svg",
        "| render |",
    ] {
        assert!(md.contains(needle), "ANALYSIS.md has {needle}:\n{md}");
    }
    for (name, svg) in super::plots::plots(r) {
        assert!(svg.starts_with("<svg"), "{name}");
        assert!(
            svg.contains("standard") && svg.contains("fast"),
            "{name} names both"
        );
    }
}

#[test]
fn the_same_time_is_called_noise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = manifest(&["standard", "fast"], 12);
    record(tmp.path(), &m, |_, r| 10.0 + jitter(r * 3 + 1));
    let built = results::build(&m, tmp.path(), env());
    let c = &built.results.comparisons[0];
    assert!(c.within_noise, "{c:?}");
    assert!(c.verdict.contains("within noise"), "{}", c.verdict);
}

#[test]
fn a_handful_of_runs_is_noise_and_says_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = manifest(&["standard", "fast"], 2);
    record(tmp.path(), &m, |v, r| {
        let base = if v == "fast" { 5.0 } else { 10.0 };
        base + jitter(r)
    });
    let c = &results::build(&m, tmp.path(), env()).results.comparisons[0];
    assert!(c.within_noise, "{c:?}");
    assert!(c.verdict.contains("too few"), "{}", c.verdict);
}

#[test]
fn the_baseline_gate_fails_a_real_slowdown_and_passes_noise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = manifest(&["standard", "fast"], 8);
    record(tmp.path(), &m, |_, r| 10.0 + jitter(r));
    let baseline = results::build(&m, tmp.path(), env()).results;

    // 30 % slower: past the 10 % allowed, interval above 1.
    record(tmp.path(), &m, |v, r| {
        let base = if v == "fast" { 13.0 } else { 10.0 };
        base + jitter(r + 1)
    });
    let slower = results::build(&m, tmp.path(), env());
    let gate = results::compare_baseline(&slower, &baseline, "base.json", 0.10);
    assert!(gate.regressed, "{gate:?}");
    let fast = gate
        .variants
        .iter()
        .find(|v| v.name == "fast")
        .expect("fast");
    assert!(
        fast.regressed && fast.message.contains("past the 10 % allowed"),
        "{fast:?}"
    );
    assert!(
        !gate
            .variants
            .iter()
            .find(|v| v.name == "standard")
            .expect("standard")
            .regressed
    );

    // The same 30 % passes a 50 % allowance; noise passes 10 %.
    assert!(!results::compare_baseline(&slower, &baseline, "b", 0.5).regressed);
    record(tmp.path(), &m, |_, r| 10.0 + jitter(r + 2));
    let same = results::build(&m, tmp.path(), env());
    assert!(!results::compare_baseline(&same, &baseline, "b", 0.10).regressed);
}

#[test]
fn a_torn_last_line_and_foreign_runs_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = manifest(&["a", "b"], 3);
    record(tmp.path(), &m, |_, _| 1.0);
    let log = tmp.path().join(super::execute::RUNS_LOG);
    let mut text = std::fs::read_to_string(&log).expect("read");
    let first = text.lines().next().expect("a line").to_owned();
    text.push_str(&first); // the same run twice counts once
    text.push('\n');
    text.push_str(&first[..first.len() / 2]); // torn by a kill
    std::fs::write(&log, text).expect("write");
    let r = results::build(&m, tmp.path(), env()).results;
    assert_eq!(r.finished, 8);
    assert_eq!(r.status, "complete");
}
