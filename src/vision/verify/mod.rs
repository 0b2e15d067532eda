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
//!
//! Files: `orb` extracts and serialises features, `matching` pairs descriptors, `homography` fits
//! the mapping (RANSAC); this file holds the verification itself, the pose of a reference photo in
//! a listing photo (`Pose`) and the shared points (`Shared`).

mod homography;
mod matching;
pub mod orb;

use homography::{apply, invert, ransac_homography, Mat3};
use matching::match_descriptors;
use orb::{Features, FormatError};

use crate::vision::decode::RgbImage;

/// The outcome of verifying one photo pair.
#[derive(Debug, Clone, Default, PartialEq)]
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
    /// Up to `MAX_POINTS` of the inlier pairs, spread over the query photo (`spread`), for a
    /// reviewer to see which points agree; empty without inliers.
    pub points: Vec<PointPair>,
}

/// One verified correspondence: a point of the query photo and the reference photo's point it
/// matched, each as shares (0 to 1) of its photo's width and height (a pixel's centre, so the
/// share of a mirrored point is exactly 1 less the share of the point).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PointPair {
    /// x of the point in the query photo.
    pub query_x: f32,
    /// y of the point in the query photo.
    pub query_y: f32,
    /// x of the point in the reference photo.
    pub reference_x: f32,
    /// y of the point in the reference photo.
    pub reference_y: f32,
}

/// Most inlier pairs `Verified::points` keeps: enough to show where two photos agree, few enough
/// that a verdict stays small (48 pairs are under 3 KB of JSON).
pub const MAX_POINTS: usize = 48;

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
    fn to_photo(self, area: [f32; 4], mirrored: bool, x: f64, y: f64) -> Option<[f64; 2]> {
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
        let c = [
            self.to_photo(area, mirrored, 0.0, 0.0)?,
            self.to_photo(area, mirrored, rw, 0.0)?,
            self.to_photo(area, mirrored, rw, rh)?,
            self.to_photo(area, mirrored, 0.0, rh)?,
        ];
        let twice: f64 =
            (0..4).map(|i| c[i][0] * c[(i + 1) % 4][1] - c[(i + 1) % 4][0] * c[i][1]).sum();
        Some(twice.abs() / 2.0)
    }

    /// The reference photo's frame as the query photo shows it, warped back to the reference's
    /// shape (short side `short_side` pixels): what a copy pasted, turned or tilted in the listing
    /// photo looks like when cut out and straightened. `photo` is the decoded query photo, of which
    /// the features saw `area` (`mirrored` when they saw it mirrored); parts of the frame outside
    /// the photo are black. `None` when the frame is implausible: a corner behind the camera, or
    /// the frame covers less than `MIN_FRAME_SHARE` of the photo.
    pub fn rectify(
        &self,
        photo: &RgbImage,
        area: [f32; 4],
        mirrored: bool,
        short_side: u32,
    ) -> Option<RgbImage> {
        let (rw, rh) = self.reference;
        let (pw, ph) = (photo.width as f64, photo.height as f64);
        if pw < 1.0
            || ph < 1.0
            || rw < 1.0
            || rh < 1.0
            || self.share(area, mirrored)?.partial_cmp(&MIN_FRAME_SHARE).is_none_or(|o| o.is_lt())
        {
            return None;
        }
        let to_photo =
            |x: f64, y: f64| self.to_photo(area, mirrored, x, y).map(|[sx, sy]| [sx * pw, sy * ph]);
        let scale = f64::from(short_side.max(1)) / rw.min(rh);
        let (ow, oh) = (
            ((rw * scale).round() as u32).clamp(1, 4 * short_side.max(1)),
            ((rh * scale).round() as u32).clamp(1, 4 * short_side.max(1)),
        );
        Some(crate::vision::decode::warp(photo, ow, oh, [0, 0, 0], |u, v| {
            to_photo(u / f64::from(ow) * rw, v / f64::from(oh) * rh)
        }))
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
    let inside = |p: [f32; 2]| {
        p[0] >= CENTRE_MARGIN * w
            && p[0] <= (1.0 - CENTRE_MARGIN) * w
            && p[1] >= CENTRE_MARGIN * h
            && p[1] <= (1.0 - CENTRE_MARGIN) * h
    };
    let shared = shared.filter(|s| s.len == r.len());
    let pose = to_reference.and_then(|h| Pose::new(&h, (q.width, q.height), (r.width, r.height)));
    let mut v = Verified { matches, inliers: inl.len(), pose, ..Verified::default() };
    for &(_, j) in &inl {
        let central = inside(r.points[j]);
        let common = shared.is_some_and(|s| s.contains(j));
        v.central += usize::from(central);
        v.shared += usize::from(common);
        v.distinct +=
            if central { 1.0 } else { PERIPHERY_WEIGHT } * if common { SHARED_WEIGHT } else { 1.0 };
    }
    let (qw, qh) = (f32::from(q.width.max(1)), f32::from(q.height.max(1)));
    v.spot = inl.iter().map(|&(i, _)| q.points[i]).fold(None, |b: Option<[f32; 4]>, [x, y]| {
        let (x, y) = ((x / qw).clamp(0.0, 1.0), (y / qh).clamp(0.0, 1.0));
        Some(b.map_or([x, y, x, y], |b| [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)]))
    });
    let share = |p: [f32; 2], f: &Features| {
        let (w, h) = (f32::from(f.width.max(1)), f32::from(f.height.max(1)));
        [((p[0] + 0.5) / w).clamp(0.0, 1.0), ((p[1] + 0.5) / h).clamp(0.0, 1.0)]
    };
    let all: Vec<PointPair> = inl
        .iter()
        .map(|&(i, j)| {
            let ([query_x, query_y], [reference_x, reference_y]) =
                (share(q.points[i], q), share(r.points[j], r));
            PointPair { query_x, query_y, reference_x, reference_y }
        })
        .collect();
    v.points = spread(all, MAX_POINTS);
    v
}

