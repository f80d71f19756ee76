//! An OpenAI-compatible chat client (LM Studio, Ollama's `/v1`, llama.cpp's server, vLLM):
//! `GET /models` as the health check, `POST /chat/completions` with and without streaming.
//!
//! Every request is bounded in time (the service's `timeout_s`) and in size
//! (`max_response_bytes`, counted while reading, so a runaway server cannot fill memory). The
//! API key is read from the environment variable the spec names and lives only in the request
//! header: it is never part of an error, a log line or anything written to disk. A server may
//! quote it back (a proxy that echoes the `Authorization` header in an error body): every error
//! and answer leaves this client with the key's value replaced by [`REDACTED`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::spec::model::{FailureClass, OpenAiService};

mod redact;
pub use redact::REDACTED;

/// A request could not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: f64 },
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the answer is larger than {limit} bytes (max_response_bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: the answer is not what an OpenAI-compatible server sends: {message}")]
    Protocol { url: String, message: String },
    #[error("the API key variable `{var}` (api_key_env) is not set")]
    MissingKey { var: String },
    #[error("the server at {url} does not have model `{model}`; it has: {}", list(.available))]
    MissingModel {
        url: String,
        model: String,
        available: Vec<String>,
    },
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "no models".into()
    } else {
        v.iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl LlmError {
    /// How the retry policy sees this error.
    pub fn class(&self) -> FailureClass {
        match self {
            LlmError::Transport { .. } => FailureClass::Transport,
            LlmError::Timeout { .. } => FailureClass::Timeout,
            LlmError::Http { status, .. } if *status >= 500 => FailureClass::ServerError,
            LlmError::Http { .. } | LlmError::MissingKey { .. } | LlmError::MissingModel { .. } => {
                FailureClass::InvalidOutput
            }
            LlmError::TooLarge { .. } | LlmError::Protocol { .. } => FailureClass::InvalidOutput,
        }
    }

    /// Whether the next provider in a `fallback` chain should be tried: the server could not
    /// be reached, failed (5xx), or cannot serve this model.
    pub fn falls_back(&self) -> bool {
        match self {
            LlmError::Transport { .. } | LlmError::Timeout { .. } => true,
            LlmError::Http { status, .. } => *status >= 500 || *status == 401 || *status == 404,
            LlmError::MissingModel { .. } | LlmError::MissingKey { .. } => true,
            LlmError::TooLarge { .. } | LlmError::Protocol { .. } => false,
        }
    }
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What is asked.
#[derive(Debug, Clone, Serialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    pub temperature: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

/// What came back, the same whether streamed or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatAnswer {
    pub content: String,
    pub finish_reason: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The server's own time for the request (llama.cpp's `timings`), in milliseconds.
    pub server_ms: Option<f64>,
}

/// A client for one `openai` service.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    timeout: Duration,
    max_response_bytes: u64,
}

