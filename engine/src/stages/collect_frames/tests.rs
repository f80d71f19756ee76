//! Tests of the collect-frames stage: the stability window, the frame glob, and which files are the frames.

use super::*;
use std::cell::RefCell;
use std::time::SystemTime;

fn f(rel: &str, size: u64, t: u64) -> Listed {
    Listed {
        rel: rel.to_owned(),
        size,
        mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(t)),
    }
}

fn listing(files: Vec<Listed>) -> comfy_files::Listing {
    comfy_files::Listing {
        files,
        skipped: vec![],
    }
}

fn run_settle(seq: Vec<Vec<Listed>>, retries: u32, vouched: &[&str]) -> Stable {
    let seq = RefCell::new(seq.into_iter());
    let last = RefCell::new(Vec::new());
    let vouched: HashSet<String> = vouched.iter().map(|s| (*s).to_owned()).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(settle(
        || {
            let next = seq
                .borrow_mut()
                .next()
                .unwrap_or_else(|| last.borrow().clone());
            last.replace(next.clone());
            Ok(listing(next))
        },
        |_| async { true },
        Duration::from_millis(1),
        retries,
        &vouched,
    ))
    .expect("settle")
}

#[test]
fn files_unchanged_over_the_window_are_stable() {
    let s = run_settle(
        vec![
            vec![f("a", 10, 1), f("b", 10, 1)],
            vec![f("a", 10, 1), f("b", 10, 1)],
        ],
        3,
        &[],
    );
    assert_eq!(s.stable.len(), 2);
    assert!(s.unstable.is_empty());
    assert_eq!(s.listings, 2);
}

#[test]
fn a_growing_file_is_rechecked_then_left_out() {
    // `b` grows at every listing: after 1 + 2 re-checks it is still changing.
    let seq = vec![
        vec![f("a", 10, 1), f("b", 1, 1)],
        vec![f("a", 10, 1), f("b", 2, 2)],
        vec![f("a", 10, 1), f("b", 3, 3)],
        vec![f("a", 10, 1), f("b", 4, 4)],
    ];
    let s = run_settle(seq, 2, &[]);
    assert_eq!(
        s.stable.iter().map(|f| f.rel.as_str()).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(s.unstable, ["b"]);
    assert_eq!(s.listings, 4);
}

#[test]
fn a_file_that_settles_within_the_retries_is_kept() {
    let seq = vec![
        vec![f("a", 1, 1)],
        vec![f("a", 5, 2), f("b", 5, 2)],
        vec![f("a", 5, 2), f("b", 5, 2)],
    ];
    let s = run_settle(seq, 5, &[]);
    assert_eq!(s.stable.len(), 2);
    assert!(s.unstable.is_empty());
    assert_eq!(s.listings, 3);
}

#[test]
fn empty_files_never_count_and_vouched_files_need_no_window() {
    let s = run_settle(vec![vec![f("a", 0, 1)], vec![f("a", 0, 1)]], 0, &[]);
    assert!(s.stable.is_empty());
    assert_eq!(s.unstable, ["a"]);
    // Everything vouched for: one listing, no wait.
    let s = run_settle(
        vec![vec![f("p/a", 3, 1), f("p/b", 3, 1)]],
        3,
        &["p/a", "p/b"],
    );
    assert_eq!((s.stable.len(), s.listings), (2, 1));
}

#[test]
fn globs_from_the_prefix() {
    assert_eq!(
        frame_glob(None, "cinepipe/r/s/a1/frame"),
        "cinepipe/r/s/a1/frame_*.png"
    );
    assert_eq!(frame_glob(None, "odd[1]/f*"), "odd[[]1[]]/f[*]_*.png");
    assert_eq!(frame_glob(Some("{{prefix}}_*.webp"), "p/f"), "p/f_*.webp");
    let g = globset::GlobBuilder::new(&frame_glob(None, "p/f"))
        .literal_separator(true)
        .build()
        .expect("glob")
        .compile_matcher();
    assert!(g.is_match("p/f_00001_.png"));
    assert!(!g.is_match("p/f_00001_.png/x"));
    assert!(!g.is_match("p/f.done"));
    assert!(!g.is_match("p/ff_00001_.png"));
    assert!(!g.is_match("p/.f_00001_.png.tmp"));
}

#[test]
fn the_frames_are_the_markers_list_else_the_named_nodes_else_the_patterns() {
    use crate::clients::comfyui::messages::OutputFile;
    let file = |node: &str, name: &str, kind: &str| OutputFile {
        node: node.into(),
        key: "images".into(),
        filename: name.into(),
        subfolder: "c/r/a1".into(),
        kind: kind.into(),
    };
    let mut render = super::super::output::RenderRef::new("c/r/a1/frame");
    render.files = Some(vec![
        file("9", "frame_00001_.png", "output"),
        file("3", "frame_00003_.png", "output"),
        file("3", "frame_00002_.png", "output"),
        file("3", "preview.png", "temp"),
    ]);
    let mut up = Upstream {
        render,
        attempt: Some(1),
        marker: None,
    };
    assert_eq!(named_frames(&up, None), None, "the pattern decides");
    assert_eq!(
        named_frames(&up, Some("3")),
        Some((
            "node",
            vec![
                "c/r/a1/frame_00002_.png".to_owned(),
                "c/r/a1/frame_00003_.png".to_owned()
            ]
        )),
        "the node's output files, in name order"
    );
    let marker: MarkerOutput = serde_json::from_value(serde_json::json!({
        "prefix": "c/r/a1/frame",
        "DoneMarkerDetected": true,
        "DoneMarkerWaitSeconds": 0.1,
        "DoneMarkerPath": "c/r/a1/frame.done",
        "ForcedCopyTriggered": false,
        "ForcedCopyDebugPath": null,
        "Marker": {"Timestamp": "2025-01-02T03:04:05Z", "FrameCount": 2, "Files": ["frame_00005_.png", "frame_00004_.png"]},
        "System": {"FallbackNotes": []},
    }))
    .expect("a marker output");
    up.marker = Some(marker);
    assert_eq!(
        named_frames(&up, Some("3")),
        Some((
            "marker",
            vec![
                "c/r/a1/frame_00004_.png".to_owned(),
                "c/r/a1/frame_00005_.png".to_owned()
            ]
        )),
        "a detected marker's list comes first"
    );
    assert_eq!(marker_count(&up), Some(2));
}
