//! Insets: a photo shown inside a listing photo (pasted small onto another picture, framed, or the
//! content of a screenshot), found by the straight edges around it so it can be searched on its own.
//!
//! A pasted or framed photo is an axis-aligned rectangle whose four sides are unbroken steps in
//! brightness. `find` looks for the rectangle whose sides are the most completely such steps, on a
//! small grey copy of the photo: columns and rows holding long runs of steps are the candidate
//! sides, and every combination of two columns and two rows is scored by the share of each side
//! that is a step (prefix sums make that four subtractions).

use crate::vision::decode::{self, RgbImage};

/// A rectangle of a photo, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inset {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The photo is searched at most this many pixels on its long side.
const WORK_SIDE: u32 = 320;
/// Brightness step (0–255) between neighbouring pixels that counts as an edge.
const STEP: i16 = 18;
/// Shortest side of an inset, as a share of the photo's side.
const MIN_SIDE: f32 = 0.08;
/// Largest inset, as a share of the photo's area: a larger one is searched well enough whole.
const MAX_AREA: f32 = 0.6;
/// Least share of each side that must be an edge.
const MIN_COVER: f32 = 0.85;
/// Candidate columns and rows kept (those with the longest runs of edge).
const MAX_LINES: usize = 40;

/// The most completely outlined rectangle of `img`, when one has all four sides at least
/// `MIN_COVER` edge, sides of at least `MIN_SIDE` of the photo's and at most `MAX_AREA` of its
/// area. Ties in outline go to the larger rectangle.
pub fn find(img: &RgbImage) -> Option<Inset> {
    if img.width < 16 || img.height < 16 {
        return None;
    }
    let scale = (WORK_SIDE as f32 / img.width.max(img.height) as f32).min(1.0);
    let work = decode::fit_long_side(img, WORK_SIDE).ok()?;
    let (w, h) = (work.width as usize, work.height as usize);
    let luma: Vec<i16> = work
        .data
        .chunks_exact(3)
        .map(|p| {
            ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as i16
        })
        .collect();
    let lines = Lines::new(&Edges::new(&luma, w, h));
    let (x1, y1, x2, y2) = lines.best_outline()?;
    // back to the photo's pixels, a pixel of the work copy inside the outline
    let to = |v: usize, full: u32| ((v as f32 / scale).round() as u32).min(full);
    let (left, top) = (to(x1 + 2, img.width), to(y1 + 2, img.height));
    let (right, bottom) = (to(x2, img.width), to(y2, img.height));
    (right > left + 1 && bottom > top + 1).then(|| Inset {
        x: left,
        y: top,
        width: right - left,
        height: bottom - top,
    })
}

/// The edges of a grey work copy `w` × `h`: `vert[y * (w - 1) + x]` between columns x and x+1,
/// `horiz[y * w + x]` between rows y and y+1.
struct Edges {
    w: usize,
    h: usize,
    vert: Vec<bool>,
    horiz: Vec<bool>,
}

impl Edges {
    fn new(luma: &[i16], w: usize, h: usize) -> Edges {
        // vertical edges lie between columns x and x+1 (w-1 of them), horizontal ones between
        // rows y and y+1; an edge blurred or resampled across two pixels still counts at either,
        // so each is widened by one either side across its direction
        let (vw, hh) = (w - 1, h - 1);
        let mut vert = vec![false; h * vw];
        let mut steps = vec![false; vw];
        for y in 0..h {
            let row = &luma[y * w..(y + 1) * w];
            for (s, p) in steps.iter_mut().zip(row.windows(2)) {
                *s = (p[1] - p[0]).abs() > STEP;
            }
            for x in 0..vw {
                vert[y * vw + x] =
                    steps[x] || (x > 0 && steps[x - 1]) || (x + 1 < vw && steps[x + 1]);
            }
        }
        let step_rows: Vec<bool> =
            (0..hh * w).map(|i| (luma[i + w] - luma[i]).abs() > STEP).collect();
        let mut horiz = step_rows.clone();
        for y in 0..hh {
            for x in 0..w {
                horiz[y * w + x] |= (y > 0 && step_rows[(y - 1) * w + x])
                    || (y + 1 < hh && step_rows[(y + 1) * w + x]);
            }
        }
        Edges { w, h, vert, horiz }
    }
}

