//! The `llm` stage against a real LLM server (llama.cpp's server with SmolLM2-135M, from the
//! harness): structured stories, streaming, the fallback chain, the seeds' checks, the cache,
//! and the API key staying out of everything written.

use std::path::Path;

use cinepipe::spec::model::{FailureClass, LlmStage, Service};
use cinepipe::stages::llm::{self, LlmInput, LlmOutcome};
use cinepipe::testkit::{self, SpecBuilder};
use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::common::root;
use crate::harness::{self, free_port};

fn stage(extra: Value) -> LlmStage {
    let mut v = SpecBuilder::chain("llm-test", &["story"])
        .small_model_story()
        .stage_settings("story");
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("a valid llm stage")
}

/// The stage for tests about the stage's behaviour (fallback, classes), not about stories:
/// the server's grammar (`response_format` json_schema) leaves the model one answer,
/// `{"answer": "yes"}`, give or take whitespace the grammar bounds. It ends with `stop` in a
/// few dozen tokens on any CPU, where a story from this small model depends on the CPU's float
/// results (on some it loops until `max_tokens`) and, on a busy 2-core CI machine, takes minutes.
fn tiny(extra: Value) -> LlmStage {
    let mut v = json!({
        "output_schema": "tests/fixtures/schemas/yes.schema.json",
        "min_completion_tokens": 1,
        "max_tokens": 200,
        "timeout_s": 300.0,
        "max_latency_s": 300.0,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    stage(v)
}

/// The answer [`tiny`] leaves the model.
fn assert_yes(out: &LlmOutcome) {
    assert_eq!(out.output, json!({ "answer": "yes" }));
    assert_eq!(out.answer.finish_reason.as_deref(), Some("stop"));
}

fn services(v: Value) -> IndexMap<String, Service> {
    serde_json::from_value(v).expect("valid services")
}

fn openai(url: &str, model: &str, fallback: Option<&str>) -> Value {
    let mut s = json!({ "kind": "openai", "base_url": url, "model": model, "timeout_s": 900.0 });
    if let Some(f) = fallback {
        s["fallback"] = json!(f);
    }
    s
}

fn attempt(
    stage: &LlmStage,
    services: &IndexMap<String, Service>,
    cache: &Path,
    no_cache: bool,
) -> Result<LlmOutcome, llm::LlmFailure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let root = root();
    rt.block_on(llm::run(&LlmInput {
        stage,
        services,
        base_dir: &root,
        cache_dir: cache,
        no_cache,
    }))
}

fn scenes(out: &LlmOutcome) -> Vec<String> {
    out.output["scenes"]
        .as_array()
        .expect("scenes")
        .iter()
        .map(|s| s["prompt"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `llamacpp:tokens_predicted_total` from the server's Prometheus metrics.
fn predicted_total(base: &str) -> f64 {
    let url = format!("{}/metrics", base.trim_end_matches("/v1"));
    let (code, text) = harness::http("GET", &url, None).expect("metrics");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("llamacpp:tokens_predicted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tokens_predicted_total in:\n{text}"))
}

/// What the server guarantees of any answer on any CPU: a story that parses into the story
/// type with the scenes asked for, finished by the model (`stop`, not `length`), with as many
/// completion tokens as the server itself counted for the request.
fn assert_a_whole_story(out: &LlmOutcome, predicted: f64, how: &str) {
    let story: cinepipe::story::Story = serde_json::from_value(out.output.clone())
        .unwrap_or_else(|e| panic!("{how}: not a story ({e}): {}", out.output));
    assert_eq!(story.scenes.len(), 2, "{how}: {}", out.output);
    assert!(!out.cache_hit, "{how}");
    assert_eq!(out.service, "llm", "{how}");
    assert_eq!(out.answer.finish_reason.as_deref(), Some("stop"), "{how}");
    let tokens = out.answer.completion_tokens.unwrap_or(0);
    assert!(tokens >= 20, "{how}: {tokens} tokens");
    assert_eq!(
        tokens as f64, predicted,
        "{how}: usage vs the server's own count"
    );
    assert!(out.tokens_per_second.is_some_and(|t| t > 0.0), "{how}");
    assert_eq!(out.template_version.as_deref(), Some("1.1.0"), "{how}");
    assert_eq!(out.providers[0].health, "reachable", "{how}");
}

#[test]
fn a_real_model_writes_a_story_that_validates_streamed_or_not() {
    // A server of its own, so that nothing else runs on it: one slot (llama.cpp batches
    // concurrent requests together, which changes the arithmetic) and no prompt cache. With the
    // cache (llama.cpp's default), the second of two equal requests reuses the first one's KV
    // cache and evaluates only the prompt's last token, in a batch of one instead of the whole
    // prompt's; llama.cpp documents (`cache_prompt` in its server README) that logits are not
    // bit-for-bit identical across batch sizes, and on some CPUs that flips a greedy token: two
    // identical non-streamed requests gave two different stories (issue 12). `--metrics` for
    // the server's own token count.
    let Some(server) = harness::own_llm(&["--parallel", "1", "--no-cache-prompt", "--metrics"])
    else {
        return;
    };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&server.url, &server.model, None) }));

    let before = predicted_total(&server.url);
    let plain = attempt(&stage(json!({})), &svcs, cache.path(), true).expect("a story");
    let after_plain = predicted_total(&server.url);
    assert_a_whole_story(&plain, after_plain - before, "plain");

    let streamed = attempt(&stage(json!({ "stream": true })), &svcs, cache.path(), true)
        .expect("a streamed story");
    assert_a_whole_story(
        &streamed,
        predicted_total(&server.url) - after_plain,
        "streamed",
    );

    // Temperature 0, a fixed seed and every prompt evaluated the same way: the same tokens,
    // whichever way they travel.
    assert_eq!(streamed.output, plain.output);
    assert_eq!(
        streamed.answer.completion_tokens,
        plain.answer.completion_tokens
    );
}

