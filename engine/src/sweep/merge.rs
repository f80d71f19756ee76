//! `cinepipe sweep merge`: the folders of a sweep's shards into one sweep folder, whose
//! `sweep.json` is what an unsharded sweep of the same runs writes.

use std::path::{Path, PathBuf};

use super::execute::{
    MANIFEST, Manifest, REPORT, RUNS_LOG, SweepError, read_manifest, read_runs, report,
};
use super::verdict::SweepReport;
use crate::fsutil::write_atomic;

/// Why shard folders could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{0}")]
    Sweep(#[from] SweepError),
    #[error("nothing to merge: give the shard folders")]
    Nothing,
    #[error(
        "{a} and {b} are sweeps of different suites (or of the same suite with other settings); only shards of one sweep merge"
    )]
    DifferentSuites { a: PathBuf, b: PathBuf },
    #[error("{a} and {b} overlap: both planned run `{key}` (shards of one sweep are disjoint)")]
    Overlap { a: PathBuf, b: PathBuf, key: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Merges shard folders into `out`: one manifest over every shard's jobs, their run folders
/// (hard-linked where the file system allows, else copied), `runs.jsonl` and `sweep.json` as
/// an unsharded sweep of the same runs would have them.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<SweepReport, MergeError> {
    let first = shards.first().ok_or(MergeError::Nothing)?;
    let base = read_manifest(first)?;
    let mut owner: std::collections::HashMap<String, PathBuf> = Default::default();
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    for shard in shards {
        let m = read_manifest(shard)?;
        if m.suite != base.suite || m.keep_going != base.keep_going {
            return Err(MergeError::DifferentSuites {
                a: first.clone(),
                b: shard.clone(),
            });
        }
        for job in m.jobs {
            if let Some(other) = owner.insert(job.key.clone(), shard.clone()) {
                return Err(MergeError::Overlap {
                    a: other,
                    b: shard.clone(),
                    key: job.key,
                });
            }
            jobs.push(job);
        }
        runs.extend(read_runs(&shard.join(RUNS_LOG)));
    }
    let io = |path: &Path, source| MergeError::Io {
        path: path.to_path_buf(),
        source,
    };
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SweepError::Exists {
            path: out.to_path_buf(),
        }
        .into());
    }
    std::fs::create_dir_all(out.join("runs")).map_err(|e| io(out, e))?;
    // The unsharded order.
    jobs.sort_by_key(|j| j.index);
    for shard in shards {
        link_tree(&shard.join("runs"), &out.join("runs"))
            .map_err(|e| io(&shard.join("runs"), e))?;
    }
    let manifest = Manifest {
        partition: None,
        jobs,
        ..base
    };
    let write = |name: &str, bytes: &[u8]| {
        write_atomic(&out.join(name), bytes).map_err(|e| io(&out.join(name), e))
    };
    write(
        MANIFEST,
        &serde_json::to_vec_pretty(&manifest).map_err(|e| io(out, std::io::Error::other(e)))?,
    )?;
    let mut log = Vec::new();
    for r in &runs {
        log.extend(serde_json::to_vec(r).map_err(|e| io(out, std::io::Error::other(e)))?);
        log.push(b'\n');
    }
    write(RUNS_LOG, &log)?;
    let report = report(&manifest, &runs);
    write(
        REPORT,
        &serde_json::to_vec_pretty(&report).map_err(|e| io(out, std::io::Error::other(e)))?,
    )?;
    Ok(report)
}

