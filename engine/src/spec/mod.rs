//! The run spec: its types, how a file is read and checked, and how profiles resolve.
//!
//! `SpecSource` (text) → [`check`] → [`CheckedSpec`] (every rule holds, a profile applied) →
//! `plan::Plan`. Nothing runs a spec that has not been through [`check`].

pub mod check;
pub mod diagnostic;
pub mod graph;
pub mod model;
pub mod profile;
pub mod schema;
pub mod source;
pub mod structure;
pub mod templates;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

pub use diagnostic::{Code, SpecDiagnostic};
pub use graph::{Fan, StageGraph};
pub use profile::Origin;
pub use source::SpecSource;

use check::{Checker, Files, Parsed};
use model::SpecFile;
use profile::Overlaid;
use source::SpanIndex;
use structure::{Target, structure};

/// A spec that obeys every rule, with a profile laid over it.
#[derive(Debug, Clone)]
pub struct CheckedSpec {
    pub source: SpecSource,
    /// The spec with the profile applied and every default filled in.
    pub spec: SpecFile,
    /// The profile that was applied (`standard` when none was asked for).
    pub profile: String,
    /// Each stage's fan-out, in the spec's order (the graph's, by name).
    pub fans: IndexMap<String, Fan>,
    /// The stages as a DAG: needs, order, fan-out, requeue spans.
    pub graph: StageGraph,
    /// Folder relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The spec as written (JSON), to tell spec values from defaults.
    written: Value,
    overlaid: Overlaid,
}

impl CheckedSpec {
    /// Where the value at a JSON pointer into the resolved spec came from.
    pub fn origin(&self, pointer: &str) -> Origin {
        self.overlaid.origin(&self.written, pointer)
    }

    /// Resolves a path written in the spec against `base_dir`.
    pub fn resolve_path(&self, rel: &str) -> PathBuf {
        self.base_dir.join(rel)
    }
}

/// Everything wrong with a spec, sorted by position in the file.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub source_name: String,
    pub diagnostics: Vec<SpecDiagnostic>,
}

