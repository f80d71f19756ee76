//! `cinepipe doctor`: the checks as aligned lines with fix hints (or JSON), and the exit code:
//! 0 when nothing failed (warnings allowed), 1 when a check failed, 2 for a spec that broke a
//! rule.

use std::path::Path;

use super::args::PlanFormat;
use super::output::{exit_for, outln, render};
use crate::doctor::{self, DoctorReport, DoctorRequest, Status};
use crate::exit::ExitCode;
use crate::spec;

pub(crate) fn doctor(
    path: Option<&Path>,
    profile: Option<&str>,
    format: PlanFormat,
    min_free_gb: f64,
    color: bool,
) -> ExitCode {
    if !(min_free_gb.is_finite() && min_free_gb >= 0.0) {
        tracing::error!("error: --min-free-gb must be a number of GB, 0 or more");
        return ExitCode::Usage;
    }
    let spec = match path {
        Some(p) => match spec::load(p, profile) {
            Ok(c) => Some(c),
            Err(errors) => {
                eprint!("{}", render(&errors, color));
                return exit_for(&errors);
            }
        },
        None => None,
    };
    let rt = match super::output::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = rt.block_on(doctor::doctor(&DoctorRequest { spec, min_free_gb }));
    match format {
        PlanFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(j) => outln!("{j}"),
            Err(e) => {
                tracing::error!("error: {e}");
                return ExitCode::Io;
            }
        },
        PlanFormat::Text => print_text(&report),
    }
    if report.failed() {
        ExitCode::Failure
    } else {
        ExitCode::Success
    }
}

fn print_text(report: &DoctorReport) {
    outln!(
        "cinepipe doctor: {}",
        report
            .spec
            .as_deref()
            .unwrap_or("the default local ports (LLM 18080, ComfyUI 18188)")
    );
    let w_check = report
        .checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(0);
    let mut last_target = None;
    for c in &report.checks {
        if last_target != Some(&c.target) {
            outln!("{} {}", c.subject, c.target);
            last_target = Some(&c.target);
        }
        let status = match c.status {
            Status::Fail => "FAIL",
            s => s.as_str(),
        };
        outln!("  {status:<5} {:<w_check$}  {}", c.check, c.detail);
        if let Some(h) = &c.hint {
            outln!("  {:<5} {:<w_check$}  fix: {h}", "", "");
        }
    }
    let n = &report.counts;
    outln!(
        "{}: {} ok, {} warn, {} fail, {} skipped",
        if report.failed() {
            "not ready"
        } else {
            "ready"
        },
        n.ok,
        n.warn,
        n.fail,
        n.skip
    );
}
