//! Look-alike siblings of one brand told apart by colour (`Judge::prefer_by_colour`).

use anyhow::Result;

use crate::catalog::FeatureStore;
use crate::scan::candidates::Candidate;
use crate::scan::score::Score;
use crate::scan::Judge;
use crate::vision::colour::Colours;

impl Judge {
    /// Siblings told apart by colour: when the two best candidates are look-alike products of one
    /// brand (both verified with at least `verify.min_inliers` inliers, scores within
    /// `colour::SIBLING_GAP` of each other), each product's reference photos that have
    /// colours (`colour::Colours::of_reference`) are compared with the listing photo it matched,
    /// and the second goes first when it shares more than `colour::SIBLING_MARGIN` more of that
    /// photo's colour. The embedding ignores colour by design and local features agree on the
    /// design siblings share, so colour is what is left to tell a brand's milks or juices apart.
    /// Both get `colour`; scores are left as they are.
    pub(super) fn prefer_by_colour(
        &self,
        candidates: &mut [Candidate],
        colours: &[(String, &Colours)],
        store: &FeatureStore,
    ) -> Result<()> {
        let [first, second, ..] = candidates else { return Ok(()) };
        let min = self.ctx.config.verify.min_inliers;
        let verified = |c: &Candidate| c.checked.inliers.is_some_and(|n| n as usize >= min);
        if first.brand != second.brand
            || !verified(first)
            || !verified(second)
            || first.score.siblings_apart(&second.score)
        {
            return Ok(());
        }
        let (Some(a), Some(b)) =
            (self.colour_share(first, colours, store)?, self.colour_share(second, colours, store)?)
        else {
            return Ok(());
        };
        first.score.set_colour(a);
        second.score.set_colour(b);
        if Score::colour_prefers_second(a, b) {
            candidates.swap(0, 1);
        }
        Ok(())
    }

    /// The share of the listing photo's colour that the candidate's reference photos have at most
    /// (none when the photo or the reference photos have no colours).
    fn colour_share(
        &self,
        c: &Candidate,
        colours: &[(String, &Colours)],
        store: &FeatureStore,
    ) -> Result<Option<f32>> {
        let Some((_, seen)) = colours.iter().find(|(name, _)| *name == c.listing_image.photo)
        else {
            return Ok(None);
        };
        let mut best: Option<f32> = None;
        for &vid in &self.view.product_vectors[c.product] {
            if let Some(colours) = store.colours(vid)? {
                let s = seen.similarity(&colours);
                best = Some(best.map_or(s, |b| b.max(s)));
            }
        }
        Ok(best)
    }
}
