//! A suite: a folder of run specs and an optional `suite.toml` that says how often each runs,
//! under which profiles, and which gates decide the sweep's exit code. Read and checked like a
//! spec: every problem of the file is reported at once, each at its span.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::source::{self, SpanIndex, SpecSource};
use crate::spec::{Code, SpecDiagnostic, SpecErrors};

/// The file name a suite folder's settings live in.
pub const SUITE_FILE: &str = "suite.toml";

/// `suite.toml`: how a folder of run specs is swept. Every key is optional.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "cinepipe suite",
    description = "How `cinepipe sweep` runs a folder of run specs: repeats, profiles, gates."
)]
pub struct SuiteFile {
    /// The suite's name in reports. Default: the folder's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Runs of each (spec, profile).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100000))]
    pub repeat: u32,
    /// The profiles every spec runs under (`standard` is a spec's values as written).
    #[serde(default = "standard")]
    #[schemars(length(min = 1))]
    pub profiles: Vec<String>,
    /// The specs, relative to the suite folder. Default: every `*.toml` file of the folder
    /// except `suite.toml`, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specs: Option<Vec<String>>,
    /// Ask the LLM again in every run (each run as with `--no-cache`), so that repeats are
    /// independent samples. `false` lets repeats share cached answers.
    #[serde(default = "yes")]
    pub no_cache: bool,
    /// What a sweep must meet to exit 0.
    #[serde(default)]
    pub gates: Gates,
    /// Settings of one spec, keyed by its path as in `specs`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub overrides: IndexMap<String, SpecOverride>,
}

impl Default for SuiteFile {
    fn default() -> SuiteFile {
        SuiteFile {
            name: None,
            repeat: 1,
            profiles: standard(),
            specs: None,
            no_cache: true,
            gates: Gates::default(),
            overrides: IndexMap::new(),
        }
    }
}

/// The gates: each (spec, profile) of the sweep must meet every one (the seeds' stability
/// thresholds are the defaults).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// Fewest runs whose telemetry verifies against the contract, as a fraction.
    #[serde(default = "one_f")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub telemetry_complete: f64,
    /// Fewest rendered scenes whose done-marker was seen, as a fraction.
    #[serde(default = "done_marker_default")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub done_marker_rate: f64,
    /// Most scenes with zero frames, as a fraction.
    #[serde(default = "zero_frame_default")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub zero_frame_scene_rate: f64,
    /// Fewest passed runs of each (spec, profile), as a fraction.
    #[serde(default = "one_f")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_pass_rate: f64,
    /// What a flaky (spec, profile) does to the exit code: `warn` (reported, exit 0) or `fail`.
    #[serde(default)]
    pub flaky: FlakyPolicy,
}

impl Default for Gates {
    fn default() -> Gates {
        Gates {
            telemetry_complete: 1.0,
            done_marker_rate: done_marker_default(),
            zero_frame_scene_rate: zero_frame_default(),
            min_pass_rate: 1.0,
            flaky: FlakyPolicy::Warn,
        }
    }
}

/// What a flaky result does to the exit code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlakyPolicy {
    #[default]
    Warn,
    Fail,
}

/// One spec's own settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecOverride {
    /// Runs of each of its profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub repeat: Option<u32>,
    /// Its profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub profiles: Option<Vec<String>>,
    /// Its fewest passed runs, as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_pass_rate: Option<f64>,
}

fn one() -> u32 {
    1
}
fn one_f() -> f64 {
    1.0
}
fn yes() -> bool {
    true
}
fn standard() -> Vec<String> {
    vec!["standard".to_owned()]
}
fn done_marker_default() -> f64 {
    0.95
}
fn zero_frame_default() -> f64 {
    0.02
}

/// A suite ready to sweep: its specs with their repeats and profiles resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Suite {
    pub name: String,
    /// The folder; for specs given one by one, the folder of the first.
    pub dir: PathBuf,
    pub specs: Vec<SuiteSpec>,
    pub gates: GatesResolved,
    pub no_cache: bool,
}

