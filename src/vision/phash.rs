//! Perceptual hash: 64 bits that say a photo's coarse layout of light and dark, so a photo
//! downscaled, blurred, recompressed or recoloured keeps (nearly) the same bits.
//!
//! The photo is squashed to 32×32 grey pixels, transformed with a 2-D DCT-II, and the 8×8 lowest
//! frequencies are compared with the median of all but the constant term: one bit each (bit
//! `8 × row + column` set when above). Two hashes compare by how many bits differ (Hamming
//! distance). A scan uses it where local features cannot help: a copy of a smooth photo (a fruit
//! on white, shrunk or blurred) has too few corners to verify, but its hash stays within `NEAR`
//! bits of the original's (`scan` then counts the copy as verified). The accuracy benchmark's
//! baseline ranks photos by the same hash alone.

use std::sync::OnceLock;

use crate::vision::decode::{self, RgbImage};

/// Side of the grey square the DCT runs on.
const SIDE: usize = 32;
/// Side of the square of lowest frequencies that make the hash.
const LOW: usize = 8;

/// Hashes at most this many bits apart are near-duplicates: on the accuracy benchmark, shrunk,
/// blurred, recompressed and greyscale copies were at most 6 bits from their original (4 but for
/// one shrunk copy), and no other photo within 6 bits of a catalog photo other than its own
/// (docs/benchmarks-notebook.md "Near-duplicates by perceptual hash").
pub const NEAR: u32 = 4;

/// A photo whose grey levels (at 32×32) vary by less than this standard deviation is flat (a
/// blank or single-colour image): its bits would say nothing, and two such photos would look alike.
const MIN_DEVIATION: f64 = 2.0;

/// The perceptual hash of `img`; `None` for an empty or flat image (`MIN_DEVIATION`).
pub fn of(img: &RgbImage) -> Option<u64> {
    grey(img).map(|g| hash(&g))
}

/// The hashes of `img` in its 8 orientations: as it is, then turned by 90°, 180° and 270°, each
/// followed by its mirror image (left and right swapped); `None` for an empty or flat image. A
/// copy turned or mirrored has one of them near its original's `of`.
pub fn turned(img: &RgbImage) -> Option<[u64; 8]> {
    let g = grey(img)?;
    let mut out = [0u64; 8];
    let mut cur = g;
    for k in 0..4 {
        out[2 * k] = hash(&cur);
        out[2 * k + 1] = hash(&transform(&cur, |x, y| (SIDE - 1 - x, y)));
        // turned by 90° clockwise: the new (x, y) shows the old (y, SIDE - 1 - x)
        cur = transform(&cur, |x, y| (y, SIDE - 1 - x));
    }
    Some(out)
}

/// `img` squashed to SIDE×SIDE grey levels, row by row; `None` for an empty or flat image.
fn grey(img: &RgbImage) -> Option<Vec<f64>> {
    if img.width == 0 || img.height == 0 {
        return None;
    }
    let small = decode::resize(img, SIDE as u32, SIDE as u32).ok()?;
    let grey: Vec<f64> = small
        .data
        .chunks_exact(3)
        .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
        .collect();
    let mean = grey.iter().sum::<f64>() / grey.len() as f64;
    let deviation =
        (grey.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / grey.len() as f64).sqrt();
    (deviation >= MIN_DEVIATION).then_some(grey)
}

/// The grid whose cell (x, y) holds `g`'s cell `from(x, y)`.
fn transform(g: &[f64], from: impl Fn(usize, usize) -> (usize, usize)) -> Vec<f64> {
    (0..SIDE * SIDE)
        .map(|i| {
            let (x, y) = from(i % SIDE, i / SIDE);
            g[y * SIDE + x]
        })
        .collect()
}

/// The hash of a SIDE×SIDE grid of grey levels.
fn hash(grey: &[f64]) -> u64 {
    let c = cosines();
    // rows first (LOW frequencies of each of SIDE rows), then columns
    let mut rows = [[0f64; LOW]; SIDE];
    for (y, row) in rows.iter_mut().enumerate() {
        for (u, out) in row.iter_mut().enumerate() {
            *out = (0..SIDE).map(|x| c[u][x] * grey[y * SIDE + x]).sum();
        }
    }
    let mut coeffs = [0f64; LOW * LOW];
    for v in 0..LOW {
        for u in 0..LOW {
            coeffs[v * LOW + u] = (0..SIDE).map(|y| c[v][y] * rows[y][u]).sum();
        }
    }
    let mut ac: Vec<f64> = coeffs[1..].to_vec();
    ac.sort_by(f64::total_cmp);
    let median = (ac[ac.len() / 2 - 1] + ac[ac.len() / 2]) / 2.0;
    coeffs.iter().enumerate().fold(0u64, |h, (i, &v)| if v > median { h | 1 << i } else { h })
}

