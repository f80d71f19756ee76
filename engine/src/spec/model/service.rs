//! `[services.*]`: the OpenAI-compatible and ComfyUI servers a spec talks to.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A server the stages talk to. `kind` says which protocol it speaks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Service {
    /// Any OpenAI-compatible server: LM Studio, Ollama (`/v1`), llama.cpp's server, vLLM.
    Openai(OpenAiService),
    /// A ComfyUI server, or a pool of them.
    Comfyui(ComfyUiService),
}

/// The kinds of service, as written in `kind = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    Openai,
    Comfyui,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Openai => "openai",
            ServiceKind::Comfyui => "comfyui",
        }
    }
}

impl Service {
    pub fn kind(&self) -> ServiceKind {
        match self {
            Service::Openai(_) => ServiceKind::Openai,
            Service::Comfyui(_) => ServiceKind::Comfyui,
        }
    }

    pub fn fallback(&self) -> Option<&str> {
        match self {
            Service::Openai(s) => s.fallback.as_deref(),
            Service::Comfyui(s) => s.fallback.as_deref(),
        }
    }

    pub fn launch(&self) -> Option<&Launch> {
        match self {
            Service::Openai(s) => s.launch.as_ref(),
            Service::Comfyui(s) => s.launch.as_ref(),
        }
    }

    /// The base URLs of the service, in the order they are tried.
    pub fn urls(&self) -> Vec<&str> {
        match self {
            Service::Openai(s) => vec![s.base_url.as_str()],
            Service::Comfyui(s) => s.urls.iter().map(String::as_str).collect(),
        }
    }
}

/// `kind = "openai"`: an OpenAI-compatible chat completions server.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiService {
    /// Base URL including the API prefix, e.g. `http://127.0.0.1:1234/v1` (LM Studio) or
    /// `http://127.0.0.1:11434/v1` (Ollama).
    #[schemars(example = "http://127.0.0.1:1234/v1")]
    pub base_url: String,
    /// Model to ask for; the health check confirms the server has it loaded.
    #[schemars(example = "mistral-7b-instruct-v0.3")]
    pub model: String,
    /// Name of an environment variable that holds a bearer API key. The key itself never
    /// belongs in a spec, and is never written to a log or a run directory: a server that
    /// quotes it back (a proxy echoing the `Authorization` header) is quoted with the key's
    /// value replaced by `[redacted]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"OPENAI_API_KEY")]
    pub api_key_env: Option<String>,
    /// The service tried next when this one fails its health check or a request (transport
    /// error or 5xx). Must be another `openai` service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Bound on one HTTP request, in seconds.
    #[serde(default = "default_llm_request_timeout")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
    pub timeout_s: f64,
    /// Requests sent to this server at the same time.
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent: u32,
    /// Largest response body accepted, in bytes.
    #[serde(default = "default_max_response_bytes")]
    #[schemars(range(min = 1, max = 1073741824))]
    pub max_response_bytes: u64,
    /// How to start the server when nothing answers at `base_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
}

/// `kind = "comfyui"`: one ComfyUI server or a pool of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComfyUiService {
    /// Server URLs. Several make a pool: scenes are spread over the healthy ones.
    #[schemars(length(min = 1), example = vec!["http://127.0.0.1:8188"])]
    pub urls: Vec<String>,
    /// The server's output folder, when it is on this machine. Without it (a remote server),
    /// markers and frames are fetched over HTTP (`GET /view?filename=&subfolder=&type=output`
    /// from the server that ran the prompt), never through a shared disk: `await-marker` polls
    /// the marker, and `collect-frames` downloads the frames the marker or `/history` lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<String>,
    /// Workflows queued on each server at the same time (ComfyUI runs one at a time).
    #[serde(default = "default_one")]
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrent: u32,
    /// Bound on one HTTP request, in seconds (not on the workflow: see the `queue` stage).
    #[serde(default = "default_comfy_request_timeout")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
    pub timeout_s: f64,
    /// The service tried next when this one is down. Must be another `comfyui` service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// How to start the server when nothing answers at the first URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
}

/// How the engine starts a service that is not already running. A server that already
/// answers is reused and never stopped; one the engine started is stopped when the run ends.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// Program to run (a path, or a name looked up on PATH).
    #[schemars(length(min = 1), example = "scripts/start-comfyui")]
    pub command: String,
    /// Arguments passed to `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory, relative to `run.base_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables for the process.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// URL that answers 200 once the server is ready. Default: the service's health URL
    /// (`/v1/models` for openai, `/system_stats` for comfyui).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_url: Option<String>,
    /// Seconds to wait for readiness before giving up.
    #[serde(default = "default_ready_timeout")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 604800))]
    pub ready_timeout_s: f64,
    /// Seconds between SIGTERM and SIGKILL when the engine stops the server.
    #[serde(default = "default_stop_timeout")]
    #[schemars(range(min = 0.0, max = 604800.0))]
    pub stop_timeout_s: f64,
}

fn default_one() -> u32 {
    1
}

fn default_llm_request_timeout() -> f64 {
    180.0
}

fn default_comfy_request_timeout() -> f64 {
    30.0
}

fn default_max_response_bytes() -> u64 {
    8 * 1024 * 1024
}

fn default_ready_timeout() -> f64 {
    120.0
}

fn default_stop_timeout() -> f64 {
    10.0
}
