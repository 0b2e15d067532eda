//! Image decoding for knockoff: bytes of any supported file to an upright 8-bit RGB image, with
//! limits against hostile inputs, JPEG DCT-domain downscaling, and SIMD resizing.
//!
//! Formats are sniffed from the bytes (JPEG, PNG, WebP, GIF, BMP, TIFF). JPEGs go through
//! `jpeg-decoder` (which can decode at 1/2, 1/4 or 1/8 size for free), everything else, and any
//! JPEG that `jpeg-decoder` cannot handle, through the `image` crate. No colour management is done:
//! embedded ICC profiles are ignored.

use std::io::Cursor;

use fast_image_resize as fir;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

/// Limits against hostile images; refusals name what was exceeded.
///
/// The defaults suit marketplace photos: 30 MiB is above any listing photo a marketplace accepts
/// (they typically cap uploads at 10–20 MB), 20000 px per side covers panoramas and print scans,
/// and 100 Mpixel (about 300 MB of RGB) covers the largest phone and DSLR sensors while keeping
/// one decode's memory bounded on a small server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file, in bytes.
    pub max_file_bytes: u64,
    /// Largest accepted width, in pixels, as declared by the file header.
    pub max_width: u32,
    /// Largest accepted height, in pixels, as declared by the file header.
    pub max_height: u32,
    /// Largest accepted width x height, as declared by the file header.
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 30 MiB, 20000 x 20000 px, 100 Mpixel (see the type's documentation for why).
    fn default() -> Self {
        Limits {
            max_file_bytes: 30 * 1024 * 1024,
            max_width: 20_000,
            max_height: 20_000,
            max_pixels: 100_000_000,
        }
    }
}

impl From<&crate::input::limits::LimitsConfig> for Limits {
    /// The image limits of the configuration's `[limits]`.
    fn from(c: &crate::input::limits::LimitsConfig) -> Limits {
        Limits {
            max_file_bytes: c.max_image_bytes,
            max_width: c.max_image_side,
            max_height: c.max_image_side,
            max_pixels: c.max_image_pixels,
        }
    }
}

/// Decoded RGB image, 8 bits per channel, row-major, width*height*3 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB bytes, `width * height * 3` of them.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{}, {} bytes)", self.width, self.height, self.data.len())
    }
}

/// Why an image could not be decoded or resized.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file is bigger than `Limits::max_file_bytes`.
    #[error("image file is {bytes} bytes, more than the limit of {limit} bytes")]
    FileTooLarge {
        /// Size of the file.
        bytes: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// The header declares a width or height above `Limits::max_width` / `max_height`.
    #[error("image is {width}x{height} pixels, more than the limit of {max_width}x{max_height}")]
    DimensionsTooLarge {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// Width limit.
        max_width: u32,
        /// Height limit.
        max_height: u32,
    },
    /// The header declares more pixels than `Limits::max_pixels`.
    #[error("image is {width}x{height} = {pixels} pixels, more than the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width x height.
        pixels: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// The bytes are not one of the supported formats; `hint` says what they look like.
    #[error("not a supported image format ({hint}); supported formats are JPEG, PNG, WebP, GIF, BMP and TIFF")]
    UnknownFormat {
        /// What the bytes look like (e.g. "looks like HEIC/HEIF", "the file is empty").
        hint: String,
    },
    /// A supported format using a feature the decoders do not handle (e.g. an exotic JPEG mode).
    #[error("unsupported image feature: {0}")]
    Unsupported(String),
    /// The decoder would need more memory than the limits allow (second line of defence).
    #[error("decoding the image would exceed the memory limit: {0}")]
    MemoryLimit(String),
    /// Corrupt or truncated data; the message is the decoder's.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
    /// A resize was asked for an invalid size, or the input image buffer is inconsistent.
    #[error("invalid resize: {0}")]
    InvalidResize(String),
}

/// Decodes an image file's bytes to upright RGB: applies EXIF orientation, composites alpha on white,
/// converts greyscale / 16-bit / palette / CMYK to RGB, takes the first frame of animations.
/// `min_short_side`: the decoder may decode at reduced size (JPEG DCT scaling 1/2, 1/4, 1/8) as long as
/// the short side of the result stays >= min_short_side; 0 means full size.
pub fn decode(bytes: &[u8], limits: &Limits, min_short_side: u32) -> Result<RgbImage, DecodeError> {
    let len = bytes.len() as u64;
    if len > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge { bytes: len, limit: limits.max_file_bytes });
    }
    let format = sniff(bytes)?;
    if format == ImageFormat::Jpeg {
        if let Some(header) = jpeg_header(bytes) {
            check_dimensions(u32::from(header.width), u32::from(header.height), limits)?;
            if header.usable_by_jpeg_decoder() {
                return match decode_jpeg(bytes, &header, limits, min_short_side) {
                    Ok(img) => Ok(img),
                    // Truncated: an error, although the `image` crate would return a half-grey picture.
                    Err(JpegFailure::Truncated(e)) => Err(e),
                    // Fall back to the `image` crate; if it fails too, report jpeg-decoder's error.
                    Err(JpegFailure::Other(first)) => {
                        decode_with_image(bytes, format, limits).map_err(|_| first)
                    }
                };
            }
        }
    }
    decode_with_image(bytes, format, limits)
}

