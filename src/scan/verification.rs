//! Geometric verification of a listing's candidates with local features (`Judge::verify`), and
//! the verified points a match shows (`Judge::features_shown`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use rayon::prelude::*;

use crate::catalog::FeatureStore;
use crate::policy::{FeaturePair, MatchRegion};
use crate::scan::candidates::{rank, Candidate, Checked, Query};
use crate::scan::judge::Photos;
use crate::scan::locate::{Posed, LOCATE_MAX_SHARE};
use crate::scan::photo::{PhotoRef, Place, Places};
use crate::scan::score::round4;
use crate::scan::Judge;
use crate::vision::phash;
use crate::vision::regions;
use crate::vision::verify::orb::Features;
use crate::vision::verify::{self, PointPair, Shared, Verified};

/// A reference photo of a candidate: its vector, its local features, and the points its brand's
/// other products share.
struct Reference {
    vector: u32,
    features: Arc<Features>,
    shared: Option<Arc<Shared>>,
}

/// A candidate to verify.
struct ToCheck<'p> {
    /// Its index among the candidates.
    index: usize,
    /// Its reference photos, the most similar to the listing's photos first.
    refs: Vec<Reference>,
    /// When a near-duplicate: the hash distance, and the listing photo (in any orientation) or
    /// region nearest to one of its reference photos.
    near: Option<(u32, &'p PhotoRef)>,
}

/// A photo pair verified: a listing photo or region, and a reference photo's vector.
#[derive(Debug, Clone)]
struct Pair {
    name: PhotoRef,
    vector: u32,
}

/// A candidate's photo pair with the most evidence.
struct Counted {
    /// Its verification, with the most distinct evidence of any pair.
    ver: Verified,
    /// Whether it verified with the listing photos mirrored.
    mirrored: bool,
    /// Where in the listing photo its inliers are.
    place: Option<Place>,
    /// The pair.
    pair: Option<Pair>,
}

/// A candidate's evidence and distinct evidence (a near-duplicate's at least full), and where.
struct Weighed {
    evidence: f64,
    distinct: f64,
    place: Option<Place>,
}

/// The most evidence and distinct evidence among the candidates verified where one is.
#[derive(Debug, Clone, Copy)]
struct Rivals {
    evidence: f64,
    distinct: f64,
}

/// All that verification found for one candidate.
struct Outcome {
    counted: Counted,
    /// When a near-duplicate: the hash distance.
    hash_distance: Option<u32>,
    weighed: Weighed,
    rivals: Rivals,
    /// Where the candidate is (`Judge::here`).
    at: Option<Place>,
}

/// Listing photos (or insets) and their local features, by name.
type Named<'a> = [(&'a PhotoRef, &'a Features)];

