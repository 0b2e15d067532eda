//! The products task: Grocery products photographed again in shops, scanned against a catalog of
//! their iconic images and K shop photos each, half of the listings at a suspicious price.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use super::folds::{self, Case, Sellers};
use super::harness::{build_catalog, dump_matches, listing, phash_rank, product, scan_catalog};
use super::metrics::{self, Pair, PrPoint};
use super::{grocery_split, mix, sample, say, stem};
use super::{BaselineProducts, Options, ProductResults};
use crate::catalog::ProductRecord;
use crate::config::Config;
use crate::model::ModelLocation;
use crate::policy::Verdict;
use crate::scan::{Listing, Report};
use crate::vision::source::ImageRef;

/// Brand of a Grocery class: the first word of its name (`Arla-Standard-Milk` → `Arla`).
pub(super) fn brand_of(class: &str) -> &str {
    class.split('-').next().unwrap_or(class)
}

/// Reference price of every benchmark product, in EUR.
const REFERENCE_PRICE: f64 = 25.0;
/// A suspicious price: 30 % of the reference (the default policy flags at or below 50 %).
const SUSPICIOUS_PRICE: f64 = 7.5;

/// A test-split photo: (path, class name, branded).
type Photo = (PathBuf, String, bool);

/// The listings of one setting: the sampled branded and unbranded photos, each listing's truth
/// (class if branded, suspicious price) and the listings, branded first.
struct ListingSet {
    branded: Vec<Photo>,
    unbranded: Vec<Photo>,
    truth: Vec<(Option<String>, bool)>,
    listings: Vec<Listing>,
}

/// Runs the products task with `k` shop photos per product in the catalog: its figures, its
/// precision–recall curve and, with `--baseline`, the pHash baseline's figures.
pub(super) fn products_task(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    k: usize,
) -> Result<(ProductResults, Vec<PrPoint>, Option<BaselineProducts>)> {
    let t0 = Instant::now();
    let products = catalog_products(opts, k)?;
    let n_products = products.len();
    let product_images = photos_of(&products);
    let known: HashSet<String> = products.iter().map(|p| p.product_id.clone()).collect();
    let sellers = sellers_of(&products);
    let dir = opts.out.join(format!("work/catalog-products-k{k}"));
    say(opts, format!("products K={k}: cataloguing {n_products} products"));
    let n_images = build_catalog(config, loc, opts, &dir, products)?;
    let set = listings_of(opts, &known)?;
    say(opts, format!("products K={k}: scanning {} listings", set.listings.len()));
    let classes = folds::assign(
        set.branded.iter().map(|(_, c, _)| c.as_str()),
        set.unbranded.iter().map(|(_, c, _)| c.as_str()),
    );
    let cases = cases_of(&set, &classes);
    let (reports, region_share) = scan_catalog(config, loc, &dir, set.listings)?;
    dump_matches(
        &opts.out.join(format!("products-k{k}-matches.jsonl")),
        reports
            .iter()
            .zip(&set.truth)
            .map(|(r, (c, _))| (r.listing_id.as_deref().unwrap_or("-"), c.as_deref())),
        &reports,
    )?;
    let t = tally(&set.truth, &reports)?;
    let thresholds = config.policy.thresholds(&loc.manifest)?;
    let pooled = folds::pooled(&cases, &reports);
    let by_folds = folds::by_folds(&cases, &reports, &classes, config, &thresholds, &sellers)?;
    let (branded, unbranded) = (&set.branded, &set.unbranded);
    let nb = branded.len().max(1) as f64;
    let nu = unbranded.len().max(1) as f64;
    let top_confusions = top_confusions(t.confusions);
    let baseline = if opts.baseline {
        Some(products_baseline(config, k, &product_images, branded)?)
    } else {
        None
    };
    let (tp, flagged, positives) = (t.tp, t.flagged, t.positives);
    let res = ProductResults {
        k,
        products: n_products,
        reference_images: n_images,
        branded_listings: branded.len(),
        unbranded_listings: unbranded.len(),
        top1: t.top1 as f64 / nb,
        top5: t.top5 as f64 / nb,
        brand_top1: pooled.brand_top1,
        flags_and_reviews_correct: pooled.flags_and_reviews_correct,
        mean_set_size: pooled.mean_set_size,
        sibling_confusion: t.sib as f64 / nb,
        other_brand_confusion: t.other as f64 / nb,
        identification_ap: metrics::micro_ap(&t.pairs, branded.len()),
        flagged,
        flag_precision: (flagged > 0).then(|| tp as f64 / flagged as f64),
        flag_recall: tp as f64 / positives.max(1) as f64,
        flag_right_product: (tp > 0).then(|| t.tp_right as f64 / tp as f64),
        flag_or_review_recall: t.fr as f64 / positives.max(1) as f64,
        unbranded_flagged: t.u_flag as f64 / nu,
        unbranded_flag_or_review: t.u_fr as f64 / nu,
        top_confusions,
        seconds: t0.elapsed().as_secs_f64(),
        region_share,
        folds: by_folds,
    };
    Ok((res, metrics::pr_curve(&t.pairs, branded.len()), baseline))
}

/// The catalog: one product per branded Grocery class with an iconic image, with `k` of the
/// class's train-split shop photos from an offset the seed picks.
fn catalog_products(opts: &Options, k: usize) -> Result<Vec<ProductRecord>> {
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
    Ok(products)
}

