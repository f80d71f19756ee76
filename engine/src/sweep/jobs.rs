//! The sweep's work list: one job per (spec, profile, repeat), in a fixed order, and how a
//! shard (`--partition`) picks its part of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::suite::Suite;

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// `SPEC|PROFILE|REPEAT`: the same for the same run in every sweep of the suite, sharded
    /// or not (what `hash` partitions and `sweep merge` match on).
    pub key: String,
    /// The spec's name in the suite.
    pub spec: String,
    pub spec_path: PathBuf,
    pub profile: String,
    /// 1-based.
    pub repeat: u32,
    /// Its place in the whole (unsharded) work list: merged shards are put back in this order.
    pub index: u32,
}

impl Job {
    /// The folder under the sweep's `runs/` that holds this job's run folder.
    pub fn folder(&self) -> PathBuf {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        // The key's hash keeps two specs whose names clean to the same text apart.
        let tag = &hex(&Sha256::digest(self.key.as_bytes()))[..8];
        PathBuf::from(format!(
            "{}.{}.r{}.{tag}",
            clean(self.spec.trim_end_matches(".toml")),
            clean(&self.profile),
            self.repeat
        ))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every job of `suite`, with `repeat` and `profiles` (from the command line) in place of the
/// suite's when given: specs in suite order, then profiles, then repeats.
pub fn jobs(suite: &Suite, repeat: Option<u32>, profiles: &[String]) -> Vec<Job> {
    let mut out = Vec::new();
    for spec in &suite.specs {
        let ps = if profiles.is_empty() {
            &spec.profiles
        } else {
            profiles
        };
        for profile in ps {
            for r in 1..=repeat.unwrap_or(spec.repeat) {
                out.push(Job {
                    key: format!("{}|{profile}|{r}", spec.name),
                    spec: spec.name.clone(),
                    spec_path: spec.path.clone(),
                    profile: profile.clone(),
                    repeat: r,
                    index: u32::try_from(out.len()).unwrap_or(u32::MAX),
                });
            }
        }
    }
    out
}

/// Round `round` of a stress sweep (`--stress-duration`): every (spec, profile) once more, as
/// repeat `round`, placed after the `first_index` jobs of the earlier rounds.
pub fn round(suite: &Suite, profiles: &[String], round: u32, first_index: u32) -> Vec<Job> {
    let mut out = Vec::new();
    for spec in &suite.specs {
        let ps = if profiles.is_empty() {
            &spec.profiles
        } else {
            profiles
        };
        for profile in ps {
            let offset = u32::try_from(out.len()).unwrap_or(u32::MAX);
            out.push(Job {
                key: format!("{}|{profile}|{round}", spec.name),
                spec: spec.name.clone(),
                spec_path: spec.path.clone(),
                profile: profile.clone(),
                repeat: round,
                index: first_index.saturating_add(offset),
            });
        }
    }
    out
}

/// `--partition`: which part of the work list this shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub how: PartitionKind,
    /// 1-based shard number.
    pub shard: u32,
    pub of: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionKind {
    /// By a hash of the job's key: a job stays in its shard when specs are added.
    Hash,
    /// Round-robin over the work list: even shards, which move when specs are added.
    Count,
}

/// Why a `--partition` value was refused; `spec` is the value as given.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("`{spec}`: expected hash:K/N or count:K/N, with 1 <= K <= N")]
    Malformed { spec: String },
    #[error("`{spec}`: JOB_COMPLETION_INDEX is not set (index-env reads it)")]
    IndexUnset { spec: String },
    #[error("`{spec}`: JOB_COMPLETION_INDEX is `{value}`, not a number")]
    IndexNotANumber { spec: String, value: String },
}

impl std::str::FromStr for Partition {
    type Err = PartitionError;