impl std::fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.diagnostics.len();
        write!(
            f,
            "spec `{}` has {n} problem{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for SpecErrors {}

/// The name of the profile that changes nothing.
pub const STANDARD: &str = "standard";

/// Reads and checks a spec file with a profile (`None` = `standard`).
pub fn load(path: &Path, profile: Option<&str>) -> Result<CheckedSpec, SpecErrors> {
    let source = SpecSource::read(path).map_err(|d| SpecErrors {
        source_name: path.display().to_string(),
        diagnostics: vec![*d],
    })?;
    check(&source, profile)
}

/// Checks a spec completely: every rule, every profile. All problems come back at once.
pub fn check(source: &SpecSource, profile: Option<&str>) -> Result<CheckedSpec, SpecErrors> {
    let fail = |mut diagnostics: Vec<SpecDiagnostic>| {
        diagnostics.sort_by_key(SpecDiagnostic::position);
        let mut seen = std::collections::HashSet::new();
        diagnostics.retain(|d| {
            seen.insert((
                d.code,
                d.message.clone(),
                d.labels.first().map(|l| l.0.clone()),
            ))
        });
        SpecErrors {
            source_name: source.name.clone(),
            diagnostics,
        }
    };
    let (doc, index) = source::parse(source).map_err(fail)?;
    let index = std::sync::Arc::new(index);
    let mut out = Vec::new();
    let target = Target {
        source,
        index: &index,
        prefix: "",
        partial: false,
        stage_root: false,
        name_prefix: "",
    };
    structure().check(&doc, &target, &mut out);

    // Later rules see the spec without the values the schema already rejected (their defaults
    // apply instead), so that one bad value neither hides the other problems of its stage nor
    // is reported a second time by a rule that reads it.
    let repaired = repair(&doc, &out);
    let parsed = Parsed::from_doc(&repaired);
    let base_dir = check::base_dir(
        source,
        repaired.pointer("/run/base_dir").and_then(Value::as_str),
    );
    let mut files = Files::default();
    let graph = {
        let mut checker = Checker {
            source,
            index: &index,
            doc: &repaired,
            parsed: &parsed,
            base_dir: base_dir.clone(),
            files: &mut files,
            out: &mut out,
            only: None,
        };
        let graph = checker.check_graph();
        checker.check_values(graph.as_ref());
        graph
    };

    // Every profile is checked, not only the one asked for: a broken profile is a broken spec.
    let names = profile::profile_names(&doc);
    let wanted = profile.unwrap_or(STANDARD);
    if !names.iter().any(|n| n == wanted) {
        let list: Vec<&str> = names.iter().map(String::as_str).collect();
        out.push(
            SpecDiagnostic::without_source(Code::Profile, format!("unknown profile `{wanted}`"))
                .maybe_help(diagnostic::hint(wanted, "profiles", &list)),
        );
    }
    let base_found = out.clone();
    let mut selected = None;
    for name in &names {
        if name != wanted && profile::is_noop(&doc, name) {
            // Nothing to lay over the spec and nothing to check (the built-in `standard`).
            continue;
        }
        let o = profile::overlay(source, &repaired, &index, name, &mut out);
        // `standard` changes nothing unless the spec redefines it; then it is checked too.
        {
            let found = check_overlay(source, &o, &base_dir, &mut files, graph.as_ref());
            for d in found {
                let dup = base_found.iter().any(|b| {
                    b.code == d.code
                        && b.message == d.message
                        && b.labels.first() == d.labels.first()
                });
                if !dup {
                    out.push(annotate(d, &o));
                }
            }
        }
        if name == wanted {
            selected = Some(o);
        }
    }

    if !out.is_empty() {
        return Err(fail(out));
    }
    let (Some(overlaid), Some(mut graph)) = (selected, graph) else {
        return Err(fail(out));
    };
    let spec = SpecFile::deserialize(&overlaid.doc).map_err(|e| {
        fail(vec![
            SpecDiagnostic::new(
                source,
                Code::InvalidValue,
                format!("spec does not fit its types: {e}"),
            )
            .label(0..0, "here"),
        ])
    })?;
    // The profile may have changed `on_short`; the graph's shape is the spec's.
    graph.requeue_spans(&spec.stages);
    Ok(CheckedSpec {
        source: source.clone(),
        spec,
        profile: wanted.to_owned(),
        fans: graph.fans().clone(),
        graph,
        base_dir,
        written: doc,
        overlaid,
    })
}

/// The document without the values at the pointers of `diags`. An array item takes its whole
/// array with it, so that the indices of the items left keep matching their spans.
fn repair<'d>(doc: &'d Value, diags: &[SpecDiagnostic]) -> std::borrow::Cow<'d, Value> {
    let mut pointers: Vec<&str> = diags
        .iter()
        .filter_map(|d| d.pointer.as_deref())
        .filter(|p| !p.is_empty())
        .collect();
    if pointers.is_empty() {
        return std::borrow::Cow::Borrowed(doc);
    }
    pointers.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(b.cmp(a)));
    let mut out = doc.clone();
    for p in pointers {
        let mut p = p.to_owned();
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !matches!(out.pointer(parent), Some(Value::Array(_))) {
                break;
            }
            p = parent.to_owned();
        }
        let Some((parent, key)) = p.rsplit_once('/') else {
            continue;
        };
        if let Some(Value::Object(m)) = out.pointer_mut(parent) {
            m.shift_remove(&structure::unescape(key));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Says which profile a problem comes from, when a profile set the value at fault.
fn annotate(mut d: SpecDiagnostic, o: &Overlaid) -> SpecDiagnostic {
    let by = d
        .pointer
        .as_deref()
        .and_then(|p| o.setter(p))
        .map(|(n, _)| n.clone())
        .or_else(|| Some(o.profile.clone()));
    if let Some(name) = by {
        d.message.push_str(&format!(" (with profile `{name}`)"));
    }
    d
}

/// Checks what a profile changed: the stages and services it touched must still obey every
/// rule. Values set through `kinds.KIND` were checked against the kind's schema already.
fn check_overlay(
    source: &SpecSource,
    o: &Overlaid,
    base_dir: &Path,
    files: &mut Files,
    graph: Option<&StageGraph>,
) -> Vec<SpecDiagnostic> {
    let mut out = Vec::new();
    if o.set_by.is_empty() {
        return out;
    }
    let index: &SpanIndex = &o.index;
    let mut touched = std::collections::HashSet::new();
    for p in o.set_by.keys() {
        let mut segs = p.split('/').skip(1);
        if let (Some(table), Some(name)) = (segs.next(), segs.next()) {
            if table == "stages" || table == "services" {
                touched.insert(format!("{table}/{}", structure::unescape(name)));
            }
        } else if p == "/run" || p.starts_with("/run/") {
            touched.insert("run".to_owned());
        }
    }
    let mut structural = Vec::new();
    let whole = |prefix: &'static str| Target {
        source,
        index,
        prefix,
        partial: false,
        stage_root: false,
        name_prefix: "",
    };
    if touched.iter().all(|t| t.starts_with("stages/")) {
        // The usual case (e.g. `fast` tunes queue stages): check only the stages touched.
        for t in &touched {
            let name = &t["stages/".len()..];
            let prefix = format!("/stages/{}", source::escape_segment(name));
            let Some(stage) = source::lookup(&o.doc, &prefix) else {
                continue;
            };
            let name_prefix = format!("stages.{}", crate::toml_fmt::key(name));
            let target = Target {
                source,
                index,
                prefix: &prefix,
                partial: false,
                stage_root: true,
                name_prefix: &name_prefix,
            };
            structure().check_stage(stage, &target, &mut structural);
        }
    } else {
        structure().check(&o.doc, &whole(""), &mut structural);
    }
    // Only problems in values a profile set through `stages.NAME`/`services.NAME`/`run`.
    structural.retain(|d| {
        d.pointer
            .as_deref()
            .and_then(|p| o.setter(p))
            .is_some_and(|(_, via_kinds)| !via_kinds)
    });
    let repaired = repair(&o.doc, &structural);
    out.extend(structural);
    // Only the touched stages are checked; `llm` stages are kept too, because a touched
    // per-item stage reads its scene fields from its source's output schema.
    let parsed = Parsed::from_doc_keeping(&repaired, |name, v| {
        touched.contains(&format!("stages/{name}"))
            || v.get("kind").and_then(Value::as_str) == Some("llm")
    });
    let mut checker = Checker {
        source,
        index,
        doc: &repaired,
        parsed: &parsed,
        base_dir: base_dir.to_path_buf(),
        files,
        out: &mut out,
        only: Some(touched),
    };
    checker.check_values(graph);
    out
}
