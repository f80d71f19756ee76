//! Generated files stay what the code generates, and every example spec obeys the schema.

use std::path::Path;

use crate::common::{cinepipe, root, stderr};

fn toml_to_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("spec reads");
    let value: toml::Value = toml::from_str(&text).expect("spec is TOML");
    serde_json::to_value(value).expect("TOML converts to JSON")
}

fn specs() -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join("specs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("specs/ lists") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml")
                // A sweep's suite file, checked by `validate` as a suite.
                && path.file_name().is_some_and(|n| n != "suite.toml")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn checked_in_schemas_are_what_the_types_generate() {
    for (name, text) in cinepipe::cli::generate::schemas::files() {
        let path = root().join("schemas").join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} differs from what the Rust types generate; run `cargo run -- schema` and commit it",
            path.display()
        );
    }
}

#[test]
fn schema_check_command_agrees() {
    let out = cinepipe(&["schema", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn spec_reference_is_what_the_types_generate() {
    let path = root().join("docs/spec.md");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == cinepipe::cli::generate::spec_reference(),
        "docs/spec.md differs from what the Rust types generate; run `cargo run -- docs` and commit it"
    );
}

#[test]
fn spec_reference_documents_every_key_of_every_stage_kind() {
    let reference = cinepipe::cli::generate::spec_reference();
    let schema = cinepipe::spec::schema::run_spec_schema();
    let stages = schema
        .pointer("/definitions/Stage/oneOf")
        .and_then(|v| v.as_array())
        .expect("stage kinds");
    assert_eq!(stages.len(), 7, "seven stage kinds");
    for branch in stages {
        let kind = branch
            .pointer("/properties/kind/const")
            .and_then(|v| v.as_str())
            .expect("kind");
        assert!(
            reference.contains(&format!("`kind = \"{kind}\"`")),
            "kind {kind} is documented"
        );
        for key in branch["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .filter(|k| *k != "kind")
        {
            assert!(
                reference.contains(&format!("| `{key}` |")),
                "key {key} of {kind} is documented"
            );
        }
    }
}

#[test]
fn telemetry_doc_names_every_field_of_the_contract() {
    // docs/telemetry.md is written by hand; this keeps it from missing a field the types have.
    let doc = std::fs::read_to_string(root().join("docs/telemetry.md")).expect("docs/telemetry.md");
    let schema = cinepipe::artifact_metadata::artifact_metadata_schema();
    let mut objects = vec![&schema];
    objects.extend(
        schema["definitions"]
            .as_object()
            .expect("definitions")
            .values(),
    );
    let mut missing = Vec::new();
    for object in objects {
        for key in object["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys())
        {
            if !doc.contains(&format!("`{key}`")) {
                missing.push(key.clone());
            }
        }
    }
    for reason in cinepipe::telemetry::HistoryExitReason::ALL {
        if !doc.contains(&format!("`{}`", reason.as_str())) {
            missing.push(reason.as_str().to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "docs/telemetry.md does not name {missing:?}"
    );
}

#[test]
fn every_spec_in_specs_obeys_the_schema() {
    let schema = cinepipe::spec::schema::run_spec_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let specs = specs();
    assert!(specs.len() >= 3, "specs/ has example specs: {specs:?}");
    for path in specs {
        let doc = toml_to_json(&path);
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} breaks the schema: {errors:#?}",
            path.display()
        );
    }
}

#[test]
fn every_spec_in_specs_passes_the_checker() {
    let out = cinepipe(&["validate", "specs"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn the_schema_rejects_what_the_checker_rejects_structurally() {
    // The schema is what editors check with; it must not be looser than the types.
    let schema = cinepipe::spec::schema::run_spec_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let bad = serde_json::json!({
        "run": { "name": "x", "colour": "red" },
        "stages": { "a": { "kind": "queue", "service": "c", "poll_interval_s": "fast" } }
    });
    assert!(!validator.is_valid(&bad));
}

#[test]
fn every_example_spec_declares_the_schema_for_editors() {
    for path in specs() {
        let text = std::fs::read_to_string(&path).expect("reads");
        let first = text.lines().next().unwrap_or_default();
        let declared = first
            .strip_prefix("#:schema ")
            .unwrap_or_else(|| panic!("{} starts with #:schema", path.display()));
        let schema = path.parent().expect("parent").join(declared);
        assert!(
            schema.exists(),
            "{}: `{declared}` resolves to {}",
            path.display(),
            schema.display()
        );
    }
}

/// Taplo (the TOML language server behind VS Code's Even Better TOML) reads `#:schema` and
/// checks the spec against it. Required in CI; elsewhere only when `taplo` is installed.
#[test]
fn taplo_checks_specs_against_the_schema() {
    let taplo = std::env::var("TAPLO").unwrap_or_else(|_| "taplo".to_owned());
    let probe = std::process::Command::new(&taplo).arg("--version").output();
    if probe.is_err() {
        crate::harness::skip("taplo is not installed (scripts/install-taplo)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let good = root().join("specs/demo.toml");
    let out = std::process::Command::new(&taplo)
        .args(["check", "--no-auto-config"])
        .arg(&good)
        .current_dir(root())
        .output()
        .expect("taplo runs");
    assert!(
        out.status.success(),
        "taplo accepts demo.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A misspelt key must be caught by the editor too.
    std::fs::create_dir_all(dir.path().join("specs")).expect("mkdir");
    let schema = root().join("schemas/run-spec.schema.json");
    let bad = format!(
        "#:schema {}\n[run]\nname = \"x\"\n[stages.a]\nkind = \"queue\"\nservice = \"c\"\npoll_intervl_s = 1\n",
        schema.display()
    );
    let bad_path = dir.path().join("specs/bad.toml");
    std::fs::write(&bad_path, bad).expect("write");
    let out = std::process::Command::new(&taplo)
        .args(["check", "--no-auto-config"])
        .arg(&bad_path)
        .output()
        .expect("taplo runs");
    assert!(!out.status.success(), "taplo rejects a misspelt key");
}
