//! The rules of `patch-workflow` stages: each `set` key must address a settable input of the
//! workflow, and each template in a value must resolve.

use std::collections::HashSet;

use serde_json::Value;

use super::super::diagnostic::{Code, hint, suggest};
use super::super::graph::Fan;
use super::super::model::PatchWorkflowStage;
use super::super::source::lookup;
use super::super::templates;
use super::{Checker, escape_segment, stage_ptr};

impl<'a> Checker<'a> {
    /// Whether the stage or anything above it has a `for_each`, read from the document as
    /// written (for when the graph is too broken to compute fan-out).
    pub(super) fn raw_fanned(&self, name: &str) -> bool {
        let mut stack = vec![name.to_owned()];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(stage) = lookup(self.doc, &stage_ptr(&n)) else {
                continue;
            };
            if stage.get("for_each").is_some() {
                return true;
            }
            if let Some(Value::Array(needs)) = stage.get("needs") {
                stack.extend(needs.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        false
    }

    pub(super) fn check_patch(&mut self, name: &str, s: &PatchWorkflowStage, fan: Option<&Fan>) {
        let ptr = stage_ptr(name);
        let path = self.base_dir.join(&s.workflow);
        match self.files.workflow(&path) {
            Ok(wf) => {
                for (key, value) in &s.set {
                    if let (Ok((_, input)), Value::String(text)) = (wf.resolve(key), value)
                        && input == "filename_prefix"
                        && let Some(why) = crate::workflow::prefix_problem(text)
                    {
                        let vptr = format!("{ptr}/set/{}", escape_segment(key));
                        let span = self.value_span(&vptr);
                        self.err(
                            Code::InvalidValue,
                            format!(
                                "`filename_prefix` {text:?} of stage `{name}` {why}: ComfyUI would write outside its output folder"
                            ),
                            span,
                            "leaves the output folder",
                            Some("give a path relative to ComfyUI's output folder, such as `{{prefix}}`".into()),
                        );
                    }
                    if let Err(e) = wf.resolve(key) {
                        let span = self.entry_span(&format!("{ptr}/set/{}", escape_segment(key)));
                        let help = match &e {
                            crate::workflow::TargetError::NoInput { id, .. } => {
                                let inputs = wf.settable_inputs(id);
                                let input = key.rsplit_once('.').map_or("", |(_, i)| i);
                                hint(input, "inputs it has", &inputs)
                            }
                            crate::workflow::TargetError::NoNode(n) => {
                                let mut cands: Vec<&str> = wf
                                    .nodes
                                    .values()
                                    .filter_map(|n| n.title.as_deref())
                                    .collect();
                                cands.extend(wf.nodes.values().map(|n| n.class_type.as_str()));
                                suggest(n, cands.iter().copied())
                                    .map(|c| format!("did you mean `{c}`?"))
                            }
                            crate::workflow::TargetError::Ambiguous { .. } => Some(
                                "address the node by its id, or give it a unique `_meta.title`"
                                    .into(),
                            ),
                            _ => None,
                        };
                        self.err(
                            Code::PatchTarget,
                            format!("patch target `{key}` of stage `{name}`: {e}"),
                            span,
                            "not a settable input of the workflow",
                            help,
                        );
                    }
                }
            }
            Err(e) => {
                let help = "export the workflow with \"Save (API Format)\" (enable dev mode options in ComfyUI's settings)";
                self.file_problem(
                    &format!("{ptr}/workflow"),
                    &s.workflow,
                    e,
                    Some(help.to_owned()),
                );
            }
        }
        // Template variables in `set`.
        // `scene` exists when the stage runs per item. When the graph is broken the fan-out is
        // unknown: then any `for_each` at or above the stage makes `scene` available, unchecked.
        let scene: Option<Option<Vec<String>>> = match fan {
            Some(Fan::PerItem { source, .. }) => Some(self.item_fields(&source.clone())),
            Some(_) => None,
            None if self.raw_fanned(name) => Some(None),
            None => None,
        };
        let mut roots: Vec<&str> = vec!["run", "story", "seed", "attempt", "prefix", "vars"];
        if scene.is_some() {
            roots.push("scene");
        }
        for (key, value) in &s.set {
            let Value::String(text) = value else { continue };
            let vptr = format!("{ptr}/set/{}", escape_segment(key));
            let vars = match templates::variables(text) {
                Ok(v) => v,
                Err(e) => {
                    let mut span = self.value_span(&vptr);
                    // Point into the string when it is written plainly (no escapes), so that
                    // the offset in the template is the offset in the file.
                    let raw = self.source.text.get(span.clone()).unwrap_or_default();
                    if let Some(off) = e.offset(text)
                        && raw.len() == text.len() + 2
                        && !raw.contains('\\')
                    {
                        let at = span.start + 1 + off;
                        span = at..(at + 2).min(span.end - 1);
                    }
                    self.err(
                        Code::Template,
                        format!(
                            "template in `set.\"{key}\"` of stage `{name}` does not compile: {}",
                            e.0
                        ),
                        span,
                        "here",
                        None,
                    );
                    continue;
                }
            };
            for v in vars {
                let mut parts = v.splitn(2, '.');
                let root = parts.next().unwrap_or_default();
                let rest = parts.next();
                let span = self.value_span(&vptr);
                let problem: Option<(String, Option<String>)> = match root {
                    "scene" if scene.is_none() => Some((
                        format!(
                            "`{{{{{v}}}}}` in stage `{name}`: `scene` exists only in a stage that runs once per item"
                        ),
                        Some(
                            "set `for_each = \"STAGE.scenes\"` on this stage or one it needs"
                                .into(),
                        ),
                    )),
                    "scene" if scene.as_ref().is_some_and(Option::is_none) => None,
                    "scene" => {
                        let fields = scene.clone().flatten().unwrap_or_default();
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        if rest.is_some() && !fields.iter().any(|f| f == field) {
                            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
                            Some((
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: a scene has no field `{field}`"
                                ),
                                hint(field, "scene fields", &f),
                            ))
                        } else {
                            None
                        }
                    }
                    "run" => {
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        let fields = ["id", "name", "profile", "seed", "dir"];
                        (rest.is_some() && !fields.contains(&field)).then(|| {
                            (
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: `run` has no field `{field}`"
                                ),
                                hint(field, "run fields", &fields),
                            )
                        })
                    }
                    "vars" => {
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        let names: Vec<&str> = s.vars.keys().map(String::as_str).collect();
                        (rest.is_some() && !s.vars.contains_key(field)).then(|| {
                            (
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: `vars.{field}` is not set"
                                ),
                                hint(field, "vars", &names).or_else(|| {
                                    Some(format!("add `vars = {{ {field} = ... }}` to the stage"))
                                }),
                            )
                        })
                    }
                    r if roots.contains(&r) => None,
                    r => Some((
                        format!("`{{{{{v}}}}}` in stage `{name}`: unknown template variable `{r}`"),
                        hint(r, "variables", &roots),
                    )),
                };
                if let Some((msg, help)) = problem {
                    self.err(Code::Template, msg, span, "cannot be resolved", help);
                }
            }
        }
    }
}
