//! Scoring frames: decoding, blank and frozen frames, and a check's verdict against its
//! threshold (the rules are in the parent module's docs).

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::artifact_metadata::{QualityCheckResult, SceneQualityMetrics};
use crate::spec::model::{CheckEntry, QualityCheck, QualityThresholds};

/// Share of a frame's pixels that must match its most common value for it to be blank.
pub const BLANK_SHARE: f64 = 0.99;
/// How far (per channel, on an 8-bit scale) a pixel may be from the most common value and
/// still match it.
pub const BLANK_TOLERANCE: u8 = 8;

/// What the frames of one scene measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameStats {
    pub count: u32,
    /// Width and height of the smallest decoded frame (by area).
    pub size: Option<(u32, u32)>,
    pub blank: u32,
    pub frozen: u32,
    /// The perceptual hash of each decoded frame, in order.
    pub hashes: Vec<u64>,
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
    dhash: u64,
}

/// Most pixels a frame may have to be decoded: 8K UHD (7680×4320). The header says the size
/// before anything is allocated, so a small file claiming a huge image is refused unread.
pub const MAX_FRAME_PIXELS: u64 = 7680 * 4320;
/// Most bytes the decoder may allocate for one frame: the `png` crate's own working buffers
/// (its `Limits`) and, separately, the decoded image (an 8K 16-bit RGBA frame fits).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
enum FrameDecodeError {
    #[error(transparent)]
    Open(#[from] std::io::Error),
    #[error(transparent)]
    Png(#[from] png::DecodingError),
    #[error(
        "its header claims {width}×{height} pixels, over the limit of {}",
        MAX_FRAME_PIXELS
    )]
    TooManyPixels { width: u32, height: u32 },
    #[error("its decoded image would take more than {} bytes", MAX_FRAME_BYTES)]
    TooLarge,
    #[error("truncated image data")]
    Truncated,
}

/// Decodes a PNG into 8-bit samples per channel (16-bit samples keep their high byte), within
/// [`MAX_FRAME_PIXELS`] and [`MAX_FRAME_BYTES`].
fn decode(path: &Path) -> Result<Decoded, FrameDecodeError> {
    let file = std::fs::File::open(path)?;
    let limits = png::Limits {
        bytes: MAX_FRAME_BYTES,
    };
    let mut decoder = png::Decoder::new_with_limits(BufReader::new(file), limits);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info()?;
    let (w, h) = (reader.info().width, reader.info().height);
    if u64::from(w) * u64::from(h) > MAX_FRAME_PIXELS {
        return Err(FrameDecodeError::TooManyPixels {
            width: w,
            height: h,
        });
    }
    let size = reader
        .output_buffer_size()
        .filter(|s| *s <= MAX_FRAME_BYTES)
        .ok_or(FrameDecodeError::TooLarge)?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf)?;
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    let wide = info.bit_depth == png::BitDepth::Sixteen;
    let bytes_per_sample = if wide { 2 } else { 1 };
    let row = info.line_size;
    let (w, h) = (info.width as usize, info.height as usize);
    let pixels: Vec<u8> = if !wide && row == w * channels {
        // Rows without padding and one byte a sample: the buffer is the pixels already.
        buf.truncate(w * h * channels);
        if buf.len() < w * h * channels {
            return Err(FrameDecodeError::Truncated);
        }
        buf
    } else {
        let mut pixels = Vec::with_capacity(w * h * channels);
        for y in 0..h {
            let line = buf
                .get(y * row..y * row + w * channels * bytes_per_sample)
                .ok_or(FrameDecodeError::Truncated)?;
            pixels.extend(line.iter().step_by(bytes_per_sample));
        }
        pixels
    };
    let mut hasher = Sha256::new();
    hasher.update(info.width.to_le_bytes());
    hasher.update(info.height.to_le_bytes());
    hasher.update(&pixels);
    Ok(Decoded {
        width: info.width,
        height: info.height,
        blank: is_blank(&pixels, channels.max(1)),
        hash: hasher.finalize().into(),
        dhash: super::phash::dhash(&pixels, w, h, channels),
    })
}

/// The blank rule of the module docs, on 8-bit samples of `channels` per pixel.
pub fn is_blank(pixels: &[u8], channels: usize) -> bool {
    let total = pixels.len() / channels;
    // A blank frame has at most `(2 * BLANK_TOLERANCE + 1)^channels` distinct values near its
    // mode and outliers in under `1 - BLANK_SHARE` of its pixels: past that many distinct
    // values it is not blank, so the count stops there instead of growing with the frame.
    let near_values = (2 * usize::from(BLANK_TOLERANCE) + 1).saturating_pow(channels as u32);
    let most_distinct =
        near_values.saturating_add(((1.0 - BLANK_SHARE) * total as f64).ceil() as usize);
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for p in pixels.chunks_exact(channels) {
        *counts.entry(p).or_default() += 1;
        if counts.len() > most_distinct {
            return false;
        }
    }
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
                stats.hashes.push(d.dhash);
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

/// A check's result: `at_least` says which side of the threshold passes; null never passes.
pub(super) fn score(
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
        weight: 1.0,
        metric: check.as_str().to_owned(),
        advisory: false,
    }
}

/// One scene to score: its id, prompt and collected frames (paths relative to the run folder).
#[derive(Debug, Clone, Default)]
pub struct SceneInput {
    pub id: String,
    /// Its place in the story's list of scenes.
    pub index: usize,
    pub prompt: String,
    pub frames: Vec<String>,
}

/// What scoring one scene gave.
#[derive(Debug, Clone, Default)]
pub struct SceneScore {
    pub metrics: SceneQualityMetrics,
    /// The scene's frame signature, for the `same-frames` check between scenes.
    pub signature: Vec<u64>,
    pub checks: Vec<QualityCheckResult>,
    pub notes: Vec<String>,
}

/// The frame checks of one scene (the ones in `checks`), with `alignment` filled in by the
/// caller when it was measured.
pub fn score_frames(
    run_dir: &Path,
    scene: &SceneInput,
    checks: &[CheckEntry],
    t: &QualityThresholds,
    alignment: Option<Option<f64>>,
) -> SceneScore {
    let paths: Vec<PathBuf> = scene.frames.iter().map(|p| run_dir.join(p)).collect();
    let stats = analyse(&paths);
    let id = Some(scene.id.as_str());
    let mut out = SceneScore {
        notes: stats.notes.clone(),
        signature: super::phash::signature(&stats.hashes),
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
    for check in checks.iter().map(|c| &c.check) {
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
            QualityCheck::Diversity
            | QualityCheck::Duplicate
            | QualityCheck::SameFrames
            | QualityCheck::Coherence => continue,
        };
        out.checks.push(result);
    }
    out
}
