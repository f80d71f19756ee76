//! `kill -9` at several points of a real run (the `llm` stage against the real LLM server,
//! then `validate`; and the ComfyUI stages of a scene on the real ComfyUI), then `--resume`: every stage instance that completed ran exactly once,
//! every JSON file parses, and the finished run keeps the telemetry contract. The kills are
//! timed by the journal (the test polls `events.jsonl`), not by sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cinepipe::exec::{Event, EventKind};
use cinepipe::testkit::SpecBuilder;

use crate::common::{
    assert_json_files_parse, cinepipe_in, event_is as is, journal_events as events, stderr, stdout,
};

/// A one-scene story from the harness's LLM server, then `validate`.
fn spec_in(dir: &Path, url: &str, model: &str) -> PathBuf {
    SpecBuilder::chain("kill", &["story", "validate"])
        .output_dir(&dir.join("runs"))
        .llm_url(url)
        .set("services.llm", "model", model)
        .small_model_story()
        .scenes(1)
        .toml(
            "stages.story",
            "max_tokens = 400\ntimeout_s = 300\nmax_latency_s = 300\nretry = { budget = 2 }",
        )
        .write(dir, "kill.toml")
}

/// The one run folder under `runs/`, once it exists.
fn run_dir(runs: &Path) -> Option<PathBuf> {
    std::fs::read_dir(runs)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("events.jsonl").exists())
}

/// Starts a run, waits until its journal satisfies `when`, and kills it with SIGKILL. Returns
/// the run folder and whether the kill came before the run ended by itself.
fn run_and_kill(dir: &Path, spec: &Path, when: impl Fn(&[Event]) -> bool) -> (PathBuf, bool) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args([
            "run",
            spec.to_str().expect("utf-8"),
            "--no-cache",
            "--quiet",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let runs = dir.join("runs");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(
            Instant::now() < deadline,
            "the journal never reached the point"
        );
        if let Some(run) = run_dir(&runs)
            && when(&events(&run))
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before the kill point");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let run = run_dir(&runs).expect("run folder");
    let ended = events(&run)
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunFinished { .. }));
    (run, !ended)
}

