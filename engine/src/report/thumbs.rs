//! Contact-sheet thumbnails: each frame read within the quality stage's decoding bounds,
//! shrunk with the `image` crate and embedded as a `data:` URL, so the report needs no file
//! beside it. Frames are decoded on every core at once.

use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::{ImageFormat, ImageReader};

use crate::stages::quality::{MAX_FRAME_BYTES, MAX_FRAME_PIXELS};

/// How many frames of a scene the contact sheet shows, and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbOptions {
    /// Frames shown per scene, spread evenly from the first to the last; 0 = every frame.
    pub frames_per_scene: usize,
    /// The longer side of a thumbnail, in pixels.
    pub size: u32,
}

impl Default for ThumbOptions {
    fn default() -> Self {
        ThumbOptions {
            frames_per_scene: 6,
            size: 80,
        }
    }
}

/// A frame file at most this large, already within the thumbnail size, is embedded as it is.
const EMBED_AS_IS_BYTES: u64 = 32 * 1024;

/// Which of `count` frames to show: all when `want` is 0 or covers them, else `want` spread
/// evenly with the first and the last always in.
pub(crate) fn pick(count: usize, want: usize) -> Vec<usize> {
    if want == 0 || want >= count {
        return (0..count).collect();
    }
    if want == 1 {
        return vec![0];
    }
    let mut v: Vec<usize> = (0..want).map(|i| i * (count - 1) / (want - 1)).collect();
    v.dedup();
    v
}

/// Why a frame has no thumbnail (shown in its place).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ThumbError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error("{width}×{height} pixels is over the limit of {MAX_FRAME_PIXELS}")]
    TooManyPixels { width: u32, height: u32 },
    #[error("not a PNG")]
    NotPng,
}

/// The `data:` URL of one frame's thumbnail.
pub(crate) fn thumbnail(path: &Path, size: u32) -> Result<String, ThumbError> {
    let reader =
        ImageReader::new(BufReader::new(std::fs::File::open(path)?)).with_guessed_format()?;
    if reader.format() != Some(ImageFormat::Png) {
        return Err(ThumbError::NotPng);
    }
    // The header alone says the size: a small file claiming a huge image is refused unread.
    let (width, height) = reader.into_dimensions()?;
    if u64::from(width) * u64::from(height) > MAX_FRAME_PIXELS {
        return Err(ThumbError::TooManyPixels { width, height });
    }
    let bytes =
        if width <= size && height <= size && std::fs::metadata(path)?.len() <= EMBED_AS_IS_BYTES {
            std::fs::read(path)?
        } else {
            let mut reader = ImageReader::new(BufReader::new(std::fs::File::open(path)?))
                .with_guessed_format()?;
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(MAX_FRAME_BYTES as u64);
            reader.limits(limits);
            let small = reader.decode()?.thumbnail(size, size).into_rgb8();
            let mut out = Vec::new();
            small.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)?;
            out
        };
    let mut url = String::from("data:image/png;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(&bytes, &mut url);
    Ok(url)
}

/// Thumbnails of every path, in order, made on all cores.
pub(crate) fn thumbnails(paths: &[PathBuf], size: u32) -> Vec<Result<String, String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16);
    let chunk = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|p| thumbnail(p, size).map_err(|e| e.to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err("the thumbnail maker panicked".to_owned())])
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_picked_evenly_with_the_first_and_last() {
        assert_eq!(pick(25, 6), [0, 4, 9, 14, 19, 24]);
        assert_eq!(pick(3, 6), [0, 1, 2]);
        assert_eq!(pick(10, 0).len(), 10);
        assert_eq!(pick(10, 1), [0]);
        assert_eq!(pick(0, 4), Vec::<usize>::new());
    }

    #[test]
    fn large_frames_are_shrunk_and_small_ones_kept_and_bad_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.png");
        image::RgbImage::from_fn(640, 320, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 9])
        })
        .save(&big)
        .expect("png");
        let url = thumbnail(&big, 80).expect("thumbnail");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                url.strip_prefix("data:image/png;base64,")
                    .expect("data url"),
            )
            .expect("base64");
        let img = image::load_from_memory(&bytes).expect("decodes");
        assert_eq!((img.width(), img.height()), (80, 40));

        let small = dir.path().join("small.png");
        image::RgbImage::new(8, 8).save(&small).expect("png");
        let url = thumbnail(&small, 80).expect("thumbnail");
        let raw = std::fs::read(&small).expect("read");
        assert!(url.ends_with(&base64::engine::general_purpose::STANDARD.encode(raw)));

        let text = dir.path().join("x.png");
        std::fs::write(&text, "not a png").expect("write");
        assert!(matches!(thumbnail(&text, 80), Err(ThumbError::NotPng)));
        // A header claiming 100k × 100k pixels is refused before anything is decoded.
        let claims = dir.path().join("claims.png");
        crate::testkit::write_huge_header_png(&claims, 100_000, 100_000);
        assert!(
            matches!(
                thumbnail(&claims, 80),
                Err(ThumbError::TooManyPixels { .. })
            ),
            "{:?}",
            thumbnail(&claims, 80)
        );
    }
}
