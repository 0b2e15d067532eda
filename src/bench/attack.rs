//! A deterministic generator of edited copies ("attacks") for the accuracy benchmark: the edits a
//! counterfeiter makes to a brand's photo before listing it (crops, rotations, recompression, colour
//! changes, overlays, frames, collages, pasting small, perspective).
//!
//! Every attack is a pure function of the image, the family, the seed and the filler images, so a
//! benchmark run can be repeated exactly. Geometry and drawing use `imageproc`; text is drawn with
//! the public-domain 8x8 bitmap font of `font8x8` (bundled in the crate, no font files).

use image::{imageops, Rgb, RgbImage};
use imageproc::geometric_transformations::{rotate_about_center, warp, Interpolation, Projection};

use crate::util::rng::Rng;

/// Seed derived from text (FNV-1a), to give each (image, family) pair its own random stream.
pub fn seed_of(text: &str) -> u64 {
    text.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The kinds of edits the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Crop keeping 50–90 % of the area.
    Crop,
    /// Rotation by 5–20 degrees either way (corners filled black).
    Rotate,
    /// Rotation by 90, 180 or 270 degrees.
    Rotate90,
    /// Horizontal mirror.
    Mirror,
    /// JPEG recompression at quality 15–60.
    Jpeg,
    /// Downscale to a quarter of each side.
    Downscale,
    /// Gaussian blur (sigma 1.5–4).
    Blur,
    /// Brightness, contrast and hue shifts together.
    Colour,
    /// Greyscale.
    Greyscale,
    /// A sales text and a price drawn over the photo on banners.
    Text,
    /// A logo- or emoji-like shape pasted on the photo.
    Logo,
    /// A coloured border, or a screenshot-like frame with a title bar.
    Frame,
    /// A 2x2 collage with three other photos.
    Collage,
    /// The photo pasted small (20–40 % of the side) onto another photo.
    PasteSmall,
    /// A perspective warp, as when a screen or print is photographed at an angle.
    Perspective,
}

impl Family {
    /// Every family, in report order.
    pub const ALL: [Family; 15] = [
        Family::Crop,
        Family::Rotate,
        Family::Rotate90,
        Family::Mirror,
        Family::Jpeg,
        Family::Downscale,
        Family::Blur,
        Family::Colour,
        Family::Greyscale,
        Family::Text,
        Family::Logo,
        Family::Frame,
        Family::Collage,
        Family::PasteSmall,
        Family::Perspective,
    ];

    /// Short name used in reports and file names.
    pub fn name(self) -> &'static str {
        match self {
            Family::Crop => "crop",
            Family::Rotate => "rotate",
            Family::Rotate90 => "rotate90",
            Family::Mirror => "mirror",
            Family::Jpeg => "jpeg",
            Family::Downscale => "downscale",
            Family::Blur => "blur",
            Family::Colour => "colour",
            Family::Greyscale => "greyscale",
            Family::Text => "text",
            Family::Logo => "logo",
            Family::Frame => "frame",
            Family::Collage => "collage",
            Family::PasteSmall => "paste_small",
            Family::Perspective => "perspective",
        }
    }
}

/// An edited copy: the image, and the JPEG quality it should be saved with.
#[derive(Debug, Clone)]
pub struct Attacked {
    /// The edited image.
    pub image: RgbImage,
    /// JPEG quality to save it with (low for the `Jpeg` family, 92 otherwise).
    pub jpeg_quality: u8,
}

/// Quality at which edited copies are saved, except those of the `Jpeg` family.
pub const SAVE_QUALITY: u8 = 92;

