//! Tests of the quality stage: frame scores, diversity and thresholds (its runs end to end are
//! in `run/tests/quality.rs`).

use std::path::{Path, PathBuf};

use super::*;
use crate::spec::model::{CheckEntry, QualityThresholds};
use crate::testkit::{flat, moving_square, write_huge_header_png};

#[test]
fn a_moving_square_is_neither_blank_nor_frozen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = analyse(&moving_square(tmp.path(), 25));
    assert_eq!(s.count, 25);
    assert_eq!(s.size, Some((64, 64)));
    assert_eq!((s.blank, s.frozen), (0, 0), "{s:?}");
    assert!(s.notes.is_empty());
}

#[test]
fn all_black_frames_are_blank_and_identical_frames_frozen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = analyse(&flat(tmp.path(), 10, [0, 0, 0]));
    assert_eq!(s.blank_fraction(), Some(1.0));
    // Every frame after the first repeats the one before.
    assert_eq!(s.frozen_fraction(), Some(0.9));
}

#[test]
fn a_repeated_non_blank_frame_is_frozen_but_not_blank() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = moving_square(tmp.path(), 1).remove(0);
    let s = analyse(&vec![one; 4]);
    assert_eq!((s.blank, s.frozen), (0, 3));
}

#[test]
fn the_blank_rule_tolerates_noise_and_a_few_odd_pixels() {
    // Dark noise of a few levels is still a black frame.
    let noisy: Vec<u8> = (0..1000u32).map(|i| (i % 5) as u8).collect();
    assert!(is_blank(&noisy, 1));
    // 1% odd pixels: still blank; 2%: not.
    let mut px = vec![0u8; 1000];
    px[..10].fill(255);
    assert!(is_blank(&px, 1));
    px[..20].fill(255);
    assert!(!is_blank(&px, 1));
}

#[test]
fn a_frame_that_is_not_a_png_counts_as_blank_with_a_note() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("bad.png");
    std::fs::write(&p, b"not a png").expect("write");
    let s = analyse(&[p]);
    assert_eq!((s.count, s.blank, s.size), (1, 1, None));
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
}

#[test]
fn a_frame_claiming_200000_by_200000_pixels_is_not_decoded_and_counts_as_blank() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("huge.png");
    write_huge_header_png(&p, 200_000, 200_000);
    assert!(std::fs::metadata(&p).expect("stat").len() < 1024);
    let s = analyse(&[p]);
    assert_eq!((s.count, s.blank, s.size), (1, 1, None));
    assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    assert!(
        s.notes[0].contains("cannot be decoded")
            && s.notes[0].contains("200000×200000")
            && s.notes[0].contains(&MAX_FRAME_PIXELS.to_string()),
        "{:?}",
        s.notes
    );
}

#[test]
fn a_frame_at_the_pixel_limit_is_read_past_its_header() {
    // 7680×4320 is within the limit: the decoder gets past the size check and fails only on
    // the missing pixel data, which is what shows the limit is not set below 8K.
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = tmp.path().join("eight-k.png");
    write_huge_header_png(&p, 7680, 4320);
    let s = analyse(&[p]);
    assert_eq!(s.blank, 1);
    assert!(!s.notes[0].contains("over the limit"), "{:?}", s.notes);
}

#[test]
fn a_noisy_frame_stops_the_blank_count_early_and_is_not_blank() {
    // Every pixel distinct: far more values than a blank frame can have.
    let px: Vec<u8> = (0..300u32 * 300)
        .flat_map(|i| i.to_le_bytes()[..3].to_vec())
        .collect();
    assert!(!is_blank(&px, 3));
}

fn checks_all() -> Vec<CheckEntry> {
    [
        QualityCheck::FrameCount,
        QualityCheck::Resolution,
        QualityCheck::Blank,
        QualityCheck::Frozen,
    ]
    .map(CheckEntry::named)
    .to_vec()
}

fn scene(dir: &Path, paths: &[PathBuf]) -> SceneInput {
    SceneInput {
        id: "s1".into(),
        index: 0,
        prompt: "p".into(),
        frames: paths
            .iter()
            .map(|p| p.strip_prefix(dir).expect("inside").display().to_string())
            .collect(),
    }
}

fn verdicts(s: &SceneScore) -> Vec<(QualityCheck, Option<f64>, bool)> {
    s.checks
        .iter()
        .map(|c| (c.check, c.value, c.passed))
        .collect()
}

