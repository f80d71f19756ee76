//! The prompt of an attempt: the templates read and rendered, the output schema and response
//! format, and the request they make for one model.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::{LlmFailure, LlmInput};
use crate::clients::openai::{ChatRequest, Message};
use crate::spec::model::{FailureClass, ResponseFormat};
use crate::spec::templates::prompt_meta;

/// The rendered prompt and everything that shapes the answer.
pub(super) struct Prepared {
    pub(super) messages: Vec<Message>,
    pub(super) schema: Value,
    pub(super) response_format: Option<Value>,
    pub(super) template_version: Option<String>,
}

fn read(base: &Path, rel: &str) -> Result<String, LlmFailure> {
    let p = base.join(rel);
    std::fs::read_to_string(&p).map_err(|e| {
        LlmFailure::new(
            FailureClass::InvalidOutput,
            format!("cannot read {}: {e}", p.display()),
        )
    })
}

fn render(text: &str, vars: &IndexMap<String, Value>, name: &str) -> Result<String, LlmFailure> {
    let mut hb = handlebars::Handlebars::new();
    // Prompts are plain text: HTML escaping would turn quotes into `&quot;`.
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb.render_template(text, vars)
        .map(|s| s.trim().to_string())
        .map_err(|e| {
            LlmFailure::new(
                FailureClass::InvalidOutput,
                format!("cannot render {name}: {e}"),
            )
        })
}

pub(super) fn prepare(input: &LlmInput<'_>) -> Result<Prepared, LlmFailure> {
    let stage = input.stage;
    let prompt_text = read(input.base_dir, &stage.prompt)?;
    let template_version = prompt_meta(&prompt_text)
        .ok()
        .flatten()
        .and_then(|m| m.version);
    let mut messages = Vec::new();
    if let Some(sys) = &stage.system_prompt {
        let text = read(input.base_dir, sys)?;
        messages.push(Message {
            role: "system".into(),
            content: render(&text, &stage.vars, sys)?,
        });
    }
    messages.push(Message {
        role: "user".into(),
        content: render(&prompt_text, &stage.vars, &stage.prompt)?,
    });
    let schema = match &stage.output_schema {
        Some(rel) => serde_json::from_str(&read(input.base_dir, rel)?).map_err(|e| {
            LlmFailure::new(
                FailureClass::InvalidOutput,
                format!("{rel} is not JSON: {e}"),
            )
        })?,
        None => {
            let mut s = crate::story::story_schema();
            // With the default story schema, `vars.scenes = N` means exactly N scenes: the
            // grammar then holds a small model to the count, and the check catches any other.
            if let Some(n) = stage.vars.get("scenes").and_then(Value::as_u64)
                && let Some(scenes) = s.pointer_mut("/properties/scenes")
            {
                scenes["minItems"] = json!(n);
                scenes["maxItems"] = json!(n);
            }
            s
        }
    };
    let response_format = match stage.response_format {
        ResponseFormat::JsonSchema => Some(json!({
            "type": "json_schema",
            "json_schema": { "name": "answer", "strict": true, "schema": schema },
        })),
        ResponseFormat::JsonObject => Some(json!({ "type": "json_object" })),
        ResponseFormat::None => None,
    };
    Ok(Prepared {
        messages,
        schema,
        response_format,
        template_version,
    })
}

/// The request an attempt sends to a provider serving `model`: the rendered prompts and the
/// stage's parameters (for benchmarks that compare the stage with a bare request).
pub fn chat_request(input: &LlmInput<'_>, model: &str) -> Result<ChatRequest, LlmFailure> {
    let prepared = prepare(input)?;
    Ok(ChatRequest {
        model: model.to_string(),
        messages: prepared.messages,
        max_tokens: input.stage.max_tokens,
        temperature: input.stage.temperature,
        seed: input.stage.seed,
        response_format: prepared.response_format,
    })
}
