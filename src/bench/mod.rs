//! The accuracy benchmark (`knockoff bench accuracy`): measures, through the real catalog and scan
//! code paths, how well copies of catalog photos are found (copy detection) and how well products
//! photographed again in shops are identified and flagged (Grocery Store Dataset).
//!
//! Benchmark photos are read where they are (`--bench-dir`); everything written goes to `--out`:
//! the edited copies, temporary catalogs, `results.json`, `results.md` and the precision–recall
//! plots.

pub mod attack;
pub mod baseline;
mod copy;
mod folds;
mod harness;
pub mod metrics;
mod products;
mod report;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::bench::metrics::PrPoint;
use crate::config::Config;
use crate::model::ModelLocation;
use crate::vision::decode;
pub use folds::FoldResults;
pub use report::markdown;

/// Which part of the benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Edited copies of catalog photos.
    Copy,
    /// Grocery products photographed again in shops.
    Products,
    /// Both.
    All,
}

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The benchmark data (`README.md`, `grocery/`, `pdq/`, `skimage/`, `backgrounds/`).
    pub bench_dir: PathBuf,
    /// Where outputs and temporary catalogs go.
    pub out: PathBuf,
    /// Which task(s).
    pub task: Task,
    /// At most this many photos per sampled group (copy distractors; branded and unbranded listings).
    pub limit: usize,
    /// Background photos for score normalisation (Grocery `val` fruit and vegetables); 0: off.
    pub background: usize,
    /// Also run the pHash baseline on the same queries.
    pub baseline: bool,
    /// Which draw of edits and samples (0: the one BENCHMARKS.md records).
    pub seed: u64,
    /// Print progress on stderr.
    pub verbose: bool,
}

/// Every figure of a run (written as `results.json`).
#[derive(Debug, Serialize)]
pub struct Results {
    /// Model name.
    pub model: String,
    /// Match threshold in force.
    pub match_threshold: f64,
    /// Review threshold in force.
    pub review_threshold: f64,
    /// Sample limit used.
    pub limit: usize,
    /// The draw of edits and samples (`--seed`).
    pub seed: u64,
    /// Background photos in each catalog (score normalisation; 0: raw scores).
    pub background: usize,
    /// Copy-detection results, when run.
    pub copy: Option<CopyResults>,
    /// Product results for each number of shop photos in the catalog, when run.
    pub products: Vec<ProductResults>,
    /// The pHash baseline on the same copy-detection queries (`--baseline`); its "match" and
    /// "review" thresholds are those of its own 99 % and 90 % precision.
    pub baseline_copy: Option<CopyResults>,
    /// The pHash baseline on the products task, per K (`--baseline`).
    pub baseline_products: Vec<BaselineProducts>,
}

/// Product identification by the pHash baseline for one catalog setting.
#[derive(Debug, Serialize)]
pub struct BaselineProducts {
    /// Shop photos per product besides the iconic image.
    pub k: usize,
    /// Share of branded listings whose best match is the right product.
    pub top1: f64,
    /// Share with the right product among the best five.
    pub top5: f64,
    /// Average precision of "best match is the right product", all listings ranked by best score.
    pub identification_ap: f64,
}

/// Copy-detection figures.
#[derive(Debug, Serialize)]
pub struct CopyResults {
    /// Reference images in the catalog.
    pub references: usize,
    /// Match threshold the "at match threshold" figures use.
    pub match_threshold: f32,
    /// Review threshold the "at review threshold" figures use.
    pub review_threshold: f32,
    /// Queries that copy a reference.
    pub copies: usize,
    /// Queries that copy nothing in the catalog.
    pub distractors: usize,
    /// Micro average precision over all query–reference pairs (top 10 per query).
    pub micro_ap: f64,
    /// Recall at 90 % precision, and the similarity threshold where it is reached.
    pub recall_at_p90: Option<(f64, f32)>,
    /// Recall at 99 % precision, and its threshold.
    pub recall_at_p99: Option<(f64, f32)>,
    /// Precision and recall of pairs at the model's match threshold.
    pub at_match_threshold: PrPoint,
    /// Precision and recall of pairs at the model's review threshold.
    pub at_review_threshold: PrPoint,
    /// Share of distractors whose best match reaches the review threshold.
    pub distractors_above_review: f64,
    /// Share of distractors whose best match reaches the match threshold.
    pub distractors_above_match: f64,
    /// µAP with the Grocery iconic images left out of the catalog (their queries and the pairs
    /// pointing at them dropped): these web-shop photos on white look alike and cost precision.
    pub micro_ap_without_iconic: f64,
    /// Wrong pairs at or above the match threshold: (group of the query's true reference, or
    /// `distractor`; group of the matched reference; count). Groups: skimage, pdq, background, iconic.
    pub false_matches_by_group: Vec<(String, String, usize)>,
    /// Per attack family.
    pub families: Vec<FamilyResult>,
    /// Seconds for the whole task (generation, catalog, scan).
    pub seconds: f64,
    /// Seconds for the scan alone.
    pub scan_seconds: f64,
    /// Share of query photos whose regions were searched too (`[scan] region_queries`).
    pub region_share: f64,
}

