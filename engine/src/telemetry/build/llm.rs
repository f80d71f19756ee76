//! The `LLM[]` entries of the metadata, from the `llm` stages' attempt records.

use super::{Builder, saturate};
use crate::rundir::history::{AttemptHistory, InstanceHistory};
use crate::spec::model::Stage as SpecStage;
use crate::stages::output::{LlmAttempt, LlmRecord, RecordOutcome};
use crate::telemetry::{LlmHealth, LlmTelemetry};

impl Builder<'_> {
    /// The `llm` part: one `LLM[]` entry per instance that ran, from its attempt records
    /// (`stages/<stage>/attempt-<n>.json`, written by `stages::llm`).
    pub(super) fn llm(&mut self, stage: &SpecStage, inst: &InstanceHistory) {
        let SpecStage::Llm(cfg) = stage else { return };
        let attempts: Vec<&AttemptHistory> = inst
            .attempts
            .iter()
            .filter(|a| !self.in_flight(a))
            .collect();
        let Some(kept) = attempts.last() else { return };
        let records: Vec<(u32, Option<LlmRecord>)> = attempts
            .iter()
            .map(|a| {
                (
                    a.attempt,
                    self.attempt_record::<LlmRecord>(&inst.id, a.attempt),
                )
            })
            .collect();
        for (_, r) in &records {
            if let Some(r) = r
                && !r.body.cache_hit
                && let Some(t) = r.body.response_time_s
                && r.outcome == RecordOutcome::Succeeded
            {
                self.response_times.push(t);
            }
        }
        let rec: LlmAttempt = records
            .iter()
            .rev()
            .find(|(n, _)| *n == kept.attempt)
            .and_then(|(_, r)| r.as_ref().map(|r| r.body.clone()))
            .unwrap_or_default();
        // The last error of the instance: the record's, else the journal's.
        let error = attempts.iter().rev().find_map(|a| {
            records
                .iter()
                .find(|(n, _)| *n == a.attempt)
                .and_then(|(_, r)| r.as_ref().and_then(|r| r.error.clone()))
                .or_else(|| a.error.clone())
        });
        let reachable = rec.cache_hit || rec.providers.iter().any(|p| p.health == "reachable");
        let provider = rec.service.clone();
        let fallback_used = provider.as_deref().is_some_and(|p| p != cfg.service);
        self.meta.llm.push(LlmTelemetry {
            stage: inst.id.stage.clone(),
            fallback_used,
            provider,
            model: rec.model.clone(),
            health: if reachable {
                LlmHealth::Reachable
            } else {
                LlmHealth::Unavailable
            },
            providers_tried: rec.providers.iter().map(|p| p.service.clone()).collect(),
            response_time_seconds: if rec.cache_hit {
                None
            } else {
                rec.response_time_s.filter(|t| t.is_finite() && *t >= 0.0)
            },
            prompt_tokens: rec.prompt_tokens.map(saturate),
            completion_tokens: rec.completion_tokens.map(saturate),
            tokens_per_second: rec.tokens_per_second.filter(|t| t.is_finite() && *t >= 0.0),
            finish_reason: rec.finish_reason.clone(),
            cache_hit: rec.cache_hit,
            error,
        });
        for n in &rec.fallback_notes {
            if !self.meta.system.fallback_notes.contains(n) {
                self.meta.system.fallback_notes.push(n.clone());
            }
        }
    }
}
