//! `cinepipe verify <run-dir>` and the `validate` stage: a run's `artifact-metadata.json` against
//! the schema generated from the telemetry types, a few rules a schema cannot say, and
//! `run-summary.txt` against the metadata.
//!
//! Every problem is a [`Violation`] with a location a person can go to: a JSON pointer into the
//! metadata (`/Scenes/2/Telemetry/GPU/VramAfterMB: missing`), a line of the summary
//! (`run-summary.txt:7: ...`), or a whole file. Nothing here panics on a file's content.

mod rules;
mod schema;
mod summary;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use rules::check_rules;
use schema::check_schema;
use summary::cross_check;

use crate::telemetry::{METADATA_FILE, SUMMARY_FILE, Summary};

/// Where a violation is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Location {
    /// A JSON pointer into `artifact-metadata.json` (`""` is the whole document).
    Pointer(String),
    /// A line of a file (1-based).
    Line(&'static str, usize),
    /// A whole file.
    File(&'static str),
}

/// One way a run's files break the telemetry contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub location: Location,
    pub message: String,
}

impl Violation {
    fn at(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            location: Location::Pointer(pointer.into()),
            message: message.into(),
        }
    }

    fn line(n: usize, message: impl Into<String>) -> Self {
        Violation {
            location: Location::Line(SUMMARY_FILE, n),
            message: message.into(),
        }
    }

    fn file(name: &'static str, message: impl Into<String>) -> Self {
        Violation {
            location: Location::File(name),
            message: message.into(),
        }
    }

    /// The JSON pointer, when the violation is in the metadata.
    pub fn pointer(&self) -> Option<&str> {
        match &self.location {
            Location::Pointer(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            // The root has no pointer text; name the file instead of printing `: ...`.
            Location::Pointer(p) if p.is_empty() => write!(f, "{METADATA_FILE}: {}", self.message),
            Location::Pointer(p) => write!(f, "{p}: {}", self.message),
            Location::Line(file, n) => write!(f, "{file}:{n}: {}", self.message),
            Location::File(file) => write!(f, "{file}: {}", self.message),
        }
    }
}

/// The run folder itself could not be read (as opposed to a file in it, which is a violation).
#[derive(Debug, thiserror::Error)]
#[error("cannot read run folder `{}`: {source}", path.display())]
pub struct VerifyError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Checks the run folder `dir`. An empty list means the run keeps the contract.
pub fn verify_run(dir: &Path) -> Result<Vec<Violation>, VerifyError> {
    let err = |source| VerifyError {
        path: dir.to_path_buf(),
        source,
    };
    // Listing proves the folder is there and readable; a file that then cannot be read is the
    // file's problem.
    std::fs::read_dir(dir).map_err(err)?;
    let metadata = read(dir, METADATA_FILE);
    let summary = read(dir, SUMMARY_FILE);
    let mut out = Vec::new();
    let doc = match metadata {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(doc) => Some(doc),
            Err(e) => {
                out.push(Violation::file(
                    METADATA_FILE,
                    format!("not valid JSON: {e}"),
                ));
                None
            }
        },
        Err(unreadable) => {
            out.push(Violation::file(METADATA_FILE, unreadable.to_string()));
            None
        }
    };
    let summary = match summary {
        Ok(text) => Some(text),
        Err(unreadable) => {
            out.push(Violation::file(SUMMARY_FILE, unreadable.to_string()));
            None
        }
    };
    out.extend(verify_texts(doc.as_ref(), summary.as_deref()));
    Ok(out)
}

/// Why a contract file of the run folder could not be read: a violation of the file.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("missing")]
    Missing,
    #[error("not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("cannot be read: {0}")]
    Io(std::io::Error),
}

fn read(dir: &Path, name: &'static str) -> Result<String, Unreadable> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => {
            String::from_utf8(bytes).map_err(|e| Unreadable::NotUtf8(e.utf8_error().valid_up_to()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Unreadable::Missing),
        Err(e) => Err(Unreadable::Io(e)),
    }
}

/// Checks a parsed metadata document and a summary's text, either of which may be absent (its
/// absence is reported by the caller).
pub fn verify_texts(doc: Option<&Value>, summary: Option<&str>) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(doc) = doc {
        out.extend(check_schema(doc));
        let tainted: Vec<String> = out
            .iter()
            .filter_map(|v| v.pointer())
            .map(str::to_owned)
            .collect();
        out.extend(check_rules(doc, &Taint(&tainted)));
    }
    if let Some(text) = summary {
        let (lines, errors) = Summary::parse_lenient(text);
        for e in errors {
            out.push(Violation::line(e.line, e.message));
        }
        if let Some(doc) = doc {
            let tainted: Vec<String> = out
                .iter()
                .filter_map(|v| v.pointer())
                .map(str::to_owned)
                .collect();
            out.extend(cross_check(doc, &lines, &Taint(&tainted)));
        }
    }
    out
}

/// Pointers already reported: a value at or below one is not compared again, so that each
/// broken field is reported once, for its own reason.
struct Taint<'a>(&'a [String]);