/// Figures of one attack family.
#[derive(Debug, Serialize)]
pub struct FamilyResult {
    /// Family name.
    pub family: String,
    /// Queries of the family.
    pub queries: usize,
    /// Share whose best match is the right reference.
    pub top1: f64,
    /// Share whose best match is the right reference at or above the match threshold.
    pub top1_at_match: f64,
    /// Share whose best match is the right reference at or above the review threshold.
    pub top1_at_review: f64,
    /// Median similarity to the right reference (when retrieved; 0 otherwise).
    pub median_similarity: f32,
}

/// Figures of the products task for one catalog setting.
#[derive(Debug, Serialize)]
pub struct ProductResults {
    /// Shop photos per product in the catalog besides the iconic image.
    pub k: usize,
    /// Products (branded classes) in the catalog.
    pub products: usize,
    /// Reference images in the catalog.
    pub reference_images: usize,
    /// Listings of branded products.
    pub branded_listings: usize,
    /// Listings of fruit and vegetables.
    pub unbranded_listings: usize,
    /// Share of branded listings whose best match is the right product.
    pub top1: f64,
    /// Share of branded listings with the right product among the best five.
    pub top5: f64,
    /// Share of branded listings whose best match is a product of the right brand.
    pub brand_top1: f64,
    /// Of all flags and reviews, the share on a branded listing that names its right product as
    /// the best match or holds it in its candidate set (`None` without flags or reviews).
    pub flags_and_reviews_correct: Option<f64>,
    /// Mean number of products a flag or review names (1 without a candidate set).
    pub mean_set_size: Option<f64>,
    /// Share of branded listings whose best match is another product of the same brand.
    pub sibling_confusion: f64,
    /// Share of branded listings whose best match is a product of another brand.
    pub other_brand_confusion: f64,
    /// Average precision of "best match is the right product", all listings ranked by best similarity.
    pub identification_ap: f64,
    /// Listings flagged (any).
    pub flagged: usize,
    /// Flag precision: flagged listings that are branded products at a suspicious price (`None`
    /// when nothing was flagged).
    pub flag_precision: Option<f64>,
    /// Flag recall: branded listings at a suspicious price that were flagged.
    pub flag_recall: f64,
    /// Of the correctly flagged listings, the share whose best match is the right product (`None`
    /// when none was correctly flagged).
    pub flag_right_product: Option<f64>,
    /// Share of branded listings at a suspicious price that got flag or review.
    pub flag_or_review_recall: f64,
    /// Share of unbranded listings flagged (should be 0).
    pub unbranded_flagged: f64,
    /// Share of unbranded listings flagged or sent to review.
    pub unbranded_flag_or_review: f64,
    /// The most frequent wrong best matches: (true product, matched product, count).
    pub top_confusions: Vec<(String, String, usize)>,
    /// Seconds for this setting (catalog and scan).
    pub seconds: f64,
    /// Share of listing photos whose regions were searched too (`[scan] region_queries`).
    pub region_share: f64,
    /// The same listings by folds over classes, the sibling margin chosen on training folds: the
    /// held-out figures to quote (`folds`).
    pub folds: FoldResults,
}