/// Applies `family` to `img` with randomness from `seed`. `fillers` are other photos used by the
/// collage and paste-small families (a grey canvas stands in when there are none).
pub fn apply(img: &RgbImage, family: Family, seed: u64, fillers: &[RgbImage]) -> Attacked {
    let mut rng = Rng::new(seed ^ seed_of(family.name()));
    let (w, h) = img.dimensions();
    let mut quality = SAVE_QUALITY;
    let image = match family {
        Family::Crop => {
            let area = rng.range(0.5, 0.9);
            let aspect = rng.range(0.8, 1.25);
            let cw = ((w as f32) * (area * aspect).sqrt().min(1.0)).round().max(1.0) as u32;
            let ch = ((h as f32) * (area / aspect).sqrt().min(1.0)).round().max(1.0) as u32;
            let x = rng.below((w - cw + 1) as usize) as u32;
            let y = rng.below((h - ch + 1) as usize) as u32;
            imageops::crop_imm(img, x, y, cw, ch).to_image()
        }
        Family::Rotate => {
            let deg = rng.range(5.0, 20.0) * if rng.coin() { 1.0 } else { -1.0 };
            rotate_about_center(img, deg.to_radians(), Interpolation::Bilinear, Rgb([0, 0, 0]))
        }
        Family::Rotate90 => match rng.below(3) {
            0 => imageops::rotate90(img),
            1 => imageops::rotate180(img),
            _ => imageops::rotate270(img),
        },
        Family::Mirror => imageops::flip_horizontal(img),
        Family::Jpeg => {
            quality = 15 + rng.below(46) as u8;
            img.clone()
        }
        Family::Downscale => {
            imageops::resize(img, (w / 4).max(1), (h / 4).max(1), imageops::FilterType::Triangle)
        }
        Family::Blur => imageproc::filter::gaussian_blur_f32(img, rng.range(1.5, 4.0)),
        Family::Colour => {
            let b = rng.range(25.0, 60.0) as i32 * if rng.coin() { 1 } else { -1 };
            let c = rng.range(-35.0, 35.0);
            let hue = rng.range(30.0, 150.0) as i32 * if rng.coin() { 1 } else { -1 };
            let out = imageops::colorops::huerotate(img, hue);
            let out = imageops::colorops::contrast(&out, c);
            imageops::colorops::brighten(&out, b)
        }
        Family::Greyscale => {
            let g = imageops::grayscale(img);
            RgbImage::from_fn(w, h, |x, y| {
                let v = g.get_pixel(x, y).0[0];
                Rgb([v, v, v])
            })
        }
        Family::Text => text_overlay(img, &mut rng),
        Family::Logo => logo_overlay(img, &mut rng),
        Family::Frame => frame(img, &mut rng),
        Family::Collage => collage(img, &mut rng, fillers),
        Family::PasteSmall => paste_small(img, &mut rng, fillers),
        Family::Perspective => perspective(img, &mut rng),
    };
    Attacked { image, jpeg_quality: quality }
}

fn random_colour(rng: &mut Rng) -> Rgb<u8> {
    Rgb([rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8])
}

/// Draws `text` with the 8x8 bitmap font, each font pixel `scale` x `scale` image pixels.
fn draw_text(img: &mut RgbImage, x0: i64, y0: i64, scale: u32, text: &str, colour: Rgb<u8>) {
    let (w, h) = img.dimensions();
    for (i, ch) in text.chars().enumerate() {
        let code = ch as usize;
        let glyph = font8x8::legacy::BASIC_LEGACY.get(code).copied().unwrap_or([0; 8]);
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = x0 + (i as i64 * 8 + col) * scale as i64 + dx as i64;
                        let y = y0 + row as i64 * scale as i64 + dy as i64;
                        if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                            img.put_pixel(x as u32, y as u32, colour);
                        }
                    }
                }
            }
        }
    }
}

/// A filled rectangle clipped to the image.
fn fill_rect(img: &mut RgbImage, x: i64, y: i64, rw: u32, rh: u32, colour: Rgb<u8>) {
    let rect = imageproc::rect::Rect::at(x as i32, y as i32).of_size(rw.max(1), rh.max(1));
    imageproc::drawing::draw_filled_rect_mut(img, rect, colour);
}

