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
//! | `diversity` | normalised word entropy of the scene prompts (run-wide) | `>= min_diversity` |
//! | `alignment` | cosine of the scene prompt's and the story's embeddings | `>= min_alignment` |
//! | `coherence` | LLM rubric grade, 1–5 (run-wide) | `>= min_coherence` |
//!
//! - **Decoding**: frames are PNGs, decoded with the `png` crate (palette and low bit depths
//!   expanded); a frame that cannot be decoded counts as blank, with a note.
//! - **Blank**: a frame is blank (black, white or any single colour) when at least
//!   [`BLANK_SHARE`] of its pixels are within [`BLANK_TOLERANCE`] (per channel, 8-bit scale) of
//!   its most common pixel value. The demo's 64×64 frames with a 16×16 square (6.25% of the
//!   pixels) are not blank; a flat or nearly flat frame (sensor-like noise of a few levels
//!   included) is.
//! - **Frozen**: a frame is frozen when the SHA-256 of its decoded pixels (and size) equals the
//!   previous frame's; the first frame never is. The fraction is over all frames.
//! - **Diversity**: the words of every scene's `prompt` (lowercased, letters and digits, English
//!   stop words and words under 3 letters dropped); Shannon entropy `H = -Σ p log2 p` over the
//!   word counts, normalised by `log2 N` (N = words in all): 1 when no word repeats, 0 when one
//!   word is all there is. The story is read from the run folder (the output of the stage the
//!   scenes fan out from, an ancestor of this one); with fewer than 2 words, or no story, the
//!   value is null.
//! - **Alignment** and **coherence** run only when requested in `checks` (the spec check then
//!   requires their services). Alignment asks the `embedding_service`'s `/embeddings`;
//!   coherence by a rubric is not built yet and is recorded null with a note.
//! - **A null value never passes**: a check that could not be measured is recorded with
//!   `Value = null` and `Passed = false`, and the notes say why.
//! - **Enforce**: with `enforce = true` a missed threshold fails the attempt with class
//!   `invalid-output` (the attempt record still lists the checks); otherwise it is recorded only.
//!
//! Every attempt writes `attempt-<n>.json` in its instance folder.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::exec::rundir::RunDir;
use crate::exec::{BoxFuture, InstanceId, Stage, StageContext, StageFailure};
use crate::spec::Fan;
use crate::spec::model::{
    FailureClass, QualityCheck, QualityStage, QualityThresholds, Service, Stage as SpecStage,
};
use crate::telemetry::{QualityCheckResult, SceneQualityMetrics};

/// Share of a frame's pixels that must match its most common value for it to be blank.
pub const BLANK_SHARE: f64 = 0.99;
/// How far (per channel, on an 8-bit scale) a pixel may be from the most common value and
/// still match it.
pub const BLANK_TOLERANCE: u8 = 8;

/// Words left out of the diversity entropy.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "from", "into", "onto", "over", "under", "its",
    "his", "her", "their", "are", "was", "were", "has", "have", "had", "but", "not", "all", "out",
    "off", "she", "him", "they", "them", "you", "your", "our", "who", "which", "while", "then",
    "than", "there", "where", "when", "what", "one", "some", "very", "just", "upon", "about",
];

/// What the frames of one scene measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameStats {
    pub count: u32,
    /// Width and height of the smallest decoded frame (by area).
    pub size: Option<(u32, u32)>,
    pub blank: u32,
    pub frozen: u32,
    pub notes: Vec<String>,
}

impl FrameStats {
    pub fn blank_fraction(&self) -> Option<f64> {
        (self.count > 0).then(|| f64::from(self.blank) / f64::from(self.count))
    }

    pub fn frozen_fraction(&self) -> Option<f64> {
        (self.count > 0).then(|| f64::from(self.frozen) / f64::from(self.count))
    }
}

/// One decoded frame: its size, whether it is blank, and the hash of its pixels.
struct Decoded {
    width: u32,
    height: u32,
    blank: bool,
    hash: [u8; 32],
}

