//! Model manifests (`models/NAME.toml`) and where the model files and ONNX Runtime are found.
//!
//! A manifest describes an ONNX image model well enough to run it without code changes: its file,
//! checksum, input and output tensors, pixel layout, normalisation and resize policy.

pub mod embed;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod load;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The command that installs the runtime and the models; named in every "not found" error.
pub const INSTALL_HINT: &str =
    "run `bash models/fetch.sh` in the knockoff repository to install it";

/// What a scan and a catalog need of an image model: its manifest (name, dimension,
/// preprocessing, default thresholds) and the embeddings of images prepared by that manifest.
/// `embed::Embedder` runs the ONNX model; tests use a fake (`fake`) to run without it.
pub trait Embed: Send + Sync {
    /// The model's manifest.
    fn manifest(&self) -> &Manifest;

    /// One embedding per image (`manifest().dim` values each), in input order.
    fn embed(&mut self, images: &[&embed::Prepared]) -> Result<Vec<Vec<f32>>>;
}

/// Pixel layout of the model's input tensor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// uint8 `[batch, height, width, 3]` RGB; normalisation happens inside the graph (SSCD).
    NhwcU8,
    /// float32 `[batch, 3, height, width]` RGB scaled to 0..1, then `(x - mean) / std` (CLIP, DINOv2).
    NchwF32,
}

/// How an image is brought to the model's input size.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Short side to `size`, aspect ratio kept (SSCD's evaluation setting).
    ShortSide,
    /// Squashed to `size` x `size`, aspect ratio not kept.
    Square,
    /// Short side to `size`, then the centre `size` x `size` square (CLIP, DINOv2).
    CenterCrop,
}

/// A model manifest, as written in `models/NAME.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name, recorded in the catalog so that one catalog never mixes models.
    pub name: String,
    /// ONNX file, relative to the manifest's directory.
    pub file: String,
    /// sha256 of the ONNX file (checked by `models/fetch.sh` and `knockoff doctor`).
    pub sha256: String,
    /// Name of the image input tensor.
    pub input: String,
    /// Name of the embedding output tensor.
    pub output: String,
    /// Input pixel layout.
    pub layout: Layout,
    /// Per-channel mean for `nchw_f32` (RGB, on the 0..1 scale).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation for `nchw_f32`.
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// Resize policy.
    pub resize: ResizeMode,
    /// Target size in pixels (short side, or square side).
    pub size: u32,
    /// Target size of the regions that region queries search (quadrants, centre half and inset of
    /// a listing photo); `size` when absent. Smaller is cheaper: inference grows with its square.
    #[serde(default)]
    pub region_size: Option<u32>,
    /// The model's default `[scan] region_queries`, chosen by the cost of its inference; `off` when
    /// absent.
    #[serde(default)]
    pub region_queries: Option<crate::model::RegionQueries>,
    /// Embedding dimension.
    pub dim: usize,
    /// Default `policy.match_threshold` for this model: similarity from which a photo is a copy.
    pub match_threshold: f64,
    /// Default `policy.review_threshold` for this model: similarity of a possible copy.
    pub review_threshold: f64,
    /// Whether knockoff must L2-normalise the output (false when the graph already does).
    #[serde(default)]
    pub normalize: bool,
    /// Licence note shown by `knockoff doctor`.
    #[serde(default)]
    pub licence: String,
    /// Directory the manifest was read from (not part of the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn from_file(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read model manifest {}", path.display()))?;
        let mut m: Manifest = toml::from_str(&text)
            .with_context(|| format!("invalid model manifest {}", path.display()))?;
        m.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if m.layout == Layout::NchwF32 && (m.mean.is_none() || m.std.is_none()) {
            bail!("model manifest {}: layout nchw_f32 needs `mean` and `std`", path.display());
        }
        if !(-1.0..=1.0).contains(&m.match_threshold) || !(-1.0..=1.0).contains(&m.review_threshold)
        {
            bail!(
                "model manifest {}: thresholds must be cosine similarities between -1 and 1",
                path.display()
            );
        }
        if m.size == 0
            || m.size > 4096
            || m.dim == 0
            || m.region_size.is_some_and(|r| r == 0 || r > 4096)
        {
            bail!(
                "model manifest {}: `size` and `region_size` must be 1..=4096 and `dim` positive",
                path.display()
            );
        }
        Ok(m)
    }

    /// What determines the embeddings besides the weights: recorded in a catalog so that one catalog
    /// never mixes embeddings made differently.
    pub fn preprocessing(&self) -> String {
        format!("{:?} {} {:?}", self.resize, self.size, self.layout)
    }

    /// The target size of region queries' regions (`region_size`, else `size`).
    pub fn region_size(&self) -> u32 {
        self.region_size.unwrap_or(self.size)
    }

    /// The model's default region queries (`region_queries`, else off).
    pub fn region_queries(&self) -> crate::model::RegionQueries {
        self.region_queries.unwrap_or(crate::model::RegionQueries::Off)
    }

    /// Path of the ONNX file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(&self.file)
    }
}

/// Where the runtime and the chosen model were found.
#[derive(Debug, Clone)]
pub struct ModelLocation {
    /// The manifest of the chosen model.
    pub manifest: Manifest,
    /// The ONNX Runtime shared library.
    pub ort_lib: PathBuf,
}

/// Explicit choices from flags, environment and config, in that order of precedence.
#[derive(Debug, Clone, Default)]
pub struct ModelChoice {
    /// Model name or manifest path.
    pub name: String,
    /// Models directory, if given.
    pub dir: Option<PathBuf>,
    /// ONNX Runtime library, if given.
    pub ort_lib: Option<PathBuf>,
}

