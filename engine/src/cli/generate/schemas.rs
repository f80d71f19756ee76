//! The JSON Schemas `cinepipe schema` writes into `schemas/`: each generated in the layer that
//! owns its types, listed here.

use crate::artifact_metadata::artifact_metadata_schema;
use crate::rundir::event::run_events_schema;
use crate::spec::schema::run_spec_schema;
use crate::stages::output::stage_schemas;
use crate::story::story_schema;

/// Every schema file cinepipe generates: (file name, content as written to disk).
pub fn files() -> Vec<(&'static str, String)> {
    [
        ("run-spec.schema.json", run_spec_schema()),
        ("story.schema.json", story_schema()),
        ("artifact-metadata.schema.json", artifact_metadata_schema()),
        ("run-events.schema.json", run_events_schema()),
        ("suite.schema.json", crate::sweep::suite_schema()),
        ("sweep.schema.json", crate::sweep::sweep_schema()),
        ("doctor.schema.json", crate::doctor::doctor_schema()),
        ("bench.schema.json", crate::bench::bench_file_schema()),
        ("bench-results.schema.json", crate::bench::results_schema()),
        ("runs.schema.json", crate::run_listing::runs_schema()),
        ("show.schema.json", crate::run_listing::show_schema()),
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
