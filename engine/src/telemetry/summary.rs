//! `run-summary.txt`: the run's telemetry as lines a person (or `grep`) reads, written from
//! `artifact-metadata.json` and parsed back so that `cinepipe verify` can hold one to the other.
//!
//! Every line is `[<Run|Scene> <id>] <Label>: <payload>`:
//!
//! ```text
//! [Run 01JCX0Q5] Run: ContractVersion=1 Name=story-to-video Profile=fast StartedAt=… EndedAt=…
//! [Run 01JCX0Q5] QueueConfig: SceneRetryBudget=1 HistoryMaxWaitSeconds=600.0 …
//! [Run 01JCX0Q5] LLM: Stage=story Provider=lmstudio Model=mistral-7b … Error=null
//! [Scene scene-1] Telemetry: DurationSeconds=45.2 QueueStart=… HistoryExitReason=success …
//! [Scene scene-1] FallbackNote: GPU readings from nvidia-smi: NVML is not installed
//! [Run 01JCX0Q5] Outcome: success Scenes=3 Succeeded=3 Failed=0 … Frames=75 QualityPassed=true
//! ```
//!
//! Payloads are `key=value` pairs in a fixed order. A value is `null`, `true`, `false`, a JSON
//! number, or a string: bare when that reads back as the same string, else JSON-quoted
//! (`GPU.Name="NVIDIA GeForce RTX 3090"`). Arrays are written as their length. `FallbackNote`
//! lines carry one note each, as text. Lines starting with `#` and blank lines are comments.
//!
//! The keys and where each comes from in the metadata are one table (in `fields`), used by
//! the writer and by the cross-check alike, so the two cannot disagree about a key.

use std::fmt::Write as _;

use serde_json::Value;

use crate::artifact_metadata::ArtifactMetadata;

mod fields;

pub(crate) use fields::Extract;
use fields::{
    LLM_FIELDS, NOTE, OUTCOME, OUTCOME_FIELDS, QUEUE_CONFIG_FIELDS, RUN_FIELDS, RUN_LABELS,
    SCENE_LABELS, TELEMETRY_FIELDS,
};

/// Who a line is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `[Run <run-id>]`
    Run(String),
    /// `[Scene <scene-id>]`
    Scene(String),
}

/// One `key=value` pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub key: String,
    pub value: Value,
}

/// What follows the label.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `key=value` pairs (the `Outcome` line's first value is written without `Outcome=`).
    Fields(Vec<Field>),
    /// Free text (`FallbackNote` lines).
    Text(String),
}

/// One line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub subject: Subject,
    pub label: String,
    pub payload: Payload,
}

impl Line {
    /// The value of `key`, for lines with fields.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match &self.payload {
            Payload::Fields(fs) => fs.iter().find(|f| f.key == key).map(|f| &f.value),
            Payload::Text(_) => None,
        }
    }
}

/// A whole `run-summary.txt`, line by line (comments dropped).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub lines: Vec<Line>,
}

/// A line that is not a summary line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Why a line is not a summary line: the `message` of its [`ParseError`].
#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("expected `[Scene <id>] <Label>: ...` or `[Run <id>] <Label>: ...`")]
    Shape,
    #[error("bad quoted string {literal}: {source}")]
    BadQuoted {
        literal: String,
        source: serde_json::Error,
    },
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("empty id in `[...]`")]
    EmptyId,
    #[error("unknown label `{label}` (expected one of {expected})")]
    UnknownLabel { label: String, expected: String },
    #[error("text after the quoted note")]
    TextAfterNote,
    #[error("expected `key=value`, found `{0}`")]
    NotKeyValue(String),
    #[error("a `=value` without its key")]
    NoKey,
    #[error("text right after the quoted value of `{0}`")]
    TextAfterValue(String),
    #[error("`{0}` given twice")]
    Repeated(String),
}

/// The summary of a run, as the executor writes it: a pure function of the metadata.
pub fn write_summary(metadata: &ArtifactMetadata) -> String {
    Summary::from_metadata(metadata).render()
}

impl Summary {
    /// The lines `run-summary.txt` must have for this metadata.
    pub fn from_metadata(metadata: &ArtifactMetadata) -> Summary {
        // Through JSON on purpose: the keys are read with the same pointers the cross-check
        // uses on a file, so writer and checker share one table. Serialising our own types
        // cannot fail (no maps with non-string keys, no non-finite floats are produced by
        // serde_json's Value conversion; NaN becomes null).
        let doc = serde_json::to_value(metadata).unwrap_or(Value::Null);
        Summary::from_value(&doc)
    }

