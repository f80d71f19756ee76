//! Perceptual hashes of frames, for the `same-frames` check between scenes: a 64-bit
//! difference hash (dHash) per frame, a scene's signature (the hashes of its first, middle and
//! last frames) and the distance between two scenes' signatures.

use super::score::score;
use crate::artifact_metadata::QualityCheckResult;
use crate::spec::model::QualityCheck;

/// The dHash of an image of 8-bit samples, `channels` per pixel: its luminance averaged into
/// 9×8 cells, one bit per pair of horizontally adjacent cells (set when the left one is darker).
/// Structure, not colour: the same picture in another tint hashes alike, another picture does not.
pub fn dhash(pixels: &[u8], width: usize, height: usize, channels: usize) -> u64 {
    const W: usize = 9;
    const H: usize = 8;
    if width == 0 || height == 0 || channels == 0 {
        return 0;
    }
    let mut sum = [[0u64; W]; H];
    let mut count = [[0u64; W]; H];
    for y in 0..height {
        let cy = y * H / height;
        for x in 0..width {
            let cx = x * W / width;
            let at = (y * width + x) * channels;
            let Some(px) = pixels.get(at..at + channels) else {
                continue;
            };
            // Rec. 601 luma for colour; the first sample for grey (and grey + alpha).
            let luma = if channels >= 3 {
                (u64::from(px[0]) * 299 + u64::from(px[1]) * 587 + u64::from(px[2]) * 114) / 1000
            } else {
                u64::from(px[0])
            };
            sum[cy][cx] += luma;
            count[cy][cx] += 1;
        }
    }
    // An image narrower than 9 or lower than 8 pixels leaves cells empty: they read as 0.
    let cell = |y: usize, x: usize| sum[y][x].checked_div(count[y][x]).unwrap_or(0);
    let mut bits = 0u64;
    for y in 0..H {
        for x in 0..W - 1 {
            bits = (bits << 1) | u64::from(cell(y, x) < cell(y, x + 1));
        }
    }
    bits
}

/// A scene's signature: the hashes of its first, middle and last frames (fewer when it has
/// fewer frames), so that a scene is compared over its whole length.
pub fn signature(hashes: &[u64]) -> Vec<u64> {
    match hashes.len() {
        0 => Vec::new(),
        1 => hashes.to_vec(),
        2 => hashes.to_vec(),
        n => vec![hashes[0], hashes[n / 2], hashes[n - 1]],
    }
}

/// The distance between two signatures: the mean number of differing bits (0–64) of the
/// hashes at the same places; `None` when either is empty.
pub fn distance(a: &[u64], b: &[u64]) -> Option<f64> {
    let n = a.len().min(b.len());
    (n > 0).then(|| {
        let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
        f64::from(bits) / n as f64
    })
}

/// The `same-frames` check of every scene in `scenes` (id, signature): its smallest distance to
/// another scene's signature, held to `min_distance` (bits); a scene without a signature, or
/// with no other scene to compare, is null (and fails). The notes name the scene it repeats.
pub fn same_frames_checks(
    scenes: &[(String, Vec<u64>)],
    min_distance: f64,
) -> (Vec<QualityCheckResult>, Vec<String>) {
    let mut notes = Vec::new();
    let checks = scenes
        .iter()
        .enumerate()
        .map(|(i, (id, sig))| {
            let closest = scenes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, (other, s))| distance(sig, s).map(|d| (d, other)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let result = score(
                QualityCheck::SameFrames,
                Some(id),
                closest.map(|c| c.0),
                min_distance,
                true,
            );
            match closest {
                Some((d, other)) if !result.passed => notes.push(format!(
                    "scene `{id}` has the same frames as scene `{other}` (perceptual distance {d:.1} < {min_distance} bits)"
                )),
                None => notes.push(format!(
                    "same-frames of scene `{id}` not measured: no decoded frame, or no other scene's"
                )),
                Some(_) => {}
            }
            result
        })
        .collect();
    (checks, notes)
}

/// A signature as written in the stage's output: 16 hex digits per hash (a JSON number would
/// lose bits past 2^53 in many readers).
pub fn to_hex(signature: &[u64]) -> Vec<String> {
    signature.iter().map(|h| format!("{h:016x}")).collect()
}

/// The signature of [`to_hex`]'s strings; `None` if one is not 16 hex digits.
pub fn from_hex(hex: &[String]) -> Option<Vec<u64>> {
    hex.iter()
        .map(|h| u64::from_str_radix(h, 16).ok())
        .collect()
}
