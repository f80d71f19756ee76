//! Property tests: the checker never panics, whatever it is fed.

use std::path::Path;

use cinepipe::spec::{self, SpecSource};
use proptest::prelude::*;

fn check_bytes(bytes: &[u8]) {
    if let Ok(source) = SpecSource::from_bytes(Path::new("fuzz.toml"), bytes) {
        let _ = spec::check(&source, None);
        let _ = spec::check(&source, Some("fast"));
    }
}

/// Keys the checker knows, so that random documents reach deep into the rules.
const KEYS: &[&str] = &[
    "run",
    "name",
    "stages",
    "services",
    "profiles",
    "kind",
    "needs",
    "for_each",
    "retry",
    "budget",
    "backoff",
    "delay_s",
    "jitter",
    "max_delay_s",
    "on",
    "service",
    "prompt",
    "vars",
    "workflow",
    "set",
    "poll_interval_s",
    "max_wait_s",
    "urls",
    "base_url",
    "model",
    "fallback",
    "inherits",
    "kinds",
    "queue",
    "llm",
    "on_short",
    "requeue",
    "story",
    "render",
    "patch",
    "scenes",
    "base_dir",
    "output_schema",
    "launch",
    "command",
];
const STRINGS: &[&str] = &[
    "llm",
    "queue",
    "patch-workflow",
    "await-marker",
    "collect-frames",
    "quality",
    "validate",
    "openai",
    "comfyui",
    "story.scenes",
    "story",
    "render",
    "{{scene.prompt}}",
    "{{#if",
    "http://127.0.0.1:1",
    "exponential",
    "fast",
    "../x",
    "",
    "workflows/model-free/frames.json",
    "prompts/story/v1/sci-fi.hbs",
];

fn toml_value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        proptest::sample::select(STRINGS).prop_map(|s| toml::Value::String(s.to_owned())),
        any::<i64>().prop_map(toml::Value::Integer),
        (-1e6f64..1e6).prop_map(toml::Value::Float),
        any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(toml::Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |kv| toml::Value::Table(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&bytes);
    }

    #[test]
    fn random_text_never_panics(text in "[\\[\\]a-z_.=\"{}, \n0-9#-]{0,400}") {
        check_bytes(text.as_bytes());
    }

    #[test]
    fn random_toml_documents_never_panic(doc in proptest::collection::vec((proptest::sample::select(KEYS), toml_value()), 0..8)) {
        let table: toml::Table = doc.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Ok(text) = toml::to_string(&table) {
            check_bytes(text.as_bytes());
        }
    }

    #[test]
    fn mutated_example_specs_never_panic(cut in 0usize..4000, insert in "[a-z\\[\\]=\"{}.,\n]{0,8}") {
        let demo = std::fs::read_to_string(crate::common::root().join("specs/story-to-video.toml")).expect("reads");
        let cut = cut.min(demo.len());
        let cut = (0..=cut).rev().find(|i| demo.is_char_boundary(*i)).unwrap_or(0);
        let mutated = format!("{}{}{}", &demo[..cut], insert, &demo[cut..]);
        // Run from the specs folder's point of view so file references resolve.
        let source = SpecSource::from_bytes(&crate::common::root().join("specs/story-to-video.toml"), mutated.as_bytes()).expect("utf8");
        let _ = spec::check(&source, Some("fast"));
    }
}

#[test]
fn empty_file_is_reported_not_panicked() {
    let source = SpecSource::from_bytes(Path::new("empty.toml"), b"").expect("utf8");
    let errors = spec::check(&source, None).expect_err("empty spec is invalid");
    let messages: Vec<&str> = errors
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(messages.iter().any(|m| m.contains("`run`")), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.contains("`stages`")),
        "{messages:?}"
    );
}

#[test]
fn deeply_nested_tables_and_arrays_do_not_overflow_the_stack() {
    let deep_arrays = format!(
        "[run]\nname = \"x\"\nx = {}1{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    check_bytes(deep_arrays.as_bytes());
    let deep_inline = format!("a = {}{}\n", "{ b = ".repeat(50_000), "}".repeat(50_000));
    check_bytes(deep_inline.as_bytes());
    let deep_dotted = format!("{} = 1\n", vec!["k"; 100_000].join("."));
    check_bytes(deep_dotted.as_bytes());
    let deep_headers = format!("[{}]\n", vec!["t"; 100_000].join("."));
    check_bytes(deep_headers.as_bytes());
}

#[test]
fn huge_files_are_refused_before_parsing() {
    let huge = vec![b'#'; cinepipe::spec::source::MAX_SPEC_BYTES + 1];
    let err = SpecSource::from_bytes(Path::new("huge.toml"), &huge).expect_err("too large");
    assert!(err.message.contains("limited to"), "{}", err.message);
    // Just under the limit: parses (all comments), and is reported as missing its tables.
    let big = vec![b'#'; 1024 * 1024];
    check_bytes(&big);
}

#[test]
fn non_utf8_points_at_the_first_bad_byte() {
    let err = SpecSource::from_bytes(Path::new("bad.toml"), b"[run]\nname = \"\xff\"\n")
        .expect_err("not utf8");
    assert_eq!(err.labels.first().map(|l| l.0.start), Some(14));
}
