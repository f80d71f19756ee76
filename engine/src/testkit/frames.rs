//! PNG frames written for tests: a moving square (the demo's frames) and flat colours.

use std::path::{Path, PathBuf};

/// Writes an 8-bit RGB PNG of `w`×`h` filled by `pixel(x, y)`.
pub fn write_png(path: &Path, w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) {
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
pub fn moving_square(dir: &Path, n: u32) -> Vec<PathBuf> {
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

/// `n` frames of one colour.
pub fn flat(dir: &Path, n: u32, colour: [u8; 3]) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let p = dir.join(format!("flat_{i:05}_.png"));
            write_png(&p, 64, 64, |_, _| colour);
            p
        })
        .collect()
}