/// The authorised sellers of each brand of `products`.
fn sellers_of(products: &[ProductRecord]) -> Sellers {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for p in products {
        let v = map.entry(p.brand.clone()).or_default();
        v.extend(p.authorized_sellers.iter().cloned());
        v.sort();
        v.dedup();
    }
    Sellers(map)
}

/// The listings of `set` as the folds see them: their class's fold (`classes`), truth and price.
fn cases_of(set: &ListingSet, classes: &HashMap<String, usize>) -> Vec<Case> {
    let photos = set.branded.iter().chain(&set.unbranded);
    photos
        .zip(&set.truth)
        .map(|((_, class, _), (truth, low))| Case {
            fold: classes.get(class).copied().unwrap_or(0),
            truth: truth.clone(),
            low: *low,
        })
        .collect()
}

/// Each product's id and its photo files (for the pHash baseline).
fn photos_of(products: &[ProductRecord]) -> Vec<(String, Vec<PathBuf>)> {
    products
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
        .collect()
}

/// The listings: test-split photos of the catalogued classes (branded) and of fruit and
/// vegetables (unbranded), sampled; every other one at a suspicious price.
fn listings_of(opts: &Options, known: &HashSet<String>) -> Result<ListingSet> {
    let test = grocery_split(&opts.bench_dir, "test")?;
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
    Ok(ListingSet { branded, unbranded, truth, listings })
}

/// The counts of the products task, gathered in one pass over the reports.
#[derive(Default)]
struct Tally {
    /// Branded listings whose best match is the right product, or among the best five.
    top1: usize,
    top5: usize,
    /// Branded listings whose wrong best match is of the same brand, or of another.
    sib: usize,
    other: usize,
    /// Listings flagged.
    flagged: usize,
    /// Branded listings at a suspicious price: flagged, flagged on the right product, flagged or
    /// reviewed, and all of them.
    tp: usize,
    tp_right: usize,
    fr: usize,
    positives: usize,
    /// Unbranded listings flagged, and flagged or reviewed.
    u_flag: usize,
    u_fr: usize,
    /// (best score, best match is the right product) of every listing.
    pairs: Vec<Pair>,
    /// Wrong best matches: (true product, matched product) → count.
    confusions: HashMap<(String, String), usize>,
}

/// Counts the reports against their truth; fails naming a listing that could not be scanned.
fn tally(truth: &[(Option<String>, bool)], reports: &[Report]) -> Result<Tally> {
    let mut t = Tally::default();
    for ((class, low), r) in truth.iter().zip(reports) {
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
        t.flagged += usize::from(is_flag);
        match class {
            Some(c) => {
                let right = best.is_some_and(|m| &m.product_id == c);
                t.pairs.push(Pair { score: best.map(|m| m.score).unwrap_or(0.0), positive: right });
                t.top1 += usize::from(right);
                t.top5 += usize::from(r.matches.iter().take(5).any(|m| &m.product_id == c));
                if let Some(m) = best.filter(|_| !right) {
                    if brand_of(&m.product_id) == brand_of(c) {
                        t.sib += 1;
                    } else {
                        t.other += 1;
                    }
                    *t.confusions.entry((c.clone(), m.product_id.clone())).or_default() += 1;
                }
                if *low {
                    t.positives += 1;
                    t.tp += usize::from(is_flag);
                    t.tp_right += usize::from(is_flag && right);
                    t.fr += usize::from(is_fr);
                }
            }
            None => {
                t.pairs.push(Pair { score: best.map(|m| m.score).unwrap_or(0.0), positive: false });
                t.u_flag += usize::from(is_flag);
                t.u_fr += usize::from(is_fr);
            }
        }
    }
    Ok(t)
}

/// The ten most frequent wrong best matches, most frequent first (ties by name).
fn top_confusions(confusions: HashMap<(String, String), usize>) -> Vec<(String, String, usize)> {
    let mut top: Vec<(String, String, usize)> =
        confusions.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    top.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    top.truncate(10);
    top
}

/// The pHash baseline on the branded listings: top-1, top-5 and identification AP.
fn products_baseline(
    config: &Config,
    k: usize,
    product_images: &[(String, Vec<PathBuf>)],
    branded: &[Photo],
) -> Result<BaselineProducts> {
    let nb = branded.len().max(1) as f64;
    let refs: Vec<(&str, &Path)> = product_images
        .iter()
        .flat_map(|(id, ps)| ps.iter().map(move |p| (id.as_str(), p.as_path())))
        .collect();
    let query_photos: Vec<&Path> = branded.iter().map(|(p, _, _)| p.as_path()).collect();
    let ranked =
        phash_rank(&refs, &query_photos, 5, &crate::vision::decode::Limits::from(&config.limits))?;
    let (mut t1, mut t5, mut bpairs) = (0usize, 0usize, Vec::new());
    for ((_, c, _), r) in branded.iter().zip(&ranked) {
        let right = r.first().is_some_and(|m| &m.0 == c);
        t1 += usize::from(right);
        t5 += usize::from(r.iter().any(|m| &m.0 == c));
        bpairs.push(Pair { score: r.first().map_or(0.0, |m| m.1), positive: right });
    }
    Ok(BaselineProducts {
        k,
        top1: t1 as f64 / nb,
        top5: t5 as f64 / nb,
        identification_ap: metrics::micro_ap(&bpairs, branded.len()),
    })
}
