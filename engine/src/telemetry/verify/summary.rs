//! `run-summary.txt` against the metadata: every line the metadata calls for, with the values
//! it holds.

use std::collections::HashSet;

use serde_json::Value;

use super::{Taint, Violation};
use crate::telemetry::{
    Expected, Extract, Line, METADATA_FILE, Payload, SUMMARY_FILE, Subject, expected_lines,
};

pub(super) fn cross_check(
    doc: &Value,
    lines: &[(usize, Line)],
    taint: &Taint<'_>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let expected = expected_lines(doc);
    let run_id = doc.get("RunId").and_then(Value::as_str);
    // The run's id names every `[Run ...]` line; one disagreement is enough to say so.
    if let Some(id) = run_id.filter(|_| !taint.hits("/RunId")) {
        let wrong = lines.iter().find(|(_, l)| match &l.subject {
            Subject::Run(r) => r != id,
            Subject::Scene(_) => false,
        });
        if let Some((
            n,
            Line {
                subject: Subject::Run(r),
                ..
            },
        )) = wrong
        {
            out.push(Violation::at(
                "/RunId",
                format!("{SUMMARY_FILE} line {n} says [Run {r}], {METADATA_FILE} says {id}"),
            ));
        }
    }

    // Run lines that occur once.
    for label in ["Run", "QueueConfig", "Outcome"] {
        let found: Vec<&(usize, Line)> = lines
            .iter()
            .filter(|(_, l)| matches!(l.subject, Subject::Run(_)) && l.label == label)
            .collect();
        let exp = expected
            .iter()
            .find(|e| matches!(e.line.subject, Subject::Run(_)) && e.line.label == label);
        match (found.as_slice(), exp) {
            ([], _) => out.push(Violation::file(
                SUMMARY_FILE,
                format!("no `[Run <id>] {label}:` line"),
            )),
            ([(n, line), rest @ ..], Some(e)) => {
                compare_fields(doc, e, *n, line, taint, &mut out);
                for (m, _) in rest {
                    out.push(Violation::line(
                        *m,
                        format!("second `{label}:` line of the run"),
                    ));
                }
            }
            _ => {}
        }
    }

    // Lists: the LLM lines and the run's notes, in order.
    let llm_found: Vec<&(usize, Line)> = run_lines(lines, "LLM");
    let llm_exp: Vec<&Expected> = expected_run(&expected, "LLM");
    if !taint.hits("/LLM") && doc.get("LLM").is_some_and(Value::is_array) {
        if llm_found.len() != llm_exp.len() {
            out.push(Violation::at(
                "/LLM",
                format!(
                    "{SUMMARY_FILE} has {} LLM line(s), {METADATA_FILE} has {} entr{}",
                    llm_found.len(),
                    llm_exp.len(),
                    if llm_exp.len() == 1 { "y" } else { "ies" }
                ),
            ));
        }
        for ((n, line), e) in llm_found.iter().zip(&llm_exp) {
            compare_fields(doc, e, *n, line, taint, &mut out);
        }
    }
    let notes_found: Vec<&(usize, Line)> = run_lines(lines, "FallbackNote");
    let notes_exp: Vec<&Expected> = expected_run(&expected, "FallbackNote");
    compare_notes(
        "/System/FallbackNotes",
        "the run",
        &notes_found,
        &notes_exp,
        doc,
        taint,
        &mut out,
    );

    // Scenes: the same ids, each with one Telemetry line that agrees with the metadata.
    let scenes_known = doc.get("Scenes").is_some_and(Value::is_array) && !taint.hits("/Scenes");
    let ids: HashSet<&str> = expected
        .iter()
        .filter_map(|e| match &e.line.subject {
            Subject::Scene(id) => Some(id.as_str()),
            Subject::Run(_) => None,
        })
        .collect();
    let mut done: HashSet<&str> = HashSet::new();
    for e in expected.iter().filter(|e| e.line.label == "Telemetry") {
        let Subject::Scene(id) = &e.line.subject else {
            continue;
        };
        if !done.insert(id.as_str()) {
            // A duplicate id in the metadata, already reported by the rules.
            continue;
        }
        let found: Vec<&(usize, Line)> = scene_lines(lines, id, "Telemetry");
        match found.as_slice() {
            [] => out.push(Violation::at(
                e.pointer.clone(),
                format!("scene `{id}` has no `[Scene {id}] Telemetry:` line in {SUMMARY_FILE}"),
            )),
            [(n, line), rest @ ..] => {
                compare_fields(doc, e, *n, line, taint, &mut out);
                for (m, _) in rest {
                    out.push(Violation::line(
                        *m,
                        format!("second `Telemetry:` line of scene `{id}`"),
                    ));
                }
            }
        }
        let notes_found = scene_lines(lines, id, "FallbackNote");
        let notes_exp: Vec<&Expected> = expected
            .iter()
            .filter(|x| {
                x.line.label == "FallbackNote"
                    && matches!(&x.line.subject, Subject::Scene(s) if s == id)
            })
            .collect();
        compare_notes(
            &format!("{}/Telemetry/System/FallbackNotes", e.pointer),
            &format!("scene `{id}`"),
            &notes_found,
            &notes_exp,
            doc,
            taint,
            &mut out,
        );
    }
    if scenes_known {
        for (n, line) in lines {
            if let Subject::Scene(id) = &line.subject
                && !ids.contains(id.as_str())
            {
                out.push(Violation::line(
                    *n,
                    format!("scene `{id}` is not in {METADATA_FILE}"),
                ));
            }
        }
    }
    out
}

