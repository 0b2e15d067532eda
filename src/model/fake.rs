//! A fake image model for tests: embeds a prepared image as its pattern of light and dark, so the
//! judge, the score and the policy run in milliseconds without ONNX Runtime.
//!
//! The image is cut into a `GRID` x `GRID` grid; each cell's mean brightness, less the photo's
//! mean, is one value, and the vector is scaled to unit length. A photo and a brighter or darker
//! copy of it get the same vector; photos whose cells follow orthogonal patterns (`walsh`) get
//! orthogonal vectors (cosine 0), and a blend of two patterns lies between them.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::model::embed::{l2_normalize, Prepared};
use crate::model::{Embed, Layout, Manifest, ResizeMode};

/// Cells on each side of the grid; the vector has `GRID * GRID` values.
pub const GRID: usize = 4;

/// The fake model's input size: photos are squashed to `SIZE` x `SIZE` pixels.
pub const SIZE: u32 = 32;

/// An `Embed` that needs no model file: see the module's description.
pub struct FakeEmbedder {
    manifest: Manifest,
    /// Images embedded so far.
    pub embedded: usize,
}

impl FakeEmbedder {
    /// A fake model whose photos are copies from a cosine of `match_threshold` and possible copies
    /// from `review_threshold`.
    pub fn new(match_threshold: f64, review_threshold: f64) -> FakeEmbedder {
        let manifest = Manifest {
            name: "fake".into(),
            file: "fake.onnx".into(),
            sha256: "0".repeat(64),
            input: "image".into(),
            output: "embedding".into(),
            layout: Layout::NhwcU8,
            mean: None,
            std: None,
            resize: ResizeMode::Square,
            size: SIZE,
            region_size: None,
            region_queries: None,
            dim: GRID * GRID,
            match_threshold,
            review_threshold,
            normalize: true,
            licence: String::new(),
            dir: PathBuf::new(),
        };
        FakeEmbedder { manifest, embedded: 0 }
    }

    /// The vector of one prepared image.
    pub fn vector(img: &Prepared) -> Result<Vec<f32>> {
        let (w, h) = (img.width as usize, img.height as usize);
        if w < GRID || h < GRID || img.data.len() != w * h * 3 {
            bail!("fake model: a {w}x{h} image with {} bytes", img.data.len());
        }
        let mut cells = vec![0.0f32; GRID * GRID];
        for y in 0..h {
            for x in 0..w {
                let o = (y * w + x) * 3;
                let grey = img.data[o..o + 3].iter().map(|&c| c as f32).sum::<f32>() / 3.0;
                cells[(y * GRID / h) * GRID + x * GRID / w] += grey;
            }
        }
        let mean = cells.iter().sum::<f32>() / cells.len() as f32;
        cells.iter_mut().for_each(|c| *c -= mean);
        l2_normalize(&mut cells);
        Ok(cells)
    }
}

impl Embed for FakeEmbedder {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn embed(&mut self, images: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        self.embedded += images.len();
        images.iter().map(|img| FakeEmbedder::vector(img)).collect()
    }
}

/// Walsh pattern `k` (0 to 15, 0 excluded: it is flat) of the `GRID` x `GRID` cells: +1 or -1 for
/// the cell in row `row` and column `col`. Distinct patterns are orthogonal.
pub fn walsh(k: usize, row: usize, col: usize) -> f32 {
    let (kr, kc) = (k / GRID, k % GRID);
    let sign = (kr & row).count_ones() + (kc & col).count_ones();
    if sign.is_multiple_of(2) {
        1.0
    } else {
        -1.0
    }
}

/// A `side` x `side` photo whose cells are `base` plus the weighted Walsh patterns `(k, weight)`
/// (grey levels, clamped to 0..=255).
pub fn photo(side: u32, base: f32, patterns: &[(usize, f32)]) -> image::RgbImage {
    image::RgbImage::from_fn(side, side, |x, y| {
        let (row, col) = (y as usize * GRID / side as usize, x as usize * GRID / side as usize);
        let v = patterns.iter().map(|&(k, w)| w * walsh(k, row, col)).sum::<f32>() + base;
        let g = v.round().clamp(0.0, 255.0) as u8;
        image::Rgb([g, g, g])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(img: &image::RgbImage) -> Prepared {
        Prepared { width: img.width(), height: img.height(), data: img.as_raw().clone() }
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn walsh_patterns_are_orthogonal_and_brightness_does_not_count() {
        let v = |base: f32, p: &[(usize, f32)]| {
            FakeEmbedder::vector(&prepared(&photo(32, base, p))).expect("a vector")
        };
        let a = v(128.0, &[(1, 60.0)]);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!((cosine(&a, &v(150.0, &[(1, 60.0)])) - 1.0).abs() < 1e-5, "brighter copy");
        assert!(cosine(&a, &v(128.0, &[(6, 60.0)])).abs() < 1e-5, "another pattern");
        let blend = cosine(&a, &v(128.0, &[(1, 60.0), (6, 36.0)]));
        assert!((blend - 1.0 / 1.36f32.sqrt()).abs() < 1e-3, "{blend}");
    }
}