#[test]
fn thresholds_pass_the_demo_frames_and_fail_broken_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = QualityThresholds::default();
    let good = moving_square(tmp.path(), 25);
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &good),
        &checks_all(),
        &t,
        None,
    );
    assert_eq!(
        verdicts(&s),
        [
            (QualityCheck::FrameCount, Some(25.0), true),
            (QualityCheck::Resolution, Some(1.0), true),
            (QualityCheck::Blank, Some(0.0), true),
            (QualityCheck::Frozen, Some(0.0), true),
        ]
    );
    assert_eq!(s.metrics.width, Some(64));

    let black = flat(tmp.path(), 30, [0, 0, 0]);
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &black),
        &checks_all(),
        &t,
        None,
    );
    let failed: Vec<QualityCheck> = s
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.check)
        .collect();
    assert_eq!(failed, [QualityCheck::Blank, QualityCheck::Frozen]);

    // No frames: the count fails, the rest cannot be measured and so do not pass.
    let s = score_frames(tmp.path(), &scene(tmp.path(), &[]), &checks_all(), &t, None);
    assert_eq!(
        verdicts(&s),
        [
            (QualityCheck::FrameCount, Some(0.0), false),
            (QualityCheck::Resolution, None, false),
            (QualityCheck::Blank, None, false),
            (QualityCheck::Frozen, None, false),
        ]
    );
    assert!(
        s.notes.iter().any(|n| n.contains("no frames")),
        "{:?}",
        s.notes
    );

    // Too small for a raised floor.
    let t = QualityThresholds {
        min_width: 128,
        ..QualityThresholds::default()
    };
    let s = score_frames(
        tmp.path(),
        &scene(tmp.path(), &good),
        &[CheckEntry::named(QualityCheck::Resolution)],
        &t,
        None,
    );
    assert_eq!(verdicts(&s), [(QualityCheck::Resolution, Some(0.5), false)]);
}

