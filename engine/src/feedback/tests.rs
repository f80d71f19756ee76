//! Ratings on a copy of the contract's valid run folder with a journal: what is written, byte
//! for byte names, bad input changing nothing, and a rating while a writer holds the journal.

use std::path::Path;

use super::*;
use crate::rundir::event::{EventKind, JOURNAL_VERSION};
use crate::rundir::journal::Journal;

fn started() -> Event {
    Event::now(EventKind::RunStarted {
        journal_version: JOURNAL_VERSION,
        run_id: "r".into(),
        session: 1,
        spec: "s.toml".into(),
        profile: "standard".into(),
        jobs: 1,
        keep_going: false,
        no_cache: false,
        version: "0".into(),
        unbuilt_kinds: vec![],
    })
}

fn run_folder(dir: &Path) {
    let valid = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/runs/valid");
    for f in [METADATA_FILE, crate::artifact_metadata::SUMMARY_FILE] {
        std::fs::copy(valid.join(f), dir.join(f)).expect("copy");
    }
    let mut j = Journal::create(&dir.join(EVENTS)).expect("journal");
    j.record(&started());
    j.sync();
}

fn rating(scene: Option<&str>, stars: u8) -> Rating {
    Rating {
        scene: scene.map(str::to_owned),
        rating: stars,
        comment: Some("the <pan> is smooth".into()),
        author: Some("ana".into()),
    }
}

#[test]
fn a_rating_is_written_with_the_contracts_names_and_journaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_folder(dir.path());
    give(dir.path(), &rating(Some("scene-2"), 4)).expect("recorded");
    give(dir.path(), &rating(None, 5)).expect("the run as a whole");
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(METADATA_FILE)).expect("read"),
    )
    .expect("JSON");
    let fb = doc["Feedback"].as_array().expect("Feedback");
    // Two earlier ratings are in the fixture already; they are kept.
    let new = &fb[fb.len() - 2];
    let keys: Vec<&str> = new
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["SceneId", "Rating", "Comment", "Author", "SubmittedAt"]
    );
    assert_eq!(new["SceneId"], "scene-2");
    assert_eq!(new["Rating"], 4);
    assert_eq!(fb[fb.len() - 1]["SceneId"], serde_json::Value::Null);
    assert_eq!(crate::verify::verify_run(dir.path()).expect("reads"), []);
    let journal = std::fs::read_to_string(dir.path().join(EVENTS)).expect("journal");
    let last: Event = serde_json::from_str(journal.lines().nth(1).expect("line 2")).expect("event");
    assert!(
        matches!(last.kind, EventKind::FeedbackGiven { ref scene, rating: 4, .. } if scene.as_deref() == Some("scene-2")),
        "{last:?}"
    );
    assert_eq!(journal.lines().count(), 3);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_folder(dir.path());
    let before = (
        std::fs::read(dir.path().join(METADATA_FILE)).expect("read"),
        std::fs::read(dir.path().join(EVENTS)).expect("read"),
    );
    for stars in [0, 6] {
        let e = give(dir.path(), &rating(Some("scene-1"), stars)).expect_err("out of range");
        assert!(
            matches!(e, FeedbackError::Rating(_)) && e.is_bad_input(),
            "{e}"
        );
    }
    let e = give(dir.path(), &rating(Some("scene_2"), 3)).expect_err("unknown scene");
    assert_eq!(
        e.to_string(),
        "unknown scene `scene_2` (hint: did you mean `scene-2`?); scenes: scene-1, scene-2, scene-3"
    );
    let after = (
        std::fs::read(dir.path().join(METADATA_FILE)).expect("read"),
        std::fs::read(dir.path().join(EVENTS)).expect("read"),
    );
    assert!(before == after, "nothing changed");
    let e = give(&dir.path().join("nope"), &rating(None, 3)).expect_err("not a run");
    assert!(matches!(e, FeedbackError::NotARun { .. }), "{e}");
}

#[test]
fn a_rating_while_a_writer_holds_the_journal_is_a_whole_line_beside_its_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_folder(dir.path());
    // A running session: it holds the journal and appends after the rating.
    let mut writer = Journal::append_to(&dir.path().join(EVENTS)).expect("a live writer");
    writer.record(&started());
    writer.flush();
    give(dir.path(), &rating(Some("scene-1"), 2)).expect("recorded beside the writer");
    writer.record(&started());
    writer.sync();
    drop(writer);
    let r = journal::replay(&dir.path().join(EVENTS)).expect("every line whole");
    assert_eq!(r.events, 4);
    assert!(!r.torn);
    // A resume keeps the rating's line: only a torn tail is cut.
    drop(Journal::append_to(&dir.path().join(EVENTS)).expect("reopen"));
    assert_eq!(
        journal::replay(&dir.path().join(EVENTS))
            .expect("replays")
            .events,
        4
    );
}
