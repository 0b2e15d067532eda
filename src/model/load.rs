//! Loading photos for the model: fetched (`vision::source`), decoded, resized by the model's
//! manifest, with the analyses a catalog or a scan asks for — regions, local features, colours,
//! perceptual hashes — computed on the same decoded pixels, in parallel.

use crate::model::embed::{prepare, prepare_at, Prepared};
use crate::model::Manifest;
use crate::vision::decode;
use crate::vision::decode::RgbImage;
use crate::vision::regions::{regions, Area, INSET};

/// One region of a photo, as the model takes it.
#[derive(Debug, Clone)]
pub struct Region {
    /// One of `REGIONS`, `INSET` or `STRAIGHTENED`.
    pub name: &'static str,
    /// Where in the photo it is.
    pub area: Area,
    /// The region resized for the model.
    pub prepared: Prepared,
}

/// A fetched, decoded and resized image, with the content hash of its file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// sha256 of the file's bytes, when asked for (the catalog needs it, a scan does not).
    pub hash: Option<String>,
    /// The image as the model takes it.
    pub prepared: Prepared,
    /// The `regions` of the image as the model takes them, when asked for.
    pub regions: Vec<Region>,
    /// Local features of the image for geometric verification, when asked for
    /// (`LocalFeatures::Extract`).
    pub features: Option<crate::vision::verify::orb::Features>,
    /// The image ready for feature extraction, when asked for (`LocalFeatures::Prepare`).
    pub ready: Option<crate::vision::verify::orb::Ready>,
    /// Its inset (see `regions`) ready for feature extraction, with `Prepare` and regions when it
    /// has one: a photo pasted small has too few of the whole photo's features to verify, so it is
    /// verified as a photo of its own.
    pub inset_ready: Option<crate::vision::verify::orb::Ready>,
    /// Its colours, with local features: a reference photo's (`Colours::of_reference`, none on a
    /// white backdrop) with `Extract`, a listing photo's with `Prepare`.
    pub colours: Option<crate::vision::colour::Colours>,
    /// Its perceptual hashes, with local features (none for a flat photo or region): with `Extract`
    /// its own (`phash::of`, region `None`); with `Prepare` its own first, then its 7 other
    /// orientations (`phash::turned`), so a turned or mirrored copy is recognised, and each
    /// region's (`Some(name)`), so a collage tile or a pasted photo is.
    pub phashes: Vec<(Option<&'static str>, u64)>,
    /// The decoded photo (long side at most `KEPT_SIDE`), with `Prepare`: verification cuts out
    /// where a reference photo lies in it (`verify::Pose::rectify`) and embeds that.
    pub image: Option<RgbImage>,
}

/// Longest side of the decoded photo `Loaded::image` keeps.
pub const KEPT_SIDE: u32 = 1024;

/// What `load_images` does about local features.
#[derive(Debug, Clone, Copy, Default)]
pub enum LocalFeatures {
    /// Nothing.
    #[default]
    Skip,
    /// Extracts them: a catalog stores the features (and colours) of every reference image.
    Extract(crate::vision::verify::orb::Params),
    /// Makes the image ready for extraction and leaves that to the caller: a scan verifies few of
    /// its listing photos, and extracts only those (their colours are counted at once: cheap).
    Prepare(crate::vision::verify::orb::Params),
}

/// What `load_images` computes besides the prepared image.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// The content hash of each file.
    pub hash: bool,
    /// The `regions` of each image.
    pub regions: bool,
    /// Local features of each image.
    pub features: LocalFeatures,
    /// The perceptual hash of each image even without local features (`Loaded::phashes`).
    pub phash: bool,
}

/// Fetches `refs` (bounded in flight; `owners[i]` numbers the record naming `refs[i]`, whose photos
/// share a time budget, see `Fetcher::fetch_all`), then decodes and resizes them in parallel; one
/// result each, in order, with errors in plain words (a panic in decoding is one photo's error).
pub fn load_images(
    fetcher: &crate::vision::source::Fetcher,
    refs: &[&crate::vision::source::ImageRef],
    owners: &[usize],
    limits: &decode::Limits,
    manifest: &Manifest,
    opts: LoadOptions,
) -> Vec<Result<Loaded, String>> {
    use rayon::prelude::*;
    let bytes = fetcher.fetch_all(refs, owners);
    bytes
        .into_par_iter()
        .map(|b| {
            crate::vision::source::guard("decoding the photo", move || {
                let b = b?;
                load_one(&b, limits, manifest, opts)
            })
        })
        .collect()
}