/// Prefix sums along each line of edges (`vsum[y * vw + x]`: edge pixels of column x above row
/// y; `hsum[y * (w + 1) + x]`: of row y left of column x) and the longest unbroken run of each.
struct Lines {
    w: usize,
    h: usize,
    vw: usize,
    vsum: Vec<u16>,
    vrun: Vec<usize>,
    hsum: Vec<u16>,
    hrun: Vec<usize>,
}

impl Lines {
    fn new(e: &Edges) -> Lines {
        let (w, h) = (e.w, e.h);
        let (vw, hh) = (w - 1, h - 1);
        let mut vsum = vec![0u16; (h + 1) * vw];
        let (mut run, mut vrun) = (vec![0usize; vw], vec![0usize; vw]);
        for y in 0..h {
            for x in 0..vw {
                let edge = e.vert[y * vw + x];
                vsum[(y + 1) * vw + x] = vsum[y * vw + x] + u16::from(edge);
                run[x] = if edge { run[x] + 1 } else { 0 };
                vrun[x] = vrun[x].max(run[x]);
            }
        }
        let mut hsum = vec![0u16; hh * (w + 1)];
        let mut hrun = vec![0usize; hh];
        for y in 0..hh {
            let mut r = 0;
            for x in 0..w {
                let edge = e.horiz[y * w + x];
                hsum[y * (w + 1) + x + 1] = hsum[y * (w + 1) + x] + u16::from(edge);
                r = if edge { r + 1 } else { 0 };
                hrun[y] = hrun[y].max(r);
            }
        }
        Lines { w, h, vw, vsum, vrun, hsum, hrun }
    }

    /// Share of column `x` that is edge between rows `y1` and `y2`.
    fn column(&self, x: usize, y1: usize, y2: usize) -> f32 {
        let vw = self.vw;
        f32::from(self.vsum[(y2 + 1) * vw + x] - self.vsum[(y1 + 1) * vw + x]) / (y2 - y1) as f32
    }

    /// Share of row `y` that is edge between columns `x1` and `x2`.
    fn row(&self, y: usize, x1: usize, x2: usize) -> f32 {
        let w = self.w;
        f32::from(self.hsum[y * (w + 1) + x2 + 1] - self.hsum[y * (w + 1) + x1 + 1])
            / (x2 - x1) as f32
    }

    /// The most completely outlined rectangle (x1, y1, x2, y2) of the work copy: columns
    /// x1+1..=x2, rows y1+1..=y2. Ties in outline go to the larger rectangle.
    fn best_outline(&self) -> Option<(usize, usize, usize, usize)> {
        let (w, h) = (self.w, self.h);
        let min_w = (MIN_SIDE * w as f32).ceil() as usize;
        let min_h = (MIN_SIDE * h as f32).ceil() as usize;
        let xs = longest_lines(&self.vrun, min_h);
        let ys = longest_lines(&self.hrun, min_w);
        let max_area = MAX_AREA * (w * h) as f32;
        // (outline in hundredths, area, x1, y1, x2, y2)
        let mut best: Option<(u32, usize, usize, usize, usize, usize)> = None;
        let mut rows = Vec::with_capacity(ys.len());
        for (i, &x1) in xs.iter().enumerate() {
            for &x2 in &xs[i + 1..] {
                if x2 - x1 < min_w {
                    continue;
                }
                // the rows that can be the top or bottom side between these columns
                rows.clear();
                rows.extend(
                    ys.iter().map(|&y| (y, self.row(y, x1, x2))).filter(|&(_, c)| c >= MIN_COVER),
                );
                for (j, &(y1, top)) in rows.iter().enumerate() {
                    for &(y2, bottom) in &rows[j + 1..] {
                        let area = (x2 - x1) * (y2 - y1);
                        if y2 - y1 < min_h || area as f32 > max_area {
                            continue;
                        }
                        let cover = self
                            .column(x1, y1, y2)
                            .min(self.column(x2, y1, y2))
                            .min(top)
                            .min(bottom);
                        if cover < MIN_COVER {
                            continue;
                        }
                        let key = ((cover * 100.0) as u32, area, x1, y1, x2, y2);
                        if best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                            best = Some(key);
                        }
                    }
                }
            }
        }
        best.map(|(_, _, x1, y1, x2, y2)| (x1, y1, x2, y2))
    }
}