impl Judge {
    /// Geometric verification: for each of the best `verify.candidates` products scoring at least
    /// `verify.min_score`, and each near-duplicate found by hash (`near_duplicates`), the most
    /// inliers between any listing photo and the product's `verify.references` reference photos
    /// most similar to the listing's photos (see `verify::verify`), weighed as `Verified::evidence`
    /// (inliers off the centre of the reference photo count a quarter), with the most
    /// `Verified::distinct` evidence of any photo pair (points the brand's other products share
    /// count a quarter); each score then moves by `VerifyConfig::adjustment`, and the matches are
    /// sorted again. A candidate that scores at least the review threshold but whose photos do not
    /// verify fully (`verify.full_inliers`) is tried once more with the listing photos mirrored (a
    /// flipped copy is a common way to dodge duplicate checks), and keeps the better of the two;
    /// when that finds a mirrored copy, the other such candidates are tried mirrored too. The many
    /// candidates SSCD rates low cost nothing more. A candidate is explained away
    /// (`VerifyConfig::adjustment`) only by candidates verified in the same part of the same
    /// listing photo (`Place::overlaps`): a photo can show two products, a shelf behind a pasted
    /// copy or a collage of several, and one product found there is no evidence against another
    /// found elsewhere.
    ///
    /// A candidate with a reference photo that is a near-duplicate of a listing photo, turned or
    /// mirrored or not, or of one of its regions (perceptual hashes at most `phash::NEAR` bits
    /// apart) counts as verified fully, there: a shrunk, blurred or pixelated copy of a smooth
    /// photo has too few corners for local features. Candidates verified with a homography are
    /// returned with where their reference photo lies, for `locate`.
    pub(super) fn verify(
        &self,
        candidates: &mut [Candidate],
        queries: &[Query],
        listing_photos: &Photos<'_>,
        store: &FeatureStore,
    ) -> Result<Vec<Posed>> {
        let (photos, places) = (listing_photos.features, listing_photos.places);
        if photos.is_empty() {
            return Ok(Vec::new());
        }
        let seen = best_seen(queries);
        let to_check = self.to_check(candidates, &seen, listing_photos, store)?;
        let direct: Vec<(&PhotoRef, &Features)> =
            photos.iter().map(|(name, q)| (name, *q)).collect();
        let mut counted: Vec<Counted> =
            to_check.iter().map(|c| self.most(&direct, false, &c.refs, places)).collect();
        self.mirror_pass(candidates, &to_check, &mut counted, photos, places);
        let min = self.ctx.config.verify.min_inliers as f64;
        let weighed = self.weigh(&counted, &to_check, places);
        let here = here(candidates, &to_check, &weighed, places, min);
        let rivals = rivals(&weighed, &here, min);
        let mut posed = Vec::new();
        for ((((counted, check), weighed), rivals), at) in
            counted.into_iter().zip(&to_check).zip(weighed).zip(rivals).zip(here)
        {
            let hash_distance = check.near.map(|(bits, _)| bits);
            let outcome = Outcome { counted, hash_distance, weighed, rivals, at };
            posed.extend(self.settle(&mut candidates[check.index], outcome, places));
        }
        rank(candidates);
        Ok(posed)
    }

