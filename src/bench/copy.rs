//! The copy task: edited copies of catalog photos (and photos that copy nothing) scanned against
//! a catalog of one product per reference photo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use super::attack::{self, Family};
use super::harness::{build_catalog, dump_matches, listing, phash_rank, product, scan_catalog};
use super::metrics::{self, Pair, PrPoint};
use super::{grocery_split, load_for_editing, mix, sample, say, stem};
use super::{CopyResults, FamilyResult, Options};
use crate::catalog::ProductRecord;
use crate::config::Config;
use crate::model::ModelLocation;
use crate::policy::Verdict;
use crate::vision::decode;
use crate::vision::source::{image_files_in, image_files_under};

/// A query of the copy task: a listing photo and the reference it copies (if any).
struct Query {
    id: String,
    family: String,
    truth: Option<String>,
    path: PathBuf,
}

/// Each query's matches (catalog product, score), best first.
type Ranked = Vec<Vec<(String, f32)>>;

/// The photos of the copy task: the references (catalog product id, photo), every query, and how
/// many of the queries are distractors.
struct CopySet {
    refs: Vec<(String, PathBuf)>,
    queries: Vec<Query>,
    distractors: usize,
}

/// The copy task's scan: each query's ranked matches, the references catalogued, the scan's
/// seconds and the share of photos whose regions were searched too.
struct Scanned {
    ranked: Ranked,
    n_refs: usize,
    seconds: f64,
    region_share: f64,
}

/// Runs the copy task: its figures at the thresholds, its precision–recall curve and, with
/// `--baseline`, the pHash baseline's figures on the same queries.
pub(super) fn copy_task(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    match_t: f32,
    review_t: f32,
) -> Result<(CopyResults, Vec<PrPoint>, Option<CopyResults>)> {
    let t0 = Instant::now();
    let refs = references(&opts.bench_dir)?;
    say(opts, format!("copy: {} reference images", refs.len()));
    let mut queries = ready_made_queries(&opts.bench_dir)?;
    let distractors = add_distractors(opts, &mut queries)?;
    let limits = crate::vision::decode::Limits::from(&config.limits);
    let generated = edited_copies(opts, &limits, &refs)?;
    queries.extend(generated);
    let set = CopySet { refs, queries, distractors };
    let scanned = scan_copies(config, loc, opts, &set)?;
    let (mut res, curve) =
        copy_metrics(&set.queries, &scanned.ranked, scanned.n_refs, distractors, match_t, review_t);
    res.seconds = t0.elapsed().as_secs_f64();
    res.scan_seconds = scanned.seconds;
    res.region_share = scanned.region_share;
    let baseline = if opts.baseline { Some(copy_baseline(opts, &limits, &set)?) } else { None };
    Ok((res, curve, baseline))
}

/// The reference photos, each a catalog product: skimage, two PDQ originals, backgrounds and the
/// Grocery iconic images; fails when one is missing.
fn references(b: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut refs: Vec<(String, PathBuf)> = Vec::new();
    for p in image_files_in(&b.join("skimage"))? {
        refs.push((format!("skimage-{}", stem(&p)), p));
    }
    refs.push(("pdq-bridge".into(), b.join("pdq/bridge-mods/aaa-orig.jpg")));
    refs.push(("pdq-exif".into(), b.join("pdq/exif-rotn/exif-rotn-1.jpg")));
    for p in image_files_in(&b.join("backgrounds"))? {
        refs.push((format!("background-{}", stem(&p)), p));
    }
    for p in image_files_under(&b.join("grocery/dataset/iconic-images-and-descriptions"))? {
        if stem(&p).ends_with("_Iconic") {
            refs.push((format!("iconic-{}", stem(&p).trim_end_matches("_Iconic")), p));
        }
    }
    for (_, p) in &refs {
        if !p.is_file() {
            bail!("benchmark image {} is missing", p.display());
        }
    }
    Ok(refs)
}

