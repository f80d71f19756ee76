//! The report's rendering on a run folder made by hand (the contract's example metadata and a
//! journal written with the journal's own types): escaping, the timeline against the journal,
//! thumbnails, links.

use std::path::Path;

use super::*;
use crate::artifact_metadata::ArtifactMetadata;
use crate::rundir::event::{
    AttemptOutcome, Event, EventKind, InstanceId, JOURNAL_VERSION, RunOutcome,
};
use crate::rundir::journal::Journal;

fn ev(ts: &str, kind: EventKind) -> Event {
    Event {
        ts: ts.to_owned(),
        kind,
    }
}

/// A run folder with one scene (`render[0]` failed once, then succeeded), a metadata file whose
/// scene prompt is `prompt`, and three frames.
fn run_folder(dir: &Path, prompt: &str) {
    let mut meta: ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/runs/valid/artifact-metadata.json"
        ))
        .expect("fixture"),
    )
    .expect("parses");
    meta.scenes.truncate(1);
    meta.scenes[0].prompt = prompt.to_owned();
    meta.scenes[0].frames.paths = (1..=3)
        .map(|i| format!("frames/scene-1/f{i}.png"))
        .collect();
    std::fs::create_dir_all(dir.join("frames/scene-1")).expect("mkdir");
    for i in 1..=3u8 {
        image::RgbImage::from_pixel(200, 100, image::Rgb([i * 60, 10, 10]))
            .save(dir.join(format!("frames/scene-1/f{i}.png")))
            .expect("png");
    }
    std::fs::write(
        dir.join(crate::artifact_metadata::METADATA_FILE),
        serde_json::to_vec_pretty(&meta).expect("json"),
    )
    .expect("write");
    let mut j = Journal::create(&dir.join(crate::rundir::EVENTS)).expect("journal");
    let render = InstanceId::new("render", Some(0));
    for e in [
        ev(
            "2026-01-01T00:00:00.000Z",
            EventKind::RunStarted {
                journal_version: JOURNAL_VERSION,
                run_id: "r1".into(),
                session: 1,
                spec: "s.toml".into(),
                profile: "standard".into(),
                jobs: 1,
                keep_going: false,
                no_cache: false,
                version: "0".into(),
                unbuilt_kinds: vec![],
            },
        ),
        ev(
            "2026-01-01T00:00:00.000Z",
            EventKind::AttemptStarted {
                instance: render.clone(),
                attempt: 1,
            },
        ),
        ev(
            "2026-01-01T00:00:02.000Z",
            EventKind::AttemptFinished {
                instance: render.clone(),
                attempt: 1,
                outcome: AttemptOutcome::Failed,
                duration_s: 2.0,
                class: Some(crate::spec::model::FailureClass::ExecutionError),
                error: Some("<b>boom</b>".into()),
                retry_in_s: Some(1.0),
            },
        ),
        ev(
            "2026-01-01T00:00:03.000Z",
            EventKind::AttemptStarted {
                instance: render.clone(),
                attempt: 2,
            },
        ),
        ev(
            "2026-01-01T00:00:07.000Z",
            EventKind::AttemptFinished {
                instance: render.clone(),
                attempt: 2,
                outcome: AttemptOutcome::Succeeded,
                duration_s: 4.0,
                class: None,
                error: None,
                retry_in_s: None,
            },
        ),
        ev(
            "2026-01-01T00:00:07.000Z",
            EventKind::Succeeded {
                instance: render,
                attempts: 2,
                flaky: true,
                output: None,
            },
        ),
        ev(
            "2026-01-01T00:00:07.000Z",
            EventKind::RunFinished {
                outcome: RunOutcome::Succeeded,
                succeeded: 1,
                failed: 0,
                skipped: 0,
                flaky: 1,
                duration_s: 7.0,
            },
        ),
    ] {
        j.record(&e);
    }
    j.sync();
}

