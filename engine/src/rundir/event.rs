//! The run's events: one typed record per state change. They are the lines of `events.jsonl`
//! (what `--resume` replays) and what every observer (progress lines, later telemetry and
//! reports) is told.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::model::FailureClass;

/// The schema of one line of a run's `events.jsonl`.
pub fn run_events_schema() -> serde_json::Value {
    crate::json_schema::draft07::<Event>()
}

/// The version of the journal format, recorded in `run-started`. A resume refuses a journal of
/// another version rather than guessing what its lines mean.
pub const JOURNAL_VERSION: u32 = 1;

/// One stage instance: `story` for a stage that runs once, `render[2]` for the third item
/// (items count from 0) of a stage that runs once per item. A per-item stage named without an
/// item (`render`) stands for all of its instances: it appears only in `skipped`, when the list
/// it fans out over never came.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    pub stage: String,
    pub item: Option<u32>,
}

impl InstanceId {
    pub fn new(stage: impl Into<String>, item: Option<u32>) -> InstanceId {
        InstanceId {
            stage: stage.into(),
            item,
        }
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(i) => write!(f, "{}[{i}]", self.stage),
            None => f.write_str(&self.stage),
        }
    }
}

/// An instance id that is not `STAGE` or `STAGE[N]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a stage instance (`STAGE` or `STAGE[N]`)")]
pub struct BadInstanceId(pub String);

impl FromStr for InstanceId {
    type Err = BadInstanceId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadInstanceId(s.to_owned());
        let valid_name = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match s.strip_suffix(']') {
            Some(head) => {
                let (stage, item) = head.split_once('[').ok_or_else(bad)?;
                let item: u32 = item.parse().map_err(|_| bad())?;
                if !valid_name(stage) {
                    return Err(bad());
                }
                Ok(InstanceId::new(stage, Some(item)))
            }
            None if valid_name(s) => Ok(InstanceId::new(s, None)),
            None => Err(bad()),
        }
    }
}

impl Serialize for InstanceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for InstanceId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "InstanceId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A stage instance: `STAGE`, or `STAGE[N]` for item N (from 0) of a per-item stage.",
            "type": "string",
            "pattern": "^[A-Za-z0-9_-]+(\\[[0-9]+\\])?$",
            "examples": ["story", "render[2]"]
        })
    }
}

