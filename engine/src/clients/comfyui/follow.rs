//! Queue one prompt and follow it to its end: the WebSocket (opened before the POST, so no
//! message of ours is missed) raced with `/history/{id}` + `/queue` polling, so that a lost or
//! silent socket never hangs a run; the socket is reconnected with a backoff.
//!
//! The ends, and their `HistoryExitReason`:
//!
//! | end | reason | result |
//! | --- | --- | --- |
//! | history has the entry with outputs | `success` | ok |
//! | success signalled, outputs not in history within `post_execution_timeout_s` | `postExecution` | ok, no outputs |
//! | `max_wait_s` passed before the end | `maxWait` | error (our prompt is cancelled) |
//! | `max_attempts` polls made before the end | `attemptLimit` | error (our prompt is cancelled) |
//! | a node raised, an interrupt, the prompt vanished, the server is gone, we were cancelled | `unknown` | error |
//!
//! `max_wait_s` and the poll limit bound the wait for the end; once the end is signalled only
//! the post-execution window bounds the wait for the outputs (those polls still count in
//! `HistoryAttempts`).

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::client::{ComfyClient, WsStream};
use super::error::ComfyError;
use super::messages::{self, HistoryEntry, HistoryStatus, WsEvent};
use crate::artifact_metadata::{HistoryExitReason, Timestamp};

/// How long to follow, from the `queue` stage's settings.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    pub poll_interval: Duration,
    pub max_wait: Duration,
    /// Most `/history` polls before the end; 0 = unbounded.
    pub max_polls: u32,
    pub post_execution_timeout: Duration,
    /// Follow on the WebSocket too (polling alone when false).
    pub websocket: bool,
}

/// Everything one queued prompt did, success or not: what the queue telemetry is made of.
#[derive(Debug)]
pub struct PromptRun {
    pub client_id: String,
    pub prompt_id: Option<String>,
    /// When `POST /prompt` was sent; None when the socket could not even be tried.
    pub queue_start: Option<Timestamp>,
    pub queue_end: Timestamp,
    /// `/history` polls made (`HistoryAttempts`).
    pub polls: u32,
    pub exit: HistoryExitReason,
    pub success_detected: bool,
    pub success_at: Option<Timestamp>,
    pub post_execution_timeout_reached: bool,
    /// The final history entry, when one was read.
    pub entry: Option<HistoryEntry>,
    /// UI outputs seen in `executed` frames (a second witness of the files).
    pub ws_outputs: Map<String, Value>,
    /// Nodes ComfyUI reused from its cache (every node: nothing ran, no file was written).
    pub cached_nodes: Vec<String>,
    /// What first told us the prompt ended: `websocket` or `history`.
    pub completion_via: Option<&'static str>,
    /// Times the socket was connected (1 = no reconnect was needed).
    pub ws_connects: u32,
    /// What went differently than planned (socket lost, reconnects, cancels), for
    /// `System.FallbackNotes`.
    pub notes: Vec<String>,
    pub result: Result<(), ComfyError>,
}

/// Socket reconnects start at this delay and double up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// After the end is signalled, `/history` is asked again after this delay, doubling up to the
/// poll interval: outputs usually land within milliseconds.
const POST_POLL_MIN: Duration = Duration::from_millis(10);
/// Longest wait for the socket's first `status` frame, which the server sends once it has
/// registered our client id (messages sent before that would be lost).
const WS_READY_MAX: Duration = Duration::from_secs(2);
/// Bound on cancelling our prompt (the executor's grace after a cancel is 10 s).
const CANCEL_MAX: Duration = Duration::from_secs(5);

/// Why the WebSocket cannot be used (a note; polling `/history` covers for it).
#[derive(Debug, thiserror::Error)]
enum SocketError {
    #[error("{0}")]
    Connect(ComfyError),
    #[error("closed by the server")]
    Closed,
    #[error("{0}")]
    Frame(#[from] tokio_tungstenite::tungstenite::Error),
}

async fn recv(ws: &mut Option<WsStream>) -> Option<Result<Message, SocketError>> {
    match ws {
        Some(w) => w.next().await.map(|r| r.map_err(SocketError::from)),
        None => std::future::pending().await,
    }
}

/// Waits for the first `status` frame of a fresh socket.
async fn ready(ws: &mut WsStream) -> Result<(), SocketError> {
    let wait = async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    if matches!(messages::parse_ws(t.as_str()), Some(WsEvent::Status { .. })) {
                        return Ok(());
                    }
                }
                Ok(Message::Close(_)) => return Err(SocketError::Closed),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(SocketError::Closed)
    };
    // No `status` in time: go on; polling covers anything the socket misses.
    tokio::time::timeout(WS_READY_MAX, wait)
        .await
        .unwrap_or(Ok(()))
}

