//! The accuracy benchmark (`knockoff bench accuracy`): measures, through the real catalog and scan
//! code paths, how well copies of catalog photos are found (copy detection) and how well products
//! photographed again in shops are identified and flagged (Grocery Store Dataset).
//!
//! Benchmark photos are read where they are (`--bench-dir`); everything written goes to `--out`:
//! the edited copies, temporary catalogs, `results.json`, `results.md` and the precision–recall
//! plots.

pub mod attack;
pub mod baseline;
pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::bench::attack::Family;
use crate::bench::metrics::{Pair, PrPoint};
use crate::catalog::{self, ProductRecord, Store};
use crate::config::Config;
use crate::model::embed::Embedder;
use crate::model::ModelLocation;
use crate::policy::Verdict;
use crate::scan::{self, Listing, Report, Scanner, Seller};
use crate::vision::decode;
use crate::vision::source::{Fetcher, ImageRef};

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
}

/// A query of the copy task: a listing photo and the reference it copies (if any).
struct Query {
    id: String,
    family: String,
    truth: Option<String>,
    path: PathBuf,
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
        background: background_photos(opts)?.len(),
        copy: None,
        products: Vec::new(),
        baseline_copy: None,
        baseline_products: Vec::new(),
    };
    let mut curves = Vec::new();
    if matches!(opts.task, Task::Copy | Task::All) {
        let (r, curve, baseline) = copy_task(
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
            let (r, curve, baseline) = products_task(config, loc, opts, k)?;
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

/// Builds a fresh catalog in `dir` from `products`, exactly as `catalog add` does; fails naming
/// the file of any image that cannot be used.
fn build_catalog(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    dir: &Path,
    products: Vec<ProductRecord>,
) -> Result<usize> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| {
            format!("cannot remove the old benchmark catalog {}", dir.display())
        })?;
    }
    let mut store = Store::open(dir, true)?;
    store.check_model(&loc.manifest)?;
    let mut embedder = Embedder::load(loc, config.model.batch_size, config.model.intra_threads)?;
    let fetcher = Fetcher::new(&config.limits)?;
    let limits = scan::decode_limits(config);
    let mut images = 0;
    let mut stored = std::collections::BTreeSet::new();
    let mut chunks = Vec::new();
    let mut rest = products;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(64));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    crate::scan::pipeline::overlapped(
        chunks.into_iter(),
        |c| catalog::load_products(&fetcher, &limits, &loc.manifest, config.verify.params(), c),
        |loaded| -> Result<()> {
            let done = catalog::ingest(
                &mut store,
                &mut embedder,
                &loc.manifest,
                config.index.storage,
                &loaded,
            )?;
            if let Some((_, e)) = done.image_errors.first().or(done.skipped.first()) {
                bail!("benchmark catalog: {e}");
            }
            images += done.embedded + done.reused;
            stored.extend(done.images);
            Ok(())
        },
    )?;
    store.finish_adding(config, loc.manifest.dim, &stored.into_iter().collect::<Vec<_>>())?;
    let background = background_photos(opts)?;
    if !background.is_empty() {
        let photos = catalog::load_background(&fetcher, &limits, &loc.manifest, &background);
        let done = catalog::ingest_background(
            &mut store,
            &mut embedder,
            &loc.manifest,
            config.index.storage,
            &photos,
        )?;
        if let Some((src, e)) = done.errors.first() {
            bail!("benchmark background photo {src}: {e}");
        }
    }
    Ok(images)
}

/// The background photos of a run: `opts.background` Grocery `val` photos of fruit and vegetables.
fn background_photos(opts: &Options) -> Result<Vec<PathBuf>> {
    if opts.background == 0 {
        return Ok(Vec::new());
    }
    let val: Vec<PathBuf> = grocery_split(&opts.bench_dir, "val")?
        .into_iter()
        .filter(|(_, _, branded)| !branded)
        .map(|(p, _, _)| p)
        .collect();
    Ok(sample(&val, opts.background, 0))
}

