//! The deciding stage per listing: its photos' search results gathered into candidates, local
//! features extracted for those to verify, and the decision (verification, locating, siblings,
//! allow-list, policy).

use std::collections::HashSet;

use anyhow::Result;

use crate::catalog::allowlist::Allowed;
use crate::model::load::Loaded;
use crate::policy::{self, Decision, Match, Offer, Rule};
use crate::scan::candidates::{Candidate, Query};
use crate::scan::photo::{PhotoRef, Places};
use crate::scan::{Judge, Listing, Parsed, PhotoPrint, PhotoSearch, Report};
use crate::vision::colour::Colours;
use crate::vision::decode::RgbImage;
use crate::vision::regions;
use crate::vision::source::ImageRef;
use crate::vision::verify::orb::{Features, Ready};

/// What `Judge::judge` knows of a listing's photos besides their search results.
pub(super) struct Photos<'a> {
    /// Local features of the photos (and insets) to verify, by name.
    pub features: &'a [(PhotoRef, &'a Features)],
    /// Where each photo and region is.
    pub places: &'a Places,
    /// Colours of the photos, by photo.
    pub colours: &'a [(String, &'a Colours)],
    /// Perceptual hashes of the photos in every orientation and of their regions
    /// (`load::Loaded::phashes`), by name.
    pub hashes: &'a [(PhotoRef, u64)],
    /// The decoded photos (`load::Loaded::image`), by photo.
    pub images: &'a [(String, &'a RgbImage)],
    /// Products (indices into the catalog view's) with a reference photo that is a near-duplicate
    /// of a listing photo by perceptual hash, found in the whole catalog
    /// (`Judge::near_duplicates`).
    pub near: &'a HashSet<usize>,
}

/// A listing photo (or its inset) ready for local features, with its colours.
struct ToExtract<'a> {
    name: PhotoRef,
    ready: &'a Ready,
    colours: Option<&'a Colours>,
}

/// A listing's photos searched: what its judgement needs (`Judge::gather`).
#[derive(Default)]
pub(super) struct Evidence<'a> {
    /// Each photo's and region's search.
    queries: Vec<Query>,
    /// Candidate products (`products_from_hits`).
    candidates: Vec<Candidate>,
    /// Photos ready for local features.
    ready: Vec<ToExtract<'a>>,
    /// Where each photo and region is.
    places: Places,
    /// Perceptual hashes, by name.
    hashes: Vec<(PhotoRef, u64)>,
    /// Decoded photos, by photo.
    decoded: Vec<(String, &'a RgbImage)>,
    /// Near-duplicate products by hash (`near_duplicates`).
    near: HashSet<usize>,
    /// The photos as recorded for seller networks.
    prints: Vec<PhotoPrint>,
    /// Photos that could not be used, with why.
    image_errors: Vec<String>,
}

