//! `docs/spec.md`, generated from the run-spec schema (itself generated from the Rust types),
//! so that the reference cannot drift from the code. A test compares the checked-in file.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The spec reference in Markdown.
pub fn spec_reference() -> String {
    let schema = crate::spec::schema::run_spec_schema();
    let r = Ref { root: &schema };
    let mut s = String::new();
    s.push_str("# Run spec reference\n\n");
    s.push_str(
        "<!-- Generated from the Rust types (engine/src/spec/model/) by `cinepipe docs`. \
Do not edit by hand: `tests/schemas.rs` fails when this file and the types disagree. -->\n\n",
    );
    s.push_str(
        "A run spec is a TOML file. Start it with `#:schema ../schemas/run-spec.schema.json` \
(the path relative to the spec) and editors that use Taplo complete and check every key below.\n\n\
Relative paths (prompts, workflows, schemas, `output_dir`, `launch.cwd`) are resolved against \
`run.base_dir`, which is itself relative to the spec file's folder.\n\n\
Every table denies unknown keys: a misspelt key is an error that names the key and suggests the \
right one, never a silently ignored setting.\n\n",
    );

    section(&mut s, &r, "`[run]`", r.def("RunSection"), Some("[run]"));
    for (kind, def) in r.branches("Service") {
        section(
            &mut s,
            &r,
            &format!("`[services.NAME]` with `kind = \"{kind}\"`"),
            def,
            Some(&format!("[services.NAME]\nkind = \"{kind}\"")),
        );
    }
    section(
        &mut s,
        &r,
        "`launch` (in a service)",
        r.def("Launch"),
        Some("[services.NAME.launch]"),
    );

    s.push_str("## `[stages.NAME]`\n\nEvery stage has `kind`, one of ");
    let kinds: Vec<String> = r
        .branches("Stage")
        .iter()
        .map(|(k, _)| format!("`{k}`"))
        .collect();
    s.push_str(&kinds.join(", "));
    s.push_str(
        ", and these keys whatever its kind: `needs`, `for_each`, `description` and `retry` \
(listed with each kind below).\n\n",
    );
    for (kind, def) in r.branches("Stage") {
        let desc = def
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let title = format!("`kind = \"{kind}\"`");
        let _ = writeln!(s, "### {title}\n\n{}\n", one_para(desc));
        table(
            &mut s,
            &r,
            def,
            &format!("[stages.NAME]\nkind = \"{kind}\""),
        );
    }
    section(
        &mut s,
        &r,
        "`retry` (in a stage)",
        r.def("RetryPolicy"),
        Some("[stages.NAME.retry]"),
    );
    section(&mut s, &r, "`on_short` values", r.def("OnShort"), None);
    section(
        &mut s,
        &r,
        "`checks` entries (in a `quality` stage)",
        r.def("QualityCheck"),
        None,
    );
    section(
        &mut s,
        &r,
        "A `checks` entry as a table",
        r.def("CheckTable"),
        Some("[[stages.NAME.checks]]"),
    );
    section(
        &mut s,
        &r,
        "`thresholds` (in a `quality` stage)",
        r.def("QualityThresholds"),
        Some("[stages.NAME.thresholds]"),
    );
    section(
        &mut s,
        &r,
        "Failure classes (`retry.on`)",
        r.def("FailureClass"),
        None,
    );
    section(
        &mut s,
        &r,
        "`[profiles.NAME]`",
        r.def("Profile"),
        Some("[profiles.NAME]"),
    );
    s.push_str(
        "Built-in profiles: `standard` changes nothing; `fast` (the seeds' FastIteration) sets \
`kinds.queue.poll_interval_s = 1` and `kinds.queue.post_execution_timeout_s = 10`. A spec's own \
`[profiles.fast]` replaces the built-in one.\n",
    );
    s
}

struct Ref<'a> {
    root: &'a Value,
}