/// Resizes with a SIMD convolution filter (fast_image_resize, bilinear with antialiasing — the
/// same filter as Pillow's `BILINEAR`, which SSCD-style preprocessing uses) to exactly width x height.
pub fn resize(img: &RgbImage, width: u32, height: u32) -> Result<RgbImage, DecodeError> {
    check_buffer(img)?;
    if width == 0 || height == 0 {
        return Err(DecodeError::InvalidResize(format!(
            "target size {width}x{height} has a zero side"
        )));
    }
    if img.width == 0 || img.height == 0 {
        return Err(DecodeError::InvalidResize(format!(
            "source image {}x{} has a zero side",
            img.width, img.height
        )));
    }
    if (width, height) == (img.width, img.height) {
        return Ok(img.clone());
    }
    let src = fir::images::ImageRef::new(img.width, img.height, &img.data, fir::PixelType::U8x3)
        .map_err(|e| DecodeError::InvalidResize(e.to_string()))?;
    let mut dst = fir::images::Image::new(width, height, fir::PixelType::U8x3);
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| DecodeError::InvalidResize(e.to_string()))?;
    Ok(RgbImage { width, height, data: dst.into_vec() })
}

/// A `width` x `height` image whose pixel (u, v) is `img` sampled bilinearly at
/// `map(u + 0.5, v + 0.5)` (pixel coordinates of `img`, pixel centres at .5); `fill` where `map`
/// gives nothing or a point more than half a pixel outside `img` (edge pixels are repeated up
/// to there).
pub fn warp(
    img: &RgbImage,
    width: u32,
    height: u32,
    fill: [u8; 3],
    map: impl Fn(f64, f64) -> Option<[f64; 2]>,
) -> RgbImage {
    let (iw, ih) = (img.width as usize, img.height as usize);
    let mut data = Vec::with_capacity(width as usize * height as usize * 3);
    let at = |x: f64, y: f64, c: usize| -> f64 {
        let (x, y) =
            (x.clamp(0.0, iw as f64 - 1.0) as usize, y.clamp(0.0, ih as f64 - 1.0) as usize);
        f64::from(img.data[(y * iw + x) * 3 + c])
    };
    for v in 0..height {
        for u in 0..width {
            let Some([px, py]) = map(f64::from(u) + 0.5, f64::from(v) + 0.5) else {
                data.extend_from_slice(&fill);
                continue;
            };
            let (fx, fy) = (px - 0.5, py - 0.5);
            if iw == 0 || ih == 0 || !(fx > -1.0 && fy > -1.0 && fx < iw as f64 && fy < ih as f64) {
                data.extend_from_slice(&fill);
                continue;
            }
            let (x0, y0) = (fx.floor(), fy.floor());
            let (dx, dy) = (fx - x0, fy - y0);
            for c in 0..3 {
                let top = at(x0, y0, c) * (1.0 - dx) + at(x0 + 1.0, y0, c) * dx;
                let bottom = at(x0, y0 + 1.0, c) * (1.0 - dx) + at(x0 + 1.0, y0 + 1.0, c) * dx;
                data.push((top * (1.0 - dy) + bottom * dy).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    RgbImage { width, height, data }
}

/// The image shrunk so its long side is at most `side` pixels (keeping the aspect ratio, each side
/// at least 1), or the image itself when it is within that already.
pub fn fit_long_side(
    img: &RgbImage,
    side: u32,
) -> Result<std::borrow::Cow<'_, RgbImage>, DecodeError> {
    let long = img.width.max(img.height);
    if long <= side {
        return Ok(std::borrow::Cow::Borrowed(img));
    }
    let scale = side as f32 / long as f32;
    let w = ((img.width as f32 * scale).round() as u32).max(1);
    let h = ((img.height as f32 * scale).round() as u32).max(1);
    resize(img, w, h).map(std::borrow::Cow::Owned)
}

/// Resizes so the short side equals `short`, keeping the aspect ratio (long side rounded); returns the image unchanged if already that size.
pub fn resize_short_side(img: &RgbImage, short: u32) -> Result<RgbImage, DecodeError> {
    let (w, h) = short_side_size(img.width, img.height, short)?;
    resize(img, w, h)
}

/// Target size for `resize_short_side`: short side `short`, long side rounded, at least 1.
fn short_side_size(width: u32, height: u32, short: u32) -> Result<(u32, u32), DecodeError> {
    if width == 0 || height == 0 || short == 0 {
        return Err(DecodeError::InvalidResize(format!(
            "cannot resize a {width}x{height} image to short side {short}"
        )));
    }
    let scale = |long: u32, short_now: u32| -> u32 {
        let v =
            (u64::from(long) * u64::from(short) + u64::from(short_now) / 2) / u64::from(short_now);
        u32::try_from(v.max(1)).unwrap_or(u32::MAX)
    };
    Ok(if width <= height { (short, scale(height, width)) } else { (scale(width, height), short) })
}

// ---------------------------------------------------------------------------------------------
// format sniffing and limits
// ---------------------------------------------------------------------------------------------

/// The supported format of `bytes`, from its magic number, or `UnknownFormat` with a hint.
fn sniff(b: &[u8]) -> Result<ImageFormat, DecodeError> {
    let starts = |m: &[u8]| b.starts_with(m);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Ok(ImageFormat::Gif);
    }
    if starts(b"RIFF") && b.get(8..12) == Some(b"WEBP") {
        return Ok(ImageFormat::WebP);
    }
    if starts(b"BM") {
        return Ok(ImageFormat::Bmp);
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return Ok(ImageFormat::Tiff);
    }
    Err(DecodeError::UnknownFormat { hint: format_hint(b) })
}

/// Says what unsupported bytes look like, for error messages.
fn format_hint(b: &[u8]) -> String {
    let starts = |m: &[u8]| b.starts_with(m);
    let known = if b.is_empty() {
        Some("the file is empty")
    } else if b.get(4..8) == Some(b"ftyp") {
        match b.get(8..12) {
            Some(b"avif") | Some(b"avis") => Some("looks like AVIF"),
            Some(b"heic") | Some(b"heix") | Some(b"hevc") | Some(b"hevx") | Some(b"mif1")
            | Some(b"msf1") | Some(b"heim") | Some(b"heis") => Some("looks like HEIC/HEIF"),
            Some(b"crx ") => Some("looks like a Canon CR3 raw photo"),
            _ => Some("looks like an ISO media file (video, HEIF or AVIF)"),
        }
    } else if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL \r\n\x87\n") {
        Some("looks like JPEG XL")
    } else if starts(&[0xFF, 0xD8]) {
        Some("starts like a JPEG but the third byte is not a marker")
    } else if starts(b"RIFF") {
        Some("a RIFF file that is not WebP")
    } else if starts(b"8BPS") {
        Some("looks like a Photoshop PSD")
    } else if starts(b"%PDF") {
        Some("looks like a PDF")
    } else if starts(&[0, 0, 1, 0]) {
        Some("looks like a Windows icon (ICO)")
    } else if starts(b"qoif") {
        Some("looks like QOI")
    } else if starts(&[0x1F, 0x8B]) {
        Some("looks like gzip-compressed data")
    } else if starts(b"PK\x03\x04") {
        Some("looks like a ZIP archive")
    } else if starts(b"II\xBC") {
        Some("looks like JPEG XR")
    } else {
        None
    };
    if let Some(k) = known {
        return k.to_string();
    }
    let text = b
        .iter()
        .skip_while(|c| c.is_ascii_whitespace() || **c == 0xEF || **c == 0xBB || **c == 0xBF);
    match text.clone().next() {
        Some(b'<') => {
            return "looks like text: HTML, XML or SVG (an error page instead of an image?)".into()
        }
        Some(b'{') | Some(b'[') => return "looks like JSON text".into(),
        _ => {}
    }
    let head: Vec<String> = b.iter().take(8).map(|c| format!("{c:02X}")).collect();
    format!("unrecognised first bytes {}", head.join(" "))
}

/// Refuses declared dimensions over the limits.
fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), DecodeError> {
    if width > limits.max_width || height > limits.max_height {
        return Err(DecodeError::DimensionsTooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(DecodeError::TooManyPixels { width, height, pixels, limit: limits.max_pixels });
    }
    Ok(())
}

/// Checks that an image's buffer matches its dimensions.
fn check_buffer(img: &RgbImage) -> Result<(), DecodeError> {
    let want = img.width as usize * img.height as usize * 3;
    if img.data.len() != want {
        return Err(DecodeError::InvalidResize(format!(
            "image buffer has {} bytes, but {}x{} RGB needs {want}",
            img.data.len(),
            img.width,
            img.height
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JPEG via jpeg-decoder
// ---------------------------------------------------------------------------------------------

/// What a JPEG's markers say before the first scan.
#[derive(Debug, Clone, Copy)]
struct JpegHeader {
    width: u16,
    height: u16,
    components: u8,
    precision: u8,
}

impl JpegHeader {
    /// Whether `jpeg-decoder` can decode this without reaching one of its panicking paths
    /// (its `info()` panics on component counts other than 1, 3, 4 and on precision < 2).
    fn usable_by_jpeg_decoder(&self) -> bool {
        matches!(self.components, 1 | 3 | 4) && (2..=16).contains(&self.precision)
    }
}

/// Walks the JPEG markers up to the frame header (SOFn); `None` if none is found.
fn jpeg_header(b: &[u8]) -> Option<JpegHeader> {
    let mut i = 2; // after SOI
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *b.get(i)? == 0xFF && *b.get(i + 1)? == 0xFF {
            i += 1;
        }
        if *b.get(i)? != 0xFF {
            return None;
        }
        let marker = *b.get(i + 1)?;
        i += 2;
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue; // standalone markers
        }
        let len = usize::from(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
        if len < 2 {
            return None;
        }
        let seg = b.get(i + 2..i + len)?;
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                let &[precision, h0, h1, w0, w1, components, ..] = seg else {
                    return None;
                };
                return Some(JpegHeader {
                    precision,
                    height: u16::from_be_bytes([h0, h1]),
                    width: u16::from_be_bytes([w0, w1]),
                    components,
                });
            }
            0xDA | 0xD9 => return None, // scan or end before any frame header
            _ => {}
        }
        i += len;
    }
}

/// Decodes a JPEG with jpeg-decoder, DCT-scaled when `min_short_side` allows it.
fn decode_jpeg(
    bytes: &[u8],
    header: &JpegHeader,
    limits: &Limits,
    min_short_side: u32,
) -> Result<RgbImage, JpegFailure> {
    let mut dec = jpeg_decoder::Decoder::new(bytes);
    dec.set_max_decoding_buffer_size(
        usize::try_from(limits.max_pixels.saturating_mul(4)).unwrap_or(usize::MAX),
    );
    dec.read_info().map_err(jpeg_error)?;
    if min_short_side > 0 {
        let (fw, fh) = (u32::from(header.width), u32::from(header.height));
        // Smallest of 1/8, 1/4, 1/2 whose output keeps the short side >= min_short_side.
        let scaled = |len: u32, num: u32| (len * num).div_ceil(8);
        if let Some(num) =
            [1, 2, 4].into_iter().find(|&n| scaled(fw, n).min(scaled(fh, n)) >= min_short_side)
        {
            let (w, h) = (scaled(fw, num), scaled(fh, num));
            let (rw, rh) = dec.scale(w as u16, h as u16).map_err(jpeg_error)?;
            if u32::from(rw.min(rh)) < min_short_side {
                dec.scale(header.width, header.height).map_err(jpeg_error)?; // tiny image: full size
            }
        }
    }
    let pixels = dec.decode().map_err(jpeg_error)?;
    let info = dec.info().ok_or_else(|| DecodeError::Corrupt("JPEG has no frame header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let n = w as usize * h as usize;
    let need = n * info.pixel_format.pixel_bytes();
    let Some(px) = pixels.get(..need) else {
        return Err(DecodeError::Corrupt(format!(
            "JPEG decoder returned {} bytes for a {w}x{h} image, expected {need}",
            pixels.len()
        ))
        .into());
    };
    let data = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => px.to_vec(),
        jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&v| [v, v, v]).collect(),
        jpeg_decoder::PixelFormat::L16 => px
            .chunks_exact(2)
            .flat_map(|c| {
                let v = u16_to_u8(u16::from_be_bytes([c[0], c[1]]));
                [v, v, v]
            })
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => {
            // jpeg-decoder returns 255 - stored: CMYK JPEGs store it inverted (Adobe convention,
            // also assumed by Pillow when the Adobe segment is missing), so this is the true CMYK.
            px.chunks_exact(4)
                .flat_map(|p| {
                    let [c, m, y, k] = [p[0], p[1], p[2], p[3]];
                    let kk = 255 - u32::from(k);
                    let ch = |x: u8| mul255((255 - u32::from(x)) * kk);
                    [ch(c), ch(m), ch(y)]
                })
                .collect()
        }
    };
    let mut img = RgbImage { width: w, height: h, data };
    if let Some(o) = dec.exif_data().and_then(exif_orientation) {
        img = orient(img, o)?;
    }
    Ok(img)
}

/// The EXIF orientation (1–8) of a raw EXIF block (TIFF header first), parsed with kamadak-exif.
fn exif_orientation(raw: &[u8]) -> Option<Orientation> {
    let exif = exif::Reader::new().read_raw(raw.to_vec()).ok()?;
    let field = exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?;
    let v = field.value.get_uint(0)?;
    Orientation::from_exif(u8::try_from(v).ok()?)
}

/// Applies an orientation to an RGB image (via the `image` crate's implementation).
fn orient(img: RgbImage, o: Orientation) -> Result<RgbImage, DecodeError> {
    if o == Orientation::NoTransforms {
        return Ok(img);
    }
    let (w, h) = (img.width, img.height);
    let buf = image::RgbImage::from_raw(w, h, img.data)
        .ok_or_else(|| DecodeError::Corrupt(format!("decoded buffer does not match {w}x{h}")))?;
    let mut d = DynamicImage::ImageRgb8(buf);
    d.apply_orientation(o);
    let (w, h) = (d.width(), d.height());
    Ok(RgbImage { width: w, height: h, data: d.into_rgb8().into_raw() })
}

/// A jpeg-decoder failure: truncation is final, anything else may be retried with `image`.
enum JpegFailure {
    Truncated(DecodeError),
    Other(DecodeError),
}

impl From<DecodeError> for JpegFailure {
    fn from(e: DecodeError) -> Self {
        JpegFailure::Other(e)
    }
}

fn jpeg_error(e: jpeg_decoder::Error) -> JpegFailure {
    match e {
        jpeg_decoder::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            JpegFailure::Truncated(DecodeError::Corrupt(
                "JPEG data ends before the image is complete (truncated file)".into(),
            ))
        }
        jpeg_decoder::Error::Unsupported(f) => {
            JpegFailure::Other(DecodeError::Unsupported(format!("JPEG: {f:?}")))
        }
        other => JpegFailure::Other(DecodeError::Corrupt(format!("JPEG: {other}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// everything else via the image crate
// ---------------------------------------------------------------------------------------------

/// Decodes with the `image` crate: header first (limits), then pixels, orientation, RGB.
fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<RgbImage, DecodeError> {
    // PNG: the declared size first, before the decoder sizes its row buffers (a PNG 22 million
    // pixels wide and one high was refused as "memory limit exceeded" instead; found by fuzzing)
    if let (ImageFormat::Png, Some(ihdr)) = (format, bytes.get(12..24)) {
        if &ihdr[..4] == b"IHDR" {
            let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            check_dimensions(be(&ihdr[4..8]), be(&ihdr[8..12]), limits)?;
        }
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut img_limits = image::Limits::default();
    // Width and height are checked by `check_dimensions` below, which names what was exceeded.
    // Room for the largest allowed image as 16-bit RGBA plus decoder working memory.
    img_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(img_limits);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(e, limits))?;
    let (w, h) = decoder.dimensions();
    check_dimensions(w, h, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut dynimg = DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, limits))?;
    dynimg.apply_orientation(orientation);
    Ok(to_rgb(dynimg))
}

fn image_error(e: ImageError, limits: &Limits) -> DecodeError {
    match e {
        ImageError::Limits(l) => match l.kind() {
            image::error::LimitErrorKind::DimensionError => DecodeError::MemoryLimit(format!(
                "{l} (limits: {}x{} pixels)",
                limits.max_width, limits.max_height
            )),
            _ => DecodeError::MemoryLimit(l.to_string()),
        },
        ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Converts any decoded image to 8-bit RGB, compositing alpha on white.
fn to_rgb(img: DynamicImage) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    let data = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().flat_map(|v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(_) | DynamicImage::ImageRgba8(_) => img
            .into_rgba8()
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u32::from(p[3]);
                let on_white = |c: u8| mul255(u32::from(c) * a + 255 * (255 - a));
                [on_white(p[0]), on_white(p[1]), on_white(p[2])]
            })
            .collect(),
        DynamicImage::ImageLumaA16(_) | DynamicImage::ImageRgba16(_) => img
            .into_rgba16()
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u64::from(p[3]);
                let on_white = |c: u16| {
                    let v = (u64::from(c) * a + 65535 * (65535 - a) + 32767) / 65535;
                    u16_to_u8(v as u16)
                };
                [on_white(p[0]), on_white(p[1]), on_white(p[2])]
            })
            .collect(),
        DynamicImage::ImageRgba32F(_) => {
            let rgba = img.into_rgba8();
            return to_rgb(DynamicImage::ImageRgba8(rgba));
        }
        other if other.color().has_alpha() => {
            let rgba = other.into_rgba8();
            return to_rgb(DynamicImage::ImageRgba8(rgba));
        }
        other => other.into_rgb8().into_raw(),
    };
    RgbImage { width, height, data }
}

/// Rounded `x / 255` for x <= 255 * 255.
fn mul255(x: u32) -> u8 {
    ((x + 127) / 255).min(255) as u8
}

/// 16-bit to 8-bit with rounding (65535 -> 255, 0 -> 0).
fn u16_to_u8(v: u16) -> u8 {
    ((u32::from(v) * 255 + 32767) / 65535) as u8
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/formats/");

    fn read(name: &str) -> Vec<u8> {
        let path = format!("{DIR}{name}");
        std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
    }

    fn load(name: &str) -> RgbImage {
        decode(&read(name), &Limits::default(), 0).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn upright() -> RgbImage {
        load("upright.png")
    }

    fn grey(img: &RgbImage) -> RgbImage {
        let data = img
            .data
            .chunks_exact(3)
            .flat_map(|p| {
                let l =
                    ((299 * u32::from(p[0]) + 587 * u32::from(p[1]) + 114 * u32::from(p[2]) + 500)
                        / 1000) as u8;
                [l, l, l]
            })
            .collect();
        RgbImage { width: img.width, height: img.height, data }
    }

    /// Mean absolute difference per channel value.
    fn mad(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!((a.width, a.height), (b.width, b.height), "sizes differ");
        let s: u64 = a.data.iter().zip(&b.data).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
        s as f64 / a.data.len() as f64
    }

    #[test]
    fn every_format_decodes_to_the_right_picture() {
        let up = upright();
        assert_eq!(up.data.len(), (up.width * up.height * 3) as usize);
        for (name, tol) in [
            ("rgb.jpg", 6.0),
            ("progressive.jpg", 6.0),
            ("cmyk.jpg", 8.0),
            ("palette.gif", 8.0),
            ("animated.gif", 8.0),
            ("rgb.webp", 8.0),
            ("rgb.bmp", 0.5),
            ("rgb.tiff", 0.5),
            ("exif_rot6.jpg", 6.0),
            ("exif_rot3.jpg", 6.0),
            ("exif_rot8.jpg", 6.0),
        ] {
            let img = load(name);
            assert_eq!((img.width, img.height), (up.width, up.height), "{name}: size");
            let d = mad(&img, &up);
            eprintln!("{name}: mean abs diff {d:.2}");
            assert!(d < tol, "{name}: mean abs diff {d:.2} >= {tol}");
        }
        let g = grey(&up);
        for (name, tol) in [("grey.jpg", 5.0), ("grey16.png", 1.5)] {
            let img = load(name);
            let d = mad(&img, &g);
            eprintln!("{name}: mean abs diff vs grey {d:.2}");
            assert!(d < tol, "{name}: mean abs diff {d:.2} >= {tol}");
            assert!(
                img.data.chunks_exact(3).all(|p| p[0] == p[1] && p[1] == p[2]),
                "{name}: not grey"
            );
        }
    }

    /// `img` is close to `up` and far from its negative (catches inverted CMYK, wrong GIF frame).
    fn assert_upright_not_negative(img: &RgbImage, up: &RgbImage) {
        let negative = RgbImage { data: up.data.iter().map(|v| 255 - v).collect(), ..up.clone() };
        assert!(mad(img, up) < 8.0);
        assert!(mad(img, &negative) > 50.0);
    }

    #[test]
    fn animated_gif_gives_the_first_frame_not_the_second() {
        let up = upright();
        let img = load("animated.gif");
        assert_upright_not_negative(&img, &up);
    }

    #[test]
    fn exif_rotations_come_out_upright_and_raw_pixels_are_not() {
        let up = upright();
        for name in ["exif_rot6.jpg", "exif_rot3.jpg", "exif_rot8.jpg"] {
            // Through the image crate without orientation, the stored pixels differ from upright.
            let raw = image::load_from_memory(&read(name)).expect("fixture").into_rgb8();
            let raw = RgbImage { width: raw.width(), height: raw.height(), data: raw.into_raw() };
            if (raw.width, raw.height) == (up.width, up.height) {
                assert!(mad(&raw, &up) > 20.0, "{name}: stored pixels already upright?");
            }
            let img = load(name);
            assert!(mad(&img, &up) < 6.0, "{name}");
            // Also with DCT scaling (orientation applied after scaling).
            let small = decode(&read(name), &Limits::default(), 1).expect("scaled");
            assert_eq!(
                (small.width, small.height),
                (up.width.div_ceil(8), up.height.div_ceil(8)),
                "{name}: 1/8 scale"
            );
            let back = resize(&small, up.width, up.height).expect("resize");
            assert!(mad(&back, &up) < 25.0, "{name}: scaled decode not upright");
        }
    }

    #[test]
    fn all_eight_exif_orientations() {
        // Build a JPEG whose stored pixels are a transform of `up`, tagged so that applying the
        // orientation gives `up` back; inserts a hand-made EXIF APP1 segment.
        let (w, h) = (64u32, 32u32);
        let up = image::RgbImage::from_fn(w, h, |x, y| {
            if x < 16 && y < 8 {
                image::Rgb([250, 30, 30])
            } else if x >= 48 {
                image::Rgb([30, 30, 250])
            } else {
                image::Rgb([30, 200, 30])
            }
        });
        let upi = RgbImage { width: w, height: h, data: up.clone().into_raw() };
        for o in 1u8..=8 {
            // stored = inverse transform of `up`
            let mut stored = DynamicImage::ImageRgb8(up.clone());
            let inverse = match o {
                6 => Orientation::Rotate270,
                8 => Orientation::Rotate90,
                other => Orientation::from_exif(other).expect("valid"), // self-inverse ones
            };
            stored.apply_orientation(inverse);
            let mut jpg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 95)
                .encode_image(&stored)
                .expect("encode");
            let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
            tiff.extend_from_slice(&[0, o, 0, 0, 0, 0, 0, 0]);
            let mut app1 = vec![0xFF, 0xE1];
            app1.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
            app1.extend_from_slice(b"Exif\0\0");
            app1.extend_from_slice(&tiff);
            jpg.splice(2..2, app1);
            let img = decode(&jpg, &Limits::default(), 0).expect("decode");
            assert_eq!((img.width, img.height), (w, h), "orientation {o}");
            assert!(mad(&img, &upi) < 6.0, "orientation {o}: {}", mad(&img, &upi));
        }
    }

    #[test]
    fn cmyk_is_not_inverted() {
        let up = upright();
        let img = load("cmyk.jpg");
        assert_upright_not_negative(&img, &up);
    }

    #[test]
    fn alpha_is_composited_on_white() {
        let bytes = read("rgba.png");
        let rgba = image::load_from_memory(&bytes).expect("fixture").into_rgba8();
        let img = decode(&bytes, &Limits::default(), 0).expect("decode");
        assert_eq!((img.width, img.height), rgba.dimensions());
        let (mut transparent, mut half) = (0, 0);
        for (p, q) in rgba.pixels().zip(img.data.chunks_exact(3)) {
            let a = u32::from(p[3]);
            if a == 0 {
                transparent += 1;
                assert_eq!(q, [255, 255, 255]);
            } else {
                if a < 255 {
                    half += 1;
                }
                for c in 0..3 {
                    let want = (u32::from(p[c]) * a + 255 * (255 - a)) as f64 / 255.0;
                    assert!((f64::from(q[c]) - want).abs() <= 1.0, "{q:?} vs {want}");
                }
            }
        }
        assert!(transparent > 0 && half > 0, "fixture has no transparent / half-transparent area");
        // The opaque area matches upright.png.
        let up = upright();
        let opaque: Vec<usize> =
            rgba.pixels().enumerate().filter(|(_, p)| p[3] == 255).map(|(i, _)| i).collect();
        let diff: u64 = opaque
            .iter()
            .flat_map(|&i| (0..3).map(move |c| i * 3 + c))
            .map(|k| u64::from(img.data[k].abs_diff(up.data[k])))
            .sum();
        assert!(diff as f64 / ((opaque.len() * 3) as f64) < 1.0);
    }

    #[test]
    fn sixteen_bit_is_scaled_not_truncated() {
        let mut img = image::ImageBuffer::<image::Rgb<u16>, _>::new(4, 1);
        for (i, v) in [0u16, 257, 32896, 65535].into_iter().enumerate() {
            img.put_pixel(i as u32, 0, image::Rgb([v, v, v]));
        }
        let mut png = Vec::new();
        DynamicImage::ImageRgb16(img)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .expect("encode");
        let out = decode(&png, &Limits::default(), 0).expect("decode");
        assert_eq!(out.data, [0, 0, 0, 1, 1, 1, 128, 128, 128, 255, 255, 255]);
    }

    #[test]
    fn truncated_and_corrupt_bytes_are_errors_not_panics() {
        for name in [
            "rgb.jpg",
            "progressive.jpg",
            "cmyk.jpg",
            "grey.jpg",
            "rgba.png",
            "grey16.png",
            "palette.gif",
            "animated.gif",
            "rgb.webp",
            "rgb.bmp",
            "rgb.tiff",
            "exif_rot6.jpg",
        ] {
            let bytes = read(name);
            // Cut at many points: each must be an error or (for lenient decoders) an image, never a panic.
            for cut in [3, 8, 16, 30, 64, 100, 200, 400, bytes.len() / 4, bytes.len() / 2] {
                if cut < bytes.len() {
                    let _ = decode(&bytes[..cut], &Limits::default(), 0);
                    let _ = decode(&bytes[..cut], &Limits::default(), 100);
                }
            }
            // Header-only cuts must be errors.
            let r = decode(&bytes[..bytes.len().min(40)], &Limits::default(), 0);
            assert!(r.is_err(), "{name}: 40-byte prefix decoded");
            // Corrupt bytes in the body: deterministic pseudo-random flips.
            let mut state = 0x2545F4914F6CDD1Du64;
            for _ in 0..40 {
                let mut b = bytes.clone();
                for _ in 0..8 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let i = (state as usize) % b.len();
                    b[i] ^= (state >> 32) as u8 | 1;
                }
                if let Ok(img) = decode(&b, &Limits::default(), 0) {
                    assert_eq!(img.data.len(), (img.width * img.height * 3) as usize);
                }
            }
        }
        // Half a JPEG or PNG is reported as corrupt.
        for name in ["rgb.jpg", "rgba.png"] {
            let bytes = read(name);
            match decode(&bytes[..bytes.len() / 2], &Limits::default(), 0) {
                Err(DecodeError::Corrupt(msg)) => eprintln!("{name} truncated: {msg}"),
                other => panic!("{name} truncated: {other:?}"),
            }
        }
    }

    /// CRC-32 (PNG) of a chunk's type and data.
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // An IDAT of zeros and IEND, so only the header is hostile.
        let idat = b"IDAT\x78\x9c\x63\x00\x00\x00\x01\x00\x01".to_vec();
        png.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
        png.extend_from_slice(&idat);
        png.extend_from_slice(&crc32(&idat).to_be_bytes());
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IEND");
        png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
        png
    }

    #[test]
    fn huge_declared_dimensions_are_refused_before_decoding() {
        let r = decode(&png_claiming(60000, 60000), &Limits::default(), 0);
        assert!(
            matches!(r, Err(DecodeError::DimensionsTooLarge { width: 60000, height: 60000, .. })),
            "{r:?}"
        );
        // Within the side limits but over the pixel limit.
        let r = decode(&png_claiming(15000, 15000), &Limits::default(), 0);
        assert!(matches!(r, Err(DecodeError::TooManyPixels { pixels: 225_000_000, .. })), "{r:?}");
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("15000x15000") && msg.contains("limit"), "{msg}");
        // Same for a JPEG header (SOF patched to 60000x60000).
        let mut jpg = read("rgb.jpg");
        let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline SOF");
        jpg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
        let r = decode(&jpg, &Limits::default(), 0);
        assert!(matches!(r, Err(DecodeError::DimensionsTooLarge { .. })), "{r:?}");
        // And a small image with tight limits.
        let tight = Limits { max_width: 100, ..Limits::default() };
        let r = decode(&read("rgb.webp"), &tight, 0);
        assert!(matches!(r, Err(DecodeError::DimensionsTooLarge { max_width: 100, .. })), "{r:?}");
    }

    #[test]
    fn file_size_limit_comes_first() {
        let bytes = read("rgb.bmp");
        let limits = Limits { max_file_bytes: 1000, ..Limits::default() };
        let r = decode(&bytes, &limits, 0);
        assert!(matches!(r, Err(DecodeError::FileTooLarge { limit: 1000, .. })), "{r:?}");
        // Even before format sniffing.
        let r = decode(&[0u8; 2000], &limits, 0);
        assert!(matches!(r, Err(DecodeError::FileTooLarge { bytes: 2000, .. })), "{r:?}");
    }

    #[test]
    fn unknown_formats_say_what_they_look_like() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty"),
            (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIC"),
            (b"<!DOCTYPE html><html>", "HTML"),
            (b"\x01\x02\x03\x04\x05\x06\x07\x08\x09", "01 02 03"),
        ];
        for (bytes, want) in cases {
            match decode(bytes, &Limits::default(), 0) {
                Err(e @ DecodeError::UnknownFormat { .. }) => {
                    assert!(e.to_string().contains(want), "{e}")
                }
                other => panic!("{want}: {other:?}"),
            }
        }
    }

    #[test]
    fn jpeg_dct_scaling_happens() {
        let (w, h) = (2400u32, 1600u32);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) / 20 % 256) as u8])
        });
        let mut jpg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 85)
            .encode_image(&img)
            .expect("encode");
        let small = decode(&jpg, &Limits::default(), 288).expect("decode");
        let short = small.width.min(small.height);
        assert!((288..=575).contains(&short), "short side {short}");
        assert_eq!((small.width, small.height), (600, 400)); // 1/4: 1/8 would give 200 < 288
        let full = decode(&jpg, &Limits::default(), 0).expect("decode");
        assert_eq!((full.width, full.height), (w, h));
        let tiny = decode(&jpg, &Limits::default(), 1).expect("decode");
        assert_eq!((tiny.width, tiny.height), (300, 200));
        // Asking for more than the image has gives full size.
        let big = decode(&jpg, &Limits::default(), 5000).expect("decode");
        assert_eq!((big.width, big.height), (w, h));
        // Scaled and full decodes agree after resizing.
        let a = resize_short_side(&small, 288).expect("resize");
        let b = resize_short_side(&full, 288).expect("resize");
        assert_eq!((a.width, a.height), (432, 288));
        assert!(mad(&a, &b) < 6.0, "{}", mad(&a, &b));
    }

    #[test]
    fn resize_sizes_and_identity() {
        let up = upright();
        let r = resize(&up, 50, 20).expect("resize");
        assert_eq!((r.width, r.height, r.data.len()), (50, 20, 3000));
        let same = resize_short_side(&up, up.width.min(up.height)).expect("resize");
        assert_eq!(same, up);
        let s =
            resize_short_side(&RgbImage { width: 1000, height: 333, data: vec![7; 999_000] }, 288)
                .expect("resize");
        assert_eq!((s.width, s.height), (865, 288)); // 1000 * 288 / 333 = 864.86 -> 865
        assert!(s.data.iter().all(|&v| v == 7));
        let t = resize_short_side(&RgbImage { width: 10, height: 30, data: vec![0; 900] }, 288)
            .expect("upscale");
        assert_eq!((t.width, t.height), (288, 864));
        assert!(resize(&up, 0, 10).is_err());
        assert!(resize(&RgbImage { width: 10, height: 10, data: vec![0; 10] }, 5, 5).is_err());
        // Colours survive a downscale.
        let small = resize(&up, up.width / 4, up.height / 4).expect("resize");
        let back = resize(&small, up.width, up.height).expect("resize");
        assert!(mad(&back, &up) < 20.0);
    }
}