#[test]
fn a_closed_port_falls_back_to_the_real_server() {
    let Some(server) = harness::llm() else { return };
    let cache = tempfile::tempdir().expect("tmp");
    let dead = format!("http://127.0.0.1:{}/v1", free_port());
    let svcs = services(json!({
        "primary": openai(&dead, &server.model, Some("real")),
        "real": openai(&server.url, &server.model, None),
    }));
    let out = attempt(
        &tiny(json!({ "service": "primary" })),
        &svcs,
        cache.path(),
        true,
    )
    .unwrap_or_else(|e| panic!("the fallback answers: {e:?}\n{}", harness::llm_log_tail()));
    assert_yes(&out);
    assert_eq!(out.service, "real");
    assert_eq!(out.providers.len(), 2);
    assert_eq!(out.providers[0].health, "unavailable");
    assert!(
        out.providers[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect")),
        "{:?}",
        out.providers
    );
    assert!(
        out.fallback_notes
            .iter()
            .any(|n| n.starts_with("llm: `primary` failed") && n.ends_with("trying `real`")),
        "{:?}",
        out.fallback_notes
    );
    assert!(
        out.fallback_notes
            .contains(&"llm: answered by fallback `real`".to_string())
    );
}

#[test]
fn a_server_without_the_model_falls_back_with_a_note_naming_its_models() {
    let Some(server) = harness::llm() else { return };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({
        "primary": openai(&server.url, "llama-3-70b-instruct", Some("real")),
        "real": openai(&server.url, &server.model, None),
    }));
    let out = attempt(
        &tiny(json!({ "service": "primary" })),
        &svcs,
        cache.path(),
        true,
    )
    .unwrap_or_else(|e| panic!("the fallback answers: {e:?}\n{}", harness::llm_log_tail()));
    assert_yes(&out);
    assert_eq!(out.service, "real");
    assert_eq!(out.providers[0].health, "reachable");
    let err = out.providers[0].error.as_deref().unwrap_or_default();
    assert_eq!(
        err,
        format!(
            "the server at {} does not have model `llama-3-70b-instruct`; it has: `{}`",
            server.url, server.model
        )
    );
}