/// The ready-made queries: PDQ's edits of its two originals.
fn ready_made_queries(b: &Path) -> Result<Vec<Query>> {
    let mut queries: Vec<Query> = Vec::new();
    for p in image_files_in(&b.join("pdq/bridge-mods"))? {
        if stem(&p) != "aaa-orig" {
            queries.push(Query {
                id: format!("pdq_bridge_mods/{}", stem(&p)),
                family: "pdq_bridge_mods".into(),
                truth: Some("pdq-bridge".into()),
                path: p,
            });
        }
    }
    for p in image_files_in(&b.join("pdq/dih"))? {
        queries.push(Query {
            id: format!("pdq_dih/{}", stem(&p)),
            family: "pdq_dih".into(),
            truth: Some("pdq-bridge".into()),
            path: p,
        });
    }
    for p in image_files_in(&b.join("pdq/exif-rotn"))? {
        if stem(&p) != "exif-rotn-1" {
            queries.push(Query {
                id: format!("pdq_exif_rotn/{}", stem(&p)),
                family: "pdq_exif_rotn".into(),
                truth: Some("pdq-exif".into()),
                path: p,
            });
        }
    }
    Ok(queries)
}

/// Adds the distractors to `queries` (shop photos of the test split and the labelme subset);
/// returns how many.
fn add_distractors(opts: &Options, queries: &mut Vec<Query>) -> Result<usize> {
    let b = &opts.bench_dir;
    let test: Vec<PathBuf> = grocery_split(b, "test")?.into_iter().map(|(p, _, _)| p).collect();
    let mut distractors = sample(&test, opts.limit, opts.seed);
    distractors.extend(image_files_in(&b.join("pdq/labelme-subset"))?);
    for p in &distractors {
        queries.push(Query {
            id: format!("distractor/{}", stem(p)),
            family: "distractor".into(),
            truth: None,
            path: p.clone(),
        });
    }
    Ok(distractors.len())
}

/// The generated edits: each reference edited by every attack family, written as JPEG under
/// `--out`; fillers for collages and backdrops are train-split shop photos.
fn edited_copies(
    opts: &Options,
    limits: &decode::Limits,
    refs: &[(String, PathBuf)],
) -> Result<Vec<Query>> {
    let train: Vec<PathBuf> =
        grocery_split(&opts.bench_dir, "train")?.into_iter().map(|(p, _, _)| p).collect();
    let fillers: Vec<image::RgbImage> = sample(&train, 24, opts.seed)
        .par_iter()
        .map(|p| load_for_editing(p, limits))
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
    let editor = Editor { seed: opts.seed, limits, fillers, qdir };
    let generated: Vec<Vec<Query>> =
        refs.par_iter().map(|(id, path)| editor.edit(id, path)).collect::<Result<_>>()?;
    Ok(generated.into_iter().flatten().collect())
}

/// What editing a reference photo takes: the draw (`--seed`), the decoding limits, the filler
/// photos of collages and backdrops, and the directory the edits are written to.
struct Editor<'a> {
    seed: u64,
    limits: &'a decode::Limits,
    fillers: Vec<image::RgbImage>,
    qdir: PathBuf,
}

impl Editor<'_> {
    /// One reference photo edited by every attack family, each edit written to
    /// `qdir/FAMILY/ID.jpg`.
    fn edit(&self, id: &str, path: &Path) -> Result<Vec<Query>> {
        let img = load_for_editing(path, self.limits)?;
        let mut out = Vec::new();
        for f in Family::ALL {
            let a = attack::apply(&img, f, attack::seed_of(id) ^ mix(self.seed), &self.fillers);
            let dest = self.qdir.join(f.name()).join(format!("{id}.jpg"));
            let file = std::fs::File::create(&dest)
                .with_context(|| format!("cannot create {}", dest.display()))?;
            let mut w = std::io::BufWriter::new(file);
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut w, a.jpeg_quality)
                .encode_image(&a.image)
                .with_context(|| format!("cannot write {}", dest.display()))?;
            out.push(Query {
                id: format!("{}/{id}", f.name()),
                family: f.name().into(),
                truth: Some(id.to_string()),
                path: dest,
            });
        }
        Ok(out)
    }
}

