//! Tilted photos: a photo turned by a few degrees inside its frame, the corners it leaves bare
//! filled with one colour (what an image editor's "rotate" does), found and turned back so it can
//! be searched as the photo it was.
//!
//! The fill makes a right triangle in each corner of the frame whose long side is a side of the
//! turned photo. `find` measures the four triangles on a small copy of the photo; when at least
//! three are straight and agree on one angle, it keeps the angle and canvas (the photo turned in a
//! frame of its own size, or in one enlarged to hold all of it) whose outline the fill follows
//! best.

use crate::vision::decode::{self, RgbImage};

/// A photo turned inside its frame (`find`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tilt {
    /// How far the photo is turned, in degrees: positive clockwise as seen.
    pub degrees: f64,
    /// Width and height of the turned photo, as shares of the frame's width and height.
    pub size: [f64; 2],
    /// The colour of the bare corners.
    pub fill: [u8; 3],
}

/// The photo is searched at most this many pixels on its long side.
const WORK_SIDE: u32 = 320;
/// Largest difference in any channel (0–255) from the fill colour that still counts as fill.
const FILL_TOLERANCE: i16 = 24;
/// Least turn found, in degrees: under it the photo is compared well enough as it is.
const MIN_DEGREES: f64 = 2.0;
/// Most turn found, in degrees: at 45° the two sides of a corner's triangle are alike, and which
/// runs along which side of the frame can no longer be told.
const MAX_DEGREES: f64 = 44.0;
/// Most a corner's angle may differ from the median of the four, in degrees, to count (more for a
/// short triangle: two pixels over its length).
const ANGLE_SPREAD: f64 = 1.5;
/// Largest root-mean-square distance (pixels of the small copy) of a triangle's long side from a
/// straight line, over the points within `LINE_TOLERANCE` of it.
const MAX_CROOKEDNESS: f64 = 1.5;
/// Distance (pixels of the small copy) from the line within which a point is on it.
const LINE_TOLERANCE: f64 = 2.5;
/// Least share of a triangle's points that must be on the line (dark parts of a photo turned on
/// black reach into the fill here and there).
const MIN_ON_LINE: f64 = 0.75;
/// Runs of a corner's triangle a shorter one may stand for when the next are compared with it.
const LAG: usize = 4;
/// Least share of the pixels outside the outline that must be fill.
const MIN_AGREEMENT: f64 = 0.9;
/// Least share of the band just inside the outline that must not be fill.
const MIN_CONTENT_AGREEMENT: f64 = 0.7;
/// Width (pixels of the small copy) of the band just inside the outline.
const BAND: f64 = 6.0;
/// Margin (pixels of the small copy) either side of the outline left out of the comparison: the
/// outline is blurred by resampling.
const MARGIN: f64 = 1.5;

/// The turn of `img` when it is a photo turned inside its frame with corners of one colour.
pub fn find(img: &RgbImage) -> Option<Tilt> {
    if img.width < 32 || img.height < 32 {
        return None;
    }
    let m = FillMask::new(img)?;
    let corners = m.corners();
    // a turn leaves the long sides on the left and right in opposite corners, along the top and
    // bottom in the other two; at least three corners must agree on that and on the angle
    if corners.len() < 3 || corners.iter().any(|c| c.alternating != corners[0].alternating) {
        return None;
    }
    let middle = |mut a: Vec<f64>| {
        a.sort_by(f64::total_cmp);
        (a[(a.len() - 1) / 2] + a[a.len() / 2]) / 2.0
    };
    let all = middle(corners.iter().map(|c| c.degrees).collect());
    let agreeing: Vec<f64> =
        corners.iter().filter(|c| (c.degrees - all).abs() <= c.spread).map(|c| c.degrees).collect();
    if agreeing.len() < 3 {
        return None;
    }
    let median = middle(agreeing);
    if !(MIN_DEGREES..=MAX_DEGREES).contains(&median) {
        return None;
    }
    m.best_fit(median)
}

/// The colour of pixel (`x`, `y`).
fn colour_at(img: &RgbImage, x: u32, y: u32) -> [i16; 3] {
    let i = ((y * img.width + x) * 3) as usize;
    [img.data[i].into(), img.data[i + 1].into(), img.data[i + 2].into()]
}

/// The colours of the four corners, clockwise from the top left.
fn at_corners(img: &RgbImage) -> [[i16; 3]; 4] {
    [(0, 0), (img.width - 1, 0), (img.width - 1, img.height - 1), (0, img.height - 1)]
        .map(|(x, y)| colour_at(img, x, y))
}