impl OpenAiClient {
    /// A client for `service`; reads its API key variable, if it names one.
    pub fn new(service: &OpenAiService) -> Result<OpenAiClient, LlmError> {
        let api_key = match &service.api_key_env {
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| LlmError::MissingKey { var: var.clone() })?,
            ),
            None => None,
        };
        let http = super::http().map_err(|e| LlmError::Transport {
            url: service.base_url.clone(),
            message: e.to_string(),
        })?;
        Ok(OpenAiClient {
            http,
            base_url: service.base_url.trim_end_matches('/').to_string(),
            api_key,
            timeout: Duration::try_from_secs_f64(service.timeout_s)
                .unwrap_or(Duration::from_secs(180)),
            max_response_bytes: service.max_response_bytes,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url).timeout(self.timeout);
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// An error of this client with the key taken out of what the server said.
    fn redact(&self, e: LlmError) -> LlmError {
        match &self.api_key {
            Some(k) => e.redacted(k),
            None => e,
        }
    }

    /// A server's text with the key taken out: an answer is quoted into files too.
    fn redact_text(&self, text: String) -> String {
        match &self.api_key {
            Some(k) if !k.is_empty() && text.contains(k.as_str()) => {
                text.replace(k.as_str(), REDACTED)
            }
            _ => text,
        }
    }

    /// `GET /models`: the ids of the models the server offers.
    pub async fn models(&self) -> Result<Vec<String>, LlmError> {
        match self.models_as_sent().await {
            Ok(models) => Ok(models.into_iter().map(|m| self.redact_text(m)).collect()),
            Err(e) => Err(self.redact(e)),
        }
    }

    async fn models_as_sent(&self) -> Result<Vec<String>, LlmError> {
        let url = self.url("models");
        let resp = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| transport(&url, self.timeout, &e))?;
        let body = self.read_body(&url, resp).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| LlmError::Protocol {
            url: url.clone(),
            message: format!("/models is not JSON: {e}"),
        })?;
        parse_models(&v).ok_or_else(|| LlmError::Protocol {
            url,
            message: "/models has no `data` list".into(),
        })
    }

    /// The health check: the server answers `/models` and lists `model`.
    pub async fn check_model(&self, model: &str) -> Result<(), LlmError> {
        let models = self.models().await?;
        if models.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(LlmError::MissingModel {
                url: self.base_url.clone(),
                model: model.to_string(),
                available: models,
            })
        }
    }

    /// `POST /chat/completions`, streamed (SSE) or not.
    pub async fn chat(&self, req: &ChatRequest, stream: bool) -> Result<ChatAnswer, LlmError> {
        match self.chat_as_sent(req, stream).await {
            Ok(mut answer) => {
                answer.content = self.redact_text(answer.content);
                answer.model = answer.model.map(|m| self.redact_text(m));
                answer.finish_reason = answer.finish_reason.map(|f| self.redact_text(f));
                Ok(answer)
            }
            Err(e) => Err(self.redact(e)),
        }
    }

    async fn chat_as_sent(&self, req: &ChatRequest, stream: bool) -> Result<ChatAnswer, LlmError> {
        let url = self.url("chat/completions");
        let mut body = serde_json::to_value(req).map_err(|e| LlmError::Protocol {
            url: url.clone(),
            message: e.to_string(),
        })?;
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({ "include_usage": true });
        }
        let started = Instant::now();
        let resp = self
            .request(reqwest::Method::POST, &url)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport(&url, self.timeout, &e))?;
        // One bound for the whole answer, however it trickles in.
        let left = self.timeout.saturating_sub(started.elapsed());
        let read = self.read_body(&url, resp);
        let bytes = tokio::time::timeout(left, read)
            .await
            .map_err(|_| LlmError::Timeout {
                url: url.clone(),
                secs: self.timeout.as_secs_f64(),
            })??;
        if stream {
            parse_sse(&bytes).map_err(|e| LlmError::Protocol {
                url,
                message: e.to_string(),
            })
        } else {
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| LlmError::Protocol {
                url: url.clone(),
                message: format!("not JSON: {e}"),
            })?;
            parse_completion(&v).map_err(|e| LlmError::Protocol {
                url,
                message: e.to_string(),
            })
        }
    }

    /// Reads a body up to the size limit; a non-2xx status becomes `Http` with the server's
    /// own message, trimmed.
    async fn read_body(&self, url: &str, mut resp: reqwest::Response) -> Result<Vec<u8>, LlmError> {
        let status = resp.status();
        if let Some(len) = resp.content_length()
            && len > self.max_response_bytes
        {
            return Err(LlmError::TooLarge {
                url: url.to_string(),
                limit: self.max_response_bytes,
            });
        }
        let mut buf = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() as u64 + chunk.len() as u64 > self.max_response_bytes {
                        return Err(LlmError::TooLarge {
                            url: url.to_string(),
                            limit: self.max_response_bytes,
                        });
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport(url, self.timeout, &e)),
            }
        }
        // The key out first, before anything parses, cuts or quotes the body: a quote cut
        // mid-key would keep the part before the cut.
        let buf = match &self.api_key {
            Some(k) => redact::redact_bytes(buf, k.as_bytes()),
            None => buf,
        };
        if !status.is_success() {
            return Err(LlmError::Http {
                url: url.to_string(),
                status: status.as_u16(),
                body: error_message(&buf),
            });
        }
        Ok(buf)
    }
}

