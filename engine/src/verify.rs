//! `cinepipe verify <run-dir>` and the `validate` stage: a run's `artifact-metadata.json` against
//! the schema generated from the telemetry types, a few rules a schema cannot say, and
//! `run-summary.txt` against the metadata.
//!
//! Every problem is a [`Violation`] with a location a person can go to: a JSON pointer into the
//! metadata (`/Scenes/2/Telemetry/GPU/VramAfterMB: missing`), a line of the summary
//! (`run-summary.txt:7: ...`), or a whole file. Nothing here panics on a file's content.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::telemetry::{
    Expected, Extract, Line, METADATA_FILE, Payload, SUMMARY_FILE, Subject, Summary, expected_lines,
};

/// Where a violation is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A JSON pointer into `artifact-metadata.json` (`""` is the whole document).
    Pointer(String),
    /// A line of a file (1-based).
    Line(&'static str, usize),
    /// A whole file.
    File(&'static str),
}

/// One way a run's files break the telemetry contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub location: Location,
    pub message: String,
}

impl Violation {
    fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            location: Location::Pointer(pointer.into()),
            message: message.into(),
        }
    }

    fn line(n: usize, message: impl Into<String>) -> Self {
        Violation {
            location: Location::Line(SUMMARY_FILE, n),
            message: message.into(),
        }
    }

    fn file(name: &'static str, message: impl Into<String>) -> Self {
        Violation {
            location: Location::File(name),
            message: message.into(),
        }
    }

    /// The JSON pointer, when the violation is in the metadata.
    pub fn pointer(&self) -> Option<&str> {
        match &self.location {
            Location::Pointer(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            // The root has no pointer text; name the file instead of printing `: ...`.
            Location::Pointer(p) if p.is_empty() => write!(f, "{METADATA_FILE}: {}", self.message),
            Location::Pointer(p) => write!(f, "{p}: {}", self.message),
            Location::Line(file, n) => write!(f, "{file}:{n}: {}", self.message),
            Location::File(file) => write!(f, "{file}: {}", self.message),
        }
    }
}

/// The run folder itself could not be read (as opposed to a file in it, which is a violation).
#[derive(Debug, thiserror::Error)]
#[error("cannot read run folder `{}`: {source}", path.display())]
pub struct VerifyError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Checks the run folder `dir`. An empty list means the run keeps the contract.
pub fn verify_run(dir: &Path) -> Result<Vec<Violation>, VerifyError> {
    let err = |source| VerifyError {
        path: dir.to_path_buf(),
        source,
    };
    // Listing proves the folder is there and readable; a file that then cannot be read is the
    // file's problem.
    std::fs::read_dir(dir).map_err(err)?;
    let metadata = read(dir, METADATA_FILE);
    let summary = read(dir, SUMMARY_FILE);
    let mut out = Vec::new();
    let doc = match metadata {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                out.push(Violation::file(
                    METADATA_FILE,
                    format!("not valid JSON: {e}"),
                ));
                None
            }
        },
        Err(message) => {
            out.push(Violation::file(METADATA_FILE, message));
            None
        }
    };
    let summary = match summary {
        Ok(text) => Some(text),
        Err(message) => {
            out.push(Violation::file(SUMMARY_FILE, message));
            None
        }
    };
    out.extend(verify_texts(doc.as_ref(), summary.as_deref()));
    Ok(out)
}

fn read(dir: &Path, name: &'static str) -> Result<String, String> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            format!(
                "not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("missing".to_owned()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// Checks a parsed metadata document and a summary's text, either of which may be absent (its
/// absence is reported by the caller).
pub fn verify_texts(doc: Option<&Value>, summary: Option<&str>) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(doc) = doc {
        out.extend(check_schema(doc));
        let tainted: Vec<String> = out
            .iter()
            .filter_map(|v| v.pointer())
            .map(str::to_owned)
            .collect();
        out.extend(check_rules(doc, &Taint(&tainted)));
    }
    if let Some(text) = summary {
        let (lines, errors) = Summary::parse_lenient(text);
        for e in errors {
            out.push(Violation::line(e.line, e.message));
        }
        if let Some(doc) = doc {
            let tainted: Vec<String> = out
                .iter()
                .filter_map(|v| v.pointer())
                .map(str::to_owned)
                .collect();
            out.extend(cross_check(doc, &lines, &Taint(&tainted)));
        }
    }
    out
}