/// `-Σ p log2 p` over scene counts per theme, worked by hand below.
fn entropy(counts: &[f64]) -> f64 {
    let n: f64 = counts.iter().sum();
    counts.iter().map(|c| -(c / n) * (c / n).log2()).sum()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[test]
fn key_themes_are_the_first_three_content_words_each_once() {
    // "a", "on", "the" are stop words or short; "storms" is the theme "storm".
    assert_eq!(
        key_themes("A lighthouse keeper on the moon watches storms"),
        ["lighthouse", "keeper", "moon"]
    );
    assert_eq!(
        themes("Storms, storm and stories; the glass"),
        ["storm", "story", "glass"]
    );
    assert_eq!(key_themes("The light of the world"), ["light", "world"]);
}

#[test]
fn diversity_is_the_entropy_in_bits_of_the_scenes_key_themes() {
    // Two scenes, six distinct key themes: log2 6 ≈ 2.585 bits, over the default 2.0.
    let varied = [
        "a lighthouse keeper on a moon",
        "dust storms over the crater",
    ];
    assert!(close(diversity(&varied), 6f64.log2()));
    assert!(diversity(&varied).expect("d") >= QualityThresholds::default().min_diversity);

    // The demo's failure: one prompt twice. Each scene adds {light, world} once: counts 2, 2,
    // p = 1/2 each, H = 1 bit; the scene repeated adds nothing.
    let twice = ["The Light of the World", "The Light of the World"];
    assert!(close(diversity(&twice), 1.0));
    assert!(close(diversity(&twice[..1].repeat(5).to_vec()), 1.0));

    // A scene of three key themes repeated any number of times: log2 3 ≈ 1.585 < 2.0.
    let same = "keeper climbs the lighthouse stairs at night";
    for n in [2, 3, 7] {
        let d = diversity(&vec![same; n]);
        assert!(close(d, 3f64.log2()), "{n}: {d:?}");
        assert!(d.expect("d") < 2.0);
    }

    // Two scenes sharing two of their three key themes: counts keeper 2, lighthouse 2,
    // stair 1, moon 1 over 6 pairs.
    let two_shared = ["keeper lighthouse stairs", "keeper lighthouse moon"];
    let expected = entropy(&[2.0, 2.0, 1.0, 1.0]);
    assert!((expected - 1.918).abs() < 1e-3, "{expected}");
    assert!(close(diversity(&two_shared), expected));
    // Sharing one: counts 2, 1, 1, 1, 1 → ≈ 2.252, a pass.
    let one_shared = ["keeper lighthouse stairs", "keeper crater dust"];
    let expected = entropy(&[2.0, 1.0, 1.0, 1.0, 1.0]);
    assert!((expected - 2.252).abs() < 1e-3, "{expected}");
    assert!(close(diversity(&one_shared), expected));

    // Only the first three themes of a long prompt count: the extra words add nothing.
    let long = [
        "keeper lighthouse stairs moon crater dust ocean",
        "keeper lighthouse stairs",
    ];
    assert!(close(diversity(&long), 3f64.log2()));

    // Between scenes only: one scene, or no theme at all, is not measured.
    assert_eq!(diversity(&["moon dust crater"]), None);
    assert_eq!(diversity(&["of the", "and a"]), None);
}

#[test]
fn lexical_similarity_is_the_jaccard_of_the_theme_sets() {
    assert!(close(
        lexical_similarity("The Light of the World", "the light of the world"),
        1.0
    ));
    // {keeper, climb, lighthouse, stair} vs the same and {night}: 4 / 5.
    assert!(close(
        lexical_similarity(
            "A keeper climbs the lighthouse stairs",
            "The keeper climbs the lighthouse stairs at night"
        ),
        0.8
    ));
    // {lighthouse, keeper, moon} vs {dust, storm, crater}: nothing shared.
    assert!(close(
        lexical_similarity(
            "a lighthouse keeper on a moon",
            "dust storms over the crater"
        ),
        0.0
    ));
    assert_eq!(lexical_similarity("of the", "and a"), None);

    // The closest other scene: scene 0 is 0.8 like scene 2 and 0 like scene 1.
    let story = [
        "A keeper climbs the lighthouse stairs",
        "dust storms over the crater",
        "The keeper climbs the lighthouse stairs at night",
    ];
    let closest = closest_other(0, 3, |i, j| lexical_similarity(story[i], story[j]));
    assert_eq!(closest.map(|c| c.1), Some(2));
    assert!(close(closest.map(|c| c.0), 0.8));
    // Over the default 0.6: a near-duplicate; the varied pair is far under.
    assert!(0.8 > QualityThresholds::default().max_similarity);
    assert_eq!(closest_other(0, 1, |_, _| Some(1.0)), None);
}

#[test]
fn cosine_of_vectors() {
    assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]), Some(1.0));
    assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), Some(0.0));
    assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
    assert_eq!(cosine(&[0.0], &[1.0]), None);
}

#[test]
fn the_perceptual_hash_sees_structure_and_the_signature_spans_the_scene() {
    // A flat image has no darker-to-lighter step: no bit set, whatever its colour.
    assert_eq!(dhash(&[200; 64 * 64 * 3], 64, 64, 3), 0);
    assert_eq!(dhash(&[10; 64 * 64], 64, 64, 1), 0);
    // Brighter to the right everywhere: every one of the 8×8 bits set.
    let ramp: Vec<u8> = (0..18 * 8).map(|i| ((i % 18) * 14) as u8).collect();
    assert_eq!(dhash(&ramp, 18, 8, 1), u64::MAX);
    // Brighter to the left: none.
    let back: Vec<u8> = ramp.iter().map(|v| 255 - v).collect();
    assert_eq!(dhash(&back, 18, 8, 1), 0);
    // A tiny image leaves cells empty instead of failing.
    let _ = dhash(&[1, 2, 3], 3, 1, 1);

    assert_eq!(signature(&[1, 2, 3, 4, 5]), [1, 3, 5]);
    assert_eq!(signature(&[7]), [7]);
    assert!(signature(&[]).is_empty());
    // Bits differing at the same places, averaged: (1 + 3 + 0) / 3.
    assert_eq!(distance(&[0b1, 0b111, 9], &[0, 0, 9]), Some(4.0 / 3.0));
    assert_eq!(distance(&[], &[1]), None);
    assert_eq!(
        from_hex(&to_hex(&[u64::MAX, 0, 0xabc])),
        Some(vec![u64::MAX, 0, 0xabc])
    );
    assert_eq!(from_hex(&["xyz".to_owned()]), None);
}

