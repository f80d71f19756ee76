//! The `quality` stage: scores a scene's collected frames and the story's text against the
//! stage's thresholds (`QualityMetrics`).
//!
//! # Where it runs
//!
//! - **Per scene** (`needs = ["frames"]` on a per-item `collect-frames`, as in the demo): the
//!   `frames` input is one scene's `collect-frames` output. The output's `telemetry` is the
//!   scene's `{"QualityMetrics": {Width, Height, BlankFraction, FrozenFraction, Alignment}}`;
//!   its `checks` (the contract's `Checks[]` entries) and `passed` are gathered over the scenes
//!   into the run's `QualityMetrics` by `telemetry::build`.
//! - **Once per run** (needing a gathered `collect-frames`, whose input is the array of every
//!   scene's output): every scene is scored in one attempt, and the output's `telemetry` is the
//!   run's `{"QualityMetrics": {Passed, DiversityEntropy, SemanticAlignment, Checks}}`.
//!
//! # The rules
//!
//! | check | value | passes when |
//! | --- | --- | --- |
//! | `frame-count` | frames kept | `>= min_frames` |
//! | `resolution` | `min(width / min_width, height / min_height)` of the smallest frame | `>= 1` |
//! | `blank` | share of blank frames | `<= max_blank_fraction` |
//! | `frozen` | share of frames whose pixels are identical to the frame before | `<= max_frozen_fraction` |
//! | `diversity` | entropy in bits of the scenes' key themes (run-wide) | `>= min_diversity` (2.0) |
//! | `duplicate` | a scene's highest similarity to another scene | `<= max_similarity` (0.6, lexical) or `<= max_embedding_similarity` (0.9, embeddings) |
//! | `same-frames` | a scene's smallest perceptual-hash distance to another scene's frames, bits of 64 | `>= min_frame_distance` (0.5) |
//! | `alignment` | cosine of the embeddings of the scene's prompt and the story's premise (else the whole story) | `>= min_alignment` (0.75) |
//! | `coherence` | the LLM judge's grade, 1–5 (run-wide) | `>= min_coherence` (4.0) |
//!
//! - **Decoding**: frames are PNGs, decoded with the `png` crate (palette and low bit depths
//!   expanded); a frame that cannot be decoded counts as blank, with a note. Decoding is
//!   bounded, so a small file whose header claims a huge image cannot exhaust memory: at most
//!   [`MAX_FRAME_PIXELS`] pixels (7680×4320, checked from the header before anything is
//!   allocated) and [`MAX_FRAME_BYTES`] (256 MiB) for the decoded image and, through the `png`
//!   crate's `Limits`, for its own buffers. A frame over either "cannot be decoded".
//! - **Blank**: a frame is blank (black, white or any single colour) when at least
//!   [`BLANK_SHARE`] of its pixels are within [`BLANK_TOLERANCE`] (per channel, 8-bit scale) of
//!   its most common pixel value. The demo's 64×64 frames with a 16×16 square (6.25% of the
//!   pixels) are not blank; a flat or nearly flat frame (sensor-like noise of a few levels
//!   included) is.
//! - **Frozen**: a frame is frozen when the SHA-256 of its decoded pixels (and size) equals the
//!   previous frame's; the first frame never is. The fraction is over all frames.
//! - **Themes**: a scene's themes are the words of its `prompt` (split at anything not a letter
//!   or digit, lowercased, English stop words and words under 3 letters dropped, a plural's `s`
//!   or `ies` reduced, so "Storms" and "storm" are one theme), each once, in reading order; its
//!   **key themes** are the first [`KEY_THEMES_PER_SCENE`] (3): image prompts name their subject
//!   first, and the cap keeps a long prompt from buying diversity by length alone.
//! - **Diversity**: each scene adds each of its key themes once; `p(theme)` = scenes naming it /
//!   all (scene, theme) pairs; the value is the Shannon entropy `H = -Σ p log2 p` in bits (the
//!   seeds' "entropy over key themes ≥ 2.0"). A scene repeated adds no diversity: any story
//!   whose scenes are all one scene scores `log2 k` for that scene's `k ≤ 3` key themes, at most
//!   `log2 3` ≈ 1.58, under 2.0. The default threshold is the seeds' 2.0 for every story of two
//!   scenes or more. For 2–3 scenes it stays 2.0 because it is reachable and still tells
//!   stories apart there: two scenes score at most `log2 6` ≈ 2.58 (disjoint key themes), 2.25
//!   when they share one key theme, 1.92 when they share two, 1.58 when identical; three scenes
//!   at most `log2 9` ≈ 3.17. A story of one scene has no diversity between scenes: the check
//!   is not recorded (a note says so). With two scenes or more and no theme at all, the value is
//!   null (and so fails). The story is read from the run folder (the output of the stage the
//!   scenes fan out from, an ancestor of this one).
//! - **Duplicate**: for each scene, its highest similarity to any other scene of the story.
//!   With an `embedding_service`, the cosine of the prompts' embeddings (one `/embeddings`
//!   request for every prompt), held to `max_embedding_similarity`; otherwise, and when that
//!   service fails (with a note), the Jaccard similarity of the two prompts' theme sets (all
//!   themes, not only the key ones: shared / either), held to `max_similarity`. A failed check's
//!   note names the scene it repeats. Identical prompts score 1.0 either way.
//! - **Alignment** and **coherence** run only when requested in `checks` (the spec check then
//!   requires their services). Alignment asks the `embedding_service`'s `/embeddings`.
//! - **Coherence** (`judge.rs`): the story's scenes, numbered, rendered into `judge_rubric`
//!   (`prompts/judge/v1/coherence.hbs`, versioned with a metadata block like the story
//!   templates) and sent to `judge_service` (any `openai` service; it may differ from the
//!   writer) with `response_format` = a `{score: 1–5, reason}` JSON schema, greedily, asking for
//!   `top_logprobs`. Where the answer has them (llama.cpp's server does), the score is G-Eval's:
//!   the probability of each grade 1–5 at the score's token, renormalised over the grades, and
//!   their weighted mean. Where it has none (LM Studio; Ollama's `/v1` as of this writing), the
//!   mean of `judge_samples` (3) grades sampled at temperature 0.7. An answer that is not
//!   `{score: 1–5, reason}` is asked again, up to the stage's `retry.budget` extra requests;
//!   then the score is null with a note, never guessed. The output's `coherence` records the
//!   judge's model, the rubric and its version, the method, the grade distribution, the grades,
//!   the reason and the requests sent. A per-scene stage asks the judge once, in the first
//!   scene's instance. **A 135M model (the demo's) only exercises this plumbing: its grades say
//!   little about the story. Real grading needs a model of a few billion parameters**; until
//!   then mark the check `advisory` (`{ check = "coherence", advisory = true }`): recorded and
//!   scored, never failing the verdict.
//! - **Same frames**: each decoded frame gets a 64-bit difference hash (luminance averaged into
//!   9×8 cells, a bit per horizontally adjacent pair: structure, not tint); a scene's signature
//!   is the hashes of its first, middle and last frames, and the distance between two scenes is
//!   the mean number of differing bits at the same places. A scene passes when its smallest
//!   distance to any other scene is at least `min_frame_distance` (0.5 bits: at most one bit
//!   differing over the three hashes is the same picture). Identical renders score 0; over 1770
//!   pairs of distinct scene cards (`SceneCardFrames`, random prompts and moods) the smallest
//!   distance measured was 0.8, the 1st percentile 3, the median 9; the same prompt in another
//!   mood 3; a prompt and the same prompt with a full stop 0.3.
//!   A per-scene stage cannot see the other scenes' frames, so it records its signature in its
//!   output (`frame_signatures`) and `telemetry::build` runs the check over all of them (in the
//!   run's `Checks`; it cannot fail the stage under `enforce`); a once-per-run stage runs it
//!   itself.
//! - **Checks entries** (promptfoo's assertion shape): an entry of `checks` is a check's name or
//!   a table `{ check, threshold, weight, metric }`; its `threshold` is put over the thresholds
//!   table's ([`QualityThresholds::with_overrides`]), its `weight` and `metric` are copied into
//!   its `Checks` results, and `telemetry::build` derives the weighted `Score`s from them.
//! - **A null value never passes**: a check that could not be measured is recorded with
//!   `Value = null` and `Passed = false`, and the notes say why.
//! - **Enforce**: with `enforce = true` a missed threshold fails the attempt with class
//!   `invalid-output` (the attempt record still lists the checks); otherwise it is recorded only.
//!
//! Every attempt writes `attempt-<n>.json` in its instance folder.