/// Decodes a PNG into 8-bit samples per channel (16-bit samples keep their high byte).
fn decode(path: &Path) -> Result<Decoded, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| "the image is too large to decode".to_owned())?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let wide = info.bit_depth == png::BitDepth::Sixteen;
    let bytes_per_sample = if wide { 2 } else { 1 };
    let row = info.line_size;
    let (w, h) = (info.width as usize, info.height as usize);
    let mut pixels: Vec<u8> = Vec::with_capacity(w * h * channels);
    for y in 0..h {
        let line = buf
            .get(y * row..y * row + w * channels * bytes_per_sample)
            .ok_or_else(|| "truncated image data".to_owned())?;
        pixels.extend(line.iter().step_by(bytes_per_sample));
    }
    let mut hasher = Sha256::new();
    hasher.update(info.width.to_le_bytes());
    hasher.update(info.height.to_le_bytes());
    hasher.update(&pixels);
    Ok(Decoded {
        width: info.width,
        height: info.height,
        blank: is_blank(&pixels, channels.max(1)),
        hash: hasher.finalize().into(),
    })
}

/// The blank rule of the module docs, on 8-bit samples of `channels` per pixel.
pub fn is_blank(pixels: &[u8], channels: usize) -> bool {
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for p in pixels.chunks_exact(channels) {
        *counts.entry(p).or_default() += 1;
    }
    let total = pixels.len() / channels;
    let Some((mode, _)) = counts.iter().max_by_key(|(_, n)| **n) else {
        return true;
    };
    let near: usize = counts
        .iter()
        .filter(|(p, _)| {
            p.iter()
                .zip(mode.iter())
                .all(|(a, b)| a.abs_diff(*b) <= BLANK_TOLERANCE)
        })
        .map(|(_, n)| n)
        .sum();
    near as f64 >= BLANK_SHARE * total as f64
}

/// Measures a scene's frames, in order.
pub fn analyse(paths: &[PathBuf]) -> FrameStats {
    let mut stats = FrameStats {
        count: u32::try_from(paths.len()).unwrap_or(u32::MAX),
        ..FrameStats::default()
    };
    let mut previous: Option<[u8; 32]> = None;
    for path in paths {
        match decode(path) {
            Ok(d) => {
                if d.blank {
                    stats.blank += 1;
                }
                if previous == Some(d.hash) {
                    stats.frozen += 1;
                }
                previous = Some(d.hash);
                let area = |(w, h): (u32, u32)| u64::from(w) * u64::from(h);
                if stats
                    .size
                    .is_none_or(|s| area((d.width, d.height)) < area(s))
                {
                    stats.size = Some((d.width, d.height));
                }
            }
            Err(e) => {
                stats.blank += 1;
                previous = None;
                stats.notes.push(format!(
                    "frame `{}` cannot be decoded ({e}); counted as blank",
                    path.display()
                ));
            }
        }
    }
    stats
}

/// The content words of a text, for the diversity entropy.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !STOP_WORDS.contains(&w.as_str()))
}

/// Normalised Shannon entropy of the words of `prompts` (the module docs' rule); `None` with
/// fewer than two words.
pub fn diversity(prompts: &[&str]) -> Option<f64> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in prompts {
        for w in words(p) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    if total < 2 {
        return None;
    }
    let n = total as f64;
    let h: f64 = counts
        .values()
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    Some((h / n.log2()).clamp(0.0, 1.0))
}

/// A check's result: `at_least` says which side of the threshold passes; null never passes.
fn score(
    check: QualityCheck,
    scene: Option<&str>,
    value: Option<f64>,
    threshold: f64,
    at_least: bool,
) -> QualityCheckResult {
    let passed = value.is_some_and(|v| {
        if at_least {
            v >= threshold
        } else {
            v <= threshold
        }
    });
    QualityCheckResult {
        check,
        scene_id: scene.map(str::to_owned),
        value,
        threshold,
        passed,
    }
}