/// Scans `listings` against the catalog in `dir` with the real scanner; one report each, in order,
/// and the share of photos whose regions were searched too.
fn scan_catalog(
    config: &Config,
    loc: &ModelLocation,
    dir: &Path,
    listings: Vec<Listing>,
) -> Result<(Vec<Report>, f64)> {
    let store = Store::open(dir, false)?;
    store.check_model(&loc.manifest)?;
    let view = store.view(config)?;
    let embedder = Embedder::load(loc, config.model.batch_size, config.model.intra_threads)?;
    let mut scanner = Scanner::new(view, embedder, config.clone())?;
    let mut reports = Vec::with_capacity(listings.len());
    let mut chunks = Vec::new();
    let mut it = listings.into_iter().map(Ok).peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(32).collect::<Vec<scan::Parsed>>());
    }
    scanner.run(chunks.into_iter(), |r| {
        reports.extend(r);
        Ok(())
    })?;
    let i = scanner.inferences();
    Ok((reports, i.with_regions as f64 / i.photos.max(1) as f64))
}

/// Writes one JSON line per query: its id, the right reference (if any), the verdict and the
/// best matches with their similarities and the listing photo (file name, with the region when a
/// region matched), for looking into the figures.
fn dump_matches<'a>(
    path: &Path,
    queries: impl Iterator<Item = (&'a str, Option<&'a str>)>,
    reports: &[Report],
) -> Result<()> {
    let mut text = String::new();
    for ((id, truth), r) in queries.zip(reports) {
        let m: Vec<serde_json::Value> = r
            .matches
            .iter()
            .map(|m| serde_json::json!({"product": m.product_id, "score": m.score, "inliers": m.inliers, "verification": m.verification, "located": m.located, "photo": Path::new(&m.listing_image).file_name().map(|n| n.to_string_lossy())}))
            .collect();
        text += &serde_json::json!({"query": id, "truth": truth, "verdict": r.verdict.as_str(), "matches": m}).to_string();
        text.push('\n');
    }
    write_file(path, &text)
}

fn listing(id: String, path: &Path, price: Option<f64>, seller: &str) -> Listing {
    Listing {
        line: 0,
        listing_id: id,
        title: None,
        price,
        currency: price.map(|_| "EUR".to_string()),
        images: vec![ImageRef::Path(path.to_path_buf())],
        seller: Seller { seller_id: seller.to_string(), ..Seller::default() },
        warnings: Vec::new(),
    }
}

fn product(i: usize, brand: &str, id: &str, images: Vec<PathBuf>, price: f64) -> ProductRecord {
    ProductRecord {
        line: i + 1,
        brand: brand.to_string(),
        product_id: id.to_string(),
        title: id.replace('-', " "),
        price,
        currency: "EUR".into(),
        images: images.into_iter().map(ImageRef::Path).collect(),
        authorized_sellers: vec![format!("{brand}-official")],
        category: None,
    }
}

