//! The rules of `llm` stages: the variables their prompt templates use, their output schema
//! and token bounds; and the lists and item fields that schema gives the stages downstream.

use std::sync::Arc;

use serde_json::Value;

use super::super::diagnostic::{Code, hint};
use super::super::model::{LlmStage, Stage};
use super::super::source::escape_segment;
use super::{Checker, Parsed, stage_ptr};

impl<'a> Checker<'a> {
    /// The schema an llm stage's answer must match: its `output_schema`, else the story schema
    /// generated from `story::Story`. `None` when the file is unusable (reported elsewhere).
    pub(super) fn output_schema(&mut self, llm: &LlmStage) -> Option<Arc<Value>> {
        match &llm.output_schema {
            None => Some(
                self.files
                    .story_schema
                    .get_or_insert_with(|| Arc::new(crate::story::story_schema()))
                    .clone(),
            ),
            Some(path) => self.files.schema(&self.base_dir.join(path)).ok(),
        }
    }

    /// The array properties at the top of an llm stage's output.
    /// `None` when the schema is unusable: that is reported on its own, and what lists it
    /// would have is unknown.
    pub(super) fn list_fields(&mut self, llm: &LlmStage) -> Option<Vec<String>> {
        self.output_schema(llm)
            .map(|s| crate::json_schema::list_properties(&s))
    }

    /// The fields an item of `source` (`STAGE.FIELD`) has, for `{{scene.*}}`; `None` when they
    /// cannot be known (the source stage or its schema is broken, which is reported on its own).
    pub(super) fn item_fields(&mut self, source: &str) -> Option<Vec<String>> {
        let (src, field) = source.split_once('.')?;
        let parsed: &'a Parsed = self.parsed;
        let Some(Some(Stage::Llm(llm))) = parsed.stages.get(src) else {
            return None;
        };
        let schema = self.output_schema(llm)?;
        let mut fields = vec!["index".to_owned()];
        fields.extend(crate::json_schema::item_properties(&schema, field));
        Some(fields)
    }

    pub(super) fn check_llm(&mut self, name: &str, s: &LlmStage) {
        let ptr = stage_ptr(name);
        let mut needed: Vec<String> = Vec::new();
        let mut all_read = true;
        for (key, rel) in [
            ("prompt", Some(&s.prompt)),
            ("system_prompt", s.system_prompt.as_ref()),
        ] {
            let Some(rel) = rel else { continue };
            let path = self.base_dir.join(rel);
            match self.files.template(&path) {
                Ok(vars) => {
                    for v in vars {
                        let root = v.split('.').next().unwrap_or_default().to_owned();
                        if root != "run" && !needed.contains(&root) {
                            needed.push(root);
                        }
                    }
                }
                Err(e) => {
                    all_read = false;
                    self.file_problem(&format!("{ptr}/{key}"), rel, e, None);
                }
            }
        }
        if all_read {
            let missing: Vec<&String> =
                needed.iter().filter(|v| !s.vars.contains_key(*v)).collect();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
                let span = if self.index.get(&format!("{ptr}/vars")).is_some() {
                    self.value_span(&format!("{ptr}/vars"))
                } else {
                    self.entry_span(&ptr)
                };
                self.err(
                    Code::Template,
                    format!(
                        "stage `{name}` does not set {} that its prompt uses",
                        list.join(", ")
                    ),
                    span,
                    "missing in `vars`",
                    Some(format!(
                        "add them to `vars`, e.g. `vars = {{ {} = ... }}`",
                        missing[0]
                    )),
                );
            }
            for key in s.vars.keys() {
                if !needed.contains(key) {
                    let span = self.entry_span(&format!("{ptr}/vars/{}", escape_segment(key)));
                    let used: Vec<&str> = needed.iter().map(String::as_str).collect();
                    self.err(
                        Code::Template,
                        format!("`vars.{key}` of stage `{name}` is not used by its prompt"),
                        span,
                        "the prompt has no such variable",
                        hint(key, "variables the prompt uses", &used),
                    );
                }
            }
        }
        if let Some(rel) = &s.output_schema {
            let path = self.base_dir.join(rel);
            if let Err(e) = self.files.schema(&path) {
                self.file_problem(&format!("{ptr}/output_schema"), rel, e, None);
            }
        }
        if s.min_completion_tokens > s.max_completion_tokens {
            let span = self.value_span(&format!("{ptr}/min_completion_tokens"));
            self.err(Code::InvalidValue, format!("`min_completion_tokens` ({}) of stage `{name}` is above `max_completion_tokens` ({})", s.min_completion_tokens, s.max_completion_tokens), span, "empty range", None);
        }
        if s.max_tokens < s.min_completion_tokens {
            let span = self.value_span(&format!("{ptr}/max_tokens"));
            self.err(
                Code::InvalidValue,
                format!(
                    "`max_tokens` ({}) of stage `{name}` is below `min_completion_tokens` ({})",
                    s.max_tokens, s.min_completion_tokens
                ),
                span,
                "every answer would be too short",
                None,
            );
        }
    }
}
