//! JSON Schemas generated from the Rust types, as checked into `schemas/`.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::spec::model::SpecFile;
use crate::story::Story;

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

/// Every schema file cinepipe generates: (file name, content as written to disk).
pub fn files() -> Vec<(&'static str, String)> {
    [
        ("run-spec.schema.json", run_spec_schema()),
        ("story.schema.json", story_schema()),
    ]
    .into_iter()
    .map(|(name, v)| {
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        (name, text)
    })
    .collect()
}
