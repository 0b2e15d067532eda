//! Geometric verification: local features matched between a listing photo and a reference photo,
//! and how many of the matches one plane-to-plane mapping (a homography) explains.
//!
//! Features are ORB (Rublee et al., ICCV 2011): FAST-9 corners on an image pyramid, ranked by
//! Harris response, oriented by their intensity centroid, each described by 256 intensity
//! comparisons (rotated BRIEF) on a smoothed patch. Two photos are matched by Hamming distance with
//! a ratio test and one-to-one pairs, and RANSAC fits a homography to the pairs; the number of pairs
//! it explains (inliers) is the evidence. A copy, a crop or a photo of the same package shares many
//! such points with the reference; a look-alike sibling package or an unrelated photo shares few.
//!
//! The comparison pattern is its own mirror image: the second 128 comparisons are the first 128
//! flipped top to bottom. A photo's mirror image therefore has the same points, mirrored, with the
//! two halves of each descriptor swapped (`Features::mirrored`), so a mirrored copy is verified
//! without extracting its features again.
//!
//! Serialised features (`Features::to_bytes`, stored by the catalog) start with the magic
//! `KNKORB02`, then width and height (u16 LE), the count (u32 LE), then per point x and y (f32 LE,
//! the centre of the point's pixel in the photo as extracted) and 32 descriptor bytes. `KNKORB01`
//! (knockoff before mirrored copies were verified) used another pattern and is refused as
//! `FormatError::Outdated`.
//!
//! Sibling products of one brand share their logo and layout, so a photo of one verifies against
//! the other too. `Shared` marks the points of a reference photo that photos of the brand's other
//! products share; `Verified::distinct` counts inliers on them at `SHARED_WEIGHT`, and which
//! sibling a photo shows is decided on that. Serialised (`Shared::to_bytes`): the magic
//! `KNKSHR01`, the reference photo's point count (u32 LE), then one bit per point in u64 LE words.

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
const RECORD: usize = 4 + 4 + 32;
const OUTDATED: [&[u8; 8]; 1] = [b"KNKORB01"];
const PATCH: i32 = 15; // radius of the orientation disc
const MARGIN: i32 = 19; // rotated BRIEF pairs reach 13·√2 ≈ 18.4 pixels
const LEVELS: usize = 8; // 1.3^7 ≈ 6: a product filling a sixth of the listing photo still meets the reference
const SCALE: f32 = 1.3;
const FAST_THRESHOLD: i16 = 20;
const ANGLE_BINS: usize = 30;

impl Features {
    /// Extracts ORB features from a decoded RGB photo.
    pub fn extract(img: &RgbImage, params: &Params) -> Features {
        Ready::new(img, params).extract()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when the photo has no features (flat or tiny).
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
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
        Ready { gray: to_gray(img, params.min_side, params.max_side), max_features: params.max_features }
    }

    /// Extracts the photo's ORB features.
    pub fn extract(&self) -> Features {
        extract_gray(&self.gray, self.max_features)
    }
}

/// A greyscale image.
#[derive(Debug, Clone)]
struct Gray {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Gray {
    fn at(&self, x: i32, y: i32) -> i32 {
        self.data[y as usize * self.width + x as usize] as i32
    }
}

/// Resizes so the long side is within `min_side..=max_side`, then converts to luma.
fn to_gray(img: &RgbImage, min_side: u32, max_side: u32) -> Gray {
    let long = img.width.max(img.height).max(1);
    let target = long.clamp(min_side.min(max_side), max_side);
    let src = if long != target {
        let s = target as f64 / long as f64;
        let (w, h) = (((img.width as f64 * s).round() as u32).max(1), ((img.height as f64 * s).round() as u32).max(1));
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

fn resize_gray(g: &Gray, width: usize, height: usize) -> Option<Gray> {
    let src = fir::images::ImageRef::new(g.width as u32, g.height as u32, &g.data, fir::PixelType::U8).ok()?;
    let mut dst = fir::images::Image::new(width as u32, height as u32, fir::PixelType::U8);
    let options = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new().resize(&src, &mut dst, &options).ok()?;
    Some(Gray { width, height, data: dst.into_vec() })
}

/// Separable Gaussian blur, sigma 2, 7 taps (as ORB smooths before its comparisons).
fn blur(g: &Gray) -> Gray {
    const K: [u32; 7] = [23, 54, 90, 105, 90, 54, 23]; // sum 439 ≈ Gaussian σ=2
    let (w, h) = (g.width, g.height);
    let mut tmp = vec![0u32; w * h];
    for y in 0..h {
        let row = &g.data[y * w..(y + 1) * w];
        for x in 0..w {
            let mut s = 0;
            for (k, c) in K.iter().enumerate() {
                let xx = (x as isize + k as isize - 3).clamp(0, w as isize - 1) as usize;
                s += c * row[xx] as u32;
            }
            tmp[y * w + x] = s;
        }
    }
    let mut data = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut s = 0u64;
            for (k, c) in K.iter().enumerate() {
                let yy = (y as isize + k as isize - 3).clamp(0, h as isize - 1) as usize;
                s += *c as u64 * tmp[yy * w + x] as u64;
            }
            data[y * w + x] = ((s + 439 * 439 / 2) / (439 * 439)) as u8;
        }
    }
    Gray { width: w, height: h, data }
}

/// Offsets of the 16-pixel Bresenham circle of radius 3 used by FAST.
const CIRCLE: [(i32, i32); 16] =
    [(0, -3), (1, -3), (2, -2), (3, -1), (3, 0), (3, 1), (2, 2), (1, 3), (0, 3), (-1, 3), (-2, 2), (-3, 1), (-3, 0), (-3, -1), (-2, -2), (-1, -3)];

/// FAST-9 scores of every pixel at least `MARGIN` from the border (0 where there is no corner).
/// Each row first runs `fast9`'s compass test on all its pixels at once, in a loop the compiler
/// vectorises; most pixels fail it, and only the rest get the full test.
fn fast_scores(g: &Gray) -> Vec<i32> {
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
fn fast9(g: &Gray, x: i32, y: i32) -> Option<i32> {
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
    let mut best = None;
    for sign in [1i32, -1] {
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

/// Harris corner response over a 7x7 window (central differences).
fn harris(g: &Gray, x: i32, y: i32) -> f32 {
    let (mut a, mut b, mut c) = (0f32, 0f32, 0f32);
    for dy in -3..=3 {
        for dx in -3..=3 {
            let (px, py) = (x + dx, y + dy);
            let ix = (g.at(px + 1, py) - g.at(px - 1, py)) as f32;
            let iy = (g.at(px, py + 1) - g.at(px, py - 1)) as f32;
            a += ix * ix;
            b += iy * iy;
            c += ix * iy;
        }
    }
    a * b - c * c - 0.04 * (a + b) * (a + b)
}

/// Orientation of the patch around (x, y) from its intensity centroid, in radians.
fn orientation(g: &Gray, x: i32, y: i32) -> f32 {
    let (mut m10, mut m01) = (0i64, 0i64);
    for dy in -PATCH..=PATCH {
        let half = ((PATCH * PATCH - dy * dy) as f32).sqrt() as i32;
        for dx in -half..=half {
            let v = g.at(x + dx, y + dy) as i64;
            m10 += dx as i64 * v;
            m01 += dy as i64 * v;
        }
    }
    (m01 as f32).atan2(m10 as f32)
}

/// The BRIEF comparison pairs, rotated into `ANGLE_BINS` orientations: for each bin, 256 pairs of
/// (dx1, dy1, dx2, dy2). The base pattern is drawn once from an isotropic Gaussian (σ = 31/5,
/// clipped to ±13) with a fixed seed, so descriptors are the same on every run and machine.
fn patterns() -> &'static Vec<[[i8; 4]; 256]> {
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
        let mut base: Vec<[f64; 4]> = (0..128).map(|_| [gauss(), gauss(), gauss(), gauss()]).collect();
        let flipped: Vec<[f64; 4]> = base.iter().map(|p| [p[0], -p[1], p[2], -p[3]]).collect();
        base.extend(flipped);
        (0..ANGLE_BINS)
            .map(|bin| {
                let a = bin as f64 * 2.0 * std::f64::consts::PI / ANGLE_BINS as f64;
                let (s, c) = a.sin_cos();
                let mut out = [[0i8; 4]; 256];
                for (o, p) in out.iter_mut().zip(&base) {
                    let rot = |x: f64, y: f64| ((x * c - y * s).round() as i8, (x * s + y * c).round() as i8);
                    let (a1, b1) = rot(p[0], p[1]);
                    let (a2, b2) = rot(p[2], p[3]);
                    *o = [a1, b1, a2, b2];
                }
                out
            })
            .collect()
    })
}

fn extract_gray(level0: &Gray, max_features: usize) -> Features {
    let (width, height) = (level0.width.min(u16::MAX as usize) as u16, level0.height.min(u16::MAX as usize) as u16);
    // features per level in proportion to its area, as ORB does
    let factor = 1.0 / (SCALE * SCALE);
    let total: f32 = (0..LEVELS).map(|l| factor.powi(l as i32)).sum();
    let mut points = Vec::new();
    let mut descriptors = Vec::new();
    for l in 0..LEVELS {
        let scale = SCALE.powi(l as i32);
        let (lw, lh) = ((level0.width as f32 / scale).round() as usize, (level0.height as f32 / scale).round() as usize);
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
            let bin = ((angle.rem_euclid(2.0 * std::f32::consts::PI) / (2.0 * std::f32::consts::PI) * ANGLE_BINS as f32).round() as usize) % ANGLE_BINS;
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

#[inline(always)]
fn hamming(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    (a[0] ^ b[0]).count_ones() + (a[1] ^ b[1]).count_ones() + (a[2] ^ b[2]).count_ones() + (a[3] ^ b[3]).count_ones()
}

/// Descriptor pairs (query index, reference index): each query point's nearest reference point
/// when it is clearly nearer than the second nearest (ratio 0.8) and within 64 bits, keeping one
/// query point per reference point.
fn match_descriptors(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
            // SAFETY: the CPU has AVX-512F and VPOPCNTDQ (checked just above).
            return unsafe { avx512::match_descriptors(q, r) };
        }
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT (checked just above).
            return unsafe { match_descriptors_popcnt(q, r) };
        }
    }
    match_descriptors_portable(q, r)
}

