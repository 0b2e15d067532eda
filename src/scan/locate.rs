//! Verified candidates compared again where they lie in the listing photo (`Judge::locate`).

use anyhow::Result;

use crate::model::embed;
use crate::scan::candidates::{rank, Candidate};
use crate::scan::judge::Photos;
use crate::scan::photo::PhotoRef;
use crate::scan::Judge;
use crate::vision::verify::Pose;

/// Largest share of a listing photo that a verified reference photo may cover to be compared again
/// where it lies (`Judge::locate`): a larger one is already compared through the whole photo or a
/// region (a quarter of it). Measured: a half instead gives the same accuracy at 4 % more scan time
/// on shop photos; no limit, 60 % more (docs/benchmarks-notebook.md, "Compared
/// again where found").
pub(super) const LOCATE_MAX_SHARE: f64 = 0.25;

/// A candidate verified with a homography: where its reference photo lies in the listing photo
/// (`verify::Pose`), to cut out and embed (`Judge::locate`).
pub(super) struct Posed {
    /// The candidate's product (its index in the catalog view).
    pub product: usize,
    /// The reference photo's vector.
    pub vector: u32,
    /// The listing photo or inset whose features verified it.
    pub name: PhotoRef,
    /// Whether they did so mirrored.
    pub mirrored: bool,
    /// The reference photo in the listing photo.
    pub pose: Pose,
}

impl Judge {
    /// Verified candidates compared again where they were found (`posed` by `verify`: those with
    /// a homography of at least `verify.min_inliers` inliers, not explained away, whose reference
    /// photo covers less than `LOCATE_MAX_SHARE` of the listing photo). That part of the listing
    /// photo is cut out and straightened (`verify::Pose::rectify`) and embedded, and its
    /// similarity to the reference photo (less its background term) stands for the candidate's
    /// best pair when higher (`Score::offer_located`). A copy pasted small, turned or tilted in a
    /// listing photo is then compared as the copy it is, not through the whole photo or a fixed
    /// region around it.
    pub(super) fn locate(
        &mut self,
        candidates: &mut [Candidate],
        posed: Vec<Posed>,
        photos: &Photos<'_>,
    ) -> Result<()> {
        let manifest = self.embedder.manifest().clone();
        let mut crops = Vec::new();
        let mut which = Vec::new();
        for p in posed {
            let Some(area) = photos.places.get(&p.name) else { continue };
            let Some((_, img)) = photos.images.iter().find(|(name, _)| *name == p.name.photo)
            else {
                continue;
            };
            let Some(cut) = p.pose.rectify(img, *area, p.mirrored, manifest.region_size()) else {
                continue;
            };
            crops.push(embed::prepare_at(&cut, &manifest, manifest.region_size())?);
            which.push((p.product, p.vector));
        }
        if crops.is_empty() {
            return Ok(());
        }
        let embeddings = self.embedder.embed(&crops.iter().collect::<Vec<_>>())?;
        let terms =
            self.background_terms(&embeddings.iter().map(Vec::as_slice).collect::<Vec<_>>());
        for (((product, vector), e), term) in which.into_iter().zip(&embeddings).zip(terms) {
            let Some(c) = candidates.iter_mut().find(|c| c.product == product) else {
                continue;
            };
            if vector as usize >= self.view.index.len() {
                continue;
            }
            let r = self.view.index.rows().row_f32(vector as usize);
            let located = crate::index::simd::dot(e, &r) - term.unwrap_or(0.0);
            c.score.offer_located(located);
        }
        rank(candidates);
        Ok(())
    }
}
