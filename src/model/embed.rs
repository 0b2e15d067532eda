//! Image embeddings: preprocessing by the model's manifest and inference with ONNX Runtime.
//!
//! ONNX Runtime is loaded at run time from the library that `model::locate` found; one runtime
//! environment serves the whole process.

use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use ndarray::{Array4, ArrayView4};
use ort::session::Session;
use ort::value::TensorRef;

use crate::model::{Layout, Manifest, ModelLocation, ResizeMode};
use crate::vision::decode::{self, RgbImage};
use crate::vision::regions::crop;

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
pub fn prepare_at(
    img: &RgbImage,
    manifest: &Manifest,
    size: u32,
) -> Result<Prepared, decode::DecodeError> {
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

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

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
    pub fn load(
        location: &ModelLocation,
        batch_size: usize,
        intra_threads: usize,
    ) -> Result<Embedder> {
        let env = environment(&location.ort_lib)?;
        let manifest = location.manifest.clone();
        let path = manifest.model_path();
        let session = Session::builder(&env)
            .map_err(|e| anyhow!("{e}"))?
            .with_intra_threads(intra_threads)
            .map_err(|e| anyhow!("{e}"))?
            .with_inter_threads(1)
            .map_err(|e| anyhow!("{e}"))?
            // threads that spin between the model's operators take the core the photo loader
            // runs on; they idle instead (same results, less CPU time: BENCHMARKS.md)
            .with_intra_op_spinning(false)
            .map_err(|e| anyhow!("{e}"))?
            .commit_from_file(&path)
            .map_err(|e| anyhow!("cannot load model {}: {e}", path.display()))?;
        if !session.inputs().iter().any(|i| i.name() == manifest.input) {
            bail!(
                "model {} has no input named {:?} (its manifest says so)",
                path.display(),
                manifest.input
            );
        }
        if !session.outputs().iter().any(|o| o.name() == manifest.output) {
            bail!(
                "model {} has no output named {:?} (its manifest says so)",
                path.display(),
                manifest.output
            );
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
                                arr[[b, c, y, x]] =
                                    (p.data[o + c] as f32 / 255.0 - mean[c]) / std[c];
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
            bail!(
                "model returned {} values for {n} images; its manifest says dim = {dim}",
                flat.len()
            );
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

impl crate::model::Embed for Embedder {
    fn manifest(&self) -> &Manifest {
        Embedder::manifest(self)
    }

    fn embed(&mut self, images: &[&Prepared]) -> Result<Vec<Vec<f32>>> {
        Embedder::embed(self, images)
    }
}

/// Copies the named output tensor out of the session's outputs.
fn extract(outputs: &ort::session::SessionOutputs<'_>, name: &str) -> Result<Vec<f32>> {
    let value = outputs.get(name).ok_or_else(|| anyhow!("model produced no output {name:?}"))?;
    let (_, data) =
        value.try_extract_tensor::<f32>().map_err(|e| anyhow!("output {name:?}: {e}"))?;
    Ok(data.to_vec())
}

/// Scales a vector to unit length (left as is when it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
