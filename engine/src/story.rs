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
