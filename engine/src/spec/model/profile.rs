//! `[profiles.*]`: named overlays of spec values, and the built-in `standard` and `fast`.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A named overlay: `cinepipe run spec.toml --profile NAME` applies its values over the spec's.
/// A profile tunes values; it cannot add stages or services, nor change a stage's `kind`,
/// `needs` or `for_each`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Another profile whose values apply first; this one's win where both set a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherits: Option<String>,
    /// One line saying what the profile is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Values laid over `[run]`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub run: Map<String, Value>,
    /// Values laid over `[services.NAME]`, by service name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub services: IndexMap<String, Map<String, Value>>,
    /// Values laid over every stage of a kind, e.g. `kinds.queue.poll_interval_s = 1`.
    /// `stages.NAME` wins over `kinds.KIND` where both set a key.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub kinds: IndexMap<String, Map<String, Value>>,
    /// Values laid over `[stages.NAME]`, by stage name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub stages: IndexMap<String, Map<String, Value>>,
}

/// The profiles every spec has. `standard` changes nothing (the seeds' defaults); `fast` is the
/// seeds' FastIteration mode: poll every 1 s and wait 10 s after execution, for every queue stage.
/// A spec's own `[profiles.fast]` replaces the built-in one.
pub fn builtin_profiles() -> Vec<(&'static str, Value)> {
    vec![
        (
            "standard",
            json!({ "description": "the defaults and the spec's own values, unchanged" }),
        ),
        (
            "fast",
            json!({
                "description": "FastIteration: poll every 1 s, 10 s post-execution timeout",
                "kinds": { "queue": { "poll_interval_s": 1, "post_execution_timeout_s": 10 } }
            }),
        ),
    ]
}
