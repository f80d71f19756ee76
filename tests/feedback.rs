//! `cinepipe feedback` through the real binary on a copy of a real run (`report::shared_run`):
//! ratings from many processes at once while `cinepipe run --resume` rewrites the same run's
//! metadata again and again, none lost; bad input refused with exit 64 and nothing changed;
//! the summary by genre, template version and model.

use std::process::{Command, Stdio};

use crate::common::{cinepipe_in, stderr, stdout};
use crate::report::{copy_dir, shared_run};

fn feedback_count(run: &std::path::Path) -> (usize, usize) {
    let meta: cinepipe::artifact_metadata::ArtifactMetadata = serde_json::from_str(
        &std::fs::read_to_string(run.join("artifact-metadata.json")).expect("metadata"),
    )
    .expect("typed");
    let journaled = crate::common::journal_events(run)
        .iter()
        .filter(|e| matches!(e.kind, cinepipe::exec::EventKind::FeedbackGiven { .. }))
        .count();
    (meta.feedback.len(), journaled)
}

#[test]
fn ratings_given_while_resumes_rewrite_the_metadata_are_all_kept() {
    let Some(shared) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    let run = top
        .path()
        .join("runs")
        .join(shared.file_name().expect("id"));
    copy_dir(shared, &run);
    assert_eq!(feedback_count(&run), (0, 0));
    let run_arg = run.to_str().expect("utf-8").to_owned();

    // Resumes, one after the other: each rewrites artifact-metadata.json (read the ratings,
    // write them back) at its end.
    let resumes = {
        let run_arg = run_arg.clone();
        let cwd = top.path().to_owned();
        std::thread::spawn(move || {
            for _ in 0..4 {
                let out = cinepipe_in(&cwd, &["run", "--resume", &run_arg, "--quiet"]);
                assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            }
        })
    };
    // Meanwhile, twelve ratings from twelve processes at once.
    const RATINGS: usize = 12;
    let children: Vec<_> = (0..RATINGS)
        .map(|i| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_cinepipe"));
            c.args(["feedback", &run_arg, "--rating", &(i % 5 + 1).to_string()])
                .args(["--comment", &format!("rating {i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if i % 2 == 0 {
                c.args(["--scene", "scene-1"]);
            }
            c.spawn().expect("spawns")
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().expect("waits");
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    resumes.join().expect("the resumes passed");
    assert_eq!(feedback_count(&run), (RATINGS, RATINGS), "no rating lost");
    let out = cinepipe_in(top.path(), &["verify", &run_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // One more resume after them all: it still finds nothing to do and keeps every rating.
    let out = cinepipe_in(top.path(), &["run", "--resume", &run_arg, "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(feedback_count(&run), (RATINGS, RATINGS));

    // The summary by genre, template version and model.
    let out = cinepipe_in(
        top.path(),
        &[
            "feedback",
            "--summary",
            top.path().join("runs").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("GENRE"), "{text}");
    // prompts/story/v1/sci-fi.hbs, version 1.1.0; twelve ratings of 1..5 in turn.
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], "sci-fi", "{text}");
    assert_eq!(cells[1], "1.1.0", "{text}");
    assert_eq!(&cells[3..], ["1", "12", "2.75", "3/3/2/2/2"], "{text}");
}

#[test]
fn bad_ratings_and_unknown_scenes_exit_64_and_change_nothing() {
    let Some(shared) = shared_run() else {
        return;
    };
    let top = tempfile::tempdir().expect("tempdir");
    let run = top.path().join("run");
    copy_dir(shared, &run);
    let run_arg = run.to_str().expect("utf-8");
    let files = || {
        (
            std::fs::read(run.join("artifact-metadata.json")).expect("metadata"),
            std::fs::read(run.join("events.jsonl")).expect("journal"),
        )
    };
    let before = files();
    for (args, says) in [
        (
            vec!["--rating", "0", "--scene", "scene-1"],
            "0 is not in 1..=5",
        ),
        (vec!["--rating", "6"], "6 is not in 1..=5"),
        (
            vec!["--rating", "3", "--scene", "scene-7"],
            "unknown scene `scene-7`",
        ),
    ] {
        let mut all = vec!["feedback", run_arg];
        all.extend(args);
        let out = cinepipe_in(top.path(), &all);
        assert_eq!(out.status.code(), Some(64), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{all:?}: {}", stderr(&out));
    }
    assert!(files() == before, "nothing changed");
    let out = cinepipe_in(
        top.path(),
        &[
            "feedback",
            top.path().to_str().expect("utf-8"),
            "--rating",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = cinepipe_in(
        top.path(),
        &["feedback", run_arg, "--rating", "5", "--scene", "scene-1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("rated scene scene-1 of {run_arg}: 5 stars")
    );
}
