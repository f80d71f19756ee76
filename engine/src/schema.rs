//! JSON Schemas generated from the Rust types, as checked into `schemas/`.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::spec::model::SpecFile;
use crate::story::Story;
use crate::telemetry::ArtifactMetadata;

/// Draft-07: what Taplo and most editors understand.
fn generate<T: JsonSchema>() -> Value {
    SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// The run spec's JSON Schema.
pub fn run_spec_schema() -> Value {
    generate::<SpecFile>()
}

/// The story's JSON Schema (the default `output_schema` of an `llm` stage).
pub fn story_schema() -> Value {
    generate::<Story>()
}

/// The schema of a run's `artifact-metadata.json` (the telemetry contract).
///
/// Every property of every object is required, `Option`s included: the contract says a field is
/// always present and `null` when nothing was measured, so an absent key is always a violation.
pub fn artifact_metadata_schema() -> Value {
    let mut schema = generate::<ArtifactMetadata>();
    require_all(&mut schema);
    schema
}

fn require_all(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                let keys: Vec<Value> = props.keys().cloned().map(Value::String).collect();
                m.insert("required".to_owned(), Value::Array(keys));
            }
            m.values_mut().for_each(require_all);
        }
        Value::Array(a) => a.iter_mut().for_each(require_all),
        _ => {}
    }
}

/// The schema of one line of a run's `events.jsonl`.
pub fn run_events_schema() -> Value {
    generate::<crate::exec::Event>()
}

/// Follows local `$ref`s and single-entry `allOf`s from `node` within the schema `root`, to the
/// schema that says what the value is. A dangling reference gives `null` (a schema that says
/// nothing), never a panic.
pub fn deref<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    // Bounded: a reference cycle in a user's schema must not hang the checker.
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            node = r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(&Value::Null);
        } else if let Some(Value::Array(all)) = node
            .get("allOf")
            .filter(|a| a.as_array().is_some_and(|a| a.len() == 1))
        {
            node = &all[0];
        } else {
            break;
        }
    }
    node
}

/// The names of the list properties at the top of an output schema (what `for_each` reads).
pub fn list_properties(schema: &Value) -> Vec<String> {
    let Some(props) = deref(schema, schema)
        .get("properties")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    props
        .iter()
        .filter(|(_, v)| deref(schema, v).get("type").and_then(Value::as_str) == Some("array"))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The property names of one item of the list `field` of an output schema (`{{scene.*}}`).
pub fn item_properties(schema: &Value, field: &str) -> Vec<String> {
    let list = deref(
        schema,
        deref(schema, schema)
            .pointer(&format!("/properties/{field}"))
            .unwrap_or(&Value::Null),
    );
    let item = deref(schema, list.get("items").unwrap_or(&Value::Null));
    item.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// The schemas of the stage kinds' outputs (`stages/<stage>[/<item>]/output.json`) and attempt
/// records (`attempt-<n>.json`): (file name, schema). The `llm` stage's output is the story,
/// whose schema is the stage's `output_schema`.
pub fn stage_schemas() -> Vec<(&'static str, Value)> {
    use crate::stages::output as o;
    vec![
        ("llm-attempt.schema.json", generate::<o::LlmRecord>()),
        (
            "patch-workflow-output.schema.json",
            generate::<o::PatchOutput>(),
        ),
        ("queue-output.schema.json", generate::<o::QueueOutput>()),
        ("queue-attempt.schema.json", generate::<o::QueueRecord>()),
        (
            "await-marker-output.schema.json",
            generate::<o::MarkerOutput>(),
        ),
        (
            "await-marker-attempt.schema.json",
            generate::<o::MarkerRecord>(),
        ),
        (
            "collect-frames-output.schema.json",
            generate::<o::FramesOutput>(),
        ),
        (
            "collect-frames-attempt.schema.json",
            generate::<o::FramesRecord>(),
        ),
        ("quality-output.schema.json", generate::<o::QualityOutput>()),
        (
            "quality-attempt.schema.json",
            generate::<o::QualityRecord>(),
        ),
        (
            "validate-output.schema.json",
            generate::<o::ValidateOutput>(),
        ),
    ]
}

/// Every schema file cinepipe generates: (file name, content as written to disk).
pub fn files() -> Vec<(&'static str, String)> {
    [
        ("run-spec.schema.json", run_spec_schema()),
        ("story.schema.json", story_schema()),
        ("artifact-metadata.schema.json", artifact_metadata_schema()),
        ("run-events.schema.json", run_events_schema()),
        ("suite.schema.json", crate::sweep::suite_schema()),
        ("sweep.schema.json", crate::sweep::sweep_schema()),
    ]
    .into_iter()
    .chain(stage_schemas())
    .map(|(name, v)| {
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        (name, text)
    })
    .collect()
}