/// Catalogues one product per reference photo and scans every query against it (top 10); writes
/// `copy-matches.jsonl`; fails naming a query that could not be scanned.
fn scan_copies(
    config: &Config,
    loc: &ModelLocation,
    opts: &Options,
    set: &CopySet,
) -> Result<Scanned> {
    let products: Vec<ProductRecord> = set
        .refs
        .iter()
        .enumerate()
        .map(|(i, (id, p))| product(i, "bench", id, vec![p.clone()], 100.0))
        .collect();
    let dir = opts.out.join("work/catalog-copy");
    let n_refs = build_catalog(config, loc, opts, &dir, products)?;
    say(opts, format!("copy: scanning {} queries", set.queries.len()));
    let mut cfg = config.clone();
    cfg.policy.top_k = 10;
    let listings =
        set.queries.iter().map(|q| listing(q.id.clone(), &q.path, None, "bench-seller")).collect();
    let ts = Instant::now();
    let (reports, region_share) = scan_catalog(&cfg, loc, &dir, listings)?;
    let seconds = ts.elapsed().as_secs_f64();
    dump_matches(
        &opts.out.join("copy-matches.jsonl"),
        set.queries.iter().map(|q| (q.id.as_str(), q.truth.as_deref())),
        &reports,
    )?;
    let mut ranked = Vec::with_capacity(reports.len());
    for (q, r) in set.queries.iter().zip(&reports) {
        if r.verdict == Verdict::Error {
            bail!("query {} could not be scanned: {}", q.path.display(), r.reasons.join("; "));
        }
        ranked.push(r.matches.iter().map(|m| (m.product_id.clone(), m.score)).collect());
    }
    Ok(Scanned { ranked, n_refs, seconds, region_share })
}

/// The pHash baseline on the copy task's queries, at the thresholds of its own 99 % and 90 %
/// precision (a hash has no calibrated thresholds).
fn copy_baseline(opts: &Options, limits: &decode::Limits, set: &CopySet) -> Result<CopyResults> {
    say(opts, "copy: pHash baseline");
    let ts = Instant::now();
    let ref_photos: Vec<(&str, &Path)> =
        set.refs.iter().map(|(id, p)| (id.as_str(), p.as_path())).collect();
    let query_photos: Vec<&Path> = set.queries.iter().map(|q| q.path.as_path()).collect();
    let ranked = phash_rank(&ref_photos, &query_photos, 10, limits)?;
    let (n_refs, queries) = (set.refs.len(), &set.queries);
    let (pre, _) = copy_metrics(queries, &ranked, n_refs, set.distractors, 1.0, 1.0);
    let at = |x: Option<(f64, f32)>| x.map_or(1.0, |(_, t)| t);
    let (mut b, _) = copy_metrics(
        queries,
        &ranked,
        n_refs,
        set.distractors,
        at(pre.recall_at_p99),
        at(pre.recall_at_p90),
    );
    b.seconds = ts.elapsed().as_secs_f64();
    b.scan_seconds = b.seconds;
    Ok(b)
}

/// The copy queries' pairs and counts, gathered in one pass over their ranked matches.
#[derive(Default)]
struct Tally {
    pairs: Vec<Pair>,
    pairs_no_iconic: Vec<Pair>,
    /// Wrong pairs at or above the match threshold by (true group, matched group).
    false_groups: HashMap<(String, String), usize>,
    /// Per family: (best match right, its similarity).
    fam: HashMap<String, Vec<(bool, f32)>>,
    /// Per family: the similarity of the right reference (0 when not retrieved).
    fam_sims: HashMap<String, Vec<f32>>,
    /// Distractors whose best match reaches the review threshold.
    d_review: usize,
    /// Distractors whose best match reaches the match threshold.
    d_match: usize,
}

