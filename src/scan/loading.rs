//! The loading stage: listings' photos fetched and decoded, ready for the judge.

use crate::model::load::{self, Loaded};
use crate::scan::Listing;
use crate::vision::decode;
use crate::vision::source::{Fetcher, ImageRef};

/// A listing whose photos were fetched and decoded (or failed to).
pub struct LoadedListing {
    pub(super) listing: Result<Listing, (usize, Option<String>, String)>,
    pub(super) images: Vec<Result<Loaded, String>>,
}

/// A parsed listing, or (line, listing id if known, why it could not be parsed).
pub type Parsed = Result<Listing, (usize, Option<String>, String)>;

/// The loading stage: fetches and decodes listing photos (shared with loader threads).
pub struct Loader {
    pub(super) fetcher: Fetcher,
    pub(super) limits: decode::Limits,
    pub(super) manifest: crate::model::Manifest,
    pub(super) regions: bool,
    pub(super) features: load::LocalFeatures,
    /// Whether each photo's perceptual hash is computed even without local features (recording).
    pub(super) phash: bool,
}

impl Loader {
    /// Fetches and decodes the photos of parsed listings.
    pub fn load(&self, listings: Vec<Parsed>) -> Vec<LoadedListing> {
        let refs: Vec<&ImageRef> =
            listings.iter().filter_map(|l| l.as_ref().ok()).flat_map(|l| l.images.iter()).collect();
        let owners: Vec<usize> = listings
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .enumerate()
            .flat_map(|(i, l)| l.images.iter().map(move |_| i))
            .collect();
        let mut loaded = load::load_images(
            &self.fetcher,
            &refs,
            &owners,
            &self.limits,
            &self.manifest,
            load::LoadOptions {
                hash: false,
                regions: self.regions,
                features: self.features,
                phash: self.phash,
            },
        )
        .into_iter();
        listings
            .into_iter()
            .map(|l| {
                let n = l.as_ref().map(|l| l.images.len()).unwrap_or(0);
                let images = loaded.by_ref().take(n).collect();
                LoadedListing { listing: l, images }
            })
            .collect()
    }
}
