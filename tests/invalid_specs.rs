//! The invalid-spec corpus: every `tests/specs/invalid/*.toml` breaks one rule (or, for the
//! `combined-*` files, several) and must be refused by the real binary with exit code 2, with
//! exactly the diagnostics its header announces, nothing on stdout and nothing written.
//!
//! Each spec starts with `# expect: CODE, CODE, ...`: the diagnostic codes `cinepipe validate`
//! must print, in the order it prints them (diagnostics are sorted by position in the file).
//! Its stderr is kept as an insta snapshot named after the file, so that a changed message,
//! span or hint shows in review. A new file in the folder is picked up without a code change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::common;

/// The corpus folder, relative to the project root (specs are run from the root, so that this
/// relative path is what the diagnostics show).
const CORPUS: &str = "tests/specs/invalid";

/// The corpus must not shrink below this without someone noticing.
const MIN_CORPUS: usize = 30;

/// The corpus specs, sorted by name.
fn corpus() -> Vec<PathBuf> {
    let dir = common::root().join(CORPUS);
    let mut specs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("folder entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    specs
}

/// Every file below `dir` with its size and modification time, to prove nothing was written.
fn listing(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("readable folder") {
            let path = entry.expect("folder entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, (meta.len(), meta.modified().ok()));
        }
    }
    out
}

/// The codes listed in a spec's `# expect:` header.
fn expected_codes(bytes: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("# expect:"))?;
    Some(
        line.split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect(),
    )
}

/// The diagnostic codes in the output, in the order they appear: miette prints each code on a
/// line of its own above the message. (A code inside a quoted source line, such as the
/// `# expect:` header itself, is not one.)
fn printed_codes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.strip_prefix("cinepipe::spec::").is_some_and(|c| {
                !c.is_empty()
                    && c.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
            })
        })
        .map(str::to_owned)
        .collect()
}

/// Runs one corpus spec and returns what is wrong with the outcome, if anything.
fn check_one(spec: &Path) -> Vec<String> {
    let root = common::root();
    let stem = spec
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("UTF-8 file name")
        .to_owned();
    let rel = format!("{CORPUS}/{stem}.toml");
    let bytes = std::fs::read(spec).expect("readable spec");
    let mut problems = Vec::new();

    let before = listing(&root.join(CORPUS));
    let out = common::cinepipe_in(&root, &["validate", "--color", "never", &rel]);
    let after = listing(&root.join(CORPUS));
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);

    if out.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, expected 2", out.status.code()));
    }
    if !stdout.is_empty() {
        problems.push(format!("stdout is not empty:\n{stdout}"));
    }
    if before != after {
        problems.push("the corpus folder changed".to_owned());
    }
    if stderr.contains("panicked") {
        problems.push("cinepipe panicked".to_owned());
    }
    match expected_codes(&bytes) {
        None => problems.push("no `# expect: CODE, ...` header".to_owned()),
        Some(expected) => {
            let printed = printed_codes(&stderr);
            if printed != expected {
                problems.push(format!(
                    "diagnostic codes differ\n  expected: {}\n  printed:  {}",
                    expected.join(", "),
                    printed.join(", ")
                ));
            }
        }
    }

    // insta panics on a mismatch; catch it so that every file is checked in one run.
    let snapshot = std::panic::catch_unwind(|| {
        insta::assert_snapshot!(stem.as_str(), stderr);
    });
    if snapshot.is_err() {
        problems.push("stderr does not match its snapshot".to_owned());
    }
    problems
}

#[test]
fn corpus_is_large_enough() {
    let specs = corpus();
    assert!(
        specs.len() >= MIN_CORPUS,
        "{CORPUS} holds {} specs, expected at least {MIN_CORPUS}",
        specs.len()
    );
    let combined = specs
        .iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("combined-"))
        })
        .count();
    assert!(
        combined >= 4,
        "expected at least 4 `combined-*` specs, found {combined}"
    );
}

#[test]
fn every_invalid_spec_is_refused_with_its_diagnostics() {
    let mut failures = Vec::new();
    for spec in corpus() {
        let problems = check_one(&spec);
        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n  {}",
                spec.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
                problems.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} invalid spec(s) were not refused as expected:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn printed_codes_are_read_in_order() {
    let stderr = "cinepipe::spec::unknown-key\n  x ...\n 1 | # expect: cinepipe::spec::syntax\ncinepipe::spec::cycle\n";
    assert_eq!(
        printed_codes(stderr),
        ["cinepipe::spec::unknown-key", "cinepipe::spec::cycle"]
    );
    assert_eq!(
        expected_codes(b"# expect: cinepipe::spec::a, cinepipe::spec::b\n[run]\n"),
        Some(vec![
            "cinepipe::spec::a".to_owned(),
            "cinepipe::spec::b".to_owned()
        ])
    );
}