/// Pointers already reported: a value at or below one is not compared again, so that each
/// broken field is reported once, for its own reason.
struct Taint<'a>(&'a [String]);

impl Taint<'_> {
    fn hits(&self, pointer: &str) -> bool {
        self.0.iter().any(|v| {
            pointer == v
                || pointer
                    .strip_prefix(v.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The schema

struct Compiled {
    schema: Value,
    validator: Validator,
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        let schema = crate::schema::artifact_metadata_schema();
        // Generated from our own types; a schema that does not compile is a bug in cinepipe that
        // the schema tests catch, never a problem of the run being checked.
        #[expect(
            clippy::expect_used,
            reason = "the schema is generated from our own types"
        )]
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&schema)
            .expect("the generated artifact-metadata schema compiles");
        Compiled { schema, validator }
    })
}

fn check_schema(doc: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    for err in compiled().validator.iter_errors(doc) {
        report(&err, &mut out);
    }
    out
}

fn escape(seg: &str) -> String {
    seg.replace('~', "~0").replace('/', "~1")
}

fn report(err: &ValidationError<'_>, out: &mut Vec<Violation>) {
    let path = err.instance_path().as_str().to_owned();
    let inst = err.instance();
    match err.kind() {
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            out.push(Violation::at(format!("{path}/{}", escape(key)), "missing"));
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = properties_at(&path);
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            for key in unexpected {
                let hint = crate::spec::diagnostic::suggest(key, known.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                out.push(Violation::at(
                    format!("{path}/{}", escape(key)),
                    format!("unknown field{hint}"),
                ));
            }
        }
        ValidationErrorKind::Type { kind } => {
            let mut expected: Vec<String> = match kind {
                TypeKind::Single(t) => vec![t.to_string()],
                TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect(),
            };
            // "string or null" reads as "a string, else nothing": null last.
            expected.sort_by_key(|t| t == "null");
            out.push(Violation::at(
                path,
                format!("expected {}, found {}", expected.join(" or "), found(inst)),
            ));
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(plain).collect())
                .unwrap_or_default();
            out.push(Violation::at(path, one_of(&opts, inst)));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(Violation::at(
                path,
                format!("expected {}, found {}", plain(expected_value), found(inst)),
            ));
        }
        ValidationErrorKind::Format { format } => {
            let what = if format == "date-time" {
                "an RFC 3339 date-time".to_owned()
            } else {
                format!("a `{format}`")
            };
            out.push(Violation::at(
                path,
                format!("expected {what}, found {}", found(inst)),
            ));
        }
        ValidationErrorKind::Minimum { limit } => {
            out.push(Violation::at(
                path,
                format!("must be at least {limit}, found {inst}"),
            ));
        }
        ValidationErrorKind::Maximum { limit } => {
            out.push(Violation::at(
                path,
                format!("must be at most {limit}, found {inst}"),
            ));
        }
        ValidationErrorKind::MinLength { .. } => {
            out.push(Violation::at(path, "must not be empty"));
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            report_union(context, &path, inst, out);
        }
        _ => out.push(Violation::at(path, err.to_string())),
    }
}