impl ComfyClient {
    async fn open_socket(&self, client_id: &str) -> Result<WsStream, SocketError> {
        let mut ws = self
            .connect_ws(client_id)
            .await
            .map_err(SocketError::Connect)?;
        ready(&mut ws).await?;
        Ok(ws)
    }

    async fn cancel_note(&self, prompt_id: &str) -> String {
        match tokio::time::timeout(CANCEL_MAX, self.cancel_prompt(prompt_id)).await {
            Ok(Ok(action)) => action.note(prompt_id),
            Ok(Err(e)) => format!("could not cancel prompt {prompt_id}: {e}"),
            Err(_) => format!(
                "could not cancel prompt {prompt_id}: no answer within {} s",
                CANCEL_MAX.as_secs()
            ),
        }
    }

    /// Queues `graph` and follows it to its end (see the module's table). Never waits past
    /// `max_wait` + `post_execution_timeout` + a few request timeouts, and returns soon after
    /// `cancel`, having stopped our prompt on the server.
    pub async fn run_prompt(
        &self,
        graph: &Value,
        opts: &FollowOptions,
        cancel: &CancellationToken,
    ) -> PromptRun {
        let client_id = format!(
            "cinepipe-{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        let mut run = PromptRun {
            client_id: client_id.clone(),
            prompt_id: None,
            queue_start: None,
            queue_end: Timestamp::now(),
            polls: 0,
            exit: HistoryExitReason::Unknown,
            success_detected: false,
            success_at: None,
            post_execution_timeout_reached: false,
            entry: None,
            ws_outputs: Map::new(),
            cached_nodes: Vec::new(),
            completion_via: None,
            ws_connects: 0,
            notes: Vec::new(),
            result: Ok(()),
        };

        // The socket first: the server sends a prompt's messages only to the socket of the
        // POST's client_id, and only once that socket is registered.
        let mut ws: Option<WsStream> = None;
        if opts.websocket {
            match self.open_socket(&client_id).await {
                Ok(s) => {
                    ws = Some(s);
                    run.ws_connects += 1;
                }
                Err(e) => run.notes.push(format!(
                    "comfyui: WebSocket {} unavailable ({e}); following by polling /history",
                    self.ws_url(&client_id)
                )),
            }
        }

        run.queue_start = Some(Timestamp::now());
        let queued = match self.submit(graph, &client_id).await {
            Ok(q) => q,
            Err(e) => {
                run.queue_end = Timestamp::now();
                run.result = Err(e);
                return run;
            }
        };
        let id = queued.prompt_id;
        run.prompt_id = Some(id.clone());
        // A cancel that came during the POST still stops the prompt we just queued.
        if cancel.is_cancelled() {
            let note = self.cancel_note(&id).await;
            run.queue_end = Timestamp::now();
            run.result = Err(ComfyError::Cancelled {
                cancel_note: Some(note),
            });
            return run;
        }
        let outcome = self
            .follow(&id, &client_id, ws, opts, cancel, &mut run)
            .await;
        run.queue_end = Timestamp::now();
        run.result = outcome;
        run
    }

