//! `cinepipe verify` through the real binary, on the corpus in `tests/runs/`: the valid run
//! passes, and each broken case fails with exit code 3 and exactly its expected violations.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::common::{cinepipe_in, root, stderr, stdout};

const METADATA: &str = "artifact-metadata.json";
const SUMMARY: &str = "run-summary.txt";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    why: String,
    #[serde(default)]
    metadata: Vec<MetadataEdit>,
    #[serde(default)]
    summary: Vec<SummaryEdit>,
    metadata_text: Option<String>,
    summary_text: Option<String>,
    #[serde(default)]
    delete: Vec<String>,
    expect: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "op", rename_all = "kebab-case")]
enum MetadataEdit {
    Remove { path: String },
    Replace { path: String, value: String },
    Add { path: String, value: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "op", rename_all = "kebab-case")]
enum SummaryEdit {
    Replace {
        line: String,
        from: String,
        to: String,
    },
    RemoveLine {
        line: String,
    },
    Append {
        text: String,
    },
}

fn valid_dir() -> std::path::PathBuf {
    root().join("tests/runs/valid")
}

fn corpus() -> Corpus {
    let text = std::fs::read_to_string(root().join("tests/runs/cases.toml")).expect("cases.toml");
    toml::from_str(&text).expect("cases.toml parses")
}

/// Splits a pointer into its parent's pointer and the last key.
fn split(pointer: &str) -> (&str, String) {
    let (parent, last) = pointer.rsplit_once('/').expect("a pointer with a key");
    (parent, last.replace("~1", "/").replace("~0", "~"))
}

fn apply_metadata(doc: &mut Value, edit: &MetadataEdit, case: &str) {
    let parse = |v: &str| -> Value {
        serde_json::from_str(v).unwrap_or_else(|e| panic!("{case}: value `{v}` is not JSON: {e}"))
    };
    match edit {
        MetadataEdit::Remove { path } => {
            let (parent, key) = split(path);
            let obj = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{case}: no object at {parent}"));
            assert!(
                obj.shift_remove(&key).is_some(),
                "{case}: nothing at {path}"
            );
        }
        MetadataEdit::Replace { path, value } => {
            let slot = doc
                .pointer_mut(path)
                .unwrap_or_else(|| panic!("{case}: nothing at {path}"));
            *slot = parse(value);
        }
        MetadataEdit::Add { path, value } => {
            let (parent, key) = split(path);
            let obj = doc
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{case}: no object at {parent}"));
            assert!(
                obj.insert(key, parse(value)).is_none(),
                "{case}: {path} already exists"
            );
        }
    }
}

fn apply_summary(text: &str, edit: &SummaryEdit, case: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let find = |lines: &[String], start: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("{case}: no line starts with `{start}`"))
    };
    match edit {
        SummaryEdit::Replace { line, from, to } => {
            let i = find(&lines, line);
            assert!(
                lines[i].contains(from.as_str()),
                "{case}: `{from}` not on the line"
            );
            lines[i] = lines[i].replacen(from.as_str(), to, 1);
        }
        SummaryEdit::RemoveLine { line } => {
            let i = find(&lines, line);
            lines.remove(i);
        }
        SummaryEdit::Append { text } => lines.push(text.clone()),
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Writes the case's run folder into `dir`.
fn build(case: &Case, dir: &Path) {
    let valid_meta = std::fs::read_to_string(valid_dir().join(METADATA)).expect("valid metadata");
    let valid_summary = std::fs::read_to_string(valid_dir().join(SUMMARY)).expect("valid summary");
    let metadata = match &case.metadata_text {
        Some(t) => t.clone(),
        None => {
            let mut doc: Value = serde_json::from_str(&valid_meta).expect("valid JSON");
            for e in &case.metadata {
                apply_metadata(&mut doc, e, &case.name);
            }
            serde_json::to_string_pretty(&doc).expect("serialises")
        }
    };
    let summary = match &case.summary_text {
        Some(t) => t.clone(),
        None => case
            .summary
            .iter()
            .fold(valid_summary, |s, e| apply_summary(&s, e, &case.name)),
    };
    std::fs::write(dir.join(METADATA), metadata).expect("write");
    std::fs::write(dir.join(SUMMARY), summary).expect("write");
    for name in &case.delete {
        std::fs::remove_file(dir.join(name)).expect("delete");
    }
}

/// The violation lines of a failed verify (every stderr line but the verdict).
fn violations(err: &str) -> Vec<String> {
    err.lines()
        .filter(|l| !l.starts_with("error: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_valid_run_passes() {
    let out = cinepipe_in(&root(), &["verify", "tests/runs/valid"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "ok       tests/runs/valid: artifact-metadata.json and run-summary.txt keep the telemetry contract\n"
    );
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn every_broken_case_fails_for_its_reason_only() {
    let corpus = corpus();
    assert!(corpus.case.len() >= 15, "at least 15 broken cases");
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &corpus.case {
        assert!(
            names.insert(case.name.as_str()),
            "{} is named twice",
            case.name
        );
        assert!(
            !case.why.is_empty() && !case.expect.is_empty(),
            "{}",
            case.name
        );
        let dir = tempfile::tempdir().expect("tempdir");
        build(case, dir.path());
        let out = cinepipe_in(dir.path(), &["verify", "."]);
        let err = stderr(&out);
        let mut got = violations(&err);
        let mut want = case.expect.clone();
        got.sort();
        want.sort();
        let verdict = format!(
            "error: . breaks the telemetry contract ({} violation{})",
            want.len(),
            if want.len() == 1 { "" } else { "s" }
        );
        if out.status.code() != Some(3) || got != want || !err.ends_with(&format!("{verdict}\n")) {
            failures.push(format!(
                "case `{}` ({}): exit {:?}\n  expected: {want:#?}\n  got: {err}",
                case.name,
                case.why,
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_folder_that_cannot_be_read_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(dir.path(), &["verify", "no-such-run"]);
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read run folder `no-such-run`"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn an_empty_folder_reports_both_files_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(dir.path(), &["verify", "."]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        violations(&stderr(&out)),
        [
            "artifact-metadata.json: missing",
            "run-summary.txt: missing"
        ]
    );
}

#[test]
fn the_checked_in_schema_accepts_the_valid_run() {
    // The file users and other tools validate with, not only the one compiled into cinepipe.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/artifact-metadata.schema.json"))
            .expect("schema"),
    )
    .expect("schema is JSON");
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(valid_dir().join(METADATA)).expect("metadata"),
    )
    .expect("metadata is JSON");
    let validator = jsonschema::validator_for(&schema).expect("compiles");
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}