/// Runs the benchmark; returns the results and writes them, the plots and the Markdown to `opts.out`.
pub fn run(config: &Config, loc: &ModelLocation, opts: &Options) -> Result<(Results, String)> {
    if !opts.bench_dir.join("README.md").is_file() {
        bail!(
            "no benchmark data in {} (expected README.md, grocery/, pdq/, skimage/, backgrounds/); give the directory with --bench-dir",
            opts.bench_dir.display()
        );
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let thresholds = config.policy.thresholds(&loc.manifest)?;
    let mut results = Results {
        model: loc.manifest.name.clone(),
        match_threshold: thresholds.match_threshold,
        review_threshold: thresholds.review_threshold,
        limit: opts.limit,
        seed: opts.seed,
        background: harness::background_photos(opts)?.len(),
        copy: None,
        products: Vec::new(),
        baseline_copy: None,
        baseline_products: Vec::new(),
    };
    let mut curves = Vec::new();
    if matches!(opts.task, Task::Copy | Task::All) {
        let (r, curve, baseline) = copy::copy_task(
            config,
            loc,
            opts,
            thresholds.match_threshold as f32,
            thresholds.review_threshold as f32,
        )?;
        results.baseline_copy = baseline;
        write_file(
            &opts.out.join("copy-pr.svg"),
            &metrics::pr_svg(
                &format!("Copy detection, {} (µAP {:.3})", results.model, r.micro_ap),
                &[(results.model.clone(), curve)],
            ),
        )?;
        results.copy = Some(r);
    }
    if matches!(opts.task, Task::Products | Task::All) {
        for k in [0usize, 1, 5] {
            let (r, curve, baseline) = products::products_task(config, loc, opts, k)?;
            results.baseline_products.extend(baseline);
            curves.push((format!("K={k} (AP {:.3})", r.identification_ap), curve));
            results.products.push(r);
        }
        write_file(
            &opts.out.join("products-pr.svg"),
            &metrics::pr_svg(
                &format!(
                    "Products photographed again, {}: right product as best match",
                    results.model
                ),
                &curves,
            ),
        )?;
    }
    let md = markdown(&results);
    write_file(&opts.out.join("results.json"), &serde_json::to_string_pretty(&results)?)?;
    write_file(&opts.out.join("results.md"), &md)?;
    Ok((results, md))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn say(opts: &Options, msg: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("bench: {}", msg.as_ref());
    }
}

/// At most `n` items spread evenly over `v` (deterministic).
/// `n` elements of `v` spread evenly over it (all of them when it has no more), starting at an
/// offset that `seed` picks (none for seed 0).
fn sample<T: Clone>(v: &[T], n: usize, seed: u64) -> Vec<T> {
    if v.len() <= n {
        return v.to_vec();
    }
    let offset = (mix(seed) % v.len() as u64) as usize;
    (0..n).map(|i| v[(i * v.len() / n + offset) % v.len()].clone()).collect()
}

/// A draw's seed spread over 64 bits (0 stays 0, so seed 0 keeps the recorded draw).
fn mix(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn stem(p: &Path) -> String {
    p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Photos of one split of the Grocery dataset listed in `<split>.txt`, that exist on disk:
/// (path, class name, branded).
fn grocery_split(bench: &Path, split: &str) -> Result<Vec<(PathBuf, String, bool)>> {
    let root = bench.join("grocery/dataset");
    let list = root.join(format!("{split}.txt"));
    let text = std::fs::read_to_string(&list)
        .with_context(|| format!("cannot read {}", list.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let rel = line.split(',').next().unwrap_or("").trim();
        if rel.is_empty() {
            continue;
        }
        let path = root.join(rel);
        let Some(class) = Path::new(rel)
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
        else {
            continue;
        };
        if path.is_file() {
            out.push((path, class, rel.contains("/Packages/")));
        }
    }
    if out.is_empty() {
        bail!("no photos of {} found on disk", list.display());
    }
    Ok(out)
}

/// Decodes an image file for editing (upright, at most 1024 pixels on the long side).
fn load_for_editing(path: &Path, limits: &decode::Limits) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut img = decode::decode(&bytes, limits, 512)
        .with_context(|| format!("cannot decode {}", path.display()))?;
    let long = img.width.max(img.height);
    if long > 1024 {
        let (w, h) = ((img.width * 1024 / long).max(1), (img.height * 1024 / long).max(1));
        img = decode::resize(&img, w, h)
            .with_context(|| format!("cannot resize {}", path.display()))?;
    }
    image::RgbImage::from_raw(img.width, img.height, img.data)
        .with_context(|| format!("internal error: bad buffer for {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_seed_draws_another_even_sample_of_distinct_elements() {
        let v: Vec<usize> = (0..100).collect();
        assert_eq!(sample(&v, 4, 0), vec![0, 25, 50, 75], "seed 0 keeps the recorded draw");
        let other = sample(&v, 4, 1);
        assert_ne!(other, sample(&v, 4, 0));
        let mut distinct = other.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{other:?}");
        let gaps: Vec<usize> = other.windows(2).map(|w| (w[1] + 100 - w[0]) % 100).collect();
        assert_eq!(gaps, vec![25, 25, 25], "still spread evenly: {other:?}");
        assert_eq!(sample(&v[..3], 4, 7), vec![0, 1, 2], "a short list is taken whole");
    }
}