    /// The expected lines for a metadata document, leaving out values the document lacks.
    pub fn from_value(doc: &Value) -> Summary {
        Summary {
            lines: expected_lines(doc).into_iter().map(|e| e.line).collect(),
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# cinepipe run summary: one [Scene <id>] Telemetry line per scene; \
artifact-metadata.json has the full record\n",
        );
        for line in &self.lines {
            let (kind, id) = match &line.subject {
                Subject::Run(id) => ("Run", id),
                Subject::Scene(id) => ("Scene", id),
            };
            let _ = write!(s, "[{kind} {}] {}:", id_text(id), line.label);
            match &line.payload {
                Payload::Text(t) => {
                    s.push(' ');
                    s.push_str(&text_value(t));
                }
                Payload::Fields(fields) => {
                    for (i, f) in fields.iter().enumerate() {
                        s.push(' ');
                        if !(i == 0 && line.label == OUTCOME && f.key == OUTCOME) {
                            s.push_str(&f.key);
                            s.push('=');
                        }
                        s.push_str(&value_text(&f.value));
                    }
                }
            }
            s.push('\n');
        }
        s
    }

    /// Parses a summary, with every line that is not a summary line as an error.
    pub fn parse(text: &str) -> Result<Summary, Vec<ParseError>> {
        let (lines, errors) = Summary::parse_lenient(text);
        if errors.is_empty() {
            Ok(Summary {
                lines: lines.into_iter().map(|(_, l)| l).collect(),
            })
        } else {
            Err(errors)
        }
    }

    /// Parses what can be parsed: the good lines with their line numbers, and the errors.
    pub(crate) fn parse_lenient(text: &str) -> (Vec<(usize, Line)>, Vec<ParseError>) {
        let mut lines = Vec::new();
        let mut errors = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim_end_matches('\r');
            if t.trim().is_empty() || t.starts_with('#') {
                continue;
            }
            match parse_line(t) {
                Ok(l) => lines.push((i + 1, l)),
                Err(e) => errors.push(ParseError {
                    line: i + 1,
                    message: e.to_string(),
                }),
            }
        }
        (lines, errors)
    }
}

/// An expected line, with where its values come from.
pub(crate) struct Expected {
    pub line: Line,
    /// The pointer of what the line is about (`/Scenes/2`, `/LLM/0`, ``).
    pub pointer: String,
    /// For `Fields` lines: the table the fields were read with (fields the metadata lacks are
    /// left out of `line`, but not of this).
    pub sources: &'static [(&'static str, Extract)],
}

pub(crate) fn expected_lines(doc: &Value) -> Vec<Expected> {
    let run_id = doc
        .get("RunId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let run = || Subject::Run(run_id.clone());
    let mut out = Vec::new();
    let fields_line = |subject: Subject, label: &str, base: &str, sources| Expected {
        line: Line {
            subject,
            label: label.to_owned(),
            payload: Payload::Fields(read_fields(doc, base, sources)),
        },
        pointer: base.to_owned(),
        sources,
    };
    out.push(fields_line(run(), "Run", "", RUN_FIELDS));
    out.push(fields_line(
        run(),
        "QueueConfig",
        "/QueueConfig",
        QUEUE_CONFIG_FIELDS,
    ));
    for (j, _) in array(doc, "/LLM").iter().enumerate() {
        out.push(fields_line(run(), "LLM", &format!("/LLM/{j}"), LLM_FIELDS));
    }
    for (k, note) in array(doc, "/System/FallbackNotes").iter().enumerate() {
        if let Some(n) = note.as_str() {
            out.push(note_line(run(), n, format!("/System/FallbackNotes/{k}")));
        }
    }
    for (i, scene) in array(doc, "/Scenes").iter().enumerate() {
        let Some(id) = scene.get("SceneId").and_then(Value::as_str) else {
            continue;
        };
        let base = format!("/Scenes/{i}");
        out.push(fields_line(
            Subject::Scene(id.to_owned()),
            "Telemetry",
            &base,
            TELEMETRY_FIELDS,
        ));
        let notes = array(scene, "/Telemetry/System/FallbackNotes");
        for (k, note) in notes.iter().enumerate() {
            if let Some(n) = note.as_str() {
                out.push(note_line(
                    Subject::Scene(id.to_owned()),
                    n,
                    format!("{base}/Telemetry/System/FallbackNotes/{k}"),
                ));
            }
        }
    }
    out.push(fields_line(run(), OUTCOME, "", OUTCOME_FIELDS));
    out
}

fn note_line(subject: Subject, note: &str, pointer: String) -> Expected {
    Expected {
        line: Line {
            subject,
            label: NOTE.to_owned(),
            payload: Payload::Text(note.to_owned()),
        },
        pointer,
        sources: &[],
    }
}

fn array<'a>(doc: &'a Value, pointer: &str) -> &'a [Value] {
    doc.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn read_fields(doc: &Value, base: &str, sources: &[(&'static str, Extract)]) -> Vec<Field> {
    sources
        .iter()
        .filter_map(|(key, ex)| {
            ex.value(doc, base).map(|value| Field {
                key: (*key).to_owned(),
                value,
            })
        })
        .collect()
}

/// How a bare token reads back.
fn bare_value(token: &str) -> Value {
    match token {
        "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match serde_json::from_str::<Value>(token) {
            Ok(v @ Value::Number(_)) => v,
            _ => Value::String(token.to_owned()),
        },
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let bare = !s.is_empty()
                && !s.starts_with('"')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && bare_value(s) == *v;
            if bare {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        other => other.to_string(),
    }
}

fn text_value(t: &str) -> String {
    let plain =
        !t.is_empty() && !t.starts_with('"') && t.trim() == t && !t.chars().any(char::is_control);
    if plain {
        t.to_owned()
    } else {
        Value::String(t.to_owned()).to_string()
    }
}

fn id_text(id: &str) -> String {
    let plain = !id.is_empty()
        && !id.starts_with('"')
        && !id
            .chars()
            .any(|c| c == ']' || c.is_whitespace() || c.is_control());
    if plain {
        id.to_owned()
    } else {
        Value::String(id.to_owned()).to_string()
    }
}

/// Reads a JSON string at the start of `s`; returns it and the rest.
fn json_string(s: &str) -> Result<(String, &str), LineError> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let lit = &s[..=i];
                let v: String =
                    serde_json::from_str(lit).map_err(|source| LineError::BadQuoted {
                        literal: lit.to_owned(),
                        source,
                    })?;
                return Ok((v, &s[i + 1..]));
            }
            _ => {}
        }
    }
    Err(LineError::Unterminated)
}

