//! `cinepipe run` through the real binary. Every stage kind is built: a run of the demo writes
//! its story with the real LLM server, renders, awaits and collects each scene on a real ComfyUI
//! it launches, scores the frames (`quality`), checks the telemetry (`validate`) and succeeds,
//! leaving only whole files behind and telemetry that keeps the contract.

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
        // ComfyUI's output goes to the test's folder, not the repository's runs/.
        .replace(
            "runs/.comfyui/output",
            &dir.join("comfyui-output").display().to_string(),
        )
        // Bounds for a busy CI machine: the demo's are for an idle one.
        .replace(
            "retry = { budget = 2 }",
            "retry = { budget = 2 }\nmax_latency_s = 900\ntimeout_s = 900",
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
        if !name.ends_with(".json") && !name.ends_with(".jsonl") {
            continue; // frames ComfyUI wrote, logs
        }
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
fn the_demo_runs_end_to_end_on_the_real_servers() {
    use cinepipe::exec::{EventKind, RunOutcome};
    // The demo's `launch` starts the project's LLM server: the harness proves it is installed
    // (and fails under CI when it is not).
    if crate::harness::llm().is_none() || crate::harness::comfyui().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = demo_in(dir.path());
    let spec_arg = spec.to_str().expect("utf-8 path");
    let out = cinepipe_in(dir.path(), &["run", spec_arg, "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("not built yet"), "{err}");

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
        // A slow model may need a retry: one record per attempt; the first is checked below.
        .filter(|n| !(n.starts_with("stages/story/attempt-") && n != "stages/story/attempt-1.json"))
        .collect();
    // Each scene is patched, rendered, awaited, collected and scored for real.
    for want in [
        "artifact-metadata.json",
        "events.jsonl",
        "run-summary.txt",
        "service-notes.json",
        "resolved-spec.json",
        "run.json",
        "stages/story/attempt-1.json",
        "stages/story/output.json",
        "stages/patch/0/scene.json",
        "stages/patch/0/workflow-1.json",
        "stages/patch/0/output.json",
        "stages/render/0/attempt-1.json",
        "stages/render/0/workflow-1.json",
        "stages/render/0/output.json",
        "stages/marker/1/output.json",
        "stages/frames/1/output.json",
        "stages/quality/0/attempt-1.json",
        "stages/quality/1/output.json",
        "stages/validate/output.json",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    for scene in 0..2 {
        let frames = names
            .iter()
            .filter(|n| {
                n.starts_with(&format!("stages/frames/{scene}/frames/")) && n.ends_with(".png")
            })
            .count();
        assert_eq!(frames, 25, "scene {scene}: {names:?}");
    }
    assert_whole(dir.path());
    // The telemetry: both scenes, the story, the LLM's numbers, the quality scores.
    assert_eq!(cinepipe::verify::verify_run(run).expect("reads"), []);
    let m: cinepipe::telemetry::ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(run.join("artifact-metadata.json")).expect("metadata"),
    )
    .expect("parses");
    assert_eq!(m.outcome, cinepipe::telemetry::Outcome::Success);
    assert_eq!(m.scenes.len(), 2);
    // The ComfyUI stages' numbers reach the scene records.
    for s in &m.scenes {
        assert_eq!(
            s.telemetry.history_exit_reason,
            cinepipe::telemetry::HistoryExitReason::Success,
            "{s:?}"
        );
        assert!(s.telemetry.done_marker_detected, "{s:?}");
        assert_eq!(s.frames.count, 25, "{s:?}");
        assert!(s.prompt_id.is_some(), "{s:?}");
    }
    assert_eq!(m.llm.len(), 1);
    assert_eq!(m.llm[0].stage, "story");
    assert!(m.llm[0].completion_tokens.is_some());
    // The demo launched its LLM server: the service notes say so.
    assert!(
        m.system
            .fallback_notes
            .iter()
            .any(|n| n.starts_with("service `llm`")),
        "{:?}",
        m.system.fallback_notes
    );
    let story: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/story/output.json")).expect("story"),
    )
    .expect("JSON");
    assert_eq!(story["scenes"].as_array().map(Vec::len), Some(2), "{story}");
    let ev = events(run);
    let render: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/render/0/output.json")).expect("render"),
    )
    .expect("JSON");
    assert_eq!(
        render["telemetry"]["HistoryExitReason"],
        serde_json::json!("success"),
        "{render}"
    );
    let images = render["files"]
        .as_array()
        .map(|f| f.iter().filter(|f| f["key"] == "images").count());
    assert_eq!(images, Some(25), "{render}");
    assert!(
        matches!(&ev[0].kind, EventKind::RunStarted { unbuilt_kinds, .. } if unbuilt_kinds.is_empty())
    );
    assert!(
        matches!(
            ev.last().map(|e| &e.kind),
            Some(EventKind::RunFinished {
                outcome: RunOutcome::Succeeded,
                ..
            })
        ),
        "{:?}",
        ev.last()
    );
    // The scene cards: 256×144 frames, none blank, none frozen; the frame checks pass. (The
    // text checks depend on what the model wrote, and `enforce` is off: recorded only.)
    use cinepipe::spec::model::QualityCheck as C;
    for s in &m.scenes {
        let q = &s.quality_metrics;
        assert_eq!((q.width, q.height), (Some(256), Some(144)), "{q:?}");
        assert_eq!(
            (q.blank_fraction, q.frozen_fraction),
            (Some(0.0), Some(0.0)),
            "{q:?}"
        );
    }
    let q = &m.quality_metrics;
    assert!(q.passed.is_some(), "{q:?}");
    for c in &q.checks {
        if matches!(
            c.check,
            C::FrameCount | C::Resolution | C::Blank | C::Frozen
        ) {
            assert!(c.passed && c.scene_id.is_some(), "{c:?}");
        }
    }
    // Per scene: four frame checks, `duplicate` and `same-frames`; once: `diversity` and the
    // judge's `coherence` (advisory: it never fails the verdict).
    assert_eq!(q.checks.len(), 2 * 6 + 2, "{q:?}");
    let coherence: Vec<_> = q
        .checks
        .iter()
        .filter(|c| c.check == C::Coherence)
        .collect();
    assert_eq!(coherence.len(), 1, "{q:?}");
    assert!(
        coherence[0].advisory && coherence[0].scene_id.is_none(),
        "{q:?}"
    );
    assert_eq!(q.narrative_coherence, coherence[0].value);
    // The frames carry the story: scenes the model wrote alike (prompt and mood) render the
    // same frames and fail `same-frames`; scenes that differ render frames that differ.
    let alike = m.scenes[0].prompt == m.scenes[1].prompt && m.scenes[0].mood == m.scenes[1].mood;
    let same_frames: Vec<_> = q
        .checks
        .iter()
        .filter(|c| c.check == C::SameFrames)
        .collect();
    assert_eq!(same_frames.len(), 2, "{q:?}");
    for c in same_frames {
        if alike {
            assert_eq!(
                (c.value, c.passed),
                (Some(0.0), false),
                "{c:?} {:?}",
                m.scenes
            );
        } else {
            assert!(c.value.is_some_and(|v| v > 0.0), "{c:?} {:?}", m.scenes);
        }
    }
    let validate: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/validate/output.json")).expect("validate"),
    )
    .expect("JSON");
    assert_eq!(validate["passed"], true, "{validate}");
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

#[test]
fn a_validate_only_run_logs_json_writes_its_telemetry_and_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("v.toml"),
        "[run]\nname = \"v\"\noutput_dir = \"out\"\n[stages.check]\nkind = \"validate\"\n",
    )
    .expect("spec");
    let out = cinepipe_in(dir.path(), &["run", "v.toml", "--log-format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kinds: Vec<String> = stderr(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
            v["event"].as_str().expect("event").to_owned()
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("run-started"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run-finished"),
        "{kinds:?}"
    );
    assert!(
        stdout(&out).contains(" succeeded: 1 succeeded"),
        "{}",
        stdout(&out)
    );

    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("out"))
        .expect("out/")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_whole(run);
    assert_eq!(cinepipe::verify::verify_run(run).expect("reads"), []);
    let check: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("stages/check/output.json")).expect("output"),
    )
    .expect("json");
    assert_eq!(check["passed"], true, "{check}");

    // Plain lines when stderr is not a terminal; --quiet prints none.
    let out = cinepipe_in(dir.path(), &["run", "v.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("  ok      check"), "{}", stderr(&out));
    let out = cinepipe_in(dir.path(), &["run", "v.toml", "--quiet"]);
    assert_eq!(stderr(&out), "");

    // A damaged folder beside them is listed as such and hides nothing.
    let broken = dir.path().join("out/20000101T000000Z-broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join("run.json"), "{").expect("write");
    std::fs::write(broken.join("events.jsonl"), "{\"ts\":").expect("write");
    let out = cinepipe_in(dir.path(), &["runs", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[1].starts_with("20000101T000000Z-broken "), "{text}");
    assert!(lines[1].contains("(damaged)"), "{text}");
    for l in &lines[2..] {
        assert!(l.contains(" succeeded ") && l.ends_with(" v"), "{text}");
    }
    let out = cinepipe_in(dir.path(), &["show", broken.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("problems:"), "{}", stdout(&out));
    assert!(stdout(&out).contains("torn line"), "{}", stdout(&out));
    let out = cinepipe_in(dir.path(), &["show", run.to_str().expect("utf-8")]);
    assert!(
        stdout(&out).contains("check  succeeded  1 attempt"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        cinepipe_in(dir.path(), &["show", "."]).status.code(),
        Some(1)
    );
    assert_eq!(
        cinepipe_in(dir.path(), &["runs", "nope"]).status.code(),
        Some(74)
    );
}