/// `match_descriptors` compiled with the POPCNT instruction (4x faster than the portable bit
/// count on x86_64 builds without it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn match_descriptors_popcnt(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    match_descriptors_portable(q, r)
}

/// Matching eight reference descriptors at a time: the reference descriptors are laid out as
/// four planes of eight 64-bit words, so one XOR and one population count per plane give eight
/// Hamming distances; each lane keeps its own best two, merged at the end.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{hamming, keep_one_per_reference, Features};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub(super) unsafe fn match_descriptors(q: &Features, r: &Features) -> Vec<(usize, usize)> {
        let blocks = r.len() / 8;
        // planes[b][k][lane] = word k of reference descriptor 8b + lane
        let mut planes = vec![[[0u64; 8]; 4]; blocks];
        for (b, plane) in planes.iter_mut().enumerate() {
            for lane in 0..8 {
                for k in 0..4 {
                    plane[k][lane] = r.descriptors[8 * b + lane][k];
                }
            }
        }
        let lanes = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
        let mut best = Vec::with_capacity(q.len());
        for qd in &q.descriptors {
            let qw = [_mm512_set1_epi64(qd[0] as i64), _mm512_set1_epi64(qd[1] as i64), _mm512_set1_epi64(qd[2] as i64), _mm512_set1_epi64(qd[3] as i64)];
            let mut b1 = _mm512_set1_epi64(i64::MAX);
            let mut b2 = _mm512_set1_epi64(i64::MAX);
            let mut i1 = _mm512_setzero_si512();
            for (b, plane) in planes.iter().enumerate() {
                let mut d = _mm512_setzero_si512();
                for k in 0..4 {
                    // SAFETY: plane[k] is 8 contiguous u64 (64 bytes); unaligned load.
                    let w = unsafe { _mm512_loadu_si512(plane[k].as_ptr().cast()) };
                    d = _mm512_add_epi64(d, _mm512_popcnt_epi64(_mm512_xor_si512(w, qw[k])));
                }
                let idx = _mm512_add_epi64(lanes, _mm512_set1_epi64(8 * b as i64));
                let lt1 = _mm512_cmplt_epi64_mask(d, b1);
                let lt2 = _mm512_cmplt_epi64_mask(d, b2);
                b2 = _mm512_mask_blend_epi64(lt1, _mm512_mask_blend_epi64(lt2, b2, d), b1);
                b1 = _mm512_mask_blend_epi64(lt1, b1, d);
                i1 = _mm512_mask_blend_epi64(lt1, i1, idx);
            }
            let (mut v1, mut v2, mut vi) = ([0i64; 8], [0i64; 8], [0i64; 8]);
            // SAFETY: each array is 64 bytes; unaligned stores.
            unsafe {
                _mm512_storeu_si512(v1.as_mut_ptr().cast(), b1);
                _mm512_storeu_si512(v2.as_mut_ptr().cast(), b2);
                _mm512_storeu_si512(vi.as_mut_ptr().cast(), i1);
            }
            let (mut d1, mut d2, mut j1) = (u32::MAX, u32::MAX, 0usize);
            let mut offer = |d: u32, j: usize| {
                if d < d2 {
                    if d < d1 || (d == d1 && j < j1) {
                        d2 = d1;
                        d1 = d;
                        j1 = j;
                    } else {
                        d2 = d;
                    }
                }
            };
            for lane in 0..8 {
                if v1[lane] != i64::MAX {
                    offer(v1[lane] as u32, vi[lane] as usize);
                }
            }
            for lane in 0..8 {
                if v2[lane] != i64::MAX {
                    offer(v2[lane] as u32, usize::MAX);
                }
            }
            for (j, rd) in r.descriptors.iter().enumerate().skip(8 * blocks) {
                offer(hamming(qd, rd), j);
            }
            best.push((d1, d2, j1));
        }
        keep_one_per_reference(&best, r.len())
    }
}

