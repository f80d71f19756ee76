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

mod parse;
mod redact;
pub use parse::{
    AnswerError, TokenChoices, error_message, extract_json, parse_completion, parse_logprobs,
    parse_models, parse_sse,
};
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
        let bytes = self.post(&url, &body).await?;
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

    /// `POST /chat/completions` (not streamed) asking for the `top` most likely alternatives
    /// of each generated token (`logprobs`, `top_logprobs`): the answer, and the alternatives
    /// when the server gives them (llama.cpp's server does; a server that ignores the request
    /// gives `None`). For graders that weigh an answer by its probabilities (G-Eval); the
    /// `llm` stage's own requests go through [`OpenAiClient::chat`], unchanged.
    pub async fn chat_with_logprobs(
        &self,
        req: &ChatRequest,
        top: u8,
    ) -> Result<(ChatAnswer, Option<Vec<TokenChoices>>), LlmError> {
        let url = self.url("chat/completions");
        let asked = async {
            let mut body = serde_json::to_value(req).map_err(|e| LlmError::Protocol {
                url: url.clone(),
                message: e.to_string(),
            })?;
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(top);
            let bytes = self.post(&url, &body).await?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| LlmError::Protocol {
                url: url.clone(),
                message: format!("not JSON: {e}"),
            })?;
            let answer = parse_completion(&v).map_err(|e| LlmError::Protocol {
                url: url.clone(),
                message: e.to_string(),
            })?;
            Ok((answer, parse_logprobs(&v)))
        };
        match asked.await {
            Ok((mut answer, choices)) => {
                answer.content = self.redact_text(answer.content);
                answer.model = answer.model.map(|m| self.redact_text(m));
                Ok((answer, choices))
            }
            Err(e) => Err(self.redact(e)),
        }
    }

    /// Posts `body` as JSON and reads the answer within the time and size bounds.
    async fn post(&self, url: &str, body: &Value) -> Result<Vec<u8>, LlmError> {
        let url = url.to_owned();
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
        tokio::time::timeout(left, read)
            .await
            .map_err(|_| LlmError::Timeout {
                url: url.clone(),
                secs: self.timeout.as_secs_f64(),
            })?
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
