//! Asking a server whether it is up: one bounded GET of its health URL.

use std::time::Duration;

use crate::spec::model::{Service, ServiceKind};

/// Bound on one health probe: a local server that takes longer than this to answer
/// `/system_stats` is not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a health probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// HTTP 2xx.
    Up,
    /// Nothing accepts connections there.
    Refused(String),
    /// Something answered, but not with a 2xx (or not in time).
    Other(String),
}

impl Probe {
    pub(super) fn describe(&self) -> &str {
        match self {
            Probe::Up => "up",
            Probe::Refused(s) | Probe::Other(s) => s,
        }
    }
}

/// The URL that answers 200 when a service is healthy: `/v1/models` for OpenAI-compatible
/// servers (the base URL carries the `/v1`), `/system_stats` for ComfyUI.
pub fn health_url(service: &Service) -> String {
    let base = service.urls().first().copied().unwrap_or_default();
    let base = base.trim_end_matches('/');
    match service.kind() {
        ServiceKind::Openai => format!("{base}/models"),
        ServiceKind::Comfyui => format!("{base}/system_stats"),
    }
}

/// The health URL of each URL of a service (each server of a ComfyUI pool), as [`health_url`]
/// makes it for the first.
pub fn health_urls(service: &Service) -> Vec<String> {
    service
        .urls()
        .iter()
        .map(|base| {
            let base = base.trim_end_matches('/');
            match service.kind() {
                ServiceKind::Openai => format!("{base}/models"),
                ServiceKind::Comfyui => format!("{base}/system_stats"),
            }
        })
        .collect()
}

/// One GET with a short bound.
///
/// A server that wants a key it was not given (401/403) is up: the server is there, and the
/// stage that talks to it reports the key problem in its own words.
pub async fn probe(client: &reqwest::Client, url: &str, key: Option<&str>) -> Probe {
    let mut req = client.get(url).timeout(PROBE_TIMEOUT);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Probe::Up,
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Probe::Up,
        Ok(r) => Probe::Other(format!("answered HTTP {}", r.status())),
        Err(e) if e.is_connect() => Probe::Refused(format!("connection refused: {}", root(&e))),
        Err(e) if e.is_timeout() => {
            Probe::Other(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))
        }
        Err(e) => Probe::Other(root(&e)),
    }
}

/// The API key of an `openai` service, when its variable is set (never logged).
pub(super) fn api_key(service: &Service) -> Option<String> {
    match service {
        Service::Openai(s) => s
            .api_key_env
            .as_deref()
            .and_then(|v| std::env::var(v).ok())
            .filter(|k| !k.is_empty()),
        Service::Comfyui(_) => None,
    }
}

pub(super) fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
