//! The run's `QualityMetrics`: the frame KPIs from the scene records, and the checks of the
//! per-scene `quality` stages.

use super::{Builder, percentile, saturate};
use crate::artifact_metadata::weighted_score;
use crate::exec::InstanceId;
use crate::spec::model::{QualityCheck, QualityStage, Stage as SpecStage, StageKind};
use crate::stages::output::{QualityOutput, QualityRecord};
use crate::stages::quality::{from_hex, same_frames_checks};

impl Builder<'_> {
    /// The frame and marker KPIs from the scene records, and the checks of a per-scene
    /// `quality` stage gathered over its instances (the output of one that succeeded, else the
    /// record of its last finished attempt, which an `enforce`d failure leaves with its checks).
    /// A once-per-run `quality` stage's own `telemetry` is merged over this later.
    pub(super) fn run_quality(&mut self, per_item: &[(&String, &SpecStage)]) {
        let scenes = &self.meta.scenes;
        if scenes.is_empty() {
            return;
        }
        let n = scenes.len() as f64;
        let q = &mut self.meta.quality_metrics;
        q.avg_frames_per_scene = Some(
            scenes
                .iter()
                .map(|s| f64::from(s.frames.count))
                .sum::<f64>()
                / n,
        );
        q.zero_frame_scenes =
            saturate(scenes.iter().filter(|s| s.frames.count == 0).count() as u64);
        q.short_scenes = saturate(scenes.iter().filter(|s| s.frames.short).count() as u64);
        if per_item
            .iter()
            .any(|(_, s)| s.kind() == StageKind::AwaitMarker)
        {
            let seen = scenes
                .iter()
                .filter(|s| s.telemetry.done_marker_detected)
                .count();
            q.done_marker_detection_rate = Some(seen as f64 / n);
        }
        let mut times: Vec<f64> = scenes
            .iter()
            .filter(|s| s.telemetry.queue_start.is_some())
            .map(|s| s.telemetry.duration_seconds)
            .collect();
        times.sort_by(f64::total_cmp);
        q.p95_scene_seconds = percentile(&times, 95.0);
        let aligned: Vec<f64> = scenes
            .iter()
            .filter_map(|s| s.quality_metrics.alignment)
            .collect();
        if !aligned.is_empty() {
            q.semantic_alignment = Some(aligned.iter().sum::<f64>() / aligned.len() as f64);
        }

        let count = scenes.len();
        for (name, stage) in per_item {
            if stage.kind() != StageKind::Quality {
                continue;
            }
            let mut signatures: Vec<(String, Vec<u64>)> = Vec::new();
            for item in 0..count {
                let id = InstanceId::new((*name).clone(), Some(item as u32));
                let Some(inst) = self.history.get(&id) else {
                    continue;
                };
                let part: Option<QualityOutput> = match self.output(inst) {
                    Some(output) => serde_json::from_value(output).ok(),
                    None => {
                        let last = inst.attempts.iter().rev().find(|a| !self.in_flight(a));
                        last.and_then(|a| self.attempt_record::<QualityRecord>(&id, a.attempt))
                            .and_then(|r| r.body)
                    }
                };
                let Some(part) = part else { continue };
                for sig in &part.frame_signatures {
                    if let Some(hashes) = from_hex(&sig.hashes) {
                        signatures.push((sig.scene_id.clone(), hashes));
                    }
                }
                let q = &mut self.meta.quality_metrics;
                for c in part.checks {
                    // A run-wide check (no scene) is the same in every scene's instance.
                    if c.scene_id.is_none()
                        && q.checks
                            .iter()
                            .any(|k| k.check == c.check && k.scene_id.is_none())
                    {
                        continue;
                    }
                    q.passed = Some(q.passed.unwrap_or(true) && (c.passed || c.advisory));
                    q.checks.push(c);
                }
                q.passed = Some(q.passed.unwrap_or(true) && part.passed);
                if q.diversity_entropy.is_none() {
                    q.diversity_entropy = part.diversity_entropy;
                }
                if q.narrative_coherence.is_none() {
                    q.narrative_coherence = part.narrative_coherence;
                }
            }
            if let SpecStage::Quality(cfg) = stage {
                self.same_frames(cfg, &signatures);
            }
        }
    }

    /// The `same-frames` check of a per-scene `quality` stage, which no instance can run alone:
    /// every scene's frame signature (from its instance's output) against the others'.
    fn same_frames(&mut self, cfg: &QualityStage, signatures: &[(String, Vec<u64>)]) {
        let Some(entry) = cfg
            .checks
            .iter()
            .find(|c| c.check == QualityCheck::SameFrames)
        else {
            return;
        };
        if signatures.len() < 2 {
            return;
        }
        let t = cfg.thresholds.with_overrides(&cfg.checks);
        // The notes name the scene each repeats; the run's `Checks` say which scenes failed, and
        // `System.FallbackNotes` is for fallbacks, so they are not kept here.
        let (checks, _notes) = same_frames_checks(signatures, t.min_frame_distance);
        let q = &mut self.meta.quality_metrics;
        for mut c in checks {
            c.weight = entry.weight;
            c.advisory = entry.advisory;
            if let Some(m) = &entry.metric {
                c.metric.clone_from(m);
            }
            q.passed = Some(q.passed.unwrap_or(true) && (c.passed || c.advisory));
            q.checks.push(c);
        }
    }

    /// The weighted scores, once every `Checks` entry is in: the run's over all of them, each
    /// scene's over those with its `SceneId`.
    pub(super) fn weighted_scores(&mut self) {
        let q = &mut self.meta.quality_metrics;
        q.score = weighted_score(&q.checks);
        for scene in &mut self.meta.scenes {
            let own = q
                .checks
                .iter()
                .filter(|c| c.scene_id.as_deref() == Some(scene.scene_id.as_str()));
            scene.quality_metrics.score = weighted_score(own);
        }
    }
}