/// Positions of the `MAX_LINES` lines with the longest runs of at least `min`, in ascending order.
fn longest_lines(runs: &[usize], min: usize) -> Vec<usize> {
    let mut lines: Vec<(usize, usize)> = runs
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, r)| r >= min.max(1))
        .map(|(i, r)| (r, i))
        .collect();
    lines.sort_by(|a, b| b.cmp(a));
    lines.truncate(MAX_LINES);
    let mut at: Vec<usize> = lines.into_iter().map(|(_, i)| i).collect();
    at.sort_unstable();
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy, deterministic texture: no long straight edges.
    fn texture(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let v = ((x as f32 * 0.21 + seed as f32).sin() * (y as f32 * 0.17).cos() * 60.0
                    + 120.0) as u8;
                data.extend_from_slice(&[v, v.wrapping_add(30), 200 - v / 2]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    fn paste(canvas: &mut RgbImage, img: &RgbImage, x0: u32, y0: u32) {
        for y in 0..img.height {
            for x in 0..img.width {
                let s = ((y * img.width + x) * 3) as usize;
                let d = (((y0 + y) * canvas.width + x0 + x) * 3) as usize;
                canvas.data[d..d + 3].copy_from_slice(&img.data[s..s + 3]);
            }
        }
    }

    #[test]
    fn a_pasted_photo_is_found_where_it_is() {
        let mut canvas = texture(800, 600, 1);
        let mut small = texture(220, 160, 9);
        for v in small.data.iter_mut() {
            *v /= 4; // darker than the backdrop all along its border
        }
        paste(&mut canvas, &small, 430, 120);
        let found = find(&canvas).expect("an inset");
        // within two pixels of the work copy (2.5 pixels each) of the truth, and inside it
        assert!(found.x >= 430 && found.x <= 430 + 6, "{found:?}");
        assert!(found.y >= 120 && found.y <= 120 + 6, "{found:?}");
        assert!(
            found.x + found.width <= 430 + 220 && found.x + found.width + 6 >= 430 + 220,
            "{found:?}"
        );
        assert!(
            found.y + found.height <= 120 + 160 && found.y + found.height + 6 >= 120 + 160,
            "{found:?}"
        );
    }

    #[test]
    fn a_photo_without_an_outline_has_no_inset_and_neither_has_a_tiny_one() {
        assert_eq!(find(&texture(640, 480, 3)), None);
        assert_eq!(find(&texture(8, 8, 3)), None);
        // an outlined rectangle smaller than MIN_SIDE is not an inset
        let mut canvas = texture(800, 600, 1);
        paste(
            &mut canvas,
            &RgbImage { width: 40, height: 30, data: vec![255; 40 * 30 * 3] },
            100,
            100,
        );
        assert_eq!(find(&canvas), None);
    }

    #[test]
    fn extreme_shapes_have_no_inset_and_do_not_panic() {
        for (w, h) in [(20, 4000), (4000, 20), (16, 16), (17, 9000)] {
            assert_eq!(find(&texture(w, h, 2)), None, "{w}x{h}");
        }
    }

    #[test]
    fn a_rectangle_covering_most_of_the_photo_is_not_an_inset() {
        let mut canvas = texture(400, 300, 1);
        paste(
            &mut canvas,
            &RgbImage { width: 360, height: 270, data: vec![250; 360 * 270 * 3] },
            20,
            15,
        );
        assert_eq!(find(&canvas), None);
    }
}