/// Candidate `models/` directories: explicit, then `./models`, then `models/` beside the executable
/// or up to three directories above it (so `target/release/knockoff` finds the repository's).
pub fn candidate_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut dirs = vec![PathBuf::from("models")];
    if let Ok(exe) = std::env::current_exe() {
        let mut at = exe.parent().map(Path::to_path_buf);
        for _ in 0..4 {
            let Some(dir) = at else { break };
            dirs.push(dir.join("models"));
            at = dir.parent().map(Path::to_path_buf);
        }
    }
    dirs
}

/// Finds the manifest, model file and runtime library; errors say where it looked and how to install.
pub fn locate(choice: &ModelChoice) -> Result<ModelLocation> {
    let dirs = candidate_dirs(choice.dir.as_deref());
    let looked = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let manifest_path = if choice.name.ends_with(".toml") {
        PathBuf::from(&choice.name)
    } else {
        if choice.name.is_empty() || choice.name.contains(['/', '\\']) {
            bail!("model name {:?} is not a name; give a name like `sscd` or a path to a .toml manifest", choice.name);
        }
        let file = format!("{}.toml", choice.name);
        match dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()) {
            Some(p) => p,
            None => bail!("model manifest {file} not found (looked in {looked}); {INSTALL_HINT}"),
        }
    };
    let manifest = Manifest::from_file(&manifest_path)?;
    let model_path = manifest.model_path();
    if !model_path.is_file() {
        bail!("model file {} not found; {INSTALL_HINT}", model_path.display());
    }
    let ort_lib = match &choice.ort_lib {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => bail!("ONNX Runtime library {} not found; {INSTALL_HINT}", p.display()),
        None => {
            let mut search = vec![manifest.dir.clone()];
            search.extend(dirs.iter().cloned());
            match search.iter().find_map(|d| find_ort_in(d)) {
                Some(p) => p,
                None => bail!("ONNX Runtime library (libonnxruntime.so.*) not found (looked in {looked}); {INSTALL_HINT}"),
            }
        }
    };
    Ok(ModelLocation { manifest, ort_lib })
}

/// The newest `libonnxruntime.so.*` in `dir`, if any.
fn find_ort_in(dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || n == "libonnxruntime.dylib"
                    || n == "onnxruntime.dll"
            })
        })
        .filter(|p| p.is_file())
        .collect();
    libs.sort();
    libs.pop()
}

/// The model of a new catalog when none is chosen: the distilled SSCD with region queries finds
/// more copies than `sscd` without them at the same scan speed (docs/benchmarks-notebook.md,
/// "Default model").
pub const DEFAULT_MODEL: &str = "sscd_distilled";

/// Model and runtime selection; empty values mean "search the usual places" (see `model`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Model name (a manifest `NAME.toml` in the models directory) or a path to a manifest; unset:
    /// the model the catalog was built with, or `DEFAULT_MODEL` for a new catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Directory holding manifests, model files and ONNX Runtime; empty: look for `models/`.
    pub dir: Option<PathBuf>,
    /// Path of `libonnxruntime.so`; empty: look in the models directory.
    pub ort_lib: Option<PathBuf>,
    /// Images per inference batch.
    pub batch_size: usize,
    /// Threads ONNX Runtime uses inside one inference.
    pub intra_threads: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { name: None, dir: None, ort_lib: None, batch_size: 8, intra_threads: 2 }
    }
}

/// When region queries run (`[scan] region_queries`; `true` and `false` mean `all` and `off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RegionQueries {
    /// Whole photos only.
    Off,
    /// Regions of photos whose whole-photo score is between `region_min_score` and the match
    /// threshold: neither clearly unrelated nor already a copy.
    Uncertain,
    /// Regions of every photo (1 + 5 x (region_size / size)^2 the inference, one more region for a
    /// photo with an inset: 3.8x or 4.4x for the shipped models).
    All,
}

impl<'de> Deserialize<'de> for RegionQueries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(RegionQueries::All),
            Raw::Flag(false) => Ok(RegionQueries::Off),
            Raw::Name(n) => match n.as_str() {
                "off" => Ok(RegionQueries::Off),
                "uncertain" => Ok(RegionQueries::Uncertain),
                "all" => Ok(RegionQueries::All),
                other => Err(serde::de::Error::custom(format!(
                    "unknown region_queries {other:?}; use \"off\", \"uncertain\" or \"all\""
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_size_defaults_to_size_and_is_checked() {
        let shipped =
            Manifest::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sscd.toml"))
                .expect("shipped manifest");
        assert_eq!((shipped.size, shipped.region_size()), (288, 216));
        let dir = tempfile::tempdir().expect("tempdir");
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sscd.toml"))
                .expect("read");
        let without: String =
            text.lines().filter(|l| !l.starts_with("region_")).map(|l| format!("{l}\n")).collect();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, &without).expect("write");
        let plain = Manifest::from_file(&path).expect("manifest");
        assert_eq!(
            (plain.region_size(), plain.region_queries()),
            (288, crate::model::RegionQueries::Off)
        );
        // each shipped model's default region queries, chosen by the cost of its inference
        let distilled = Manifest::from_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sscd_distilled.toml"),
        )
        .expect("shipped manifest");
        assert_eq!(
            (shipped.region_queries(), distilled.region_queries()),
            (crate::model::RegionQueries::Off, crate::model::RegionQueries::All)
        );
        std::fs::write(&path, without.replace("size = 288\n", "size = 288\nregion_size = 0\n"))
            .expect("write");
        let err = Manifest::from_file(&path).expect_err("region_size 0 is refused").to_string();
        assert!(err.contains("region_size"), "{err}");
    }
}