/// One scene to score: its id, prompt and collected frames (paths relative to the run folder).
#[derive(Debug, Clone, Default)]
pub struct SceneInput {
    pub id: String,
    pub prompt: String,
    pub frames: Vec<String>,
}

/// What scoring one scene gave.
#[derive(Debug, Clone, Default)]
pub struct SceneScore {
    pub metrics: SceneQualityMetrics,
    pub checks: Vec<QualityCheckResult>,
    pub notes: Vec<String>,
}

/// The frame checks of one scene (the ones in `checks`), with `alignment` filled in by the
/// caller when it was measured.
pub fn score_frames(
    run_dir: &Path,
    scene: &SceneInput,
    checks: &[QualityCheck],
    t: &QualityThresholds,
    alignment: Option<Option<f64>>,
) -> SceneScore {
    let paths: Vec<PathBuf> = scene.frames.iter().map(|p| run_dir.join(p)).collect();
    let stats = analyse(&paths);
    let id = Some(scene.id.as_str());
    let mut out = SceneScore {
        notes: stats.notes.clone(),
        ..SceneScore::default()
    };
    out.metrics.width = stats.size.map(|s| s.0);
    out.metrics.height = stats.size.map(|s| s.1);
    out.metrics.blank_fraction = stats.blank_fraction();
    out.metrics.frozen_fraction = stats.frozen_fraction();
    if stats.count == 0 {
        out.notes
            .push(format!("scene `{}` has no frames to score", scene.id));
    }
    for check in checks {
        let result = match check {
            QualityCheck::FrameCount => score(
                *check,
                id,
                Some(f64::from(stats.count)),
                f64::from(t.min_frames),
                true,
            ),
            QualityCheck::Resolution => {
                let ratio = stats.size.map(|(w, h)| {
                    let r = |v: u32, min: u32| {
                        if min == 0 {
                            f64::INFINITY
                        } else {
                            f64::from(v) / f64::from(min)
                        }
                    };
                    r(w, t.min_width).min(r(h, t.min_height))
                });
                // Both floors 0: any decoded frame passes; record 1 rather than infinity.
                let ratio = ratio.map(|r| if r.is_finite() { r } else { 1.0 });
                score(*check, id, ratio, 1.0, true)
            }
            QualityCheck::Blank => score(
                *check,
                id,
                out.metrics.blank_fraction,
                t.max_blank_fraction,
                false,
            ),
            QualityCheck::Frozen => score(
                *check,
                id,
                out.metrics.frozen_fraction,
                t.max_frozen_fraction,
                false,
            ),
            QualityCheck::Alignment => {
                let value = alignment.flatten();
                out.metrics.alignment = value;
                score(*check, id, value, t.min_alignment, true)
            }
            QualityCheck::Diversity | QualityCheck::Coherence => continue,
        };
        out.checks.push(result);
    }
    out
}

/// The `quality` kind for the executor.
pub struct Quality;

impl Stage for Quality {
    fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
        Box::pin(async move {
            let Some(SpecStage::Quality(cfg)) = ctx.stage() else {
                return Err(StageFailure::new(
                    FailureClass::InvalidOutput,
                    "the quality stage was handed a stage of another kind",
                ));
            };
            let result = attempt(ctx, cfg).await;
            let mut record = match &result {
                Ok(v) => v.as_object().cloned().unwrap_or_default(),
                Err((_, partial)) => partial.clone(),
            };
            record.insert("attempt".into(), ctx.attempt.into());
            match &result {
                Ok(_) => {
                    record.insert("outcome".into(), "succeeded".into());
                }
                Err((f, _)) => {
                    record.insert("outcome".into(), "failed".into());
                    record.insert("failure_class".into(), json!(f.class));
                    record.insert("error".into(), f.message.clone().into());
                }
            }
            super::write_attempt_record(ctx, &record)?;
            result.map_err(|(f, _)| f)
        })
    }
}

