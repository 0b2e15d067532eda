//! ORB features (Rublee et al., ICCV 2011): FAST-9 corners on an image pyramid, ranked by Harris
//! response, oriented by their intensity centroid, described by 256 intensity comparisons (rotated
//! BRIEF) on a smoothed patch; their serialised form (`Features::to_bytes`).

use std::sync::OnceLock;

use fast_image_resize as fir;
use thiserror::Error;

use crate::vision::decode::RgbImage;

/// Size and count settings of feature extraction.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// The photo is shrunk so its long side is at most this many pixels before extraction.
    pub max_side: u32,
    /// A smaller photo is enlarged so its long side is this many pixels (small web-shop photos
    /// otherwise yield few features at the scale of a phone photo).
    pub min_side: u32,
    /// Most features kept per photo (the strongest corners).
    pub max_features: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params { max_side: 512, min_side: 384, max_features: 1000 }
    }
}

/// Local features of one photo: point positions (pixels of the shrunk photo) and descriptors.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Width of the photo the points are in.
    pub width: u16,
    /// Height of the photo the points are in.
    pub height: u16,
    /// Point positions (x, y).
    pub points: Vec<[f32; 2]>,
    /// 256-bit descriptors, one per point.
    pub descriptors: Vec<[u64; 4]>,
}

/// Serialised features that cannot be used.
#[derive(Debug, Error)]
pub enum FormatError {
    /// Written by an older knockoff whose descriptors do not compare with today's.
    #[error("stored local features are in the outdated format {0}")]
    Outdated(String),
    /// Not a features record, or cut short.
    #[error("stored local features are damaged: {0}")]
    Damaged(String),
}

/// Magic of the current serialised format.
pub const MAGIC: &[u8; 8] = b"KNKORB02";
/// Bytes per point in the serialised form: x, y, descriptor.
pub(super) const RECORD: usize = 4 + 4 + 32;
pub(super) const OUTDATED: [&[u8; 8]; 1] = [b"KNKORB01"];
pub(super) const PATCH: i32 = 15; // radius of the orientation disc
pub(super) const MARGIN: i32 = 19; // rotated BRIEF pairs reach 13·√2 ≈ 18.4 pixels
pub(super) const LEVELS: usize = 8; // 1.3^7 ≈ 6: a product filling a sixth of the listing photo still meets the reference
pub(super) const SCALE: f32 = 1.3;
pub(super) const FAST_THRESHOLD: i16 = 20;
pub(super) const ANGLE_BINS: usize = 30;

impl Features {
    /// Extracts ORB features from a decoded RGB photo.
    pub fn extract(img: &RgbImage, params: &Params) -> Features {
        Ready::new(img, params).extract()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// The features of the photo's mirror image (left and right swapped): points mirrored, and each
    /// descriptor's halves swapped, which the mirror-symmetric pattern makes exact up to rounding.
    pub fn mirrored(&self) -> Features {
        let right = self.width as f32 - 1.0;
        Features {
            width: self.width,
            height: self.height,
            points: self.points.iter().map(|p| [right - p[0], p[1]]).collect(),
            descriptors: self.descriptors.iter().map(|d| [d[2], d[3], d[0], d[1]]).collect(),
        }
    }

    /// The serialised form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.len() * RECORD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for (p, d) in self.points.iter().zip(&self.descriptors) {
            out.extend_from_slice(&p[0].to_le_bytes());
            out.extend_from_slice(&p[1].to_le_bytes());
            for w in d {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        out
    }

    /// Reads the serialised form.
    pub fn from_bytes(b: &[u8]) -> Result<Features, FormatError> {
        if let Some(old) = OUTDATED.iter().find(|m| b.len() >= 8 && b[..8] == m[..]) {
            return Err(FormatError::Outdated(String::from_utf8_lossy(&old[..]).into_owned()));
        }
        if b.len() < 16 || &b[..8] != MAGIC {
            return Err(FormatError::Damaged("not a KNKORB02 record".into()));
        }
        let width = u16::from_le_bytes([b[8], b[9]]);
        let height = u16::from_le_bytes([b[10], b[11]]);
        let n = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        if b.len() != 16 + n * RECORD {
            return Err(FormatError::Damaged(format!("{} bytes for {n} points", b.len())));
        }
        let mut points = Vec::with_capacity(n);
        let mut descriptors = Vec::with_capacity(n);
        for rec in b[16..].chunks_exact(RECORD) {
            let f = |i: usize| f32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            points.push([f(0), f(4)]);
            let mut d = [0u64; 4];
            for (k, w) in d.iter_mut().enumerate() {
                let s = 8 + k * 8;
                let mut a = [0u8; 8];
                a.copy_from_slice(&rec[s..s + 8]);
                *w = u64::from_le_bytes(a);
            }
            descriptors.push(d);
        }
        Ok(Features { width, height, points, descriptors })
    }
}

/// A photo made ready for feature extraction: grey, and resized as `Params` say. A scan keeps
/// this instead of the features, and extracts only the photos it verifies.
#[derive(Debug, Clone)]
pub struct Ready {
    gray: Gray,
    max_features: usize,
}

impl Ready {
    /// Converts and resizes a decoded photo.
    pub fn new(img: &RgbImage, params: &Params) -> Ready {
        Ready {
            gray: to_gray(img, params.min_side, params.max_side),
            max_features: params.max_features,
        }
    }

