//! The rules of each stage kind's own values (`llm` and `patch-workflow` have files of their
//! own).

use super::super::diagnostic::Code;
use super::super::graph::StageGraph;
use super::super::model::{CheckEntry, QualityCheck, Stage};
use super::{Checker, stage_ptr};

impl<'a> Checker<'a> {
    /// The rules of each kind's own values.
    pub(super) fn check_kind(&mut self, name: &str, stage: &Stage, graph: Option<&StageGraph>) {
        let ptr = stage_ptr(name);
        match stage {
            Stage::Llm(s) => self.check_llm(name, s),
            Stage::PatchWorkflow(s) => {
                let fan = graph.and_then(|g| g.fans().get(name)).cloned();
                self.check_patch(name, s, fan.as_ref());
            }
            Stage::Queue(s) => {
                if s.poll_interval_s > s.max_wait_s {
                    let span = self.value_span(&format!("{ptr}/poll_interval_s"));
                    self.err(Code::InvalidValue, format!("`poll_interval_s` ({}) of stage `{name}` is longer than its `max_wait_s` ({})", s.poll_interval_s, s.max_wait_s), span, "it would never poll", None);
                }
            }
            Stage::AwaitMarker(s) => {
                if s.marker_suffix.is_empty() || s.marker_suffix.contains(['/', '\\']) {
                    let span = self.value_span(&format!("{ptr}/marker_suffix"));
                    self.err(
                        Code::InvalidValue,
                        format!(
                            "`marker_suffix` of stage `{name}` must be a non-empty file-name suffix"
                        ),
                        span,
                        "e.g. \".done\"",
                        None,
                    );
                }
            }
            Stage::CollectFrames(s) => {
                if let Some(p) = &s.pattern
                    && (p.contains("..") || p.starts_with('/'))
                {
                    let span = self.value_span(&format!("{ptr}/pattern"));
                    self.err(
                        Code::InvalidValue,
                        format!(
                            "`pattern` of stage `{name}` must stay inside the ComfyUI output folder"
                        ),
                        span,
                        "no `..` and no absolute paths",
                        None,
                    );
                }
            }
            Stage::Quality(s) => {
                for (check, key, set) in [
                    (
                        QualityCheck::Alignment,
                        "embedding_service",
                        s.embedding_service.is_some(),
                    ),
                    (
                        QualityCheck::Coherence,
                        "judge_service",
                        s.judge_service.is_some(),
                    ),
                ] {
                    if let Some(i) = s.checks.iter().position(|c| c.check == check)
                        && !set
                    {
                        let span = self.value_span(&format!("{ptr}/checks/{i}"));
                        self.err(
                            Code::MissingKey,
                            format!(
                                "quality check `{}` of stage `{name}` needs `{key}`",
                                serde_json::to_value(check)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default()
                            ),
                            span,
                            "this check needs a service",
                            Some(format!("set `{key}` to an `openai` service")),
                        );
                    }
                }
            }
            Stage::Validate(_) => {}
        }
        if let Stage::Quality(s) = stage {
            self.check_quality_entries(name, &s.checks);
            // The judge's rubric must be a readable template that asks only for `story`.
            if s.checks.iter().any(|c| c.check == QualityCheck::Coherence) {
                let path = self.base_dir.join(&s.judge_rubric);
                match self.files.template(&path) {
                    Ok(vars) => {
                        if let Some(v) = vars.iter().find(|v| v.as_str() != "story") {
                            let span = self.entry_span(&format!("{ptr}/judge_rubric"));
                            self.err(
                                Code::InvalidValue,
                                format!("the judge rubric of stage `{name}` uses `{v}`; a rubric is given only `story`"),
                                span,
                                "this rubric",
                                None,
                            );
                        }
                    }
                    Err(e) => {
                        let rel = s.judge_rubric.clone();
                        self.file_problem(&format!("{ptr}/judge_rubric"), &rel, e, None);
                    }
                }
            }
        }
    }

    /// Each `checks` entry once, and its own `threshold` inside the range of the thresholds
    /// table's value for that check (whole for `frame-count`; none for `resolution`).
    fn check_quality_entries(&mut self, name: &str, checks: &[CheckEntry]) {
        let ptr = stage_ptr(name);
        for (i, entry) in checks.iter().enumerate() {
            let check = entry.check.as_str();
            if checks[..i].iter().any(|e| e.check == entry.check) {
                let span = self.value_span(&format!("{ptr}/checks/{i}"));
                self.err(
                    Code::InvalidValue,
                    format!("quality check `{check}` of stage `{name}` is listed twice"),
                    span,
                    "listed before",
                    Some("list each check once".to_owned()),
                );
            }
            let Some(v) = entry.threshold else { continue };
            let span = self.value_span(&format!("{ptr}/checks/{i}/threshold"));
            match entry.check.threshold_range() {
                None => self.err(
                    Code::InvalidValue,
                    format!("quality check `{check}` of stage `{name}` takes no `threshold`"),
                    span,
                    "not used",
                    Some("set `thresholds.min_width` and `thresholds.min_height`".to_owned()),
                ),
                Some((lo, hi, whole)) => {
                    if !(lo..=hi).contains(&v) || (whole && v.fract() != 0.0) {
                        let kind = if whole { "a whole number" } else { "a number" };
                        self.err(
                            Code::InvalidValue,
                            format!(
                                "`threshold` of quality check `{check}` of stage `{name}` must be {kind} from {lo} to {hi}, found {v}"
                            ),
                            span,
                            "out of range",
                            None,
                        );
                    }
                }
            }
        }
    }
}