fn transport(url: &str, timeout: Duration, e: &reqwest::Error) -> LlmError {
    if e.is_timeout() {
        return LlmError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs_f64(),
        };
    }
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let message = if e.is_connect() {
        format!("cannot connect: {cur}")
    } else {
        cur.to_string()
    };
    LlmError::Transport {
        url: url.to_string(),
        message,
    }
}

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
    super::quote_body(msg.as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/llm")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn body(name: &str) -> Value {
        let v: Value = serde_json::from_str(&fixture(name)).expect("fixture JSON");
        v["body"].clone()
    }

    #[test]
    fn recorded_stream_and_completion_parse() {
        let s = parse_sse(fixture("smollm2-chat-stream.sse.txt").as_bytes()).expect("parses");
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));
        assert_eq!(s.completion_tokens, Some(18));
        assert_eq!(s.prompt_tokens, Some(34));
        assert!(s.content.ends_with(" world."), "{}", s.content);
        assert!(s.server_ms.is_some_and(|ms| (ms - 160.808).abs() < 0.01));

        let c = parse_completion(&body("smollm2-chat-json-schema.response.json")).expect("parses");
        assert_eq!(c.finish_reason.as_deref(), Some("stop"));
        assert_eq!(c.completion_tokens, Some(134));
        let story = extract_json(&c.content).expect("JSON");
        assert_eq!(story["scenes"].as_array().map(Vec::len), Some(3));

        let streamed =
            parse_sse(fixture("smollm2-chat-json-schema-stream.sse.txt").as_bytes()).expect("ok");
        let v = extract_json(&streamed.content).expect("streamed JSON");
        assert!(v["scenes"].is_array());

        let l = parse_completion(&body("smollm2-chat-length.response.json")).expect("parses");
        assert_eq!(l.finish_reason.as_deref(), Some("length"));
    }

    #[test]
    fn models_and_errors_from_recorded_bodies() {
        let m = parse_models(&body("smollm2-models.response.json")).expect("data");
        assert_eq!(m, vec!["smollm2-135m".to_string()]);
        let e =
            serde_json::to_vec(&body("smollm2-error-no-messages.response.json")).expect("bytes");
        assert_eq!(error_message(&e), "'messages' is required");
        let e = serde_json::to_vec(&body("error-bad-api-key.response.json")).expect("bytes");
        assert_eq!(error_message(&e), "Invalid API Key");
        assert_eq!(
            error_message(b"Internal Server Error\n\n"),
            "Internal Server Error"
        );
        assert_eq!(error_message(b""), "(empty body)");
        let long = "x".repeat(1000);
        assert_eq!(error_message(long.as_bytes()).chars().count(), 401);
    }

    #[test]
    fn broken_streams_are_errors_not_panics() {
        assert!(parse_sse(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n").is_err());
        assert!(parse_sse(b"data: not json\n\n").is_err());
        assert!(parse_sse(b"data: {\"error\":{\"message\":\"boom\"}}\n\n").is_err());
        assert!(parse_sse(&[0xff, 0xfe]).is_err());
        let ok = parse_sse(b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\r\n\r\n")
            .expect("CRLF events");
        assert_eq!(ok.content, "a");
    }

    #[test]
    fn json_is_found_in_chatty_answers() {
        let v =
            extract_json("Sure! Here it is:\n```json\n{\"a\": 1}\n```\nEnjoy.").expect("fenced");
        assert_eq!(v["a"], 1);
        let v = extract_json("The story: {\"t\": \"a } in a string\", \"n\": {\"x\": 2}} done")
            .expect("inline");
        assert_eq!(v["n"]["x"], 2);
        assert!(extract_json("no json here { not closed").is_none());
        assert!(extract_json("").is_none());
        let v = extract_json("{bad} then {\"ok\": true}").expect("skips a broken one");
        assert_eq!(v["ok"], true);
    }
}
