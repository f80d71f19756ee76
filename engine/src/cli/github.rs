//! What `cinepipe sweep` tells GitHub Actions (`GITHUB_ACTIONS=true`): an error annotation per
//! failing (spec, profile) and a warning per flaky one, each pointing at the spec file and the
//! line of the stage that failed most, ranked worst first and capped at GitHub's 10 per kind
//! and step (the rest counted in a plain line); and a Markdown table appended to
//! `$GITHUB_STEP_SUMMARY`. Without GitHub Actions nothing of this is printed.

use std::io::Write;
use std::path::Path;

use crate::spec::source::{self, SpecSource};
use crate::sweep::suite::Suite;
use crate::sweep::verdict::{SpecVerdict, SweepReport};

/// GitHub shows at most this many annotations of one kind per step.
const PER_KIND: usize = 10;

/// Whether this process runs as a GitHub Actions step.
pub(crate) fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Whether this process runs under a CI service (`CI` set, as GitHub Actions, GitLab CI,
/// Buildkite and others set it, and not `false`/`0`): its log wants plain lines, not a live
/// display, even where the log is a pty.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The workflow commands for `report` (lines for stdout).
pub(crate) fn annotations(report: &SweepReport, suite: &Suite) -> Vec<String> {
    let mut out = Vec::new();
    let failing: Vec<&SpecVerdict> = report
        .verdicts
        .iter()
        .filter(|v| !v.gate_failures.is_empty())
        .collect();
    let flaky: Vec<&SpecVerdict> = report
        .verdicts
        .iter()
        .filter(|v| v.gate_failures.is_empty() && !v.warnings.is_empty())
        .collect();
    for (kind, list) in [("error", failing), ("warning", flaky)] {
        for v in list.iter().take(PER_KIND) {
            let lines = if kind == "error" {
                &v.gate_failures
            } else {
                &v.warnings
            };
            let mut message = lines.join("; ");
            if let Some((what, n)) = v.failures.first() {
                message.push_str(&format!("; most failed attempts: {what} ({n})"));
            }
            let (file, line) = location(v, suite);
            out.push(format!(
                "::{kind} file={},line={line},title={}::{}",
                property(&file),
                property(&format!(
                    "cinepipe sweep: {} [{}] {}",
                    v.spec, v.profile, v.status
                )),
                data(&message)
            ));
        }
        if list.len() > PER_KIND {
            out.push(format!(
                "cinepipe sweep: {} more {kind}s not annotated (GitHub shows {PER_KIND} per step); see sweep.json",
                list.len() - PER_KIND
            ));
        }
    }
    out
}

/// The spec file of `v` and the line of the stage that failed most (else line 1).
fn location(v: &SpecVerdict, suite: &Suite) -> (String, usize) {
    let Some(spec) = suite.specs.iter().find(|s| s.name == v.spec) else {
        return (v.spec.clone(), 1);
    };
    let file = spec.path.display().to_string();
    let stage = v
        .failures
        .first()
        .and_then(|(what, _)| what.split_once(':'))
        .map(|(stage, _)| stage.trim().to_owned());
    let line = stage
        .and_then(|stage| line_of_stage(&spec.path, &stage))
        .unwrap_or(1);
    (file, line)
}

fn line_of_stage(path: &Path, stage: &str) -> Option<usize> {
    let src = SpecSource::read(path).ok()?;
    let (_, index) = source::parse(&src).ok()?;
    let at = index
        .get(&format!("/stages/{}", source::escape_segment(stage)))?
        .entry()
        .start;
    Some(src.text.get(..at)?.matches('\n').count() + 1)
}

/// Escapes a workflow command's message.
fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Appends the verdict table to the file `$GITHUB_STEP_SUMMARY` names, if it names one.
pub(crate) fn step_summary(report: &SweepReport) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let mut md = format!(
        "### cinepipe sweep `{}`{}: {}\n\n{}/{} runs\n\n| status | spec | profile | passed | pass rate (95 % CI) | top failure | gates |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        report.suite,
        report
            .partition
            .as_ref()
            .map(|p| format!(" (shard {p})"))
            .unwrap_or_default(),
        report.result,
        report.finished,
        report.planned
    );
    for v in &report.verdicts {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        md.push_str(&format!(
            "| {} | `{}` | {} | {}/{} | {:.0} % ({:.0}–{:.0} %) | {} | {} |\n",
            v.status,
            cell(&v.spec),
            cell(&v.profile),
            v.passed,
            v.runs,
            v.pass_rate * 100.0,
            v.pass_rate_low * 100.0,
            v.pass_rate_high * 100.0,
            v.failures
                .first()
                .map(|(w, n)| format!("{} ({n})", cell(w)))
                .unwrap_or_default(),
            if v.gate_failures.is_empty() {
                "met".to_owned()
            } else {
                cell(&v.gate_failures.join("; "))
            }
        ));
    }
    md.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(md.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_command_values_are_escaped() {
        assert_eq!(data("50% done\nnext"), "50%25 done%0Anext");
        assert_eq!(property("a:b,c"), "a%3Ab%2Cc");
    }
}