/// A value matched none of a union's branches. Unions here are enums (`oneOf` of constants)
/// and nullable references (`anyOf` of a schema and `null`): say which values are accepted, or
/// report the errors of the branch the value was meant for.
fn report_union(
    context: &[Vec<ValidationError<'static>>],
    path: &str,
    inst: &Value,
    out: &mut Vec<Violation>,
) {
    let at_root = |e: &ValidationError<'_>| e.instance_path().as_str() == path;
    // An enum: every branch is a constant (a value of the wrong type also fails the branch's
    // `type`, hence both kinds).
    let consts: Option<Vec<String>> = context
        .iter()
        .map(|branch| {
            let only_root = branch.iter().all(|e| {
                at_root(e)
                    && matches!(
                        e.kind(),
                        ValidationErrorKind::Constant { .. } | ValidationErrorKind::Type { .. }
                    )
            });
            branch.iter().find_map(|e| match e.kind() {
                ValidationErrorKind::Constant { expected_value } if only_root => {
                    Some(plain(expected_value))
                }
                _ => None,
            })
        })
        .collect();
    if let Some(opts) = consts {
        out.push(Violation::at(path, one_of(&opts, inst)));
        return;
    }
    // Leave out the branches that fail only because the value is not of their type (the `null`
    // branch of a nullable reference, when the value is not null).
    let meant: Vec<&Vec<ValidationError<'static>>> = context
        .iter()
        .filter(|b| {
            !b.iter()
                .all(|e| at_root(e) && matches!(e.kind(), ValidationErrorKind::Type { .. }))
        })
        .collect();
    if let [branch] = meant.as_slice() {
        for e in branch.iter() {
            report(e, out);
        }
        return;
    }
    // Nothing to choose: every branch refused the value's type. Say what the types were.
    let mut types: Vec<String> = Vec::new();
    for e in context.iter().flatten().filter(|e| at_root(e)) {
        if let ValidationErrorKind::Type { kind } = e.kind() {
            match kind {
                TypeKind::Single(t) => types.push(t.to_string()),
                TypeKind::Multiple(ts) => types.extend(ts.iter().map(|t| t.to_string())),
            }
        }
    }
    types.sort_by_key(|t| t == "null");
    types.dedup();
    if types.is_empty() {
        out.push(Violation::at(
            path,
            format!("invalid value {}", found(inst)),
        ));
    } else {
        out.push(Violation::at(
            path,
            format!("expected {}, found {}", types.join(" or "), found(inst)),
        ));
    }
}

fn one_of(opts: &[String], inst: &Value) -> String {
    let hint = inst
        .as_str()
        .and_then(|s| crate::spec::diagnostic::suggest(s, opts.iter().map(String::as_str)))
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "expected one of {}, found {}{hint}",
        opts.join(", "),
        found(inst)
    )
}

/// A JSON value as a message shows it: strings quoted, short.
fn found(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => {
            let mut t: String = s.chars().take(40).collect();
            if t.len() < s.len() {
                t.push('…');
            }
            format!("string {}", Value::String(t))
        }
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The schema of the value at `pointer`, following the document's shape through the schema.
fn schema_at(pointer: &str) -> Option<&'static Value> {
    let root = &compiled().schema;
    let mut schema = resolve(root, root);
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let next = schema
            .get("properties")
            .and_then(|p| p.get(&seg))
            .or_else(|| schema.get("items"))?;
        schema = resolve(root, next);
    }
    Some(schema)
}