/// One corner's triangle of fill: the angle of its long side, whether that side runs in the
/// pattern of alternate corners, and how far its angle may be off.
struct Corner {
    degrees: f64,
    alternating: bool,
    spread: f64,
}

/// The work copy (`w` × `h`) of a photo whose four corners share one colour (`fill`), and which
/// of its pixels are of that colour (`mask`, row by row).
struct FillMask {
    w: usize,
    h: usize,
    fill: [i16; 3],
    mask: Vec<bool>,
}

impl FillMask {
    /// `None` when the corners of the photo, or of its work copy, are not all of one colour.
    fn new(img: &RgbImage) -> Option<FillMask> {
        // the corners first, on the photo itself: most photos end here, before any work
        let corner_colours = at_corners(img);
        let fill: [i16; 3] =
            std::array::from_fn(|c| corner_colours.iter().map(|p| p[c]).sum::<i16>() / 4);
        let is_fill = |p: [i16; 3]| (0..3).all(|c| (p[c] - fill[c]).abs() <= FILL_TOLERANCE);
        if !corner_colours.iter().all(|&p| is_fill(p)) {
            return None;
        }
        let work = decode::fit_long_side(img, WORK_SIDE).ok()?;
        if !at_corners(&work).iter().all(|&p| is_fill(p)) {
            return None;
        }
        let (w, h) = (work.width as usize, work.height as usize);
        let pixel = |x: usize, y: usize| colour_at(&work, x as u32, y as u32);
        let mask: Vec<bool> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| is_fill(pixel(x, y)))
            .collect();
        Some(FillMask { w, h, fill, mask })
    }

    /// Each corner's triangle, clockwise from the top left: its angle, and whether its long side
    /// runs along the frame's left or right side (else along the top or bottom); a dark part of
    /// the photo may spoil one corner, which is left out.
    fn corners(&self) -> Vec<Corner> {
        let (w, h, mask) = (self.w, self.h, &self.mask);
        let mut corners = Vec::with_capacity(4);
        for (k, (right, bottom)) in
            [(false, false), (true, false), (true, true), (false, true)].into_iter().enumerate()
        {
            let at = |i: usize, j: usize| {
                mask[(if bottom { h - 1 - j } else { j }) * w + if right { w - 1 - i } else { i }]
            };
            // fill from the corner's vertical side along each row, and from its horizontal side
            // down each column, as far as the triangle reaches; the long side is the one with more
            // (unless a dark part cut it short: then the slope is steeper than 45°)
            let rows = triangle((0..h).map(|j| (0..w).take_while(|&i| at(i, j)).count()), w);
            let columns = triangle((0..w).map(|i| (0..h).take_while(|&j| at(i, j)).count()), h);
            let (upright, runs) =
                if rows.len() >= columns.len() { (true, rows) } else { (false, columns) };
            let Some((slope, crookedness, on_line)) = line_fit(&runs) else { continue };
            if runs.len() < 8
                || crookedness > MAX_CROOKEDNESS
                || on_line < MIN_ON_LINE
                || slope >= 0.0
            {
                continue;
            }
            let tan = -slope;
            // the side the long side really runs along, in the pattern of alternate corners
            let alternating = (upright == (tan <= 1.0)) == (k % 2 == 0);
            // how far its angle may be off: a pixel or two over a short triangle is more than one
            let spread = ANGLE_SPREAD.max((2.0 / runs.len() as f64).atan().to_degrees());
            let degrees = tan.min(1.0 / tan).atan().to_degrees();
            corners.push(Corner { degrees, alternating, spread });
        }
        corners
    }

    /// The angle near `median`, direction and canvas whose outline the fill follows best.
    fn best_fit(&self, median: f64) -> Option<Tilt> {
        let (w, h) = (self.w, self.h);
        let mut best: Option<(f64, Tilt)> = None;
        for sign in [1.0, -1.0] {
            for enlarged in [false, true] {
                for step in [0, -1, 1, -2, 2, -3, 3, -4, 4, -5, 5, -6, 6] {
                    let degrees = sign * (median + f64::from(step) * 0.1);
                    let Some(size) = turned_size(degrees, w as f64, h as f64, enlarged) else {
                        continue;
                    };
                    let (outside, inside) = agreement(&self.mask, w, h, degrees, size);
                    if outside < MIN_AGREEMENT
                        || inside < MIN_CONTENT_AGREEMENT
                        || best.as_ref().is_some_and(|(a, _)| outside + inside <= *a)
                    {
                        continue;
                    }
                    let fill = self.fill.map(|c| c.clamp(0, 255) as u8);
                    best = Some((
                        outside + inside,
                        Tilt { degrees, size: [size[0] / w as f64, size[1] / h as f64], fill },
                    ));
                }
            }
        }
        best.map(|(_, t)| t)
    }
}

