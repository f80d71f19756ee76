//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The project root (the workspace folder).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

/// Runs the real `cinepipe` binary in `dir` with `args`, without color.
pub fn cinepipe_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cinepipe"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        // The tests say when cinepipe runs as a GitHub Actions step, not the CI running them.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("cinepipe runs")
}

/// Runs `cinepipe` from the project root.
pub fn cinepipe(args: &[&str]) -> Output {
    cinepipe_in(&root(), args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A runtime for tests that drive stages and clients directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs a future with a hard bound: a test never hangs.
pub fn bounded<T>(
    rt: &tokio::runtime::Runtime,
    secs: u64,
    f: impl std::future::Future<Output = T>,
) -> T {
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(secs), f)
            .await
            .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
    })
}

/// The events of a run's journal: whole lines only (while the process runs, or after a kill,
/// the last line may be torn).
pub fn journal_events(run: &Path) -> Vec<cinepipe::exec::Event> {
    let text = std::fs::read_to_string(run.join("events.jsonl")).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |i| &text[..=i]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Whether `e` is a `kind` event (`attempt-started`, `succeeded`, …) of `instance` (any
/// instance when empty).
pub fn event_is(e: &cinepipe::exec::Event, kind: &str, instance: &str) -> bool {
    let v = serde_json::to_value(e).expect("json");
    v["event"] == kind && (instance.is_empty() || v["instance"] == instance)
}

/// Every `.json` file under `dir` parses: temp files of an interrupted atomic write are not
/// `.json` files, so no file was left half-written.
pub fn assert_json_files_parse(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("lists") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).expect("reads");
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
}
