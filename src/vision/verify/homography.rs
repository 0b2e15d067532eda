//! Plane-to-plane mappings (homographies): fitting by normalised DLT and RANSAC over matched
//! points, and the checks that reject implausible ones.

use super::{INLIER_PIXELS, MAX_ITERATIONS};

pub(super) type Mat3 = [[f64; 3]; 3];

/// Isotropic normalisation (Hartley): centroid at 0, mean distance √2. Returns the matrix.
pub(super) fn normaliser(p: &[[f64; 2]]) -> Mat3 {
    let n = p.len() as f64;
    let (cx, cy) =
        (p.iter().map(|v| v[0]).sum::<f64>() / n, p.iter().map(|v| v[1]).sum::<f64>() / n);
    let mean =
        p.iter().map(|v| ((v[0] - cx).powi(2) + (v[1] - cy).powi(2)).sqrt()).sum::<f64>() / n;
    let s = if mean > 1e-9 { std::f64::consts::SQRT_2 / mean } else { 1.0 };
    [[s, 0.0, -s * cx], [0.0, s, -s * cy], [0.0, 0.0, 1.0]]
}

pub(super) fn apply(h: &Mat3, p: [f64; 2]) -> Option<[f64; 2]> {
    let w = h[2][0] * p[0] + h[2][1] * p[1] + h[2][2];
    if w.abs() < 1e-12 {
        return None;
    }
    Some([
        (h[0][0] * p[0] + h[0][1] * p[1] + h[0][2]) / w,
        (h[1][0] * p[0] + h[1][1] * p[1] + h[1][2]) / w,
    ])
}

