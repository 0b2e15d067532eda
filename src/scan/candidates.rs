//! Candidate products of a listing: search hits grouped by product, each with its best photo pair
//! and its score (`Score`), the near-duplicates by perceptual hash, and which of them are verified.

use std::collections::{HashMap, HashSet};

use crate::catalog::ProductInfo;
use crate::index::Hit;
use crate::policy::{FeaturePair, Match, MatchRegion};
use crate::scan::photo::PhotoRef;
use crate::scan::score::Score;
use crate::scan::{Judge, Searched};

/// A search of one query of a listing: a photo or one of its regions.
#[derive(Debug, Clone)]
pub(super) struct Query {
    /// The photo or region searched.
    pub name: PhotoRef,
    /// What the search found.
    pub searched: Searched,
}

/// A candidate product of a listing, becoming a verdict's `Match` (`Candidate::into_match`).
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    /// The product's index in the catalog view.
    pub product: usize,
    /// Brand of the product.
    pub brand: String,
    /// The brand's product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// The reference image of the best photo pair.
    pub image: String,
    /// The listing photo or region of the best photo pair.
    pub listing_image: PhotoRef,
    /// The score and its parts.
    pub score: Score,
    /// What geometric verification found (`Judge::verify`).
    pub checked: Checked,
    /// Reference price of the product.
    pub reference_price: f64,
    /// Currency of the reference price.
    pub reference_currency: String,
}

/// What geometric verification found for a candidate, as `Match` shows it (see its fields).
#[derive(Debug, Clone, Default)]
pub(super) struct Checked {
    pub inliers: Option<u32>,
    pub central_inliers: Option<u32>,
    pub shared_inliers: Option<u32>,
    pub hash_distance: Option<u32>,
    pub mirrored: bool,
    pub region: Option<MatchRegion>,
    pub features: Vec<FeaturePair>,
}

impl Candidate {
    /// Product `p` (index `product`), first seen in reference photo `image` from `listing_image`.
    fn new(product: usize, p: &ProductInfo, image: &str, listing_image: &PhotoRef) -> Candidate {
        Candidate {
            product,
            brand: p.brand.clone(),
            product_id: p.product_id.clone(),
            title: p.title.clone(),
            image: image.to_string(),
            listing_image: listing_image.clone(),
            score: Score::default(),
            checked: Checked::default(),
            reference_price: p.price,
            reference_currency: p.currency.clone(),
        }
    }

    /// The verdict's match: its score and parts derived from `score`.
    pub fn into_match(self) -> Match {
        let c = self.checked;
        let mut m = Match {
            brand: self.brand,
            product_id: self.product_id,
            title: self.title,
            image: self.image,
            listing_image: self.listing_image.to_string(),
            score: 0.0,
            cosine: 0.0,
            background: None,
            support: None,
            inliers: c.inliers,
            central_inliers: c.central_inliers,
            hash_distance: c.hash_distance,
            located: None,
            shared_inliers: c.shared_inliers,
            verification: None,
            mirrored: c.mirrored,
            colour: None,
            region: c.region,
            features: c.features,
            reference_price: self.reference_price,
            reference_currency: self.reference_currency,
        };
        self.score.show(&mut m);
        m
    }
}

/// Sorts candidates best first: by score, then product id.
pub(super) fn rank(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        b.score.total().total_cmp(&a.score.total()).then_with(|| a.product_id.cmp(&b.product_id))
    });
}

/// Each product's reference photos, with the best score any listing photo got against each.
type PhotoScores = HashMap<usize, HashMap<u32, f32>>;

impl Judge {
    /// Groups search hits of a listing's photos by product, keeping each product's best pair by
    /// score (similarity minus the photo's background term), best first: as many as the policy
    /// and verification look at, and the `near` duplicates (`near_duplicates`) wherever they rank.
    pub(super) fn products_from_hits(
        &self,
        queries: &[Query],
        near: &HashSet<usize>,
    ) -> Vec<Candidate> {
        let (mut best, mut per_photo) = self.best_pairs(queries);
        let w = self.ctx.config.policy.support_weight as f32;
        if w > 0.0 {
            for (pi, c) in best.iter_mut() {
                let scores: Vec<f32> =
                    per_photo.remove(pi).map(|p| p.into_values().collect()).unwrap_or_default();
                c.score.add_support(Score::support_of(w, scores));
            }
        }
        let mut v: Vec<Candidate> = best.into_values().collect();
        rank(&mut v);
        // the best, and the near-duplicates wherever they rank (they are verified)
        let keep = self.ctx.config.policy.top_k.max(if self.view.features.is_some() {
            self.ctx.config.verify.candidates
        } else {
            0
        });
        v.into_iter()
            .enumerate()
            .filter(|(rank, c)| *rank < keep || near.contains(&c.product))
            .map(|(_, c)| c)
            .collect()
    }

