//! The command line, through the real binary: exit codes, outputs, nothing written on failure.

use crate::common::{cinepipe, cinepipe_in, root, stderr, stdout};

fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("lists") {
            let p = e.expect("entry").path();
            out.push(p.display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn version_and_help_exit_zero() {
    let out = cinepipe(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("cinepipe "), "{}", stdout(&out));
    let out = cinepipe(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("help", stdout(&out));
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(cinepipe(&["plan"]).status.code(), Some(64));
    assert_eq!(cinepipe(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(
        cinepipe(&["plan", "specs/demo.toml", "--format", "yaml"])
            .status
            .code(),
        Some(64)
    );
}

#[test]
fn plan_of_the_demo_shows_values_with_origins_and_order() {
    let out = cinepipe(&["plan", "specs/demo.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("plan_demo_text", stdout(&out));
}

#[test]
fn plan_fast_profile_overrides_queue_polling() {
    let out = cinepipe(&[
        "plan",
        "specs/story-to-video.toml",
        "--profile",
        "fast",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["profile"], "fast");
    assert_eq!(
        plan["order"],
        serde_json::json!([
            "story", "patch", "render", "marker", "frames", "quality", "validate"
        ])
    );
    let render = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == "render")
        .expect("render");
    let value = |key: &str| {
        render["values"]
            .as_array()
            .expect("values")
            .iter()
            .find(|v| v["key"] == key)
            .cloned()
            .expect(key)
    };
    assert_eq!(value("poll_interval_s")["value"], 1.0);
    assert_eq!(value("poll_interval_s")["origin"], "profile:fast");
    assert_eq!(value("post_execution_timeout_s")["value"], 10.0);
    assert_eq!(value("max_wait_s")["origin"], "spec");
    assert_eq!(value("max_attempts")["origin"], "default");
    assert_eq!(value("max_attempts")["value"], 0);
    assert_eq!(render["fan"]["mode"], "per-item");
    let validate = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == "validate")
        .expect("validate");
    assert_eq!(validate["fan"]["mode"], "gather");
}

#[test]
fn standard_profile_keeps_the_seed_defaults() {
    let out = cinepipe(&["plan", "specs/demo.toml", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan is JSON");
    let marker = plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == "marker")
        .expect("marker");
    let on_timeout = marker["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["key"] == "on_timeout")
        .expect("on_timeout");
    assert_eq!(on_timeout["value"], "forced-copy");
    assert_eq!(on_timeout["origin"], "default");
}

#[test]
fn unknown_profile_is_an_invalid_spec_with_a_hint() {
    let out = cinepipe(&["plan", "specs/demo.toml", "--profile", "fsat"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown profile `fsat`"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("did you mean `fast`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn graph_in_dot_and_mermaid() {
    let out = cinepipe(&["graph", "specs/story-to-video.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("graph_dot", stdout(&out));
    let out = cinepipe(&["graph", "specs/story-to-video.toml", "--format", "mermaid"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("graph_mermaid", stdout(&out));
}

#[test]
fn validate_a_folder_fails_when_any_spec_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(specs.join("nested")).expect("mkdir");
    std::fs::write(
        specs.join("good.toml"),
        "[run]\nname = \"g\"\n[stages.v]\nkind = \"validate\"\n",
    )
    .expect("write");
    std::fs::write(
        specs.join("nested/bad.toml"),
        "[run]\nname = \"b\"\n[stages.v]\nkind = \"validate\"\nneeds = [\"nope\"]\n",
    )
    .expect("write");
    std::fs::write(specs.join("notes.txt"), "not a spec").expect("write");
    let before = listing(dir.path());
    let out = cinepipe_in(dir.path(), &["validate", "specs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok       specs/good.toml"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("specs/nested/bad.toml:5:10"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("2 specs checked: 1 ok, 1 invalid"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(dir.path()), before, "validate wrote nothing");
    // plan and graph write nothing either when the spec is rejected
    let out = cinepipe_in(dir.path(), &["plan", "specs/nested/bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).is_empty());
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_missing_spec_file_is_an_io_error() {
    let out = cinepipe(&["validate", "specs/does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(74));
    assert!(
        stderr(&out).contains("cannot read spec"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_folder_without_specs_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(dir.path(), &["validate", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no `*.toml` specs found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn schema_writes_into_a_folder_and_check_detects_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(dir.path(), &["schema", "--out-dir", "s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let written =
        std::fs::read_to_string(dir.path().join("s/run-spec.schema.json")).expect("written");
    assert_eq!(
        written,
        std::fs::read_to_string(root().join("schemas/run-spec.schema.json")).expect("checked in")
    );
    std::fs::write(dir.path().join("s/story.schema.json"), "{}").expect("write");
    let out = cinepipe_in(dir.path(), &["schema", "--out-dir", "s", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("story.schema.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn color_never_prints_no_escape_codes_and_always_does() {
    let out = cinepipe(&[
        "--color",
        "always",
        "validate",
        "tests/specs/invalid/unknown-stage-in-needs.toml",
    ]);
    assert!(stderr(&out).contains('\u{1b}'), "colored");
    let out = cinepipe(&[
        "--color",
        "never",
        "validate",
        "tests/specs/invalid/unknown-stage-in-needs.toml",
    ]);
    assert!(!stderr(&out).contains('\u{1b}'), "plain");
}

#[test]
fn plan_output_is_sorted_topologically_with_spec_order_for_ties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = "[run]\nname = \"t\"\n[stages.z]\nkind = \"validate\"\nneeds = [\"b\", \"a\"]\n[stages.b]\nkind = \"validate\"\n[stages.a]\nkind = \"validate\"\n[stages.c]\nkind = \"validate\"\nneeds = [\"a\"]\n";
    std::fs::write(dir.path().join("t.toml"), spec).expect("write");
    let out = cinepipe_in(dir.path(), &["plan", "t.toml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(plan["order"], serde_json::json!(["b", "a", "z", "c"]));
}

#[test]
fn root_of_the_repo_has_the_layout() {
    for dir in [
        "specs",
        "schemas",
        "workflows",
        "prompts",
        "comfyui_nodes",
        "docs",
        "tests",
        ".github",
    ] {
        assert!(root().join(dir).is_dir(), "{dir}/ exists");
    }
}

#[test]
fn docs_cli_lists_every_diagnostic_code_and_only_flags_that_exist() {
    let cli = std::fs::read_to_string(root().join("docs/cli.md")).expect("docs/cli.md");
    let source = std::fs::read_to_string(root().join("engine/src/spec/diagnostic.rs"))
        .expect("diagnostic.rs");
    let codes: Vec<&str> = source
        .split('"')
        .filter(|s| s.starts_with("cinepipe::spec::"))
        .collect();
    assert!(codes.len() >= 20, "found the codes: {codes:?}");
    for code in codes {
        assert!(cli.contains(code), "docs/cli.md documents {code}");
    }
    let mut help = stdout(&cinepipe(&["--help"]));
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A wrapped description continues with deeper indentation.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect();
    assert!(commands.len() >= 6, "{help}");
    for cmd in &commands {
        assert!(
            cli.contains(&format!("## `cinepipe {cmd}`")),
            "docs/cli.md has a section for `cinepipe {cmd}`"
        );
        help.push_str(&stdout(&cinepipe(&[cmd, "--help"])));
    }
    let flags: std::collections::BTreeSet<String> = cli
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .map(str::to_owned)
        .collect();
    for flag in flags {
        assert!(
            help.contains(&flag),
            "docs/cli.md documents `{flag}`, which no command has"
        );
    }
    let exit = std::fs::read_to_string(root().join("engine/src/exit.rs")).expect("exit.rs");
    let exit_codes: Vec<&str> = exit
        .lines()
        .filter(|l| l.trim_start().starts_with("ExitCode::"))
        .filter_map(|l| l.split("=> ").nth(1))
        .map(|n| n.trim().trim_end_matches(','))
        .collect();
    assert!(
        exit_codes.len() >= 7,
        "found the exit codes: {exit_codes:?}"
    );
    for code in exit_codes {
        assert!(
            cli.contains(&format!("| {code} ")) || cli.contains(&format!("| `{code}` ")),
            "exit code {code} documented"
        );
    }
}

#[test]
fn no_command_is_a_usage_error_and_a_closed_pipe_is_not_a_crash() {
    assert_eq!(cinepipe(&[]).status.code(), Some(64));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["validate", "specs"])
        .current_dir(root())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    drop(child.stdout.take());
    let status = child.wait().expect("waits");
    assert_eq!(status.code(), Some(0), "a closed stdout is not an error");
}

#[test]
fn completions_and_man_pages_are_what_the_flags_generate() {
    use cinepipe::cli::generate::{completions, man};
    for (dir, command, files) in [
        ("completions", "completions", completions::files()),
        ("docs/man", "man", man::pages()),
    ] {
        let mut want: Vec<String> = Vec::new();
        for (name, text) in files {
            let path = root().join(dir).join(&name);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                on_disk == text,
                "{} differs from what the clap definitions generate; run `cargo run -- {command}` and commit it",
                path.display()
            );
            want.push(name);
        }
        // A page or script of a command or shell that is gone is stale too.
        let mut have: Vec<String> = std::fs::read_dir(root().join(dir))
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        have.sort();
        want.sort();
        assert_eq!(have, want, "{dir}/ holds exactly the generated files");
        let out = cinepipe(&[command, "--check"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let main_page = std::fs::read_to_string(root().join("docs/man/cinepipe.1")).expect("page");
    assert!(main_page.contains("CINEPIPE_LOG"), "{main_page}");
    for code in cinepipe::exit::ExitCode::ALL {
        assert!(
            main_page.contains(&format!(".TP\n\\fB{}\\fR\n", code.code())),
            "exit code {} is on the man page",
            code.code()
        );
    }
    let page = std::fs::read_to_string(root().join("docs/man/cinepipe-run.1")).expect("page");
    assert!(page.contains("log\\-format"), "{page}");
}

#[test]
fn completions_write_into_a_folder_print_one_shell_and_check_detects_drift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cinepipe_in(dir.path(), &["completions", "--out-dir", "c"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "wrote c/cinepipe.bash\nwrote c/_cinepipe\nwrote c/cinepipe.fish\n"
    );
    let bash = std::fs::read_to_string(dir.path().join("c/cinepipe.bash")).expect("written");
    assert!(bash.contains("--log-format"), "{bash}");
    let out = cinepipe(&["completions", "--shell", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), bash);
    let fish = std::fs::read_to_string(dir.path().join("c/cinepipe.fish")).expect("written");
    std::fs::write(
        dir.path().join("c/cinepipe.fish"),
        fish.replace("run", "rnu"),
    )
    .expect("write");
    let out = cinepipe_in(dir.path(), &["completions", "--out-dir", "c", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("c/cinepipe.fish"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("c/cinepipe.bash"),
        "{}",
        stderr(&out)
    );
    // `--shell` prints; it does not go with a folder check.
    let out = cinepipe(&["completions", "--shell", "zsh", "--check"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn run_logs_are_text_or_json_lines_and_cinepipe_log_filters_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_run = dir.path().join("nothing");
    std::fs::create_dir(&not_a_run).expect("mkdir");
    let arg = not_a_run.to_str().expect("utf-8");

    // Text: an error is printed as it is, with no level or prefix added.
    let out = cinepipe_in(dir.path(), &["run", "--resume", arg]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("is not a run folder"), "{err}");

    // JSON: one object per line, keyed like the run's events.
    let out = cinepipe_in(
        dir.path(),
        &["run", "--resume", arg, "--log-format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = &lines[0];
    assert_eq!(line["event"], "log", "{line}");
    assert_eq!(line["level"], "error", "{line}");
    assert!(
        line["ts"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{line}"
    );
    let message = line["message"].as_str().expect("message");
    assert!(message.contains("is not a run folder"), "{line}");
    let keys: Vec<&String> = line.as_object().expect("object").keys().collect();
    assert_eq!(keys[..4], ["ts", "event", "level", "message"], "{line}");

    // `CINEPIPE_LOG=off` silences the logs; the exit code still says what happened.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(["run", "--resume", arg])
        .current_dir(dir.path())
        .env("CINEPIPE_LOG", "off")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "");
}

/// `plan --profile P --format json`: the `render` stage's values, keyed by name, as
/// `(value, origin)`.
fn render_values(
    spec: &std::path::Path,
    profile: &str,
) -> Vec<(String, serde_json::Value, String)> {
    let out = cinepipe(&[
        "plan",
        spec.to_str().expect("utf-8"),
        "--profile",
        profile,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan is JSON");
    assert_eq!(plan["profile"], profile);
    plan["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == "render")
        .expect("render")["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|v| {
            (
                v["key"].as_str().expect("key").to_owned(),
                v["value"].clone(),
                v["origin"].as_str().expect("origin").to_owned(),
            )
        })
        .collect()
}

#[test]
fn an_inherits_chain_lays_ancestors_first_and_names_who_set_each_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(root().join("specs/story-to-video.toml")).expect("spec");
    let text = format!(
        "{}\n{}",
        base.replace(
            "base_dir = \"..\"",
            &format!("base_dir = {:?}", root().display().to_string())
        ),
        r#"
[profiles.grand]
kinds.queue.poll_interval_s = 2
kinds.queue.post_execution_timeout_s = 5
stages.render.max_wait_s = 50

[profiles.parent]
inherits = "grand"
kinds.queue.poll_interval_s = 3

[profiles.child]
inherits = "parent"
stages.render.max_wait_s = 60
"#
    );
    let spec = dir.path().join("chain.toml");
    std::fs::write(&spec, text).expect("write");
    let get = |values: &[(String, serde_json::Value, String)], key: &str| {
        values
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, o)| (v.as_f64().expect("a number"), o.clone()))
            .unwrap_or_else(|| panic!("no {key} in {values:?}"))
    };
    let child = render_values(&spec, "child");
    // The nearest profile that sets a value wins; each value names that profile.
    assert_eq!(get(&child, "max_wait_s"), (60.0, "profile:child".into()));
    assert_eq!(
        get(&child, "poll_interval_s"),
        (3.0, "profile:parent".into())
    );
    assert_eq!(
        get(&child, "post_execution_timeout_s"),
        (5.0, "profile:grand".into())
    );
    let parent = render_values(&spec, "parent");
    assert_eq!(get(&parent, "max_wait_s"), (50.0, "profile:grand".into()));
    assert_eq!(
        get(&parent, "poll_interval_s"),
        (3.0, "profile:parent".into())
    );
    // Without a profile the spec's own values stand.
    let standard = render_values(&spec, "standard");
    assert_eq!(get(&standard, "max_wait_s").1, "spec");
    assert_eq!(get(&standard, "poll_interval_s").1, "spec");
}
