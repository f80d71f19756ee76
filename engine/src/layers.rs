//! The layering test: every `crate::` path in engine/src points down (or sideways), never up.
//!
//! Layers, lowest first (a file may import its own layer and any lower one):
//!  0 leaf utilities  `fsutil`, `toml_fmt`, `exit`, `json_schema`
//!  1 spec            `spec`, `workflow`, `story`
//!  2 plan            `plan`, `artifact_metadata` (the types of `artifact-metadata.json` that
//!                    clients and stages fill, and `telemetry` builds and checks)
//!  3 run folder      `rundir` (layout, event, journal, history)
//!  4 exec            `exec` (the Stage trait, retries, scheduling)
//!  5 clients         `clients`
//!  6 services        `services`
//!  7 stages          `stages`
//!  8 telemetry       `telemetry`, `verify`, `metrics`
//!  9 composition     `run`, `sweep`, `doctor`, `sentinel`, `custom_nodes`
//! 10 presentation    `show`, `run_listing`, `report`, `feedback`, `serve`, `cli` (with `cli::generate`: the list of every
//!                    generated file)
//! 12 test support    `testkit`: imports any layer; only test code (a `tests.rs`, a file under
//!                    a `tests/` folder, or below a `#[cfg(test)]`) may import it
//!
//! `#[cfg(test)]` code is covered too: a test beside lower-layer code that needs a higher
//! layer's fake is an upward edge all the same; such a test belongs with the higher layer (a
//! whole run's tests under `run/tests/`).
//! Comment lines are skipped: an intra-doc link is not a dependency.

use std::path::{Path, PathBuf};

/// Module path prefixes and their layer; the longest matching prefix wins.
const LAYERS: &[(&str, usize, &str)] = &[
    ("fsutil", 0, "leaf utilities"),
    ("toml_fmt", 0, "leaf utilities"),
    ("exit", 0, "leaf utilities"),
    ("json_schema", 0, "leaf utilities"),
    ("spec", 1, "spec"),
    ("workflow", 1, "spec"),
    ("story", 1, "spec"),
    ("plan", 2, "plan"),
    ("artifact_metadata", 2, "artifact-metadata types"),
    ("rundir", 3, "run folder"),
    ("exec", 4, "exec"),
    ("clients", 5, "clients"),
    ("services", 6, "services"),
    ("stages", 7, "stages"),
    ("telemetry", 8, "telemetry"),
    ("verify", 8, "telemetry"),
    ("metrics", 8, "telemetry"),
    ("run", 9, "composition root"),
    ("sweep", 9, "composition root"),
    ("doctor", 9, "composition root"),
    ("sentinel", 9, "composition root"),
    ("bench", 9, "composition root"),
    ("custom_nodes", 9, "composition root"),
    ("show", 10, "presentation"),
    ("report", 10, "presentation"),
    ("run_listing", 10, "presentation"),
    ("feedback", 10, "presentation"),
    ("serve", 10, "presentation"),
    ("cli", 10, "presentation"),
    ("main", 11, "binary"),
    ("layers", 11, "this test"),
    // Test support: it may import any layer, and any layer's tests may import it (only tests).
    ("testkit", 12, "test support"),
];

/// One `crate::` path found in a source file.
struct Import {
    file: String,
    line: usize,
    path: String,
    /// In test code: a `tests.rs` file, a file under a `tests/` folder, or after the file's first
    /// `#[cfg(test)]`.
    in_tests: bool,
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("engine/src is readable");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file relative to engine/src: `exec/scheduler/mod.rs` → `exec::scheduler`.
fn module_of(relative: &str) -> String {
    let without_ext = relative.trim_end_matches(".rs");
    let without_mod = without_ext.trim_end_matches("/mod");
    without_mod.replace('/', "::")
}

fn layer_of(module: &str) -> Option<(usize, &'static str, &'static str)> {
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| {
            module == *prefix
                || module
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|(prefix, layer, name)| (*layer, *name, *prefix))
}

/// Every `crate::a::b` path on one line, as `a::b` (identifiers and `::` only).
fn crate_paths(line: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        rest = after;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let path: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        // `crate::exec::{A, B}` is judged by `exec`: the group's members sit inside that module.
        paths.push(path.trim_end_matches(':').to_string());
    }
    paths
}