/// From each query point's (nearest distance, second nearest, nearest reference index): the pairs
/// that pass the ratio test (0.8) within 64 bits, one query point per reference point.
fn keep_one_per_reference(best: &[(u32, u32, usize)], n_ref: usize) -> Vec<(usize, usize)> {
    let mut best_for_ref: Vec<Option<(u32, usize)>> = vec![None; n_ref];
    for (qi, &(d1, d2, j1)) in best.iter().enumerate() {
        if d1 <= 64 && (d1 as f32) < 0.8 * d2 as f32 && j1 < n_ref {
            let slot = &mut best_for_ref[j1];
            if slot.is_none_or(|(d, _)| d1 < d) {
                *slot = Some((d1, qi));
            }
        }
    }
    best_for_ref.iter().enumerate().filter_map(|(j, s)| s.map(|(_, qi)| (qi, j))).collect()
}

#[inline(always)]
fn match_descriptors_portable(q: &Features, r: &Features) -> Vec<(usize, usize)> {
    let mut best = Vec::with_capacity(q.len());
    for qd in &q.descriptors {
        let (mut d1, mut d2, mut j1) = (u32::MAX, u32::MAX, 0);
        for (j, rd) in r.descriptors.iter().enumerate() {
            let d = hamming(qd, rd);
            if d < d2 {
                if d < d1 {
                    d2 = d1;
                    d1 = d;
                    j1 = j;
                } else {
                    d2 = d;
                }
            }
        }
        best.push((d1, d2, j1));
    }
    keep_one_per_reference(&best, r.len())
}

/// The outcome of verifying one photo pair.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Verified {
    /// Descriptor pairs that passed the ratio test.
    pub matches: usize,
    /// Of those, pairs that one homography explains within `INLIER_PIXELS`.
    pub inliers: usize,
    /// Of those, pairs whose reference point lies in the reference photo's centre (`CENTRE_MARGIN`
    /// in from each side), where a photo of a product shows the product.
    pub central: usize,
    /// Of the inliers, pairs whose reference point the brand's other products share (`Shared`).
    pub shared: usize,
    /// The evidence with inliers on shared points counted at `SHARED_WEIGHT`: how far the photos
    /// agree on what sets the product apart from its siblings.
    pub distinct: f64,
    /// Where the inliers are in the query photo: the box around them (left, top, right, bottom, as
    /// shares of its width and height); `None` without inliers.
    pub spot: Option<[f32; 4]>,
    /// How the reference photo lies in the query photo, from the homography of the inliers;
    /// `None` without inliers.
    pub pose: Option<Pose>,
}

/// Where a verified reference photo lies in the query photo: the homography from the reference's
/// feature points to the query's, and the sizes of both photos as features were extracted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    to_query: Mat3,
    query: (f64, f64),
    reference: (f64, f64),
}

/// Smallest share of the query photo that a reference photo may cover for `Pose::rectify`.
pub const MIN_FRAME_SHARE: f64 = 0.002;

impl Pose {
    /// The pose of a homography from the query's feature points to the reference's (`query` and
    /// `reference` are the sizes of their photos); `None` when it is singular.
    fn new(to_reference: &Mat3, query: (u16, u16), reference: (u16, u16)) -> Option<Pose> {
        // scaled so that points in front of the camera have a positive third coordinate both ways
        let sign = if to_reference[2][2] < 0.0 { -1.0 } else { 1.0 };
        Some(Pose {
            to_query: invert(&to_reference.map(|row| row.map(|v| sign * v)))?,
            query: (f64::from(query.0), f64::from(query.1)),
            reference: (f64::from(reference.0), f64::from(reference.1)),
        })
    }

    /// A point of the reference photo (pixels of its features) in the query photo, as shares of
    /// the photo's width and height, when the features saw `area` of the photo (mirrored or not);
    /// `None` behind the camera.
    fn to_photo(&self, area: [f32; 4], mirrored: bool, x: f64, y: f64) -> Option<[f64; 2]> {
        let h = &self.to_query;
        if h[2][0] * x + h[2][1] * y + h[2][2] <= 1e-9 {
            return None;
        }
        let [mut qx, qy] = apply(h, [x, y])?;
        if mirrored {
            qx = self.query.0 - 1.0 - qx;
        }
        let [a0, a1, a2, a3] = area.map(f64::from);
        Some([a0 + qx / self.query.0 * (a2 - a0), a1 + qy / self.query.1 * (a3 - a1)])
    }

    /// The share of the query photo that the reference photo's frame covers (parts outside the
    /// photo included), seen as `Pose::to_photo` says; `None` when a corner is behind the camera.
    pub fn share(&self, area: [f32; 4], mirrored: bool) -> Option<f64> {
        let (rw, rh) = self.reference;
        let c = [self.to_photo(area, mirrored, 0.0, 0.0)?, self.to_photo(area, mirrored, rw, 0.0)?, self.to_photo(area, mirrored, rw, rh)?, self.to_photo(area, mirrored, 0.0, rh)?];
        let twice: f64 = (0..4).map(|i| c[i][0] * c[(i + 1) % 4][1] - c[(i + 1) % 4][0] * c[i][1]).sum();
        Some(twice.abs() / 2.0)
    }

    /// The reference photo's frame as the query photo shows it, warped back to the reference's
    /// shape (short side `short_side` pixels): what a copy pasted, turned or tilted in the listing
    /// photo looks like when cut out and straightened. `photo` is the decoded query photo, of which
    /// the features saw `area` (`mirrored` when they saw it mirrored); parts of the frame outside
    /// the photo are black. `None` when the frame is implausible: a corner behind the camera, or
    /// the frame covers less than `MIN_FRAME_SHARE` of the photo.
    pub fn rectify(&self, photo: &RgbImage, area: [f32; 4], mirrored: bool, short_side: u32) -> Option<RgbImage> {
        let (rw, rh) = self.reference;
        let (pw, ph) = (photo.width as f64, photo.height as f64);
        if pw < 1.0 || ph < 1.0 || rw < 1.0 || rh < 1.0 || !(self.share(area, mirrored)? >= MIN_FRAME_SHARE) {
            return None;
        }
        let to_photo = |x: f64, y: f64| self.to_photo(area, mirrored, x, y).map(|[sx, sy]| [sx * pw, sy * ph]);
        let scale = f64::from(short_side.max(1)) / rw.min(rh);
        let (ow, oh) = (((rw * scale).round() as u32).clamp(1, 4 * short_side.max(1)), ((rh * scale).round() as u32).clamp(1, 4 * short_side.max(1)));
        Some(crate::vision::decode::warp(photo, ow, oh, [0, 0, 0], |u, v| to_photo(u / f64::from(ow) * rw, v / f64::from(oh) * rh)))
    }
}

impl Verified {
    /// The evidence for the reference photo's product: its central inliers, plus the others at
    /// `PERIPHERY_WEIGHT` each. A shop photo also shows the shelf around its product, and a listing
    /// of a sibling product on that shelf matches there, not in the centre.
    pub fn evidence(&self) -> f64 {
        self.central as f64 + PERIPHERY_WEIGHT * (self.inliers - self.central) as f64
    }
}