fn text_overlay(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    const SLOGANS: [&str; 6] =
        ["SALE -70%", "ORIGINAL!", "BEST PRICE", "FREE SHIPPING", "100% AUTHENTIC", "HOT DEAL"];
    let mut out = img.clone();
    let (w, h) = out.dimensions();
    let slogan = SLOGANS[rng.below(SLOGANS.len())];
    let price = format!("${}.{:02}", 5 + rng.below(95), rng.below(100));
    for (k, text) in [slogan, price.as_str()].into_iter().enumerate() {
        let scale =
            ((w as f32 * rng.range(0.5, 0.8)) / (8.0 * text.len() as f32)).floor().max(1.0) as u32;
        let tw = 8 * scale * text.len() as u32;
        let th = 8 * scale;
        let x = rng.below((w.saturating_sub(tw) + 1) as usize) as i64;
        let y = if k == 0 {
            rng.below((h / 3).max(1) as usize) as i64
        } else {
            (h as i64 - th as i64 - rng.below((h / 4).max(1) as usize) as i64).max(0)
        };
        if rng.coin() {
            fill_rect(
                &mut out,
                x - scale as i64,
                y - scale as i64,
                tw + 2 * scale,
                th + 2 * scale,
                random_colour(rng),
            );
        }
        draw_text(&mut out, x, y, scale, text, random_colour(rng));
    }
    out
}

fn logo_overlay(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    use imageproc::drawing::{draw_filled_circle_mut, draw_polygon_mut};
    use imageproc::point::Point;
    let mut out = img.clone();
    let (w, h) = out.dimensions();
    let r = (w.min(h) as f32 * rng.range(0.12, 0.22)).max(3.0) as i32;
    let cx = r + rng.below((w as i32 - 2 * r).max(1) as usize) as i32;
    let cy = r + rng.below((h as i32 - 2 * r).max(1) as usize) as i32;
    if rng.coin() {
        // emoji-like face
        draw_filled_circle_mut(&mut out, (cx, cy), r, Rgb([255, 204, 0]));
        let e = (r / 6).max(1);
        draw_filled_circle_mut(&mut out, (cx - r / 3, cy - r / 4), e, Rgb([40, 30, 20]));
        draw_filled_circle_mut(&mut out, (cx + r / 3, cy - r / 4), e, Rgb([40, 30, 20]));
        fill_rect(
            &mut out,
            (cx - r / 2) as i64,
            (cy + r / 3) as i64,
            r as u32,
            (r / 6).max(1) as u32,
            Rgb([40, 30, 20]),
        );
    } else {
        // five-pointed star logo
        let colour = random_colour(rng);
        let pts: Vec<Point<i32>> = (0..10)
            .map(|i| {
                let rad = if i % 2 == 0 { r as f32 } else { r as f32 * 0.45 };
                let a = std::f32::consts::PI * (i as f32 / 5.0) - std::f32::consts::FRAC_PI_2;
                Point::new(cx + (rad * a.cos()).round() as i32, cy + (rad * a.sin()).round() as i32)
            })
            .collect();
        draw_polygon_mut(&mut out, &pts, colour);
    }
    out
}

fn frame(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let (w, h) = img.dimensions();
    if rng.coin() {
        // plain padding in one colour
        let pad = (w.max(h) as f32 * rng.range(0.05, 0.2)) as u32;
        let mut out = RgbImage::from_pixel(w + 2 * pad, h + 2 * pad, random_colour(rng));
        imageops::replace(&mut out, img, i64::from(pad), i64::from(pad));
        out
    } else {
        // screenshot: title bar with buttons, side margins, a status bar
        let bar = (h as f32 * 0.08).max(8.0) as u32;
        let margin = (w as f32 * rng.range(0.03, 0.12)) as u32;
        let mut out =
            RgbImage::from_pixel(w + 2 * margin, h + 2 * bar + margin, Rgb([236, 236, 236]));
        let full_width = out.width();
        fill_rect(&mut out, 0, 0, full_width, bar, Rgb([60, 60, 70]));
        for (i, c) in [[237u8, 106, 94], [245, 191, 79], [98, 197, 84]].into_iter().enumerate() {
            imageproc::drawing::draw_filled_circle_mut(
                &mut out,
                ((bar as i32) * (i as i32 + 1), bar as i32 / 2),
                (bar / 4).max(1) as i32,
                Rgb(c),
            );
        }
        let scale = (bar / 12).max(1);
        draw_text(
            &mut out,
            i64::from(bar * 4),
            i64::from(bar / 2 - 4 * scale),
            scale,
            "shop.example/item",
            Rgb([230, 230, 230]),
        );
        imageops::replace(&mut out, img, i64::from(margin), i64::from(bar + margin));
        out
    }
}

