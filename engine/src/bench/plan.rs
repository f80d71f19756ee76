//! What a bench runs: its variants (profiles, or profile overlays from a bench file), the
//! interleaved work list (per round, the variants in an order shuffled from a recorded seed),
//! and `bench-manifest.json`, what `--resume` reads.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::sweep::jobs::Job;

pub(crate) const MANIFEST: &str = "bench-manifest.json";
pub(crate) const MANIFEST_FORMAT: u32 = 1;

/// A bench file (`bench.toml`): one spec, the variants to compare.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "cinepipe bench file",
    description = "What `cinepipe bench --compare` runs: one spec, and the variants to compare as profiles with values laid over them."
)]
pub struct BenchFile {
    /// The spec, relative to this file.
    pub spec: PathBuf,
    /// Measured runs of each variant.
    pub runs: Option<u32>,
    /// Warm-up runs of each variant, run first and recorded apart.
    pub warmup: Option<u32>,
    /// Ask the LLM again in every run (default true: runs are independent samples).
    pub no_cache: Option<bool>,
    /// The variants, in the order the analysis compares them (the first is the reference).
    pub variants: IndexMap<String, VariantDef>,
}

/// One variant of a bench file: a profile, and values laid over it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantDef {
    /// The profile it starts from (default `standard`).
    #[serde(default = "standard")]
    pub profile: String,
    /// Values laid over that profile, written as a profile is (`run`, `services.NAME`,
    /// `kinds.KIND`, `stages.NAME`): another ComfyUI host, another model, another workflow.
    #[serde(default)]
    pub overlay: Option<serde_json::Map<String, Value>>,
}

fn standard() -> String {
    "standard".to_owned()
}

/// A variant as the bench runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Variant {
    pub name: String,
    /// The profile a run of it uses (for an overlay, `bench-NAME`, which inherits `base_profile`).
    pub profile: String,
    pub base_profile: String,
    /// The spec file its runs run (for an overlay, a copy with the overlay as a profile,
    /// under the bench folder's `variants/`).
    pub spec_path: PathBuf,
    pub overlay: Option<serde_json::Map<String, Value>>,
}

/// One run of the bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchJob {
    pub job: Job,
    pub variant: String,
    /// 1-based; warm-up rounds come first.
    pub round: u32,
    pub warmup: bool,
}

/// `bench-manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub name: String,
    /// The spec as given, and the SHA-256 of its bytes.
    pub spec: PathBuf,
    pub spec_hash: String,
    pub variants: Vec<Variant>,
    pub runs: u32,
    pub warmup: u32,
    /// Shuffles each round's order, and seeds the bootstrap.
    pub seed: u64,
    pub no_cache: bool,
    pub keep_going: bool,
    /// In the order they run.
    pub jobs: Vec<BenchJob>,
}

/// Why a bench cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("a bench needs at least two variants (got {0}): give `--profiles A,B` or a bench file")]
    TooFewVariants(usize),
    #[error("variant name `{0}` is used twice")]
    Duplicate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The JSON Schema of a bench file.
pub fn bench_file_schema() -> serde_json::Value {
    crate::json_schema::draft07::<BenchFile>()
}

