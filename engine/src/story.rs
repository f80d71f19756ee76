//! The story an `llm` stage asks for: the default `output_schema` (`schemas/story.schema.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The story's JSON Schema (the default `output_schema` of an `llm` stage).
pub fn story_schema() -> Value {
    crate::json_schema::draft07::<Story>()
}

/// A story split into scenes, as the LLM must answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "cinepipe story")]
pub struct Story {
    /// The story's title.
    #[schemars(length(min = 1))]
    pub title: String,
    /// Version of the story (changes when it is regenerated or edited).
    #[schemars(length(min = 1))]
    pub story_version: String,
    /// The scenes, in order; each becomes one rendered clip.
    #[schemars(length(min = 1))]
    pub scenes: Vec<Scene>,
}

/// One scene of a story.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Unique id of the scene within the story, e.g. `scene-1`.
    #[schemars(length(min = 1))]
    pub id: String,
    /// The visual prompt for the scene's clip.
    #[schemars(length(min = 1))]
    pub prompt: String,
    /// The scene's mood, e.g. `tense`.
    pub mood: String,
    /// Path or description of the scene's anchor image, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyframe: Option<String>,
}

/// The id the run records for each scene of a fanned-out list: the item's `id` when it is a
/// string, else `scene-<n>` (from 1); an id an earlier item already has becomes `<id>@<n>`
/// (the first free `n` from the item's position), with a note saying so. A model may repeat
/// ids (or leave them out), and everything the run says about a scene (telemetry, quality
/// checks) names it by this one id.
pub fn scene_ids(items: &[serde_json::Value]) -> Vec<(String, Option<String>)> {
    let mut ids: Vec<(String, Option<String>)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = item
            .get("id")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("scene-{}", i + 1), str::to_owned);
        let taken = |s: &str| ids.iter().any(|(t, _)| t == s);
        if !taken(&id) {
            ids.push((id, None));
            continue;
        }
        let mut n = i + 1;
        while taken(&format!("{id}@{n}")) {
            n += 1;
        }
        let new = format!("{id}@{n}");
        let note = format!("scene id `{id}` repeats in the story; recorded as `{new}`");
        ids.push((new, Some(note)));
    }
    ids
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn repeated_or_missing_ids_get_ids_of_their_own() {
        let items = [
            json!({"id": "a"}),
            json!({"id": "a"}),
            json!({"prompt": "no id"}),
            json!({"id": "a@2"}),
            json!({"id": "a"}),
        ];
        let ids: Vec<String> = super::scene_ids(&items)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["a", "a@2", "scene-3", "a@2@4", "a@5"]);
        assert!(
            super::scene_ids(&items)[1]
                .1
                .as_deref()
                .is_some_and(|n| n.contains("recorded as `a@2`"))
        );
    }
}