fn filler(fillers: &[RgbImage], rng: &mut Rng, w: u32, h: u32) -> RgbImage {
    match fillers.len() {
        0 => RgbImage::from_pixel(w, h, Rgb([128, 128, 128])),
        n => imageops::resize(&fillers[rng.below(n)], w, h, imageops::FilterType::Triangle),
    }
}

fn collage(img: &RgbImage, rng: &mut Rng, fillers: &[RgbImage]) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cw, ch) = ((w / 2).max(1), (h / 2).max(1));
    let mut out = RgbImage::new(cw * 2, ch * 2);
    let slot = rng.below(4) as u32;
    for i in 0..4u32 {
        let tile = if i == slot {
            imageops::resize(img, cw, ch, imageops::FilterType::Triangle)
        } else {
            filler(fillers, rng, cw, ch)
        };
        imageops::replace(&mut out, &tile, i64::from((i % 2) * cw), i64::from((i / 2) * ch));
    }
    out
}

fn paste_small(img: &RgbImage, rng: &mut Rng, fillers: &[RgbImage]) -> RgbImage {
    let (w, h) = img.dimensions();
    let (bw, bh) = (w.max(h), (w.max(h) * 3 / 4).max(1));
    let mut out = filler(fillers, rng, bw, bh);
    let f = rng.range(0.2, 0.4);
    let sw = ((bw as f32 * f) as u32).max(1);
    let sh = ((sw as f32 * h as f32 / w as f32) as u32).clamp(1, bh);
    let small = imageops::resize(img, sw, sh, imageops::FilterType::Triangle);
    let x = rng.below((bw - sw + 1) as usize) as i64;
    let y = rng.below((bh - sh + 1) as usize) as i64;
    imageops::replace(&mut out, &small, x, y);
    out
}

fn perspective(img: &RgbImage, rng: &mut Rng) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let mut j = |s: f32| rng.range(0.05, 0.2) * s;
    let from = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
    let to = [(j(w), j(h)), (w - j(w), j(h)), (w - j(w), h - j(h)), (j(w), h - j(h))];
    match Projection::from_control_points(from, to) {
        Some(p) => warp(img, &p, Interpolation::Bilinear, Rgb([255, 255, 255])),
        None => img.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: u32, h: u32, shift: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let inside = (x / 20 + y / 20 + shift).is_multiple_of(3);
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, if inside { 230 } else { 40 }])
        })
    }

    #[test]
    fn attacks_are_deterministic_change_the_image_and_have_sane_sizes() {
        let img = sample(240, 180, 0);
        let fillers = vec![sample(100, 120, 1), sample(90, 60, 2)];
        for fam in Family::ALL {
            let a = apply(&img, fam, 7, &fillers);
            let b = apply(&img, fam, 7, &fillers);
            assert_eq!(a.image, b.image, "{} is not deterministic", fam.name());
            assert_eq!(a.jpeg_quality, b.jpeg_quality);
            let changed = a.image.dimensions() != img.dimensions()
                || a.image != img
                || a.jpeg_quality != SAVE_QUALITY;
            assert!(changed, "{} left the image unchanged", fam.name());
            let (w, h) = a.image.dimensions();
            assert!((40..=800).contains(&w) && (40..=800).contains(&h), "{}: {w}x{h}", fam.name());
            if fam == Family::Jpeg {
                assert!((15..=60).contains(&a.jpeg_quality));
            }
        }
    }

    #[test]
    fn seeds_give_different_edits() {
        let img = sample(240, 180, 0);
        let a = apply(&img, Family::Crop, 1, &[]);
        let b = apply(&img, Family::Crop, 2, &[]);
        assert!(a.image != b.image);
    }

    #[test]
    fn small_images_do_not_panic() {
        let img = sample(5, 3, 0);
        for fam in Family::ALL {
            let a = apply(&img, fam, 3, &[]);
            assert!(a.image.width() >= 1 && a.image.height() >= 1, "{}", fam.name());
        }
    }
}
