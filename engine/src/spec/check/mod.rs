//! The rules a spec must obey that its types cannot say: references between stages and
//! services, the shape of the graph, fan-out, files, templates and patch targets.
//!
//! [`Checker`] checks one document (the spec, or the spec with a profile laid over it); each
//! concern is a file of its own:
//! - [`graph`]: stage names, `needs`, cycles, fan-out (`for_each`) and `on_short` requeues;
//! - [`services`]: services, their URLs and fallbacks, and references to them;
//! - [`files`]: files the spec names, read once each, and how their problems are reported;
//! - [`llm`]: prompt templates and output schemas of `llm` stages;
//! - [`patch`]: patch targets and templates of `patch-workflow` stages;
//! - [`retry`]: retry policies;
//! - [`kinds`]: the other kinds' own rules.

mod files;
mod graph;
mod kinds;
mod llm;
mod parsed;
mod patch;
mod retry;
mod services;

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;

use serde_json::Value;

use super::diagnostic::{Code, SpecDiagnostic};
use super::graph::StageGraph;
use super::model::{ServiceKind, Stage, StageKind};
use super::source::{SpanIndex, SpecSource, escape_segment};

pub use files::{FileError, Files, base_dir, tidy};
pub use parsed::Parsed;

/// Checks one document (the spec, or the spec with a profile laid over it).
pub struct Checker<'a> {
    pub source: &'a SpecSource,
    pub index: &'a SpanIndex,
    pub doc: &'a Value,
    pub parsed: &'a Parsed,
    pub base_dir: PathBuf,
    pub files: &'a mut Files,
    pub out: &'a mut Vec<SpecDiagnostic>,
    /// Check the values of only these entries (`stages/NAME`, `services/NAME`, `run`).
    pub only: Option<HashSet<String>>,
}

fn stage_ptr(name: &str) -> String {
    format!("/stages/{}", escape_segment(name))
}

fn service_ptr(name: &str) -> String {
    format!("/services/{}", escape_segment(name))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'a> Checker<'a> {
    fn value_span(&self, ptr: &str) -> Range<usize> {
        self.index.nearest(ptr).value
    }

    fn entry_span(&self, ptr: &str) -> Range<usize> {
        self.index.nearest(ptr).entry()
    }

    fn err(
        &mut self,
        code: Code,
        msg: String,
        span: Range<usize>,
        label: &str,
        help: Option<String>,
    ) {
        self.out.push(
            SpecDiagnostic::new(self.source, code, msg)
                .label(span, label)
                .maybe_help(help),
        );
    }

    fn wants(&self, table: &str, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.contains(&format!("{table}/{name}")))
    }

    fn stage_names(&self) -> Vec<&'a str> {
        let parsed: &'a Parsed = self.parsed;
        parsed.stages.keys().map(String::as_str).collect()
    }

    /// The rules about values: references, files, templates, retry policies, bounds.
    pub fn check_values(&mut self, graph: Option<&StageGraph>) {
        self.check_services();
        let stages: Vec<(String, Stage)> = self
            .parsed
            .stages
            .iter()
            .filter(|(n, _)| self.wants("stages", n))
            .filter_map(|(n, s)| s.clone().map(|s| (n.clone(), s)))
            .collect();
        for (name, stage) in &stages {
            let ptr = stage_ptr(name);
            self.check_retry(&format!("{ptr}/retry"), stage.common().retry);
            for (key, svc) in stage.services() {
                let want = match (stage.kind(), key) {
                    (StageKind::Queue, _) => ServiceKind::Comfyui,
                    _ => ServiceKind::Openai,
                };
                self.check_service_ref(
                    &format!("{ptr}/{key}"),
                    &format!("`{key}` of stage `{name}`"),
                    svc,
                    want,
                );
            }
            self.check_kind(name, stage, graph);
        }
    }
}