    /// Extracts the photo's ORB features.
    pub fn extract(&self) -> Features {
        extract_gray(&self.gray, self.max_features)
    }
}

/// A greyscale image.
#[derive(Debug, Clone)]
pub(super) struct Gray {
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) data: Vec<u8>,
}

impl Gray {
    fn at(&self, x: i32, y: i32) -> i32 {
        self.data[y as usize * self.width + x as usize] as i32
    }
}

/// Resizes so the long side is within `min_side..=max_side`, then converts to luma.
pub(super) fn to_gray(img: &RgbImage, min_side: u32, max_side: u32) -> Gray {
    let long = img.width.max(img.height).max(1);
    let target = long.clamp(min_side.min(max_side), max_side);
    let src = if long != target {
        let s = target as f64 / long as f64;
        let (w, h) = (
            ((img.width as f64 * s).round() as u32).max(1),
            ((img.height as f64 * s).round() as u32).max(1),
        );
        crate::vision::decode::resize(img, w, h).ok()
    } else {
        None
    };
    let img = src.as_ref().unwrap_or(img);
    let data = img
        .data
        .chunks_exact(3)
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32 + 128) >> 8) as u8)
        .collect();
    Gray { width: img.width as usize, height: img.height as usize, data }
}

pub(super) fn resize_gray(g: &Gray, width: usize, height: usize) -> Option<Gray> {
    let src =
        fir::images::ImageRef::new(g.width as u32, g.height as u32, &g.data, fir::PixelType::U8)
            .ok()?;
    let mut dst = fir::images::Image::new(width as u32, height as u32, fir::PixelType::U8);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new().resize(&src, &mut dst, &options).ok()?;
    Some(Gray { width, height, data: dst.into_vec() })
}

/// Taps of `blur`: sum 439 ≈ Gaussian σ=2.
const BLUR: [u32; 7] = [23, 54, 90, 105, 90, 54, 23];

/// Separable Gaussian blur, sigma 2, 7 taps (as ORB smooths before its comparisons), the border
/// pixels repeated outwards. Exact integer sums (at most 439² × 255, within u32), rounded once.
pub(super) fn blur(g: &Gray) -> Gray {
    let (w, h) = (g.width, g.height);
    let mut tmp = vec![0u32; w * h];
    let mut padded = vec![0u8; w + 6];
    for y in 0..h {
        let row = &g.data[y * w..(y + 1) * w];
        if w == 0 {
            break;
        }
        padded[..3].fill(row[0]);
        padded[3..w + 3].copy_from_slice(row);
        padded[w + 3..].fill(row[w - 1]);
        for (x, t) in tmp[y * w..(y + 1) * w].iter_mut().enumerate() {
            *t = BLUR.iter().zip(&padded[x..x + 7]).map(|(c, &p)| c * p as u32).sum();
        }
    }
    let mut data = vec![0u8; w * h];
    for y in 0..h {
        let rows: [&[u32]; 7] = std::array::from_fn(|k| {
            let yy = (y as isize + k as isize - 3).clamp(0, h as isize - 1) as usize;
            &tmp[yy * w..(yy + 1) * w]
        });
        for (x, d) in data[y * w..(y + 1) * w].iter_mut().enumerate() {
            let s: u32 = BLUR.iter().zip(&rows).map(|(c, r)| c * r[x]).sum();
            *d = ((s + 439 * 439 / 2) / (439 * 439)) as u8;
        }
    }
    Gray { width: w, height: h, data }
}