use serde_json::Value;

mod embed;
mod judge;
mod phash;
mod score;
mod text;

pub use embed::cosine;
use embed::{embed, embed_cosine};
pub use judge::{grade_distribution, parse_grade, story_text, weighted_mean};
pub use phash::{dhash, distance, from_hex, same_frames_checks, signature, to_hex};
use score::score;
pub use score::{
    BLANK_SHARE, BLANK_TOLERANCE, FrameStats, MAX_FRAME_BYTES, MAX_FRAME_PIXELS, SceneInput,
    SceneScore, analyse, is_blank, score_frames,
};
pub use text::{
    KEY_THEMES_PER_SCENE, closest_other, diversity, key_themes, lexical_similarity, themes,
};

use super::output::{
    FrameSignature, FramesOutput, QualityOutput, QualityPart, QualityRecord, QualityTelemetry,
    RunQuality,
};
use crate::artifact_metadata::QualityCheckResult;
use crate::exec::{Attempt, BoxFuture, InstanceId, Stage, StageContext, StageFailure};
use crate::rundir::RunDir;
use crate::spec::Fan;
use crate::spec::model::{
    FailureClass, QualityCheck, QualityStage, QualityThresholds, Stage as SpecStage, StageKind,
};

/// The `quality` kind for the executor.
pub struct Quality;