fn run_lines<'l>(lines: &'l [(usize, Line)], label: &str) -> Vec<&'l (usize, Line)> {
    lines
        .iter()
        .filter(|(_, l)| matches!(l.subject, Subject::Run(_)) && l.label == label)
        .collect()
}

fn scene_lines<'l>(lines: &'l [(usize, Line)], id: &str, label: &str) -> Vec<&'l (usize, Line)> {
    lines
        .iter()
        .filter(|(_, l)| matches!(&l.subject, Subject::Scene(s) if s == id) && l.label == label)
        .collect()
}

fn expected_run<'e>(expected: &'e [Expected], label: &str) -> Vec<&'e Expected> {
    expected
        .iter()
        .filter(|e| matches!(e.line.subject, Subject::Run(_)) && e.line.label == label)
        .collect()
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare_fields(
    doc: &Value,
    e: &Expected,
    n: usize,
    line: &Line,
    taint: &Taint<'_>,
    out: &mut Vec<Violation>,
) {
    let Payload::Fields(found) = &line.payload else {
        return;
    };
    for (key, ex) in e.sources {
        if ex.sources(doc, &e.pointer).iter().any(|p| taint.hits(p)) {
            continue;
        }
        let Some(want) = ex.value(doc, &e.pointer) else {
            continue;
        };
        let at = ex.pointer(&e.pointer);
        match found.iter().find(|f| f.key == *key) {
            None => out.push(Violation::at(
                at,
                format!("{SUMMARY_FILE} line {n} has no `{key}`"),
            )),
            Some(f) if !same(&f.value, &want) => {
                let detail = if matches!(ex, Extract::Value(_)) {
                    String::new()
                } else {
                    format!("{key}=")
                };
                out.push(Violation::at(
                    at,
                    format!(
                        "{SUMMARY_FILE} line {n} says {detail}{}, {METADATA_FILE} says {detail}{}",
                        shown(&f.value),
                        shown(&want)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    for f in found {
        if !e.sources.iter().any(|(k, _)| *k == f.key) {
            out.push(Violation::line(n, format!("unknown key `{}`", f.key)));
        }
    }
}

fn compare_notes(
    pointer: &str,
    whose: &str,
    found: &[&(usize, Line)],
    expected: &[&Expected],
    doc: &Value,
    taint: &Taint<'_>,
    out: &mut Vec<Violation>,
) {
    if taint.hits(pointer) || !doc.pointer(pointer).is_some_and(Value::is_array) {
        return;
    }
    let text = |l: &Line| match &l.payload {
        Payload::Text(t) => t.clone(),
        Payload::Fields(_) => String::new(),
    };
    let got: Vec<String> = found.iter().map(|(_, l)| text(l)).collect();
    let want: Vec<String> = expected.iter().map(|e| text(&e.line)).collect();
    if got.len() != want.len() {
        out.push(Violation::at(
            pointer,
            format!(
                "{SUMMARY_FILE} has {} FallbackNote line(s) for {whose}, {METADATA_FILE} has {} note(s)",
                got.len(),
                want.len()
            ),
        ));
        return;
    }
    for (k, ((n, _), (g, w))) in found.iter().zip(got.iter().zip(&want)).enumerate() {
        if g != w {
            out.push(Violation::at(
                format!("{pointer}/{k}"),
                format!("{SUMMARY_FILE} line {n} says {g:?}, {METADATA_FILE} says {w:?}"),
            ));
        }
    }
}