fn parse_line(line: &str) -> Result<Line, LineError> {
    let rest = line.strip_prefix('[').ok_or(LineError::Shape)?;
    let (scene, rest) = if let Some(r) = rest.strip_prefix("Scene ") {
        (true, r)
    } else if let Some(r) = rest.strip_prefix("Run ") {
        (false, r)
    } else {
        return Err(LineError::Shape);
    };
    let (id, rest) = if rest.starts_with('"') {
        let (id, r) = json_string(rest)?;
        let r = r.strip_prefix(']').ok_or(LineError::Shape)?;
        (id, r)
    } else {
        let end = rest.find(']').ok_or(LineError::Shape)?;
        (rest[..end].to_owned(), &rest[end + 1..])
    };
    if id.is_empty() {
        return Err(LineError::EmptyId);
    }
    let rest = rest.strip_prefix(' ').ok_or(LineError::Shape)?;
    let colon = rest.find(':').ok_or(LineError::Shape)?;
    let label = &rest[..colon];
    let payload = rest[colon + 1..].strip_prefix(' ').unwrap_or("");
    let labels = if scene { SCENE_LABELS } else { RUN_LABELS };
    if !labels.contains(&label) {
        return Err(LineError::UnknownLabel {
            label: label.to_owned(),
            expected: labels.join(", "),
        });
    }
    let subject = if scene {
        Subject::Scene(id)
    } else {
        Subject::Run(id)
    };
    let payload = if label == NOTE {
        if payload.starts_with('"') {
            let (t, r) = json_string(payload)?;
            if !r.trim().is_empty() {
                return Err(LineError::TextAfterNote);
            }
            Payload::Text(t)
        } else {
            Payload::Text(payload.to_owned())
        }
    } else {
        Payload::Fields(parse_fields(payload, label == OUTCOME)?)
    };
    Ok(Line {
        subject,
        label: label.to_owned(),
        payload,
    })
}

fn parse_fields(mut s: &str, outcome_first: bool) -> Result<Vec<Field>, LineError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut first = true;
    loop {
        s = s.trim_start_matches(' ');
        if s.is_empty() {
            break;
        }
        let token_end = s.find(' ').unwrap_or(s.len());
        let (key, value_start) = match s[..token_end].find('=') {
            Some(eq) => (s[..eq].to_owned(), &s[eq + 1..]),
            None if first && outcome_first => (OUTCOME.to_owned(), s),
            None => return Err(LineError::NotKeyValue(s[..token_end].to_owned())),
        };
        first = false;
        if key.is_empty() {
            return Err(LineError::NoKey);
        }
        let (value, rest) = if value_start.starts_with('"') {
            let (v, r) = json_string(value_start)?;
            if !(r.is_empty() || r.starts_with(' ')) {
                return Err(LineError::TextAfterValue(key));
            }
            (Value::String(v), r)
        } else {
            let end = value_start.find(' ').unwrap_or(value_start.len());
            (bare_value(&value_start[..end]), &value_start[end..])
        };
        if fields.iter().any(|f| f.key == key) {
            return Err(LineError::Repeated(key));
        }
        fields.push(Field { key, value });
        s = rest;
    }
    Ok(fields)
}

#[cfg(test)]
mod tests;
