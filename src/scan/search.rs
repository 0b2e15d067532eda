//! Searching the catalog with a listing's embedded photos, with score normalisation's background
//! terms.

use crate::model::RegionQueries;
use crate::scan::{Judge, Searched};

impl Judge {
    /// Nearest visible catalog images of each embedding, in one batch, with each embedding's
    /// background term (see `background_terms`).
    pub(super) fn search(&self, embeddings: &[Vec<f32>]) -> Vec<Searched> {
        let k = self.ctx.config.index.candidates.max(self.ctx.config.policy.top_k);
        let queries: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
        let allowed = |id: u32| self.view.visible(id);
        let hits = self.view.index.search_batch(&queries, k, &allowed);
        let terms = self.background_terms(&queries);
        hits.into_iter()
            .zip(terms)
            .map(|(hits, background)| Searched { hits, background })
            .collect()
    }

    /// Whether a photo's regions are searched too, given its whole-photo results: with
    /// `region_queries = "all"` unless the whole photo already decides (`decided_whole`); with
    /// `"uncertain"` when its best score is at least `region_min_score` and below the match
    /// threshold (clearly unrelated photos and photos already found as copies are left alone).
    pub(super) fn needs_regions(&self, whole: &Searched) -> bool {
        match self.ctx.regions {
            RegionQueries::Off => false,
            RegionQueries::All => !self.decided_whole(whole),
            RegionQueries::Uncertain => {
                let best = whole
                    .hits
                    .first()
                    .map_or(f32::MIN, |h| h.similarity - whole.background.unwrap_or(0.0))
                    as f64;
                best >= self.ctx.config.scan.region_min_score
                    && best < self.ctx.thresholds.match_threshold
            }
        }
    }

    /// Whether a photo's whole-photo search already decides it: its best score is at least
    /// `scan.region_skip_score` and no other product's comes within `scan.region_skip_margin` of
    /// it. Its regions could only add weaker evidence for the same product (a copy found whole).
    fn decided_whole(&self, whole: &Searched) -> bool {
        let scan = &self.ctx.config.scan;
        let score = |similarity: f32| (similarity - whole.background.unwrap_or(0.0)) as f64;
        let owners = |vector: u32| {
            self.view.vector_products.get(vector as usize).map_or(&[][..], |o| o.as_slice())
        };
        let Some(top) = whole.hits.iter().find(|h| !owners(h.vector).is_empty()) else {
            return false;
        };
        let best = score(top.similarity);
        let same = |pi: usize| owners(top.vector).iter().any(|(p, _)| *p == pi);
        let rival = whole
            .hits
            .iter()
            .filter(|h| owners(h.vector).iter().any(|(pi, _)| !same(*pi)))
            .map(|h| score(h.similarity))
            .fold(f64::MIN, f64::max);
        best >= scan.region_skip_score && best - rival >= scan.region_skip_margin
    }

    /// Score normalisation (SSCD's authors' method): for each query, `policy.background_beta` × its
    /// mean similarity to the `policy.background_k` nearest background photos, which `judge`
    /// subtracts from the query's similarities. `None` when the catalog has no background photos
    /// or beta is 0.
    pub(super) fn background_terms(&self, queries: &[&[f32]]) -> Vec<Option<f32>> {
        let p = &self.ctx.config.policy;
        let Some(bg) = self.view.background.as_ref().filter(|_| p.background_beta > 0.0) else {
            return vec![None; queries.len()];
        };
        bg.search_batch(queries, p.background_k, &|_| true)
            .into_iter()
            .map(|hits| {
                let mean =
                    hits.iter().map(|h| h.similarity).sum::<f32>() / hits.len().max(1) as f32;
                (!hits.is_empty()).then_some(p.background_beta as f32 * mean)
            })
            .collect()
    }
}
