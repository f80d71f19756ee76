//! `cinepipe run` through the real binary. Of the stage kinds only `llm` is built so far, so a
//! run of the demo writes its story with the real LLM server, then fails at the first stage of
//! a kind not built yet, says which kinds are missing, and leaves only whole files behind.

use std::path::{Path, PathBuf};

use crate::common::{cinepipe_in, root, stderr, stdout};

/// The demo spec, with paths made absolute and its runs sent into `dir/runs`.
fn demo_in(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join("specs/demo.toml")).expect("demo spec");
    let text = text
        .replace(
            "base_dir = \"..\"",
            &format!("base_dir = \"{}\"", root().display()),
        )
        .replace(
            "output_dir = \"runs\"\n",
            &format!("output_dir = \"{}\"\n", dir.join("runs").display()),
        )
        // A port of its own: the demo's may be in use by a demo someone is running.
        .replace("18080", &crate::harness::free_port().to_string())
        .replace("18188", &crate::harness::free_port().to_string());
    let p = dir.join("demo.toml");
    std::fs::write(&p, text).expect("spec");
    p
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("lists") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file is whole: JSON parses, every journal line parses, no temp file is left.
fn assert_whole(dir: &Path) {
    for f in files_under(dir) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!name.contains(".tmp."), "temp file left: {}", f.display());
        let text = std::fs::read_to_string(&f).expect("reads");
        if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else if name.ends_with(".jsonl") {
            assert!(text.ends_with('\n'), "{} ends in a whole line", f.display());
            for line in text.lines() {
                serde_json::from_str::<cinepipe::exec::Event>(line)
                    .unwrap_or_else(|e| panic!("{}: {line}: {e}", f.display()));
            }
        }
    }
}

fn events(run: &Path) -> Vec<cinepipe::exec::Event> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .expect("journal")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect()
}

#[test]
fn the_demo_runs_its_llm_stage_for_real_then_names_the_kinds_not_built() {
    use cinepipe::exec::{EventKind, RunOutcome};
    // The demo's `launch` starts the project's LLM server: the harness proves it is installed
    // (and fails under CI when it is not).
    if crate::harness::llm().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = demo_in(dir.path());
    let spec_arg = spec.to_str().expect("utf-8 path");
    let out = cinepipe_in(dir.path(), &["run", spec_arg, "--quiet"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for kind in [
        "patch-workflow (stages: patch)",
        "queue (stages: render)",
        "quality (stages: quality)",
        "validate (stages: validate)",
    ] {
        assert!(err.contains(kind), "names {kind}: {err}");
    }
    assert!(!err.contains("llm (stages"), "{err}");
    assert!(err.contains("stage kinds not built yet"), "{err}");
    assert!(
        stdout(&out).contains(" failed: 1 succeeded"),
        "{}",
        stdout(&out)
    );

    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let names: Vec<String> = files_under(run)
        .iter()
        .map(|f| f.strip_prefix(run).expect("under").display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "events.jsonl",
            "resolved-spec.json",
            "run.json",
            "stages/story/attempt-1.json",
            "stages/story/output.json"
        ]
    );
    assert_whole(dir.path());
    let story: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/story/output.json")).expect("story"),
    )
    .expect("JSON");
    assert_eq!(story["scenes"].as_array().map(Vec::len), Some(2), "{story}");
    let ev = events(run);
    assert!(
        matches!(&ev[0].kind, EventKind::RunStarted { unbuilt_kinds, .. } if unbuilt_kinds.len() == 4)
    );
    assert!(
        matches!(
            ev.last().map(|e| &e.kind),
            Some(EventKind::RunFinished {
                outcome: RunOutcome::Failed,
                succeeded: 1,
                failed: 1,
                // patch[1], and per scene render, marker, frames, quality; then validate.
                skipped: 10,
                ..
            })
        ),
        "{:?}",
        ev.last()
    );
    let story_attempts = |ev: &[cinepipe::exec::Event]| {
        ev.iter()
            .filter(|e| {
                matches!(&e.kind, EventKind::AttemptStarted { instance, .. } if instance.to_string() == "story")
            })
            .count()
    };
    assert_eq!(story_attempts(&ev), 1);

    // A resume finds the spec through the run folder, keeps the story it has (the LLM is not
    // asked again), and fails the same way, appending.
    let out = cinepipe_in(
        dir.path(),
        &["run", "--resume", run.to_str().expect("utf-8"), "--quiet"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_whole(dir.path());
    let ev2 = events(run);
    assert_eq!(&ev2[..ev.len()], &ev[..]);
    assert!(matches!(
        &ev2[ev.len()].kind,
        EventKind::RunStarted { session: 2, .. }
    ));
    assert_eq!(story_attempts(&ev2), 1, "the story ran again on resume");
}

#[test]
fn run_refuses_bad_input_before_making_a_run_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No spec and no --resume; --jobs 0.
    assert_eq!(cinepipe_in(dir.path(), &["run"]).status.code(), Some(64));
    let spec = demo_in(dir.path());
    let spec_arg = spec.to_str().expect("utf-8");
    assert_eq!(
        cinepipe_in(dir.path(), &["run", spec_arg, "--jobs", "0"])
            .status
            .code(),
        Some(64)
    );
    // An invalid spec: diagnostics, exit 2.
    std::fs::write(
        dir.path().join("bad.toml"),
        "[run]\nname = \"b\"\n[stages.v]\nkind = \"validat\"\n",
    )
    .expect("write");
    let out = cinepipe_in(dir.path(), &["run", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // A folder that is not a run.
    let out = cinepipe_in(dir.path(), &["run", "--resume", "."]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a run folder"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("runs").exists(), "no run folder was made");
}