impl Stage for Quality {
    fn attempt<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Attempt> {
        Box::pin(async move {
            let Some(SpecStage::Quality(cfg)) = ctx.stage() else {
                return Attempt::from(Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the quality stage was handed a stage of another kind",
                )));
            };
            let (result, out) = match attempt(ctx, cfg).await {
                Ok(out) => (Attempt::output(&out), Some(out)),
                Err((f, out)) => (Err(f), out),
            };
            let record = QualityRecord::new(ctx.attempt, &result, out);
            Attempt::recorded(result, &record)
        })
    }
}

/// A failed attempt: why, and the output it had when an `enforce`d threshold was missed.
type Failed = (StageFailure, Option<QualityOutput>);

async fn attempt(ctx: &StageContext, cfg: &QualityStage) -> Result<QualityOutput, Failed> {
    let invalid = |m: String| (StageFailure::new(FailureClass::InvalidOutput, m), None);
    let story = read_story(ctx);
    let mut notes: Vec<String> = Vec::new();
    // The frames input: one scene's collect-frames output, or the gathered array of them.
    let (scenes, per_scene) =
        scenes_from_inputs(ctx, story.as_ref()).map_err(|e| invalid(e.to_string()))?;

    // Every scene of the story (id, prompt), for the checks between scenes; without a story,
    // the scenes this instance scores.
    let story_scenes: Vec<(String, String)> = match story.as_ref().and_then(|s| s.1.as_array()) {
        Some(items) => crate::story::scene_ids(items)
            .into_iter()
            .zip(items)
            .map(|((id, _), i)| {
                let prompt = i.get("prompt").and_then(Value::as_str).unwrap_or_default();
                (id, prompt.to_owned())
            })
            .collect(),
        None => scenes
            .iter()
            .map(|s| (s.id.clone(), s.prompt.clone()))
            .collect(),
    };
    let prompts: Vec<String> = story_scenes.iter().map(|s| s.1.clone()).collect();
    // What a scene's prompt is aligned with: the story's premise (the `premise` var of the
    // `llm` stage the scenes fan out from), else the whole story (every prompt).
    let premise = premise_of(ctx, story.as_ref());
    let reference = premise.clone().unwrap_or_else(|| prompts.join("\n"));
    let wants = |c: QualityCheck| cfg.checks.iter().any(|e| e.check == c);
    // Each entry's own threshold over the table's.
    let thresholds = cfg.thresholds.with_overrides(&cfg.checks);

    // Alignment per scene, when asked for.
    let mut alignments: Vec<Option<Option<f64>>> = vec![None; scenes.len()];
    if wants(QualityCheck::Alignment) {
        if premise.is_none() {
            notes.push(
                "alignment is against the whole story: the story's stage has no `premise` var"
                    .to_owned(),
            );
        }
        for (i, s) in scenes.iter().enumerate() {
            let v = match &cfg.embedding_service {
                Some(service) => match embed_cosine(ctx, service, &s.prompt, &reference).await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        notes.push(format!("alignment of scene `{}` not measured: {e}", s.id));
                        None
                    }
                },
                None => {
                    notes.push("alignment not measured: no `embedding_service`".to_owned());
                    None
                }
            };
            alignments[i] = Some(v);
        }
    }

    let duplicates = match wants(QualityCheck::Duplicate) {
        true => Some(duplicate_checks(ctx, cfg, &thresholds, &scenes, &story_scenes).await),
        false => None,
    };

    let scene_ids: Vec<String> = scenes.iter().map(|s| s.id.clone()).collect();
    let run_dir = ctx.run_dir.clone();
    let checks = cfg.checks.clone();
    let frame_thresholds = thresholds.clone();
    let scored: Vec<SceneScore> = tokio::task::spawn_blocking(move || {
        scenes
            .iter()
            .zip(alignments)
            .map(|(s, a)| score_frames(&run_dir, s, &checks, &frame_thresholds, a))
            .collect()
    })
    .await
    .map_err(|e| invalid(format!("scoring the frames failed: {e}")))?;

    let mut all_checks: Vec<QualityCheckResult> = Vec::new();
    for s in &scored {
        all_checks.extend(s.checks.iter().cloned());
        notes.extend(s.notes.iter().cloned());
    }
    if let Some(found) = duplicates {
        notes.extend(found.notes);
        all_checks.extend(found.checks);
    }
    // Same frames between scenes: here only when every scene is scored in this attempt; a
    // per-scene stage records its signature and `telemetry::build` compares them.
    if wants(QualityCheck::SameFrames) && !per_scene {
        let signatures: Vec<(String, Vec<u64>)> = scored
            .iter()
            .zip(&scene_ids)
            .map(|(s, id)| (id.clone(), s.signature.clone()))
            .collect();
        if signatures.len() < 2 {
            notes.push("same-frames not checked: fewer than 2 scenes".to_owned());
        } else {
            let (checks, found) = same_frames_checks(&signatures, thresholds.min_frame_distance);
            all_checks.extend(checks);
            notes.extend(found);
        }
    }
    let mut diversity_value = None;
    if wants(QualityCheck::Diversity) {
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        diversity_value = diversity(&refs);
        if refs.len() < 2 {
            // Diversity is between scenes: a one-scene story has none to measure or miss.
            notes.push("diversity not checked: the story has fewer than 2 scenes".to_owned());
        } else {
            if diversity_value.is_none() {
                notes.push("diversity not measured: the scene prompts have no theme".to_owned());
            }
            all_checks.push(score(
                QualityCheck::Diversity,
                None,
                diversity_value,
                thresholds.min_diversity,
                true,
            ));
        }
    }
    let mut coherence = None;
    // The judge grades the whole story: once per run, so a per-scene stage asks it only in the
    // first scene's instance (the run's `Checks` take a run-wide check from there).
    let judges_here = !per_scene || ctx.instance.item.unwrap_or(0) == 0;
    if wants(QualityCheck::Coherence) && judges_here {
        let mut judged = judge::judge(ctx, cfg, &story_scenes).await;
        notes.append(&mut judged.notes);
        all_checks.push(score(
            QualityCheck::Coherence,
            None,
            judged.score,
            thresholds.min_coherence,
            true,
        ));
        coherence = Some(judged);
    }
    // Each result carries its entry's weight, metric name and advisory flag (promptfoo's
    // assertion shape).
    for c in &mut all_checks {
        if let Some(e) = cfg.checks.iter().find(|e| e.check == c.check) {
            c.weight = e.weight;
            c.advisory = e.advisory;
            if let Some(m) = &e.metric {
                c.metric.clone_from(m);
            }
        }
    }
    // An advisory check is recorded, and counts in the score, but never fails the verdict.
    let passed = all_checks.iter().all(|c| c.passed || c.advisory);
    let aligned: Vec<f64> = scored.iter().filter_map(|s| s.metrics.alignment).collect();
    let semantic_alignment =
        (!aligned.is_empty()).then(|| aligned.iter().sum::<f64>() / aligned.len() as f64);

    let quality_metrics = if per_scene {
        QualityPart::Scene(
            scored
                .first()
                .map(|s| s.metrics.clone())
                .unwrap_or_default(),
        )
    } else {
        QualityPart::Run(RunQuality {
            passed,
            diversity_entropy: diversity_value,
            semantic_alignment,
            narrative_coherence: coherence.as_ref().and_then(|j| j.score),
            checks: all_checks.clone(),
        })
    };
    let out = QualityOutput {
        passed,
        checks: all_checks.clone(),
        diversity_entropy: diversity_value,
        semantic_alignment,
        narrative_coherence: coherence.as_ref().and_then(|j| j.score),
        coherence: coherence.map(|j| j.record),
        notes,
        frame_signatures: scored
            .iter()
            .zip(&scene_ids)
            .map(|(s, id)| FrameSignature {
                scene_id: id.clone(),
                hashes: to_hex(&s.signature),
            })
            .collect(),
        telemetry: QualityTelemetry { quality_metrics },
    };
    if !passed && cfg.enforce {
        let missed: Vec<String> = all_checks
            .iter()
            .filter(|c| !c.passed && !c.advisory)
            .map(|c| {
                let check = serde_json::to_value(c.check)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let value = c.value.map_or("null".to_owned(), |v| format!("{v:.3}"));
                match &c.scene_id {
                    Some(s) => format!(
                        "{check} of scene `{s}`: {value} (threshold {})",
                        c.threshold
                    ),
                    None => format!("{check}: {value} (threshold {})", c.threshold),
                }
            })
            .collect();
        return Err((
            StageFailure::new(
                FailureClass::InvalidOutput,
                format!(
                    "quality thresholds missed (enforce = true): {}",
                    missed.join("; ")
                ),
            ),
            Some(out),
        ));
    }
    Ok(out)
}

