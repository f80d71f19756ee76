//! One schema error as a diagnostic: what is wrong, at the TOML span of the key or value it
//! concerns, with the valid keys, values or types and a hint; `oneOf` errors resolved by the
//! table's `kind`.

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::super::diagnostic::{Code, SpecDiagnostic, hint, number};
use super::super::source::SpecSource;
use super::{Target, dotted, structure, toml_type, type_name};

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s:?}`"),
        other => format!("`{other}`"),
    }
}

fn where_(doc: &Value, pointer: &str, name_prefix: &str) -> String {
    match (pointer.is_empty(), name_prefix.is_empty()) {
        (true, true) => "the spec".to_owned(),
        (true, false) => format!("`{name_prefix}`"),
        (false, true) => format!("`{}`", dotted(doc, pointer)),
        (false, false) => format!("`{name_prefix}.{}`", dotted(doc, pointer)),
    }
}

pub(super) fn report(
    err: &ValidationError<'_>,
    doc: &Value,
    t: &Target<'_>,
    out: &mut Vec<SpecDiagnostic>,
) {
    let path = err.instance_path().as_str().to_owned();
    let full = format!("{}{}", t.prefix, path);
    let spans = t.index.nearest(&full);
    let inst = err.instance();
    let here = where_(doc, &path, t.name_prefix);
    let diag = |code, msg: String| SpecDiagnostic::new(t.source, code, msg).at(full.clone());
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let valid = structure().keys_at(doc, &path, t.stage_root);
            let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
            for key in unexpected {
                let p = format!("{full}/{}", super::super::source::escape_segment(key));
                let span = t.index.get(&p).map_or(spans.entry(), |s| s.entry());
                out.push(
                    SpecDiagnostic::new(
                        t.source,
                        Code::UnknownKey,
                        format!("unknown key `{key}` in {here}"),
                    )
                    .at(p)
                    .label(span, "not a key of this table")
                    .maybe_help(hint(key, "valid keys", &valid)),
                );
            }
        }
        ValidationErrorKind::Required { property } => {
            if t.partial {
                return;
            }
            let key = property.as_str().unwrap_or_default();
            let d = if path.is_empty() {
                let what = if key == "run" {
                    "a `[run]` table"
                } else {
                    "a `[stages.*]` table"
                };
                diag(Code::MissingKey, format!("the spec has no `{key}`"))
                    .label(0..0, format!("expected {what} in this file"))
            } else {
                diag(
                    Code::MissingKey,
                    format!("{here} is missing the required key `{key}`"),
                )
                .label(spans.entry(), format!("`{key}` is required here"))
            };
            // Nothing to take out of the document: the key is absent.
            let mut d = d;
            d.pointer = None;
            out.push(d);
        }
        ValidationErrorKind::Type { kind } => {
            let expected: Vec<&str> = match kind {
                TypeKind::Single(t) => vec![type_name(&t.to_string())],
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| type_name(&t.to_string()))
                    .filter(|t| *t != "absent")
                    .collect(),
            };
            out.push(
                diag(
                    Code::WrongType,
                    format!(
                        "{here} must be {}, found {}",
                        expected.join(" or "),
                        toml_type(inst)
                    ),
                )
                .label(spans.value.clone(), format!("this is {}", toml_type(inst))),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<&str> = options
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push(enum_diag(t.source, &here, inst, &opts, spans.value.clone()).at(full.clone()));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(
                diag(
                    Code::InvalidValue,
                    format!("{here} must be {}", show(expected_value)),
                )
                .label(spans.value.clone(), format!("found {}", show(inst))),
            );
        }
        ValidationErrorKind::Minimum { limit } => {
            let msg = format!(
                "{here} must be at least {}, found {}",
                number(limit),
                number(inst)
            );
            out.push(diag(Code::InvalidValue, msg).label(spans.value.clone(), "too small"));
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            let msg = format!(
                "{here} must be greater than {}, found {}",
                number(limit),
                number(inst)
            );
            out.push(diag(Code::InvalidValue, msg).label(spans.value.clone(), "too small"));
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            let msg = format!(
                "{here} must be at most {}, found {}",
                number(limit),
                number(inst)
            );
            out.push(diag(Code::InvalidValue, msg).label(spans.value.clone(), "too large"));
        }
        ValidationErrorKind::MinItems { .. } | ValidationErrorKind::MinLength { .. } => {
            out.push(
                diag(Code::InvalidValue, format!("{here} must not be empty"))
                    .label(spans.value.clone(), "empty"),
            );
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            report_union(context, &path, doc, inst, t, out);
        }
        _ => {
            out.push(
                diag(Code::InvalidValue, format!("{here}: {err}"))
                    .label(spans.value.clone(), "invalid value"),
            );
        }
    }
}

fn enum_diag(
    source: &SpecSource,
    here: &str,
    inst: &Value,
    opts: &[&str],
    span: std::ops::Range<usize>,
) -> SpecDiagnostic {
    let list = opts
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let help = inst
        .as_str()
        .and_then(|s| super::super::diagnostic::suggest(s, opts.iter().copied()))
        .map(|s| format!("did you mean `{s}`?"));
    SpecDiagnostic::new(
        source,
        Code::InvalidValue,
        format!("{here} must be one of {list}, found {}", show(inst)),
    )
    .label(span, "not an accepted value")
    .maybe_help(help)
}

/// A value matched none of a union's branches: find the branch the author meant and report its
/// errors, or say what the union accepts.
fn report_union(
    context: &[Vec<ValidationError<'static>>],
    path: &str,
    doc: &Value,
    inst: &Value,
    t: &Target<'_>,
    out: &mut Vec<SpecDiagnostic>,
) {
    let full = format!("{}{}", t.prefix, path);
    let spans = t.index.nearest(&full);
    let here = where_(doc, path, t.name_prefix);
    let kind_path = format!("{path}/kind");
    let is_root = |e: &ValidationError<'_>| {
        e.instance_path().as_str() == path
            && matches!(
                e.kind(),
                ValidationErrorKind::Type { .. }
                    | ValidationErrorKind::Constant { .. }
                    | ValidationErrorKind::Enum { .. }
            )
    };
    let mut kinds: Vec<&str> = context
        .iter()
        .flat_map(|b| b.iter())
        .filter(|e| e.instance_path().as_str() == kind_path)
        .filter_map(|e| match e.kind() {
            ValidationErrorKind::Constant { expected_value } => expected_value.as_str(),
            _ => None,
        })
        .collect();
    let lacks_kind = inst.is_object()
        && inst.get("kind").is_none()
        && context.iter().flatten().any(|e| matches!(e.kind(), ValidationErrorKind::Required { property } if property == "kind"));
    let is_service = full.starts_with("/services/");
    if lacks_kind && kinds.is_empty() {
        kinds = if is_service {
            vec!["openai", "comfyui"]
        } else {
            super::super::model::StageKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect()
        };
    }
    if inst.is_object() && !kinds.is_empty() {
        // A union discriminated by `kind` (stages, services).
        let matching = if lacks_kind { None } else { Some(()) };
        let matching = matching.and_then(|()| {
            context
                .iter()
                .find(|b| !b.iter().any(|e| e.instance_path().as_str() == kind_path))
        });
        if let Some(branch) = matching {
            for e in branch {
                report(e, doc, t, out);
            }
            return;
        }
        let what = if path.starts_with("/services") || t.prefix.starts_with("/services") {
            "service"
        } else {
            "stage"
        };
        match inst.get("kind") {
            Some(Value::String(k)) => {
                let kspan = t
                    .index
                    .get(&format!("{full}/kind"))
                    .map_or(spans.value.clone(), |s| s.value.clone());
                let list = kinds.join(", ");
                out.push(
                    SpecDiagnostic::new(
                        t.source,
                        if is_service {
                            Code::UnknownServiceKind
                        } else {
                            Code::UnknownStageKind
                        },
                        format!("unknown {what} kind `{k}` in {here}"),
                    )
                    .label(kspan, format!("expected one of: {list}"))
                    .maybe_help(
                        super::super::diagnostic::suggest(k, kinds.iter().copied())
                            .map(|s| format!("did you mean `{s}`?")),
                    ),
                );
            }
            Some(other) => {
                let kspan = t
                    .index
                    .get(&format!("{full}/kind"))
                    .map_or(spans.value.clone(), |s| s.value.clone());
                out.push(
                    SpecDiagnostic::new(
                        t.source,
                        Code::WrongType,
                        format!(
                            "`kind` of {here} must be a string, found {}",
                            toml_type(other)
                        ),
                    )
                    .label(kspan, format!("expected one of: {}", kinds.join(", "))),
                );
            }
            None => {
                if !t.partial {
                    out.push(
                        SpecDiagnostic::new(
                            t.source,
                            Code::MissingKey,
                            format!("{here} has no `kind`"),
                        )
                        .label(
                            spans.entry(),
                            format!("add `kind = \"...\"`, one of: {}", kinds.join(", ")),
                        ),
                    );
                }
            }
        }
        return;
    }
    // A union by type (an optional value, or a string-or-table like `on_short`).
    let candidates: Vec<&Vec<ValidationError<'static>>> =
        context.iter().filter(|b| !b.iter().any(is_root)).collect();
    if candidates.len() == 1 {
        for e in candidates[0] {
            report(e, doc, t, out);
        }
        return;
    }
    let mut accepted = Vec::new();
    let mut strings = Vec::new();
    for b in context {
        for e in b.iter().filter(|e| is_root(e)) {
            match e.kind() {
                ValidationErrorKind::Constant { expected_value } => match expected_value.as_str() {
                    Some(s) => strings.push(s.to_owned()),
                    None => accepted.push(show(expected_value)),
                },
                ValidationErrorKind::Enum { options } => {
                    if let Some(a) = options.as_array() {
                        strings.extend(a.iter().filter_map(Value::as_str).map(str::to_owned));
                    }
                }
                ValidationErrorKind::Type {
                    kind: TypeKind::Single(ty),
                } => {
                    let name = type_name(&ty.to_string());
                    if name != "absent" {
                        accepted.push(name.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    if path.ends_with("/on_short") {
        out.push(
            SpecDiagnostic::new(t.source, Code::InvalidValue, format!("{here} must be `\"fail\"`, `\"accept\"` or `{{ requeue = \"STAGE\" }}`, found {}", show(inst)))
                .label(spans.value.clone(), "not an accepted value")
                .maybe_help(inst.as_str().and_then(|s| super::super::diagnostic::suggest(s, ["fail", "accept"])).map(|s| format!("did you mean `{s}`?")))
                .at(full.clone()),
        );
        return;
    }
    if !strings.is_empty() && (inst.is_string() || accepted.is_empty()) {
        let mut opts: Vec<&str> = strings.iter().map(String::as_str).collect();
        opts.dedup();
        let mut d = enum_diag(t.source, &here, inst, &opts, spans.value.clone()).at(full.clone());
        if !accepted.is_empty() {
            d.message
                .push_str(&format!(" (or {})", accepted.join(" or ")));
        }
        out.push(d);
        return;
    }
    let mut all: Vec<String> = strings.iter().map(|s| format!("`{s:?}`")).collect();
    all.extend(accepted);
    if path.ends_with("/on_short") {
        all = vec![
            "`\"fail\"`".into(),
            "`\"accept\"`".into(),
            "`{ requeue = \"STAGE\" }`".into(),
        ];
    }
    out.push(
        SpecDiagnostic::new(
            t.source,
            Code::WrongType,
            format!(
                "{here} must be {}, found {}",
                all.join(" or "),
                toml_type(inst)
            ),
        )
        .label(spans.value.clone(), format!("this is {}", toml_type(inst))),
    );
}
