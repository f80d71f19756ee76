//! Clients for the servers a run talks to. Bringing a server up is `services`' job; these
//! talk to one that answers.

pub mod comfyui;
pub mod gpu;
pub mod openai;

/// One HTTP client, shared by the process, for short side requests (GPU readings from
/// `/system_stats`, a forced copy's `/history` and `/queue` dump): no proxy, 5 s per request.
/// Building a client loads the TLS roots, so it is built once.
pub fn side_http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default()
        })
        .clone()
}
