//! The regions of a photo searched besides the whole photo: the four quadrants, the centre half,
//! an inset (`inset::find`) and the photo turned back when it is turned (`tilt::find`), each with
//! where it lies in the photo.

use crate::vision::decode::RgbImage;

/// The `w` x `h` rectangle at (`x0`, `y0`) of an image that contains it.
pub fn crop(img: &RgbImage, x0: u32, y0: u32, w: u32, h: u32) -> RgbImage {
    let stride = img.width as usize * 3;
    let mut data = Vec::with_capacity(w as usize * h as usize * 3);
    for y in y0 as usize..(y0 + h) as usize {
        let start = y * stride + x0 as usize * 3;
        data.extend_from_slice(&img.data[start..start + w as usize * 3]);
    }
    RgbImage { width: w, height: h, data }
}

/// Names of the fixed regions searched besides the whole photo when region queries are on.
pub const REGIONS: [&str; 5] = ["top-left", "top-right", "bottom-left", "bottom-right", "centre"];

/// Name of the region that is an inset of the photo (`inset::find`), searched when there is one.
pub const INSET: &str = "inset";

/// Name of the region that is the photo turned back when it is turned inside its frame
/// (`tilt::find`), searched when it is.
pub const STRAIGHTENED: &str = "straightened";

/// Part of a photo: left, top, right and bottom edges as shares (0 to 1) of its width and height.
pub type Area = [f32; 4];

/// The whole photo as an `Area`.
pub const WHOLE: Area = [0.0, 0.0, 1.0, 1.0];

/// The regions of `REGIONS`, in order (the four quadrants and the centre half of the photo), then
/// the photo's inset if it has one, so a product that fills only part of a listing photo (a
/// collage tile, a product small in a scene, a photo pasted onto another) is also compared on its
/// own; then the photo turned back if it is turned inside its frame. Each comes with where it is
/// in the photo.
pub fn regions(img: &RgbImage) -> Vec<(&'static str, Area, RgbImage)> {
    let (w, h) = (img.width, img.height);
    let (hw, hh) = ((w / 2).max(1), (h / 2).max(1));
    let cut = |name, x: u32, y: u32, cw: u32, ch: u32| {
        let area = [
            x as f32 / w as f32,
            y as f32 / h as f32,
            (x + cw) as f32 / w as f32,
            (y + ch) as f32 / h as f32,
        ];
        (name, area, crop(img, x, y, cw, ch))
    };
    let mut out = vec![
        cut(REGIONS[0], 0, 0, hw, hh),
        cut(REGIONS[1], w - hw, 0, hw, hh),
        cut(REGIONS[2], 0, h - hh, hw, hh),
        cut(REGIONS[3], w - hw, h - hh, hw, hh),
        cut(REGIONS[4], (w - hw) / 2, (h - hh) / 2, hw, hh),
    ];
    if let Some(r) = crate::vision::inset::find(img) {
        out.push(cut(INSET, r.x, r.y, r.width, r.height));
    }
    if let Some(t) = crate::vision::tilt::find(img) {
        out.push((STRAIGHTENED, WHOLE, crate::vision::tilt::straighten(img, &t)));
    }
    out
}
