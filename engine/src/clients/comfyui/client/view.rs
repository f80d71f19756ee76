//! Reading a file of the server's output folder with `/view` (for a server on another host):
//! the checks that keep a request to one plain name in a relative folder, and the bounded,
//! cancellable download into memory or a new file.

use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{ComfyClient, ComfyError, ERROR_BODY_READ, short};

/// Why a name or subfolder is not asked for with `/view`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewPathError {
    #[error("a file name is empty")]
    EmptyName,
    #[error("{0:?} is not a plain file name (it holds `/`, `\\` or NUL)")]
    NameWithSeparator(String),
    #[error("{0:?} is not a plain file name (it holds `..`)")]
    NameWithDots(String),
    #[error("{0:?} is not a file name")]
    NotAName(String),
    #[error("{0:?} ends with `]`, which ComfyUI's /view reads as a folder annotation")]
    NameWithAnnotation(String),
    #[error("subfolder {0:?} holds `\\` or NUL")]
    SubfolderWithBackslash(String),
    #[error("subfolder {0:?} is absolute")]
    AbsoluteSubfolder(String),
    #[error("subfolder {0:?} has an empty, `.` or `..` part")]
    SubfolderWithDots(String),
}

/// Checks a file name for `/view`: one plain name, never a path. ComfyUI's `/view` would take
/// the base name of a path, and reads a trailing ` [output]`/` [input]`/` [temp]` as another
/// folder; neither is left to it.
pub fn check_view_name(name: &str) -> Result<(), ViewPathError> {
    if name.is_empty() {
        return Err(ViewPathError::EmptyName);
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(ViewPathError::NameWithSeparator(name.to_owned()));
    }
    if name.contains("..") {
        return Err(ViewPathError::NameWithDots(name.to_owned()));
    }
    if name.trim() == "." || name.trim().is_empty() {
        return Err(ViewPathError::NotAName(name.to_owned()));
    }
    if name.ends_with(']') {
        return Err(ViewPathError::NameWithAnnotation(name.to_owned()));
    }
    Ok(())
}

/// Checks a subfolder for `/view`: empty (the output folder itself) or a relative path with
/// `/` separators and no `.`/`..` part, no `\\`, no NUL.
pub fn check_view_subfolder(subfolder: &str) -> Result<(), ViewPathError> {
    if subfolder.is_empty() {
        return Ok(());
    }
    if subfolder.contains(['\\', '\0']) {
        return Err(ViewPathError::SubfolderWithBackslash(subfolder.to_owned()));
    }
    if subfolder.starts_with('/') {
        return Err(ViewPathError::AbsoluteSubfolder(subfolder.to_owned()));
    }
    if subfolder
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(ViewPathError::SubfolderWithDots(subfolder.to_owned()));
    }
    Ok(())
}

impl ComfyClient {
    /// The request for `GET /view?filename=&subfolder=&type=output`, the values URL-encoded.
    /// The name and subfolder are checked first ([`check_view_name`],
    /// [`check_view_subfolder`]): nothing that is not a plain name in a relative folder is
    /// ever asked for.
    fn view_request(
        &self,
        filename: &str,
        subfolder: &str,
    ) -> Result<reqwest::Request, ComfyError> {
        let url = self.url("/view");
        let bad = |message: String| ComfyError::Protocol {
            url: url.clone(),
            message,
        };
        check_view_name(filename).map_err(|e| bad(e.to_string()))?;
        check_view_subfolder(subfolder).map_err(|e| bad(e.to_string()))?;
        self.http
            .get(&url)
            .query(&[
                ("filename", filename),
                ("subfolder", subfolder),
                ("type", "output"),
            ])
            .build()
            .map_err(|e| bad(format!("cannot build the request: {e}")))
    }

    /// The `/view` URL of a file of the output folder, as [`ComfyClient::view`] asks for it.
    pub fn view_url(&self, filename: &str, subfolder: &str) -> Result<String, ComfyError> {
        Ok(self.view_request(filename, subfolder)?.url().to_string())
    }

