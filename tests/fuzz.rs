//! Property tests on stable Rust (proptest) over what counterfeiters control: photo addresses and
//! redirect targets, and the bytes of their photos (format sniffing, headers, EXIF orientation,
//! size limits). Every input gives Ok or a clear error, never a panic, and a decoded image never
//! exceeds the pixel limits. The inputs that found bugs are kept in `tests/corpus/` and run by
//! `corpus_inputs_give_answers_not_panics`.
//!
//! Cases per property: 256 by default (all properties take a few seconds in release); set
//! `PROPTEST_CASES` for a longer run, e.g. `PROPTEST_CASES=20000 cargo test --release --test fuzz`.
//! The seed is fixed so that CI is repeatable; `PROPTEST_RNG_SEED=N` explores other inputs.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use knockoff::decode::{decode, Limits};
use knockoff::internals::{check_url, redirect_target};
use knockoff::ImageRef;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// Small limits, so that a mutated header that passes them still decodes quickly.
const LIMITS: Limits =
    Limits { max_file_bytes: 1 << 20, max_width: 640, max_height: 640, max_pixels: 120_000 };

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let seed =
        std::env::var("PROPTEST_RNG_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x6b6e_6f63);
    Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(seed), ..Config::default() }
}

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// A small picture with some structure (gradients and a block), `w` x `h`.
fn picture(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let block = (8..16).contains(&x) && (4..10).contains(&y);
        image::Rgb([(x * 10) as u8, (y * 15) as u8, if block { 250 } else { 40 }])
    })
}

/// Small valid files of every format the decoder sniffs: made here (PNG, JPEG, GIF, WebP, BMP,
/// TIFF, greyscale and RGBA PNG) and from testdata (an EXIF-rotated JPEG, a lossy WebP, a
/// progressive JPEG).
fn seeds() -> Vec<Vec<u8>> {
    use image::ImageFormat as F;
    let rgb = image::DynamicImage::ImageRgb8(picture(24, 16));
    let mut out = Vec::new();
    for (img, format) in [
        (rgb.clone(), F::Png),
        (rgb.clone(), F::Jpeg),
        (rgb.clone(), F::Gif),
        (rgb.clone(), F::WebP),
        (rgb.clone(), F::Bmp),
        (rgb.clone(), F::Tiff),
        (image::DynamicImage::ImageLuma8(rgb.to_luma8()), F::Png),
        (image::DynamicImage::ImageRgba8(rgb.to_rgba8()), F::Png),
    ] {
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), format).expect("encode a seed");
        out.push(bytes);
    }
    let formats = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/formats");
    for name in ["exif_rot6.jpg", "rgb.webp", "progressive.jpg"] {
        out.push(std::fs::read(formats.join(name)).expect("testdata file"));
    }
    out
}