/// Offsets of the 16-pixel Bresenham circle of radius 3 used by FAST.
pub(super) const CIRCLE: [(i32, i32); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// FAST-9 scores of every pixel at least `MARGIN` from the border (0 where there is no corner).
/// Each row first runs `fast9`'s compass test on all its pixels at once, in a loop the compiler
/// vectorises; most pixels fail it, and only the rest get the full test.
pub(super) fn fast_scores(g: &Gray) -> Vec<i32> {
    let (w, h, m) = (g.width, g.height, MARGIN as usize);
    let mut score = vec![0i32; w * h];
    if w <= 2 * m || h <= 2 * m {
        return score;
    }
    let t = FAST_THRESHOLD;
    let mut candidate = vec![false; w - 2 * m];
    for y in m..h - m {
        let row = &g.data[y * w..(y + 1) * w];
        let (up, down) = (&g.data[(y - 3) * w..(y - 2) * w], &g.data[(y + 3) * w..(y + 4) * w]);
        let centre = &row[m..w - m];
        let (north, south) = (&up[m..w - m], &down[m..w - m]);
        let (east, west) = (&row[m + 3..w - m + 3], &row[m - 3..w - m - 3]);
        for (i, c) in candidate.iter_mut().enumerate() {
            let v = centre[i] as i16;
            let (hi, lo) = (v + t, v - t);
            let (n, e, s, wv) = (north[i] as i16, east[i] as i16, south[i] as i16, west[i] as i16);
            let bright = (n > hi) as u8 + (e > hi) as u8 + (s > hi) as u8 + (wv > hi) as u8;
            let dark = (n < lo) as u8 + (e < lo) as u8 + (s < lo) as u8 + (wv < lo) as u8;
            *c = bright >= 2 || dark >= 2;
        }
        for (i, _) in candidate.iter().enumerate().filter(|(_, c)| **c) {
            if let Some(s) = fast9(g, (m + i) as i32, y as i32) {
                score[y * w + m + i] = s;
            }
        }
    }
    score
}

/// FAST-9 test at (x, y): a corner when 9 contiguous circle pixels are all brighter or all darker
/// than the centre by more than the threshold; its score is the sum of those excesses.
pub(super) fn fast9(g: &Gray, x: i32, y: i32) -> Option<i32> {
    let c = g.at(x, y);
    let t = FAST_THRESHOLD as i32;
    // quick rejection on the four compass points: a 9-arc covers at least two of them
    let (n, e, s, w) = (g.at(x, y - 3), g.at(x + 3, y), g.at(x, y + 3), g.at(x - 3, y));
    let bright = [n, e, s, w].iter().filter(|&&v| v > c + t).count();
    let dark = [n, e, s, w].iter().filter(|&&v| v < c - t).count();
    if bright < 2 && dark < 2 {
        return None;
    }
    let mut v = [0i32; 16];
    for (i, (dx, dy)) in CIRCLE.iter().enumerate() {
        v[i] = g.at(x + dx, y + dy) - c;
    }
    // circle pixels brighter (bit i of the first) and darker (of the second) than the threshold
    let (mut brighter, mut darker) = (0u16, 0u16);
    for (i, d) in v.iter().enumerate() {
        brighter |= u16::from(*d > t) << i;
        darker |= u16::from(-*d > t) << i;
    }
    let mut best = None;
    for (sign, mask) in [(1i32, brighter), (-1, darker)] {
        if !has_arc9(mask) {
            continue; // no 9 contiguous pixels: the walk below would find nothing
        }
        let mut run = 0;
        let mut sum = 0;
        let mut best_sum = 0;
        for i in 0..32 {
            let d = sign * v[i % 16];
            if d > t {
                run += 1;
                sum += d - t;
                if run >= 9 {
                    best_sum = best_sum.max(sum);
                }
                if run >= 16 {
                    break;
                }
            } else {
                run = 0;
                sum = 0;
            }
        }
        if best_sum > 0 {
            best = Some(best.map_or(best_sum, |b: i32| b.max(best_sum)));
        }
    }
    best
}

/// Whether the 16 circle pixels flagged in `mask` (bit i: pixel i) hold 9 contiguous ones, the
/// circle closing from pixel 15 to pixel 0.
fn has_arc9(mask: u16) -> bool {
    let twice = u32::from(mask) | u32::from(mask) << 16;
    (1..9).fold(twice, |run, k| run & twice >> k) != 0
}

/// Harris corner response over a 7x7 window (central differences).
pub(super) fn harris(g: &Gray, x: i32, y: i32) -> f32 {
    let (w, x) = (g.width, x as usize);
    let row = |y: i32| &g.data[y as usize * w..(y as usize + 1) * w];
    let (mut a, mut b, mut c) = (0f32, 0f32, 0f32);
    for dy in -3..=3 {
        let (above, here, below) = (row(y + dy - 1), row(y + dy), row(y + dy + 1));
        for px in x - 3..=x + 3 {
            let ix = (here[px + 1] as i32 - here[px - 1] as i32) as f32;
            let iy = (below[px] as i32 - above[px] as i32) as f32;
            a += ix * ix;
            b += iy * iy;
            c += ix * iy;
        }
    }
    a * b - c * c - 0.04 * (a + b) * (a + b)
}

/// Orientation of the patch around (x, y) from its intensity centroid, in radians.
pub(super) fn orientation(g: &Gray, x: i32, y: i32) -> f32 {
    let (mut m10, mut m01) = (0i64, 0i64);
    for dy in -PATCH..=PATCH {
        let half = ((PATCH * PATCH - dy * dy) as f32).sqrt() as i32;
        let start = (y + dy) as usize * g.width + (x - half) as usize;
        let row = &g.data[start..=start + 2 * half as usize];
        let (mut sum, mut moment) = (0i64, 0i64);
        for (dx, &v) in (-half..=half).zip(row) {
            sum += v as i64;
            moment += dx as i64 * v as i64;
        }
        m10 += moment;
        m01 += dy as i64 * sum;
    }
    (m01 as f32).atan2(m10 as f32)
}

/// The BRIEF comparison pairs, rotated into `ANGLE_BINS` orientations: for each bin, 256 pairs of
/// (dx1, dy1, dx2, dy2). The base pattern is drawn once from an isotropic Gaussian (σ = 31/5,
/// clipped to ±13) with a fixed seed, so descriptors are the same on every run and machine.
pub(super) fn patterns() -> &'static Vec<[[i8; 4]; 256]> {
    static P: OnceLock<Vec<[[i8; 4]; 256]>> = OnceLock::new();
    P.get_or_init(|| {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut gauss = || loop {
            let (u, v) = (uniform().max(1e-12), uniform());
            let g = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * (31.0 / 5.0);
            if g.abs() <= 13.0 {
                return g;
            }
        };
        // 128 comparisons, then the same flipped top to bottom: the mirror image of a patch at
        // angle a, described at angle π − a (its mirrored orientation), gives the same bits with
        // the halves swapped
        let mut base: Vec<[f64; 4]> =
            (0..128).map(|_| [gauss(), gauss(), gauss(), gauss()]).collect();
        let flipped: Vec<[f64; 4]> = base.iter().map(|p| [p[0], -p[1], p[2], -p[3]]).collect();
        base.extend(flipped);
        (0..ANGLE_BINS)
            .map(|bin| {
                let a = bin as f64 * 2.0 * std::f64::consts::PI / ANGLE_BINS as f64;
                let (s, c) = a.sin_cos();
                let mut out = [[0i8; 4]; 256];
                for (o, p) in out.iter_mut().zip(&base) {
                    let rot = |x: f64, y: f64| {
                        ((x * c - y * s).round() as i8, (x * s + y * c).round() as i8)
                    };
                    let (a1, b1) = rot(p[0], p[1]);
                    let (a2, b2) = rot(p[2], p[3]);
                    *o = [a1, b1, a2, b2];
                }
                out
            })
            .collect()
    })
}