/// At most `n` of the pairs, spread over the query photo: the first pair, then again and again
/// the pair farthest from those taken (the earlier on a tie), so a few dense patches do not hide
/// how far the agreement reaches. Returned in their original order.
fn spread(all: Vec<PointPair>, n: usize) -> Vec<PointPair> {
    if all.len() <= n {
        return all;
    }
    let d2 = |a: &PointPair, b: &PointPair| {
        (a.query_x - b.query_x).powi(2) + (a.query_y - b.query_y).powi(2)
    };
    // each pair's squared distance to the nearest pair taken; minus infinity once taken
    let mut nearest: Vec<f32> = all.iter().map(|p| d2(p, &all[0])).collect();
    nearest[0] = f32::NEG_INFINITY;
    let mut taken = vec![0usize];
    while taken.len() < n.min(all.len()) {
        let mut far = 0;
        for (k, &d) in nearest.iter().enumerate() {
            if d > nearest[far] {
                far = k;
            }
        }
        taken.push(far);
        nearest[far] = f32::NEG_INFINITY;
        for (k, d) in nearest.iter_mut().enumerate() {
            *d = d.min(d2(&all[k], &all[far]));
        }
    }
    taken.sort_unstable();
    taken.into_iter().map(|k| all[k]).collect()
}

/// The descriptor pairs that passed the ratio test, those of them (query index, reference
/// index) that one homography explains, and that homography; none when fewer than `min_inliers`
/// pairs passed.
fn inlier_pairs(
    q: &Features,
    r: &Features,
    min_inliers: usize,
) -> (usize, Vec<(usize, usize)>, Option<Mat3>) {
    let pairs = match_descriptors(q, r);
    if pairs.len() < min_inliers.max(6) {
        return (pairs.len(), Vec::new(), None);
    }
    let src: Vec<[f64; 2]> =
        pairs.iter().map(|&(i, _)| [q.points[i][0] as f64, q.points[i][1] as f64]).collect();
    let dst: Vec<[f64; 2]> =
        pairs.iter().map(|&(_, j)| [r.points[j][0] as f64, r.points[j][1] as f64]).collect();
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
        let found: Vec<Vec<(usize, usize)>> =
            others.par_iter().map(|o| inlier_pairs(r, o, min_inliers).1).collect();
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
    #[cfg(test)]
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
            return Err(FormatError::Damaged(format!(
                "shared-points record of {} bytes for {len} points",
                b.len()
            )));
        }
        let bits = b[12..]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(Shared { len, bits })
    }
}