/// `img` (the photo `find` found `tilt` in) turned back, at the frame's resolution: the turned
/// photo as it was, cut down about its centre, keeping its aspect, to the part the frame shows
/// whole (the bare corners would otherwise stand where its corners were).
pub fn straighten(img: &RgbImage, tilt: &Tilt) -> RgbImage {
    let (fw, fh) = (f64::from(img.width), f64::from(img.height));
    let (sin, cos) = tilt.degrees.to_radians().sin_cos();
    let (cw, ch) = (tilt.size[0] * fw, tilt.size[1] * fh);
    // the largest share of the turned photo's sides whose turned outline fits in the frame
    let keep = (fw / (cw * cos.abs() + ch * sin.abs()))
        .min(fh / (cw * sin.abs() + ch * cos.abs()))
        .min(1.0);
    let (kw, kh) = (cw * keep, ch * keep);
    let (ow, oh) =
        ((kw.round() as u32).clamp(1, 2 * img.width), (kh.round() as u32).clamp(1, 2 * img.height));
    decode::warp(img, ow, oh, tilt.fill, |u, v| {
        let (qx, qy) = (u * kw / f64::from(ow) - kw / 2.0, v * kh / f64::from(oh) - kh / 2.0);
        Some([fw / 2.0 + cos * qx - sin * qy, fh / 2.0 + sin * qx + cos * qy])
    })
}

/// Width and height of a photo turned by `degrees` in a `w` x `h` frame: the frame's own, or
/// (`enlarged`) those of the photo the frame just holds; `None` when no photo fits.
fn turned_size(degrees: f64, w: f64, h: f64, enlarged: bool) -> Option<[f64; 2]> {
    if !enlarged {
        return Some([w, h]);
    }
    let (sin, cos) = degrees.abs().to_radians().sin_cos();
    let det = cos * cos - sin * sin;
    let size = [(w * cos - h * sin) / det, (h * cos - w * sin) / det];
    (det > 0.0 && size[0] >= 1.0 && size[1] >= 1.0).then_some(size)
}

/// How well the fill in `mask` (a `w` x `h` photo) follows the outline of a `size` photo turned by
/// `degrees` in its centre: the share of pixels outside the outline that are fill, and the share
/// of a band just inside it that are not (both 0 when there are too few outside).
fn agreement(mask: &[bool], w: usize, h: usize, degrees: f64, size: [f64; 2]) -> (f64, f64) {
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (mut outside, mut outside_fill, mut band, mut band_content) =
        (0usize, 0usize, 0usize, 0usize);
    for y in 0..h {
        let py = y as f64 + 0.5 - h as f64 / 2.0;
        for x in 0..w {
            let px = x as f64 + 0.5 - w as f64 / 2.0;
            // the pixel in the turned photo's own coordinates, and how far outside its outline
            let (qx, qy) = (cos * px + sin * py, -sin * px + cos * py);
            let d = (qx.abs() - size[0] / 2.0).max(qy.abs() - size[1] / 2.0);
            let fill = mask[y * w + x];
            if d > MARGIN {
                outside += 1;
                outside_fill += usize::from(fill);
            } else if d < -MARGIN && d > -MARGIN - BAND {
                band += 1;
                band_content += usize::from(!fill);
            }
        }
    }
    if outside < 16 || band == 0 {
        return (0.0, 0.0);
    }
    (outside_fill as f64 / outside as f64, band_content as f64 / band as f64)
}

/// The runs of fill across a corner's triangle, from the corner along one side of the frame: as
/// far as they are under `across` and do not grow (by more than a pixel or two of blur), which
/// stops them where a dark part of the photo touches the fill.
fn triangle(runs: impl Iterator<Item = usize>, across: usize) -> Vec<usize> {
    // the least run before the last `LAG`: a run or two cut short by compression noise does not
    // stop the next ones
    let mut seen: Vec<usize> = Vec::new();
    let mut least = usize::MAX;
    for n in runs {
        if n == 0 || n >= across || n > least.saturating_add(2) {
            break;
        }
        seen.push(n);
        if seen.len() > LAG {
            least = least.min(seen[seen.len() - 1 - LAG]);
        }
    }
    seen
}