pub(super) fn extract_gray(level0: &Gray, max_features: usize) -> Features {
    let (width, height) =
        (level0.width.min(u16::MAX as usize) as u16, level0.height.min(u16::MAX as usize) as u16);
    // features per level in proportion to its area, as ORB does
    let factor = 1.0 / (SCALE * SCALE);
    let total: f32 = (0..LEVELS).map(|l| factor.powi(l as i32)).sum();
    let mut points = Vec::new();
    let mut descriptors = Vec::new();
    for l in 0..LEVELS {
        let scale = SCALE.powi(l as i32);
        let (lw, lh) = (
            (level0.width as f32 / scale).round() as usize,
            (level0.height as f32 / scale).round() as usize,
        );
        if lw <= 2 * MARGIN as usize + 2 || lh <= 2 * MARGIN as usize + 2 {
            break;
        }
        let owned = if l == 0 { None } else { resize_gray(level0, lw, lh) };
        if l > 0 && owned.is_none() {
            break;
        }
        let g: &Gray = owned.as_ref().unwrap_or(level0);
        let want = ((max_features as f32 * factor.powi(l as i32) / total).round() as usize).max(1);
        let (w, h) = (g.width as i32, g.height as i32);
        // FAST with 3x3 non-maximum suppression on the score
        let score = fast_scores(g);
        let mut corners: Vec<(f32, i32, i32)> = Vec::new();
        for y in MARGIN..h - MARGIN {
            for x in MARGIN..w - MARGIN {
                let s = score[y as usize * g.width + x as usize];
                if s == 0 {
                    continue;
                }
                let mut is_max = true;
                'n: for dy in -1..=1 {
                    for dx in -1..=1 {
                        if (dx, dy) != (0, 0) {
                            let o = score[(y + dy) as usize * g.width + (x + dx) as usize];
                            if o > s || (o == s && (dy, dx) < (0, 0)) {
                                is_max = false;
                                break 'n;
                            }
                        }
                    }
                }
                if is_max {
                    corners.push((harris(g, x, y), x, y));
                }
            }
        }
        corners.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.2, a.1).cmp(&(b.2, b.1))));
        corners.truncate(want);
        if corners.is_empty() {
            continue;
        }
        let smooth = blur(g);
        let pats = patterns();
        for &(_, x, y) in &corners {
            let angle = orientation(g, x, y);
            let bin = ((angle.rem_euclid(2.0 * std::f32::consts::PI) / (2.0 * std::f32::consts::PI)
                * ANGLE_BINS as f32)
                .round() as usize)
                % ANGLE_BINS;
            let mut d = [0u64; 4];
            for (i, p) in pats[bin].iter().enumerate() {
                let a = smooth.at(x + p[0] as i32, y + p[1] as i32);
                let b = smooth.at(x + p[2] as i32, y + p[3] as i32);
                if a < b {
                    d[i / 64] |= 1 << (i % 64);
                }
            }
            // the centre of the level's pixel, in pixels of the first level
            points.push([(x as f32 + 0.5) * scale - 0.5, (y as f32 + 0.5) * scale - 0.5]);
            descriptors.push(d);
        }
    }
    Features { width, height, points, descriptors }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `blur` as first written: each tap's pixel clamped into the image, 64-bit sums.
    fn blur_by_clamping(g: &Gray) -> Vec<u8> {
        let (w, h) = (g.width as isize, g.height as isize);
        let at = |x: isize, y: isize| g.data[(y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize];
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let mut s = 0u64;
                for (ky, cy) in BLUR.iter().enumerate() {
                    let row: u64 = BLUR
                        .iter()
                        .enumerate()
                        .map(|(kx, cx)| {
                            *cx as u64 * at(x + kx as isize - 3, y + ky as isize - 3) as u64
                        })
                        .sum();
                    s += *cy as u64 * row;
                }
                out.push(((s + 439 * 439 / 2) / (439 * 439)) as u8);
            }
        }
        out
    }

    #[test]
    fn blur_repeats_the_border_and_rounds_like_the_clamped_sum() {
        for (w, h) in [(1, 1), (2, 9), (13, 5), (40, 31)] {
            let data = (0..w * h).map(|i| ((i * 7919 + i * i * 31) % 256) as u8).collect();
            let g = Gray { width: w, height: h, data };
            assert_eq!(blur(&g).data, blur_by_clamping(&g), "{w} x {h}");
        }
    }

    #[test]
    fn an_arc_of_nine_is_found_exactly_when_nine_contiguous_pixels_are_flagged() {
        for mask in 0..=u16::MAX {
            let flagged = |i: usize| mask >> (i % 16) & 1 == 1;
            let walked = (0..16).any(|start| (start..start + 9).all(flagged));
            assert_eq!(has_arc9(mask), walked, "mask {mask:016b}");
        }
    }
}