/// The stage the scenes fan out from and that stage's list (`story.scenes`), read from the run
/// folder: the stage is an ancestor of this one, so its output is there.
fn read_story(ctx: &StageContext) -> Option<(String, Value)> {
    let source = ctx.spec.fans.values().find_map(|f| match f {
        Fan::PerItem { source, .. } | Fan::Gather { source } => Some(source.clone()),
        Fan::Once => None,
    })?;
    let (stage, field) = source
        .split_once('.')
        .unwrap_or((source.as_str(), "scenes"));
    let path = ctx
        .run_dir
        .join(RunDir::output_file(&InstanceId::new(stage, None)));
    let story: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let list = story.get(field)?.clone();
    Some((stage.to_owned(), list))
}

/// The non-empty `premise` var of the `llm` stage the story came from.
fn premise_of(ctx: &StageContext, story: Option<&(String, Value)>) -> Option<String> {
    let (stage, _) = story?;
    match ctx.spec.spec.stages.get(stage)? {
        SpecStage::Llm(l) => l
            .vars
            .get("premise")?
            .as_str()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned),
        _ => None,
    }
}

/// Why the frames input could not be read.
#[derive(Debug, thiserror::Error)]
enum ScenesError {
    #[error("the quality stage needs a `collect-frames` stage (no input has `Frames`)")]
    NoFramesInput,
    #[error("the output of `{name}` is not a collect-frames output: {source}")]
    NotFrames {
        name: String,
        source: serde_json::Error,
    },
}