    /// `hash:K/N` or `count:K/N`, 1 ≤ K ≤ N; K may be `index-env`, read from
    /// `JOB_COMPLETION_INDEX` (0-based, as a Kubernetes Indexed Job sets it).
    fn from_str(s: &str) -> Result<Partition, PartitionError> {
        let bad = || PartitionError::Malformed { spec: s.to_owned() };
        let (how, rest) = s.split_once(':').ok_or_else(bad)?;
        let how = match how {
            "hash" => PartitionKind::Hash,
            "count" => PartitionKind::Count,
            _ => return Err(bad()),
        };
        let (k, n) = rest.split_once('/').ok_or_else(bad)?;
        let of: u32 = n.parse().map_err(|_| bad())?;
        let shard: u32 = if k == "index-env" {
            let v = std::env::var("JOB_COMPLETION_INDEX")
                .map_err(|_| PartitionError::IndexUnset { spec: s.to_owned() })?;
            v.trim()
                .parse::<u32>()
                .map_err(|_| PartitionError::IndexNotANumber {
                    spec: s.to_owned(),
                    value: v.clone(),
                })?
                + 1
        } else {
            k.parse().map_err(|_| bad())?
        };
        if of == 0 || shard == 0 || shard > of {
            return Err(bad());
        }
        Ok(Partition { how, shard, of })
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self.how {
            PartitionKind::Hash => "hash",
            PartitionKind::Count => "count",
        };
        write!(f, "{how}:{}/{}", self.shard, self.of)
    }
}

impl Partition {
    /// The jobs of this shard, in the list's order.
    pub fn select(&self, jobs: Vec<Job>) -> Vec<Job> {
        let of = u64::from(self.of);
        let want = u64::from(self.shard - 1);
        // Count by the job's place in the whole list (not in this slice of it), so the rounds
        // of a stress sweep, made one at a time, are dealt out as one list would be.
        jobs.into_iter()
            .filter(|job| {
                let n = match self.how {
                    PartitionKind::Count => u64::from(job.index),
                    PartitionKind::Hash => {
                        let d = Sha256::digest(job.key.as_bytes());
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&d[..8]);
                        u64::from_be_bytes(b)
                    }
                };
                n % of == want
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::suite::{FlakyPolicy, GatesResolved, SuiteSpec};

    fn suite(specs: &[&str]) -> Suite {
        Suite {
            name: "t".into(),
            dir: PathBuf::new(),
            specs: specs
                .iter()
                .map(|s| SuiteSpec {
                    name: (*s).into(),
                    path: PathBuf::from(s),
                    repeat: 3,
                    profiles: vec!["standard".into(), "fast".into()],
                    min_pass_rate: 1.0,
                })
                .collect(),
            gates: GatesResolved {
                telemetry_complete: 1.0,
                done_marker_rate: 0.95,
                zero_frame_scene_rate: 0.02,
                flaky: FlakyPolicy::Warn,
            },
            no_cache: true,
        }
    }

    #[test]
    fn every_spec_profile_and_repeat_is_one_job_in_a_fixed_order() {
        let j = jobs(&suite(&["a.toml", "b.toml"]), None, &[]);
        assert_eq!(j.len(), 12);
        assert_eq!(j[0].key, "a.toml|standard|1");
        assert_eq!(j[3].key, "a.toml|fast|1");
        assert_eq!(j[11].key, "b.toml|fast|3");
        let j = jobs(&suite(&["a.toml"]), Some(2), &["fast".into()]);
        let keys: Vec<&str> = j.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["a.toml|fast|1", "a.toml|fast|2"]);
    }

    #[test]
    fn shards_cover_every_job_once_and_hash_shards_keep_their_jobs_when_specs_are_added() {
        let all = jobs(&suite(&["a.toml", "b.toml", "c.toml"]), Some(5), &[]);
        for how in ["hash", "count"] {
            let mut seen: Vec<String> = Vec::new();
            for k in 1..=3 {
                let p: Partition = format!("{how}:{k}/3").parse().expect("parses");
                seen.extend(p.select(all.clone()).into_iter().map(|j| j.key));
            }
            seen.sort();
            let mut want: Vec<String> = all.iter().map(|j| j.key.clone()).collect();
            want.sort();
            assert_eq!(seen, want, "{how}");
        }
        let p: Partition = "hash:2/3".parse().expect("parses");
        let before = p.select(all.clone());
        let more = jobs(
            &suite(&["a.toml", "b.toml", "c.toml", "d.toml"]),
            Some(5),
            &[],
        );
        let after: Vec<Job> = p.select(more);
        for j in &before {
            assert!(after.contains(j), "{} moved", j.key);
        }
    }

    #[test]
    fn stress_rounds_are_dealt_to_shards_as_one_list_would_be() {
        let s = suite(&["a.toml", "b.toml", "c.toml"]);
        let mut whole = Vec::new();
        for r in 1..=4 {
            let next = round(&s, &[], r, u32::try_from(whole.len()).expect("small"));
            assert_eq!(next.len(), 6, "three specs, two profiles");
            assert!(
                next.iter()
                    .all(|j| j.repeat == r && j.key.ends_with(&format!("|{r}")))
            );
            whole.extend(next);
        }
        let indices: Vec<u32> = whole.iter().map(|j| j.index).collect();
        assert_eq!(indices, (0..24).collect::<Vec<u32>>());
        for how in ["hash", "count"] {
            for k in 1..=4 {
                let p: Partition = format!("{how}:{k}/4").parse().expect("parses");
                let at_once: Vec<String> =
                    p.select(whole.clone()).into_iter().map(|j| j.key).collect();
                let by_round: Vec<String> = whole
                    .chunks(6)
                    .flat_map(|c| p.select(c.to_vec()))
                    .map(|j| j.key)
                    .collect();
                assert_eq!(at_once, by_round, "{how}:{k}/4");
                if how == "count" {
                    assert_eq!(at_once.len(), 6, "even shards");
                }
            }
        }
    }

    #[test]
    fn partitions_are_parsed_strictly() {
        for bad in [
            "hash",
            "hash:0/3",
            "hash:4/3",
            "count:1/0",
            "mod:1/2",
            "hash:a/2",
        ] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
        let p: Partition = "count:2/4".parse().expect("parses");
        assert_eq!(p.to_string(), "count:2/4");
    }

    #[test]
    fn job_folders_differ_for_names_that_clean_alike() {
        let a = Job {
            key: "a b.toml|standard|1".into(),
            spec: "a b.toml".into(),
            spec_path: PathBuf::new(),
            profile: "standard".into(),
            repeat: 1,
            index: 0,
        };
        let b = Job {
            key: "a_b.toml|standard|1".into(),
            spec: "a_b.toml".into(),
            ..a.clone()
        };
        assert_ne!(a.folder(), b.folder());
        assert!(a.folder().to_string_lossy().starts_with("a_b.standard.r1."));
    }
}
