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
        Ok(r) if r.status().is_success() => match Shape::of(url) {
            None => Probe::Up,
            Some(shape) => shape.judge(r, key).await,
        },
        Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Probe::Up,
        Ok(r) => Probe::Other(format!("answered HTTP {}", r.status())),
        Err(e) if e.is_connect() => Probe::Refused(format!("connection refused: {}", root(&e))),
        Err(e) if e.is_timeout() => {
            Probe::Other(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))
        }
        Err(e) => Probe::Other(root(&e)),
    }
}

/// What the answer of a health URL this module makes must look like: a 200 with a body that is
/// not a server's own answer (a login page, another program on the port, a proxy's error) is
/// not a healthy server.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// ComfyUI's `/system_stats`: an object with a `system` object and a `devices` list.
    SystemStats,
    /// An OpenAI-compatible `/models`: an object with a `data` list.
    Models,
}

impl Shape {
    /// Longest health answer read; ComfyUI's `/system_stats` is under 1 KB.
    const MAX_BYTES: u64 = 1024 * 1024;

    fn of(url: &str) -> Option<Shape> {
        let path = url
            .split(['?', '#'])
            .next()
            .unwrap_or(url)
            .trim_end_matches('/');
        if path.ends_with("/system_stats") {
            Some(Shape::SystemStats)
        } else if path.ends_with("/models") {
            Some(Shape::Models)
        } else {
            None
        }
    }

    /// `key`: the API key the probe sent, taken out of the quoted body (a server may echo
    /// the request's headers).
    async fn judge(self, r: reqwest::Response, key: Option<&str>) -> Probe {
        let status = r.status();
        let body = match crate::clients::read_body_within(r, Shape::MAX_BYTES).await {
            Ok(b) => b,
            Err(e) => return Probe::Other(format!("answered HTTP {status}, but {e}")),
        };
        let v = serde_json::from_slice::<serde_json::Value>(&body).ok();
        let fits = v.as_ref().is_some_and(|v| match self {
            Shape::SystemStats => {
                v.get("system").is_some_and(serde_json::Value::is_object)
                    && v.get("devices").is_some_and(serde_json::Value::is_array)
            }
            Shape::Models => v.get("data").is_some_and(serde_json::Value::is_array),
        });
        if fits {
            return Probe::Up;
        }
        let what = match self {
            Shape::SystemStats => "a ComfyUI `/system_stats` answer (`system` and `devices`)",
            Shape::Models => "an OpenAI-compatible `/models` answer (a `data` list)",
        };
        // The key out before the quote is cut, so that no part of it is left.
        let text = String::from_utf8_lossy(&body);
        let text = match key.filter(|k| !k.is_empty()) {
            Some(k) => text.replace(k, crate::clients::openai::REDACTED),
            None => text.into_owned(),
        };
        Probe::Other(format!(
            "answered HTTP {status}, but not with {what}: {}",
            crate::clients::quote_body(text.as_bytes())
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately broken server: every request gets `200` with `body`.
    fn server_answering(body: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[tokio::test]
    async fn a_200_that_is_not_a_health_answer_is_not_a_healthy_server() {
        let client = crate::clients::http().expect("client");
        let garbage = server_answering("<html><body>It works!</body></html>");
        for path in ["/system_stats", "/v1/models"] {
            let p = probe(&client, &format!("{garbage}{path}"), None).await;
            let Probe::Other(why) = &p else {
                panic!("{path}: {p:?}")
            };
            assert!(why.contains("answered HTTP 200 OK, but not with"), "{why}");
            assert!(
                why.contains("It works!") && !why.contains("<html>"),
                "{why}"
            );
        }
        // Any JSON is not enough either.
        let json = server_answering(r#"{"status": "ok"}"#);
        assert!(matches!(
            probe(&client, &format!("{json}/system_stats"), None).await,
            Probe::Other(_)
        ));
        let comfy = server_answering(r#"{"system": {"os": "posix"}, "devices": []}"#);
        assert_eq!(
            probe(&client, &format!("{comfy}/system_stats"), None).await,
            Probe::Up
        );
        let models = server_answering(r#"{"object": "list", "data": []}"#);
        assert_eq!(
            probe(&client, &format!("{models}/v1/models"), None).await,
            Probe::Up
        );
        // The key the probe sent is not quoted back.
        let echo = server_answering("<p>you sent Bearer sk-probe-secret</p>");
        let p = probe(
            &client,
            &format!("{echo}/v1/models"),
            Some("sk-probe-secret"),
        )
        .await;
        assert_eq!(
            p,
            Probe::Other(
                "answered HTTP 200 OK, but not with an OpenAI-compatible `/models` answer \
                 (a `data` list): you sent Bearer [redacted]"
                    .into()
            )
        );
        // A ready URL of the user's own has no shape to check.
        assert_eq!(
            probe(&client, &format!("{garbage}/ready"), None).await,
            Probe::Up
        );
    }
}
