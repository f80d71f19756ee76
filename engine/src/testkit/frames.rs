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

/// CRC-32 (the PNG chunk checksum), bit by bit: enough for the few bytes of a test header.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG of a few dozen bytes whose header claims `w`×`h` pixels: a 1×1 image with its IHDR
/// size rewritten (and the chunk's CRC with it), as a hostile or broken writer could leave.
pub fn write_huge_header_png(path: &Path, w: u32, h: u32) {
    let tmp = path.with_extension("small.png");
    write_png(&tmp, 1, 1, |_, _| [1, 2, 3]);
    let mut bytes = std::fs::read(&tmp).expect("read");
    std::fs::remove_file(&tmp).expect("rm");
    // Signature (8), IHDR length (4) and type (4), then width and height; the CRC covers the
    // type and the 13 data bytes.
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(path, &bytes).expect("write");
}