/// A reference's group: the first word of its id (skimage, pdq, background, iconic).
fn group(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_string()
}

fn tally(queries: &[Query], ranked: &[Vec<(String, f32)>], match_t: f32, review_t: f32) -> Tally {
    let mut t = Tally::default();
    for (q, matches) in queries.iter().zip(ranked) {
        let truth_group = q.truth.as_deref().map(group).unwrap_or_else(|| "distractor".into());
        for (product, score) in matches {
            let pair =
                Pair { score: *score, positive: q.truth.as_deref() == Some(product.as_str()) };
            t.pairs.push(pair);
            if truth_group != "iconic" && group(product) != "iconic" {
                t.pairs_no_iconic.push(pair);
            }
            if !pair.positive && *score >= match_t {
                *t.false_groups.entry((truth_group.clone(), group(product))).or_default() += 1;
            }
        }
        let best = matches.first();
        match &q.truth {
            None => {
                let s = best.map(|m| m.1).unwrap_or(f32::MIN);
                t.d_review += usize::from(s >= review_t);
                t.d_match += usize::from(s >= match_t);
            }
            Some(truth) => {
                let right = best.is_some_and(|m| &m.0 == truth);
                let sim = best.map(|m| m.1).unwrap_or(0.0);
                t.fam.entry(q.family.clone()).or_default().push((right, sim));
                let truth_sim = matches.iter().find(|m| &m.0 == truth).map(|m| m.1).unwrap_or(0.0);
                t.fam_sims.entry(q.family.clone()).or_default().push(truth_sim);
            }
        }
    }
    t
}

/// The figures of each attack family, in the order of `Family::ALL` and then PDQ's.
fn families(t: &Tally, match_t: f32, review_t: f32) -> Vec<FamilyResult> {
    let mut order: Vec<String> = Family::ALL.iter().map(|f| f.name().to_string()).collect();
    order.extend(["pdq_bridge_mods", "pdq_dih", "pdq_exif_rotn"].map(String::from));
    order
        .iter()
        .filter_map(|name| {
            let v = t.fam.get(name)?;
            let n = v.len() as f64;
            let mut sims = t.fam_sims.get(name).cloned().unwrap_or_default();
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
        .collect()
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
    let t = tally(queries, ranked, match_t, review_t);
    let n_pos = queries.iter().filter(|q| q.truth.is_some()).count();
    let families = families(&t, match_t, review_t);
    let nd = n_distractors.max(1) as f64;
    let n_pos_no_iconic =
        queries.iter().filter(|q| q.truth.as_deref().is_some_and(|t| group(t) != "iconic")).count();
    let mut false_matches_by_group: Vec<(String, String, usize)> =
        t.false_groups.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    false_matches_by_group
        .sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    let pairs = t.pairs;
    let res = CopyResults {
        references: n_refs,
        match_threshold: match_t,
        review_threshold: review_t,
        copies: n_pos,
        distractors: n_distractors,
        micro_ap: metrics::micro_ap(&pairs, n_pos),
        micro_ap_without_iconic: metrics::micro_ap(&t.pairs_no_iconic, n_pos_no_iconic),
        false_matches_by_group,
        recall_at_p90: metrics::recall_at_precision(&pairs, n_pos, 0.90),
        recall_at_p99: metrics::recall_at_precision(&pairs, n_pos, 0.99),
        at_match_threshold: metrics::at_threshold(&pairs, n_pos, match_t),
        at_review_threshold: metrics::at_threshold(&pairs, n_pos, review_t),
        distractors_above_review: t.d_review as f64 / nd,
        distractors_above_match: t.d_match as f64 / nd,
        families,
        seconds: 0.0,
        scan_seconds: 0.0,
        region_share: 0.0,
    };
    (res, metrics::pr_curve(&pairs, n_pos))
}