type Failed = (StageFailure, Map<String, Value>);

async fn attempt(ctx: &StageContext, cfg: &QualityStage) -> Result<Value, Failed> {
    let invalid = |m: String| {
        (
            StageFailure::new(FailureClass::InvalidOutput, m),
            Map::new(),
        )
    };
    let story = read_story(ctx);
    let mut notes: Vec<String> = Vec::new();
    // The frames input: one scene's collect-frames output, or the gathered array of them.
    let (scenes, per_scene) = scenes_from_inputs(ctx, story.as_ref()).map_err(invalid)?;

    let prompts: Vec<String> = match story.as_ref().and_then(|s| s.1.as_array()) {
        Some(items) => items
            .iter()
            .filter_map(|i| i.get("prompt").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        None => scenes.iter().map(|s| s.prompt.clone()).collect(),
    };
    let story_text = prompts.join("\n");
    let wants = |c: QualityCheck| cfg.checks.contains(&c);

    // Alignment per scene, when asked for.
    let mut alignments: Vec<Option<Option<f64>>> = vec![None; scenes.len()];
    if wants(QualityCheck::Alignment) {
        for (i, s) in scenes.iter().enumerate() {
            let v = match &cfg.embedding_service {
                Some(service) => match embed_cosine(ctx, service, &s.prompt, &story_text).await {
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

    let run_dir = ctx.run_dir.clone();
    let checks = cfg.checks.clone();
    let thresholds = cfg.thresholds.clone();
    let scored: Vec<SceneScore> = tokio::task::spawn_blocking(move || {
        scenes
            .iter()
            .zip(alignments)
            .map(|(s, a)| score_frames(&run_dir, s, &checks, &thresholds, a))
            .collect()
    })
    .await
    .map_err(|e| invalid(format!("scoring the frames failed: {e}")))?;

    let mut all_checks: Vec<QualityCheckResult> = Vec::new();
    for s in &scored {
        all_checks.extend(s.checks.iter().cloned());
        notes.extend(s.notes.iter().cloned());
    }
    let mut diversity_value = None;
    if wants(QualityCheck::Diversity) {
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        diversity_value = diversity(&refs);
        if diversity_value.is_none() {
            notes.push(
                "diversity not measured: fewer than 2 content words in the scene prompts"
                    .to_owned(),
            );
        }
        all_checks.push(score(
            QualityCheck::Diversity,
            None,
            diversity_value,
            cfg.thresholds.min_diversity,
            true,
        ));
    }
    if wants(QualityCheck::Coherence) {
        notes.push(format!(
            "coherence not measured: the LLM rubric (`rubric_service` = {:?}) is not built yet",
            cfg.rubric_service.as_deref().unwrap_or("")
        ));
        all_checks.push(score(
            QualityCheck::Coherence,
            None,
            None,
            cfg.thresholds.min_coherence,
            true,
        ));
    }
    let passed = all_checks.iter().all(|c| c.passed);
    let aligned: Vec<f64> = scored.iter().filter_map(|s| s.metrics.alignment).collect();
    let semantic_alignment =
        (!aligned.is_empty()).then(|| aligned.iter().sum::<f64>() / aligned.len() as f64);

    let telemetry = if per_scene {
        json!({ "QualityMetrics": scored.first().map(|s| s.metrics.clone()).unwrap_or_default() })
    } else {
        json!({ "QualityMetrics": {
            "Passed": passed,
            "DiversityEntropy": diversity_value,
            "SemanticAlignment": semantic_alignment,
            "Checks": all_checks,
        }})
    };
    let mut out = Map::new();
    out.insert("passed".into(), passed.into());
    out.insert("checks".into(), json!(all_checks));
    out.insert("diversity_entropy".into(), json!(diversity_value));
    out.insert("semantic_alignment".into(), json!(semantic_alignment));
    out.insert("narrative_coherence".into(), Value::Null);
    out.insert("notes".into(), json!(notes));
    out.insert("telemetry".into(), telemetry);
    if !passed && cfg.enforce {
        let missed: Vec<String> = all_checks
            .iter()
            .filter(|c| !c.passed)
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
            out,
        ));
    }
    Ok(Value::Object(out))
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

/// The scenes to score, and whether this instance is one scene's.
fn scenes_from_inputs(
    ctx: &StageContext,
    story: Option<&(String, Value)>,
) -> Result<(Vec<SceneInput>, bool), String> {
    let paths = |v: &Value| -> Vec<String> {
        v.pointer("/Frames/Paths")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let scene_of = |index: usize, item: Option<&Value>| {
        let text = |k: &str| item.and_then(|i| i.get(k)).and_then(Value::as_str);
        SceneInput {
            id: text("id").map_or_else(|| format!("scene-{}", index + 1), str::to_owned),
            prompt: text("prompt").unwrap_or_default().to_owned(),
            frames: Vec::new(),
        }
    };
    for (_, input) in &ctx.inputs {
        if input.get("Frames").is_some() {
            let index = ctx.instance.item.unwrap_or(0) as usize;
            let mut s = scene_of(index, ctx.item.as_ref());
            s.frames = paths(input);
            return Ok((vec![s], true));
        }
        if let Some(all) = input.as_array()
            && all.iter().any(|o| o.get("Frames").is_some())
        {
            let items = story.and_then(|s| s.1.as_array());
            let scenes = all
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let mut s = scene_of(i, items.and_then(|it| it.get(i)));
                    s.frames = paths(o);
                    s
                })
                .collect();
            return Ok((scenes, false));
        }
    }
    Err("the quality stage needs a `collect-frames` stage (no input has `Frames`)".to_owned())
}

/// Cosine similarity of the embeddings of `a` and `b` from an `openai` service's
/// `/embeddings` (one request, both inputs).
async fn embed_cosine(ctx: &StageContext, service: &str, a: &str, b: &str) -> Result<f64, String> {
    let Some(Service::Openai(s)) = ctx.spec.spec.services.get(service) else {
        return Err(format!("`{service}` is not an `openai` service"));
    };
    let url = format!("{}/embeddings", s.base_url.trim_end_matches('/'));
    let client = crate::clients::http()?;
    let mut req = client
        .post(&url)
        .timeout(std::time::Duration::try_from_secs_f64(s.timeout_s).unwrap_or_default())
        .json(&json!({ "model": s.model, "input": [a, b] }));
    if let Some(var) = &s.api_key_env
        && let Ok(key) = std::env::var(var)
    {
        req = req.bearer_auth(key);
    }
    let send = async {
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        resp.json::<Value>().await.map_err(|e| e.to_string())
    };
    let body = tokio::select! {
        r = send => r?,
        () = ctx.cancel.cancelled() => return Err("cancelled".to_owned()),
    };
    let vector = |i: usize| -> Option<Vec<f64>> {
        body.pointer(&format!("/data/{i}/embedding"))?
            .as_array()?
            .iter()
            .map(Value::as_f64)
            .collect()
    };
    let (Some(x), Some(y)) = (vector(0), vector(1)) else {
        return Err(format!("{url} answered without two embeddings"));
    };
    cosine(&x, &y).ok_or_else(|| "the embeddings are empty, zero or of different sizes".to_owned())
}

/// Cosine similarity; `None` for vectors of different lengths or zero length.
pub fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| (dot / (na * nb)).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::exec::{ExecOptions, Interrupt, Registry, RunOutcome, RunRequest};
    use crate::spec::model::StageKind;
    use crate::telemetry::{ArtifactMetadata, METADATA_FILE};

    /// Writes an 8-bit RGB PNG of `w`×`h` filled by `pixel(x, y)`.
    fn write_png(path: &Path, w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) {
        let file = std::fs::File::create(path).expect("create");
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().expect("header");
        let data: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| pixel(x, y))
            .collect();
        writer.write_image_data(&data).expect("data");
    }

    /// The demo's frames: a 16×16 square moving over a 64×64 background.
    fn moving_square(dir: &Path, n: u32) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("frame_{i:05}_.png"));
                let (sx, sy) = (2 * i, 8 + i);
                write_png(&p, 64, 64, |x, y| {
                    if (sx..sx + 16).contains(&x) && (sy..sy + 16).contains(&y) {
                        [240, 192, 32]
                    } else {
                        [48, 80, 112]
                    }
                });
                p
            })
            .collect()
    }

    fn flat(dir: &Path, n: u32, colour: [u8; 3]) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("flat_{i:05}_.png"));
                write_png(&p, 64, 64, |_, _| colour);
                p
            })
            .collect()
    }

    #[test]
    fn a_moving_square_is_neither_blank_nor_frozen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = analyse(&moving_square(tmp.path(), 25));
        assert_eq!(s.count, 25);
        assert_eq!(s.size, Some((64, 64)));
        assert_eq!((s.blank, s.frozen), (0, 0), "{s:?}");
        assert!(s.notes.is_empty());
    }

    #[test]
    fn all_black_frames_are_blank_and_identical_frames_frozen() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = analyse(&flat(tmp.path(), 10, [0, 0, 0]));
        assert_eq!(s.blank_fraction(), Some(1.0));
        // Every frame after the first repeats the one before.
        assert_eq!(s.frozen_fraction(), Some(0.9));
    }

    #[test]
    fn a_repeated_non_blank_frame_is_frozen_but_not_blank() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let one = moving_square(tmp.path(), 1).remove(0);
        let s = analyse(&vec![one; 4]);
        assert_eq!((s.blank, s.frozen), (0, 3));
    }

    #[test]
    fn the_blank_rule_tolerates_noise_and_a_few_odd_pixels() {
        // Dark noise of a few levels is still a black frame.
        let noisy: Vec<u8> = (0..1000u32).map(|i| (i % 5) as u8).collect();
        assert!(is_blank(&noisy, 1));
        // 1% odd pixels: still blank; 2%: not.
        let mut px = vec![0u8; 1000];
        px[..10].fill(255);
        assert!(is_blank(&px, 1));
        px[..20].fill(255);
        assert!(!is_blank(&px, 1));
    }

    #[test]
    fn a_frame_that_is_not_a_png_counts_as_blank_with_a_note() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("bad.png");
        std::fs::write(&p, b"not a png").expect("write");
        let s = analyse(&[p]);
        assert_eq!((s.count, s.blank, s.size), (1, 1, None));
        assert_eq!(s.notes.len(), 1, "{:?}", s.notes);
    }

    fn checks_all() -> Vec<QualityCheck> {
        vec![
            QualityCheck::FrameCount,
            QualityCheck::Resolution,
            QualityCheck::Blank,
            QualityCheck::Frozen,
        ]
    }

    fn scene(dir: &Path, paths: &[PathBuf]) -> SceneInput {
        SceneInput {
            id: "s1".into(),
            prompt: "p".into(),
            frames: paths
                .iter()
                .map(|p| p.strip_prefix(dir).expect("inside").display().to_string())
                .collect(),
        }
    }

    fn verdicts(s: &SceneScore) -> Vec<(QualityCheck, Option<f64>, bool)> {
        s.checks
            .iter()
            .map(|c| (c.check, c.value, c.passed))
            .collect()
    }

    #[test]
    fn thresholds_pass_the_demo_frames_and_fail_broken_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let t = QualityThresholds::default();
        let good = moving_square(tmp.path(), 25);
        let s = score_frames(
            tmp.path(),
            &scene(tmp.path(), &good),
            &checks_all(),
            &t,
            None,
        );
        assert_eq!(
            verdicts(&s),
            [
                (QualityCheck::FrameCount, Some(25.0), true),
                (QualityCheck::Resolution, Some(1.0), true),
                (QualityCheck::Blank, Some(0.0), true),
                (QualityCheck::Frozen, Some(0.0), true),
            ]
        );
        assert_eq!(s.metrics.width, Some(64));

        let black = flat(tmp.path(), 30, [0, 0, 0]);
        let s = score_frames(
            tmp.path(),
            &scene(tmp.path(), &black),
            &checks_all(),
            &t,
            None,
        );
        let failed: Vec<QualityCheck> = s
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.check)
            .collect();
        assert_eq!(failed, [QualityCheck::Blank, QualityCheck::Frozen]);

        // No frames: the count fails, the rest cannot be measured and so do not pass.
        let s = score_frames(tmp.path(), &scene(tmp.path(), &[]), &checks_all(), &t, None);
        assert_eq!(
            verdicts(&s),
            [
                (QualityCheck::FrameCount, Some(0.0), false),
                (QualityCheck::Resolution, None, false),
                (QualityCheck::Blank, None, false),
                (QualityCheck::Frozen, None, false),
            ]
        );
        assert!(
            s.notes.iter().any(|n| n.contains("no frames")),
            "{:?}",
            s.notes
        );

        // Too small for a raised floor.
        let t = QualityThresholds {
            min_width: 128,
            ..QualityThresholds::default()
        };
        let s = score_frames(
            tmp.path(),
            &scene(tmp.path(), &good),
            &[QualityCheck::Resolution],
            &t,
            None,
        );
        assert_eq!(verdicts(&s), [(QualityCheck::Resolution, Some(0.5), false)]);
    }

    #[test]
    fn diversity_is_normalised_word_entropy() {
        assert_eq!(diversity(&["lighthouse keeper", "moon dust"]), Some(1.0));
        // "the" and "of" are stop words: light, world twice each.
        let d = diversity(&["The Light of the World", "The Light of the World"]).expect("d");
        assert!((d - 0.5).abs() < 1e-9, "{d}");
        assert_eq!(diversity(&["moon moon moon moon"]), Some(0.0));
        assert_eq!(diversity(&["moon", "of the"]), None);
    }

    #[test]
    fn cosine_of_vectors() {
        assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0]), Some(1.0));
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), Some(0.0));
        assert_eq!(cosine(&[1.0], &[1.0, 2.0]), None);
        assert_eq!(cosine(&[0.0], &[1.0]), None);
    }

    /// story (scripted llm) → frames (scripted collect-frames, per scene, writing PNGs) →
    /// quality (the real stage) → validate (the real stage).
    fn spec(dir: &Path, enforce: bool) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("engine/ has a parent")
            .to_path_buf();
        let text = format!(
            r#"
[run]
name = "q"
base_dir = "{root}"
output_dir = "{out}"

[services.llm]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "m"

[stages.story]
kind = "llm"
service = "llm"
prompt = "prompts/story/v1/sci-fi.hbs"
vars = {{ scenes = 2, tone = "calm", premise = "" }}

[stages.frames]
kind = "collect-frames"
needs = ["story"]
for_each = "story.scenes"

[stages.quality]
kind = "quality"
needs = ["frames"]
enforce = {enforce}

[stages.validate]
kind = "validate"
needs = ["quality"]
"#,
            root = root.display(),
            out = dir.join("runs").display(),
        );
        let p = dir.join("q.toml");
        std::fs::write(&p, text).expect("spec");
        p
    }

    /// The story has two scenes; scene `b`'s frames are black.
    struct Scripted;

    impl Stage for Scripted {
        fn run<'a>(&'a self, ctx: &'a StageContext) -> BoxFuture<'a, Result<Value, StageFailure>> {
            Box::pin(async move {
                if ctx.instance.stage == "story" {
                    return Ok(json!({
                        "title": "T", "story_version": "1",
                        "scenes": [
                            {"id": "a", "prompt": "a lighthouse keeper on a moon", "mood": "calm"},
                            {"id": "b", "prompt": "dust storms over the crater", "mood": "calm"},
                        ],
                    }));
                }
                let dir = ctx.run_dir.join(&ctx.instance_dir).join("frames");
                std::fs::create_dir_all(&dir).expect("mkdir");
                let paths = if ctx.instance.item == Some(1) {
                    flat(&dir, 25, [0, 0, 0])
                } else {
                    moving_square(&dir, 25)
                };
                let rel: Vec<String> = paths
                    .iter()
                    .map(|p| {
                        p.strip_prefix(&ctx.run_dir)
                            .expect("inside")
                            .display()
                            .to_string()
                    })
                    .collect();
                let frames = json!({
                    "Count": 25, "MinFrames": 25, "Short": false,
                    "Directory": null, "Paths": rel, "BestAttempt": 1,
                });
                Ok(json!({"Frames": frames, "telemetry": {"Frames": frames}}))
            })
        }
    }

    async fn run(enforce: bool) -> (crate::exec::RunReport, ArtifactMetadata, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let req = RunRequest {
            spec: Some(spec(tmp.path(), enforce)),
            options: ExecOptions::default(),
            skip_services: true,
            ..Default::default()
        };
        let registry = Registry::builtin()
            .with(StageKind::Llm, Arc::new(Scripted))
            .with(StageKind::CollectFrames, Arc::new(Scripted));
        let report = crate::exec::run(req, registry, &Interrupt::new(), vec![])
            .await
            .expect("runs");
        let text = std::fs::read_to_string(report.dir.join(METADATA_FILE)).expect("metadata");
        let m: ArtifactMetadata = serde_json::from_str(&text).expect("parses");
        assert_eq!(crate::verify::verify_run(&report.dir).expect("reads"), []);
        (report, m, tmp)
    }

    #[tokio::test]
    async fn a_run_records_each_scene_s_scores_and_the_run_s_checks() {
        let (report, m, _tmp) = run(false).await;
        assert_eq!(report.outcome, RunOutcome::Succeeded, "{report:?}");
        let a = &m.scenes[0].quality_metrics;
        assert_eq!((a.width, a.height), (Some(64), Some(64)));
        assert_eq!(
            (a.blank_fraction, a.frozen_fraction),
            (Some(0.0), Some(0.0))
        );
        assert_eq!(m.scenes[1].quality_metrics.blank_fraction, Some(1.0));
        let q = &m.quality_metrics;
        assert_eq!(q.passed, Some(false));
        assert_eq!(q.avg_frames_per_scene, Some(25.0));
        assert!(q.diversity_entropy.is_some_and(|d| d > 0.9), "{q:?}");
        let failed: Vec<(QualityCheck, Option<&str>)> = q
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| (c.check, c.scene_id.as_deref()))
            .collect();
        assert_eq!(
            failed,
            [
                (QualityCheck::Blank, Some("b")),
                (QualityCheck::Frozen, Some("b"))
            ]
        );
        // Diversity is run-wide: once, not once per scene.
        let diversity = q
            .checks
            .iter()
            .filter(|c| c.check == QualityCheck::Diversity);
        assert_eq!(diversity.count(), 1);
    }

    #[tokio::test]
    async fn an_enforced_miss_fails_the_stage_and_keeps_its_checks() {
        let (report, m, _tmp) = run(true).await;
        assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
        let rec: Value = serde_json::from_str(
            &std::fs::read_to_string(report.dir.join("stages/quality/1/attempt-1.json"))
                .expect("record"),
        )
        .expect("json");
        assert_eq!(rec["failure_class"], "invalid-output", "{rec}");
        assert!(
            rec["error"]
                .as_str()
                .is_some_and(|e| e.contains("blank of scene `b`")),
            "{rec}"
        );
        assert_eq!(m.quality_metrics.passed, Some(false));
        assert!(
            m.quality_metrics
                .checks
                .iter()
                .any(|c| c.scene_id.as_deref() == Some("b"))
        );
    }
}
