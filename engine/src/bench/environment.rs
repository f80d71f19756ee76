//! Where a bench ran: cinepipe's version, the spec's hash, each variant's resolved spec, what
//! the servers say about themselves (`/system_stats`, `/v1/models`), and the host.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::spec::CheckedSpec;
use crate::spec::model::Service;

/// The environment of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Environment {
    pub cinepipe_version: String,
    pub spec: String,
    /// SHA-256 of the spec file's bytes.
    pub spec_hash: String,
    /// Each variant's spec with its profile applied, every default filled in.
    pub resolved_specs: IndexMap<String, Value>,
    pub servers: Vec<ServerInfo>,
    pub host: Host,
}

/// One server the variants use, as it describes itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerInfo {
    pub service: String,
    /// `comfyui` or `openai`.
    pub kind: String,
    pub url: String,
    /// ComfyUI's `system.comfyui_version`.
    pub version: Option<String>,
    /// ComfyUI's PyTorch and Python versions.
    pub pytorch_version: Option<String>,
    pub python_version: Option<String>,
    /// ComfyUI's first device (`cpu`, or the GPU's name).
    pub device: Option<String>,
    /// The models `/v1/models` lists.
    pub models: Vec<String>,
    /// Why the server could not be asked.
    pub error: Option<String>,
}

/// The machine cinepipe ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Host {
    pub os: String,
    pub arch: String,
    /// `/proc/cpuinfo`'s `model name`.
    pub cpu_model: Option<String>,
    pub cpu_cores: u32,
    /// The renders' device: a GPU's name from ComfyUI, else `cpu`.
    pub render_device: Option<String>,
}

/// Asks every server of `specs` (by variant) about itself, each once.
pub async fn gather(spec: &str, spec_hash: &str, specs: &[(String, &CheckedSpec)]) -> Environment {
    let mut servers: Vec<ServerInfo> = Vec::new();
    for (_, c) in specs {
        for (name, svc) in &c.spec.services {
            match svc {
                Service::Comfyui(s) => {
                    for url in &s.urls {
                        if servers.iter().any(|x| &x.url == url) {
                            continue;
                        }
                        servers.push(comfy(name, url).await);
                    }
                }
                Service::Openai(s) => {
                    if servers.iter().any(|x| x.url == s.base_url) {
                        continue;
                    }
                    let mut info = ServerInfo {
                        service: name.clone(),
                        kind: "openai".into(),
                        url: s.base_url.clone(),
                        version: None,
                        pytorch_version: None,
                        python_version: None,
                        device: None,
                        models: Vec::new(),
                        error: None,
                    };
                    match crate::clients::openai::OpenAiClient::new(s) {
                        Ok(client) => match client.models().await {
                            Ok(m) => info.models = m,
                            Err(e) => info.error = Some(e.to_string()),
                        },
                        Err(e) => info.error = Some(e.to_string()),
                    }
                    servers.push(info);
                }
            }
        }
    }
    let render_device = servers
        .iter()
        .find_map(|s| s.device.clone())
        .or(Some("unknown".into()));
    Environment {
        cinepipe_version: env!("CARGO_PKG_VERSION").to_owned(),
        spec: spec.to_owned(),
        spec_hash: spec_hash.to_owned(),
        resolved_specs: specs
            .iter()
            .map(|(n, c)| (n.clone(), crate::rundir::resolved(c)))
            .collect(),
        servers,
        host: Host {
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            cpu_model: cpu_model(),
            cpu_cores: std::thread::available_parallelism()
                .map_or(0, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            render_device,
        },
    }
}

async fn comfy(service: &str, url: &str) -> ServerInfo {
    let mut info = ServerInfo {
        service: service.to_owned(),
        kind: "comfyui".into(),
        url: url.to_owned(),
        version: None,
        pytorch_version: None,
        python_version: None,
        device: None,
        models: Vec::new(),
        error: None,
    };
    let client =
        crate::clients::comfyui::ComfyClient::shared(url, std::time::Duration::from_secs(10));
    let answer = match client {
        Ok(c) => c.system_stats().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match answer {
        Ok(v) => {
            let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
            info.version = s("/system/comfyui_version");
            info.pytorch_version = s("/system/pytorch_version");
            info.python_version = s("/system/python_version")
                .and_then(|v| v.split_whitespace().next().map(str::to_owned));
            info.device = match s("/devices/0/type").as_deref() {
                Some("cpu") => Some("cpu".into()),
                _ => s("/devices/0/name"),
            };
        }
        Err(e) => info.error = Some(e),
    }
    info
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}