#[test]
fn scenes_with_the_same_frames_fail_same_frames_and_others_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("a");
    let c = tmp.path().join("c");
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&c).expect("mkdir");
    let sig = |paths: &[PathBuf]| signature(&analyse(paths).hashes);
    let square = sig(&moving_square(&a, 25));
    // The same workflow again: the same frames.
    let again = sig(&moving_square(&c, 25));
    assert_eq!(square.len(), 3);
    assert_eq!(distance(&square, &again), Some(0.0));
    // A ramp: another picture.
    let ramp_path = tmp.path().join("ramp.png");
    crate::testkit::write_png(&ramp_path, 64, 64, |x, _| [(x * 4) as u8; 3]);
    let other = sig(&[ramp_path]);
    let scenes = vec![
        ("a".to_owned(), square),
        ("b".to_owned(), again),
        ("c".to_owned(), other),
    ];
    let (checks, notes) = same_frames_checks(&scenes, 2.0);
    let verdicts: Vec<(Option<&str>, bool)> = checks
        .iter()
        .map(|c| (c.scene_id.as_deref(), c.passed))
        .collect();
    assert_eq!(
        verdicts,
        [(Some("a"), false), (Some("b"), false), (Some("c"), true)]
    );
    assert_eq!(checks[0].value, Some(0.0));
    assert!(checks[2].value.is_some_and(|v| v >= 2.0), "{checks:?}");
    assert!(
        notes[0].contains("scene `a` has the same frames as scene `b`"),
        "{notes:?}"
    );
}

fn tok(token: &str, top: &[(&str, f64)]) -> crate::clients::openai::TokenChoices {
    crate::clients::openai::TokenChoices {
        token: token.to_owned(),
        top: top.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect(),
    }
}

#[test]
fn the_judge_s_grade_is_the_probability_weighted_mean_at_the_score_token() {
    // `{"score": 4, ...}` as llama.cpp tokenises it; at the grade's place the model weighed
    // 4 (p = 0.5), 5 (0.25), 3 (0.125) and non-grades (`n`, ` `), which are left out.
    let ln = f64::ln;
    let tokens = [
        tok("{", &[("{", 0.0)]),
        tok(" \"", &[]),
        tok("score", &[]),
        tok("\":", &[]),
        tok(
            " 4",
            &[
                (" 4", ln(0.5)),
                ("5", ln(0.25)),
                ("3", ln(0.125)),
                ("n", ln(0.1)),
                (" ", ln(0.025)),
            ],
        ),
        tok(",", &[("4", ln(0.9))]),
    ];
    let p = grade_distribution(&tokens).expect("a grade token");
    // Renormalised over the grades: 0.5, 0.25, 0.125 of 0.875.
    let want = [0.0, 0.0, 0.125 / 0.875, 0.5 / 0.875, 0.25 / 0.875];
    for (got, want) in p.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{p:?}");
    }
    // 3·(1/7) + 4·(4/7) + 5·(2/7) = 29/7 ≈ 4.14.
    assert!((weighted_mean(&p) - 29.0 / 7.0).abs() < 1e-12);
    // A digit before `"score"` (in a title, say) is not the grade; no grade at all is none.
    let early = [
        tok("3", &[("3", 0.0)]),
        tok("\"score\":", &[]),
        tok("2", &[("2", 0.0)]),
    ];
    assert_eq!(grade_distribution(&early), Some([0.0, 1.0, 0.0, 0.0, 0.0]));
    assert_eq!(
        grade_distribution(&[tok("{\"score\":", &[]), tok("x", &[("x", 0.0)])]),
        None
    );
}

#[test]
fn the_judge_s_answer_must_be_a_grade_from_1_to_5_and_a_reason() {
    assert_eq!(
        parse_grade(r#"{"score": 4, "reason": "one story"}"#),
        Some((4, "one story".to_owned()))
    );
    assert_eq!(parse_grade(r#"{"score": 6, "reason": "x"}"#), None);
    assert_eq!(parse_grade(r#"{"score": 0, "reason": "x"}"#), None);
    assert_eq!(parse_grade(r#"{"score": "4", "reason": "x"}"#), None);
    assert_eq!(parse_grade(r#"{"score": 4}"#), None);
    assert_eq!(parse_grade("four"), None);
    assert_eq!(
        story_text(&[
            ("a".into(), " a keeper ".into()),
            ("b".into(), "the lamp".into())
        ]),
        "1. a keeper\n2. the lamp"
    );
}
