//! Clients for the servers a run talks to. Bringing a server up is `services`' job; these
//! talk to one that answers.

pub mod comfyui;
pub mod gpu;
pub mod openai;

/// The process's one HTTP client: building one loads the TLS roots (milliseconds), and a
/// shared one keeps its connections alive between requests. It has no proxy (the servers are
/// the user's own, often on loopback) and no timeout of its own: each request sets its bound.
pub fn http() -> Result<reqwest::Client, HttpClientError> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, HttpClientError>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| HttpClientError(e.to_string()))
        })
        .clone()
}

/// The process's HTTP client could not be built (no TLS roots, say). It keeps the cause as
/// text: the client is built once and its error handed to every caller, and `reqwest::Error`
/// cannot be cloned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build an HTTP client: {0}")]
pub struct HttpClientError(String);