impl Judge {
    /// A listing's photos (`refs`, loaded as `images`) with their search results, taken in order
    /// from `found`, grouped into candidates.
    pub(super) fn gather<'a, 'e>(
        &self,
        refs: &[ImageRef],
        images: &'a [Result<Loaded, String>],
        found: &mut impl Iterator<Item = PhotoSearch<'e>>,
    ) -> Evidence<'a> {
        let mut ev = Evidence::default();
        for (r, img) in refs.iter().zip(images) {
            match img {
                Ok(loaded) => {
                    self.add_photo(&mut ev, r.display(), loaded, found.next().unwrap_or_default())
                }
                Err(e) => ev.image_errors.push(format!("{}: {e}", r.display())),
            }
        }
        ev.candidates = self.products_from_hits(&ev.queries, &ev.near);
        ev
    }

    /// Adds a usable listing photo and its search results (`found`) to `ev`.
    fn add_photo<'a>(
        &self,
        ev: &mut Evidence<'a>,
        photo: String,
        loaded: &'a Loaded,
        found: PhotoSearch<'_>,
    ) {
        let whole_photo = PhotoRef::whole(photo.clone());
        if let Some(f) = &loaded.ready {
            let colours = loaded.colours.as_ref();
            ev.ready.push(ToExtract { name: whole_photo.clone(), ready: f, colours });
        }
        if let Some(f) = &loaded.inset_ready {
            let name = PhotoRef::region(photo.clone(), regions::INSET);
            ev.ready.push(ToExtract { name, ready: f, colours: None });
        }
        ev.places.insert(whole_photo.clone(), regions::WHOLE);
        if let Some(img) = &loaded.image {
            ev.decoded.push((photo.clone(), img));
        }
        for (region, h) in &loaded.phashes {
            ev.hashes.push((PhotoRef { photo: photo.clone(), region: *region }, *h));
        }
        for region in &loaded.regions {
            ev.places.insert(PhotoRef::region(photo.clone(), region.name), region.area);
        }
        let PhotoSearch { mut whole, embedding, regions: region_hits } = found;
        let known_near = ev.near.len();
        self.near_duplicates(&loaded.phashes, embedding, &mut whole, &mut ev.near);
        let review = self.ctx.thresholds.review_threshold as f32;
        let similar = std::iter::once(&whole)
            .chain(region_hits.iter())
            .any(|q| q.hits.first().is_some_and(|h| h.similarity >= review));
        ev.prints.push(PhotoPrint {
            image: photo.clone(),
            phash: loaded.phashes.iter().find(|(region, _)| region.is_none()).map(|(_, h)| *h),
            embedding: embedding.map(<[f32]>::to_vec).unwrap_or_default(),
            catalog: similar || ev.near.len() > known_near,
        });
        ev.queries.push(Query { name: whole_photo, searched: whole });
        for (name, hits) in loaded.regions.iter().map(|r| r.name).zip(region_hits) {
            ev.queries.push(Query { name: PhotoRef::region(photo.clone(), name), searched: hits });
        }
    }

    /// Local features of the photos of the listings that will be verified (`will_verify`), all
    /// at once: for each listing, its photos' in the order of `Evidence::ready`.
    pub(super) fn extract_features(&self, pending: &[Evidence<'_>]) -> Vec<Vec<Features>> {
        use rayon::prelude::*;
        let wanted: Vec<(usize, &Ready)> = pending
            .iter()
            .enumerate()
            .filter(|(_, ev)| !ev.ready.is_empty() && self.will_verify(&ev.candidates, &ev.near))
            .flat_map(|(i, ev)| ev.ready.iter().map(move |r| (i, r.ready)))
            .collect();
        let extracted: Vec<Features> = wanted.par_iter().map(|(_, r)| r.extract()).collect();
        let mut per_listing: Vec<Vec<Features>> = pending.iter().map(|_| Vec::new()).collect();
        for ((i, _), f) in wanted.iter().zip(extracted) {
            per_listing[*i].push(f);
        }
        per_listing
    }

    /// The report of a listing from its evidence and its photos' local `features`.
    pub(super) fn finish(
        &mut self,
        listing: Parsed,
        ev: Evidence<'_>,
        features: Vec<Features>,
    ) -> Result<Report> {
        let listing = match listing {
            Ok(l) => l,
            Err((line, id, why)) => return Ok(Report::error(line, id, why, &self.ctx)),
        };
        let named: Vec<(PhotoRef, &Features)> =
            ev.ready.iter().map(|r| r.name.clone()).zip(features.iter()).collect();
        let colours: Vec<(String, &Colours)> =
            ev.ready.iter().filter_map(|r| r.colours.map(|c| (r.name.photo.clone(), c))).collect();
        if ev.queries.is_empty() {
            let why = format!("no usable photo: {}", ev.image_errors.join("; "));
            let mut rep = Report::error(listing.line, Some(listing.listing_id), why, &self.ctx);
            rep.seller = Some(listing.seller);
            return Ok(rep);
        }
        let photos = Photos {
            features: &named,
            places: &ev.places,
            colours: &colours,
            hashes: &ev.hashes,
            images: &ev.decoded,
            near: &ev.near,
        };
        let mut report =
            self.judge(listing, &ev.queries, ev.candidates, &photos, ev.image_errors)?;
        report.photos = ev.prints;
        Ok(report)
    }

    /// Decides a listing from its `candidates` (`products_from_hits` of its `queries`): settles
    /// them (`examine`) and applies the policy.
    fn judge(
        &mut self,
        listing: Listing,
        queries: &[Query],
        candidates: Vec<Candidate>,
        photos: &Photos<'_>,
        image_errors: Vec<String>,
    ) -> Result<Report> {
        let (matches, allowed) =
            self.examine(candidates, queries, photos, &listing.seller.seller_id)?;
        let offer = Offer {
            seller_id: &listing.seller.seller_id,
            price: listing.price.zip(listing.currency.as_deref()),
        };
        let mut d: Decision = policy::decide(
            &offer,
            &matches,
            &self.view,
            &self.ctx.thresholds,
            &self.ctx.config.currency,
        );
        if matches.is_empty() && !allowed.is_empty() {
            d.rule = Rule::AllowList;
            d.reasons.clear();
        }
        let wording = self.ctx.wording(listing.title.as_deref(), &matches);
        policy::apply_wording(&mut d, &wording, self.ctx.config.wording.weight);
        let mut reasons: Vec<String> = allowed.iter().map(Allowed::reason).collect();
        reasons.append(&mut d.reasons);
        if !image_errors.is_empty() {
            reasons.push(format!(
                "{} of {} photos could not be used (see image_errors)",
                image_errors.len(),
                listing.images.len()
            ));
        }
        Ok(Report {
            listing_id: Some(listing.listing_id),
            line: listing.line,
            verdict: d.verdict,
            risk: d.risk,
            price_ratio: d.price.as_ref().map(|p| (p.ratio * 10000.0).round() / 10000.0),
            price: d.price,
            matches,
            candidates: d.candidates,
            rule: d.rule,
            reasons,
            image_errors,
            seller: Some(listing.seller),
            title: listing.title,
            wording,
            thresholds: self.ctx.thresholds.clone(),
            model: self.ctx.model.clone(),
            network: None,
            warnings: listing.warnings,
            allowed,
            offer: listing.price.zip(listing.currency),
            photos: Vec::new(),
        })
    }

    /// Settles a listing's candidates: verifies the best with the photos' local features when
    /// verification is on, compares those found small in a photo again where they lie
    /// (`locate`), lets the photos' colours decide between look-alike siblings
    /// (`prefer_by_colour`), keeps `policy.top_k` and sets aside those the allow-list allows for
    /// the seller. Returns the verdict's matches and what was set aside.
    fn examine(
        &mut self,
        mut candidates: Vec<Candidate>,
        queries: &[Query],
        photos: &Photos<'_>,
        seller_id: &str,
    ) -> Result<(Vec<Match>, Vec<Allowed>)> {
        let posed = match &self.view.features {
            Some(store) => self.verify(&mut candidates, queries, photos, store)?,
            None => Vec::new(),
        };
        self.locate(&mut candidates, posed, photos)?;
        if let Some(store) = &self.view.features {
            if !photos.features.is_empty() {
                self.prefer_by_colour(&mut candidates, photos.colours, store)?;
            }
        }
        candidates.truncate(self.ctx.config.policy.top_k);
        let allowed = self.set_aside_allowed(&mut candidates, seller_id, photos);
        Ok((candidates.into_iter().map(Candidate::into_match).collect(), allowed))
    }

    /// Takes out of `candidates` the products whose matched listing photo (any orientation) is on
    /// their allow-list for this seller, and returns them with the entries that allow them. Only
    /// the photo that matched a product best is looked at (`Candidate::listing_image`).
    fn set_aside_allowed(
        &self,
        candidates: &mut Vec<Candidate>,
        seller_id: &str,
        photos: &Photos<'_>,
    ) -> Vec<Allowed> {
        let mut allowed = Vec::new();
        self.allow.read(|list| {
            if list.is_empty() {
                return;
            }
            candidates.retain(|c| {
                let photo = &c.listing_image.photo;
                let hashes: Vec<u64> = photos
                    .hashes
                    .iter()
                    .filter(|(n, _)| n.region.is_none() && n.photo == *photo)
                    .map(|(_, h)| *h)
                    .collect();
                let Some((entry, bits)) = list.find(&c.brand, &c.product_id, seller_id, &hashes)
                else {
                    return true;
                };
                allowed.push(Allowed {
                    listing_image: photo.clone(),
                    hash_distance: bits,
                    score: c.score.total(),
                    entry: entry.clone(),
                });
                false
            });
        });
        allowed
    }
}