#[cfg(test)]
mod tests {
    use super::homography::*;
    use super::matching::*;
    use super::orb::*;
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
                    let inside = x >= MARGIN
                        && y >= MARGIN
                        && x < g.width as i32 - MARGIN
                        && y < g.height as i32 - MARGIN;
                    let want = if inside { fast9(&g, x, y).unwrap_or(0) } else { 0 };
                    assert_eq!(
                        fast[y as usize * g.width + x as usize],
                        want,
                        "{w}x{h} at ({x}, {y})"
                    );
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
        assert!(
            !consistent(&src, &mirrored),
            "a mirrored sample turns every triangle the other way"
        );
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
            wide.data[(y * 600 + 300) * 3..(y * 600 + 600) * 3]
                .copy_from_slice(&a.data[y * 300 * 3..(y + 1) * 300 * 3]);
        }
        let v = verify(&Features::extract(&wide, &p), &Features::extract(&a, &p), None, 8);
        assert!(v.inliers >= 30, "{v:?}");
        let s = v.spot.expect("inliers have a spot");
        assert!(s[0] >= 0.48 && s[2] <= 1.0 && s[2] > 0.9, "in the right half: {s:?}");
        assert!(s[1] < 0.1 && s[3] > 0.9, "from top to bottom: {s:?}");
        let none = verify(
            &Features::extract(&picture(300, 300, 2), &p),
            &Features::extract(&a, &p),
            None,
            8,
        );
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
        assert!(twice
            .points
            .iter()
            .zip(&flipped.points)
            .all(|(a, b)| (a[0] - b[0]).abs() < 1e-3 && a[1] == b[1]));
        let exact = Features::extract(&mirror(&a), &p).mirrored();
        let same = fa.descriptors.iter().filter(|d| exact.descriptors.contains(d)).count();
        assert!(
            same * 10 >= fa.len() * 8,
            "{same} of {} descriptors survive mirroring exactly",
            fa.len()
        );
    }

    /// Mean absolute difference of two images' bytes, the second resized to the first's size.
    fn difference(a: &RgbImage, b: &RgbImage) -> f64 {
        let b = crate::vision::decode::resize(b, a.width, a.height).expect("resize");
        a.data.iter().zip(&b.data).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>()
            / a.data.len() as f64
    }

    #[test]
    fn a_homography_inverts() {
        let h: Mat3 = [[0.9, -0.2, 14.0], [0.15, 1.1, -5.0], [0.0005, -0.0003, 1.0]];
        let inv = invert(&h).expect("regular");
        for p in [[0.0, 0.0], [120.0, 45.0], [300.0, 200.0]] {
            let back = apply(&inv, apply(&h, p).expect("in front")).expect("in front");
            assert!(
                (back[0] - p[0]).abs() < 1e-9 && (back[1] - p[1]).abs() < 1e-9,
                "{p:?} -> {back:?}"
            );
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
        let cut =
            pose.rectify(&photo, crate::vision::regions::WHOLE, false, 150).expect("plausible");
        assert_eq!((cut.width, cut.height), (150, 150), "the reference photo's shape");
        let (same, unlike) = (difference(&cut, &a), difference(&cut, &other));
        assert!(
            same < 25.0 && unlike > 2.0 * same,
            "straightened copy differs by {same:.1} from the picture, {unlike:.1} from another"
        );
        // the photo mirrored, with its left half verified as an inset would be, through mirrored
        // features as a scan's mirror pass does: the same cut, the right way round
        let flipped = mirror(&photo);
        let mut half =
            RgbImage { width: 450, height: 600, data: Vec::with_capacity(450 * 600 * 3) };
        for row in flipped.data.chunks_exact(900 * 3) {
            half.data.extend_from_slice(&row[..450 * 3]);
        }
        let v = verify(&Features::extract(&half, &p).mirrored(), &fa, None, 8);
        let recut = v
            .pose
            .expect("a homography")
            .rectify(&flipped, [0.0, 0.0, 0.5, 1.0], true, 150)
            .expect("plausible");
        let again = difference(&recut, &a);
        assert!(again < 25.0, "from the mirrored photo's half: {again:.1}");
        // a homography means the same scaled by -1: the same cut
        let to_reference = invert(&pose.to_query).expect("regular").map(|row| row.map(|v| -v));
        let negated = Pose::new(
            &to_reference,
            (pose.query.0 as u16, pose.query.1 as u16),
            (pose.reference.0 as u16, pose.reference.1 as u16),
        )
        .expect("regular");
        let recut = negated
            .rectify(&photo, crate::vision::regions::WHOLE, false, 150)
            .expect("in front of the camera");
        assert!(difference(&recut, &cut) < 0.5, "{}", difference(&recut, &cut));
        // a frame that covers almost nothing of the photo is not cut out
        let tiny = Pose {
            to_query: [[0.01, 0.0, 5.0], [0.0, 0.01, 5.0], [0.0, 0.0, 1.0]],
            query: (900.0, 600.0),
            reference: (300.0, 300.0),
        };
        assert!(tiny.rectify(&photo, crate::vision::regions::WHOLE, false, 150).is_none());
    }

    /// The picture turned by `deg` degrees about its centre (as `rotate` turns it), pasted with
    /// its corner at `at` into a plain 900 x 600 photo.
    fn pasted(a: &RgbImage, deg: f64, at: (usize, usize)) -> RgbImage {
        let (w, turned) = (a.width as usize, rotate(a, deg));
        let mut photo = RgbImage { width: 900, height: 600, data: vec![90u8; 900 * 600 * 3] };
        for y in 0..a.height as usize {
            let to = ((y + at.1) * 900 + at.0) * 3;
            photo.data[to..to + w * 3].copy_from_slice(&turned.data[y * w * 3..(y + 1) * w * 3]);
        }
        photo
    }

    #[test]
    fn the_points_kept_lie_where_the_known_geometry_puts_them() {
        let p = Params::default();
        let a = picture(300, 300, 1);
        let (deg, at) = (8.0f64, (520usize, 80usize));
        let fa = Features::extract(&a, &p);
        let v = verify(&Features::extract(&pasted(&a, deg, at), &p), &fa, None, 8);
        assert!(v.inliers > MAX_POINTS, "{v:?}");
        assert_eq!(v.points.len(), MAX_POINTS, "capped");
        let (s, c) = deg.to_radians().sin_cos();
        for pt in &v.points {
            // `rotate` reads the copy's pixel at d from the picture's pixel at R·d (about the
            // centre, R = [c s; -s c]): a picture's pixel at e lies at Rᵀ·e in the copy
            let ex = f64::from(pt.reference_x) * 300.0 - 150.0;
            let ey = f64::from(pt.reference_y) * 300.0 - 150.0;
            let x = (c * ex - s * ey + 150.0 + at.0 as f64) / 900.0;
            let y = (s * ex + c * ey + 150.0 + at.1 as f64) / 600.0;
            let (dx, dy) = (x - f64::from(pt.query_x), y - f64::from(pt.query_y));
            assert!(dx.abs() < 0.01 && dy.abs() < 0.01, "{pt:?} should be at ({x:.3}, {y:.3})");
        }
        // spread: the points kept reach over most of the box around all the inliers
        let spot = v.spot.expect("a spot");
        let xs = v.points.iter().map(|p| p.query_x);
        let (lo, hi) = (xs.clone().fold(1.0f32, f32::min), xs.fold(0.0f32, f32::max));
        assert!(hi - lo > 0.9 * (spot[2] - spot[0]), "{lo}..{hi} of {spot:?}");
        // one pair kept per inlier below the cap, none without inliers
        let unrelated = verify(&Features::extract(&picture(300, 300, 9), &p), &fa, None, 8);
        let kept = unrelated.points.len();
        assert!(unrelated.inliers < 10 && kept == unrelated.inliers, "{unrelated:?}");
        let flat = RgbImage { width: 300, height: 300, data: vec![90; 300 * 300 * 3] };
        assert!(verify(&Features::extract(&flat, &p), &fa, None, 8).points.is_empty());
    }

    #[test]
    fn spread_takes_far_points_before_a_dense_patch() {
        let at = |x: f32, y: f32| PointPair { query_x: x, query_y: y, ..PointPair::default() };
        let mut all: Vec<PointPair> = (0..90).map(|k| at(0.5 + k as f32 * 1e-4, 0.5)).collect();
        let corners = [at(0.0, 0.0), at(1.0, 0.0), at(0.0, 1.0), at(1.0, 1.0)];
        all.extend(corners);
        let kept = spread(all.clone(), 5);
        assert_eq!(kept.len(), 5);
        assert!(corners.iter().all(|c| kept.contains(c)), "{kept:?}");
        assert_eq!(kept[0], all[0], "in their original order, the first pair first");
        let same = vec![at(0.2, 0.2); 60];
        assert_eq!(spread(same, 48).len(), 48, "identical points are taken once each");
        assert_eq!(spread(all[..3].to_vec(), 48), all[..3].to_vec());
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
        assert!(
            edge.evidence() * 1.25 < whole.evidence(),
            "the border alone is far weaker evidence"
        );
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
        let bits = |a: &[u64; 4], b: &[u64; 4]| -> u32 {
            a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
        };
        let mut kept: std::collections::BTreeMap<usize, (u32, usize)> = Default::default();
        for (qi, qd) in q.descriptors.iter().enumerate() {
            let mut all: Vec<(u32, usize)> =
                r.descriptors.iter().enumerate().map(|(j, rd)| (bits(qd, rd), j)).collect();
            all.sort();
            let (d1, j1) = all.first().copied().unwrap_or((u32::MAX, 0));
            let d2 = all.get(1).map_or(u32::MAX, |&(d, _)| d);
            if d1 <= 64
                && (d1 as f32) < 0.8 * d2 as f32
                && kept.get(&j1).is_none_or(|&(d, _)| d1 < d)
            {
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
            let features = |d: Vec<[u64; 4]>| Features {
                points: vec![Default::default(); d.len()],
                descriptors: d,
                ..a.clone()
            };
            cases.push((features(q_desc), features(r_desc)));
        }
        type Kernel = fn(&Features, &Features) -> Vec<(usize, usize)>;
        let mut kernels: Vec<(&str, Kernel)> =
            vec![("portable", match_descriptors_portable), ("dispatched", match_descriptors)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has POPCNT (checked just above).
                kernels.push(("popcnt", |q, r| unsafe { match_descriptors_popcnt(q, r) }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
            {
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
        assert!(Features::extract(&flat, &Params::default()).points.is_empty());
        let tiny = RgbImage { width: 10, height: 10, data: vec![0; 300] };
        assert!(Features::extract(&tiny, &Params::default()).points.is_empty());
        assert_eq!(
            verify(
                &Features::extract(&flat, &Params::default()),
                &Features::extract(&tiny, &Params::default()),
                None,
                0
            )
            .inliers,
            0
        );
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
        assert!(matches!(
            Shared::from_bytes(&bytes[..bytes.len() - 1]),
            Err(FormatError::Damaged(_))
        ));
        assert!(matches!(Shared::from_bytes(b"KNKORB02xxxx"), Err(FormatError::Damaged(_))));
    }
}