/// One line of `events.jsonl`: when, and what happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// When it happened (RFC 3339, UTC).
    #[schemars(extend("format" = "date-time"))]
    pub ts: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. `event` names the kind; the other fields depend on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    /// A run (session 1) or a resume of it (session 2, 3, …) started.
    RunStarted {
        /// The journal format (`JOURNAL_VERSION`).
        journal_version: u32,
        run_id: String,
        /// 1 for the first session, one more for each `--resume`.
        session: u32,
        /// The spec file, as given.
        spec: String,
        profile: String,
        /// Stage instances run at the same time, at most.
        jobs: u32,
        keep_going: bool,
        no_cache: bool,
        /// The cinepipe version that wrote the following lines.
        version: String,
        /// Stage kinds the spec uses that this cinepipe cannot run yet.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unbuilt_kinds: Vec<String>,
    },
    /// A list-producing stage finished: the stages that run once per item of `list` now have
    /// `count` instances each.
    FannedOut {
        /// `STAGE.FIELD`, e.g. `story.scenes`.
        list: String,
        count: u32,
    },
    /// An instance's needs were done and it was started for the first time in this session.
    InstanceStarted { instance: InstanceId },
    /// An attempt began. Attempts are numbered from 1 over the whole run, resumes included.
    AttemptStarted { instance: InstanceId, attempt: u32 },
    /// An attempt ended.
    AttemptFinished {
        instance: InstanceId,
        attempt: u32,
        outcome: AttemptOutcome,
        /// Wall time of the attempt, in seconds.
        duration_s: f64,
        /// Why it failed (failed and timed-out attempts).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<FailureClass>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The wait before the next attempt, when the failure is retried.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<f64>,
    },
    /// A later stage sent an item back to an earlier one (`on_short = { requeue = "…" }`):
    /// `target` runs again, spending its retry budget, and so does everything in `reset`.
    Requeued {
        /// The instance that asked (e.g. `frames[1]`).
        instance: InstanceId,
        /// The instance that runs again (e.g. `render[1]`).
        target: InstanceId,
        /// Every instance that is no longer done and runs again, `target` and `instance`
        /// included.
        reset: Vec<InstanceId>,
        class: FailureClass,
        /// Retries the target has left after this one.
        budget_left: u32,
    },
    /// An instance finished successfully.
    Succeeded {
        instance: InstanceId,
        /// Attempts it took, over the whole run.
        attempts: u32,
        /// It succeeded after at least one failed attempt.
        flaky: bool,
        /// Its output file, relative to the run folder (none when the output is empty).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// An instance failed for good: its retries are spent, its failure is not retried, or it
    /// could not run at all.
    Failed {
        instance: InstanceId,
        attempts: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<FailureClass>,
        error: String,
    },
    /// An instance will not run in this session.
    Skipped {
        instance: InstanceId,
        reason: SkipReason,
        /// What it waited for, e.g. ``needs `render[1]`, which failed``.
        detail: String,
    },
    /// The session ended with every instance done, or with failures.
    RunFinished {
        outcome: RunOutcome,
        /// Instances done, counting those done by earlier sessions.
        succeeded: u32,
        failed: u32,
        skipped: u32,
        /// Instances that succeeded after a failed attempt.
        flaky: u32,
        /// Wall time of this session, in seconds.
        duration_s: f64,
    },
    /// A person rated a scene (or the run) with `cinepipe feedback`; the rating itself is in
    /// `artifact-metadata.json` (`Feedback`). Written by another process than the run's, also
    /// while a session runs; a resume reads past it.
    FeedbackGiven {
        /// The scene rated; none for the run as a whole.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scene: Option<String>,
        /// 1 to 5.
        rating: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<String>,
    },
    /// The session was interrupted (Ctrl-C, SIGTERM); `cinepipe run --resume` finishes it.
    RunInterrupted {
        /// `SIGINT` or `SIGTERM`, when a signal was the cause.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<String>,
        succeeded: u32,
        /// Instances whose running attempt was cancelled.
        cancelled: u32,
        duration_s: f64,
    },
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
    /// It ran past its bound (class `timeout`).
    TimedOut,
    /// The run was interrupted while it ran.
    Cancelled,
    /// The stage implementation panicked (a bug, never retried).
    Crashed,
}

/// Why an instance did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// Something it needs failed or was skipped.
    NeedFailed,
    /// The run stopped scheduling after the first failure (no `--keep-going`).
    RunStopped,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    Succeeded,
    Failed,
    Interrupted,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

impl Event {
    /// An event stamped now.
    pub fn now(kind: EventKind) -> Event {
        Event {
            ts: now_rfc3339(),
            kind,
        }
    }
}

/// The current time, RFC 3339 in UTC with milliseconds.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_round_trip_and_bad_ones_are_refused() {
        for s in ["story", "render[0]", "render[12]", "a-b_c[3]"] {
            let id: InstanceId = s.parse().expect(s);
            assert_eq!(id.to_string(), s);
        }
        for s in [
            "",
            "render[",
            "render[x]",
            "render[-1]",
            "[1]",
            "a b",
            "render[1]x",
        ] {
            assert!(s.parse::<InstanceId>().is_err(), "{s}");
        }
    }

    #[test]
    fn events_are_flat_json_lines() {
        let e = Event {
            ts: "2026-11-21T12:03:05.000Z".into(),
            kind: EventKind::AttemptStarted {
                instance: InstanceId::new("render", Some(2)),
                attempt: 1,
            },
        };
        let line = serde_json::to_string(&e).expect("serializes");
        assert_eq!(
            line,
            r#"{"ts":"2026-11-21T12:03:05.000Z","event":"attempt-started","instance":"render[2]","attempt":1}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).expect("parses"), e);
    }
}
