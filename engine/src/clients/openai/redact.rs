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
