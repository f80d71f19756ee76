//! The run folder, `<output_dir>/<run-id>/`: its id, its manifest, the resolved spec, the
//! journal and where each stage instance's outputs go.
//!
//! ```text
//! runs/20261121T120305Z-6v3k9q2m1xw8/
//!   run.json              manifest: id, spec path, profile, created, cinepipe version
//!   resolved-spec.json    the spec with the profile applied and every default filled in
//!   events.jsonl          the journal (`journal.rs`)
//!   stages/story/output.json
//!   stages/patch/0/output.json    one folder per item of a per-item stage
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::InstanceId;
use crate::fsutil::write_atomic;
use crate::spec::CheckedSpec;

pub const MANIFEST: &str = "run.json";
pub const RESOLVED_SPEC: &str = "resolved-spec.json";
pub const EVENTS: &str = "events.jsonl";

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub id: String,
    pub path: PathBuf,
}

/// `run.json`: what a resume needs to find the spec again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    /// The spec file, absolute where it could be made so.
    pub spec: PathBuf,
    pub profile: String,
    pub created: String,
    pub version: String,
}

/// A run folder that cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("cannot create `{path}`: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a run folder: {message}")]
    NotARun { path: PathBuf, message: String },
}

/// A new run id: the UTC start time to the second, then 12 random base-32 characters
/// (`20261121T120305Z-6v3k9q2m1xw8`). Ids sort by start time as text; two runs started in the
/// same second differ in their random part (60 bits).
pub fn new_run_id() -> String {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let ulid = ulid::Ulid::generate().to_string().to_ascii_lowercase();
    // A ULID's last 16 characters are its random part.
    let random = &ulid[ulid.len() - 12..];
    format!("{stamp}-{random}")
}

impl RunDir {
    /// Creates `<output_dir>/<new id>/` with its manifest and resolved spec.
    pub fn create(
        output_dir: &Path,
        spec: &CheckedSpec,
        spec_path: &Path,
    ) -> Result<RunDir, RunDirError> {
        std::fs::create_dir_all(output_dir).map_err(|source| RunDirError::Create {
            path: output_dir.to_owned(),
            source,
        })?;
        // Made whole under a hidden name, then renamed into place: a run folder is there with
        // its manifest and resolved spec, or not at all (a full disk or a kill while it is
        // made leaves only a hidden `.<id>.creating`, which nothing lists or resumes).
        let (id, path, staging) = loop {
            let id = new_run_id();
            let path = output_dir.join(&id);
            if path.exists() {
                continue;
            }
            let staging = output_dir.join(format!(".{id}.creating"));
            // `create_dir`, not `create_dir_all`: an id that exists is never shared.
            match std::fs::create_dir(&staging) {
                Ok(()) => break (id, path, staging),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(RunDirError::Create {
                        path: staging,
                        source,
                    });
                }
            }
        };
        let manifest = Manifest {
            run_id: id.clone(),
            spec: std::path::absolute(spec_path).unwrap_or_else(|_| spec_path.to_owned()),
            profile: spec.profile.clone(),
            created: super::event::now_rfc3339(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let made = (|| {
            let staged = RunDir {
                id: id.clone(),
                path: staging.clone(),
            };
            staged.write_json(Path::new(RESOLVED_SPEC), &resolved(spec))?;
            staged.write_json(Path::new(MANIFEST), &manifest)?;
            // `rename` does not replace a folder that is not empty, and ids are unique.
            std::fs::rename(&staging, &path).map_err(|source| RunDirError::Create {
                path: path.clone(),
                source,
            })?;
            // The rename is durable once the parent's entry is (best effort, as in fsutil).
            if let Ok(d) = std::fs::File::open(output_dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        Ok(RunDir { id, path })
    }

    /// Opens an existing run folder and reads its manifest. A folder whose journal was never
    /// started (a kill right after it was made) is a run folder too: resuming it starts the
    /// run in it.
    pub fn open(path: &Path) -> Result<(RunDir, Manifest), RunDirError> {
        let not_a_run = |message: String| RunDirError::NotARun {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path.join(MANIFEST))
            .map_err(|e| not_a_run(format!("cannot read {MANIFEST}: {e}")))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| not_a_run(format!("{MANIFEST} does not parse: {e}")))?;
        Ok((
            RunDir {
                id: manifest.run_id.clone(),
                path: path.to_owned(),
            },
            manifest,
        ))
    }

    /// The resolved spec the run was started with.
    pub fn resolved_spec(&self) -> Result<Value, RunDirError> {
        let p = self.path.join(RESOLVED_SPEC);
        std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| RunDirError::NotARun {
                path: self.path.clone(),
                message: format!("{RESOLVED_SPEC} is missing or does not parse"),
            })
    }

    pub fn events(&self) -> PathBuf {
        self.path.join(EVENTS)
    }

    /// The folder of one stage instance's files, relative to the run folder.
    pub fn instance_dir(id: &InstanceId) -> PathBuf {
        let mut p = PathBuf::from("stages");
        p.push(&id.stage);
        if let Some(i) = id.item {
            p.push(i.to_string());
        }
        p
    }

    /// Where an instance's output goes, relative to the run folder.
    pub fn output_file(id: &InstanceId) -> PathBuf {
        RunDir::instance_dir(id).join("output.json")
    }

    /// Writes JSON (pretty, newline-terminated) atomically to a path relative to the run folder,
    /// creating its folder.
    pub fn write_json<T: Serialize + ?Sized>(&self, rel: &Path, v: &T) -> Result<(), RunDirError> {
        let path = self.path.join(rel);
        let write = |source| RunDirError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| write(e.into()))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes).map_err(write)
    }
}

/// The spec as the run sees it: profile applied, defaults filled in.
pub fn resolved(spec: &CheckedSpec) -> Value {
    serde_json::to_value(&spec.spec).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_sort_by_time_and_are_unique() {
        let a = super::new_run_id();
        let b = super::new_run_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), "20261121T120305Z-".len() + 12, "{a}");
        assert!(
            a[..16]
                .chars()
                .all(|c| c.is_ascii_digit() || c == 'T' || c == 'Z'),
            "{a}"
        );
    }
}