/// One change to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips one bit at a position (taken modulo the length).
    Flip(usize, u8),
    /// Sets one byte.
    Set(usize, u8),
    /// Writes a big-endian and a little-endian 32-bit number (a width, a length, an offset).
    Number(usize, u32),
    /// Cuts the file.
    Truncate(usize),
    /// Inserts bytes.
    Insert(usize, Vec<u8>),
    /// Removes a run of bytes.
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let big = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0xFFFF),
        Just(0x7FFF_FFFF),
        Just(u32::MAX),
        any::<u32>(),
        0u32..700
    ];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        (any::<usize>(), big).prop_map(|(p, n)| Mutation::Number(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Remove(p, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |p: usize| p % bytes.len();
    match m {
        Mutation::Flip(p, b) => {
            let i = at(*p);
            bytes[i] ^= 1 << b;
        }
        Mutation::Set(p, v) => {
            let i = at(*p);
            bytes[i] = *v;
        }
        Mutation::Number(p, n) => {
            let i = at(*p);
            let bytes_be = n.to_be_bytes();
            let bytes_le = n.to_le_bytes();
            let src = if p % 2 == 0 { bytes_be } else { bytes_le };
            for (k, b) in src.iter().enumerate() {
                if let Some(x) = bytes.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        Mutation::Truncate(p) => bytes.truncate(at(*p)),
        Mutation::Insert(p, new) => {
            let i = at(*p);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Remove(p, n) => {
            let i = at(*p);
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
    }
}

/// Decodes `bytes`; an image that comes back is within the limits and consistent.
fn decodes_within_limits(bytes: &[u8], min_short_side: u32) -> Result<(), TestCaseError> {
    if let Ok(img) = decode(bytes, &LIMITS, min_short_side) {
        prop_assert!(img.width >= 1 && img.height >= 1, "empty image {img:?}");
        prop_assert!(
            img.width <= LIMITS.max_width && img.height <= LIMITS.max_height,
            "{img:?} over the side limit"
        );
        prop_assert!(
            u64::from(img.width) * u64::from(img.height) <= LIMITS.max_pixels,
            "{img:?} over the pixel limit"
        );
        prop_assert_eq!(img.data.len(), img.width as usize * img.height as usize * 3);
    }
    Ok(())
}

/// A PNG of `w` x `h` declared in a valid header, with a broken body.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png.extend_from_slice(&[
        0, 0, 0, 4, b'I', b'D', b'A', b'T', 0x78, 0x9c, 0x03, 0x00, 0, 0, 0, 0,
    ]);
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// Addresses as they appear in listings and Location headers: other schemes, missing hosts,
/// odd ports and characters, relative forms, and arbitrary text.
fn address() -> impl Strategy<Value = String> {
    let fixed = |v: Vec<&'static str>| prop::sample::select(v).prop_map(String::from);
    let scheme = fixed(vec![
        "",
        "http:",
        "https:",
        "HTTP:",
        "file:",
        "data:",
        "mailto:",
        "about:",
        "javascript:",
        "ftp:",
        "blob:",
    ]);
    let slashes = fixed(vec!["", "/", "//", "///", "\\\\"]);
    let host = prop_oneof![
        fixed(vec!["", "127.0.0.1", "[::1]", "[::1", "h:99999", "h:", "user@h", "%00"]),
        "[a-z0-9.:@%\\[\\]-]{0,12}"
    ];
    let rest = "[ -~]{0,24}";
    prop_oneof![
        (scheme, slashes, host, rest).prop_map(|(s, sl, h, r)| format!("{s}{sl}{h}{r}")),
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_images_decode_or_fail_cleanly(seed in 0usize..11, muts in prop::collection::vec(mutation(), 1..6), short in prop_oneof![Just(0u32), Just(8), Just(300)]) {
        let mut bytes = seeds()[seed].clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        decodes_within_limits(&bytes, short)?;
    }

    #[test]
    fn random_bytes_behind_a_real_magic_decode_or_fail_cleanly(magic in 0usize..8, tail in prop::collection::vec(any::<u8>(), 0..512)) {
        const MAGIC: [&[u8]; 8] = [b"\xFF\xD8\xFF\xE0", b"\xFF\xD8\xFF\xE1\x00\x20Exif\x00\x00MM\x00\x2A", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x01\x00\x00WEBPVP8 ", b"BM", b"II*\x00", b"MM\x00*"];
        let mut bytes = MAGIC[magic].to_vec();
        bytes.extend_from_slice(&tail);
        decodes_within_limits(&bytes, 0)?;
    }

    #[test]
    fn declared_sizes_over_the_limits_are_refused_from_the_header(w in prop_oneof![1u32..2000, any::<u32>()], h in prop_oneof![1u32..2000, any::<u32>()]) {
        let result = decode(&png_claiming(w, h), &LIMITS, 0);
        let over = w > LIMITS.max_width || h > LIMITS.max_height || u64::from(w) * u64::from(h) > LIMITS.max_pixels;
        match result {
            Ok(img) => prop_assert!(false, "a broken body decoded to {img:?}"),
            Err(e) if over => prop_assert!(e.to_string().contains("more than the limit"), "{w}x{h}: {e}"),
            Err(_) => {}
        }
    }

    #[test]
    fn image_addresses_parse_to_a_checked_url_a_path_or_an_error(text in address()) {
        match ImageRef::parse(&text, Path::new("/base")) {
            Ok(ImageRef::Url(u)) => {
                let url = check_url(&u);
                prop_assert!(url.is_ok(), "{text:?} was taken as a URL but does not check: {url:?}");
                let url = url.unwrap();
                prop_assert!(matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()));
            }
            Ok(ImageRef::Path(p)) => {
                let lower = text.trim().to_ascii_lowercase();
                prop_assert!(p.is_absolute() && !lower.starts_with("http://") && !lower.starts_with("https://") && !lower.contains("://"));
            }
            Err(e) => prop_assert!(!e.is_empty() && e.len() < 1000, "{e}"),
        }
    }

    #[test]
    fn redirects_lead_only_to_http_urls_with_a_host(location in address(), from in prop_oneof![Just("http://127.0.0.1:8/a/b.jpg"), Just("https://shop.example/x?y=1")]) {
        let from = url::Url::parse(from).unwrap();
        match redirect_target(&from, &location) {
            Ok(to) => prop_assert!(matches!(to.scheme(), "http" | "https") && to.host_str().is_some_and(|h| !h.is_empty()), "{location:?} -> {to}"),
            Err(e) => prop_assert!(e.starts_with("redirect") && e.len() < 1000, "{e}"),
        }
    }
}

/// The kept hostile inputs: every image file under `tests/corpus/images` decodes within the limits
/// or fails with an error (`png-over-limit-22689622x1.png` was found by
/// `declared_sizes_over_the_limits_are_refused_from_the_header`), and every line of `tests/corpus/redirects.txt` (Location headers that
/// crashed the previous HTTP client) is refused as a redirect target.
#[test]
fn corpus_inputs_give_answers_not_panics() {
    let mut images: Vec<PathBuf> = std::fs::read_dir(corpus().join("images"))
        .expect("tests/corpus/images")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    images.sort();
    assert!(!images.is_empty());
    for path in &images {
        let bytes = std::fs::read(path).expect("corpus file");
        for short in [0, 300] {
            if let Err(e) = decodes_within_limits(&bytes, short) {
                panic!("{}: {e}", path.display());
            }
        }
        // a file named `*-over-limit-*` declares a size over the limits: refused by it, by name
        if path.to_string_lossy().contains("-over-limit-") {
            let e = decode(&bytes, &LIMITS, 0).expect_err("over the limits");
            assert!(e.to_string().contains("more than the limit"), "{}: {e}", path.display());
        }
    }
    let text = std::fs::read_to_string(corpus().join("redirects.txt"))
        .expect("tests/corpus/redirects.txt");
    let from = url::Url::parse("http://127.0.0.1:8/a.jpg").unwrap();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let e = redirect_target(&from, line).expect_err(line);
        assert!(e.starts_with("redirect"), "{line}: {e}");
        n += 1;
    }
    assert!(n >= 4);
}