    async fn follow(
        &self,
        id: &str,
        client_id: &str,
        mut ws: Option<WsStream>,
        opts: &FollowOptions,
        cancel: &CancellationToken,
        run: &mut PromptRun,
    ) -> Result<(), ComfyError> {
        let start = Instant::now();
        let deadline = start + opts.max_wait;
        let poll_every = opts.poll_interval.max(Duration::from_millis(1));
        let mut next_poll = start + poll_every;
        // Set when the end is signalled: the outputs must be in /history by then.
        let mut post_deadline: Option<Instant> = None;
        let mut post_backoff = POST_POLL_MIN;
        let mut reconnect_at: Option<Instant> =
            (opts.websocket && ws.is_none()).then(|| start + RECONNECT_MIN);
        let mut reconnect_backoff = RECONNECT_MIN;
        let mut last_contact = Instant::now();

        loop {
            let mut wake = next_poll.min(post_deadline.unwrap_or(deadline));
            if let Some(r) = reconnect_at {
                wake = wake.min(r);
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    let note = self.cancel_note(id).await;
                    return Err(ComfyError::Cancelled { cancel_note: Some(note) });
                }
                msg = recv(&mut ws) => {
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            let Some(ev) = messages::parse_ws(t.as_str()) else { continue };
                            if ev.prompt_id() != Some(id) {
                                continue;
                            }
                            match ev {
                                WsEvent::ExecutionCached { nodes, .. } => run.cached_nodes = nodes,
                                WsEvent::Executed { node, output, .. } => {
                                    run.ws_outputs.insert(node, output);
                                }
                                WsEvent::ExecutionSuccess { .. } => {
                                    signal_success(run, &mut post_deadline, opts);
                                    next_poll = Instant::now();
                                }
                                WsEvent::Executing { node: None, .. } => {
                                    signal_success(run, &mut post_deadline, opts);
                                    next_poll = Instant::now();
                                }
                                WsEvent::ExecutionError { error, .. } => {
                                    run.completion_via.get_or_insert("websocket");
                                    return Err(ComfyError::Execution {
                                        url: self.base_url().to_owned(),
                                        error,
                                    });
                                }
                                WsEvent::ExecutionInterrupted { node_id, node_type, .. } => {
                                    run.completion_via.get_or_insert("websocket");
                                    return Err(ComfyError::Interrupted {
                                        prompt_id: id.to_owned(),
                                        node_id,
                                        node_type,
                                    });
                                }
                                _ => {}
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            ws = None;
                            run.notes.push("comfyui: WebSocket closed by the server; reconnecting, polling /history meanwhile".into());
                            reconnect_at = Some(Instant::now() + reconnect_backoff);
                        }
                        Some(Err(e)) => {
                            ws = None;
                            run.notes.push(format!("comfyui: WebSocket lost ({e}); reconnecting, polling /history meanwhile"));
                            reconnect_at = Some(Instant::now() + reconnect_backoff);
                        }
                        // Pings are answered by the library; binary frames are previews.
                        Some(Ok(_)) => {}
                    }
                    continue;
                }
                () = tokio::time::sleep_until(wake) => {}
            }
            let now = Instant::now();

            if let Some(at) = reconnect_at
                && now >= at
            {
                // Reconnecting takes the place of a poll only briefly: a server that does not
                // answer the upgrade is given a short bound, polling goes on regardless.
                let bound = self.timeout().min(WS_READY_MAX);
                match tokio::time::timeout(bound, self.open_socket(client_id)).await {
                    Ok(Ok(s)) => {
                        ws = Some(s);
                        run.ws_connects += 1;
                        reconnect_at = None;
                        reconnect_backoff = RECONNECT_MIN;
                        if run.ws_connects > 1 {
                            run.notes.push("comfyui: WebSocket reconnected".into());
                        }
                        // Frames sent while we were away are gone: ask /history now.
                        next_poll = Instant::now();
                    }
                    _ => {
                        reconnect_backoff = (reconnect_backoff * 2).min(RECONNECT_MAX);
                        reconnect_at = Some(Instant::now() + reconnect_backoff);
                    }
                }
            }