/// Resumes until the run succeeds (one resume is enough), with JSON logs on stderr.
fn resume(dir: &Path, run: &Path) {
    let out = cinepipe_in(
        dir,
        &[
            "run",
            "--resume",
            run.to_str().expect("utf-8"),
            "--log-format",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    // One JSON object per line: the run's events and the CLI's messages.
    for line in stderr(&out).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(v["event"].is_string(), "{line}");
    }
}

/// Each of `ids` completed once, and no attempt of it started afterwards.
fn assert_completed_once(run: &Path, ids: &[&str]) {
    let ev = events(run);
    for &id in ids {
        let done: Vec<usize> = ev
            .iter()
            .enumerate()
            .filter(|(_, e)| is(e, "succeeded", id))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(done.len(), 1, "{id} succeeded once: {ev:#?}");
        let later = ev[done[0]..]
            .iter()
            .filter(|e| is(e, "attempt-started", id))
            .count();
        assert_eq!(later, 0, "{id} ran again after it completed");
    }
}

#[test]
fn kill_9_at_any_point_then_resume_runs_each_completed_instance_once() {
    let Some(server) = crate::harness::llm() else {
        return;
    };
    type When = fn(&[Event]) -> bool;
    let points: [(&str, When); 3] = [
        ("right after start", |ev| {
            ev.iter().any(|e| is(e, "run-started", ""))
        }),
        ("while the LLM request is in flight", |ev| {
            ev.iter().any(|e| is(e, "attempt-started", "story"))
        }),
        ("after the story is written", |ev| {
            ev.iter().any(|e| is(e, "succeeded", "story"))
        }),
    ];
    let top = tempfile::tempdir().expect("tempdir");
    for (n, (what, when)) in points.into_iter().enumerate() {
        let dir = top.path().join(format!("case-{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let spec = spec_in(&dir, &server.url, &server.model);
        let (run, killed) = run_and_kill(&dir, &spec, when);
        assert_json_files_parse(&run);
        let before = events(&run);
        let story_done = before.iter().any(|e| is(e, "succeeded", "story"));

        resume(&dir, &run);
        assert_json_files_parse(&run);
        assert_completed_once(&run, &["story", "validate"]);
        let after = events(&run);
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "{what}: the journal is appended to"
        );
        if story_done {
            // The story was done before the kill: the resume did not ask the LLM again.
            let asked = after
                .iter()
                .filter(|e| is(e, "attempt-started", "story"))
                .count();
            assert_eq!(asked, 1, "{what}");
        }

        // The finished run keeps the telemetry contract and records both sessions.
        assert_eq!(
            cinepipe::verify::verify_run(&run).expect("reads"),
            [],
            "{what}"
        );
        let m: cinepipe::telemetry::ArtifactMetadata = serde_json::from_str(
            &std::fs::read_to_string(run.join("artifact-metadata.json")).expect("metadata"),
        )
        .expect("parses");
        assert_eq!(m.outcome, cinepipe::telemetry::Outcome::Success, "{what}");
        assert_eq!(m.scenes.len(), 1, "{what}");
        assert!(m.story.is_some(), "{what}");
        if killed && n == 1 && !story_done {
            // Killed during the request: that attempt is recorded as cancelled, with no end.
            let first = &m.stage_attempt_summaries[0];
            assert_eq!(first.stage, "story");
            assert_eq!(
                first.outcome,
                cinepipe::telemetry::AttemptOutcome::Cancelled
            );
            assert_eq!(first.end, None);
        }
        let sessions = after
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .count();
        assert_eq!(sessions, 2, "{what}");

        // `cinepipe show` summarises it.
        let out = cinepipe_in(&dir, &["show", run.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("outcome    succeeded"), "{text}");
        assert!(text.contains("sessions   2"), "{text}");
        // A kill during `validate` makes it run again: completed once, attempted maybe twice.
        assert!(text.contains("validate  succeeded"), "{text}");
    }

    // `cinepipe runs` lists each case's run.
    for n in 0..3 {
        let runs = top.path().join(format!("case-{n}/runs"));
        let out = cinepipe_in(top.path(), &["runs", runs.to_str().expect("utf-8")]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("RUN "), "{text}");
        assert!(lines[1].contains(" succeeded "), "{text}");
        assert!(lines[1].contains("2 ok"), "{text}");
        assert!(lines[1].ends_with(" kill"), "{text}");
    }
}

/// The whole scene chain on the harness's servers: a one-scene story, then patch, render (the
/// model-free workflow with the done-marker node), marker, frames and quality for scene 0.
fn scene_spec_in(
    dir: &Path,
    llm: &crate::harness::Server,
    comfy: &crate::harness::Server,
) -> PathBuf {
    let out = comfy
        .output_dir
        .as_ref()
        .expect("the caller checked the output folder");
    SpecBuilder::chain(
        "kill-scene",
        &["story", "patch", "render", "marker", "frames", "quality"],
    )
    .output_dir(&dir.join("runs"))
    .llm_url(&llm.url)
    .set("services.llm", "model", llm.model.as_str())
    .comfy_urls(&[&comfy.url])
    .set("services.comfy", "output_dir", out.display().to_string())
    .small_model_story()
    .scenes(1)
    .toml(
        "stages.story",
        "max_tokens = 400\ntimeout_s = 300\nmax_latency_s = 300\nretry = { budget = 2 }",
    )
    .set(
        "stages.patch",
        "workflow",
        "workflows/model-free/moving-square-done-marker.json",
    )
    // The story is done before every kill point: fixed, so the run does not depend on the
    // small model's text (which differs with the server's prompt cache and the CPU).
    .fixed_story()
    .toml("stages.render", "poll_interval_s = 1\nmax_wait_s = 300")
    .toml("stages.frames", "min_frames = 25")
    .write(dir, "kill-scene.toml")
}

/// Kills during the ComfyUI stages (the render in flight, right after the marker, frames being
/// collected), then resumes: each completed instance ran once (the story too: it was done
/// before every kill point), the scene's frames are the render's, and the finished run keeps the contract.
#[test]
fn kill_9_during_the_comfyui_stages_then_resume_finishes_the_scene_once() {
    let (Some(llm), Some(comfy)) = (crate::harness::llm(), crate::harness::comfyui()) else {
        return;
    };
    if crate::harness::output_dir(comfy).is_none() {
        return;
    }
    type When = fn(&[Event]) -> bool;
    let points: [(&str, When); 3] = [
        ("while the render is in flight", |ev| {
            ev.iter().any(|e| is(e, "attempt-started", "render[0]"))
        }),
        ("right after the marker is seen", |ev| {
            ev.iter().any(|e| is(e, "succeeded", "marker[0]"))
        }),
        ("while the frames are collected", |ev| {
            ev.iter().any(|e| is(e, "attempt-started", "frames[0]"))
        }),
    ];
    let top = tempfile::tempdir().expect("tempdir");
    for (n, (what, when)) in points.into_iter().enumerate() {
        let dir = top.path().join(format!("scene-case-{n}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let spec = scene_spec_in(&dir, llm, comfy);
        let (run, _killed) = run_and_kill(&dir, &spec, when);
        assert_json_files_parse(&run);
        let before = events(&run);

        resume(&dir, &run);
        assert_json_files_parse(&run);
        let after = events(&run);
        assert_eq!(
            &after[..before.len()],
            &before[..],
            "{what}: the journal is appended to"
        );
        assert_completed_once(
            &run,
            &[
                "story",
                "patch[0]",
                "render[0]",
                "marker[0]",
                "frames[0]",
                "quality[0]",
            ],
        );
        assert_eq!(
            cinepipe::verify::verify_run(&run).expect("reads"),
            [],
            "{what}"
        );
        let m: cinepipe::telemetry::ArtifactMetadata = serde_json::from_str(
            &std::fs::read_to_string(run.join("artifact-metadata.json")).expect("metadata"),
        )
        .expect("parses");
        assert_eq!(m.outcome, cinepipe::telemetry::Outcome::Success, "{what}");
        assert_eq!(m.scenes.len(), 1, "{what}");
        let frames = &m.scenes[0].frames;
        assert!(frames.count >= 25 && !frames.short, "{what}: {frames:?}");
        assert_eq!(frames.paths.len(), frames.count as usize, "{what}");
        for p in &frames.paths {
            assert!(run.join(p).is_file(), "{what}: {p} is in the run folder");
        }
        let sessions = after
            .iter()
            .filter(|e| matches!(e.kind, EventKind::RunStarted { .. }))
            .count();
        assert_eq!(sessions, 2, "{what}");
    }
}