/// One fetched photo (`b`, its file's bytes) decoded, resized for the model and analysed as
/// `opts` asks.
fn load_one(
    b: &[u8],
    limits: &decode::Limits,
    manifest: &Manifest,
    opts: LoadOptions,
) -> Result<Loaded, String> {
    let hash = opts.hash.then(|| crate::vision::source::content_hash(b));
    // the decoder may shrink a JPEG down to the model's size (DCT scaling); a region is
    // half the photo's side, so regions need twice their own size
    let short =
        if opts.regions { manifest.size.max(2 * manifest.region_size()) } else { manifest.size };
    let img = decode::decode(b, limits, short).map_err(|e| e.to_string())?;
    let prepared = prepare(&img, manifest).map_err(|e| e.to_string())?;
    let crops = if opts.regions { regions(&img) } else { Vec::new() };
    let inset_ready = match opts.features {
        LocalFeatures::Prepare(p) => crops
            .iter()
            .find(|(name, _, _)| *name == INSET)
            .map(|(_, _, r)| crate::vision::verify::orb::Ready::new(r, &p)),
        _ => None,
    };
    let regions = if opts.regions { prepared_regions(&crops, manifest)? } else { Vec::new() };
    let (features, ready, colours) = analyses(&img, opts.features);
    let phashes = phashes(&img, &crops, opts);
    let image = kept_image(img, opts.features)?;
    Ok(Loaded { hash, prepared, regions, features, ready, inset_ready, colours, phashes, image })
}

/// The regions cut from a photo (name, area, pixels), each resized for the model.
fn prepared_regions(
    crops: &[(&'static str, Area, RgbImage)],
    manifest: &Manifest,
) -> Result<Vec<Region>, String> {
    crops
        .iter()
        .map(|(name, area, r)| {
            Ok(Region {
                name,
                area: *area,
                prepared: prepare_at(r, manifest, manifest.region_size())?,
            })
        })
        .collect::<Result<_, decode::DecodeError>>()
        .map_err(|e| e.to_string())
}

/// Local features, the image ready for them, and colours, as `features` asks.
fn analyses(
    img: &RgbImage,
    features: LocalFeatures,
) -> (
    Option<crate::vision::verify::orb::Features>,
    Option<crate::vision::verify::orb::Ready>,
    Option<crate::vision::colour::Colours>,
) {
    match features {
        LocalFeatures::Skip => (None, None, None),
        LocalFeatures::Extract(p) => (
            Some(crate::vision::verify::orb::Features::extract(img, &p)),
            None,
            crate::vision::colour::Colours::of_reference(img),
        ),
        LocalFeatures::Prepare(p) => (
            None,
            Some(crate::vision::verify::orb::Ready::new(img, &p)),
            Some(crate::vision::colour::Colours::of(img)),
        ),
    }
}

/// The perceptual hashes of `Loaded::phashes`: of the photo, its orientations and its regions
/// (`crops`), as `opts` asks.
fn phashes(
    img: &RgbImage,
    crops: &[(&'static str, Area, RgbImage)],
    opts: LoadOptions,
) -> Vec<(Option<&'static str>, u64)> {
    match opts.features {
        LocalFeatures::Skip if opts.phash => {
            crate::vision::phash::of(img).map(|h| (None, h)).into_iter().collect()
        }
        LocalFeatures::Skip => Vec::new(),
        LocalFeatures::Extract(_) => {
            crate::vision::phash::of(img).map(|h| (None, h)).into_iter().collect()
        }
        LocalFeatures::Prepare(_) => {
            let whole = crate::vision::phash::turned(img)
                .map(|t| t.map(|h| (None, h)).to_vec())
                .unwrap_or_default();
            let parts = crops
                .iter()
                .filter_map(|(name, _, r)| crate::vision::phash::of(r).map(|h| (Some(*name), h)));
            whole.into_iter().chain(parts).collect()
        }
    }
}

/// The decoded photo kept with `Prepare` (long side at most `KEPT_SIDE`).
fn kept_image(img: RgbImage, features: LocalFeatures) -> Result<Option<RgbImage>, String> {
    Ok(match features {
        LocalFeatures::Prepare(_) if img.width.max(img.height) <= KEPT_SIDE => Some(img),
        LocalFeatures::Prepare(_) => {
            Some(decode::fit_long_side(&img, KEPT_SIDE).map_err(|e| e.to_string())?.into_owned())
        }
        _ => None,
    })
}
