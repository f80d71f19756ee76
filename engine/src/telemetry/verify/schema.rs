//! The metadata against the schema generated from the telemetry types, each error reported
//! once with a pointer a person can go to.

use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use super::Violation;

struct Compiled {
    schema: Value,
    validator: Validator,
}

fn compiled() -> &'static Compiled {
    static C: OnceLock<Compiled> = OnceLock::new();
    C.get_or_init(|| {
        let schema = crate::artifact_metadata::artifact_metadata_schema();
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

pub(super) fn check_schema(doc: &Value) -> Vec<Violation> {
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
        let next = crate::json_schema::deref(root, s);
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