fn all_imports() -> Vec<Import> {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut imports = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        let relative = file
            .strip_prefix(&root)
            .expect("under engine/src")
            .to_string_lossy()
            .replace('\\', "/");
        let mut in_tests = relative == "tests.rs"
            || relative.ends_with("/tests.rs")
            || relative.contains("/tests/");
        for (index, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            in_tests |= line.trim_start().starts_with("#[cfg(test)]");
            for path in crate_paths(line) {
                imports.push(Import {
                    file: relative.clone(),
                    line: index + 1,
                    path,
                    in_tests,
                });
            }
        }
    }
    imports
}

/// What is wrong with these imports: each upward one, each file or path without a layer.
fn violations(imports: &[Import]) -> Vec<String> {
    let mut violations = Vec::new();
    for import in imports {
        if import.file == "lib.rs" || import.file == "layers.rs" {
            // The crate root declares every module and re-exports; this file only names paths.
            continue;
        }
        if import.path.is_empty() {
            violations.push(format!(
                "{}:{}: `crate::{{...}}`: a group at the crate root is not checked; name the module",
                import.file, import.line
            ));
            continue;
        }
        let module = module_of(&import.file);
        let Some((from_layer, from_name, _)) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` has no layer in LAYERS",
                import.file
            ));
            continue;
        };
        let Some((to_layer, to_name, to_prefix)) = layer_of(&import.path) else {
            violations.push(format!(
                "{}:{}: `crate::{}` has no layer in LAYERS",
                import.file, import.line, import.path
            ));
            continue;
        };
        if to_layer <= from_layer || (to_prefix == "testkit" && import.in_tests) {
            continue;
        }
        violations.push(format!(
            "{}:{}: `crate::{}` imports {to_name} (layer {to_layer}) from {from_name} (layer {from_layer})",
            import.file, import.line, import.path
        ));
    }
    violations
}

#[test]
fn every_crate_path_points_down_the_layers() {
    let imports = all_imports();
    assert!(
        imports.len() > 100,
        "found only {} crate:: paths: is the scan broken?",
        imports.len()
    );
    let violations = violations(&imports);
    assert!(
        violations.is_empty(),
        "{} layering violation(s), lowest layer first is: {}\n{}",
        violations.len(),
        "fsutil/toml_fmt/exit/json_schema < spec < plan/artifact_metadata < run folder < exec < clients < services < stages < telemetry < composition root < show/cli",
        violations.join("\n")
    );
}

/// The check itself: an upward import (in code or in a test), and test support outside tests,
/// are violations; downward and sideways imports, and test support in tests, are not.
#[test]
fn an_upward_import_is_a_violation() {
    let import = |file: &str, path: &str, in_tests: bool| Import {
        file: file.to_owned(),
        line: 1,
        path: path.to_owned(),
        in_tests,
    };
    let fine = [
        import("stages/queue.rs", "exec::Stage", false),
        import("stages/queue.rs", "stages::output", false),
        import("telemetry/build.rs", "rundir::history", false),
        import("exec/tests/mod.rs", "testkit::Scripted", true),
        import("lib.rs", "cli", false),
    ];
    assert_eq!(violations(&fine), Vec::<String>::new());
    let upward = [
        import("clients/gpu.rs", "telemetry::GpuTelemetry", false),
        import("rundir/history.rs", "exec::Event", false),
        import("spec/structure.rs", "cli::generate", true),
        import("exec/scheduler/mod.rs", "testkit::Scripted", false),
        import("spec/nowhere.rs", "nowhere::X", false),
    ];
    let found = violations(&upward);
    assert_eq!(found.len(), upward.len(), "{found:#?}");
    assert!(
        found[0]
            .starts_with("clients/gpu.rs:1: `crate::telemetry::GpuTelemetry` imports telemetry"),
        "{}",
        found[0]
    );
    assert!(found[4].contains("has no layer"), "{}", found[4]);
}
