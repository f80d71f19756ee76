//! Taking the API key out of what a server said, before an error or an answer leaves the
//! client.

use super::LlmError;

/// What stands in for the API key wherever a server quoted it.
pub const REDACTED: &str = "[redacted]";

impl LlmError {
    /// This error with every occurrence of `secret` in what it quotes replaced by
    /// [`REDACTED`]. A server's words can hold anything the request carried (a proxy that
    /// echoes the `Authorization` header in its 401 body, say), so the client redacts every
    /// error before it leaves, and nothing downstream has to know the key.
    #[must_use]
    pub fn redacted(self, secret: &str) -> LlmError {
        if secret.is_empty() {
            return self;
        }
        let r = |s: String| {
            if s.contains(secret) {
                s.replace(secret, REDACTED)
            } else {
                s
            }
        };
        match self {
            LlmError::Transport { url, message } => LlmError::Transport {
                url: r(url),
                message: r(message),
            },
            LlmError::Timeout { url, secs } => LlmError::Timeout { url: r(url), secs },
            LlmError::Http { url, status, body } => LlmError::Http {
                url: r(url),
                status,
                body: r(body),
            },
            LlmError::TooLarge { url, limit } => LlmError::TooLarge { url: r(url), limit },
            LlmError::Protocol { url, message } => LlmError::Protocol {
                url: r(url),
                message: r(message),
            },
            LlmError::MissingKey { var } => LlmError::MissingKey { var },
            LlmError::MissingModel {
                url,
                model,
                available,
            } => LlmError::MissingModel {
                url: r(url),
                model: r(model),
                available: available.into_iter().map(r).collect(),
            },
        }
    }
}

/// `body` with every occurrence of `secret` replaced by [`REDACTED`], byte for byte (a body
/// need not be UTF-8).
pub(super) fn redact_bytes(body: Vec<u8>, secret: &[u8]) -> Vec<u8> {
    if secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body.as_slice();
    while !rest.is_empty() {
        if rest.starts_with(secret) {
            out.extend_from_slice(REDACTED.as_bytes());
            rest = &rest[secret.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quoted_field_loses_the_key_and_nothing_else_changes() {
        let key = "sk-secret-123";
        let http = LlmError::Http {
            url: "http://h/v1/models".into(),
            status: 401,
            body: format!("you sent `Bearer {key}` twice: {key}"),
        };
        assert_eq!(
            http.redacted(key).to_string(),
            "http://h/v1/models: HTTP 401: you sent `Bearer [redacted]` twice: [redacted]"
        );
        let models = LlmError::MissingModel {
            url: "http://h/v1".into(),
            model: "m".into(),
            available: vec![key.into(), "other".into()],
        };
        assert_eq!(
            models.redacted(key).to_string(),
            "the server at http://h/v1 does not have model `m`; it has: `[redacted]`, `other`"
        );
        // A body is redacted whole, before a quote could cut the key.
        let long = format!("{}Bearer {key}", "x".repeat(395));
        assert_eq!(
            redact_bytes(long.into_bytes(), key.as_bytes()),
            format!("{}Bearer [redacted]", "x".repeat(395)).into_bytes()
        );
        assert_eq!(
            redact_bytes(b"\xffno key".to_vec(), key.as_bytes()),
            b"\xffno key"
        );
        let untouched = LlmError::Protocol {
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(
            untouched.clone().redacted("").to_string(),
            untouched.to_string()
        );
    }
}