/// The scenes to score, and whether this instance is one scene's: the output of the needed
/// `collect-frames` stage (one scene's), or the gathered array of every scene's.
fn scenes_from_inputs(
    ctx: &StageContext,
    story: Option<&(String, Value)>,
) -> Result<(Vec<SceneInput>, bool), ScenesError> {
    // The ids the telemetry records (a repeated id made unique), so that a check names the
    // scene it scored and no other.
    let ids = story
        .and_then(|s| s.1.as_array())
        .map(|items| crate::story::scene_ids(items))
        .unwrap_or_default();
    let scene_of = |index: usize, item: Option<&Value>, frames: Option<&FramesOutput>| {
        let text = |k: &str| item.and_then(|i| i.get(k)).and_then(Value::as_str);
        SceneInput {
            id: ids.get(index).map_or_else(
                || text("id").map_or_else(|| format!("scene-{}", index + 1), str::to_owned),
                |(id, _)| id.clone(),
            ),
            index,
            prompt: text("prompt").unwrap_or_default().to_owned(),
            frames: frames.map(|f| f.frames.paths.clone()).unwrap_or_default(),
        }
    };
    let (name, input) = ctx
        .input_of_kind(StageKind::CollectFrames)
        .ok_or(ScenesError::NoFramesInput)?;
    let unreadable = |source: serde_json::Error| ScenesError::NotFrames {
        name: name.to_string(),
        source,
    };
    if input.is_array() {
        // A gathered need: every scene's output, in item order (null for one that has none).
        let all: Vec<Option<FramesOutput>> =
            serde_json::from_value(input.as_ref().clone()).map_err(unreadable)?;
        let items = story.and_then(|s| s.1.as_array());
        let scenes = all
            .iter()
            .enumerate()
            .map(|(i, o)| scene_of(i, items.and_then(|it| it.get(i)), o.as_ref()))
            .collect();
        return Ok((scenes, false));
    }
    let frames: FramesOutput =
        serde_json::from_value(input.as_ref().clone()).map_err(unreadable)?;
    let index = ctx.instance.item.unwrap_or(0) as usize;
    Ok((
        vec![scene_of(index, ctx.item.as_ref(), Some(&frames))],
        true,
    ))
}