            if Instant::now() >= next_poll {
                run.polls += 1;
                match self.history(id).await {
                    Ok(Some(entry)) => {
                        last_contact = Instant::now();
                        run.completion_via.get_or_insert("history");
                        if run.cached_nodes.is_empty() {
                            run.cached_nodes = entry.cached_nodes.clone();
                        }
                        match &entry.status {
                            HistoryStatus::Error(error) => {
                                let error = error.clone();
                                run.entry = Some(entry);
                                return Err(ComfyError::Execution {
                                    url: self.base_url().to_owned(),
                                    error,
                                });
                            }
                            HistoryStatus::Interrupted { node_id, node_type } => {
                                let (node_id, node_type) = (node_id.clone(), node_type.clone());
                                run.entry = Some(entry);
                                return Err(ComfyError::Interrupted {
                                    prompt_id: id.to_owned(),
                                    node_id,
                                    node_type,
                                });
                            }
                            HistoryStatus::OtherError(s) => {
                                let message = format!(
                                    "prompt {id} ended with status `{s}` and no error message"
                                );
                                run.entry = Some(entry);
                                return Err(ComfyError::Protocol {
                                    url: self.base_url().to_owned(),
                                    message,
                                });
                            }
                            HistoryStatus::Success | HistoryStatus::Unknown => {
                                let has_outputs = !entry.outputs.is_empty();
                                if matches!(entry.status, HistoryStatus::Success) || has_outputs {
                                    signal_success(run, &mut post_deadline, opts);
                                }
                                run.entry = Some(entry);
                                if has_outputs {
                                    run.exit = HistoryExitReason::Success;
                                    return Ok(());
                                }
                            }
                        }
                    }
                    Ok(None) => {
                        last_contact = Instant::now();
                        // Not finished: still queued or running? A prompt that is neither was
                        // deleted by someone, or the server restarted and forgot it.
                        if post_deadline.is_none() {
                            match self.queue().await {
                                Ok(q) if !q.contains(id) => {
                                    // It may have finished between the two requests.
                                    run.polls += 1;
                                    match self.history(id).await {
                                        Ok(Some(_)) => {
                                            next_poll = Instant::now();
                                            continue;
                                        }
                                        Ok(None) => {
                                            return Err(ComfyError::Vanished {
                                                url: self.base_url().to_owned(),
                                                prompt_id: id.to_owned(),
                                            });
                                        }
                                        Err(_) => {}
                                    }
                                }
                                _ => {}
                            }
                        }
                    }
                    Err(e) => {
                        // A server that stops answering is given the service's request timeout
                        // to come back (a restart), then the attempt fails: never a hang.
                        if last_contact.elapsed() > self.timeout() {
                            run.notes.push(format!(
                                "comfyui: no answer from {} for {:.0} s",
                                self.base_url(),
                                last_contact.elapsed().as_secs_f64()
                            ));
                            return Err(e);
                        }
                    }
                }
                let now = Instant::now();
                next_poll = if post_deadline.is_some() {
                    let at = now + post_backoff;
                    post_backoff = (post_backoff * 2).min(poll_every);
                    at
                } else {
                    now + poll_every
                };
                if post_deadline.is_none() && opts.max_polls > 0 && run.polls >= opts.max_polls {
                    run.exit = HistoryExitReason::AttemptLimit;
                    let note = self.cancel_note(id).await;
                    return Err(ComfyError::AttemptLimit {
                        prompt_id: id.to_owned(),
                        polls: run.polls,
                        cancel_note: Some(note),
                    });
                }
            }

            let now = Instant::now();
            match post_deadline {
                Some(d) if now >= d => {
                    run.exit = HistoryExitReason::PostExecution;
                    run.post_execution_timeout_reached = true;
                    run.notes.push(format!(
                        "comfyui: prompt {id} ended but /history showed no outputs within post_execution_timeout_s = {} s",
                        opts.post_execution_timeout.as_secs_f64()
                    ));
                    return Ok(());
                }
                None if now >= deadline => {
                    run.exit = HistoryExitReason::MaxWait;
                    let note = self.cancel_note(id).await;
                    return Err(ComfyError::MaxWait {
                        prompt_id: id.to_owned(),
                        secs: opts.max_wait.as_secs_f64(),
                        cancel_note: Some(note),
                    });
                }
                _ => {}
            }
        }
    }
}

/// The end of the prompt was signalled (socket or history): start the post-execution window.
fn signal_success(run: &mut PromptRun, post_deadline: &mut Option<Instant>, opts: &FollowOptions) {
    if !run.success_detected {
        run.success_detected = true;
        run.success_at = Some(Timestamp::now());
        run.completion_via.get_or_insert("websocket");
    }
    if post_deadline.is_none() {
        *post_deadline = Some(Instant::now() + opts.post_execution_timeout);
    }
}
