//! `cinepipe doctor` through the real binary: against the harness's real LLM server and
//! ComfyUI (every check answers, the JSON follows its schema), against a stopped server, and
//! against a real ComfyUI started without the done-marker node.

use serde_json::Value;

use cinepipe::testkit::SpecBuilder;

use crate::common::{cinepipe_in, root, stderr, stdout};
use crate::harness;

fn doctor_json(dir: &std::path::Path, spec: &std::path::Path) -> (Option<i32>, Value) {
    let out = cinepipe_in(
        dir,
        &["doctor", spec.to_str().expect("utf-8"), "--format", "json"],
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "doctor --format json: {e}: {}{}",
            stdout(&out),
            stderr(&out)
        )
    });
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/doctor.schema.json")).expect("schema"),
    )
    .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}\n{v}");
    (out.status.code(), v)
}

fn find<'a>(report: &'a Value, target: &str, check: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["target"] == target && c["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` check of {target}: {report}"))
}

#[test]
fn doctor_finds_ready_servers_ready_and_says_what_each_one_is() {
    let (Some(llm), Some(comfy)) = (harness::llm(), harness::comfyui()) else {
        return;
    };
    let Some(out_dir) = harness::output_dir(comfy) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = SpecBuilder::chain("doctor", &["story", "patch", "render"])
        .llm_url(&llm.url)
        .set("services.llm", "model", llm.model.as_str())
        .comfy_urls(&[&comfy.url])
        .set(
            "services.comfy",
            "output_dir",
            out_dir.display().to_string(),
        )
        .write(tmp.path(), "doctor.toml");
    let (code, report) = doctor_json(tmp.path(), &spec);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["counts"]["fail"], 0, "{report}");
    for (target, check) in [
        (llm.url.as_str(), "reachable"),
        (llm.url.as_str(), "model"),
        (comfy.url.as_str(), "reachable"),
        (comfy.url.as_str(), "done-marker node"),
        (comfy.url.as_str(), "queue"),
    ] {
        assert_eq!(
            find(&report, target, check)["status"],
            "ok",
            "{target} {check}: {report}"
        );
    }
    assert!(
        find(&report, &llm.url, "version")["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("llama.cpp ")),
        "{report}"
    );
    assert_eq!(
        find(&report, &comfy.url, "done-marker node")["detail"],
        "WriteDoneMarker, marker contract 1"
    );
    // The CPU server: no GPU reading, said as a warning with where it looked.
    let gpu = find(&report, &comfy.url, "gpu");
    assert_eq!(gpu["status"], "warn", "{gpu}");
    assert!(
        gpu["detail"].as_str().is_some_and(|d| d.contains("`cpu`")),
        "{gpu}"
    );
    let out_folder = out_dir.display().to_string();
    assert_eq!(find(&report, &out_folder, "output folder")["status"], "ok");
    assert_eq!(find(&report, &out_folder, "free space")["status"], "ok");

    // A floor above any disk's free space warns, and warnings alone keep exit 0.
    let out = cinepipe_in(
        tmp.path(),
        &[
            "doctor",
            spec.to_str().expect("utf-8"),
            "--min-free-gb",
            "1e9",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("  warn  free space"), "{text}");
    assert!(text.contains("fix: under 1000000000 GB"), "{text}");
    assert!(text.contains("ready: "), "{text}");
}

#[test]
fn doctor_fails_a_stopped_server_and_a_comfyui_without_the_node_with_a_fix() {
    let Some(bare) = harness::comfyui_without_nodes() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let stopped = format!("http://127.0.0.1:{}", harness::free_port());
    let spec = SpecBuilder::chain("doctor", &["story", "patch", "render"])
        .llm_url(&format!("{stopped}/v1"))
        .comfy_urls(&[&bare.url, &stopped])
        .set(
            "services.comfy",
            "output_dir",
            tmp.path().join("nowhere").display().to_string(),
        )
        .write(tmp.path(), "doctor.toml");
    let (code, report) = doctor_json(tmp.path(), &spec);
    assert_eq!(code, Some(1), "{report}");
    let node = find(&report, &bare.url, "done-marker node");
    assert_eq!(node["status"], "fail", "{node}");
    assert!(
        node["hint"]
            .as_str()
            .is_some_and(|h| h.contains("cinepipe install-node")),
        "{node}"
    );
    assert_eq!(find(&report, &bare.url, "reachable")["status"], "ok");
    let down = find(&report, &stopped, "reachable");
    assert_eq!(down["status"], "fail", "{down}");
    assert!(
        down["hint"]
            .as_str()
            .is_some_and(|h| h.contains("scripts/start-comfyui"))
    );
    assert_eq!(find(&report, &stopped, "queue")["status"], "skip");
    let llm = find(&report, &format!("{stopped}/v1"), "reachable");
    assert_eq!(llm["status"], "fail", "{llm}");
    let missing = tmp.path().join("nowhere").display().to_string();
    assert_eq!(find(&report, &missing, "output folder")["status"], "fail");

    // The text form: a FAIL line per failure, each followed by its fix.
    let out = cinepipe_in(tmp.path(), &["doctor", spec.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("  FAIL  done-marker node  WriteDoneMarker is not among the server's nodes"),
        "{text}"
    );
    assert!(text.contains("not ready: "), "{text}");
}

#[test]
fn doctor_refuses_a_broken_spec_with_its_diagnostics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("bad.toml"), "[run]\nnmae = \"x\"\n").expect("write");
    let out = cinepipe_in(tmp.path(), &["doctor", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nmae"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}