fn copy_task(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    match_t: f32,
    review_t: f32,
) -> Result<(CopyResults, Vec<PrPoint>, Option<CopyResults>)> {
    let t0 = Instant::now();
    let b = &opts.bench_dir;
    // references
    let mut refs: Vec<(String, PathBuf)> = Vec::new();
    for p in crate::vision::source::image_files_in(&b.join("skimage"))? {
        refs.push((format!("skimage-{}", stem(&p)), p));
    }
    refs.push(("pdq-bridge".into(), b.join("pdq/bridge-mods/aaa-orig.jpg")));
    refs.push(("pdq-exif".into(), b.join("pdq/exif-rotn/exif-rotn-1.jpg")));
    for p in crate::vision::source::image_files_in(&b.join("backgrounds"))? {
        refs.push((format!("background-{}", stem(&p)), p));
    }
    for p in crate::vision::source::image_files_under(
        &b.join("grocery/dataset/iconic-images-and-descriptions"),
    )? {
        if stem(&p).ends_with("_Iconic") {
            refs.push((format!("iconic-{}", stem(&p).trim_end_matches("_Iconic")), p));
        }
    }
    for (_, p) in &refs {
        if !p.is_file() {
            bail!("benchmark image {} is missing", p.display());
        }
    }
    say(opts, format!("copy: {} reference images", refs.len()));
    // ready-made queries
    let mut queries: Vec<Query> = Vec::new();
    for p in crate::vision::source::image_files_in(&b.join("pdq/bridge-mods"))? {
        if stem(&p) != "aaa-orig" {
            queries.push(Query {
                id: format!("pdq_bridge_mods/{}", stem(&p)),
                family: "pdq_bridge_mods".into(),
                truth: Some("pdq-bridge".into()),
                path: p,
            });
        }
    }
    for p in crate::vision::source::image_files_in(&b.join("pdq/dih"))? {
        queries.push(Query {
            id: format!("pdq_dih/{}", stem(&p)),
            family: "pdq_dih".into(),
            truth: Some("pdq-bridge".into()),
            path: p,
        });
    }
    for p in crate::vision::source::image_files_in(&b.join("pdq/exif-rotn"))? {
        if stem(&p) != "exif-rotn-1" {
            queries.push(Query {
                id: format!("pdq_exif_rotn/{}", stem(&p)),
                family: "pdq_exif_rotn".into(),
                truth: Some("pdq-exif".into()),
                path: p,
            });
        }
    }
    // distractors: shop photos of the test split and the labelme subset
    let test: Vec<PathBuf> = grocery_split(b, "test")?.into_iter().map(|(p, _, _)| p).collect();
    let mut distractors = sample(&test, opts.limit, opts.seed);
    distractors.extend(crate::vision::source::image_files_in(&b.join("pdq/labelme-subset"))?);
    for p in &distractors {
        queries.push(Query {
            id: format!("distractor/{}", stem(p)),
            family: "distractor".into(),
            truth: None,
            path: p.clone(),
        });
    }
    // generated edits; fillers for collages and backdrops are train-split shop photos
    let limits = scan::decode_limits(config);
    let train: Vec<PathBuf> = grocery_split(b, "train")?.into_iter().map(|(p, _, _)| p).collect();
    let fillers: Vec<image::RgbImage> = sample(&train, 24, opts.seed)
        .par_iter()
        .map(|p| load_for_editing(p, &limits))
        .collect::<Result<_>>()?;
    let qdir = opts.out.join("work/copy-queries");
    for f in Family::ALL {
        std::fs::create_dir_all(qdir.join(f.name()))
            .with_context(|| format!("cannot create {}", qdir.display()))?;
    }
    say(
        opts,
        format!(
            "copy: writing {} edited copies to {}",
            refs.len() * Family::ALL.len(),
            qdir.display()
        ),
    );
    let generated: Vec<Vec<Query>> = refs
        .par_iter()
        .map(|(id, path)| -> Result<Vec<Query>> {
            let img = load_for_editing(path, &limits)?;
            let mut out = Vec::new();
            for f in Family::ALL {
                let a = attack::apply(&img, f, attack::seed_of(id) ^ mix(opts.seed), &fillers);
                let dest = qdir.join(f.name()).join(format!("{id}.jpg"));
                let file = std::fs::File::create(&dest)
                    .with_context(|| format!("cannot create {}", dest.display()))?;
                let mut w = std::io::BufWriter::new(file);
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, a.jpeg_quality)
                    .encode_image(&a.image)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                out.push(Query {
                    id: format!("{}/{id}", f.name()),
                    family: f.name().into(),
                    truth: Some(id.clone()),
                    path: dest,
                });
            }
            Ok(out)
        })
        .collect::<Result<_>>()?;
    queries.extend(generated.into_iter().flatten());
    // catalog: one product per reference image
    let products: Vec<ProductRecord> = refs
        .iter()
        .enumerate()
        .map(|(i, (id, p))| product(i, "bench", id, vec![p.clone()], 100.0))
        .collect();
    let dir = opts.out.join("work/catalog-copy");
    let n_refs = build_catalog(config, loc, opts, &dir, products)?;
    say(opts, format!("copy: scanning {} queries", queries.len()));
    let mut cfg = config.clone();
    cfg.policy.top_k = 10;
    let listings =
        queries.iter().map(|q| listing(q.id.clone(), &q.path, None, "bench-seller")).collect();
    let ts = Instant::now();
    let (reports, region_share) = scan_catalog(&cfg, loc, &dir, listings)?;
    let scan_seconds = ts.elapsed().as_secs_f64();
    dump_matches(
        &opts.out.join("copy-matches.jsonl"),
        queries.iter().map(|q| (q.id.as_str(), q.truth.as_deref())),
        &reports,
    )?;
    let mut ranked = Vec::with_capacity(reports.len());
    for (q, r) in queries.iter().zip(&reports) {
        if r.verdict == Verdict::Error {
            bail!("query {} could not be scanned: {}", q.path.display(), r.reasons.join("; "));
        }
        ranked.push(r.matches.iter().map(|m| (m.product_id.clone(), m.score)).collect());
    }
    let (mut res, curve) =
        copy_metrics(&queries, &ranked, n_refs, distractors.len(), match_t, review_t);
    res.seconds = t0.elapsed().as_secs_f64();
    res.scan_seconds = scan_seconds;
    res.region_share = region_share;
    let baseline = if opts.baseline {
        say(opts, "copy: pHash baseline");
        let ts = Instant::now();
        let ref_photos: Vec<(&str, &Path)> =
            refs.iter().map(|(id, p)| (id.as_str(), p.as_path())).collect();
        let query_photos: Vec<&Path> = queries.iter().map(|q| q.path.as_path()).collect();
        let ranked = phash_rank(&ref_photos, &query_photos, 10, &limits)?;
        // a hash has no calibrated thresholds: report it at the thresholds of its own 99 % / 90 % precision
        let (pre, _) = copy_metrics(&queries, &ranked, refs.len(), distractors.len(), 1.0, 1.0);
        let at = |x: Option<(f64, f32)>| x.map_or(1.0, |(_, t)| t);
        let (mut b, _) = copy_metrics(
            &queries,
            &ranked,
            refs.len(),
            distractors.len(),
            at(pre.recall_at_p99),
            at(pre.recall_at_p90),
        );
        b.seconds = ts.elapsed().as_secs_f64();
        b.scan_seconds = b.seconds;
        Some(b)
    } else {
        None
    };
    Ok((res, curve, baseline))
}

