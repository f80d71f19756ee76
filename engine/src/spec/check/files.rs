//! Files a spec names (workflows, prompt templates, schemas): read and parsed once each, and
//! reported, when unusable, at the value that names them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::super::diagnostic::{Code, suggest};
use super::super::source::SpecSource;
use super::super::templates;
use super::Checker;
use crate::workflow::Workflow;

/// Why a file a spec names cannot be used, and the code that reports it.
#[derive(Debug, Clone)]
pub struct FileError {
    pub code: Code,
    pub why: String,
}

impl FileError {
    pub(super) fn new(code: Code, why: impl Into<String>) -> Self {
        FileError {
            code,
            why: why.into(),
        }
    }
}

/// Files read while checking, read (and parsed) once each.
#[derive(Default)]
pub struct Files {
    text: HashMap<PathBuf, Result<Arc<str>, FileError>>,
    workflows: HashMap<PathBuf, Result<Arc<Workflow>, FileError>>,
    templates: HashMap<PathBuf, Result<Vec<String>, FileError>>,
    schemas: HashMap<PathBuf, Result<Arc<Value>, FileError>>,
    pub(super) story_schema: Option<Arc<Value>>,
}

impl Files {
    pub(super) fn read(&mut self, path: &Path) -> Result<Arc<str>, FileError> {
        self.text
            .entry(path.to_path_buf())
            .or_insert_with(|| match std::fs::read(path) {
                Ok(bytes) => String::from_utf8(bytes)
                    .map(Arc::from)
                    .map_err(|_| FileError::new(Code::BadFile, "is not UTF-8 text")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(FileError::new(Code::MissingFile, "does not exist"))
                }
                Err(e) => Err(FileError::new(
                    Code::BadFile,
                    format!("cannot be read: {e}"),
                )),
            })
            .clone()
    }

    /// Reads and parses a file once; later calls get the cached result.
    pub(super) fn parsed<T: Clone>(
        &mut self,
        path: &Path,
        cache: fn(&mut Files) -> &mut HashMap<PathBuf, Result<T, FileError>>,
        parse: impl FnOnce(&str) -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        if let Some(r) = cache(self).get(path) {
            return r.clone();
        }
        let r = self.read(path).and_then(|text| parse(&text));
        cache(self).insert(path.to_path_buf(), r.clone());
        r
    }

    pub(super) fn workflow(&mut self, path: &Path) -> Result<Arc<Workflow>, FileError> {
        self.parsed(
            path,
            |f| &mut f.workflows,
            |text| {
                Workflow::parse(text).map(Arc::new).map_err(|e| {
                    FileError::new(Code::Workflow, format!("is not a usable workflow: {e}"))
                })
            },
        )
    }

    /// The variables a template file uses, plus those its metadata block declares.
    pub(super) fn template(&mut self, path: &Path) -> Result<Vec<String>, FileError> {
        self.parsed(
            path,
            |f| &mut f.templates,
            |text| {
                let invalid = |e: String| {
                    FileError::new(
                        Code::Template,
                        format!("is not a valid prompt template: {e}"),
                    )
                };
                let mut used = templates::variables(text).map_err(|e| invalid(e.0))?;
                for v in templates::prompt_meta(text)
                    .map_err(|e| invalid(e.to_string()))?
                    .map(|m| m.variables)
                    .unwrap_or_default()
                {
                    if !used.contains(&v) {
                        used.push(v);
                    }
                }
                Ok(used)
            },
        )
    }

    pub(super) fn schema(&mut self, path: &Path) -> Result<Arc<Value>, FileError> {
        self.parsed(
            path,
            |f| &mut f.schemas,
            |text| {
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    FileError::new(Code::BadFile, format!("is not valid JSON: {e}"))
                })?;
                jsonschema::validator_for(&v).map_err(|e| {
                    FileError::new(Code::BadFile, format!("is not a valid JSON Schema: {e}"))
                })?;
                Ok(Arc::new(v))
            },
        )
    }
}

impl<'a> Checker<'a> {
    /// Reports a file the spec names that cannot be used, at the value that names it.
    pub(super) fn file_problem(
        &mut self,
        ptr: &str,
        rel: &str,
        e: FileError,
        unusable_help: Option<String>,
    ) {
        let span = self.value_span(ptr);
        let path = tidy(&self.base_dir.join(rel));
        let (label, help) = if e.code == Code::MissingFile {
            let help = similar_file(&path).map_or_else(
                || format!("relative paths are resolved against `{}` (the spec's folder joined with `run.base_dir`)", tidy(&self.base_dir).display()),
                |f| format!("did you mean `{f}`?"),
            );
            ("file not found", Some(help))
        } else {
            let label = if e.code == Code::Workflow {
                "not an API-format workflow"
            } else {
                "this file is not usable"
            };
            (label, unusable_help)
        };
        self.err(
            e.code,
            format!("file `{}` {}", path.display(), e.why),
            span,
            label,
            help,
        );
    }
}

/// The spec file's folder joined with `run.base_dir`.
pub fn base_dir(source: &SpecSource, base: Option<&str>) -> PathBuf {
    let spec_dir = source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let spec_dir = if spec_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        spec_dir
    };
    match base {
        Some(b) if b != "." => spec_dir.join(b),
        _ => spec_dir,
    }
}

/// A path with `.` and `name/..` taken out, as a person would write it (nothing is resolved
/// on disk; symlinks do not matter for a message).
pub fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// A file next to `path` whose name is close to its name, for "did you mean".
fn similar_file(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    let entries: Vec<String> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .ok()?
    .filter_map(|e| e.ok()?.file_name().into_string().ok())
    .collect();
    let best = suggest(name, entries.iter().map(String::as_str))?;
    Some(dir.join(best).display().to_string())
}
