//! The run spec's JSON Schema (`schemas/run-spec.schema.json`), generated from its types.

use serde_json::Value;

use super::model::SpecFile;

/// The run spec's JSON Schema.
pub fn run_spec_schema() -> Value {
    crate::json_schema::draft07::<SpecFile>()
}
