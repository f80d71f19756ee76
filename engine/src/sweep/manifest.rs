//! The sweep folder's manifest (`sweep-manifest.json`): the suite, the shard, the options and
//! the work list, read by `--resume`; and a stress sweep's clock and rounds, each written into
//! it before it runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::execute::SweepError;
use super::jobs::{self, Job, Partition};
use super::suite::Suite;
use crate::fsutil::write_atomic;

pub(crate) const MANIFEST: &str = "sweep-manifest.json";
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// A stress sweep's clock, kept in the manifest so a resumed sweep knows when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stress {
    /// How long new rounds may start, from `started`.
    pub duration_s: f64,
    /// When the sweep was made (RFC 3339, UTC).
    pub started: String,
    /// The profiles given on the command line (each round uses them).
    pub profiles: Vec<String>,
    /// Rounds made so far (a shard's share of a round may be empty).
    pub rounds: u32,
}

impl Stress {
    /// Time left for new rounds (none once the duration has passed, or if `started` cannot
    /// be read, which stops the sweep rather than running it forever).
    pub(super) fn left(&self) -> Option<std::time::Duration> {
        let started: jiff::Timestamp = self.started.parse().ok()?;
        let spent = jiff::Timestamp::now().duration_since(started).as_secs_f64();
        let left = self.duration_s - spent.max(0.0);
        (left > 0.0).then(|| std::time::Duration::from_secs_f64(left))
    }
}

/// `sweep-manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub suite: Suite,
    pub partition: Option<Partition>,
    pub keep_going: bool,
    /// Absent for a sweep of a fixed repeat count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stress: Option<Stress>,
    /// The jobs made so far (a stress sweep adds a round at a time).
    pub jobs: Vec<Job>,
}

/// The next round of a stress sweep, written into the manifest before any of it runs (so a
/// resumed sweep knows it); `None` when the sweep has no clock or its time is up.
pub(super) fn next_round(
    dir: &Path,
    manifest: &mut Manifest,
) -> Result<Option<Vec<Job>>, SweepError> {
    let Some(stress) = &manifest.stress else {
        return Ok(None);
    };
    if stress.left().is_none() {
        return Ok(None);
    }
    let per_round = jobs::round(&manifest.suite, &stress.profiles, 1, 0).len();
    let mut rounds = stress.rounds;
    // A shard's share of a round may be empty (fewer runs in a round than shards): the next
    // round is dealt until one holds a run of this shard. Count shards get one within `of`
    // rounds; the bound stops a hash shard that the dice never favour.
    let tries = manifest.partition.map_or(1, |p| p.of.saturating_mul(64));
    let mut mine = Vec::new();
    for _ in 0..tries {
        rounds += 1;
        // Numbered as in the whole list: shards of one stress sweep deal rounds alike.
        let first =
            u32::try_from(per_round.saturating_mul((rounds - 1) as usize)).unwrap_or(u32::MAX);
        let all = jobs::round(&manifest.suite, &stress.profiles, rounds, first);
        mine = match manifest.partition {
            Some(p) => p.select(all),
            None => all,
        };
        if !mine.is_empty() {
            break;
        }
    }
    if let Some(stress) = manifest.stress.as_mut() {
        stress.rounds = rounds;
    }
    manifest.jobs.extend(mine.iter().cloned());
    write_manifest(dir, manifest)?;
    Ok((!mine.is_empty()).then_some(mine))
}

pub(super) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), SweepError> {
    let path = dir.join(MANIFEST);
    let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| SweepError::Io {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&path, &bytes).map_err(|source| SweepError::Io { path, source })
}

/// Reads a sweep folder's manifest.
pub fn read_manifest(dir: &Path) -> Result<Manifest, SweepError> {
    let not = |why: String| SweepError::NotASweep {
        path: dir.to_path_buf(),
        why,
    };
    let bytes = std::fs::read(dir.join(MANIFEST)).map_err(|e| not(format!("{MANIFEST}: {e}")))?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| not(format!("{MANIFEST}: {e}")))?;
    if m.format != MANIFEST_FORMAT {
        return Err(not(format!(
            "{MANIFEST} has format {}, this cinepipe reads {MANIFEST_FORMAT}",
            m.format
        )));
    }
    Ok(m)
}
