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
