//! Colours: a histogram of a photo's colours, which decides between two sibling products of one
//! brand that differ mainly in colour (a milk's fat level, a juice's flavour).
//!
//! The embedding model is trained to ignore colour changes (a recoloured copy is still a copy), and
//! sibling packages share their logo and layout, so neither the embedding nor local features tell
//! such siblings apart. The histogram counts the centre 60 % of a photo (where a listing's product
//! usually is) in 16 hues × 4 saturations for coloured pixels and 4 brightness levels for grey ones,
//! on a copy at most 256 pixels on its long side; two histograms compare by intersection (1 =
//! same colours). A reference photo on a white backdrop (a web-shop photo) has none: its colours
//! are not those of a photo taken in a shop, so it does not take part.
//!
//! Serialised (`Colours::to_bytes`, stored by the catalog): the magic `KNKCOL01`, then `BINS` u16
//! LE shares in 65535ths.

use crate::vision::decode::{self, RgbImage};

/// Histogram bins: 16 hues × 4 saturations, then 4 brightness levels of grey pixels.
pub const BINS: usize = HUES * SATURATIONS + 4;
const HUES: usize = 16;
const SATURATIONS: usize = 4;
/// A pixel with saturation and value above these (of 255) is coloured; others are grey.
const MIN_SATURATION: u8 = 40;
const MIN_VALUE: u8 = 40;
/// The photo is counted at most this many pixels on its long side.
const WORK_SIDE: u32 = 256;
/// Share of the photo's side kept around its centre.
const CENTRE: f32 = 0.6;
/// A border at least this much near-white is a backdrop.
const BACKDROP_BORDER: f32 = 0.8;
const MAGIC: &[u8; 8] = b"KNKCOL01";

/// Two sibling matches are told apart by colour only when their scores are this close: further
/// apart, the embedding and local features have decided.
pub const SIBLING_GAP: f32 = 0.3;
/// The share of the listing photo's colour by which the second sibling must beat the first.
pub const SIBLING_MARGIN: f32 = 0.02;

/// A photo's colour histogram; shares sum to 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Colours {
    shares: [f32; BINS],
}

impl Colours {
    /// The histogram of the centre of `img`.
    pub fn of(img: &RgbImage) -> Colours {
        match shrink(img) {
            Some(work) => Colours::count(&work),
            None => Colours { shares: [0.0; BINS] },
        }
    }

    /// The histogram of the centre of `work`, a photo already within `WORK_SIDE`.
    fn count(work: &RgbImage) -> Colours {
        let mut shares = [0f32; BINS];
        let (w, h) = (work.width as usize, work.height as usize);
        let (mx, my) = (
            (w as f32 * (1.0 - CENTRE) / 2.0) as usize,
            (h as f32 * (1.0 - CENTRE) / 2.0) as usize,
        );
        let mut n = 0usize;
        for y in my..h - my {
            for x in mx..w - mx {
                let i = (y * w + x) * 3;
                shares[bin(hsv(work.data[i], work.data[i + 1], work.data[i + 2]))] += 1.0;
                n += 1;
            }
        }
        if n > 0 {
            shares.iter_mut().for_each(|s| *s /= n as f32);
        }
        Colours { shares }
    }

    /// The histogram of a reference photo, or `None` when it is on a white backdrop.
    pub fn of_reference(img: &RgbImage) -> Option<Colours> {
        let work = shrink(img)?;
        (!on_backdrop(&work)).then(|| Colours::count(&work))
    }

    /// Histogram intersection: the share of colour two photos have in common, 0 to 1.
    pub fn similarity(&self, other: &Colours) -> f32 {
        self.shares.iter().zip(&other.shares).map(|(a, b)| a.min(*b)).sum()
    }

    /// The stored form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for s in self.shares {
            out.extend_from_slice(&((s.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes());
        }
        out
    }

    /// Reads the stored form; `None` when it is not one.
    pub fn from_bytes(b: &[u8]) -> Option<Colours> {
        let body = b.strip_prefix(MAGIC.as_slice())?;
        if body.len() != BINS * 2 {
            return None;
        }
        let mut shares = [0f32; BINS];
        for (s, c) in shares.iter_mut().zip(body.chunks_exact(2)) {
            *s = f32::from(u16::from_le_bytes([c[0], c[1]])) / 65535.0;
        }
        Some(Colours { shares })
    }
}

/// `img` at most `WORK_SIDE` pixels on its long side; `None` for an empty image.
fn shrink(img: &RgbImage) -> Option<std::borrow::Cow<'_, RgbImage>> {
    if img.width == 0 || img.height == 0 {
        return None;
    }
    decode::fit_long_side(img, WORK_SIDE).ok()
}