    /// The candidates to verify (`to_verify`) that have reference photos with local features or
    /// are near-duplicates by hash; `seen` is each reference vector's best similarity to any of
    /// the listing's photos, where searched.
    fn to_check<'p>(
        &self,
        candidates: &[Candidate],
        seen: &HashMap<u32, f32>,
        photos: &'p Photos<'_>,
        store: &FeatureStore,
    ) -> Result<Vec<ToCheck<'p>>> {
        let mut out = Vec::new();
        for (index, c) in self.to_verify(candidates, photos.near) {
            let refs = self.references(c.product, seen, store)?;
            let near = self.nearest_by_hash(c.product, photos.hashes, store)?;
            // (images stored before knockoff kept local features have none: nothing to verify)
            if !refs.is_empty() || near.is_some() {
                out.push(ToCheck { index, refs, near });
            }
        }
        Ok(out)
    }

    /// Product `pi`'s reference photos with local features, the most similar to the listing's
    /// photos (`seen`) first, at most `verify.references`, with the points its brand's other
    /// products share.
    fn references(
        &self,
        pi: usize,
        seen: &HashMap<u32, f32>,
        store: &FeatureStore,
    ) -> Result<Vec<Reference>> {
        let mut vids = self.view.product_vectors[pi].clone();
        vids.sort_by(|a, b| {
            seen.get(b)
                .unwrap_or(&f32::MIN)
                .total_cmp(seen.get(a).unwrap_or(&f32::MIN))
                .then(a.cmp(b))
        });
        let mut refs = Vec::new();
        for vid in vids {
            if refs.len() == self.ctx.config.verify.references {
                break;
            }
            if let Some(f) = store.get(vid)? {
                refs.push(Reference { vector: vid, features: f, shared: store.shared(vid)? });
            }
        }
        Ok(refs)
    }

    /// The listing photo (in any orientation) or region nearest to one of product `pi`'s
    /// reference photos by perceptual hash, with the distance, when a near-duplicate.
    fn nearest_by_hash<'p>(
        &self,
        pi: usize,
        hashes: &'p [(PhotoRef, u64)],
        store: &FeatureStore,
    ) -> Result<Option<(u32, &'p PhotoRef)>> {
        let mut near: Option<(u32, &PhotoRef)> = None;
        for &vid in &self.view.product_vectors[pi] {
            let Some(r) = store.phash(vid)? else { continue };
            for (photo, h) in hashes {
                let d = phash::distance(*h, r);
                if d <= phash::NEAR && near.is_none_or(|(best, _)| d < best) {
                    near = Some((d, photo));
                }
            }
        }
        Ok(near)
    }

    /// The photo pair of `qs` (mirrored or not) and `refs` with the most evidence, with the most
    /// distinct evidence of any pair, and where in the listing photo its inliers are.
    fn most(&self, qs: &Named<'_>, mirrored: bool, refs: &[Reference], places: &Places) -> Counted {
        let min_inliers = self.ctx.config.verify.min_inliers;
        let pairs: Vec<(&PhotoRef, &Features, &Reference)> =
            qs.iter().flat_map(|(name, q)| refs.iter().map(move |r| (*name, *q, r))).collect();
        let (ver, pair) = pairs
            .par_iter()
            .map(|(name, q, r)| {
                (
                    verify::verify(q, &r.features, r.shared.as_deref(), min_inliers),
                    Some((*name, r.vector)),
                )
            })
            .reduce(
                || (Verified::default(), None),
                |a, b| {
                    let (mut most, other) =
                        if b.0.evidence() > a.0.evidence() { (b, a) } else { (a, b) };
                    most.0.distinct = most.0.distinct.max(other.0.distinct);
                    most
                },
            );
        let place = ver.spot.zip(pair).and_then(|(spot, (name, _))| {
            let spot =
                if mirrored { [1.0 - spot[2], spot[1], 1.0 - spot[0], spot[3]] } else { spot };
            places.get(name).map(|area| Place::within(&name.photo, *area, spot))
        });
        let pair = pair.map(|(name, vector)| Pair { name: name.clone(), vector });
        Counted { ver, mirrored, place, pair }
    }

    /// The mirror pass: for candidates the embedding rates a possible copy that did not verify
    /// fully, and once the listing photos turn out mirrored, for every such candidate (so a
    /// sibling does not win on its mirror image against the true product's few direct inliers).
    /// A mirrored pair is taken only when it verifies, so the counts a verdict shows and
    /// `mirrored` agree.
    fn mirror_pass(
        &self,
        candidates: &[Candidate],
        to_check: &[ToCheck<'_>],
        counted: &mut [Counted],
        photos: &[(PhotoRef, &Features)],
        places: &Places,
    ) {
        let v = &self.ctx.config.verify;
        let review =
            |i: usize| candidates[i].score.total() as f64 >= self.ctx.thresholds.review_threshold;
        // the listing photos mirrored, made when first needed
        let mut flipped: Option<Vec<Features>> = None;
        let mut done = vec![false; counted.len()];
        for all in [false, true] {
            let mut gained = false;
            for (k, check) in to_check.iter().enumerate() {
                if done[k]
                    || !review(check.index)
                    || (!all && counted[k].ver.evidence() >= v.full_inliers as f64)
                {
                    continue;
                }
                done[k] = true;
                let flipped = flipped
                    .get_or_insert_with(|| photos.iter().map(|(_, q)| q.mirrored()).collect());
                let mirror: Vec<(&PhotoRef, &Features)> =
                    photos.iter().zip(flipped.iter()).map(|((name, _), q)| (name, q)).collect();
                let mut other = self.most(&mirror, true, &check.refs, places);
                if other.ver.evidence() > counted[k].ver.evidence()
                    && other.ver.evidence() >= v.min_inliers as f64
                {
                    other.ver.distinct = other.ver.distinct.max(counted[k].ver.distinct);
                    gained = true;
                    counted[k] = other;
                }
            }
            if !gained {
                break;
            }
        }
    }

    /// Each candidate's evidence and distinct evidence, a near-duplicate's at least full, and
    /// where it verified.
    fn weigh(
        &self,
        counted: &[Counted],
        to_check: &[ToCheck<'_>],
        places: &Places,
    ) -> Vec<Weighed> {
        let v = &self.ctx.config.verify;
        let (min, full) = (v.min_inliers as f64, v.full_inliers as f64);
        counted
            .iter()
            .zip(to_check)
            .map(|(c, check)| match check.near {
                Some((_, name)) if c.ver.evidence() < full => {
                    // verified on the photo or region the hash is of, unless its inliers say where
                    let place = match c.ver.evidence() >= min {
                        true => c.place.clone(),
                        false => Place::of(places, name),
                    };
                    Weighed { evidence: full, distinct: c.ver.distinct.max(full), place }
                }
                _ => Weighed {
                    evidence: c.ver.evidence(),
                    distinct: c.ver.distinct,
                    place: c.place.clone(),
                },
            })
            .collect()
    }

    /// Writes what verification found into the candidate and moves its score by
    /// `VerifyConfig::adjustment`; returns where to compare it again (`locate`), if anywhere.
    fn settle(&self, c: &mut Candidate, o: Outcome, places: &Places) -> Option<Posed> {
        let v = &self.ctx.config.verify;
        let (e, d) = (o.weighed.evidence, o.weighed.distinct);
        let adj = v.adjustment(e, d, o.rivals.evidence.max(e), o.rivals.distinct.max(d)) as f32;
        let (ver, mirrored) = (&o.counted.ver, o.counted.mirrored);
        let features = self.features_shown(c, ver, o.counted.pair.as_ref(), mirrored, places);
        let posed = posed(c, &o.counted, adj >= 0.0 && ver.inliers >= v.min_inliers, places);
        let min = v.min_inliers as f64;
        let region = o
            .at
            .filter(|at| e >= min && at.area != regions::WHOLE && at.photo == c.listing_image.photo)
            .map(|at| MatchRegion { area: at.area.map(round4) });
        c.checked = Checked {
            inliers: Some(ver.inliers as u32),
            central_inliers: Some(ver.central as u32),
            shared_inliers: (ver.shared > 0).then_some(ver.shared as u32),
            hash_distance: o.hash_distance,
            mirrored,
            region,
            features,
        };
        c.score.add_verification(adj);
        posed
    }

    /// The verified points of `ver` as a match shows them, in the whole listing photo (`in_photo`;
    /// `mirrored` when the mirrored photo verified), when it verified (`verify.min_inliers`
    /// evidence) and its photo `pair` is the one the match names (`listing_image` and `image`);
    /// none otherwise, as they would be drawn on photos they are not of.
    fn features_shown(
        &self,
        c: &Candidate,
        ver: &Verified,
        pair: Option<&Pair>,
        mirrored: bool,
        places: &Places,
    ) -> Vec<FeaturePair> {
        let Some(pair) = pair else { return Vec::new() };
        let Some(area) = places.get(&pair.name) else { return Vec::new() };
        let owners = self.view.vector_products.get(pair.vector as usize).into_iter().flatten();
        let product = |pi: usize| {
            let p = self.view.products.get(pi);
            p.is_some_and(|p| p.brand == c.brand && p.product_id == c.product_id)
        };
        let verified = ver.evidence() >= self.ctx.config.verify.min_inliers as f64;
        let shown = pair.name.photo == c.listing_image.photo
            && owners.into_iter().any(|(pi, src)| *src == c.image && product(*pi));
        if !(verified && shown) {
            return Vec::new();
        }
        let mut points = ver.points.clone();
        in_photo(&mut points, *area, mirrored);
        let at = |x: f32, y: f32| [round4(x), round4(y)];
        let pair = |p: &PointPair| FeaturePair {
            listing: at(p.query_x, p.query_y),
            reference: at(p.reference_x, p.reference_y),
        };
        points.iter().map(pair).collect()
    }
}

/// Each reference vector's best similarity to any of the listing's photos, where searched.
fn best_seen(queries: &[Query]) -> HashMap<u32, f32> {
    let mut seen: HashMap<u32, f32> = HashMap::new();
    for q in queries {
        for h in &q.searched.hits {
            let e = seen.entry(h.vector).or_insert(f32::MIN);
            *e = e.max(h.similarity);
        }
    }
    seen
}

/// Where each candidate is: where it verified, else the part of the photo its embedding matched
/// best (the whole photo or a region).
fn here(
    candidates: &[Candidate],
    to_check: &[ToCheck<'_>],
    weighed: &[Weighed],
    places: &Places,
    min: f64,
) -> Vec<Option<Place>> {
    to_check
        .iter()
        .zip(weighed)
        .map(|(check, w)| match w.evidence >= min {
            true => w.place.clone(),
            false => Place::of(places, &candidates[check.index].listing_image),
        })
        .collect()
}

/// The most evidence and distinct evidence among the candidates verified where each one is.
fn rivals(weighed: &[Weighed], here: &[Option<Place>], min: f64) -> Vec<Rivals> {
    here.iter()
        .map(|at| {
            let (evidence, distinct) = weighed
                .iter()
                .filter(|w| {
                    w.evidence >= min
                        && at.as_ref().zip(w.place.as_ref()).is_none_or(|(a, b)| a.overlaps(b))
                })
                .fold((0.0, 0.0), |(be, bd), w| {
                    (f64::max(be, w.evidence), f64::max(bd, w.distinct))
                });
            Rivals { evidence, distinct }
        })
        .collect()
}

/// Where to compare a candidate again (`locate`): one with a homography that is not explained
/// away (`kept`) and covers less of the photo than a region does.
fn posed(c: &Candidate, counted: &Counted, kept: bool, places: &Places) -> Option<Posed> {
    let (Some(pose), Some(pair), true) = (counted.ver.pose, counted.pair.as_ref(), kept) else {
        return None;
    };
    let share = places.get(&pair.name).and_then(|area| pose.share(*area, counted.mirrored));
    share.is_some_and(|s| s < LOCATE_MAX_SHARE).then(|| Posed {
        product: c.product,
        vector: pair.vector,
        name: pair.name.clone(),
        mirrored: counted.mirrored,
        pose,
    })
}

/// Points of the part `area` of a listing photo (`verify::PointPair::query_*`), seen mirrored or
/// not, as points of the whole photo: the way `Place::within` places a spot.
fn in_photo(points: &mut [PointPair], area: regions::Area, mirrored: bool) {
    let (w, h) = (area[2] - area[0], area[3] - area[1]);
    for p in points {
        let x = if mirrored { 1.0 - p.query_x } else { p.query_x };
        p.query_x = (area[0] + x * w).clamp(0.0, 1.0);
        p.query_y = (area[1] + p.query_y * h).clamp(0.0, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_of_a_region_seen_mirrored_are_placed_in_the_photo_as_its_spot_is() {
        // a point a fifth of the way across the photo's bottom-left quadrant, seen mirrored: the
        // mirror image puts it four fifths of the way across
        let area = [0.0, 0.5, 0.5, 1.0];
        let seen = PointPair { query_x: 0.8, query_y: 0.5, reference_x: 0.3, reference_y: 0.7 };
        let mut points = [seen];
        in_photo(&mut points, area, true);
        let [p] = points;
        assert!((p.query_x - 0.1).abs() < 1e-6 && (p.query_y - 0.75).abs() < 1e-6, "{p:?}");
        assert_eq!((p.reference_x, p.reference_y), (0.3, 0.7), "reference points stay as they are");
        // and inside the place its spot makes (the spot flipped as `Judge::verify` flips it)
        let spot = [0.7, 0.4, 0.9, 0.6];
        let place = Place::within("a.jpg", area, [1.0 - spot[2], spot[1], 1.0 - spot[0], spot[3]]);
        let a = place.area;
        assert!(a[0] <= p.query_x && p.query_x <= a[2], "{a:?}");
        assert!(a[1] <= p.query_y && p.query_y <= a[3], "{a:?}");
        let mut straight = [seen];
        in_photo(&mut straight, regions::WHOLE, false);
        assert_eq!(straight, [seen], "the whole photo as it is: unchanged");
    }
}