impl<'a> Ref<'a> {
    fn def(&self, name: &str) -> &'a Value {
        self.root
            .pointer(&format!("/definitions/{name}"))
            .unwrap_or(&Value::Null)
    }

    fn deref(&self, v: &'a Value) -> &'a Value {
        crate::json_schema::deref(self.root, v)
    }

    /// The branches of a `kind`-tagged union, as (kind, schema).
    fn branches(&self, name: &str) -> Vec<(String, &'a Value)> {
        self.def(name)
            .get("oneOf")
            .and_then(Value::as_array)
            .map(|bs| {
                bs.iter()
                    .filter_map(|b| {
                        b.pointer("/properties/kind/const")
                            .and_then(Value::as_str)
                            .map(|k| (k.to_owned(), b))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn ref_name(v: &Value) -> Option<&str> {
        let r = v
            .get("$ref")
            .or_else(|| v.pointer("/allOf/0/$ref"))
            .and_then(Value::as_str)?;
        r.rsplit('/').next()
    }

    /// A type as a TOML author reads it.
    fn type_of(&self, v: &Value) -> String {
        if let Some(name) = Self::ref_name(v) {
            let d = self.deref(v);
            if let Some(consts) = consts(d) {
                return consts
                    .iter()
                    .map(|c| format!("`\"{c}\"`"))
                    .collect::<Vec<_>>()
                    .join(" \\| ");
            }
            if d.get("oneOf").is_some() {
                return format!("see [{}](#{})", name, anchor_for(name));
            }
            return "table".to_owned();
        }
        if let Some(any) = v.get("anyOf").and_then(Value::as_array) {
            let parts: Vec<String> = any
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .map(|b| self.type_of(b))
                .collect();
            return parts.join(" or ");
        }
        let t: Vec<&str> = match v.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => vec![],
        };
        let names: Vec<String> = t
            .iter()
            .map(|t| match *t {
                "array" => format!(
                    "array of {}",
                    plural(&self.type_of(v.get("items").unwrap_or(&Value::Null)))
                ),
                "object" => match v.get("additionalProperties") {
                    Some(Value::Bool(true)) | None => "table".to_owned(),
                    Some(inner) if inner.is_object() => {
                        format!("table of {}", plural(&self.type_of(inner)))
                    }
                    _ => "table".to_owned(),
                },
                "number" | "integer" => format!("{t}{}", range_of(v)),
                "string" => "string".to_owned(),
                "boolean" => "boolean".to_owned(),
                other => other.to_owned(),
            })
            .collect();
        if names.is_empty() {
            "any value".to_owned()
        } else {
            names.join(" or ")
        }
    }
}

/// A number's range as the schema states it (` (> 0, ≤ 604800)`); an unsigned integer type's
/// own bound counts as its maximum, so every number in a spec shows a range.
fn range_of(v: &Value) -> String {
    let num = |k: &str| v.get(k).filter(|n| n.is_number()).map(Value::to_string);
    let low = num("exclusiveMinimum")
        .map(|n| format!("> {n}"))
        .or_else(|| num("minimum").map(|n| format!("≥ {n}")));
    let high = num("exclusiveMaximum")
        .map(|n| format!("< {n}"))
        .or_else(|| num("maximum").map(|n| format!("≤ {n}")))
        .or_else(|| match v.get("format").and_then(Value::as_str) {
            Some("uint32") => Some(format!("≤ {}", u32::MAX)),
            Some("uint64" | "uint") => Some(format!("≤ {}", u64::MAX)),
            Some("int64") => Some(format!("≤ {}", i64::MAX)),
            _ => None,
        });
    match (low, high) {
        (None, None) => String::new(),
        (Some(l), None) => format!(" ({l})"),
        (None, Some(h)) => format!(" ({h})"),
        (Some(l), Some(h)) => format!(" ({l}, {h})"),
    }
}

fn plural(t: &str) -> String {
    match t {
        "string" => "strings".to_owned(),
        "integer" => "integers".to_owned(),
        "number" => "numbers".to_owned(),
        "table" => "tables".to_owned(),
        "any value" => "values".to_owned(),
        other => other.to_owned(),
    }
}

fn anchor_for(name: &str) -> &'static str {
    match name {
        "OnShort" => "on_short-values",
        "CheckEntry" => "checks-entries-in-a-quality-stage",
        _ => "",
    }
}

/// The string constants of an enum-like schema, if it is one.
fn consts(v: &Value) -> Option<Vec<String>> {
    if let Some(Value::Array(e)) = v.get("enum") {
        return Some(
            e.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        );
    }
    let bs = v.get("oneOf")?.as_array()?;
    bs.iter()
        .map(|b| b.get("const").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn one_para(s: &str) -> String {
    s.split("\n\n")
        .map(|p| p.split('\n').collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn cell(s: &str) -> String {
    one_para(s).replace('\n', " ").replace('|', "\\|")
}

fn section(s: &mut String, r: &Ref<'_>, title: &str, def: &Value, header: Option<&str>) {
    let desc = def
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let _ = writeln!(s, "## {title}\n\n{}\n", one_para(desc));
    if def.get("properties").is_some() {
        table(s, r, def, header.unwrap_or(""));
    } else if let Some(bs) = def.get("oneOf").and_then(Value::as_array) {
        s.push_str("| value | meaning |\n| --- | --- |\n");
        for b in bs {
            let d = b
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let v = match b.get("const") {
                Some(c) => format!("`{}`", crate::toml_fmt::value(c)),
                None => match b.get("properties").and_then(Value::as_object) {
                    Some(p) => format!(
                        "`{{ {} = \"...\" }}`",
                        p.keys().next().map_or("", String::as_str)
                    ),
                    None => "table".to_owned(),
                },
            };
            let _ = writeln!(s, "| {v} | {} |", cell(d));
        }
        s.push('\n');
    }
}

fn table(s: &mut String, r: &Ref<'_>, def: &Value, header: &str) {
    let empty = Map::new();
    let props = def
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = def
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    s.push_str("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    let mut example = Vec::new();
    for (key, p) in props {
        if key == "kind" {
            continue;
        }
        let d = p
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is_required = required.contains(&key.as_str());
        let default = match p.get("default") {
            _ if is_required => "required".to_owned(),
            Some(Value::Object(m)) if m.len() > 3 => "see below".to_owned(),
            Some(v) => format!("`{}`", crate::toml_fmt::value(v)),
            None => "none".to_owned(),
        };
        let _ = writeln!(
            s,
            "| `{key}` | {} | {default} | {} |",
            r.type_of(p),
            cell(d)
        );
        let ex = p
            .get("examples")
            .and_then(|e| e.get(0))
            .cloned()
            .or_else(|| {
                if is_required {
                    None
                } else {
                    p.get("default").cloned()
                }
            })
            .filter(|v| !matches!(v, Value::Object(m) if m.len() > 3));
        let ex = ex.or_else(|| match r.type_of(p).as_str() {
            "string" => Some(Value::String("...".to_owned())),
            _ => None,
        });
        if let Some(v) = ex
            && !(v.is_object() && v.as_object().is_some_and(Map::is_empty))
            && !(v.is_array() && v.as_array().is_some_and(Vec::is_empty))
        {
            example.push(format!("{key} = {}", crate::toml_fmt::value(&v)));
        }
    }
    if !header.is_empty() && !example.is_empty() {
        let _ = writeln!(
            s,
            "\nExample:\n\n```toml\n{header}\n{}\n```",
            example.join("\n")
        );
    }
    s.push('\n');
}