/// The gates with the spec overrides' pass rates folded in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatesResolved {
    pub telemetry_complete: f64,
    pub done_marker_rate: f64,
    pub zero_frame_scene_rate: f64,
    pub flaky: FlakyPolicy,
}

/// One spec of a suite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuiteSpec {
    /// As written in the suite (or the file name), for reports and job keys.
    pub name: String,
    pub path: PathBuf,
    pub repeat: u32,
    pub profiles: Vec<String>,
    pub min_pass_rate: f64,
}

/// A suite could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{0}")]
    Invalid(SpecErrors),
    #[error("cannot read the suite folder {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: neither a spec file nor a suite folder")]
    NotFound { path: PathBuf },
    #[error("the suite folder {path} holds no spec (`*.toml` other than suite.toml)")]
    Empty { path: PathBuf },
}

/// Reads the suite at `path`: a folder (with or without `suite.toml`), or one spec file.
pub fn load(path: &Path) -> Result<Suite, SuiteError> {
    if path.is_dir() {
        load_folder(path)
    } else if path.is_file() {
        Ok(from_specs(&[path.to_path_buf()]))
    } else {
        Err(SuiteError::NotFound {
            path: path.to_path_buf(),
        })
    }
}

/// A suite of spec files given one by one, with every default.
pub fn from_specs(paths: &[PathBuf]) -> Suite {
    let file = SuiteFile::default();
    let dir = paths
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let specs = paths
        .iter()
        .map(|p| SuiteSpec {
            name: p.display().to_string(),
            path: p.clone(),
            repeat: file.repeat,
            profiles: file.profiles.clone(),
            min_pass_rate: file.gates.min_pass_rate,
        })
        .collect();
    Suite {
        name: "specs".to_owned(),
        dir,
        specs,
        gates: resolved(&file.gates),
        no_cache: file.no_cache,
    }
}

fn resolved(g: &Gates) -> GatesResolved {
    GatesResolved {
        telemetry_complete: g.telemetry_complete,
        done_marker_rate: g.done_marker_rate,
        zero_frame_scene_rate: g.zero_frame_scene_rate,
        flaky: g.flaky,
    }
}

fn load_folder(dir: &Path) -> Result<Suite, SuiteError> {
    let file_path = dir.join(SUITE_FILE);
    let (file, checked) = if file_path.is_file() {
        let source = SpecSource::read(&file_path).map_err(|d| invalid(&file_path, vec![*d]))?;
        let (doc, index) = source::parse(&source).map_err(|d| invalid(&file_path, d))?;
        let mut out = Vec::new();
        check_structure(&source, &doc, &index, &mut out);
        let file = if out.is_empty() {
            match serde_json::from_value::<SuiteFile>(doc.clone()) {
                Ok(f) => Some(f),
                Err(e) => {
                    out.push(SpecDiagnostic::new(
                        &source,
                        Code::InvalidValue,
                        e.to_string(),
                    ));
                    None
                }
            }
        } else {
            None
        };
        (file, Some((source, doc, index, out)))
    } else {
        (Some(SuiteFile::default()), None)
    };
    let folder_name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "suite".to_owned());
    let listed = list_specs(dir)?;
    // The specs and overrides are checked from the document as written, so that a missing
    // spec is reported beside the file's other problems, not after they are fixed.
    let raw = checked.as_ref().map(|(_, doc, _, _)| doc);
    let names: Vec<String> = match raw.and_then(|d| d.get("specs")).and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        None => listed.clone(),
    };
    let override_names: Vec<String> = raw
        .and_then(|d| d.get("overrides"))
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if !name.is_empty() && !dir.join(name).is_file() {
            problems.push((
                format!("/specs/{i}"),
                format!("no spec file `{name}` in {}", dir.display()),
                Code::MissingFile,
            ));
        }
    }
    for name in &override_names {
        if !names.contains(name) {
            problems.push((
                format!("/overrides/{}", source::escape_segment(name)),
                format!("`overrides.\"{name}\"` names no spec of the suite"),
                Code::UnknownKey,
            ));
        }
    }
    let mut specs = Vec::new();
    if let Some(file) = &file {
        for name in &names {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let o = file.overrides.get(name).cloned().unwrap_or_default();
            specs.push(SuiteSpec {
                name: name.clone(),
                path,
                repeat: o.repeat.unwrap_or(file.repeat),
                profiles: o.profiles.unwrap_or_else(|| file.profiles.clone()),
                min_pass_rate: o.min_pass_rate.unwrap_or(file.gates.min_pass_rate),
            });
        }
    }
    match checked {
        Some((source, _doc, index, mut out)) => {
            for (pointer, message, code) in problems {
                let span = index.nearest(&pointer).entry();
                out.push(SpecDiagnostic::new(&source, code, message).label(span, "here"));
            }
            if !out.is_empty() {
                out.sort_by_key(SpecDiagnostic::position);
                return Err(invalid(&file_path, out));
            }
        }
        None => {
            if let Some((_, message, _)) = problems.into_iter().next() {
                return Err(invalid(
                    &file_path,
                    vec![SpecDiagnostic::without_source(Code::MissingFile, message)],
                ));
            }
        }
    }
    let file = file.unwrap_or_default();
    if specs.is_empty() {
        return Err(SuiteError::Empty {
            path: dir.to_path_buf(),
        });
    }
    Ok(Suite {
        name: file.name.clone().unwrap_or(folder_name),
        dir: dir.to_path_buf(),
        specs,
        gates: resolved(&file.gates),
        no_cache: file.no_cache,
    })
}