    /// Each product's best photo pair among the hits of `queries`, and each product's reference
    /// photos with the best score any listing photo got against each.
    fn best_pairs(&self, queries: &[Query]) -> (HashMap<usize, Candidate>, PhotoScores) {
        let mut best: HashMap<usize, Candidate> = HashMap::new();
        let mut per_photo: PhotoScores = HashMap::new();
        for q in queries {
            let background = q.searched.background;
            for hit in &q.searched.hits {
                let score = Score::of_pair(hit.similarity, background);
                for (pi, src) in
                    self.view.vector_products.get(hit.vector as usize).into_iter().flatten()
                {
                    let Some(p) = self.view.products.get(*pi) else { continue };
                    let photo =
                        per_photo.entry(*pi).or_default().entry(hit.vector).or_insert(f32::MIN);
                    *photo = photo.max(score);
                    let c = best.entry(*pi).or_insert_with(|| Candidate::new(*pi, p, src, &q.name));
                    if c.score.offer_pair(hit.similarity, background) {
                        c.image = src.clone();
                        c.listing_image = q.name.clone();
                    }
                }
            }
        }
        (best, per_photo)
    }

    /// The candidates `verify` checks: of the best `verify.candidates`, those scoring at least
    /// `verify.min_score`, and the `near` duplicates wherever they rank, with their index.
    pub(super) fn to_verify<'a>(
        &'a self,
        candidates: &'a [Candidate],
        near: &'a HashSet<usize>,
    ) -> impl Iterator<Item = (usize, &'a Candidate)> {
        let (n, min) = (self.ctx.config.verify.candidates, self.ctx.config.verify.min_score);
        let is_near = move |c: &Candidate| !near.is_empty() && near.contains(&c.product);
        candidates
            .iter()
            .enumerate()
            .filter(move |(i, c)| (*i < n && c.score.total() as f64 >= min) || is_near(c))
    }

    /// Whether `judge` will verify a listing with these candidates: verification is on and
    /// `to_verify` leaves one. Only such listings get their photos' local features extracted.
    pub(super) fn will_verify(&self, candidates: &[Candidate], near: &HashSet<usize>) -> bool {
        self.view.features.is_some() && self.to_verify(candidates, near).next().is_some()
    }

    /// Near-duplicates by perceptual hash, however the embedding ranks them: each reference photo
    /// within `phash::NEAR` bits of the listing photo's hash as it is (the first of its `hashes`,
    /// `load::Loaded::phashes`) puts its products in `near`, which are verified (`to_verify`), and
    /// joins the photo's search results with its similarity to the photo's `embedding` if the
    /// search did not find it. A pixelated copy, for one, keeps its hash but not its embedding.
    /// The other orientations and the regions are not looked up in the whole catalog: a plain
    /// product on white, turned or cut to a quarter, can lie near an unrelated reference photo by
    /// chance (a juice carton seen in perspective and turned came within 4 bits of an aubergine).
    /// They are still compared with the candidates the embedding finds (`verify`).
    pub(super) fn near_duplicates(
        &self,
        hashes: &[(Option<&'static str>, u64)],
        embedding: Option<&[f32]>,
        whole: &mut Searched,
        near: &mut HashSet<usize>,
    ) {
        if let Some((_, h)) = hashes.iter().find(|(region, _)| region.is_none()) {
            for (vector, _) in self.view.hashes.near(*h) {
                let Some(owners) =
                    self.view.vector_products.get(vector as usize).filter(|o| !o.is_empty())
                else {
                    continue;
                };
                near.extend(owners.iter().map(|(pi, _)| *pi));
                if let Some(e) =
                    embedding.filter(|_| !whole.hits.iter().any(|hit| hit.vector == vector))
                {
                    let r = self.view.index.rows().row_f32(vector as usize);
                    whole.hits.push(Hit { vector, similarity: crate::index::simd::dot(e, &r) });
                }
            }
        }
    }
}