impl Taint<'_> {
    fn hits(&self, pointer: &str) -> bool {
        self.0.iter().any(|v| {
            pointer == v
                || pointer
                    .strip_prefix(v.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::verify_texts;
    use crate::telemetry::Summary;
    use crate::telemetry::example::example;

    /// The example run with `edit` applied to its metadata, the summary written from the edited
    /// metadata (so only the metadata's own problems show), as printed violations.
    fn check(edit: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut doc = serde_json::to_value(example()).expect("serialises");
        edit(&mut doc);
        let summary = Summary::from_value(&doc).render();
        verify_texts(Some(&doc), Some(&summary))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn set(doc: &mut Value, pointer: &str, v: Value) {
        *doc.pointer_mut(pointer).expect(pointer) = v;
    }

    #[test]
    fn unions_are_reported_by_the_branch_meant() {
        let got = check(|d| {
            set(d, "/LLM/0/Health", Value::Null);
            set(d, "/Story", json!({"Title": 5, "StoryVersion": "1"}));
            set(
                d,
                "/StageAttemptSummaries/0/FailureClass",
                json!("short_frames"),
            );
            set(d, "/Scenes/2/Keyframe", json!(3));
        });
        assert_eq!(
            got,
            [
                "/Story/Title: expected string, found integer 5",
                "/LLM/0/Health: expected one of reachable, unavailable, found null",
                "/Scenes/2/Keyframe: expected string or null, found integer 3",
                "/StageAttemptSummaries/0/FailureClass: expected one of transport, timeout, \
server-error, invalid-output, truncated, token-range, slow, short-frames, node-error, \
execution-error, interrupted, found string \"short_frames\" (did you mean `short-frames`?)",
            ]
        );
        assert_eq!(
            check(|d| set(d, "/Story", json!("x"))),
            ["/Story: expected object or null, found string \"x\""]
        );
    }

    #[test]
    fn a_root_that_is_not_an_object_is_one_violation() {
        let got: Vec<String> = verify_texts(Some(&json!([])), Some(""))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "artifact-metadata.json: expected object, found array",
                "run-summary.txt: no `[Run <id>] Run:` line",
                "run-summary.txt: no `[Run <id>] QueueConfig:` line",
                "run-summary.txt: no `[Run <id>] Outcome:` line",
            ]
        );
    }

    #[test]
    fn rules_a_schema_cannot_say() {
        let got = check(|d| set(d, "/Scenes/2/SceneId", json!("scene-1")));
        assert!(
            got.contains(
                &"/Scenes/2/SceneId: duplicate scene id `scene-1` (also /Scenes/0/SceneId)"
                    .to_owned()
            ),
            "{got:#?}"
        );
        let got = check(|d| {
            set(d, "/Scenes/0/Telemetry/HistoryAttemptLimit", json!(3));
        });
        assert_eq!(
            got,
            ["/Scenes/0/Telemetry/HistoryAttempts: 45 polls exceed HistoryAttemptLimit 3"]
        );
        let got = check(|d| set(d, "/Scenes/2/Telemetry/GPU/VramDeltaMB", json!(0)));
        assert_eq!(
            got,
            [
                "/Scenes/2/Telemetry/GPU/VramDeltaMB: must be null when VramBeforeMB or \
VramAfterMB is null, found 0"
            ]
        );
        let got = check(|d| set(d, "/Scenes/0/Telemetry/GPU/VramDeltaMB", Value::Null));
        assert_eq!(
            got,
            [
                "/Scenes/0/Telemetry/GPU/VramDeltaMB: must be VramAfterMB - VramBeforeMB when \
both are known, found null"
            ]
        );
        let got = check(|d| {
            set(
                d,
                "/Scenes/1/Telemetry/ExecutionSuccessDetected",
                json!(false),
            );
        });
        assert_eq!(
            got,
            [
                "/Scenes/1/Telemetry/ExecutionSuccessDetected: must be true when \
HistoryExitReason is success"
            ]
        );
    }

    #[test]
    fn the_weighted_scores_must_be_derived_from_the_checks() {
        // The example: three checks all passed, scene-2 has one of them.
        assert_eq!(check(|_| {}), Vec::<String>::new());
        // The diversity check (weight 2 of 4) failed: the run's score is 2/4; scene-2's own
        // check still passed.
        let got = check(|d| set(d, "/QualityMetrics/Checks/1/Passed", json!(false)));
        assert_eq!(
            got,
            [
                "/QualityMetrics/Score: must be the weighted share of its checks passed, 0.5, found 1.0"
            ]
        );
        let got = check(|d| {
            set(d, "/QualityMetrics/Checks/1/Passed", json!(false));
            set(d, "/QualityMetrics/Score", json!(0.5));
            set(d, "/Scenes/2/QualityMetrics/Score", json!(1.0));
            set(d, "/Scenes/1/QualityMetrics/Score", json!(0.0));
        });
        assert_eq!(
            got,
            [
                "/Scenes/1/QualityMetrics/Score: must be the weighted share of its checks \
passed, 1, found 0.0",
                "/Scenes/2/QualityMetrics/Score: must be the weighted share of its checks \
passed, null, found 1.0",
            ]
        );
    }

    #[test]
    fn a_never_queued_scene_keeps_the_contract() {
        // The shape the executor writes for a scene that failed before `queue`: every field,
        // readings null, counts 0, flags false, reason `unknown`.
        let got = check(|d| {
            let t = d.pointer_mut("/Scenes/1/Telemetry").expect("telemetry");
            for k in [
                "QueueStart",
                "QueueEnd",
                "ExecutionSuccessAt",
                "DoneMarkerWaitSeconds",
            ] {
                t[k] = Value::Null;
            }
            t["DurationSeconds"] = json!(0);
            t["HistoryAttempts"] = json!(0);
            t["HistoryExitReason"] = json!("unknown");
            t["ExecutionSuccessDetected"] = json!(false);
            t["DoneMarkerDetected"] = json!(false);
            t["GPU"] = serde_json::to_value(crate::telemetry::GpuTelemetry::none()).expect("gpu");
            set(d, "/Scenes/1/Outcome", json!("failed"));
        });
        assert!(got.is_empty(), "{got:#?}");
    }
}
