//! Reading what an OpenAI-compatible server sends: error bodies, the model list, a completion
//! (plain or streamed as SSE), and the JSON object inside an answer's text.

use serde_json::Value;

use super::ChatAnswer;

/// The server's own words from an error body: `error.message` when it is OpenAI-shaped JSON,
/// else the text; one line, trimmed to a readable length.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let msg = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| text.into_owned());
    crate::clients::quote_body(msg.as_bytes())
}

/// The model ids of a `/models` answer (`data[].id`).
pub fn parse_models(v: &Value) -> Option<Vec<String>> {
    let data = v.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
            .collect(),
    )
}

fn usage(v: &Value, answer: &mut ChatAnswer) {
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        answer.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
        answer.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
    }
    if let Some(t) = v.get("timings").filter(|t| t.is_object()) {
        let p = t.get("prompt_ms").and_then(Value::as_f64).unwrap_or(0.0);
        let g = t.get("predicted_ms").and_then(Value::as_f64).unwrap_or(0.0);
        answer.server_ms = Some(p + g);
    }
}

/// Why a chat completion's body is not an answer.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer has no `choices[0]`")]
    NoChoice,
    #[error("`choices[0].message.content` is not a string")]
    ContentNotText,
    #[error("the stream is not UTF-8: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error("event {number} is not JSON ({error}): {data:.80}")]
    EventNotJson {
        number: usize,
        error: serde_json::Error,
        data: String,
    },
    #[error("the server sent an error mid-stream: {0}")]
    ServerError(Value),
    #[error("the stream ended after {events} events without a finish_reason or [DONE]")]
    Unfinished { events: usize },
}

/// A non-streamed chat completion.
pub fn parse_completion(v: &Value) -> Result<ChatAnswer, AnswerError> {
    let choice = v.pointer("/choices/0").ok_or(AnswerError::NoChoice)?;
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or(AnswerError::ContentNotText)?;
    let mut answer = ChatAnswer {
        content: content.to_string(),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_owned),
        model: v.get("model").and_then(Value::as_str).map(str::to_owned),
        prompt_tokens: None,
        completion_tokens: None,
        server_ms: None,
    };
    usage(v, &mut answer);
    Ok(answer)
}

/// A streamed chat completion: the `data:` events of an SSE body, up to `[DONE]`. Content is
/// the concatenation of the `delta.content` pieces; the usage chunk (sent after the
/// `finish_reason` chunk, with empty `choices`) gives the token counts.
pub fn parse_sse(body: &[u8]) -> Result<ChatAnswer, AnswerError> {
    let text = std::str::from_utf8(body).map_err(AnswerError::NotUtf8)?;
    let mut answer = ChatAnswer {
        content: String::new(),
        finish_reason: None,
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        server_ms: None,
    };
    let mut done = false;
    let mut events = 0usize;
    // Events are separated by blank lines; an event's data may span several `data:` lines.
    for event in text.split("\n\n").flat_map(|e| e.split("\r\n\r\n")) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            continue;
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(&data).map_err(|error| AnswerError::EventNotJson {
            number: events + 1,
            error,
            data: data.clone(),
        })?;
        events += 1;
        if let Some(err) = v.get("error") {
            return Err(AnswerError::ServerError(err.clone()));
        }
        if answer.model.is_none() {
            answer.model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        }
        if let Some(choice) = v.pointer("/choices/0") {
            if let Some(piece) = choice.pointer("/delta/content").and_then(Value::as_str) {
                answer.content.push_str(piece);
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                answer.finish_reason = Some(r.to_string());
            }
        }
        usage(&v, &mut answer);
    }
    if !done && answer.finish_reason.is_none() {
        return Err(AnswerError::Unfinished { events });
    }
    Ok(answer)
}

/// The JSON object in an answer: the whole text when it is JSON, else the first fenced
/// block (```json … ```) that is, else the first balanced `{…}` that parses. Small models
/// wrap JSON in prose ("Here is your story: {…} I hope you like it").
pub fn extract_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t)
        && v.is_object()
    {
        return Some(v);
    }
    let mut rest = t;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let Some(end) = after[body_start..].find("```") else {
            break;
        };
        let block = after[body_start..body_start + end].trim();
        if let Ok(v) = serde_json::from_str::<Value>(block)
            && v.is_object()
        {
            return Some(v);
        }
        rest = &after[body_start + end + 3..];
    }
    let bytes = t.as_bytes();
    let mut from = 0;
    while let Some(off) = t[from..].find('{') {
        let start = from + off;
        if let Some(end) = balanced_end(&bytes[start..])
            && let Ok(v) = serde_json::from_str::<Value>(&t[start..start + end])
        {
            return Some(v);
        }
        from = start + 1;
    }
    None
}

/// Length of the balanced `{…}` at the start of `b`, skipping braces inside strings.
fn balanced_end(b: &[u8]) -> Option<usize> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// One generated token and the server's most likely alternatives for its place
/// (`choices[0].logprobs.content[i]`), each with its natural-log probability.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenChoices {
    pub token: String,
    pub top: Vec<(String, f64)>,
}

/// The tokens of `choices[0].logprobs.content` with their `top_logprobs`; `None` when the
/// answer has none (the server ignored `logprobs`).
pub fn parse_logprobs(v: &Value) -> Option<Vec<TokenChoices>> {
    let content = v.pointer("/choices/0/logprobs/content")?.as_array()?;
    let tokens: Vec<TokenChoices> = content
        .iter()
        .filter_map(|t| {
            let token = t.get("token")?.as_str()?.to_owned();
            let top = t
                .get("top_logprobs")
                .and_then(Value::as_array)
                .map(|alts| {
                    alts.iter()
                        .filter_map(|a| {
                            Some((
                                a.get("token")?.as_str()?.to_owned(),
                                a.get("logprob")?.as_f64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(TokenChoices { token, top })
        })
        .collect();
    (!tokens.is_empty()).then_some(tokens)
}