/// Share of the reference photo's width and height, from each side, outside its centre.
pub const CENTRE_MARGIN: f32 = 0.15;
/// What an inlier outside the reference photo's centre counts for.
pub const PERIPHERY_WEIGHT: f64 = 0.25;
/// What an inlier on a point the brand's other products share counts for in `Verified::distinct`.
pub const SHARED_WEIGHT: f64 = 0.25;

/// Most RANSAC samples drawn for one photo pair (fewer when a good fit is found early).
const MAX_ITERATIONS: usize = 1000;

/// Reprojection error (pixels of the reference photo) under which a pair counts as explained.
pub const INLIER_PIXELS: f64 = 6.0;

/// Matches a query photo's features against a reference photo's and counts the pairs one
/// homography explains (RANSAC, deterministic). With fewer than `min_inliers` descriptor pairs
/// the homography is not fitted (it could not explain enough) and `inliers` is 0. `shared` marks
/// the reference points the brand's other products share, if known.
pub fn verify(q: &Features, r: &Features, shared: Option<&Shared>, min_inliers: usize) -> Verified {
    let (matches, inl, to_reference) = inlier_pairs(q, r, min_inliers);
    let (w, h) = (r.width as f32, r.height as f32);
    let inside = |p: [f32; 2]| p[0] >= CENTRE_MARGIN * w && p[0] <= (1.0 - CENTRE_MARGIN) * w && p[1] >= CENTRE_MARGIN * h && p[1] <= (1.0 - CENTRE_MARGIN) * h;
    let shared = shared.filter(|s| s.len == r.len());
    let pose = to_reference.and_then(|h| Pose::new(&h, (q.width, q.height), (r.width, r.height)));
    let mut v = Verified { matches, inliers: inl.len(), pose, ..Verified::default() };
    for &(_, j) in &inl {
        let central = inside(r.points[j]);
        let common = shared.is_some_and(|s| s.contains(j));
        v.central += usize::from(central);
        v.shared += usize::from(common);
        v.distinct += if central { 1.0 } else { PERIPHERY_WEIGHT } * if common { SHARED_WEIGHT } else { 1.0 };
    }
    let (qw, qh) = (f32::from(q.width.max(1)), f32::from(q.height.max(1)));
    v.spot = inl.iter().map(|&(i, _)| q.points[i]).fold(None, |b: Option<[f32; 4]>, [x, y]| {
        let (x, y) = ((x / qw).clamp(0.0, 1.0), (y / qh).clamp(0.0, 1.0));
        Some(b.map_or([x, y, x, y], |b| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)]))
    });
    v
}

/// The descriptor pairs that passed the ratio test, those of them (query index, reference
/// index) that one homography explains, and that homography; none when fewer than `min_inliers`
/// pairs passed.
fn inlier_pairs(q: &Features, r: &Features, min_inliers: usize) -> (usize, Vec<(usize, usize)>, Option<Mat3>) {
    let pairs = match_descriptors(q, r);
    if pairs.len() < min_inliers.max(6) {
        return (pairs.len(), Vec::new(), None);
    }
    let src: Vec<[f64; 2]> = pairs.iter().map(|&(i, _)| [q.points[i][0] as f64, q.points[i][1] as f64]).collect();
    let dst: Vec<[f64; 2]> = pairs.iter().map(|&(_, j)| [r.points[j][0] as f64, r.points[j][1] as f64]).collect();
    match ransac_homography(&src, &dst, (q.width as f64, q.height as f64)) {
        Some((h, inl)) => (pairs.len(), inl.iter().map(|&k| pairs[k]).collect(), Some(h)),
        None => (pairs.len(), Vec::new(), None),
    }
}

/// The points of a reference photo that photos of the brand's other products share: its logo,
/// lettering and layout, which say the brand but not which of its products. A point is shared when
/// it is an inlier (`verify`, at least `min_inliers` of them) against a photo of another product.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shared {
    /// Number of points of the reference photo's features.
    len: usize,
    /// One bit per point, set when shared.
    bits: Vec<u64>,
}

/// Magic of the serialised `Shared` format.
const SHARED_MAGIC: &[u8; 8] = b"KNKSHR01";

impl Shared {
    /// Marks the points of `r` that are inliers against any of `others` (photos of the brand's
    /// other products).
    pub fn find(r: &Features, others: &[&Features], min_inliers: usize) -> Shared {
        use rayon::prelude::*;
        let mut s = Shared { len: r.len(), bits: vec![0; r.len().div_ceil(64)] };
        let found: Vec<Vec<(usize, usize)>> = others.par_iter().map(|o| inlier_pairs(r, o, min_inliers).1).collect();
        // a few inliers happen by chance between unrelated photos: only real agreement counts
        for &(i, _) in found.iter().filter(|inl| inl.len() >= min_inliers).flatten() {
            s.bits[i / 64] |= 1 << (i % 64);
        }
        s
    }

    /// Whether point `i` is shared.
    pub fn contains(&self, i: usize) -> bool {
        self.bits.get(i / 64).is_some_and(|b| b >> (i % 64) & 1 == 1)
    }

    /// Number of shared points.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Serialises: magic, point count (u32 little-endian), then the bits as u64 little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + 8 * self.bits.len());
        out.extend_from_slice(SHARED_MAGIC);
        out.extend_from_slice(&(self.len as u32).to_le_bytes());
        for b in &self.bits {
            out.extend_from_slice(&b.to_le_bytes());
        }
        out
    }

    /// Reads `to_bytes` output.
    pub fn from_bytes(b: &[u8]) -> Result<Shared, FormatError> {
        if b.len() < 12 || &b[..8] != SHARED_MAGIC {
            return Err(FormatError::Damaged("not a shared-points record".into()));
        }
        let len = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let words = len.div_ceil(64);
        if b.len() != 12 + 8 * words {
            return Err(FormatError::Damaged(format!("shared-points record of {} bytes for {len} points", b.len())));
        }
        let bits = b[12..].chunks_exact(8).map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect();
        Ok(Shared { len, bits })
    }
}

type Mat3 = [[f64; 3]; 3];

/// Isotropic normalisation (Hartley): centroid at 0, mean distance √2. Returns the matrix.
fn normaliser(p: &[[f64; 2]]) -> Mat3 {
    let n = p.len() as f64;
    let (cx, cy) = (p.iter().map(|v| v[0]).sum::<f64>() / n, p.iter().map(|v| v[1]).sum::<f64>() / n);
    let mean = p.iter().map(|v| ((v[0] - cx).powi(2) + (v[1] - cy).powi(2)).sqrt()).sum::<f64>() / n;
    let s = if mean > 1e-9 { std::f64::consts::SQRT_2 / mean } else { 1.0 };
    [[s, 0.0, -s * cx], [0.0, s, -s * cy], [0.0, 0.0, 1.0]]
}

fn apply(h: &Mat3, p: [f64; 2]) -> Option<[f64; 2]> {
    let w = h[2][0] * p[0] + h[2][1] * p[1] + h[2][2];
    if w.abs() < 1e-12 {
        return None;
    }
    Some([(h[0][0] * p[0] + h[0][1] * p[1] + h[0][2]) / w, (h[1][0] * p[0] + h[1][1] * p[1] + h[1][2]) / w])
}