#[test]
fn all_providers_down_is_one_error_naming_each() {
    let cache = tempfile::tempdir().expect("tmp");
    let (a, b) = (free_port(), free_port());
    let svcs = services(json!({
        "a": openai(&format!("http://127.0.0.1:{a}/v1"), "m", Some("b")),
        "b": openai(&format!("http://127.0.0.1:{b}/v1"), "m", None),
    }));
    let err = attempt(
        &stage(json!({ "service": "a" })),
        &svcs,
        cache.path(),
        false,
    )
    .expect_err("nobody answers");
    assert_eq!(err.class, FailureClass::Transport);
    assert!(
        err.message
            .starts_with("no LLM provider answered; tried 2:"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("`a` (http://127.0.0.1:{a}/v1)")),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("`b` (http://127.0.0.1:{b}/v1)")),
        "{}",
        err.message
    );
    assert_eq!(err.providers.len(), 2);
    // Errors are never cached.
    assert_eq!(
        std::fs::read_dir(cache.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[test]
fn too_few_max_tokens_is_the_truncated_class() {
    let Some(server) = harness::llm() else { return };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&server.url, &server.model, None) }));
    let err = attempt(
        &stage(json!({ "max_tokens": 8 })),
        &svcs,
        cache.path(),
        false,
    )
    .expect_err("cut off");
    assert_eq!(err.class, FailureClass::Truncated, "{}", err.message);
    assert!(err.message.contains("max_tokens = 8"), "{}", err.message);
    assert_eq!(
        err.answer.as_ref().and_then(|a| a.finish_reason.as_deref()),
        Some("length")
    );
}

#[test]
fn a_narrow_token_range_is_the_token_range_class() {
    let Some(server) = harness::llm() else { return };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&server.url, &server.model, None) }));
    let err = attempt(
        &tiny(json!({ "max_completion_tokens": 2 })),
        &svcs,
        cache.path(),
        true,
    )
    .expect_err("too many tokens");
    assert_eq!(
        err.class,
        FailureClass::TokenRange,
        "{}\n{}",
        err.message,
        harness::llm_log_tail()
    );
    assert!(err.message.contains("outside 1..=2"), "{}", err.message);
}

#[test]
fn a_second_run_is_answered_from_the_cache_without_asking_the_server() {
    let Some(server) = harness::own_llm(&["--metrics"]) else {
        return;
    };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&server.url, &server.model, None) }));
    let st = stage(json!({}));

    let first = attempt(&st, &svcs, cache.path(), false).expect("a story");
    assert!(!first.cache_hit);
    let after_first = predicted_total(&server.url);
    assert!(after_first > 0.0);

    let second = attempt(&st, &svcs, cache.path(), false).expect("cached");
    assert!(second.cache_hit);
    assert_eq!(second.output, first.output);
    assert_eq!(
        predicted_total(&server.url),
        after_first,
        "the server was asked again"
    );

    // --no-cache asks again; a salt is a different key.
    let third = attempt(&st, &svcs, cache.path(), true).expect("asked");
    assert!(!third.cache_hit);
    assert!(predicted_total(&server.url) > after_first);
    let salted = attempt(
        &stage(json!({ "cache_salt": "sweep-2" })),
        &svcs,
        cache.path(),
        false,
    )
    .expect("asked");
    assert!(!salted.cache_hit);
}

