//! What every task of the benchmark does through the real code: build a catalog, scan listings
//! against it, write the matches for looking into the figures, and the pHash baseline's ranking.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::{grocery_split, load_for_editing, sample, write_file, Options};
use crate::catalog::{self, Adder, ProductRecord, Store};
use crate::config::Config;
use crate::model::embed::Embedder;
use crate::model::ModelLocation;
use crate::scan::{self, Listing, Report, Scanner, Seller};
use crate::vision::decode;
use crate::vision::source::{Fetcher, ImageRef};

/// Builds a fresh catalog in `dir` from `products`, exactly as `catalog add` does; fails naming
/// the file of any image that cannot be used.
pub(super) fn build_catalog(
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
    let mut embedder = Embedder::load(loc, config.model.batch_size, config.model.intra_threads)?;
    let fetcher = Fetcher::new(&config.limits)?;
    let mut adder = Adder::new(&mut store, &mut embedder, &fetcher, config)?;
    let mut images = 0;
    adder.add_products(catalog::in_chunks(products), |done| {
        if let Some((_, e)) = done.image_errors.first().or(done.skipped.first()) {
            bail!("benchmark catalog: {e}");
        }
        images += done.embedded + done.reused;
        Ok(())
    })?;
    adder.finish()?;
    let background = background_photos(opts)?;
    let mut adder = Adder::new(&mut store, &mut embedder, &fetcher, config)?;
    adder.add_background(&background, |done| match done.errors.first() {
        Some((src, e)) => bail!("benchmark background photo {src}: {e}"),
        None => Ok(()),
    })?;
    Ok(images)
}

/// The background photos of a run: `opts.background` Grocery `val` photos of fruit and vegetables.
pub(super) fn background_photos(opts: &Options) -> Result<Vec<PathBuf>> {
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
pub(super) fn scan_catalog(
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
pub(super) fn dump_matches<'a>(
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

pub(super) fn listing(id: String, path: &Path, price: Option<f64>, seller: &str) -> Listing {
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

pub(super) fn product(
    i: usize,
    brand: &str,
    id: &str,
    images: Vec<PathBuf>,
    price: f64,
) -> ProductRecord {
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

/// The pHash baseline: each query photo's `k` most similar products among the reference photos
/// (product id, photo), best first.
pub(super) fn phash_rank(
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