fn invalid(path: &Path, diagnostics: Vec<SpecDiagnostic>) -> SuiteError {
    SuiteError::Invalid(SpecErrors {
        source_name: path.display().to_string(),
        diagnostics,
    })
}

/// The `*.toml` files of `dir` other than `suite.toml`, by name.
fn list_specs(dir: &Path) -> Result<Vec<String>, SuiteError> {
    let io = |source| SuiteError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && name != SUITE_FILE && entry.path().is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The suite file against its schema: every unknown key, wrong type and out-of-range value,
/// each at its span.
fn check_structure(
    source: &SpecSource,
    doc: &Value,
    index: &SpanIndex,
    out: &mut Vec<SpecDiagnostic>,
) {
    let schema = suite_schema();
    let Ok(validator) = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(&schema)
    else {
        out.push(SpecDiagnostic::without_source(
            Code::InvalidValue,
            "cinepipe's suite schema does not compile (a bug in cinepipe)",
        ));
        return;
    };
    for err in validator.iter_errors(doc) {
        let at = err.instance_path().to_string();
        if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
            err.kind()
        {
            for key in unexpected {
                let pointer = format!("{at}/{}", source::escape_segment(key));
                let span = index.nearest(&pointer).entry();
                let known = schema_keys(&schema, doc, &at);
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                out.push(
                    SpecDiagnostic::new(source, Code::UnknownKey, format!("unknown key `{key}`"))
                        .label(span, "not a key of a suite file")
                        .maybe_help(crate::spec::diagnostic::hint(key, "keys", &known)),
                );
            }
            continue;
        }
        let span = index.nearest(&at).value;
        let code = match err.kind() {
            jsonschema::error::ValidationErrorKind::Type { .. } => Code::WrongType,
            _ => Code::InvalidValue,
        };
        let key = if at.is_empty() {
            "the file".to_owned()
        } else {
            format!("`{}`", at.trim_start_matches('/').replace('/', "."))
        };
        out.push(SpecDiagnostic::new(source, code, format!("{key}: {err}")).label(span, "here"));
    }
}

/// The keys the schema allows in the object at `pointer` of `doc`.
fn schema_keys(schema: &Value, _doc: &Value, pointer: &str) -> Vec<String> {
    let deref = |n| crate::json_schema::deref(schema, n);
    let mut node = schema;
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        let here = deref(node);
        node = match here.get("properties").and_then(|p| p.get(seg)) {
            Some(n) => n,
            None => match here.get("additionalProperties") {
                Some(n) if n.is_object() => n,
                _ => return Vec::new(),
            },
        };
    }
    deref(node)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The JSON Schema of `suite.toml` (draft-07, as the run spec's).
pub fn suite_schema() -> Value {
    crate::json_schema::draft07::<SuiteFile>()
}
