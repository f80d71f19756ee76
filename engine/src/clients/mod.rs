//! Clients for the servers a run talks to. Bringing a server up is `services`' job; these
//! talk to one that answers.

pub mod comfyui;
pub mod gpu;
pub mod openai;
mod quote;

pub use quote::{QUOTE_LIMIT, quote_body};

/// The HTTP client of the current tokio runtime: building one loads the TLS roots
/// (milliseconds), and a shared one keeps its connections alive between requests. It has no
/// proxy (the servers are the user's own, often on loopback) and no timeout of its own: each
/// request sets its bound.
///
/// One per runtime, not one per process: a pooled connection's I/O task lives on the runtime
/// that opened it, so a client shared by two runtimes fails a request on the second ("runtime
/// dropped the dispatch task") once the first is gone, as it is between tests or benches that
/// each run a runtime of their own. The `cinepipe` binary runs one runtime, so it has one
/// client. Outside a runtime a new client is built each time.
pub fn http() -> Result<reqwest::Client, HttpClientError> {
    /// Clients of the most recent runtimes; older ones are dropped (their runtimes, in a
    /// process that makes many, are usually gone).
    const KEPT: usize = 8;
    static CLIENTS: std::sync::Mutex<Vec<(tokio::runtime::Id, reqwest::Client)>> =
        std::sync::Mutex::new(Vec::new());
    let build = || {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| HttpClientError(e.to_string()))
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current().map(|h| h.id()) else {
        return build();
    };
    // A poisoned lock only means another thread panicked while holding it; the list is whole.
    let mut clients = CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, client)) = clients.iter().find(|(id, _)| *id == runtime) {
        return Ok(client.clone());
    }
    let client = build()?;
    if clients.len() >= KEPT {
        clients.remove(0);
    }
    clients.push((runtime, client.clone()));
    Ok(client)
}

/// An HTTP client could not be built (no TLS roots, say). It keeps the cause as text, so that
/// it can be cloned like the rest of a stage's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build an HTTP client: {0}")]
pub struct HttpClientError(String);

/// Reads a response body of at most `limit` bytes. A longer one is refused, not cut, so a
/// runaway or hostile server cannot fill memory through an answer nobody bounded.
pub async fn read_body_within(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|l| l > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Broken(e.to_string()))?
    {
        if buf.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A body [`read_body_within`] did not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the answer broke off: {0}")]
    Broken(String),
}

#[cfg(test)]
mod tests {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    }

    /// A GET through [`super::http`] on `rt`, bounded so that a request nobody drives fails
    /// instead of hanging the test.
    fn get(rt: &tokio::runtime::Runtime, url: &str) -> Result<u16, String> {
        rt.block_on(async {
            let response = super::http()
                .map_err(|e| e.to_string())?
                .get(url)
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?;
            Ok(response.status().as_u16())
        })
    }

    #[test]
    fn a_runtime_never_rides_a_connection_another_runtime_drives() {
        use std::io::{Read, Write};
        // A loopback server that answers each request and keeps every connection alive.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4) {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        // The first runtime pools a kept-alive connection whose I/O task is its own, and then
        // stops running (as a test's runtime does once its `block_on` returns). A request on a
        // second runtime must not be handed that connection: nothing would drive it.
        let first = runtime();
        assert_eq!(get(&first, &url), Ok(200));
        let second = runtime();
        assert_eq!(get(&second, &url), Ok(200));
        drop(first);
        assert_eq!(get(&second, &url), Ok(200));
    }
}