/// The inverse of a homography; `None` when it is singular.
pub(super) fn invert(h: &Mat3) -> Option<Mat3> {
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| h[r0][c0] * h[r1][c1] - h[r0][c1] * h[r1][c0];
    let adj = [
        [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
        [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
        [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
    ];
    let det = h[0][0] * adj[0][0] + h[0][1] * adj[1][0] + h[0][2] * adj[2][0];
    (det.is_finite() && det.abs() > 1e-12).then(|| adj.map(|row| row.map(|v| v / det)))
}

pub(super) fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

pub(super) fn invert_similarity(t: &Mat3) -> Mat3 {
    let s = t[0][0];
    [[1.0 / s, 0.0, -t[0][2] / s], [0.0, 1.0 / s, -t[1][2] / s], [0.0, 0.0, 1.0]]
}

/// Solves the 8x8 system `a h = b` by Gaussian elimination with partial pivoting.
pub(super) fn solve8(mut a: [[f64; 8]; 8], mut b: [f64; 8]) -> Option<[f64; 8]> {
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
                let pivot = a[c];
                for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
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
pub(super) fn rows(s: [f64; 2], d: [f64; 2]) -> [([f64; 8], f64); 2] {
    let (x, y, u, v) = (s[0], s[1], d[0], d[1]);
    [
        ([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y], u),
        ([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y], v),
    ]
}

/// The homography through exactly four correspondences: the eight equations solved directly
/// (a third of the work of `fit`'s normal equations, which RANSAC would pay for every sample).
pub(super) fn fit4(src: &[[f64; 2]; 4], dst: &[[f64; 2]; 4]) -> Option<Mat3> {
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
pub(super) fn fit(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Mat3> {
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
pub(super) fn cross(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// Whether four pairs can come from a plausible homography: no three points (nearly) on one line,
/// in normalised coordinates, and every triangle of them turning the same way in both photos (a
/// homography that keeps orientation and the points in front of the camera keeps those signs).
/// Most samples of a photo pair that does not match fail this before anything is fitted.
pub(super) fn consistent(s4: &[[f64; 2]; 4], d4: &[[f64; 2]; 4]) -> bool {
    [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)].iter().all(|&(a, b, c)| {
        let (cs, cd) = (cross(s4[a], s4[b], s4[c]), cross(d4[a], d4[b], d4[c]));
        cs.abs() >= 1e-3 && cd.abs() >= 1e-3 && (cs > 0.0) == (cd > 0.0)
    })
}

/// A homography that a real photo could produce from the query photo (`size`, pixels): it keeps
/// orientation (no mirror, which descriptors would not match anyway), the query's corners stay in
/// front of the camera, and the scale change is within 1/10..10.
pub(super) fn plausible(h: &Mat3, size: (f64, f64)) -> bool {
    let det = h[0][0] * h[1][1] - h[0][1] * h[1][0];
    let h33 = h[2][2];
    if !(det.is_finite() && h33.abs() > 1e-12) {
        return false;
    }
    let scale = det / (h33 * h33);
    if !(0.01..=100.0).contains(&scale) {
        return false;
    }
    [(0.0, 0.0), (size.0, 0.0), (0.0, size.1), (size.0, size.1)]
        .iter()
        .all(|&(x, y)| (h[2][0] * x + h[2][1] * y + h33) / h33 > 0.1)
}

/// RANSAC over minimal samples of four pairs, then a least-squares refit on the inliers: the best
/// plausible homography (pixels to pixels) and its inlier count.
pub(super) fn ransac_homography(
    src: &[[f64; 2]],
    dst: &[[f64; 2]],
    size: (f64, f64),
) -> Option<(Mat3, Vec<usize>)> {
    let p = Pairs::new(src, dst, size)?;
    let n = src.len();
    let mut rng =
        XorShift(0x2545_F491_4F6C_DD1Du64 ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut best: Option<(Mat3, usize)> = None;
    let mut iterations = MAX_ITERATIONS;
    let mut it = 0;
    while it < iterations {
        it += 1;
        let Some(h) = p.hypothesis(&mut rng) else { continue };
        let c = p.count(&h);
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
    Some(p.refit(h, c))
}

/// The xorshift generator RANSAC draws its samples with (seeded from the number of pairs, so a
/// verification is reproducible).
struct XorShift(u64);

impl XorShift {
    /// A number below `m`.
    fn next(&mut self, m: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % m as u64) as usize
    }
}

/// The pairs RANSAC explains: in pixels (`src` → `dst`) and normalised (`ns` → `nd`, with the
/// normalisers `ts` and the inverse of `td`), and the size of the source photo.
struct Pairs<'a> {
    src: &'a [[f64; 2]],
    dst: &'a [[f64; 2]],
    ns: Vec<[f64; 2]>,
    nd: Vec<[f64; 2]>,
    ts: Mat3,
    td_inv: Mat3,
    size: (f64, f64),
}

impl<'a> Pairs<'a> {
    /// `None` when a point cannot be normalised.
    fn new(src: &'a [[f64; 2]], dst: &'a [[f64; 2]], size: (f64, f64)) -> Option<Pairs<'a>> {
        let n = src.len();
        let (ts, td) = (normaliser(src), normaliser(dst));
        let ns: Vec<[f64; 2]> = src.iter().filter_map(|&p| apply(&ts, p)).collect();
        let nd: Vec<[f64; 2]> = dst.iter().filter_map(|&p| apply(&td, p)).collect();
        if ns.len() != n || nd.len() != n {
            return None;
        }
        let td_inv = invert_similarity(&td);
        Some(Pairs { src, dst, ns, nd, ts, td_inv, size })
    }

    /// A homography fitted in normalised coordinates, in pixels.
    fn to_pixels(&self, hn: &Mat3) -> Mat3 {
        mul(&self.td_inv, &mul(hn, &self.ts))
    }

    /// Whether `h` takes pair `i`'s source point within `INLIER_PIXELS` of its destination.
    fn explains(&self, h: &Mat3, i: usize) -> bool {
        let thr2 = INLIER_PIXELS * INLIER_PIXELS;
        let (src, dst) = (self.src, self.dst);
        apply(h, src[i])
            .is_some_and(|p| (p[0] - dst[i][0]).powi(2) + (p[1] - dst[i][1]).powi(2) < thr2)
    }

    fn count(&self, h: &Mat3) -> usize {
        (0..self.src.len()).filter(|&i| self.explains(h, i)).count()
    }

    fn inliers(&self, h: &Mat3) -> Vec<usize> {
        (0..self.src.len()).filter(|&i| self.explains(h, i)).collect()
    }

    /// One RANSAC sample: four distinct pairs drawn from `rng`, their homography in pixels when
    /// the sample is consistent, solvable and the result plausible.
    fn hypothesis(&self, rng: &mut XorShift) -> Option<Mat3> {
        let n = self.src.len();
        let mut idx = [0usize; 4];
        for slot in idx.iter_mut() {
            *slot = rng.next(n);
        }
        if idx[0] == idx[1]
            || idx[0] == idx[2]
            || idx[0] == idx[3]
            || idx[1] == idx[2]
            || idx[1] == idx[3]
            || idx[2] == idx[3]
        {
            return None;
        }
        let s4 = idx.map(|i| self.ns[i]);
        let d4 = idx.map(|i| self.nd[i]);
        if !consistent(&s4, &d4) {
            return None;
        }
        let hn = fit4(&s4, &d4)?;
        let h = self.to_pixels(&hn);
        plausible(&h, self.size).then_some(h)
    }

    /// Refits `h` (explaining `c` pairs) on its inliers; keeps the refit only if it explains at
    /// least as many pairs.
    fn refit(&self, h: Mat3, c: usize) -> (Mat3, Vec<usize>) {
        let inl = self.inliers(&h);
        let s: Vec<[f64; 2]> = inl.iter().map(|&i| self.ns[i]).collect();
        let d: Vec<[f64; 2]> = inl.iter().map(|&i| self.nd[i]).collect();
        if let Some(hn) = fit(&s, &d) {
            let h2 = self.to_pixels(&hn);
            if plausible(&h2, self.size) {
                let inl2 = self.inliers(&h2);
                if inl2.len() >= c {
                    return (h2, inl2);
                }
            }
        }
        (h, inl)
    }
}