/// Whether at least `BACKDROP_BORDER` of the photo's border pixels are near-white.
fn on_backdrop(img: &RgbImage) -> bool {
    let (w, h) = (img.width as usize, img.height as usize);
    let white = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        let (_, s, v) = hsv(img.data[i], img.data[i + 1], img.data[i + 2]);
        v > 235 && s < 25
    };
    let border: Vec<(usize, usize)> = (0..w)
        .flat_map(|x| [(x, 0), (x, h - 1)])
        .chain((0..h).flat_map(|y| [(0, y), (w - 1, y)]))
        .collect();
    let n = border.iter().filter(|&&(x, y)| white(x, y)).count();
    n as f32 >= BACKDROP_BORDER * border.len() as f32
}

/// Hue (0–179, half degrees), saturation and value (0–255) of an RGB pixel.
fn hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let v = r.max(g).max(b);
    let d = v - r.min(g).min(b);
    let s = if v > 0.0 { 255.0 * d / v } else { 0.0 };
    let h = if d == 0.0 {
        0.0
    } else if v == r {
        60.0 * (g - b) / d
    } else if v == g {
        120.0 + 60.0 * (b - r) / d
    } else {
        240.0 + 60.0 * (r - g) / d
    };
    let h = if h < 0.0 { h + 360.0 } else { h };
    (((h / 2.0) as u32).min(179) as u8, s.round() as u8, v as u8)
}

/// The histogram bin of a pixel.
fn bin((h, s, v): (u8, u8, u8)) -> usize {
    if s > MIN_SATURATION && v > MIN_VALUE {
        (usize::from(h) * HUES / 180) * SATURATIONS
            + (usize::from(s) * SATURATIONS / 256).min(SATURATIONS - 1)
    } else {
        HUES * SATURATIONS + (usize::from(v) * 4 / 256).min(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(w: u32, h: u32, border: [u8; 3], centre: [u8; 3]) -> RgbImage {
        let mut data = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let inside = x >= w / 4 && x < 3 * w / 4 && y >= h / 4 && y < 3 * h / 4;
                data.extend_from_slice(if inside { &centre } else { &border });
            }
        }
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn a_photo_is_closer_to_its_own_colours_than_to_a_sibling_of_another_colour() {
        let red_carton = filled(300, 400, [90, 80, 70], [200, 30, 30]);
        let green_carton = filled(300, 400, [90, 80, 70], [30, 160, 40]);
        let listing = filled(600, 800, [60, 60, 60], [190, 40, 35]);
        let (red, green, seen) =
            (Colours::of(&red_carton), Colours::of(&green_carton), Colours::of(&listing));
        assert!(
            seen.similarity(&red) > seen.similarity(&green) + 0.5,
            "{} {}",
            seen.similarity(&red),
            seen.similarity(&green)
        );
        assert!((red.similarity(&red) - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_reference_on_a_white_backdrop_has_no_colours() {
        assert_eq!(Colours::of_reference(&filled(300, 300, [255, 255, 255], [200, 30, 30])), None);
        assert!(Colours::of_reference(&filled(300, 300, [120, 110, 90], [200, 30, 30])).is_some());
    }

    #[test]
    fn colours_survive_serialisation_and_damage_is_refused() {
        let c = Colours::of(&filled(64, 48, [10, 200, 90], [250, 250, 10]));
        let back = Colours::from_bytes(&c.to_bytes()).expect("round trip");
        assert!((back.similarity(&c) - 1.0).abs() < 1e-3);
        assert_eq!(Colours::from_bytes(&c.to_bytes()[..20]), None);
        assert_eq!(Colours::from_bytes(b"KNKORB02rest"), None);
    }

    #[test]
    fn tiny_and_thin_photos_have_colours_and_an_empty_one_none() {
        for (w, h) in [(1, 1), (1, 5000), (5000, 1), (3, 2)] {
            let c = Colours::of(&filled(w, h, [90, 80, 70], [200, 30, 30]));
            let total: f32 = c.shares.iter().sum();
            assert!(total == 0.0 || (total - 1.0).abs() < 1e-3, "{w}x{h}: {total}");
        }
        assert_eq!(
            Colours::of_reference(&RgbImage { width: 0, height: 0, data: Vec::new() }),
            None
        );
    }

    #[test]
    fn hue_saturation_and_value_follow_the_usual_8_bit_convention() {
        assert_eq!(hsv(255, 0, 0), (0, 255, 255));
        assert_eq!(hsv(0, 255, 0), (60, 255, 255));
        assert_eq!(hsv(0, 0, 255), (120, 255, 255));
        assert_eq!(hsv(128, 128, 128), (0, 0, 128));
    }
}