/// Bits in which two hashes differ.
pub fn distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// DCT-II basis: `cosines()[u][x]` = cos(π (2x + 1) u / 2 SIDE), for the LOW lowest frequencies.
fn cosines() -> &'static [[f64; SIDE]; LOW] {
    static C: OnceLock<[[f64; SIDE]; LOW]> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = [[0f64; SIDE]; LOW];
        for (u, row) in c.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * SIDE) as f64)
                    .cos();
            }
        }
        c
    })
}

/// Hashes searchable by Hamming distance (multi-index hashing): each hash is filed under each of
/// its `PIECES` pieces, and two hashes at most `NEAR` bits apart share at least one piece whole,
/// so a look-up compares only the hashes that share a piece with the one sought. Each piece keeps
/// its own copy of the hashes, grouped by the piece's value, so a look-up reads them in a row
/// instead of jumping about a large array (at a million hashes that was most of the cost).
#[derive(Debug, Default)]
pub struct Index {
    /// Number of hashes.
    len: usize,
    /// For each piece: the hashes grouped by the piece's value (counting sort, in the order given
    /// within a group).
    hashes: [Vec<u64>; PIECES],
    /// For each piece: the key of each hash in `hashes`.
    keys: [Vec<u32>; PIECES],
    /// For each piece: where each value's group starts in `hashes`, and one past the last.
    starts: [Vec<u32>; PIECES],
}

/// Pieces a hash is cut into for `Index`: one more than `NEAR`, so that `NEAR` differing bits
/// leave one piece whole.
const PIECES: usize = NEAR as usize + 1;
const _: () = assert!(
    13 * PIECES >= 64 && 13 * (PIECES - 1) < 64,
    "pieces of 13 bits must cover the 64 bits"
);

/// Values a piece can take.
const PIECE_VALUES: usize = 1 << 13;

/// Piece `k` of a hash (bits `13 k` up to `13 k + 13`; the last has 12).
fn piece(h: u64, k: usize) -> usize {
    ((h >> (13 * k)) & 0x1FFF) as usize
}

impl Index {
    /// An index of `(key, hash)` pairs.
    pub fn new(pairs: Vec<(u32, u64)>) -> Index {
        let mut hashes: [Vec<u64>; PIECES] = Default::default();
        let mut keys: [Vec<u32>; PIECES] = Default::default();
        let mut starts: [Vec<u32>; PIECES] = Default::default();
        for k in 0..PIECES {
            let mut start = vec![0u32; PIECE_VALUES + 1];
            for (_, h) in &pairs {
                start[piece(*h, k) + 1] += 1;
            }
            for v in 0..PIECE_VALUES {
                start[v + 1] += start[v];
            }
            let mut next = start.clone();
            let (mut hs, mut ks) = (vec![0u64; pairs.len()], vec![0u32; pairs.len()]);
            for (key, h) in &pairs {
                let slot = &mut next[piece(*h, k)];
                hs[*slot as usize] = *h;
                ks[*slot as usize] = *key;
                *slot += 1;
            }
            (hashes[k], keys[k], starts[k]) = (hs, ks, start);
        }
        Index { len: pairs.len(), hashes, keys, starts }
    }

    /// Number of hashes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The keys of the hashes at most `NEAR` bits from `h`, with their distance, nearest first.
    pub fn near(&self, h: u64) -> Vec<(u32, u32)> {
        let mut found: Vec<(u32, u32)> = Vec::new();
        self.each_near(h, NEAR, |key, d| {
            found.push((key, d));
            true
        });
        // a hash sharing several pieces with `h` was met once per piece: keep each key once (by
        // sorting, not by searching what was found, which costs quadratically for a hash with
        // hundreds of near copies)
        found.sort_unstable();
        found.dedup_by_key(|f| f.0);
        found.sort_unstable_by_key(|&(key, d)| (d, key));
        found
    }