/// What the `duplicate` check gave: one result per scored scene, and notes.
struct Duplicates {
    checks: Vec<QualityCheckResult>,
    notes: Vec<String>,
}

/// The `duplicate` check of each scored scene: its highest similarity to any other scene of
/// the story, by embedding cosine when an `embedding_service` is configured and answers,
/// lexically otherwise (and when it fails, with a note).
async fn duplicate_checks(
    ctx: &StageContext,
    cfg: &QualityStage,
    t: &QualityThresholds,
    scenes: &[SceneInput],
    story: &[(String, String)],
) -> Duplicates {
    let mut notes = Vec::new();
    if story.len() < 2 {
        notes.push("duplicate not checked: the story has fewer than 2 scenes".to_owned());
        return Duplicates {
            checks: Vec::new(),
            notes,
        };
    }
    let texts: Vec<&str> = story.iter().map(|s| s.1.as_str()).collect();
    let embedded = match &cfg.embedding_service {
        Some(service) => match embed(ctx, service, &texts).await {
            Ok(v) => Some(v),
            Err(e) => {
                notes.push(format!(
                    "duplicate check by embeddings failed ({e}); lexical similarity used instead"
                ));
                None
            }
        },
        None => None,
    };
    let checks = scenes
        .iter()
        .map(|s| {
            let (closest, threshold) = match &embedded {
                Some(v) => (
                    closest_other(s.index, v.len(), |i, j| cosine(v.get(i)?, v.get(j)?)),
                    t.max_embedding_similarity,
                ),
                None => (
                    closest_other(s.index, texts.len(), |i, j| {
                        lexical_similarity(texts.get(i)?, texts.get(j)?)
                    }),
                    t.max_similarity,
                ),
            };
            let result = score(
                QualityCheck::Duplicate,
                Some(&s.id),
                closest.map(|c| c.0),
                threshold,
                false,
            );
            match closest {
                Some((v, j)) if !result.passed => notes.push(format!(
                    "scene `{}` is a near-duplicate of scene `{}` (similarity {v:.2} > {threshold})",
                    s.id,
                    story.get(j).map_or("?", |o| o.0.as_str()),
                )),
                None => notes.push(format!(
                    "duplicate of scene `{}` not measured: no theme to compare",
                    s.id
                )),
                Some(_) => {}
            }
            result
        })
        .collect();
    Duplicates { checks, notes }
}

#[cfg(test)]
mod tests;
