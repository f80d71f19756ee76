//! Clients for the servers a run talks to. Bringing a server up is `services`' job; these
//! talk to one that answers.

pub mod comfyui;
pub mod gpu;
pub mod openai;

/// The process's one HTTP client: building one loads the TLS roots (milliseconds), and a
/// shared one keeps its connections alive between requests. It has no proxy (the servers are
/// the user's own, often on loopback) and no timeout of its own: each request sets its bound.
pub fn http() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))
        })
        .clone()
}