/// The pHash baseline: each query photo's `k` most similar products among the reference photos
/// (product id, photo), best first.
fn phash_rank(
    refs: &[(&str, &Path)],
    queries: &[&Path],
    k: usize,
    limits: &decode::Limits,
) -> Result<Vec<Vec<(String, f32)>>> {
    let hash = |p: &Path| load_for_editing(p, limits).map(|img| crate::bench::baseline::hash(&img));
    let hashes: Vec<_> = refs.par_iter().map(|(_, p)| hash(p)).collect::<Result<_>>()?;
    let mut index = crate::bench::baseline::HashIndex::default();
    for ((id, _), h) in refs.iter().zip(hashes) {
        index.add(id, h);
    }
    queries.par_iter().map(|p| hash(p).map(|h| index.rank(h, k))).collect()
}

/// Copy-detection figures from each query's ranked matches (catalog product, score), best first.
fn copy_metrics(
    queries: &[Query],
    ranked: &[Vec<(String, f32)>],
    n_refs: usize,
    n_distractors: usize,
    match_t: f32,
    review_t: f32,
) -> (CopyResults, Vec<PrPoint>) {
    let mut pairs = Vec::new();
    let mut pairs_no_iconic = Vec::new();
    let mut false_groups: HashMap<(String, String), usize> = HashMap::new();
    let group = |id: &str| id.split('-').next().unwrap_or(id).to_string();
    let mut fam: HashMap<String, Vec<(bool, f32)>> = HashMap::new(); // (best match right, its similarity)
    let mut fam_sims: HashMap<String, Vec<f32>> = HashMap::new();
    let (mut d_review, mut d_match) = (0usize, 0usize);
    for (q, matches) in queries.iter().zip(ranked) {
        let truth_group = q.truth.as_deref().map(group).unwrap_or_else(|| "distractor".into());
        for (product, score) in matches {
            let pair =
                Pair { score: *score, positive: q.truth.as_deref() == Some(product.as_str()) };
            pairs.push(pair);
            if truth_group != "iconic" && group(product) != "iconic" {
                pairs_no_iconic.push(pair);
            }
            if !pair.positive && *score >= match_t {
                *false_groups.entry((truth_group.clone(), group(product))).or_default() += 1;
            }
        }
        let best = matches.first();
        match &q.truth {
            None => {
                let s = best.map(|m| m.1).unwrap_or(f32::MIN);
                d_review += usize::from(s >= review_t);
                d_match += usize::from(s >= match_t);
            }
            Some(t) => {
                let right = best.is_some_and(|m| &m.0 == t);
                let sim = best.map(|m| m.1).unwrap_or(0.0);
                fam.entry(q.family.clone()).or_default().push((right, sim));
                let truth_sim = matches.iter().find(|m| &m.0 == t).map(|m| m.1).unwrap_or(0.0);
                fam_sims.entry(q.family.clone()).or_default().push(truth_sim);
            }
        }
    }
    let n_pos = queries.iter().filter(|q| q.truth.is_some()).count();
    let mut order: Vec<String> = Family::ALL.iter().map(|f| f.name().to_string()).collect();
    order.extend(["pdq_bridge_mods", "pdq_dih", "pdq_exif_rotn"].map(String::from));
    let families = order
        .iter()
        .filter_map(|name| {
            let v = fam.get(name)?;
            let n = v.len() as f64;
            let mut sims = fam_sims.get(name).cloned().unwrap_or_default();
            sims.sort_by(|a, b| a.total_cmp(b));
            Some(FamilyResult {
                family: name.clone(),
                queries: v.len(),
                top1: v.iter().filter(|x| x.0).count() as f64 / n,
                top1_at_match: v.iter().filter(|x| x.0 && x.1 >= match_t).count() as f64 / n,
                top1_at_review: v.iter().filter(|x| x.0 && x.1 >= review_t).count() as f64 / n,
                median_similarity: sims.get(sims.len() / 2).copied().unwrap_or(0.0),
            })
        })
        .collect();
    let nd = n_distractors.max(1) as f64;
    let n_pos_no_iconic =
        queries.iter().filter(|q| q.truth.as_deref().is_some_and(|t| group(t) != "iconic")).count();
    let mut false_matches_by_group: Vec<(String, String, usize)> =
        false_groups.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    false_matches_by_group
        .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    let res = CopyResults {
        references: n_refs,
        match_threshold: match_t,
        review_threshold: review_t,
        copies: n_pos,
        distractors: n_distractors,
        micro_ap: metrics::micro_ap(&pairs, n_pos),
        micro_ap_without_iconic: metrics::micro_ap(&pairs_no_iconic, n_pos_no_iconic),
        false_matches_by_group,
        recall_at_p90: metrics::recall_at_precision(&pairs, n_pos, 0.90),
        recall_at_p99: metrics::recall_at_precision(&pairs, n_pos, 0.99),
        at_match_threshold: metrics::at_threshold(&pairs, n_pos, match_t),
        at_review_threshold: metrics::at_threshold(&pairs, n_pos, review_t),
        distractors_above_review: d_review as f64 / nd,
        distractors_above_match: d_match as f64 / nd,
        families,
        seconds: 0.0,
        scan_seconds: 0.0,
        region_share: 0.0,
    };
    (res, metrics::pr_curve(&pairs, n_pos))
}