/// Hard-links (or, across file systems, copies) every file under `from` into `to`.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    std::fs::create_dir_all(to)?;
    for entry in entries {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            link_tree(&src, &dst)?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::execute::{MANIFEST_FORMAT, append_line};
    use crate::sweep::jobs::{self, Job, Partition, PartitionKind};
    use crate::sweep::suite::Suite;
    use crate::sweep::verdict::RunSummary;
    use std::collections::HashSet;

    fn summary(job: &Job, passed: bool, secs: f64) -> RunSummary {
        RunSummary {
            key: job.key.clone(),
            spec: job.spec.clone(),
            profile: job.profile.clone(),
            repeat: job.repeat,
            run_dir: format!("runs/{}/r", job.folder().display()),
            outcome: if passed { "success" } else { "failed" }.into(),
            retried: job.repeat.is_multiple_of(3),
            telemetry_complete: true,
            failures: if passed {
                vec![]
            } else {
                vec!["render: timeout".into()]
            },
            scenes: 2,
            marker_scenes: 2,
            done_markers: 2,
            frame_scenes: 2,
            zero_frame_scenes: u32::from(!passed),
            forced_copies: 0,
            scene_seconds: vec![secs, secs * 2.0],
            stage_seconds: [("render".to_owned(), vec![secs])].into_iter().collect(),
            seconds: Some(secs * 3.0),
        }
    }

    /// A sweep folder with `jobs` done as `runs` says.
    fn folder(
        dir: &Path,
        suite: &Suite,
        partition: Option<Partition>,
        jobs: Vec<Job>,
        runs: &[RunSummary],
    ) {
        std::fs::create_dir_all(dir.join("runs")).expect("mkdir");
        let m = Manifest {
            format: MANIFEST_FORMAT,
            version: "test".into(),
            suite: suite.clone(),
            partition,
            keep_going: false,
            stress: None,
            jobs,
        };
        write_atomic(&dir.join(MANIFEST), &serde_json::to_vec(&m).expect("json")).expect("write");
        for r in runs {
            append_line(&dir.join(RUNS_LOG), r).expect("append");
        }
    }

    #[test]
    fn shards_merged_report_what_the_unsharded_sweep_of_the_same_runs_reports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let specs = [PathBuf::from("a.toml"), PathBuf::from("b.toml")];
        let suite = crate::sweep::suite::from_specs(&specs);
        let all = jobs::jobs(&suite, Some(7), &["standard".into(), "fast".into()]);
        let runs: Vec<RunSummary> = all
            .iter()
            .enumerate()
            .map(|(i, j)| summary(j, i % 5 != 1, 1.0 + i as f64 / 10.0))
            .collect();
        let whole = report(
            &Manifest {
                format: MANIFEST_FORMAT,
                version: "test".into(),
                suite: suite.clone(),
                partition: None,
                keep_going: false,
                stress: None,
                jobs: all.clone(),
            },
            &runs,
        );
        let mut shards = Vec::new();
        for k in 1..=3 {
            let p = Partition {
                how: PartitionKind::Hash,
                shard: k,
                of: 3,
            };
            let mine = p.select(all.clone());
            let keys: HashSet<&str> = mine.iter().map(|j| j.key.as_str()).collect();
            let theirs: Vec<RunSummary> = runs
                .iter()
                .filter(|r| keys.contains(r.key.as_str()))
                .cloned()
                .collect();
            let dir = tmp.path().join(format!("shard-{k}"));
            folder(&dir, &suite, Some(p), mine, &theirs);
            shards.push(dir);
        }
        // Merged in any order: the same report as the unsharded sweep, to the byte.
        shards.reverse();
        let merged = merge(&shards, &tmp.path().join("merged")).expect("merges");
        assert_eq!(
            serde_json::to_string(&merged).expect("json"),
            serde_json::to_string(&whole).expect("json")
        );
        let on_disk: SweepReport = serde_json::from_slice(
            &std::fs::read(tmp.path().join("merged").join(REPORT)).expect("sweep.json"),
        )
        .expect("parses");
        assert_eq!(on_disk, whole);
        assert_eq!(
            read_manifest(&tmp.path().join("merged"))
                .expect("manifest")
                .jobs,
            all
        );

        // A shard given twice overlaps; a shard of another suite does not belong.
        let e = merge(
            &[shards[0].clone(), shards[0].clone()],
            &tmp.path().join("twice"),
        )
        .expect_err("overlap");
        assert!(matches!(e, MergeError::Overlap { .. }), "{e}");
        let other = tmp.path().join("other");
        let mut s2 = suite.clone();
        s2.gates.done_marker_rate = 0.5;
        folder(&other, &s2, None, vec![], &[]);
        let e = merge(&[shards[0].clone(), other], &tmp.path().join("mixed")).expect_err("differs");
        assert!(matches!(e, MergeError::DifferentSuites { .. }), "{e}");
        assert!(!tmp.path().join("twice").exists() && !tmp.path().join("mixed").exists());
    }
}