#[test]
fn a_prompt_with_a_script_tag_is_shown_as_text_and_the_page_has_no_script() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prompt = r#"<script>alert("x")</script> a lighthouse & "quotes""#;
    run_folder(dir.path(), prompt);
    let out = dir.path().join("report.html");
    let w = write_report(dir.path(), &out, ThumbOptions::default()).expect("report");
    let html = std::fs::read_to_string(&out).expect("read");
    assert_eq!(w.bytes, html.len());
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; a lighthouse &amp; &quot;quotes&quot;"),
        "the prompt is shown escaped"
    );
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "no script element at all"
    );
    assert!(
        html.contains("&lt;b&gt;boom&lt;/b&gt;"),
        "an error is escaped too"
    );
    assert!(!html.contains("<b>boom"));
}

#[test]
fn the_report_shows_each_attempt_the_wait_between_and_thumbnails_that_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_folder(dir.path(), "a lighthouse");
    let out = dir.path().join("sub/report.html");
    let w = write_report(
        dir.path(),
        &out,
        ThumbOptions {
            frames_per_scene: 2,
            size: 50,
        },
    )
    .expect("report");
    let html = std::fs::read_to_string(&out).expect("read");
    // Two attempts of render[0], and the second's wait after the first failed.
    assert_eq!(
        html.matches(r#"<span class="sp failed""#).count(),
        1,
        "{html}"
    );
    assert_eq!(html.matches(r#"<span class="sp succeeded""#).count(), 1);
    assert_eq!(html.matches(r#"<span class="sp wait""#).count(), 1);
    assert!(html.contains("render[0] waited 1.0 s before attempt 2"));
    // Two of three frames: the first and the last, shrunk to 50 px wide, each a PNG that decodes.
    assert_eq!(w.thumbnails, 2);
    let imgs: Vec<&str> = html
        .split(r#"<img src="data:image/png;base64,"#)
        .skip(1)
        .collect();
    assert_eq!(imgs.len(), 2);
    for img in imgs {
        let b64 = &img[..img.find('"').expect("attribute ends")];
        // Handlebars escapes `=` in attributes; the browser reads the entity back.
        let b64 = b64.replace("&#x3D;", "=");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let png = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((png.width(), png.height()), (50, 25));
    }
    // Links are relative to the report (one folder down) and reach the files.
    assert!(
        html.contains(r#"href="../frames/scene-1/f3.png""#),
        "{html}"
    );
    assert!(html.contains(r#"href="../events.jsonl""#));
    assert!(html.contains("flaky"));
}

#[test]
fn a_bench_folder_and_a_plain_folder_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.html");
    assert!(matches!(
        write_report(dir.path(), &out, ThumbOptions::default()),
        Err(ReportError::NotAFolder { .. })
    ));
    std::fs::write(dir.path().join("results.json"), "{}").expect("write");
    assert!(matches!(
        write_report(dir.path(), &out, ThumbOptions::default()),
        Err(ReportError::Bench { .. })
    ));
    assert!(!out.exists());
}

#[test]
fn the_trace_has_a_span_per_attempt_and_an_instant_for_the_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_folder(dir.path(), "a lighthouse");
    let out = dir.path().join("trace.json");
    let n = trace::write_trace(dir.path(), &out).expect("trace");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("JSON");
    let events = v["traceEvents"].as_array().expect("events");
    assert_eq!(events.len(), n);
    let spans: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0]["ts"], 0);
    assert_eq!(spans[0]["dur"], 2_000_000);
    assert_eq!(spans[1]["ts"], 3_000_000);
    assert_eq!(spans[1]["tid"], 1, "scene 0's track");
    let retry = events
        .iter()
        .find(|e| e["ph"] == "i" && e["cat"] == "retry")
        .expect("a retry instant");
    assert_eq!(retry["ts"], 2_000_000);
    assert_eq!(retry["args"]["wait_s"], 1.0);
    assert!(
        events
            .iter()
            .any(|e| e["ph"] == "M" && e["args"]["name"] == "scene scene-1")
    );
}
