//! Structural checking: the spec (as JSON) against the schema generated from the Rust types.
//!
//! Every schema error becomes a diagnostic at the TOML span it concerns, so the types stay the
//! one source of truth for which keys exist and what they hold. `oneOf` errors of stages and
//! services are resolved by their `kind`, so that a mistake inside a `queue` stage is reported
//! as that, not as "matches none of seven kinds".

use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use super::diagnostic::SpecDiagnostic;
use super::source::{SpanIndex, SpecSource};

mod report;

use report::report;

/// The compiled run-spec schema, built once per process.
pub struct Structure {
    schema: Value,
    validator: Validator,
    stage_validator: Validator,
}

pub fn structure() -> &'static Structure {
    static S: OnceLock<Structure> = OnceLock::new();
    S.get_or_init(|| {
        let schema = super::schema::run_spec_schema();
        let validator = compile(&schema);
        let defs = schema.get("definitions").cloned().unwrap_or(Value::Null);
        let stage_validator = compile(&serde_json::json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": defs,
            "$ref": "#/definitions/Stage",
        }));
        Structure {
            schema,
            validator,
            stage_validator,
        }
    })
}

fn compile(schema: &Value) -> Validator {
    // The schema is generated from our own types at build time; failing to compile it is a
    // bug in cinepipe, caught by the schema tests, never a user error.
    #[expect(
        clippy::expect_used,
        reason = "the schema is generated from our own types"
    )]
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .build(schema)
        .expect("the generated run-spec schema compiles")
}

/// Where errors are reported: the document they were found in and how its pointers map to text.
pub struct Target<'a> {
    pub source: &'a SpecSource,
    pub index: &'a SpanIndex,
    /// Prepended to error pointers before they are looked up in `index`.
    pub prefix: &'a str,
    /// Drop "missing key" errors (for partial overlays such as a profile's `kinds.queue`).
    pub partial: bool,
    /// The document is one stage table, not a whole spec.
    pub stage_root: bool,
    /// How the document's root is named in messages (empty: "the spec").
    pub name_prefix: &'a str,
}

impl Structure {
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Checks a whole spec document.
    pub fn check(&self, doc: &Value, target: &Target<'_>, out: &mut Vec<SpecDiagnostic>) {
        for err in self.validator.iter_errors(doc) {
            report(&err, doc, target, out);
        }
    }

    /// Checks one stage table (or a partial overlay of one).
    pub fn check_stage(&self, stage: &Value, target: &Target<'_>, out: &mut Vec<SpecDiagnostic>) {
        for err in self.stage_validator.iter_errors(stage) {
            report(&err, stage, target, out);
        }
    }

    /// The keys a table at `pointer` of `doc` may hold, per the schema.
    pub fn keys_at(&self, doc: &Value, pointer: &str, stage_root: bool) -> Vec<String> {
        let mut schema = if stage_root {
            self.schema
                .pointer("/definitions/Stage")
                .unwrap_or(&self.schema)
        } else {
            &self.schema
        };
        let mut inst = doc;
        schema = self.resolve(schema, inst);
        for seg in pointer.split('/').skip(1) {
            let seg = unescape(seg);
            let next_inst = match inst {
                Value::Object(m) => m.get(&seg),
                Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                _ => None,
            };
            let Some(next_inst) = next_inst else {
                return Vec::new();
            };
            let next_schema = schema
                .get("properties")
                .and_then(|p| p.get(&seg))
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
                .or_else(|| schema.get("items"));
            let Some(next_schema) = next_schema else {
                return Vec::new();
            };
            schema = self.resolve(next_schema, next_inst);
            inst = next_inst;
        }
        schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Follows `$ref`, single-entry `allOf`, and `oneOf`/`anyOf` (by `kind`, else by type).
    fn resolve<'s>(&'s self, mut schema: &'s Value, inst: &Value) -> &'s Value {
        for _ in 0..16 {
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                let Some(p) = r.strip_prefix('#') else { break };
                match self.schema.pointer(p) {
                    Some(s) => schema = s,
                    None => break,
                }
                continue;
            }
            if let Some(Value::Array(all)) = schema.get("allOf")
                && all.len() == 1
            {
                schema = &all[0];
                continue;
            }
            let branches = schema
                .get("oneOf")
                .or_else(|| schema.get("anyOf"))
                .and_then(Value::as_array);
            if let Some(branches) = branches {
                let kind = inst.get("kind").and_then(Value::as_str);
                let pick = branches.iter().find(|b| {
                    let c = b.pointer("/properties/kind/const").and_then(Value::as_str);
                    c.is_some() && c == kind
                });
                let pick = pick.or_else(|| {
                    branches
                        .iter()
                        .find(|b| b.get("type").and_then(Value::as_str) == Some(json_type(inst)))
                });
                match pick {
                    Some(b) => {
                        schema = b;
                        continue;
                    }
                    None => break,
                }
            }
            break;
        }
        schema
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a TOML author calls the type of `v`.
pub fn toml_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn type_name(t: &str) -> &'static str {
    match t {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean (`true` or `false`)",
        "array" => "an array",
        "object" => "a table",
        "null" => "absent",
        _ => "a value of another type",
    }
}

pub fn unescape(seg: &str) -> String {
    if seg.contains('~') {
        seg.replace("~1", "/").replace("~0", "~")
    } else {
        seg.to_owned()
    }
}

/// The TOML key path of a JSON pointer, as a user would write it: `stages.render.needs[0]`.
pub fn dotted(doc: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut inst = Some(doc);
    for seg in pointer.split('/').skip(1) {
        let seg = unescape(seg);
        match inst {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                inst = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&crate::toml_fmt::key(&seg));
                inst = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}