/// A line through the points (i, `runs[i]`) that is robust to a minority far off it: Theil–Sen
/// (the median slope between pairs of up to 64 points spread over them, the median intercept),
/// then least squares on the points within `LINE_TOLERANCE` of that. Its slope, the
/// root-mean-square distance of those points from it, and their share; `None` for fewer than two
/// points.
fn line_fit(runs: &[usize]) -> Option<(f64, f64, f64)> {
    if runs.len() < 2 {
        return None;
    }
    let points: Vec<(f64, f64)> =
        runs.iter().enumerate().map(|(i, &r)| (i as f64, r as f64)).collect();
    let spread: Vec<(f64, f64)> = (0..points.len().min(64))
        .map(|k| points[k * points.len() / points.len().min(64)])
        .collect();
    let mut slopes: Vec<f64> = spread
        .iter()
        .enumerate()
        .flat_map(|(a, p)| spread[a + 1..].iter().map(move |q| (q.1 - p.1) / (q.0 - p.0)))
        .collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let slope = median(&mut slopes);
    let intercept = median(&mut points.iter().map(|(x, y)| y - slope * x).collect());
    let near: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| (y - intercept - slope * x).abs() <= LINE_TOLERANCE)
        .collect();
    if near.len() < 2 {
        return Some((slope, f64::INFINITY, 0.0));
    }
    let n = near.len() as f64;
    let (mx, my) =
        (near.iter().map(|p| p.0).sum::<f64>() / n, near.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = near.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = near.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let slope = sxy / sxx;
    let rss: f64 = near.iter().map(|(x, y)| (y - my - slope * (x - mx)).powi(2)).sum();
    Some((slope, (rss / n).sqrt(), n / points.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A photo with detail everywhere and no edge of one colour.
    fn photo(w: u32, h: u32) -> RgbImage {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                let (fx, fy) = (x as f32, y as f32);
                [
                    (128.0 + 90.0 * (fx / 7.0).sin() * (fy / 11.0).cos()) as u8,
                    (100 + (x * 3 + y * 5) % 120) as u8,
                    (60.0 + 60.0 * ((fx + fy) / 23.0).sin() + 60.0) as u8,
                ]
            })
            .collect();
        RgbImage { width: w, height: h, data }
    }

    /// `img` turned by `degrees` (clockwise) about its centre as the attack generator does it, in a
    /// frame of its own size with black corners.
    fn turn(img: &RgbImage, degrees: f32) -> RgbImage {
        let buf =
            image::RgbImage::from_raw(img.width, img.height, img.data.clone()).expect("buffer");
        let out = imageproc::geometric_transformations::rotate_about_center(
            &buf,
            degrees.to_radians(),
            imageproc::geometric_transformations::Interpolation::Bilinear,
            image::Rgb([0, 0, 0]),
        );
        RgbImage { width: out.width(), height: out.height(), data: out.into_raw() }
    }

    fn mean_difference(a: &RgbImage, b: &RgbImage, border: u32) -> f64 {
        assert_eq!((a.width, a.height), (b.width, b.height));
        let (mut sum, mut n) = (0.0, 0.0);
        for y in border..a.height - border {
            for x in border..a.width - border {
                let i = ((y * a.width + x) * 3) as usize;
                for c in 0..3 {
                    sum += (f64::from(a.data[i + c]) - f64::from(b.data[i + c])).abs();
                    n += 1.0;
                }
            }
        }
        sum / n
    }

    #[test]
    fn a_photo_turned_in_its_frame_is_found_and_turned_back() {
        let original = photo(400, 300);
        for degrees in [5.5f32, -12.0, 19.0] {
            let tilt =
                find(&turn(&original, degrees)).unwrap_or_else(|| panic!("{degrees}° not found"));
            assert!(
                (tilt.degrees - f64::from(degrees)).abs() < 0.4,
                "{degrees}° found as {}",
                tilt.degrees
            );
            assert_eq!(tilt.fill, [0, 0, 0]);
            assert!(
                (tilt.size[0] - 1.0).abs() < 0.01 && (tilt.size[1] - 1.0).abs() < 0.01,
                "{:?}",
                tilt.size
            );
            let back = straighten(&turn(&original, degrees), &tilt);
            // the middle of the photo as it was, cut down about its centre
            let keep = f64::from(back.width) / 400.0;
            assert!(
                (f64::from(back.height) / 300.0 - keep).abs() < 0.01 && keep < 0.97 && keep > 0.6,
                "{} x {}",
                back.width,
                back.height
            );
            let crop = |img: &RgbImage, x0: u32, y0: u32| RgbImage {
                width: 200,
                height: 150,
                data: (y0..y0 + 150)
                    .flat_map(|y| {
                        img.data[((y * img.width + x0) * 3) as usize
                            ..((y * img.width + x0 + 200) * 3) as usize]
                            .to_vec()
                    })
                    .collect(),
            };
            let d = mean_difference(
                &crop(&back, (back.width - 200) / 2, (back.height - 150) / 2),
                &crop(&original, 100, 75),
                0,
            );
            assert!(d < 12.0, "{degrees}°: turned back differs by {d:.1} on average");
            // and far from it when not turned back
            assert!(
                mean_difference(
                    &crop(&turn(&original, degrees), 100, 75),
                    &crop(&original, 100, 75),
                    0
                ) > 2.0 * d
            );
        }
    }

    #[test]
    fn a_photo_dark_in_one_corner_turned_on_black_is_still_found() {
        // the dark corner runs into the black fill there; the other three corners give the turn
        let mut original = photo(400, 300);
        for y in 0..90 {
            for x in 0..120 {
                let i = ((y * 400 + x) * 3) as usize;
                original.data[i..i + 3].copy_from_slice(&[5, 5, 5]);
            }
        }
        let tilt = find(&turn(&original, 14.0)).expect("found");
        assert!((tilt.degrees - 14.0).abs() < 0.4, "{}", tilt.degrees);
    }

    #[test]
    fn a_photo_turned_and_compressed_hard_is_still_found() {
        // a small photo in JPEG at quality 30: the edges of the black corners are ragged, and a
        // run or two of fill is cut short here and there
        let turned = turn(&photo(240, 180), 13.0);
        let mut bytes = Vec::new();
        let buf =
            image::RgbImage::from_raw(turned.width, turned.height, turned.data).expect("buffer");
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 30)
            .encode_image(&buf)
            .expect("encoded");
        let decoded = decode::decode(&bytes, &decode::Limits::default(), 432).expect("decoded");
        let tilt = find(&decoded).expect("found");
        assert!((tilt.degrees - 13.0).abs() < 0.5, "{}", tilt.degrees);
    }

    #[test]
    fn a_photo_turned_in_an_enlarged_frame_is_found_with_its_size() {
        // a 300 x 200 photo turned by 10° in the white frame that just holds it
        let original = photo(300, 200);
        let (sin, cos) = 10f64.to_radians().sin_cos();
        let (fw, fh) =
            ((300.0 * cos + 200.0 * sin).ceil() as u32, (300.0 * sin + 200.0 * cos).ceil() as u32);
        let framed = decode::warp(&original, fw, fh, [255, 255, 255], |x, y| {
            let (px, py) = (x - f64::from(fw) / 2.0, y - f64::from(fh) / 2.0);
            Some([150.0 + cos * px + sin * py, 100.0 - sin * px + cos * py])
        });
        let tilt = find(&framed).expect("found");
        assert!((tilt.degrees - 10.0).abs() < 0.4, "{}", tilt.degrees);
        assert_eq!(tilt.fill, [255, 255, 255]);
        let (cw, ch) = (tilt.size[0] * f64::from(fw), tilt.size[1] * f64::from(fh));
        assert!((cw - 300.0).abs() < 6.0 && (ch - 200.0).abs() < 6.0, "{cw} x {ch}");
        // all of it is in the frame, so all of it is kept
        let back = straighten(&framed, &tilt);
        assert_eq!((back.width, back.height), (cw.round() as u32, ch.round() as u32));
    }

    #[test]
    fn photos_that_are_not_turned_are_left_alone() {
        // detail to the corners
        assert_eq!(find(&photo(400, 300)), None);
        // a product on white: the corners are one colour but the fill is not bounded by lines
        let mut product = RgbImage { width: 400, height: 300, data: vec![255; 400 * 300 * 3] };
        for y in 60..240u32 {
            for x in 0..400u32 {
                let (dx, dy) = (x as f64 - 200.0, y as f64 - 150.0);
                if dx * dx / 120.0f64.powi(2) + dy * dy / 90.0f64.powi(2) < 1.0 {
                    let i = ((y * 400 + x) * 3) as usize;
                    product.data[i..i + 3].copy_from_slice(&[200, 30, (x % 200) as u8]);
                }
            }
        }
        assert_eq!(find(&product), None);
        // one colour throughout, and a photo too small to measure
        assert_eq!(find(&RgbImage { width: 100, height: 80, data: vec![0; 100 * 80 * 3] }), None);
        assert_eq!(find(&turn(&photo(20, 20), 10.0)), None);
        // turned by a degree: compared well enough as it is
        assert_eq!(find(&turn(&photo(400, 300), 1.0)), None);
    }
}
