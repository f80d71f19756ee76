//! A run folder on a nearly full file system (a small tmpfs, mounted for the test): `doctor`
//! warns about the free space, a run fails cleanly (an exit code, no panic, every file it left
//! whole), and once space is freed `run --resume` finishes it.

use std::path::Path;
use std::process::Command;

use cinepipe::testkit::SpecBuilder;

use crate::common::{assert_json_files_parse, cinepipe_in, stderr, stdout};
use crate::harness;

/// A tmpfs of `kib` KiB at `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                harness::skip(&format!(
                    "cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
                None
            }
            Err(e) => {
                harness::skip(&format!("cannot run mount: {e}"));
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Leaves about `keep` bytes free on the file system of `dir`.
fn fill(dir: &Path, keep: u64) -> std::path::PathBuf {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    let avail: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's number");
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; avail.saturating_sub(keep) as usize]).expect("fill");
    filler
}

#[test]
fn a_nearly_full_disk_makes_doctor_warn_and_a_run_fail_cleanly_then_resume() {
    let Some(llm) = harness::llm() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = tmp.path().join("small");
    let Some(_mount) = Tmpfs::mount(&small, 512) else {
        return;
    };
    let runs = small.join("runs");
    let spec = SpecBuilder::chain("diskfull", &["story", "validate"])
        .llm_url(&llm.url)
        .set("services.llm", "model", llm.model.as_str())
        .small_model_story()
        .scenes(1)
        .fixed_story()
        .output_dir(&runs)
        .write(tmp.path(), "diskfull.toml");
    let spec = spec.to_str().expect("utf-8");

    // Doctor: 512 KiB free is under a 1 GB floor.
    let out = cinepipe_in(
        tmp.path(),
        &["doctor", spec, "--format", "json", "--min-free-gb", "1"],
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let free = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["subject"] == "run folder" && c["check"] == "free space")
        .expect("a free-space check of the run folder");
    assert_eq!(free["status"], "warn", "{free}");

    // The run, with less and less room: each way it runs out fails cleanly and resumes.
    let mut failures = Vec::new();
    for keep_kib in [4u64, 16, 40, 80, 160] {
        let _ = std::fs::remove_dir_all(&runs);
        let filler = fill(&small, keep_kib * 1024);
        let out = cinepipe_in(tmp.path(), &["run", spec, "--no-cache"]);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1 | 74)),
            "{keep_kib} KiB free: a clear outcome, not a crash: {code:?}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        if code != Some(0) {
            failures.push(keep_kib);
        }
        // Whatever it wrote is whole: every JSON file parses, no temp file is left behind, and
        // a run folder is there with its manifest or not at all.
        if runs.exists() {
            assert_json_files_parse(&runs);
            let mut stack = vec![runs.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).expect("lists") {
                    let p = e.expect("entry").path();
                    let name = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        !name.contains(".tmp") && !name.ends_with(".creating"),
                        "{keep_kib} KiB: a temp file left: {}",
                        p.display()
                    );
                    if p.is_dir() {
                        stack.push(p);
                    }
                }
            }
        }
        // Space again: the run is resumed (or, if it never got a folder, run anew).
        std::fs::remove_file(&filler).expect("free");
        let run_dir = std::fs::read_dir(&runs).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.join("resolved-spec.json").is_file())
        });
        if let Some(d) = &run_dir {
            assert!(
                d.join("run.json").is_file(),
                "{keep_kib} KiB: a run folder without its manifest: {}",
                d.display()
            );
        }
        if code == Some(0) {
            continue;
        }
        let out = match &run_dir {
            Some(d) => cinepipe_in(tmp.path(), &["run", "--resume", d.to_str().expect("utf-8")]),
            None => cinepipe_in(tmp.path(), &["run", spec]),
        };
        assert_eq!(
            out.status.code(),
            Some(0),
            "{keep_kib} KiB, then resumed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        if let Some(d) = &run_dir {
            let v = cinepipe_in(tmp.path(), &["verify", d.to_str().expect("utf-8")]);
            assert_eq!(v.status.code(), Some(0), "{}", stdout(&v));
        }
    }
    assert!(
        !failures.is_empty(),
        "the disk never ran out: the test proves nothing"
    );
    eprintln!("ran out of space with {failures:?} KiB free");
}
