//! Scanning listings: parse, fetch and decode photos, embed, search the catalog, decide, report.
//!
//! The work goes in chunks: while the model embeds one chunk, the next is fetched and decoded on
//! other threads (see `util::pipeline`). Verdicts come out in input order; a listing that cannot be
//! processed gets an `error` verdict and the scan goes on.
//!
//! The stages, in the order a listing goes through them: `listing` (records read into listings),
//! `loading` (photos fetched and decoded), `search` (photos embedded and searched), `judge`
//! (per listing: `candidates` from the search hits, `verification` with local features, `locate`,
//! `siblings` told apart by colour, the policy), `verdict` (the report). A candidate's score and
//! its parts live in `score`; where in a listing something is, in `photo`.

pub mod batch;
mod candidates;
mod judge;
mod listing;
mod loading;
mod locate;
mod photo;
pub mod report;
mod score;
mod search;
mod siblings;
mod verdict;
mod verification;

#[cfg(test)]
mod judge_tests;

use anyhow::Result;

use crate::catalog::allowlist;
use crate::catalog::CatalogView;
use crate::config::Config;
use crate::index::Hit;
use crate::model::embed;
use crate::model::load;
use crate::model::{Embed, RegionQueries};
use crate::policy::wording::Lexicon;
use crate::vision::source::Fetcher;

pub use listing::{parse_listing, Listing, Seller};
pub use loading::{LoadedListing, Loader, Parsed};
pub use photo::PhotoRef;
pub use verdict::{stored_cosine, stored_score, Context, NetworkRef, PhotoPrint, Report};

/// The scanner: a loading stage, and the model with the catalog to decide.
pub struct Scanner {
    loader: Loader,
    judge: Judge,
}

/// The deciding stage: model, catalog and settings.
pub struct Judge {
    view: CatalogView,
    embedder: Box<dyn Embed>,
    ctx: Context,
    inferences: Inferences,
    /// Photos reviewers allowed for products (`allowlist`).
    allow: allowlist::Shared,
}

/// How many photos were embedded, and how many of them had their regions searched too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inferences {
    /// Listing photos embedded whole.
    pub photos: usize,
    /// Of those, photos whose regions were embedded and searched as well.
    pub with_regions: usize,
}

impl Scanner {
    /// A scanner over `view` with the loaded model (`embed::Embedder`, or any other `Embed`).
    pub fn new(
        view: CatalogView,
        embedder: impl Embed + 'static,
        config: Config,
    ) -> Result<Scanner> {
        let fetcher = Fetcher::new(&config.limits)?;
        Scanner::with_fetcher(view, embedder, config, fetcher)
    }

    /// A scanner that reads photos with `fetcher` (a server's, which refuses private addresses).
    pub fn with_fetcher(
        view: CatalogView,
        embedder: impl Embed + 'static,
        config: Config,
        fetcher: Fetcher,
    ) -> Result<Scanner> {
        let limits = crate::vision::decode::Limits::from(&config.limits);
        let manifest = embedder.manifest().clone();
        let model = manifest.name.clone();
        let thresholds = config.policy.thresholds(&manifest)?;
        let regions = config.scan.region_queries.unwrap_or(manifest.region_queries());
        let lexicon = match config.wording.enabled {
            true => Some(Lexicon::load(config.wording.lexicon.as_deref())?),
            false => None,
        };
        Ok(Scanner {
            loader: Loader {
                fetcher,
                limits,
                manifest,
                regions: regions != RegionQueries::Off,
                features: if config.verify.enabled {
                    load::LocalFeatures::Prepare(config.verify.params())
                } else {
                    load::LocalFeatures::Skip
                },
                phash: config.network.record,
            },
            judge: Judge {
                view,
                embedder: Box::new(embedder),
                ctx: Context { config, thresholds, model, regions, lexicon },
                inferences: Inferences::default(),
                allow: allowlist::Shared::default(),
            },
        })
    }

    /// The model, for embedding other photos between scans (a server adding products).
    pub fn embedder_mut(&mut self) -> &mut dyn Embed {
        self.judge.embedder.as_mut()
    }

    /// Sets the allow-list verdicts respect (`allowlist`); listing photos are hashed from now on.
    pub(crate) fn set_allowlist(&mut self, allow: allowlist::Shared) {
        self.loader.phash = true;
        self.judge.allow = allow;
    }

    /// Replaces the catalog the scanner searches (after products changed).
    pub fn set_view(&mut self, view: CatalogView) {
        self.judge.view = view;
    }