/// The inverse of a homography; `None` when it is singular.
fn invert(h: &Mat3) -> Option<Mat3> {
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| h[r0][c0] * h[r1][c1] - h[r0][c1] * h[r1][c0];
    let adj = [
        [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
        [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
        [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
    ];
    let det = h[0][0] * adj[0][0] + h[0][1] * adj[1][0] + h[0][2] * adj[2][0];
    (det.is_finite() && det.abs() > 1e-12).then(|| adj.map(|row| row.map(|v| v / det)))
}

fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn invert_similarity(t: &Mat3) -> Mat3 {
    let s = t[0][0];
    [[1.0 / s, 0.0, -t[0][2] / s], [0.0, 1.0 / s, -t[1][2] / s], [0.0, 0.0, 1.0]]
}

/// Solves the 8x8 system `a h = b` by Gaussian elimination with partial pivoting.
fn solve8(mut a: [[f64; 8]; 8], mut b: [f64; 8]) -> Option<[f64; 8]> {
    for c in 0..8 {
        let p = (c..8).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[p][c].abs() < 1e-10 {
            return None;
        }
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..8 {
            let f = a[r][c] / a[c][c];
            if f != 0.0 {
                for k in c..8 {
                    a[r][k] -= f * a[c][k];
                }
                b[r] -= f * b[c];
            }
        }
    }
    let mut x = [0.0; 8];
    for c in (0..8).rev() {
        let s: f64 = (c + 1..8).map(|k| a[c][k] * x[k]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The two equations of one correspondence, for the unknowns h11..h32 with h33 = 1.
fn rows(s: [f64; 2], d: [f64; 2]) -> [([f64; 8], f64); 2] {
    let (x, y, u, v) = (s[0], s[1], d[0], d[1]);
    [([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y], u), ([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y], v)]
}

/// The homography through exactly four correspondences: the eight equations solved directly
/// (a third of the work of `fit`'s normal equations, which RANSAC would pay for every sample).
fn fit4(src: &[[f64; 2]; 4], dst: &[[f64; 2]; 4]) -> Option<Mat3> {
    let mut a = [[0.0; 8]; 8];
    let mut b = [0.0; 8];
    for (k, (s, d)) in src.iter().zip(dst).enumerate() {
        for (r, (row, rhs)) in rows(*s, *d).into_iter().enumerate() {
            a[2 * k + r] = row;
            b[2 * k + r] = rhs;
        }
    }
    let h = solve8(a, b)?;
    Some([[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]])
}

/// Least-squares homography through the correspondences (exact for four).
fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Mat3> {
    let mut ata = [[0.0; 8]; 8];
    let mut atb = [0.0; 8];
    for (s, d) in src.iter().zip(dst) {
        for (row, rhs) in rows(*s, *d) {
            for i in 0..8 {
                atb[i] += row[i] * rhs;
                for j in 0..8 {
                    ata[i][j] += row[i] * row[j];
                }
            }
        }
    }
    let h = solve8(ata, atb)?;
    Some([[h[0], h[1], h[2]], [h[3], h[4], h[5]], [h[6], h[7], 1.0]])
}

/// Twice the signed area of the triangle a, b, c (positive when counter-clockwise).
fn cross(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Whether four pairs can come from a plausible homography: no three points (nearly) on one line,
/// in normalised coordinates, and every triangle of them turning the same way in both photos (a
/// homography that keeps orientation and the points in front of the camera keeps those signs).
/// Most samples of a photo pair that does not match fail this before anything is fitted.
fn consistent(s4: &[[f64; 2]; 4], d4: &[[f64; 2]; 4]) -> bool {
    [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)].iter().all(|&(a, b, c)| {
        let (cs, cd) = (cross(s4[a], s4[b], s4[c]), cross(d4[a], d4[b], d4[c]));
        cs.abs() >= 1e-3 && cd.abs() >= 1e-3 && (cs > 0.0) == (cd > 0.0)
    })
}

/// A homography that a real photo could produce from the query photo (`size`, pixels): it keeps
/// orientation (no mirror, which descriptors would not match anyway), the query's corners stay in
/// front of the camera, and the scale change is within 1/10..10.
fn plausible(h: &Mat3, size: (f64, f64)) -> bool {
    let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
    let h33 = h[2][2];
    if !(det.is_finite() && h33.abs() > 1e-12) {
        return false;
    }
    let scale = det / (h33 * h33);
    if !(0.01..=100.0).contains(&scale) {
        return false;
    }
    [(0.0, 0.0), (size.0, 0.0), (0.0, size.1), (size.0, size.1)].iter().all(|&(x, y)| (h[2][0] * x + h[2][1] * y + h33) / h33 > 0.1)
}

/// RANSAC over minimal samples of four pairs, then a least-squares refit on the inliers: the best
/// plausible homography (pixels to pixels) and its inlier count.
fn ransac_homography(src: &[[f64; 2]], dst: &[[f64; 2]], size: (f64, f64)) -> Option<(Mat3, Vec<usize>)> {
    let n = src.len();
    let (ts, td) = (normaliser(src), normaliser(dst));
    let ns: Vec<[f64; 2]> = src.iter().filter_map(|&p| apply(&ts, p)).collect();
    let nd: Vec<[f64; 2]> = dst.iter().filter_map(|&p| apply(&td, p)).collect();
    if ns.len() != n || nd.len() != n {
        return None;
    }
    let td_inv = invert_similarity(&td);
    let to_pixels = |hn: &Mat3| mul(&td_inv, &mul(hn, &ts));
    let thr2 = INLIER_PIXELS * INLIER_PIXELS;
    let explains = |h: &Mat3, i: usize| apply(h, src[i]).is_some_and(|p| (p[0] - dst[i][0]).powi(2) + (p[1] - dst[i][1]).powi(2) < thr2);
    let count = |h: &Mat3| (0..n).filter(|&i| explains(h, i)).count();
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    let mut best: Option<(Mat3, usize)> = None;
    let mut iterations = MAX_ITERATIONS;
    let mut it = 0;
    while it < iterations {
        it += 1;
        let mut idx = [0usize; 4];
        for k in 0..4 {
            idx[k] = next(n);
        }
        if idx[0] == idx[1] || idx[0] == idx[2] || idx[0] == idx[3] || idx[1] == idx[2] || idx[1] == idx[3] || idx[2] == idx[3] {
            continue;
        }
        let s4 = idx.map(|i| ns[i]);
        let d4 = idx.map(|i| nd[i]);
        if !consistent(&s4, &d4) {
            continue;
        }
        let Some(hn) = fit4(&s4, &d4) else { continue };
        let h = to_pixels(&hn);
        if !plausible(&h, size) {
            continue;
        }
        let c = count(&h);
        if best.as_ref().is_none_or(|(_, b)| c > *b) {
            best = Some((h, c));
            // enough samples to draw one all-inlier sample with probability 0.999
            let w = c as f64 / n as f64;
            let need = ((1.0 - 0.999f64).ln() / (1.0 - w.powi(4)).max(1e-12).ln()).ceil();
            if need.is_finite() && need >= 0.0 {
                iterations = iterations.min((need as usize).max(50));
            }
        }
    }
    let (h, c) = best?;
    if c < 4 {
        return None;
    }
    // refit on the inliers; keep the refit only if it explains at least as many pairs
    let inl: Vec<usize> = (0..n).filter(|&i| explains(&h, i)).collect();
    let s: Vec<[f64; 2]> = inl.iter().map(|&i| ns[i]).collect();
    let d: Vec<[f64; 2]> = inl.iter().map(|&i| nd[i]).collect();
    if let Some(hn) = fit(&s, &d) {
        let h2 = to_pixels(&hn);
        if plausible(&h2, size) {
            let inl2: Vec<usize> = (0..n).filter(|&i| explains(&h2, i)).collect();
            if inl2.len() >= c {
                return Some((h2, inl2));
            }
        }
    }
    Some((h, inl))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic textured test picture: blocks of varying grey with a few shapes.
    fn picture(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut data = vec![200u8; (w * h * 3) as usize];
        for _ in 0..60 {
            let (x0, y0) = ((rnd() % w as u64) as u32, (rnd() % h as u64) as u32);
            let (bw, bh) = (8 + (rnd() % 60) as u32, 8 + (rnd() % 60) as u32);
            let c = [(rnd() % 256) as u8, (rnd() % 256) as u8, (rnd() % 256) as u8];
            for y in y0..(y0 + bh).min(h) {
                for x in x0..(x0 + bw).min(w) {
                    let i = ((y * w + x) * 3) as usize;
                    data[i..i + 3].copy_from_slice(&c);
                }
            }
        }
        RgbImage { width: w, height: h, data }
    }

    fn rotate(img: &RgbImage, deg: f64) -> RgbImage {
        let (w, h) = (img.width as f64, img.height as f64);
        let (s, c) = deg.to_radians().sin_cos();
        let mut data = vec![255u8; img.data.len()];
        for y in 0..img.height {
            for x in 0..img.width {
                let (dx, dy) = (x as f64 - w / 2.0, y as f64 - h / 2.0);
                let (sx, sy) = (c * dx + s * dy + w / 2.0, -s * dx + c * dy + h / 2.0);
                if sx >= 0.0 && sy >= 0.0 && (sx as u32) < img.width && (sy as u32) < img.height {
                    let si = ((sy as u32 * img.width + sx as u32) * 3) as usize;
                    let di = ((y * img.width + x) * 3) as usize;
                    data[di..di + 3].copy_from_slice(&img.data[si..si + 3]);
                }
            }
        }
        RgbImage { width: img.width, height: img.height, data }
    }

    #[test]
    fn row_wise_fast_scores_equal_the_test_at_every_pixel() {
        for (w, h, seed) in [(400, 300, 3), (97, 61, 4), (39, 39, 5)] {
            let g = to_gray(&picture(w, h, seed), 0, 4096);
            let fast = fast_scores(&g);
            let mut corners = 0;
            for y in 0..g.height as i32 {
                for x in 0..g.width as i32 {
                    let inside = x >= MARGIN && y >= MARGIN && x < g.width as i32 - MARGIN && y < g.height as i32 - MARGIN;
                    let want = if inside { fast9(&g, x, y).unwrap_or(0) } else { 0 };
                    assert_eq!(fast[y as usize * g.width + x as usize], want, "{w}x{h} at ({x}, {y})");
                    corners += (want > 0) as usize;
                }
            }
            assert!(w < 100 || corners > 100, "{w}x{h}: only {corners} corners");
        }
    }

    #[test]
    fn four_point_fit_recovers_a_homography_and_mirrored_samples_are_refused() {
        let h: Mat3 = [[0.9, -0.2, 0.1], [0.15, 1.1, -0.05], [0.05, -0.03, 1.0]];
        let src = [[-1.0, -0.8], [1.2, -0.9], [0.9, 1.1], [-1.1, 0.7]];
        let dst = src.map(|p| apply(&h, p).expect("in front"));
        assert!(consistent(&src, &dst));
        let fitted = fit4(&src, &dst).expect("fit");
        for (r, row) in fitted.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!((v - h[r][c]).abs() < 1e-9, "h[{r}][{c}] = {v}, want {}", h[r][c]);
            }
        }
        let mirrored = dst.map(|p| [-p[0], p[1]]);
        assert!(!consistent(&src, &mirrored), "a mirrored sample turns every triangle the other way");
        let on_a_line = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 1.0]];
        assert!(!consistent(&on_a_line, &dst));
    }

    #[test]
    fn the_spot_is_where_the_copy_is_in_the_query_photo() {
        let p = Params::default();
        let a = picture(300, 300, 1);
        // the picture in the right half of a wider, plain query photo
        let mut wide = RgbImage { width: 600, height: 300, data: vec![90u8; 600 * 300 * 3] };
        for y in 0..300usize {
            wide.data[(y * 600 + 300) * 3..(y * 600 + 600) * 3].copy_from_slice(&a.data[y * 300 * 3..(y + 1) * 300 * 3]);
        }
        let v = verify(&Features::extract(&wide, &p), &Features::extract(&a, &p), None, 8);
        assert!(v.inliers >= 30, "{v:?}");
        let s = v.spot.expect("inliers have a spot");
        assert!(s[0] >= 0.48 && s[2] <= 1.0 && s[2] > 0.9, "in the right half: {s:?}");
        assert!(s[1] < 0.1 && s[3] > 0.9, "from top to bottom: {s:?}");
        let none = verify(&Features::extract(&picture(300, 300, 2), &p), &Features::extract(&a, &p), None, 8);
        assert_eq!(none.spot.is_some(), none.inliers > 0, "{none:?}");
    }

    #[test]
    fn a_rotated_copy_verifies_and_an_unrelated_picture_does_not() {
        let p = Params::default();
        let a = picture(400, 300, 1);
        let fa = Features::extract(&a, &p);
        assert!(fa.len() > 100, "only {} features", fa.len());
        let copy = Features::extract(&rotate(&a, 12.0), &p);
        let other = Features::extract(&picture(400, 300, 2), &p);
        let same = verify(&copy, &fa, None, 0);
        let diff = verify(&other, &fa, None, 0);
        assert!(same.inliers >= 30, "rotated copy: {same:?}");
        assert!(diff.inliers < 10, "unrelated picture: {diff:?}");
    }

    fn mirror(img: &RgbImage) -> RgbImage {
        let mut data = Vec::with_capacity(img.data.len());
        for row in img.data.chunks_exact(img.width as usize * 3) {
            data.extend(row.chunks_exact(3).rev().flatten());
        }
        RgbImage { width: img.width, height: img.height, data }
    }

    #[test]
    fn a_mirrored_copy_verifies_only_through_the_mirrored_features() {
        let p = Params::default();
        let a = picture(400, 300, 7);
        let fa = Features::extract(&a, &p);
        let flipped = Features::extract(&mirror(&rotate(&a, 6.0)), &p);
        let direct = verify(&flipped, &fa, None, 0);
        let unflipped = verify(&flipped.mirrored(), &fa, None, 0);
        assert!(direct.inliers < 10, "a mirror image is not a plausible homography: {direct:?}");
        assert!(unflipped.inliers >= 30, "{unflipped:?}");
        // mirroring is its own inverse, and it equals extracting from the mirror image
        let twice = flipped.mirrored().mirrored();
        assert_eq!(twice.descriptors, flipped.descriptors);
        assert!(twice.points.iter().zip(&flipped.points).all(|(a, b)| (a[0] - b[0]).abs() < 1e-3 && a[1] == b[1]));
        let exact = Features::extract(&mirror(&a), &p).mirrored();
        let same = fa.descriptors.iter().filter(|d| exact.descriptors.contains(d)).count();
        assert!(same * 10 >= fa.len() * 8, "{same} of {} descriptors survive mirroring exactly", fa.len());
    }

    /// Mean absolute difference of two images' bytes, the second resized to the first's size.
    fn difference(a: &RgbImage, b: &RgbImage) -> f64 {
        let b = crate::vision::decode::resize(b, a.width, a.height).expect("resize");
        a.data.iter().zip(&b.data).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.data.len() as f64
    }

    #[test]
    fn a_homography_inverts() {
        let h: Mat3 = [[0.9, -0.2, 14.0], [0.15, 1.1, -5.0], [0.0005, -0.0003, 1.0]];
        let inv = invert(&h).expect("regular");
        for p in [[0.0, 0.0], [120.0, 45.0], [300.0, 200.0]] {
            let back = apply(&inv, apply(&h, p).expect("in front")).expect("in front");
            assert!((back[0] - p[0]).abs() < 1e-9 && (back[1] - p[1]).abs() < 1e-9, "{p:?} -> {back:?}");
        }
        assert!(invert(&[[1.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 1.0]]).is_none(), "singular");
    }

    #[test]
    fn a_copy_pasted_small_is_cut_out_and_straightened_where_it_lies() {
        let p = Params::default();
        let a = picture(300, 300, 1);
        let other = picture(300, 300, 2);
        // the picture turned by 8 degrees, pasted at (520, 80) into a plain 900 x 600 photo
        let turned = rotate(&a, 8.0);
        let mut photo = RgbImage { width: 900, height: 600, data: vec![90u8; 900 * 600 * 3] };
        for y in 0..300usize {
            let at = ((y + 80) * 900 + 520) * 3;
            photo.data[at..at + 900].copy_from_slice(&turned.data[y * 900..(y + 1) * 900]);
        }
        let fa = Features::extract(&a, &p);
        let v = verify(&Features::extract(&photo, &p), &fa, None, 8);
        assert!(v.inliers >= 30, "{v:?}");
        let pose = v.pose.expect("a homography");
        let share = pose.share(crate::vision::regions::WHOLE, false).expect("in front");
        assert!((share - 300.0 * 300.0 / (900.0 * 600.0)).abs() < 0.03, "covers {share}");
        let cut = pose.rectify(&photo, crate::vision::regions::WHOLE, false, 150).expect("plausible");
        assert_eq!((cut.width, cut.height), (150, 150), "the reference photo's shape");
        let (same, unlike) = (difference(&cut, &a), difference(&cut, &other));
        assert!(same < 25.0 && unlike > 2.0 * same, "straightened copy differs by {same:.1} from the picture, {unlike:.1} from another");
        // the photo mirrored, with its left half verified as an inset would be, through mirrored
        // features as a scan's mirror pass does: the same cut, the right way round
        let flipped = mirror(&photo);
        let mut half = RgbImage { width: 450, height: 600, data: Vec::with_capacity(450 * 600 * 3) };
        for row in flipped.data.chunks_exact(900 * 3) {
            half.data.extend_from_slice(&row[..450 * 3]);
        }
        let v = verify(&Features::extract(&half, &p).mirrored(), &fa, None, 8);
        let recut = v.pose.expect("a homography").rectify(&flipped, [0.0, 0.0, 0.5, 1.0], true, 150).expect("plausible");
        let again = difference(&recut, &a);
        assert!(again < 25.0, "from the mirrored photo's half: {again:.1}");
        // a homography means the same scaled by -1: the same cut
        let to_reference = invert(&pose.to_query).expect("regular").map(|row| row.map(|v| -v));
        let negated = Pose::new(&to_reference, (pose.query.0 as u16, pose.query.1 as u16), (pose.reference.0 as u16, pose.reference.1 as u16)).expect("regular");
        let recut = negated.rectify(&photo, crate::vision::regions::WHOLE, false, 150).expect("in front of the camera");
        assert!(difference(&recut, &cut) < 0.5, "{}", difference(&recut, &cut));
        // a frame that covers almost nothing of the photo is not cut out
        let tiny = Pose { to_query: [[0.01, 0.0, 5.0], [0.0, 0.01, 5.0], [0.0, 0.0, 1.0]], query: (900.0, 600.0), reference: (300.0, 300.0) };
        assert!(tiny.rectify(&photo, crate::vision::regions::WHOLE, false, 150).is_none());
    }

    #[test]
    fn inliers_off_the_centre_of_the_reference_count_a_quarter() {
        let p = Params::default();
        let a = picture(400, 300, 11);
        // the same picture with its centre (and a little more) painted flat: it matches only on its border
        let mut border = a.clone();
        for y in 35..265 {
            for x in 50..350 {
                let i = ((y * 400 + x) * 3) as usize;
                border.data[i..i + 3].copy_from_slice(&[128, 128, 128]);
            }
        }
        let listing = Features::extract(&rotate(&a, 5.0), &p);
        let whole = verify(&listing, &Features::extract(&a, &p), None, 0);
        let edge = verify(&listing, &Features::extract(&border, &p), None, 0);
        assert!(whole.inliers >= 30 && whole.central * 3 >= whole.inliers, "{whole:?}");
        assert!(edge.inliers >= 15 && edge.central * 5 < edge.inliers, "{edge:?}");
        let expected = edge.central as f64 + 0.25 * (edge.inliers - edge.central) as f64;
        assert!((edge.evidence() - expected).abs() < 1e-9);
        assert!(edge.evidence() * 1.25 < whole.evidence(), "the border alone is far weaker evidence");
    }

    #[test]
    fn a_downscaled_copy_verifies() {
        let a = picture(480, 480, 3);
        let small = crate::vision::decode::resize(&a, 300, 300).expect("resize");
        let fa = Features::extract(&a, &Params::default());
        let fs = Features::extract(&small, &Params::default());
        let v = verify(&fs, &fa, None, 0);
        assert!(v.inliers >= 20, "{v:?}");
    }

    /// The matching rule written out plainly, as the kernels must compute it: every distance, the
    /// two nearest by (distance, index), the ratio test, then the nearest query point per
    /// reference point (the first one on a tie).
    fn match_descriptors_by_definition(q: &Features, r: &Features) -> Vec<(usize, usize)> {
        let bits = |a: &[u64; 4], b: &[u64; 4]| -> u32 { a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum() };
        let mut kept: std::collections::BTreeMap<usize, (u32, usize)> = Default::default();
        for (qi, qd) in q.descriptors.iter().enumerate() {
            let mut all: Vec<(u32, usize)> = r.descriptors.iter().enumerate().map(|(j, rd)| (bits(qd, rd), j)).collect();
            all.sort();
            let (d1, j1) = all.first().copied().unwrap_or((u32::MAX, 0));
            let d2 = all.get(1).map_or(u32::MAX, |&(d, _)| d);
            if d1 <= 64 && (d1 as f32) < 0.8 * d2 as f32 && kept.get(&j1).is_none_or(|&(d, _)| d1 < d) {
                kept.insert(j1, (d1, qi));
            }
        }
        kept.into_iter().map(|(j, (_, qi))| (qi, j)).collect()
    }

    /// Each kernel this CPU can run against the rule written out, on photo features and on random
    /// descriptors with planted near-duplicates, ties and reference counts that are not a multiple
    /// of eight (the AVX-512 kernel's tail).
    #[test]
    fn every_matching_kernel_finds_the_same_pairs() {
        let a = Features::extract(&picture(400, 300, 5), &Params::default());
        let b = Features::extract(&rotate(&picture(400, 300, 5), 8.0), &Params::default());
        let mut cases = vec![(a.clone(), b.clone())];
        let mut tail = b.clone();
        tail.points.truncate(b.len() - 3);
        tail.descriptors.truncate(b.len() - 3);
        cases.push((a.clone(), tail));
        let mut state = 7u64;
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (state ^ (state >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for n_ref in [1, 7, 8, 9, 61] {
            let mut random = || [next(), next(), next(), next()];
            let r_desc: Vec<[u64; 4]> = (0..n_ref).map(|_| random()).collect();
            let mut q_desc: Vec<[u64; 4]> = (0..40).map(|_| random()).collect();
            for (i, d) in q_desc.iter_mut().enumerate().take(30) {
                *d = r_desc[i % n_ref]; // planted copies: several query points per reference point
                d[i % 4] ^= (1u64 << (i % 64)) | (1u64 << ((i * 7) % 64)); // up to two flipped bits
            }
            let features = |d: Vec<[u64; 4]>| Features { points: vec![Default::default(); d.len()], descriptors: d, ..a.clone() };
            cases.push((features(q_desc), features(r_desc)));
        }
        let mut kernels: Vec<(&str, fn(&Features, &Features) -> Vec<(usize, usize)>)> =
            vec![("portable", match_descriptors_portable), ("dispatched", match_descriptors)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has POPCNT (checked just above).
                kernels.push(("popcnt", |q, r| unsafe { match_descriptors_popcnt(q, r) }));
            }
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
                // SAFETY: the CPU has AVX-512F and VPOPCNTDQ (checked just above).
                kernels.push(("avx512", |q, r| unsafe { avx512::match_descriptors(q, r) }));
            } else {
                eprintln!("every_matching_kernel_finds_the_same_pairs: this CPU has no AVX-512 VPOPCNTDQ; that kernel is not tried here");
            }
        }
        for (i, (q, r)) in cases.iter().enumerate() {
            let expected = match_descriptors_by_definition(q, r);
            assert!(i >= 2 || expected.len() > 30, "photo case {i}: {} pairs", expected.len());
            for (name, kernel) in &kernels {
                assert_eq!(kernel(q, r), expected, "{name} kernel, case {i}");
            }
        }
    }

    #[test]
    fn features_survive_serialisation_and_damage_is_reported() {
        let f = Features::extract(&picture(200, 160, 4), &Params::default());
        let b = f.to_bytes();
        assert_eq!(Features::from_bytes(&b).expect("read back"), f);
        assert!(Features::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(Features::from_bytes(b"KNKORB00xxxxxxxx").is_err());
    }

    #[test]
    fn a_flat_or_tiny_photo_has_no_features() {
        let flat = RgbImage { width: 100, height: 100, data: vec![128; 30000] };
        assert!(Features::extract(&flat, &Params::default()).is_empty());
        let tiny = RgbImage { width: 10, height: 10, data: vec![0; 300] };
        assert!(Features::extract(&tiny, &Params::default()).is_empty());
        assert_eq!(verify(&Features::extract(&flat, &Params::default()), &Features::extract(&tiny, &Params::default()), None, 0).inliers, 0);
    }

    /// Two sibling packages: the same top half (brand logo and layout), different bottom halves.
    fn siblings() -> (RgbImage, RgbImage) {
        let stack = |top: &RgbImage, bottom: &RgbImage| {
            let mut data = top.data.clone();
            data.extend_from_slice(&bottom.data);
            RgbImage { width: top.width, height: top.height + bottom.height, data }
        };
        let top = picture(400, 150, 11);
        (stack(&top, &picture(400, 150, 12)), stack(&top, &picture(400, 150, 13)))
    }

    #[test]
    fn points_a_sibling_shares_are_marked_and_decide_less() {
        let p = Params::default();
        let (a, b) = siblings();
        let (fa, fb) = (Features::extract(&a, &p), Features::extract(&b, &p));
        let (sa, sb) = (Shared::find(&fa, &[&fb], 8), Shared::find(&fb, &[&fa], 8));
        // the points are in the shrunk photo's pixels: the seam lies at half its height
        let seam = fa.height as f32 / 2.0;
        let (mut top, mut top_shared, mut bottom_shared) = (0, 0, 0);
        for (i, pt) in fa.points.iter().enumerate() {
            if pt[1] < seam - 20.0 {
                top += 1;
                top_shared += usize::from(sa.contains(i));
            } else if pt[1] > seam + 20.0 {
                bottom_shared += usize::from(sa.contains(i));
            }
        }
        assert!(top_shared * 2 > top, "most of the shared half is marked: {top_shared} of {top}");
        assert_eq!(bottom_shared, 0, "nothing of the product's own half is marked");
        assert_eq!(Shared::find(&fa, &[], 8).count(), 0, "a brand's only product shares nothing");
        // a copy of `a`: `b` matches it on the shared half only, so its distinct evidence is far less
        let q = Features::extract(&rotate(&a, 4.0), &p);
        let (va, vb) = (verify(&q, &fa, Some(&sa), 8), verify(&q, &fb, Some(&sb), 8));
        assert!(vb.inliers > 30 && vb.shared * 10 >= vb.inliers * 9, "{vb:?}");
        assert!(va.distinct > 2.0 * vb.distinct && va.shared < va.inliers, "{va:?} {vb:?}");
        // marks for other features (the reference's features were extracted again) are ignored
        let stale = Shared { len: fa.len() + 1, bits: sa.bits.clone() };
        assert_eq!(verify(&q, &fa, Some(&stale), 8).shared, 0);
    }

    #[test]
    fn shared_points_survive_serialisation_and_damage_is_reported() {
        let p = Params::default();
        let (a, b) = siblings();
        let s = Shared::find(&Features::extract(&a, &p), &[&Features::extract(&b, &p)], 8);
        assert!(s.count() > 0);
        let bytes = s.to_bytes();
        assert_eq!(Shared::from_bytes(&bytes).unwrap(), s);
        assert!(matches!(Shared::from_bytes(&bytes[..bytes.len() - 1]), Err(FormatError::Damaged(_))));
        assert!(matches!(Shared::from_bytes(b"KNKORB02xxxx"), Err(FormatError::Damaged(_))));
    }
}