/// Brand of a Grocery class: the first word of its name (`Arla-Standard-Milk` → `Arla`).
fn brand_of(class: &str) -> &str {
    class.split('-').next().unwrap_or(class)
}

/// Reference price of every benchmark product, in EUR.
const REFERENCE_PRICE: f64 = 25.0;
/// A suspicious price: 30 % of the reference (the default policy flags at or below 50 %).
const SUSPICIOUS_PRICE: f64 = 7.5;

fn products_task(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    k: usize,
) -> Result<(ProductResults, Vec<PrPoint>, Option<BaselineProducts>)> {
    let t0 = Instant::now();
    let b = &opts.bench_dir;
    let iconic_root = b.join("grocery/dataset/iconic-images-and-descriptions/Packages");
    let train = grocery_split(b, "train")?;
    let mut products = Vec::new();
    for p in crate::vision::source::image_files_under(&iconic_root)? {
        let s = stem(&p);
        let Some(class) = s.strip_suffix("_Iconic") else { continue };
        let mut images = vec![p.clone()];
        // K of the class's shop photos, from an offset the seed picks
        let shop: Vec<&PathBuf> =
            train.iter().filter(|(_, c, br)| *br && c == class).map(|(p, _, _)| p).collect();
        let start = if shop.is_empty() { 0 } else { (mix(opts.seed) % shop.len() as u64) as usize };
        images
            .extend(shop.iter().cycle().skip(start).take(k.min(shop.len())).map(|p| (*p).clone()));
        products.push(product(products.len(), brand_of(class), class, images, REFERENCE_PRICE));
    }
    if products.is_empty() {
        bail!("no iconic images of branded products under {}", iconic_root.display());
    }
    let n_products = products.len();
    let product_images: Vec<(String, Vec<PathBuf>)> = products
        .iter()
        .map(|p| {
            (
                p.product_id.clone(),
                p.images
                    .iter()
                    .filter_map(|r| match r {
                        ImageRef::Path(p) => Some(p.clone()),
                        ImageRef::Url(_) => None,
                    })
                    .collect(),
            )
        })
        .collect();
    let known: std::collections::HashSet<String> =
        products.iter().map(|p| p.product_id.clone()).collect();
    let dir = opts.out.join(format!("work/catalog-products-k{k}"));
    say(opts, format!("products K={k}: cataloguing {n_products} products"));
    let n_images = build_catalog(config, loc, opts, &dir, products)?;
    let test = grocery_split(b, "test")?;
    let branded: Vec<_> =
        test.iter().filter(|(_, c, br)| *br && known.contains(c)).cloned().collect();
    let unbranded: Vec<_> = test.iter().filter(|(_, _, br)| !*br).cloned().collect();
    let branded = sample(&branded, opts.limit, opts.seed);
    let unbranded = sample(&unbranded, opts.limit, opts.seed);
    // (class if branded, suspicious price)
    let mut truth: Vec<(Option<String>, bool)> = Vec::new();
    let mut listings = Vec::new();
    for (i, (p, c, _)) in branded.iter().enumerate() {
        let low = i % 2 == 0;
        listings.push(listing(
            format!("branded/{}", stem(p)),
            p,
            Some(if low { SUSPICIOUS_PRICE } else { REFERENCE_PRICE }),
            &format!("shop-{}", i % 40),
        ));
        truth.push((Some(c.clone()), low));
    }
    for (i, (p, _, _)) in unbranded.iter().enumerate() {
        let low = i % 2 == 0;
        listings.push(listing(
            format!("unbranded/{}", stem(p)),
            p,
            Some(if low { SUSPICIOUS_PRICE } else { REFERENCE_PRICE }),
            &format!("shop-{}", i % 40),
        ));
        truth.push((None, low));
    }
    say(opts, format!("products K={k}: scanning {} listings", listings.len()));
    let (reports, region_share) = scan_catalog(config, loc, &dir, listings)?;
    dump_matches(
        &opts.out.join(format!("products-k{k}-matches.jsonl")),
        reports
            .iter()
            .zip(&truth)
            .map(|(r, (c, _))| (r.listing_id.as_deref().unwrap_or("-"), c.as_deref())),
        &reports,
    )?;
    let (mut top1, mut top5, mut sib, mut other) = (0usize, 0usize, 0usize, 0usize);
    let (mut flagged, mut tp, mut tp_right, mut fr, mut positives) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let (mut u_flag, mut u_fr) = (0usize, 0usize);
    let mut pairs = Vec::new();
    let mut confusions: HashMap<(String, String), usize> = HashMap::new();
    for ((class, low), r) in truth.iter().zip(&reports) {
        if r.verdict == Verdict::Error {
            bail!(
                "listing {} could not be scanned: {}",
                r.listing_id.as_deref().unwrap_or("-"),
                r.reasons.join("; ")
            );
        }
        let best = r.matches.first();
        let is_flag = r.verdict == Verdict::Flag;
        let is_fr = is_flag || r.verdict == Verdict::Review;
        flagged += usize::from(is_flag);
        match class {
            Some(c) => {
                let right = best.is_some_and(|m| &m.product_id == c);
                pairs.push(Pair { score: best.map(|m| m.score).unwrap_or(0.0), positive: right });
                top1 += usize::from(right);
                top5 += usize::from(r.matches.iter().take(5).any(|m| &m.product_id == c));
                if let Some(m) = best.filter(|_| !right) {
                    if brand_of(&m.product_id) == brand_of(c) {
                        sib += 1;
                    } else {
                        other += 1;
                    }
                    *confusions.entry((c.clone(), m.product_id.clone())).or_default() += 1;
                }
                if *low {
                    positives += 1;
                    tp += usize::from(is_flag);
                    tp_right += usize::from(is_flag && right);
                    fr += usize::from(is_fr);
                }
            }
            None => {
                pairs.push(Pair { score: best.map(|m| m.score).unwrap_or(0.0), positive: false });
                u_flag += usize::from(is_flag);
                u_fr += usize::from(is_fr);
            }
        }
    }
    let nb = branded.len().max(1) as f64;
    let nu = unbranded.len().max(1) as f64;
    let mut top_confusions: Vec<(String, String, usize)> =
        confusions.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    top_confusions
        .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    top_confusions.truncate(10);
    let baseline = if opts.baseline {
        let refs: Vec<(&str, &Path)> = product_images
            .iter()
            .flat_map(|(id, ps)| ps.iter().map(move |p| (id.as_str(), p.as_path())))
            .collect();
        let query_photos: Vec<&Path> = branded.iter().map(|(p, _, _)| p.as_path()).collect();
        let ranked = phash_rank(&refs, &query_photos, 5, &scan::decode_limits(config))?;
        let (mut t1, mut t5, mut bpairs) = (0usize, 0usize, Vec::new());
        for ((_, c, _), r) in branded.iter().zip(&ranked) {
            let right = r.first().is_some_and(|m| &m.0 == c);
            t1 += usize::from(right);
            t5 += usize::from(r.iter().any(|m| &m.0 == c));
            bpairs.push(Pair { score: r.first().map_or(0.0, |m| m.1), positive: right });
        }
        Some(BaselineProducts {
            k,
            top1: t1 as f64 / nb,
            top5: t5 as f64 / nb,
            identification_ap: metrics::micro_ap(&bpairs, branded.len()),
        })
    } else {
        None
    };
    let res = ProductResults {
        k,
        products: n_products,
        reference_images: n_images,
        branded_listings: branded.len(),
        unbranded_listings: unbranded.len(),
        top1: top1 as f64 / nb,
        top5: top5 as f64 / nb,
        sibling_confusion: sib as f64 / nb,
        other_brand_confusion: other as f64 / nb,
        identification_ap: metrics::micro_ap(&pairs, branded.len()),
        flagged,
        flag_precision: (flagged > 0).then(|| tp as f64 / flagged as f64),
        flag_recall: tp as f64 / positives.max(1) as f64,
        flag_right_product: (tp > 0).then(|| tp_right as f64 / tp as f64),
        flag_or_review_recall: fr as f64 / positives.max(1) as f64,
        unbranded_flagged: u_flag as f64 / nu,
        unbranded_flag_or_review: u_fr as f64 / nu,
        top_confusions,
        seconds: t0.elapsed().as_secs_f64(),
        region_share,
    };
    Ok((res, metrics::pr_curve(&pairs, branded.len()), baseline))
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn at_p(x: &Option<(f64, f32)>) -> String {
    match x {
        Some((r, t)) => format!("{} (sim ≥ {t:.3})", pct(*r)),
        None => "— (never reached)".into(),
    }
}

/// The results as Markdown tables.
pub fn markdown(r: &Results) -> String {
    let mut s = format!(
        "## Accuracy benchmark — model `{}` (match threshold {:.2}, review {:.2}, --limit {}{}, {})\n\n",
        r.model,
        r.match_threshold,
        r.review_threshold,
        r.limit,
        if r.seed != 0 { format!(", --seed {}", r.seed) } else { String::new() },
        if r.background > 0 { format!("scores normalised against {} background photos", r.background) } else { "raw scores".into() }
    );
    if let Some(c) = &r.copy {
        s += &format!(
            "### Copy detection\n\n{} reference images; {} edited copies; {} distractor photos. Scan {:.0} s, task {:.0} s; regions searched for {} of the query photos.\n\n\
             | metric | value |\n|---|---|\n| µAP (all query–reference pairs, top 10 per query) | {:.3} |\n\
             | µAP without the Grocery iconic references | {:.3} |\n\
             | recall at 90 % precision | {} |\n| recall at 99 % precision | {} |\n\
             | pairs at match threshold: precision / recall | {} / {} |\n| pairs at review threshold: precision / recall | {} / {} |\n\
             | distractors reaching review / match threshold | {} / {} |\n\n",
            c.references,
            c.copies,
            c.distractors,
            c.scan_seconds,
            c.seconds,
            pct(c.region_share),
            c.micro_ap,
            c.micro_ap_without_iconic,
            at_p(&c.recall_at_p90),
            at_p(&c.recall_at_p99),
            pct(c.at_match_threshold.precision),
            pct(c.at_match_threshold.recall),
            pct(c.at_review_threshold.precision),
            pct(c.at_review_threshold.recall),
            pct(c.distractors_above_review),
            pct(c.distractors_above_match),
        );
        let v: Vec<String> =
            c.false_matches_by_group.iter().map(|(a, b, n)| format!("{a} → {b}: {n}")).collect();
        s += &format!("Wrong pairs at or above the match threshold (true reference group → matched group): {}\n\n", if v.is_empty() { "none".into() } else { v.join("; ") });
        s += "| family | queries | top-1 | top-1 ≥ match | top-1 ≥ review | median sim. of true ref. |\n|---|---:|---:|---:|---:|---:|\n";
        for f in &c.families {
            s += &format!(
                "| {} | {} | {} | {} | {} | {:.3} |\n",
                f.family,
                f.queries,
                pct(f.top1),
                pct(f.top1_at_match),
                pct(f.top1_at_review),
                f.median_similarity
            );
        }
        s += "\n";
    }
    if !r.products.is_empty() {
        s += "### Products photographed again (Grocery)\n\n\
              | K shop photos | products / ref. images | branded / unbranded listings | top-1 | top-5 | sibling confusion | other-brand confusion | ident. AP | flags | flag precision | flag recall | flags on the right product | flag or review recall | unbranded flagged | unbranded flag or review |\n\
              |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for p in &r.products {
            s += &format!(
                "| {} | {} / {} | {} / {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} |\n",
                p.k,
                p.products,
                p.reference_images,
                p.branded_listings,
                p.unbranded_listings,
                pct(p.top1),
                pct(p.top5),
                pct(p.sibling_confusion),
                pct(p.other_brand_confusion),
                p.identification_ap,
                p.flagged,
                p.flag_precision.map(pct).unwrap_or_else(|| "— (no flags)".into()),
                pct(p.flag_recall),
                p.flag_right_product.map(pct).unwrap_or_else(|| "—".into()),
                pct(p.flag_or_review_recall),
                pct(p.unbranded_flagged),
                pct(p.unbranded_flag_or_review),
            );
        }
        if r.products.iter().any(|p| p.region_share > 0.0) {
            let v: Vec<String> =
                r.products.iter().map(|p| format!("K={}: {}", p.k, pct(p.region_share))).collect();
            s += &format!("\nListing photos whose regions were searched too: {}.\n", v.join(", "));
        }
        if let Some(p) = r.products.last() {
            s += &format!("\nMost frequent wrong best matches at K={}: ", p.k);
            let v: Vec<String> = p
                .top_confusions
                .iter()
                .take(5)
                .map(|(a, b, n)| format!("{a} → {b} ({n})"))
                .collect();
            s += &v.join("; ");
            s += "\n";
        }
    }
    s += &baseline_markdown(r);
    s
}

