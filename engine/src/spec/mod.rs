//! The run spec: its types, how a file is read and checked, and how profiles resolve.
//!
//! `SpecSource` (text) → [`check`] → [`CheckedSpec`] (every rule holds, a profile applied) →
//! `plan::Plan`. Nothing runs a spec that has not been through [`check`].

pub mod check;
pub mod diagnostic;
pub mod model;
pub mod profile;
pub mod source;
pub mod structure;
pub mod templates;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;

pub use check::Fan;
pub use diagnostic::{Code, SpecDiagnostic};
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
    /// Each stage's fan-out, in the spec's order.
    pub fans: IndexMap<String, Fan>,
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
    let mut out = Vec::new();
    let target = Target {
        source,
        index: &index,
        prefix: "",
        partial: false,
    };
    structure().check(&doc, &target, &mut out);
    let parsed = Parsed::from_doc(&doc);
    let base_dir = check::base_dir(source, parsed.run.as_ref());
    let mut files = Files::default();
    let fans = {
        let mut checker = Checker {
            source,
            index: &index,
            doc: &doc,
            parsed: &parsed,
            base_dir: base_dir.clone(),
            files: &mut files,
            out: &mut out,
        };
        let fans = checker.check_graph();
        checker.check_values(fans.as_ref());
        fans
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
    let mut selected = None;
    for name in &names {
        let o = profile::overlay(source, &doc, &index, name, &mut out);
        if name != STANDARD {
            check_overlay(source, &o, &base_dir, &mut files, fans.as_ref(), &mut out);
        }
        if name == wanted {
            selected = Some(o);
        }
    }

    if !out.is_empty() {
        return Err(fail(out));
    }
    let (Some(overlaid), Some(fans)) = (selected, fans) else {
        return Err(fail(out));
    };
    let spec: SpecFile = serde_json::from_value(overlaid.doc.clone()).map_err(|e| {
        fail(vec![
            SpecDiagnostic::new(
                source,
                Code::InvalidValue,
                format!("spec does not fit its types: {e}"),
            )
            .label(0..0, "here"),
        ])
    })?;
    Ok(CheckedSpec {
        source: source.clone(),
        spec,
        profile: wanted.to_owned(),
        fans,
        base_dir,
        written: doc,
        overlaid,
    })
}

/// Checks a spec with a profile laid over it: the values the profile changed must still obey
/// every rule.
fn check_overlay(
    source: &SpecSource,
    o: &Overlaid,
    base_dir: &Path,
    files: &mut Files,
    fans: Option<&IndexMap<String, Fan>>,
    out: &mut Vec<SpecDiagnostic>,
) {
    if o.set_by.is_empty() {
        return;
    }
    let index: &SpanIndex = &o.index;
    structure().check(
        &o.doc,
        &Target {
            source,
            index,
            prefix: "",
            partial: false,
        },
        out,
    );
    let parsed = Parsed::from_doc(&o.doc);
    let mut checker = Checker {
        source,
        index,
        doc: &o.doc,
        parsed: &parsed,
        base_dir: base_dir.to_path_buf(),
        files,
        out,
    };
    checker.check_values(fans);
}