#[test]
fn the_api_key_is_sent_and_never_written() {
    let key = format!("sk-cinepipe-test-{}", std::process::id());
    let Some(server) = harness::own_llm(&["--api-key", &key]) else {
        return;
    };
    let var = format!("CINEPIPE_TEST_KEY_{}", std::process::id());
    let cache = tempfile::tempdir().expect("tmp");
    let mut svc = openai(&server.url, &server.model, None);
    svc["api_key_env"] = json!(var);
    let svcs = services(json!({ "llm": svc }));

    // Without the variable: a clear error naming the variable, not a value.
    let err = attempt(&stage(json!({})), &svcs, cache.path(), false).expect_err("no key");
    assert!(err.message.contains(&format!("`{var}`")), "{}", err.message);

    // SAFETY: the variable name is unique to this test; no other thread reads it.
    unsafe { std::env::set_var(&var, &key) };
    let out = attempt(&stage(json!({})), &svcs, cache.path(), false).expect("a story");
    assert_eq!(scenes(&out).len(), 2);
    let mut written = serde_json::to_string(&out).expect("json");
    for entry in std::fs::read_dir(cache.path())
        .expect("cache dir")
        .flatten()
    {
        written.push_str(&std::fs::read_to_string(entry.path()).expect("entry"));
    }
    assert!(written.contains("scenes"));
    assert!(!written.contains(&key), "the key leaked");

    // A wrong key: the server's 401 message, verbatim, and still no key anywhere.
    unsafe { std::env::set_var(&var, "wrong") };
    let err = attempt(&stage(json!({})), &svcs, cache.path(), true).expect_err("401");
    assert!(
        err.message.contains("HTTP 401: Invalid API Key"),
        "{}",
        err.message
    );
    unsafe { std::env::remove_var(&var) };
}

/// A spec with the given services and one story stage on `service`, in its own folder.
fn spec_dir(services: &[(&str, Value)], service: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = services.iter().fold(
        SpecBuilder::chain("llm-test", &["story"])
            .without("services.llm")
            .output_dir(&dir.path().join("runs")),
        |spec, (name, table)| spec.service(name, table.clone()),
    );
    spec.small_model_story()
        .set("stages.story", "service", service)
        .write(dir.path(), "spec.toml");
    dir
}

fn run_spec(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cinepipe"));
    cmd.arg("run")
        .arg(dir.join("spec.toml"))
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cinepipe runs")
}

/// Every file under `dir`, read as bytes.
fn all_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

#[test]
fn cinepipe_run_with_every_provider_down_fails_once_clearly_and_writes_only_whole_files() {
    let (a, b) = (free_port(), free_port());
    let mut first = testkit::openai(&format!("http://127.0.0.1:{a}/v1"));
    first["fallback"] = json!("b");
    let dir = spec_dir(
        &[
            ("a", first),
            ("b", testkit::openai(&format!("http://127.0.0.1:{b}/v1"))),
        ],
        "a",
    );
    let out = run_spec(dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "one error:\n{err}");
    assert!(
        err.contains("no service of the fallback chain of `a` could be brought up; tried 2:"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`a`: service `a` does not answer at http://127.0.0.1:{a}/v1"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`b`: service `b` does not answer at http://127.0.0.1:{b}/v1"
        )),
        "{err}"
    );
    for (p, bytes) in all_files(dir.path()) {
        let name = p.display().to_string();
        let file = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(!file.contains(".tmp"), "temp file left: {name}");
        if name.ends_with(".json") {
            serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(
            !name.ends_with("output.json"),
            "a stage output was written: {name}"
        );
    }
}

#[test]
fn cinepipe_run_sends_the_api_key_and_writes_it_nowhere() {
    let key = format!("sk-cinepipe-run-{}", std::process::id());
    let Some(server) = harness::own_llm(&["--api-key", &key]) else {
        return;
    };
    let dir = spec_dir(
        &[(
            "llm",
            json!({
                "kind": "openai", "base_url": server.url, "model": server.model,
                "api_key_env": "CINEPIPE_RUN_TEST_KEY",
            }),
        )],
        "llm",
    );
    let out = run_spec(dir.path(), &[("CINEPIPE_RUN_TEST_KEY", &key)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let files = all_files(dir.path());
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with("stages/story/output.json")),
        "{files:?}"
    );
    for (p, bytes) in &files {
        assert!(
            !String::from_utf8_lossy(bytes).contains(&key),
            "the key is in {}",
            p.display()
        );
    }
    assert!(!err.contains(&key));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key));
}

/// A deliberately broken OpenAI-compatible server, as some proxies are: every request is
/// answered 401 with the request's `Authorization` header quoted in the body. It serves until
/// the test process ends.
fn echoing_401_server() -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut auth = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("authorization:") {
                        auth = line.trim_end().to_owned();
                    } else if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let answer = json!({ "error": { "message":
                    format!("invalid credentials; your request had `{auth}`") } })
                .to_string();
                let _ = write!(
                    &stream,
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    url
}