    /// Calls `visit(key, distance)` for the hashes at most `bits` (capped at `NEAR`) from `h`, a
    /// key once for each piece it shares whole with `h` (up to `PIECES` times), until `visit`
    /// returns false. For callers that skip repeats cheaply themselves (a union–find).
    pub fn each_near(&self, h: u64, bits: u32, mut visit: impl FnMut(u32, u32) -> bool) {
        let bits = bits.min(NEAR);
        for k in 0..PIECES {
            let starts = &self.starts[k];
            let (a, b) = match (starts.get(piece(h, k)), starts.get(piece(h, k) + 1)) {
                (Some(&a), Some(&b)) => (a as usize, b as usize),
                _ => continue,
            };
            for (i, other) in self.hashes[k][a..b].iter().enumerate() {
                let d = distance(h, *other);
                if d <= bits && !visit(self.keys[k][a + i], d) {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic picture with structure at several scales.
    fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = ((x * (3 + seed) / 7 + y * (5 + seed) / 11) % 256) as u8
                    ^ (((x / 40 + y / 30 + seed) % 2) as u8 * 120);
                data.extend_from_slice(&[v, v / 2, 255 - v]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn the_index_finds_every_hash_within_near_bits_and_no_other() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let base: Vec<u64> = (0..500).map(|_| rnd()).collect();
        let index = Index::new(base.iter().enumerate().map(|(i, h)| (i as u32, *h)).collect());
        assert_eq!(index.len(), 500);
        for (i, h) in base.iter().enumerate().take(50) {
            // flip 0 to 6 bits spread over the hash, pieces included
            let flips = i % 7;
            let mut q = *h;
            for b in 0..flips {
                q ^= 1 << ((b * 11 + i) % 64);
            }
            let want: Vec<(u32, u32)> = {
                let mut w: Vec<(u32, u32)> = base
                    .iter()
                    .enumerate()
                    .map(|(j, o)| (j as u32, distance(q, *o)))
                    .filter(|&(_, d)| d <= NEAR)
                    .collect();
                w.sort_by_key(|&(j, d)| (d, j));
                w
            };
            assert_eq!(index.near(q), want, "hash {i} with {flips} bits flipped");
            assert_eq!(index.near(q).iter().any(|&(j, _)| j == i as u32), flips as u32 <= NEAR);
        }
        assert!(Index::new(Vec::new()).near(base[0]).is_empty());
    }

    #[test]
    fn each_near_keeps_within_its_bits_and_stops_when_told() {
        let h = 0x0123_4567_89AB_CDEFu64;
        // copies 0, 1, 2, 3 and 5 bits away, and a copy that shares every piece (0 bits, twice)
        let pairs = vec![
            (0, h),
            (1, h ^ 1),
            (2, h ^ 0b11 << 20),
            (3, h ^ 0b111 << 40),
            (4, h ^ 0b11111),
            (5, h),
        ];
        let index = Index::new(pairs);
        let mut seen: Vec<(u32, u32)> = Vec::new();
        index.each_near(h, 2, |k, d| {
            seen.push((k, d));
            true
        });
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen,
            vec![(0, 0), (1, 1), (2, 2), (5, 0)],
            "within 2 bits, each key met once per shared piece"
        );
        let mut calls = 0;
        index.each_near(h, NEAR, |_, _| {
            calls += 1;
            calls < 3
        });
        assert_eq!(calls, 3, "stops at the first false");
        Index::default().each_near(h, NEAR, |_, _| panic!("an empty index has nothing near"));
    }

    #[test]
    fn a_shrunk_or_darkened_copy_stays_near_and_another_picture_does_not() {
        let a = picture(640, 480, 1);
        let h = of(&a).unwrap();
        let near = |img: &RgbImage| distance(h, of(img).unwrap());
        let shrunk = decode::resize(&a, 160, 120).unwrap();
        assert!(near(&shrunk) <= NEAR, "{}", near(&shrunk));
        let darker = RgbImage {
            data: a.data.iter().map(|&v| (u32::from(v) * 3 / 4) as u8).collect(),
            ..a.clone()
        };
        assert!(near(&darker) <= NEAR, "{}", near(&darker));
        let other = picture(640, 480, 4);
        assert!(near(&other) > 3 * NEAR, "{}", near(&other));
    }

    /// `img` turned by 90° clockwise.
    fn turn(img: &RgbImage) -> RgbImage {
        let (w, h) = (img.width as usize, img.height as usize);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..w {
            for x in 0..h {
                let i = ((h - 1 - x) * w + y) * 3;
                data.extend_from_slice(&img.data[i..i + 3]);
            }
        }
        RgbImage { width: h as u32, height: w as u32, data }
    }

    #[test]
    fn a_turned_or_mirrored_copy_is_near_one_of_the_orientations() {
        let a = picture(400, 400, 2);
        let h = of(&a).unwrap();
        let all = turned(&a).unwrap();
        assert_eq!(all[0], h, "the first orientation is the photo as it is");
        let mirrored = RgbImage {
            data: a
                .data
                .chunks_exact(400 * 3)
                .flat_map(|row| row.chunks_exact(3).rev().flatten().copied().collect::<Vec<u8>>())
                .collect(),
            ..a.clone()
        };
        for copy in [turn(&a), turn(&turn(&a)), turn(&turn(&turn(&a))), mirrored] {
            let c = of(&copy).unwrap();
            assert!(distance(c, h) > NEAR, "the copy as it is differs");
            assert!(
                turned(&copy).unwrap().iter().any(|&t| distance(t, h) <= NEAR),
                "one orientation of the copy is near the original"
            );
        }
    }

    #[test]
    fn an_empty_or_flat_photo_has_no_hash() {
        assert_eq!(of(&RgbImage { width: 0, height: 0, data: Vec::new() }), None);
        assert_eq!(turned(&RgbImage { width: 0, height: 0, data: Vec::new() }), None);
        let flat = RgbImage { width: 300, height: 200, data: [250u8, 250, 248].repeat(300 * 200) };
        assert_eq!(of(&flat), None, "a blank photo says nothing");
        let mut faint = flat.clone();
        faint.data[0] = 0; // one dark pixel is still flat at 32x32
        assert_eq!(of(&faint), None);
    }
}