    /// Sends a `/view` request and reads its answer's head: `None` on 404, the response on
    /// 200, an error otherwise (the start of the body quoted) or when the announced length is
    /// over `max_bytes`.
    async fn view_response(
        &self,
        filename: &str,
        subfolder: &str,
        max_bytes: u64,
    ) -> Result<Option<(String, reqwest::Response)>, ComfyError> {
        let req = self.view_request(filename, subfolder)?;
        let url = req.url().to_string();
        let mut resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| self.transport(&url, &e))?;
        let status = resp.status().as_u16();
        match status {
            200 => {}
            404 => return Ok(None),
            _ => {
                let mut body = Vec::new();
                while body.len() < ERROR_BODY_READ {
                    match resp.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c),
                        _ => break,
                    }
                }
                return Err(ComfyError::Http {
                    url,
                    status,
                    body: short(&body),
                });
            }
        }
        if let Some(len) = resp.content_length().filter(|l| *l > max_bytes) {
            return Err(too_large(&url, max_bytes, Some(len)));
        }
        Ok(Some((url, resp)))
    }

    /// Runs `work` bounded by the client's timeout and ended by `cancel`.
    async fn bounded<T>(
        &self,
        what: &str,
        cancel: &CancellationToken,
        work: impl Future<Output = Result<T, ComfyError>>,
    ) -> Result<T, ComfyError> {
        tokio::select! {
            r = tokio::time::timeout(self.timeout, work) => r.unwrap_or_else(|_| {
                Err(ComfyError::Timeout { url: what.to_owned(), secs: self.timeout.as_secs_f64() })
            }),
            () = cancel.cancelled() => Err(ComfyError::Cancelled { cancel_note: None }),
        }
    }

    /// `GET /view` of `subfolder/filename` in the server's output folder: `None` when the
    /// server has no such file (404), its bytes on 200. A body over `max_bytes` is refused as
    /// it streams in, not after; any other status is an [`ComfyError::Http`]. Bounded by the
    /// client's timeout; `cancel` ends it at once ([`ComfyError::Cancelled`]).
    pub async fn view(
        &self,
        filename: &str,
        subfolder: &str,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<Vec<u8>>, ComfyError> {
        let what = self.url("/view");
        self.bounded(&what, cancel, async {
            let Some((url, mut resp)) = self.view_response(filename, subfolder, max_bytes).await?
            else {
                return Ok(None);
            };
            let mut buf = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&url, &e))? {
                if buf.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(too_large(&url, max_bytes, None));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Some(buf))
        })
        .await
    }

    /// [`ComfyClient::view`] streamed into a new file `dest` (created only once the server
    /// answered 200; refused when something is already there, a symbolic link included).
    /// Returns the open file and its length, written but not flushed to the disk (the caller
    /// flushes a batch together); `None` on 404. On any error the partial file is removed.
    pub async fn view_to_file(
        &self,
        filename: &str,
        subfolder: &str,
        dest: &Path,
        max_bytes: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<(std::fs::File, u64)>, ComfyError> {
        let what = self.url("/view");
        let mut created = false;
        let result = self
            .bounded(&what, cancel, async {
                let Some((url, mut resp)) =
                    self.view_response(filename, subfolder, max_bytes).await?
                else {
                    return Ok(None);
                };
                let file_err = |e: std::io::Error| ComfyError::Protocol {
                    url: url.clone(),
                    message: format!("cannot write {}: {e}", dest.display()),
                };
                let mut out = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(dest)
                    .await
                    .map_err(file_err)?;
                created = true;
                let mut n: u64 = 0;
                while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport(&url, &e))? {
                    n += chunk.len() as u64;
                    if n > max_bytes {
                        return Err(too_large(&url, max_bytes, None));
                    }
                    out.write_all(&chunk).await.map_err(file_err)?;
                }
                out.flush().await.map_err(file_err)?;
                Ok(Some((out.into_std().await, n)))
            })
            .await;
        if result.is_err() && created {
            let _ = std::fs::remove_file(dest);
        }
        result
    }
}

fn too_large(url: &str, max: u64, announced: Option<u64>) -> ComfyError {
    ComfyError::Protocol {
        url: url.to_owned(),
        message: match announced {
            Some(len) => format!("the file is {len} bytes, more than the {max} allowed"),
            None => format!("the file is larger than the {max} bytes allowed"),
        },
    }
}