/// The property names the schema allows for the object at `pointer` (for "did you mean").
fn properties_at(pointer: &str) -> Vec<String> {
    schema_at(pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follows `$ref`s, single `allOf`s and the non-null branch of `anyOf`.
fn resolve<'s>(root: &'s Value, mut s: &'s Value) -> &'s Value {
    for _ in 0..16 {
        let next = crate::schema::deref(root, s);
        let branch = next.get("anyOf").and_then(Value::as_array).and_then(|bs| {
            bs.iter()
                .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
        });
        match branch {
            Some(b) => s = b,
            None => return next,
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Rules the schema cannot say

fn check_rules(doc: &Value, taint: &Taint<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let scenes = doc
        .get("Scenes")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, scene) in scenes.iter().enumerate() {
        let base = format!("/Scenes/{i}");
        let id_ptr = format!("{base}/SceneId");
        if let Some(id) = scene.get("SceneId").and_then(Value::as_str)
            && !taint.hits(&id_ptr)
        {
            match seen.iter().find(|(s, _)| *s == id) {
                Some((_, first)) => out.push(Violation::at(
                    id_ptr,
                    format!("duplicate scene id `{id}` (also /Scenes/{first}/SceneId)"),
                )),
                None => seen.push((id, i)),
            }
        }
        let t = format!("{base}/Telemetry");
        let get = |p: &str| -> Option<&Value> {
            let full = format!("{t}{p}");
            if taint.hits(&full) {
                None
            } else {
                doc.pointer(&full)
            }
        };
        // The delta is derived: a tool that trusts it must get the same number it would compute.
        if let (Some(before), Some(after), Some(delta)) = (
            get("/GPU/VramBeforeMB"),
            get("/GPU/VramAfterMB"),
            get("/GPU/VramDeltaMB"),
        ) {
            let at = format!("{t}/GPU/VramDeltaMB");
            match (before.as_i64(), after.as_i64(), delta.as_i64()) {
                (Some(b), Some(a), Some(d)) => {
                    if let Some(want) = a.checked_sub(b)
                        && want != d
                    {
                        out.push(Violation::at(
                            at,
                            format!("must be VramAfterMB - VramBeforeMB = {want}, found {d}"),
                        ));
                    }
                }
                (Some(_), Some(_), None) => out.push(Violation::at(
                    at,
                    "must be VramAfterMB - VramBeforeMB when both are known, found null",
                )),
                (b, a, Some(d)) if b.is_none() || a.is_none() => out.push(Violation::at(
                    at,
                    format!("must be null when VramBeforeMB or VramAfterMB is null, found {d}"),
                )),
                _ => {}
            }
        }
        if get("/HistoryExitReason").and_then(Value::as_str) == Some("success")
            && get("/ExecutionSuccessDetected") == Some(&Value::Bool(false))
        {
            out.push(Violation::at(
                format!("{t}/ExecutionSuccessDetected"),
                "must be true when HistoryExitReason is success",
            ));
        }
        if get("/ForcedCopyTriggered") == Some(&Value::Bool(true))
            && get("/DoneMarkerDetected") == Some(&Value::Bool(true))
        {
            out.push(Violation::at(
                format!("{t}/ForcedCopyTriggered"),
                "cannot be true when DoneMarkerDetected is true (a forced copy replaces a marker that never came)",
            ));
        }
        if let (Some(n), Some(limit)) = (
            get("/HistoryAttempts").and_then(Value::as_u64),
            get("/HistoryAttemptLimit").and_then(Value::as_u64),
        ) && limit > 0
            && n > limit
        {
            out.push(Violation::at(
                format!("{t}/HistoryAttempts"),
                format!("{n} polls exceed HistoryAttemptLimit {limit}"),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// run-summary.txt against the metadata

fn cross_check(doc: &Value, lines: &[(usize, Line)], taint: &Taint<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    let expected = expected_lines(doc);
    let run_id = doc.get("RunId").and_then(Value::as_str);
    // The run's id names every `[Run ...]` line; one disagreement is enough to say so.
    if let Some(id) = run_id.filter(|_| !taint.hits("/RunId")) {
        let wrong = lines.iter().find(|(_, l)| match &l.subject {
            Subject::Run(r) => r != id,
            Subject::Scene(_) => false,
        });
        if let Some((
            n,
            Line {
                subject: Subject::Run(r),
                ..
            },
        )) = wrong
        {
            out.push(Violation::at(
                "/RunId",
                format!("{SUMMARY_FILE} line {n} says [Run {r}], {METADATA_FILE} says {id}"),
            ));
        }
    }

    // Run lines that occur once.
    for label in ["Run", "QueueConfig", "Outcome"] {
        let found: Vec<&(usize, Line)> = lines
            .iter()
            .filter(|(_, l)| matches!(l.subject, Subject::Run(_)) && l.label == label)
            .collect();
        let exp = expected
            .iter()
            .find(|e| matches!(e.line.subject, Subject::Run(_)) && e.line.label == label);
        match (found.as_slice(), exp) {
            ([], _) => out.push(Violation::file(
                SUMMARY_FILE,
                format!("no `[Run <id>] {label}:` line"),
            )),
            ([(n, line), rest @ ..], Some(e)) => {
                compare_fields(doc, e, *n, line, taint, &mut out);
                for (m, _) in rest {
                    out.push(Violation::line(
                        *m,
                        format!("second `{label}:` line of the run"),
                    ));
                }
            }
            _ => {}
        }
    }

    // Lists: the LLM lines and the run's notes, in order.
    let llm_found: Vec<&(usize, Line)> = run_lines(lines, "LLM");
    let llm_exp: Vec<&Expected> = expected_run(&expected, "LLM");
    if !taint.hits("/LLM") && doc.get("LLM").is_some_and(Value::is_array) {
        if llm_found.len() != llm_exp.len() {
            out.push(Violation::at(
                "/LLM",
                format!(
                    "{SUMMARY_FILE} has {} LLM line(s), {METADATA_FILE} has {} entr{}",
                    llm_found.len(),
                    llm_exp.len(),
                    if llm_exp.len() == 1 { "y" } else { "ies" }
                ),
            ));
        }
        for ((n, line), e) in llm_found.iter().zip(&llm_exp) {
            compare_fields(doc, e, *n, line, taint, &mut out);
        }
    }
    let notes_found: Vec<&(usize, Line)> = run_lines(lines, "FallbackNote");
    let notes_exp: Vec<&Expected> = expected_run(&expected, "FallbackNote");
    compare_notes(
        "/System/FallbackNotes",
        "the run",
        &notes_found,
        &notes_exp,
        doc,
        taint,
        &mut out,
    );

    // Scenes: the same ids, each with one Telemetry line that agrees with the metadata.
    let scenes_known = doc.get("Scenes").is_some_and(Value::is_array) && !taint.hits("/Scenes");
    let ids: HashSet<&str> = expected
        .iter()
        .filter_map(|e| match &e.line.subject {
            Subject::Scene(id) => Some(id.as_str()),
            Subject::Run(_) => None,
        })
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    for e in expected.iter().filter(|e| e.line.label == "Telemetry") {
        let Subject::Scene(id) = &e.line.subject else {
            continue;
        };
        if !done.insert(id.as_str()) {
            // A duplicate id in the metadata, already reported by the rules.
            continue;
        }
        let found: Vec<&(usize, Line)> = scene_lines(lines, id, "Telemetry");
        match found.as_slice() {
            [] => out.push(Violation::at(
                e.pointer.clone(),
                format!("scene `{id}` has no `[Scene {id}] Telemetry:` line in {SUMMARY_FILE}"),
            )),
            [(n, line), rest @ ..] => {
                compare_fields(doc, e, *n, line, taint, &mut out);
                for (m, _) in rest {
                    out.push(Violation::line(
                        *m,
                        format!("second `Telemetry:` line of scene `{id}`"),
                    ));
                }
            }
        }
        let notes_found = scene_lines(lines, id, "FallbackNote");
        let notes_exp: Vec<&Expected> = expected
            .iter()
            .filter(|x| {
                x.line.label == "FallbackNote"
                    && matches!(&x.line.subject, Subject::Scene(s) if s == id)
            })
            .collect();
        compare_notes(
            &format!("{}/Telemetry/System/FallbackNotes", e.pointer),
            &format!("scene `{id}`"),
            &notes_found,
            &notes_exp,
            doc,
            taint,
            &mut out,
        );
    }
    if scenes_known {
        for (n, line) in lines {
            if let Subject::Scene(id) = &line.subject
                && !ids.contains(id.as_str())
            {
                out.push(Violation::line(
                    *n,
                    format!("scene `{id}` is not in {METADATA_FILE}"),
                ));
            }
        }
    }
    out
}

fn run_lines<'l>(lines: &'l [(usize, Line)], label: &str) -> Vec<&'l (usize, Line)> {
    lines
        .iter()
        .filter(|(_, l)| matches!(l.subject, Subject::Run(_)) && l.label == label)
        .collect()
}

fn scene_lines<'l>(lines: &'l [(usize, Line)], id: &str, label: &str) -> Vec<&'l (usize, Line)> {
    lines
        .iter()
        .filter(|(_, l)| matches!(&l.subject, Subject::Scene(s) if s == id) && l.label == label)
        .collect()
}

fn expected_run<'e>(expected: &'e [Expected], label: &str) -> Vec<&'e Expected> {
    expected
        .iter()
        .filter(|e| matches!(e.line.subject, Subject::Run(_)) && e.line.label == label)
        .collect()
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare_fields(
    doc: &Value,
    e: &Expected,
    n: usize,
    line: &Line,
    taint: &Taint<'_>,
    out: &mut Vec<Violation>,
) {
    let Payload::Fields(found) = &line.payload else {
        return;
    };
    for (key, ex) in e.sources {
        if ex.sources(doc, &e.pointer).iter().any(|p| taint.hits(p)) {
            continue;
        }
        let Some(want) = ex.value(doc, &e.pointer) else {
            continue;
        };
        let at = ex.pointer(&e.pointer);
        match found.iter().find(|f| f.key == *key) {
            None => out.push(Violation::at(
                at,
                format!("{SUMMARY_FILE} line {n} has no `{key}`"),
            )),
            Some(f) if !same(&f.value, &want) => {
                let detail = if matches!(ex, Extract::Value(_)) {
                    String::new()
                } else {
                    format!("{key}=")
                };
                out.push(Violation::at(
                    at,
                    format!(
                        "{SUMMARY_FILE} line {n} says {detail}{}, {METADATA_FILE} says {detail}{}",
                        shown(&f.value),
                        shown(&want)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for f in found {
        if !e.sources.iter().any(|(k, _)| *k == f.key) {
            out.push(Violation::line(n, format!("unknown key `{}`", f.key)));
        }
    }
}

fn compare_notes(
    pointer: &str,
    whose: &str,
    found: &[&(usize, Line)],
    expected: &[&Expected],
    doc: &Value,
    taint: &Taint<'_>,
    out: &mut Vec<Violation>,
) {
    if taint.hits(pointer) || !doc.pointer(pointer).is_some_and(Value::is_array) {
        return;
    }
    let text = |l: &Line| match &l.payload {
        Payload::Text(t) => t.clone(),
        Payload::Fields(_) => String::new(),
    };
    let got: Vec<String> = found.iter().map(|(_, l)| text(l)).collect();
    let want: Vec<String> = expected.iter().map(|e| text(&e.line)).collect();
    if got.len() != want.len() {
        out.push(Violation::at(
            pointer,
            format!(
                "{SUMMARY_FILE} has {} FallbackNote line(s) for {whose}, {METADATA_FILE} has {} note(s)",
                got.len(),
                want.len()
            ),
        ));
        return;
    }
    for (k, ((n, _), (g, w))) in found.iter().zip(got.iter().zip(&want)).enumerate() {
        if g != w {
            out.push(Violation::at(
                format!("{pointer}/{k}"),
                format!("{SUMMARY_FILE} line {n} says {g:?}, {METADATA_FILE} says {w:?}"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::verify_texts;
    use crate::telemetry::Summary;
    use crate::telemetry::example::example;

    /// The example run with `edit` applied to its metadata, the summary written from the edited
    /// metadata (so only the metadata's own problems show), as printed violations.
    fn check(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut doc = serde_json::to_value(example()).expect("serialises");
        edit(&mut doc);
        let summary = Summary::from_value(&doc).render();
        verify_texts(Some(&doc), Some(&summary))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn set(doc: &mut Value, pointer: &str, v: Value) {
        *doc.pointer_mut(pointer).expect(pointer) = v;
    }

    #[test]
    fn unions_are_reported_by_the_branch_meant() {
        let got = check(|d| {
            set(d, "/LLM/0/Health", Value::Null);
            set(d, "/Story", json!({"Title": 5, "StoryVersion": "1"}));
            set(
                d,
                "/StageAttemptSummaries/0/FailureClass",
                json!("short_frames"),
            );
            set(d, "/Scenes/2/Keyframe", json!(3));
        });
        assert_eq!(
            got,
            [
                "/Story/Title: expected string, found integer 5",
                "/LLM/0/Health: expected one of reachable, unavailable, found null",
                "/Scenes/2/Keyframe: expected string or null, found integer 3",
                "/StageAttemptSummaries/0/FailureClass: expected one of transport, timeout, \
server-error, invalid-output, truncated, token-range, slow, short-frames, node-error, \
execution-error, interrupted, found string \"short_frames\" (did you mean `short-frames`?)",
            ]
        );
        assert_eq!(
            check(|d| set(d, "/Story", json!("x"))),
            ["/Story: expected object or null, found string \"x\""]
        );
    }

    #[test]
    fn a_root_that_is_not_an_object_is_one_violation() {
        let got: Vec<String> = verify_texts(Some(&json!([])), Some(""))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "artifact-metadata.json: expected object, found array",
                "run-summary.txt: no `[Run <id>] Run:` line",
                "run-summary.txt: no `[Run <id>] QueueConfig:` line",
                "run-summary.txt: no `[Run <id>] Outcome:` line",
            ]
        );
    }

    #[test]
    fn rules_a_schema_cannot_say() {
        let got = check(|d| set(d, "/Scenes/2/SceneId", json!("scene-1")));
        assert!(
            got.contains(
                &"/Scenes/2/SceneId: duplicate scene id `scene-1` (also /Scenes/0/SceneId)"
                    .to_owned()
            ),
            "{got:#?}"
        );
        let got = check(|d| {
            set(d, "/Scenes/0/Telemetry/HistoryAttemptLimit", json!(3));
        });
        assert_eq!(
            got,
            ["/Scenes/0/Telemetry/HistoryAttempts: 45 polls exceed HistoryAttemptLimit 3"]
        );
        let got = check(|d| set(d, "/Scenes/2/Telemetry/GPU/VramDeltaMB", json!(0)));
        assert_eq!(
            got,
            [
                "/Scenes/2/Telemetry/GPU/VramDeltaMB: must be null when VramBeforeMB or \
VramAfterMB is null, found 0"
            ]
        );
        let got = check(|d| set(d, "/Scenes/0/Telemetry/GPU/VramDeltaMB", Value::Null));
        assert_eq!(
            got,
            [
                "/Scenes/0/Telemetry/GPU/VramDeltaMB: must be VramAfterMB - VramBeforeMB when \
both are known, found null"
            ]
        );
        let got = check(|d| {
            set(
                d,
                "/Scenes/1/Telemetry/ExecutionSuccessDetected",
                json!(false),
            );
        });
        assert_eq!(
            got,
            [
                "/Scenes/1/Telemetry/ExecutionSuccessDetected: must be true when \
HistoryExitReason is success"
            ]
        );
    }

    #[test]
    fn a_never_queued_scene_keeps_the_contract() {
        // The shape the executor writes for a scene that failed before `queue`: every field,
        // readings null, counts 0, flags false, reason `unknown`.
        let got = check(|d| {
            let t = d.pointer_mut("/Scenes/1/Telemetry").expect("telemetry");
            for k in [
                "QueueStart",
                "QueueEnd",
                "ExecutionSuccessAt",
                "DoneMarkerWaitSeconds",
            ] {
                t[k] = Value::Null;
            }
            t["DurationSeconds"] = json!(0);
            t["HistoryAttempts"] = json!(0);
            t["HistoryExitReason"] = json!("unknown");
            t["ExecutionSuccessDetected"] = json!(false);
            t["DoneMarkerDetected"] = json!(false);
            t["GPU"] = serde_json::to_value(crate::telemetry::GpuTelemetry::none()).expect("gpu");
            set(d, "/Scenes/1/Outcome", json!("failed"));
        });
        assert!(got.is_empty(), "{got:#?}");
    }
}