    /// Photos embedded so far, and how many had region queries.
    pub fn inferences(&self) -> Inferences {
        self.judge.inferences
    }

    /// Checks one chunk of listings: loads, then decides.
    pub fn check(&mut self, listings: Vec<Parsed>) -> Result<Vec<Report>> {
        let prepared = self.loader.load(listings);
        self.judge.decide(prepared)
    }

    /// Checks chunks of listings with loading one chunk ahead of deciding; `sink` gets the reports
    /// of each chunk in order.
    pub fn run(
        &mut self,
        chunks: impl Iterator<Item = Vec<Parsed>> + Send,
        mut sink: impl FnMut(Vec<Report>) -> Result<()>,
    ) -> Result<()> {
        let loader = &self.loader;
        let judge = &mut self.judge;
        crate::util::pipeline::overlapped(
            chunks,
            |c| loader.load(c),
            |prepared| sink(judge.decide(prepared)?),
        )
    }
}

impl Judge {
    /// Embeds, searches and decides a chunk of loaded listings; one report each, in order. The
    /// chunk's whole photos are embedded in batches and searched together, then the regions of the
    /// photos that need them (`needs_regions`) the same way; local features are extracted only for
    /// the photos of listings that will be verified (`will_verify`).
    pub fn decide(&mut self, chunk: Vec<LoadedListing>) -> Result<Vec<Report>> {
        // each usable photo whole, then the regions of those that need them (see `needs_regions`)
        let photos: Vec<&load::Loaded> =
            chunk.iter().flat_map(|p| p.images.iter().filter_map(|i| i.as_ref().ok())).collect();
        let whole: Vec<&embed::Prepared> = photos.iter().map(|l| &l.prepared).collect();
        let embeddings = self.embedder.embed(&whole)?;
        let whole_hits = self.search(&embeddings);
        let with_regions: Vec<bool> = photos
            .iter()
            .zip(&whole_hits)
            .map(|(l, h)| !l.regions.is_empty() && self.needs_regions(h))
            .collect();
        let region_batch: Vec<&embed::Prepared> = photos
            .iter()
            .zip(&with_regions)
            .filter(|(_, &r)| r)
            .flat_map(|(l, _)| l.regions.iter().map(|r| &r.prepared))
            .collect();
        self.inferences.photos += photos.len();
        self.inferences.with_regions += with_regions.iter().filter(|&&r| r).count();
        let region_embeddings = self.embedder.embed(&region_batch)?;
        let mut region_hits = self.search(&region_embeddings).into_iter();
        let region_counts: Vec<usize> = photos
            .iter()
            .zip(&with_regions)
            .map(|(l, &r)| if r { l.regions.len() } else { 0 })
            .collect();
        let mut per_photo =
            whole_hits.into_iter().zip(&embeddings).zip(region_counts).map(|((whole, e), n)| {
                PhotoSearch {
                    whole,
                    embedding: Some(e.as_slice()),
                    regions: region_hits.by_ref().take(n).collect(),
                }
            });
        // each listing's queries and candidates, and its photos ready for local features (nothing
        // for a listing that could not be read)
        let (listings, images): (Vec<_>, Vec<_>) =
            chunk.into_iter().map(|p| (p.listing, p.images)).unzip();
        let mut pending = Vec::with_capacity(listings.len());
        for (listing, images) in listings.iter().zip(&images) {
            let refs = listing.as_ref().map(|l| l.images.as_slice()).unwrap_or_default();
            pending.push(self.gather(refs, images, &mut per_photo));
        }
        let features = self.extract_features(&pending);
        let mut out = Vec::with_capacity(listings.len());
        for ((listing, evidence), features) in listings.into_iter().zip(pending).zip(features) {
            out.push(self.finish(listing, evidence, features)?);
        }
        Ok(out)
    }
}

/// Search results of one embedded photo.
#[derive(Debug, Clone, Default)]
struct Searched {
    /// Nearest visible catalog images, best first, by raw cosine similarity.
    hits: Vec<Hit>,
    /// What score normalisation subtracts from this photo's similarities, if it is on.
    background: Option<f32>,
}

/// Search results of one listing photo: of the whole photo, with its embedding, and of its
/// regions when they were searched.
#[derive(Debug, Default)]
struct PhotoSearch<'e> {
    whole: Searched,
    embedding: Option<&'e [f32]>,
    regions: Vec<Searched>,
}