/// The side-by-side table of the model and the pHash baseline (empty without `--baseline`).
fn baseline_markdown(r: &Results) -> String {
    let mut s = String::new();
    if let (Some(m), Some(b)) = (&r.copy, &r.baseline_copy) {
        s += &format!("\n### `{}` against a pHash baseline, same queries\n\n| copy detection | {} | pHash (64-bit DCT) |\n|---|---:|---:|\n", r.model, r.model);
        s += &format!("| µAP | {:.3} | {:.3} |\n| µAP without the Grocery iconic references | {:.3} | {:.3} |\n", m.micro_ap, b.micro_ap, m.micro_ap_without_iconic, b.micro_ap_without_iconic);
        s += &format!(
            "| recall at 90 % precision | {} | {} |\n| recall at 99 % precision | {} | {} |\n",
            at_p(&m.recall_at_p90),
            at_p(&b.recall_at_p90),
            at_p(&m.recall_at_p99),
            at_p(&b.recall_at_p99)
        );
        s += &format!(
            "| distractors reaching the review threshold | {} | {} |\n",
            pct(m.distractors_above_review),
            pct(b.distractors_above_review)
        );
        for (fm, fb) in m.families.iter().zip(&b.families) {
            s += &format!("| top-1: {} | {} | {} |\n", fm.family, pct(fm.top1), pct(fb.top1));
        }
        s += &format!(
            "| time (pHash: hashing and ranking; model: scan) | {:.0} s | {:.0} s |\n",
            m.scan_seconds, b.seconds
        );
    }
    if !r.baseline_products.is_empty() {
        s += &format!("\n| products photographed again | {} top-1 / top-5 / ident. AP | pHash top-1 / top-5 / ident. AP |\n|---|---|---|\n", r.model);
        for (m, b) in r.products.iter().zip(&r.baseline_products) {
            s += &format!(
                "| K = {} | {} / {} / {:.3} | {} / {} / {:.3} |\n",
                m.k,
                pct(m.top1),
                pct(m.top5),
                m.identification_ap,
                pct(b.top1),
                pct(b.top5),
                b.identification_ap
            );
        }
    }
    s
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
