//! Why a run's services could not be brought up.

/// [`Services::ensure`] failed: the first error, and what was done before it (the servers
/// that did come up have been stopped again).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct EnsureError {
    pub error: ServiceError,
    pub notes: Vec<String>,
}

/// A service could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "service `{service}` does not answer at {url} ({why}), and it has no `launch` to start it\n\
         help: start the server, or give `[services.{service}]` a `launch` command"
    )]
    Down {
        service: String,
        url: String,
        why: String,
    },
    #[error(
        "service `{service}`: something else holds {url}: {answer}\n\
         help: stop whatever listens there, or move the service to a free port"
    )]
    PortTaken {
        service: String,
        url: String,
        answer: String,
    },
    #[error("service `{service}`: could not start `{command}`: {source}")]
    Spawn {
        service: String,
        command: String,
        source: std::io::Error,
    },
    #[error(
        "service `{service}`: `{command}` exited ({status}) after {after:.1} s, before it was ready\n\
         last lines of {log}:\n{tail}"
    )]
    Exited {
        service: String,
        command: String,
        status: String,
        after: f64,
        log: String,
        tail: String,
    },
    #[error(
        "service `{service}`: not ready after {timeout} s ({ready_url}: {last}); stopped it\n\
         help: raise `launch.ready_timeout_s`, or check the server's log\n\
         last lines of {log}:\n{tail}"
    )]
    NotReady {
        service: String,
        timeout: f64,
        ready_url: String,
        last: String,
        log: String,
        tail: String,
    },
    #[error("service `{service}`: {what}: {source}")]
    Io {
        service: String,
        what: String,
        source: std::io::Error,
    },
    #[error("service `{service}`: {message}")]
    Invalid { service: String, message: String },
    #[error("cancelled while starting service `{service}`")]
    Cancelled { service: String },
    #[error(
        "no service of the fallback chain of `{service}` could be brought up; tried {}:\n  {}",
        tried.len(),
        tried.join("\n  ")
    )]
    ChainDown { service: String, tried: Vec<String> },
}
