//! Image embeddings: preprocessing by the model's manifest and inference with ONNX Runtime.
//!
//! ONNX Runtime is loaded at run time from the library that `model::locate` found; one runtime
//! environment serves the whole process.

use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{ArrayView4, Array4};
use ort::session::Session;
use ort::value::TensorRef;

use crate::vision::decode::{self, RgbImage};
use crate::model::{Layout, Manifest, ModelLocation, ResizeMode};
use crate::vision::regions::{crop, regions, Area, INSET};

/// An image resized for the model: RGB, 8 bits per channel, `height` x `width`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB bytes.
    pub data: Vec<u8>,
}

/// Resizes (and crops) a decoded image as the manifest says.
pub fn prepare(img: &RgbImage, manifest: &Manifest) -> Result<Prepared, decode::DecodeError> {
    prepare_at(img, manifest, manifest.size)
}

/// Resizes (and crops) a decoded image as the manifest says, to `size` instead of its `size`.
pub fn prepare_at(img: &RgbImage, manifest: &Manifest, size: u32) -> Result<Prepared, decode::DecodeError> {
    let out = match manifest.resize {
        ResizeMode::ShortSide => decode::resize_short_side(img, size)?,
        ResizeMode::Square => decode::resize(img, size, size)?,
        ResizeMode::CenterCrop => {
            let r = decode::resize_short_side(img, size)?;
            let (w, h) = (size.min(r.width), size.min(r.height));
            crop(&r, (r.width - w) / 2, (r.height - h) / 2, w, h)
        }
    };
    Ok(Prepared { width: out.width, height: out.height, data: out.data })
}

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

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `lib` once per process and returns its environment.
fn environment(lib: &std::path::Path) -> Result<ort::environment::Environment> {
    let env = ENVIRONMENT.get_or_init(|| {
        ort::init_from(lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("knockoff")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", lib.display()))
    });
    env.clone().map_err(|e| anyhow!(e))
}

/// A loaded model that turns prepared images into L2-normalised embeddings.
pub struct Embedder {
    session: Session,
    manifest: Manifest,
    batch_size: usize,
}

impl Embedder {
    /// Loads the runtime and the model; `intra_threads` is ONNX Runtime's thread count per inference.
    pub fn load(location: &ModelLocation, batch_size: usize, intra_threads: usize) -> Result<Embedder> {
        let env = environment(&location.ort_lib)?;
        let manifest = location.manifest.clone();
        let path = manifest.model_path();
        let session = Session::builder(&env)
            .map_err(|e| anyhow!("{e}"))?
            .with_intra_threads(intra_threads)
            .map_err(|e| anyhow!("{e}"))?
            .with_inter_threads(1)
            .map_err(|e| anyhow!("{e}"))?
            .commit_from_file(&path)
            .map_err(|e| anyhow!("cannot load model {}: {e}", path.display()))?;
        if !session.inputs().iter().any(|i| i.name() == manifest.input) {
            bail!("model {} has no input named {:?} (its manifest says so)", path.display(), manifest.input);
        }
        if !session.outputs().iter().any(|o| o.name() == manifest.output) {
            bail!("model {} has no output named {:?} (its manifest says so)", path.display(), manifest.output);
        }
        Ok(Embedder { session, manifest, batch_size: batch_size.max(1) })
    }

    /// The manifest of the loaded model.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Embeds images; images of equal size share a batch, others run alone. Output order = input order.
    pub fn embed(&mut self, images: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        let mut out: Vec<Option<Vec<f32>>> = vec![None; images.len()];
        // group indices by size, keeping first-seen order
        let mut groups: Vec<((u32, u32), Vec<usize>)> = Vec::new();
        for (i, img) in images.iter().enumerate() {
            let key = (img.width, img.height);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        for (_, idx) in groups {
            for chunk in idx.chunks(self.batch_size) {
                let batch: Vec<&Prepared> = chunk.iter().map(|&i| images[i]).collect();
                let embs = self.run_batch(&batch)?;
                for (&i, e) in chunk.iter().zip(embs) {
                    out[i] = Some(e);
                }
            }
        }
        out.into_iter()
            .map(|e| e.ok_or_else(|| anyhow!("internal error: an image was not embedded")))
            .collect()
    }

    /// Runs one batch of equally sized images.
    fn run_batch(&mut self, batch: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        let (w, h) = (batch[0].width as usize, batch[0].height as usize);
        let n = batch.len();
        let dim = self.manifest.dim;
        let input_name = self.manifest.input.clone();
        let output_name = self.manifest.output.clone();
        let flat: Vec<f32> = match self.manifest.layout {
            Layout::NhwcU8 => {
                let mut buf = Vec::with_capacity(n * h * w * 3);
                for p in batch {
                    buf.extend_from_slice(&p.data);
                }
                let view = ArrayView4::from_shape((n, h, w, 3), &buf).context("batch shape")?;
                let tensor = TensorRef::from_array_view(view).map_err(|e| anyhow!("{e}"))?;
                let outputs = self
                    .session
                    .run(ort::inputs![input_name.as_str() => tensor])
                    .map_err(|e| anyhow!("inference failed: {e}"))?;
                extract(&outputs, &output_name)?
            }
            Layout::NchwF32 => {
                let mean = self.manifest.mean.unwrap_or([0.0; 3]);
                let std = self.manifest.std.unwrap_or([1.0; 3]);
                let mut arr = Array4::<f32>::zeros((n, 3, h, w));
                for (b, p) in batch.iter().enumerate() {
                    for y in 0..h {
                        for x in 0..w {
                            let o = (y * w + x) * 3;
                            for c in 0..3 {
                                arr[[b, c, y, x]] = (p.data[o + c] as f32 / 255.0 - mean[c]) / std[c];
                            }
                        }
                    }
                }
                let tensor = TensorRef::from_array_view(&arr).map_err(|e| anyhow!("{e}"))?;
                let outputs = self
                    .session
                    .run(ort::inputs![input_name.as_str() => tensor])
                    .map_err(|e| anyhow!("inference failed: {e}"))?;
                extract(&outputs, &output_name)?
            }
        };
        if flat.len() != n * dim {
            bail!("model returned {} values for {n} images; its manifest says dim = {dim}", flat.len());
        }
        Ok(flat
            .chunks(dim)
            .map(|v| {
                let mut v = v.to_vec();
                if self.manifest.normalize {
                    l2_normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

/// Copies the named output tensor out of the session's outputs.
fn extract(outputs: &ort::session::SessionOutputs<'_>, name: &str) -> Result<Vec<f32>> {
    let value = outputs.get(name).ok_or_else(|| anyhow!("model produced no output {name:?}"))?;
    let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| anyhow!("output {name:?}: {e}"))?;
    Ok(data.to_vec())
}

/// Scales a vector to unit length (left as is when it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
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
    pub features: Option<crate::vision::verify::Features>,
    /// The image ready for feature extraction, when asked for (`LocalFeatures::Prepare`).
    pub ready: Option<crate::vision::verify::Ready>,
    /// Its inset (see `regions`) ready for feature extraction, with `Prepare` and regions when it
    /// has one: a photo pasted small has too few of the whole photo's features to verify, so it is
    /// verified as a photo of its own.
    pub inset_ready: Option<crate::vision::verify::Ready>,
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
    Extract(crate::vision::verify::Params),
    /// Makes the image ready for extraction and leaves that to the caller: a scan verifies few of
    /// its listing photos, and extracts only those (their colours are counted at once: cheap).
    Prepare(crate::vision::verify::Params),
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
        .map(|b| crate::vision::source::guard("decoding the photo", move || {
            let b = b?;
            let hash = opts.hash.then(|| crate::vision::source::content_hash(&b));
            // the decoder may shrink a JPEG down to the model's size (DCT scaling); a region is
            // half the photo's side, so regions need twice their own size
            let short = if opts.regions { manifest.size.max(2 * manifest.region_size()) } else { manifest.size };
            let img = decode::decode(&b, limits, short).map_err(|e| e.to_string())?;
            let prepared = prepare(&img, manifest).map_err(|e| e.to_string())?;
            let crops = if opts.regions { regions(&img) } else { Vec::new() };
            let inset_ready = match opts.features {
                LocalFeatures::Prepare(p) => crops.iter().find(|(name, _, _)| *name == INSET).map(|(_, _, r)| crate::vision::verify::Ready::new(r, &p)),
                _ => None,
            };
            let regions = if opts.regions {
                crops
                    .iter()
                    .map(|(name, area, r)| Ok(Region { name, area: *area, prepared: prepare_at(r, manifest, manifest.region_size())? }))
                    .collect::<Result<_, decode::DecodeError>>()
                    .map_err(|e| e.to_string())?
            } else {
                Vec::new()
            };
            let (features, ready, colours) = match opts.features {
                LocalFeatures::Skip => (None, None, None),
                LocalFeatures::Extract(p) => (Some(crate::vision::verify::Features::extract(&img, &p)), None, crate::vision::colour::Colours::of_reference(&img)),
                LocalFeatures::Prepare(p) => (None, Some(crate::vision::verify::Ready::new(&img, &p)), Some(crate::vision::colour::Colours::of(&img))),
            };
            let phashes = match opts.features {
                LocalFeatures::Skip if opts.phash => crate::vision::phash::of(&img).map(|h| (None, h)).into_iter().collect(),
                LocalFeatures::Skip => Vec::new(),
                LocalFeatures::Extract(_) => crate::vision::phash::of(&img).map(|h| (None, h)).into_iter().collect(),
                LocalFeatures::Prepare(_) => {
                    let whole = crate::vision::phash::turned(&img).map(|t| t.map(|h| (None, h)).to_vec()).unwrap_or_default();
                    let parts = crops.iter().filter_map(|(name, _, r)| crate::vision::phash::of(r).map(|h| (Some(*name), h)));
                    whole.into_iter().chain(parts).collect()
                }
            };
            let image = match opts.features {
                LocalFeatures::Prepare(_) if img.width.max(img.height) <= KEPT_SIDE => Some(img),
                LocalFeatures::Prepare(_) => Some(decode::fit_long_side(&img, KEPT_SIDE).map_err(|e| e.to_string())?.into_owned()),
                _ => None,
            };
            Ok(Loaded { hash, prepared, regions, features, ready, inset_ready, colours, phashes, image })
        }))
        .collect()
}