#[test]
fn a_server_echoing_the_authorization_header_in_its_401_leaks_the_key_nowhere() {
    let key = format!("sk-cinepipe-echo-{}", std::process::id());
    let url = echoing_401_server();
    let dir = spec_dir(
        &[(
            "llm",
            json!({
                "kind": "openai", "base_url": url, "model": "any",
                "api_key_env": "CINEPIPE_ECHO_TEST_KEY",
            }),
        )],
        "llm",
    );
    let out = run_spec(dir.path(), &[("CINEPIPE_ECHO_TEST_KEY", &key)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    // The server's words are still quoted (so the checks below look at a quote), the key not.
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains("Bearer [redacted]"), "{err}");
    assert!(!err.contains(&key), "the key is on stderr:\n{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key));

    let runs = dir.path().join("runs");
    let run_dir = std::fs::read_dir(&runs)
        .expect("runs")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("a run folder");
    let files = all_files(dir.path());
    for name in [
        "events.jsonl",
        "attempt-1.json",
        "run-summary.txt",
        "artifact-metadata.json",
    ] {
        let quoted = files.iter().any(|(p, b)| {
            p.file_name().is_some_and(|f| f == name)
                && String::from_utf8_lossy(b).contains("Bearer [redacted]")
        });
        let names: Vec<_> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        assert!(quoted, "no {name} quotes the server's 401: {names:?}");
    }
    for (p, bytes) in &files {
        assert!(
            !String::from_utf8_lossy(bytes).contains(&key),
            "the key is in {}",
            p.display()
        );
    }
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .arg("show")
        .arg(&run_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("cinepipe show runs");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&show.stdout),
        String::from_utf8_lossy(&show.stderr)
    );
    assert!(shown.contains("401"), "{shown}");
    assert!(
        !shown.contains(&key),
        "the key is in `cinepipe show`:\n{shown}"
    );
}

/// A deliberately stalled server: it accepts connections and reads, but never answers.
fn stalled_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

#[test]
fn the_stage_timeout_names_the_endpoint_it_was_waiting_for() {
    let url = stalled_server();
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&url, "any", None) }));
    let err = attempt(
        &tiny(json!({ "timeout_s": 1.0 })),
        &svcs,
        cache.path(),
        true,
    )
    .expect_err("nothing answers");
    assert!(
        err.message
            .contains(&format!("{url}/models: no answer within 1 s")),
        "{}",
        err.message
    );
}

#[test]
fn a_quiet_run_that_fails_still_says_why() {
    let url = echoing_401_server();
    let dir = spec_dir(
        &[(
            "llm",
            json!({ "kind": "openai", "base_url": url, "model": "any" }),
        )],
        "llm",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .arg("run")
        .arg("--quiet")
        .arg(dir.path().join("spec.toml"))
        .env("NO_COLOR", "1")
        .output()
        .expect("cinepipe runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: story failed: no LLM provider answered") && err.contains("HTTP 401"),
        "{err}"
    );
    // Quiet: the reason once, no progress lines.
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(!err.contains("start "), "{err}");
}

#[test]
fn an_answer_slower_than_max_latency_is_the_slow_class() {
    let Some(server) = harness::llm() else { return };
    let cache = tempfile::tempdir().expect("tmp");
    let svcs = services(json!({ "llm": openai(&server.url, &server.model, None) }));
    // No real server answers within a microsecond; the answer itself is valid.
    let err = attempt(
        &tiny(json!({ "max_latency_s": 0.000_001 })),
        &svcs,
        cache.path(),
        true,
    )
    .expect_err("too slow");
    assert_eq!(
        err.class,
        FailureClass::Slow,
        "{}\n{}",
        err.message,
        harness::llm_log_tail()
    );
    assert!(
        err.message.contains("over max_latency_s = 0.000001"),
        "{}",
        err.message
    );
    let answer = err.answer.as_ref().expect("the answer is kept");
    assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    // A slow answer is not cached: a rerun asks again.
    assert_eq!(
        std::fs::read_dir(cache.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}