/// Reads a bench file.
pub fn read_bench_file(path: &Path) -> Result<BenchFile, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| PlanError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The SHA-256 of a file's bytes, in hex.
pub fn file_hash(path: &Path) -> Result<String, PlanError> {
    let bytes = std::fs::read(path).map_err(|source| PlanError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The work list: `warmup` rounds then `runs` rounds, each round every variant once, in an
/// order shuffled per round from `seed` (so both variants see the same drift of the machine,
/// and neither always runs first).
pub fn jobs(variants: &[Variant], runs: u32, warmup: u32, seed: u64) -> Vec<BenchJob> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for round in 1..=warmup + runs {
        let is_warmup = round <= warmup;
        let mut order: Vec<&Variant> = variants.iter().collect();
        rng.shuffle(&mut order);
        for v in order {
            let (tag, n) = if is_warmup {
                ("w", round)
            } else {
                ("r", round - warmup)
            };
            let key = format!("{}|{tag}{n}", v.name);
            out.push(BenchJob {
                job: Job {
                    key,
                    spec: v.name.clone(),
                    spec_path: v.spec_path.clone(),
                    profile: v.profile.clone(),
                    repeat: round,
                    index: u32::try_from(out.len()).unwrap_or(u32::MAX),
                },
                variant: v.name.clone(),
                round,
                warmup: is_warmup,
            });
        }
    }
    out
}

/// The spec text with `overlay` as profile `profile` (inheriting `base`), and `run.base_dir`
/// made absolute so the copy, wherever it lies, finds the same files as the original.
pub fn overlay_spec(
    spec_path: &Path,
    base: &str,
    profile: &str,
    overlay: &serde_json::Map<String, Value>,
) -> Result<String, PlanError> {
    let bad = |message: String| PlanError::BadFile {
        path: spec_path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(spec_path).map_err(|source| PlanError::Read {
        path: spec_path.to_path_buf(),
        source,
    })?;
    let mut doc: serde_json::Map<String, Value> =
        toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let folder = std::path::absolute(spec_path)
        .map_err(|source| PlanError::Read {
            path: spec_path.to_path_buf(),
            source,
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let run = doc
        .entry("run")
        .or_insert_with(|| Value::Object(Default::default()));
    let Value::Object(run) = run else {
        return Err(bad("`run` is not a table".into()));
    };
    let rel = run
        .get("base_dir")
        .and_then(Value::as_str)
        .unwrap_or(".")
        .to_owned();
    run.insert(
        "base_dir".into(),
        Value::String(folder.join(rel).display().to_string()),
    );
    let mut p = overlay.clone();
    p.insert("inherits".into(), Value::String(base.to_owned()));
    let profiles = doc
        .entry("profiles")
        .or_insert_with(|| Value::Object(Default::default()));
    let Value::Object(profiles) = profiles else {
        return Err(bad("`profiles` is not a table".into()));
    };
    profiles.insert(profile.to_owned(), Value::Object(p));
    Ok(to_toml(&doc))
}

/// A spec document as TOML: `[section.entry]` tables, values inline.
fn to_toml(doc: &serde_json::Map<String, Value>) -> String {
    use crate::toml_fmt::{key, value};
    let mut out = String::from(
        "# Written by `cinepipe bench`: the spec with a variant's overlay as a profile.\n",
    );
    let mut tables = Vec::new();
    for (k, v) in doc {
        match v {
            Value::Object(m) if m.values().all(Value::is_object) && !m.is_empty() => {
                for (name, entry) in m {
                    tables.push((format!("{}.{}", key(k), key(name)), entry));
                }
            }
            Value::Object(_) => tables.push((key(k), v)),
            _ => out.push_str(&format!("{} = {}\n", key(k), value(v))),
        }
    }
    for (header, entry) in tables {
        out.push_str(&format!("\n[{header}]\n"));
        if let Value::Object(m) = entry {
            for (k, v) in m {
                out.push_str(&format!("{} = {}\n", key(k), value(v)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str) -> Variant {
        Variant {
            name: name.into(),
            profile: name.into(),
            base_profile: name.into(),
            spec_path: "s.toml".into(),
            overlay: None,
        }
    }

    #[test]
    fn rounds_interleave_every_variant_in_a_seeded_order() {
        let vs = [variant("standard"), variant("fast")];
        let list = jobs(&vs, 6, 1, 42);
        assert_eq!(list.len(), 14);
        for round in list.chunks(2) {
            assert_eq!(round[0].round, round[1].round);
            assert_ne!(round[0].variant, round[1].variant, "each round has both");
        }
        assert!(list[..2].iter().all(|j| j.warmup) && list[2..].iter().all(|j| !j.warmup));
        assert_eq!(list[2].job.key.split('|').nth(1), Some("r1"));
        // The order changes between rounds, and the same seed gives the same list.
        let firsts: std::collections::HashSet<&str> =
            list.chunks(2).map(|r| r[0].variant.as_str()).collect();
        assert_eq!(firsts.len(), 2, "{list:?}");
        assert_eq!(list, jobs(&vs, 6, 1, 42));
        assert_ne!(list, jobs(&vs, 6, 1, 43));
    }

    #[test]
    fn an_overlay_becomes_a_profile_of_a_spec_that_still_checks() {
        let spec = crate::testkit::SpecBuilder::chain("t", &["story", "patch", "render"]);
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = spec.write(tmp.path(), "s.toml");
        let overlay: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "stages": { "render": { "poll_interval_s": 0.5 } }
        }))
        .expect("overlay");
        let text = overlay_spec(&path, "fast", "bench-half", &overlay).expect("overlay spec");
        let copy = tmp.path().join("elsewhere/copy.toml");
        std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
        std::fs::write(&copy, &text).expect("write");
        let checked = crate::spec::load(&copy, Some("bench-half")).expect("checks");
        let crate::spec::model::Stage::Queue(q) = &checked.spec.stages["render"] else {
            panic!("render is a queue stage");
        };
        assert_eq!(q.poll_interval_s, 0.5);
        // `fast` below it still applies: its post-execution timeout.
        assert_eq!(q.post_execution_timeout_s, 10.0);
        // The copy finds its files where the original does.
        let original = crate::spec::load(&path, None).expect("original checks");
        assert_eq!(
            checked.base_dir.canonicalize().ok(),
            original.base_dir.canonicalize().ok()
        );
    }

    #[test]
    fn a_bench_file_with_an_unknown_key_is_refused_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("bench.toml");
        std::fs::write(
            &path,
            "spec = \"s.toml\"\nrusn = 3\n[variants.a]\nprofile = \"fast\"\n",
        )
        .expect("write");
        let err = read_bench_file(&path).expect_err("refused").to_string();
        assert!(err.contains("rusn") && err.contains("bench.toml"), "{err}");
        std::fs::write(
            &path,
            "spec = \"s.toml\"\n[variants.a]\nprofile = \"fast\"\noverlay = { stages = { r = { poll_interval_s = 2 } } }\n",
        )
        .expect("write");
        let file = read_bench_file(&path).expect("reads");
        assert_eq!(file.variants["a"].profile, "fast");
        assert!(file.variants["a"].overlay.is_some());
    }
}
