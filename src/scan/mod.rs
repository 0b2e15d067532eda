//! Scanning listings: parse, fetch and decode photos, embed, search the catalog, decide, report.
//!
//! The work goes in chunks: while the model embeds one chunk, the next is fetched and decoded on
//! other threads (see `pipeline`). Verdicts come out in input order; a listing that cannot be
//! processed gets an `error` verdict and the scan goes on.

pub mod batch;
pub mod pipeline;
pub mod report;

#[cfg(test)]
mod judge_tests;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::catalog::allowlist::{self, Allowed};
use crate::catalog::CatalogView;
use crate::config::Config;
use crate::index::Hit;
use crate::input::records::{self, RawRecord};
use crate::model::embed;
use crate::model::load::{self, Loaded};
use crate::model::{Embed, RegionQueries};
use crate::policy::wording::{Lexicon, WordingHit};
use crate::policy::{
    self, Authorisations, Decision, FeaturePair, Match, MatchRegion, Offer, Rule, Thresholds,
    Verdict,
};
use crate::vision::colour::Colours;
use crate::vision::decode;
use crate::vision::regions;
use crate::vision::source::{Fetcher, ImageRef};
use crate::vision::verify::orb::Features;
use crate::vision::verify::PointPair;

/// One candidate product verified: its index among the matches, the best verification, whether
/// it was found mirrored, where in the listing photo, and the (photo, vector id) pair verified.
type Counted = (usize, crate::vision::verify::Verified, bool, Option<Place>, Option<(String, u32)>);

/// Seller details kept with each verdict for later network analysis.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Seller {
    /// Seller id on the marketplace.
    pub seller_id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_name: Option<String>,
    /// Region the seller is registered in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where goods ship from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship_from: Option<String>,
    /// Contact details as published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Items sold so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sold_count: Option<u64>,
    /// More contacts, each `kind:value` (kinds phone, email, wechat, whatsapp, qq, telegram, url,
    /// other).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// Bank or wallet account payments go to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_account: Option<String>,
    /// Business registration number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_registration: Option<String>,
    /// Warehouse address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    /// The shop's address on the marketplace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop_url: Option<String>,
    /// When the listing went online (RFC 3339, as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<String>,
}

/// A listing photo as recorded for seller networks: its perceptual hash and embedding, and whether
/// it is a catalog photo (similar to a reference photo), which links nobody.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoPrint {
    /// The photo (path or URL as given).
    pub image: String,
    /// Its perceptual hash (`phash::of`); none for a flat photo.
    pub phash: Option<u64>,
    /// Its whole-photo embedding.
    pub embedding: Vec<f32>,
    /// Its best similarity to a catalog reference photo, at least the review threshold, or a
    /// near-duplicate of one by hash.
    pub catalog: bool,
}

/// What the listing's seller links it to (filled by `network` when a scan knows networks).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkRef {
    /// The network's id.
    pub network_id: String,
    /// The shared value (normalised), or the seller id for a known member.
    pub value: String,
    /// The kind of link (phone, email, payment_account, photo, member, ...).
    pub kind: String,
    /// Whether the network was marked enforced.
    pub enforced: bool,
}

/// A listing to check.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Line in the input (0 for a single query).
    pub line: usize,
    /// The marketplace's listing id.
    pub listing_id: String,
    /// Listing title.
    pub title: Option<String>,
    /// Price, if given.
    pub price: Option<f64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Photos.
    pub images: Vec<ImageRef>,
    /// The seller.
    pub seller: Seller,
    /// Optional fields that were left out because they were unusable (the listing was judged
    /// without them).
    pub warnings: Vec<String>,
}

/// Each query's and local-feature photo's name (`photo` or `photo#region`) → the listing photo it
/// belongs to and where in that photo it is.
type Places = HashMap<String, (String, regions::Area)>;

/// What `Scanner::judge` knows of a listing's photos besides their search results.
struct Photos<'a> {
    /// Local features of the photos (and insets) to verify, by name.
    features: &'a [(String, &'a Features)],
    /// Where each photo and region is.
    places: &'a Places,
    /// Colours of the photos, by name.
    colours: &'a [(String, &'a Colours)],
    /// Perceptual hashes of the photos in every orientation and of their regions (`load::Loaded`),
    /// by name (`photo` or `photo#region`).
    hashes: &'a [(String, u64)],
    /// The decoded photos (`load::Loaded::image`), by name.
    images: &'a [(String, &'a decode::RgbImage)],
    /// Products (indices into the catalog view's) with a reference photo that is a near-duplicate
    /// of a listing photo by perceptual hash, found in the whole catalog (`Judge::near_duplicates`).
    near: &'a HashSet<usize>,
}

/// A candidate verified with a homography: where its reference photo lies in the listing photo
/// (`verify::Pose`), to cut out and embed (`Judge::locate`).
struct Posed {
    /// The candidate's brand and product id.
    product: (String, String),
    /// The reference photo's vector.
    vector: u32,
    /// The listing photo or inset whose features verified it.
    name: String,
    /// Whether they did so mirrored.
    mirrored: bool,
    /// The reference photo in the listing photo.
    pose: crate::vision::verify::Pose,
}

/// Where in a listing something was found: a photo and the part of it.
#[derive(Debug, Clone, PartialEq)]
struct Place {
    /// The listing photo.
    photo: String,
    /// The part of it.
    area: regions::Area,
}

/// How far an inlier box is widened on each side (shares of the photo), so a few points in a line
/// still cover an area.
const SPOT_MARGIN: f32 = 0.02;

/// Share of the smaller of two places that must lie in the other for them to overlap.
const OVERLAP: f32 = 0.5;

/// Largest share of a listing photo that a verified reference photo may cover to be compared again
/// where it lies (`Judge::locate`): a larger one is already compared through the whole photo or a
/// region (a quarter of it). Measured: a half instead gives the same accuracy at 4 % more scan time
/// on shop photos; no limit, 60 % more (docs/benchmarks-notebook.md, "Compared
/// again where found").
const LOCATE_MAX_SHARE: f64 = 0.25;

impl Place {
    /// `spot` (shares of the part `area` of `photo`) as a place in the photo, widened by
    /// `SPOT_MARGIN`.
    fn within(photo: &str, area: regions::Area, spot: [f32; 4]) -> Place {
        let (w, h) = (area[2] - area[0], area[3] - area[1]);
        let x = |share: f32, m: f32| (area[0] + share * w + m).clamp(0.0, 1.0);
        let y = |share: f32, m: f32| (area[1] + share * h + m).clamp(0.0, 1.0);
        Place {
            photo: photo.to_string(),
            area: [
                x(spot[0], -SPOT_MARGIN),
                y(spot[1], -SPOT_MARGIN),
                x(spot[2], SPOT_MARGIN),
                y(spot[3], SPOT_MARGIN),
            ],
        }
    }

    /// Whether the two are in the same photo and at least `OVERLAP` of the smaller lies in the
    /// other.
    fn overlaps(&self, other: &Place) -> bool {
        let size = |a: &regions::Area| (a[2] - a[0]).max(0.0) * (a[3] - a[1]).max(0.0);
        let (a, b) = (&self.area, &other.area);
        let inter =
            (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        self.photo == other.photo && inter >= OVERLAP * size(a).min(size(b))
    }
}

/// Parses a raw input record into a listing; on failure returns the listing id (when readable) and why.
pub fn parse_listing(
    raw: &RawRecord,
    base_dir: &Path,
    max_images: usize,
) -> Result<Listing, (Option<String>, String)> {
    let f = raw.fields.as_ref().map_err(|e| (None, e.clone()))?;
    let id = records::text(f, "listing_id").map_err(|e| (None, e))?;
    let fail = |e: String| (Some(id.clone()), e);
    let images = records::list(f, "images").map_err(fail)?;
    if images.is_empty() {
        return Err(fail("missing field `images` (one or more image paths or URLs)".into()));
    }
    if images.len() > max_images {
        return Err(fail(format!(
            "{} images, over the limit of {max_images} (limits.max_images_per_record)",
            images.len()
        )));
    }
    let price = match f.get("price") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(records::price(f, "price").map_err(fail)?),
    };
    let currency = records::opt_text(f, "currency").map_err(fail)?.map(|c| c.to_ascii_uppercase());
    if price.is_some() && currency.is_none() {
        return Err(fail("field `currency` is required with `price`".into()));
    }
    let mut warnings = Vec::new();
    Ok(Listing {
        line: raw.line,
        listing_id: id.clone(),
        title: records::opt_text(f, "title").map_err(fail)?,
        price,
        currency,
        images: images
            .iter()
            .map(|s| ImageRef::parse(s, base_dir))
            .collect::<Result<_, _>>()
            .map_err(fail)?,
        seller: seller_fields(f, records::text(f, "seller_id").map_err(fail)?, &mut warnings),
        warnings,
    })
}

/// The seller's fields of a record; a wrong-typed optional field is left out and said in
/// `warnings`, the others are kept.
fn seller_fields(
    f: &serde_json::Map<String, serde_json::Value>,
    seller_id: String,
    warnings: &mut Vec<String>,
) -> Seller {
    let mut text = |key: &str| {
        records::opt_text(f, key).unwrap_or_else(|e| {
            warnings.push(format!("{e}; field ignored"));
            None
        })
    };
    let mut seller = Seller {
        seller_id,
        seller_name: text("seller_name"),
        region: text("region"),
        ship_from: text("ship_from"),
        contact: text("contact"),
        payment_account: text("payment_account"),
        business_registration: text("business_registration"),
        warehouse: text("warehouse"),
        shop_url: text("shop_url"),
        listed_at: text("listed_at"),
        ..Seller::default()
    };
    seller.sold_count = records::opt_count(f, "sold_count").unwrap_or_else(|e| {
        warnings.push(format!("{e}; field ignored"));
        None
    });
    seller.contacts = records::list(f, "contacts").unwrap_or_else(|e| {
        warnings.push(format!("{e}; field ignored"));
        Vec::new()
    });
    seller
}

/// The verdict record written for each listing (one JSON line); its schema is in the README.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The listing id (null when the record was unreadable).
    pub listing_id: Option<String>,
    /// Input line.
    pub line: usize,
    /// clear, review, flag or error.
    pub verdict: Verdict,
    /// Risk between 0 and 1 (0 for errors).
    pub risk: f64,
    /// Best matching products, best first.
    pub matches: Vec<Match>,
    /// Listing price / reference price of the product the verdict is about.
    pub price_ratio: Option<f64>,
    /// The full price comparison.
    pub price: Option<policy::PriceComparison>,
    /// The rule that fired (`error` for errors).
    pub rule: Rule,
    /// Sentences that explain the verdict.
    pub reasons: Vec<String>,
    /// Photos of the listing that could not be used, with why (the others were).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_errors: Vec<String>,
    /// The seller, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<Seller>,
    /// Listing title, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Counterfeit wording found in the title, strongest first (see `wording`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wording: Vec<WordingHit>,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// The model that embedded the photos.
    pub model: String,
    /// The seller network the listing's seller is linked to, when known (`network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRef>,
    /// Optional fields left out because they were unusable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Products set aside because the listing photo that matched them is on their allow-list
    /// (`allowlist`): which decision, who, when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Allowed>,
    /// The listing's price and currency as given (recorded for case files).
    #[serde(skip)]
    pub offer: Option<(f64, String)>,
    /// The listing's photos as recorded for seller networks.
    #[serde(skip)]
    pub photos: Vec<PhotoPrint>,
}

impl Report {
    /// An `error` verdict naming what is wrong.
    pub fn error(line: usize, listing_id: Option<String>, why: String, ctx: &Context) -> Report {
        Report {
            listing_id,
            line,
            verdict: Verdict::Error,
            risk: 0.0,
            matches: Vec::new(),
            price_ratio: None,
            price: None,
            rule: Rule::Error,
            reasons: vec![why],
            image_errors: Vec::new(),
            wording: Vec::new(),
            seller: None,
            title: None,
            thresholds: ctx.thresholds.clone(),
            model: ctx.model.clone(),
            network: None,
            warnings: Vec::new(),
            allowed: Vec::new(),
            offer: None,
            photos: Vec::new(),
        }
    }
}

/// What verdicts are made with: settings, the thresholds in force and the model's name.
pub struct Context {
    /// The configuration.
    pub config: Config,
    /// The thresholds in force.
    pub thresholds: Thresholds,
    /// Name of the model.
    pub model: String,
    /// When region queries run: `[scan] region_queries`, else the model's default.
    pub regions: RegionQueries,
    /// Counterfeit wording looked for in titles (`None` when `[wording]` is off).
    pub lexicon: Option<Lexicon>,
}

impl Context {
    /// The lexicon's phrases in `title`, weighed by how near they stand to the brands and titles
    /// of the listing's `matches` (empty without a title or with `[wording]` off).
    pub fn wording(&self, title: Option<&str>, matches: &[Match]) -> Vec<WordingHit> {
        let (Some(lexicon), Some(title)) = (&self.lexicon, title) else { return Vec::new() };
        let mut anchors: Vec<&str> = matches
            .iter()
            .flat_map(|m| [m.brand.as_str(), m.title.as_str()])
            .filter(|a| !a.trim().is_empty())
            .collect();
        anchors.sort_unstable();
        anchors.dedup();
        lexicon.find(title, &anchors, &self.config.wording)
    }
}

impl Authorisations for CatalogView {
    fn sellers(&self, brand: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.brand_sellers.get(brand).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }
}

/// A listing whose photos were fetched and decoded (or failed to).
pub struct LoadedListing {
    listing: Result<Listing, (usize, Option<String>, String)>,
    images: Vec<Result<Loaded, String>>,
}

/// A parsed listing, or (line, listing id if known, why it could not be parsed).
pub type Parsed = Result<Listing, (usize, Option<String>, String)>;

/// Image limits for the decoder, from the configuration.
pub fn decode_limits(config: &Config) -> decode::Limits {
    decode::Limits {
        max_file_bytes: config.limits.max_image_bytes,
        max_width: config.limits.max_image_side,
        max_height: config.limits.max_image_side,
        max_pixels: config.limits.max_image_pixels,
    }
}

/// The loading stage: fetches and decodes listing photos (shared with loader threads).
pub struct Loader {
    fetcher: Fetcher,
    limits: decode::Limits,
    manifest: crate::model::Manifest,
    regions: bool,
    features: load::LocalFeatures,
    /// Whether each photo's perceptual hash is computed even without local features (recording).
    phash: bool,
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
        let limits = decode_limits(&config);
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
    pub fn set_allowlist(&mut self, allow: allowlist::Shared) {
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
        crate::scan::pipeline::overlapped(
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
                (whole, Some(e.as_slice()), region_hits.by_ref().take(n).collect::<Vec<_>>())
            });
        // each listing's queries, and its photos ready for local features (nothing for a listing
        // that could not be read)
        let (listings, images): (Vec<_>, Vec<_>) =
            chunk.into_iter().map(|p| (p.listing, p.images)).unzip();
        let mut pending = Vec::with_capacity(listings.len());
        for (listing, images) in listings.iter().zip(&images) {
            let mut image_errors = Vec::new();
            let mut queries = Vec::new();
            let mut ready = Vec::new();
            let mut places = Places::new();
            let mut hashes = Vec::new();
            let mut decoded = Vec::new();
            let mut near = HashSet::new();
            let mut prints = Vec::new();
            let refs = listing.as_ref().map(|l| l.images.as_slice()).unwrap_or_default();
            for (r, img) in refs.iter().zip(images) {
                match img {
                    Ok(loaded) => {
                        if let Some(f) = &loaded.ready {
                            ready.push((r.display(), f, loaded.colours.as_ref()));
                        }
                        if let Some(f) = &loaded.inset_ready {
                            ready.push((format!("{}#{}", r.display(), regions::INSET), f, None));
                        }
                        places.insert(r.display(), (r.display(), regions::WHOLE));
                        if let Some(img) = &loaded.image {
                            decoded.push((r.display(), img));
                        }
                        for (region, h) in &loaded.phashes {
                            hashes.push((
                                region.map_or_else(
                                    || r.display(),
                                    |name| format!("{}#{name}", r.display()),
                                ),
                                *h,
                            ));
                        }
                        for region in &loaded.regions {
                            places.insert(
                                format!("{}#{}", r.display(), region.name),
                                (r.display(), region.area),
                            );
                        }
                        let (mut whole, embedding, regions) = per_photo.next().unwrap_or_default();
                        let known_near = near.len();
                        self.near_duplicates(&loaded.phashes, embedding, &mut whole, &mut near);
                        let review = self.ctx.thresholds.review_threshold as f32;
                        let similar = std::iter::once(&whole)
                            .chain(regions.iter())
                            .any(|q| q.hits.first().is_some_and(|h| h.similarity >= review));
                        prints.push(PhotoPrint {
                            image: r.display(),
                            phash: loaded
                                .phashes
                                .iter()
                                .find(|(region, _)| region.is_none())
                                .map(|(_, h)| *h),
                            embedding: embedding.map(<[f32]>::to_vec).unwrap_or_default(),
                            catalog: similar || near.len() > known_near,
                        });
                        queries.push((r.display(), whole));
                        for (name, hits) in loaded.regions.iter().map(|r| r.name).zip(regions) {
                            queries.push((format!("{}#{name}", r.display()), hits));
                        }
                    }
                    Err(e) => image_errors.push(format!("{}: {e}", r.display())),
                }
            }
            let matches = self.products_from_hits(&queries, &near);
            pending.push((
                queries,
                matches,
                ready,
                (places, hashes, decoded, near, prints),
                image_errors,
            ));
        }
        // local features only of the photos of listings that will be verified, all at once
        let wanted: Vec<(usize, &crate::vision::verify::orb::Ready)> = pending
            .iter()
            .enumerate()
            .filter(|(_, (_, matches, ready, (_, _, _, near, _), _))| {
                !ready.is_empty() && self.will_verify(matches, near)
            })
            .flat_map(|(i, (_, _, ready, _, _))| ready.iter().map(move |(_, r, _)| (i, *r)))
            .collect();
        let extracted: Vec<Features> = {
            use rayon::prelude::*;
            wanted.par_iter().map(|(_, r)| r.extract()).collect()
        };
        let mut extracted = wanted.iter().map(|(i, _)| *i).zip(extracted).peekable();
        let mut out = Vec::with_capacity(listings.len());
        for (
            i,
            (
                listing,
                (queries, matches, ready, (places, hashes, decoded, near, prints), image_errors),
            ),
        ) in listings.into_iter().zip(pending).enumerate()
        {
            let listing = match listing {
                Ok(l) => l,
                Err((line, id, why)) => {
                    out.push(Report::error(line, id, why, &self.ctx));
                    continue;
                }
            };
            let mut mine = Vec::new();
            while let Some((_, f)) = extracted.next_if(|(j, _)| *j == i) {
                mine.push(f);
            }
            let features: Vec<(String, &Features)> =
                ready.iter().map(|(name, _, _)| name.clone()).zip(mine.iter()).collect();
            let colours: Vec<(String, &Colours)> =
                ready.iter().filter_map(|(name, _, c)| c.map(|c| (name.clone(), c))).collect();
            if queries.is_empty() {
                let why = format!("no usable photo: {}", image_errors.join("; "));
                let mut rep = Report::error(listing.line, Some(listing.listing_id), why, &self.ctx);
                rep.seller = Some(listing.seller);
                out.push(rep);
                continue;
            }
            let photos = Photos {
                features: &features,
                places: &places,
                colours: &colours,
                hashes: &hashes,
                images: &decoded,
                near: &near,
            };
            let mut report = self.judge(listing, &queries, matches, &photos, image_errors)?;
            report.photos = prints;
            out.push(report);
        }
        Ok(out)
    }

    /// Nearest visible catalog images of each embedding, in one batch, with each embedding's
    /// background term (see `background_terms`).
    fn search(&self, embeddings: &[Vec<f32>]) -> Vec<Searched> {
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

    /// Whether a photo's regions are searched too, given its whole-photo results: always with
    /// `region_queries = "all"`; with `"uncertain"` when its best score is at least
    /// `region_min_score` and below the match threshold (clearly unrelated photos and photos
    /// already found as copies are left alone).
    fn needs_regions(&self, whole: &Searched) -> bool {
        match self.ctx.regions {
            RegionQueries::Off => false,
            RegionQueries::All => true,
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

    /// Score normalisation (SSCD's authors' method): for each query, `policy.background_beta` × its
    /// mean similarity to the `policy.background_k` nearest background photos, which `judge`
    /// subtracts from the query's similarities. `None` when the catalog has no background photos
    /// or beta is 0.
    fn background_terms(&self, queries: &[&[f32]]) -> Vec<Option<f32>> {
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

    /// Decides a listing from its candidate `matches` (`products_from_hits` of its `queries`):
    /// verifies the best candidates with the photos' local features when verification is on,
    /// compares those found small in a photo again where they lie (`locate`), lets the photos'
    /// colours decide between look-alike siblings (`prefer_by_colour`), and applies the policy.
    fn judge(
        &mut self,
        listing: Listing,
        queries: &[(String, Searched)],
        mut matches: Vec<Match>,
        photos: &Photos<'_>,
        image_errors: Vec<String>,
    ) -> Result<Report> {
        let posed = match &self.view.features {
            Some(store) => self.verify(&mut matches, queries, photos, store)?,
            None => Vec::new(),
        };
        self.locate(&mut matches, posed, photos)?;
        if let Some(store) = &self.view.features {
            if !photos.features.is_empty() {
                self.prefer_by_colour(&mut matches, photos.colours, store)?;
            }
        }
        matches.truncate(self.ctx.config.policy.top_k);
        let allowed = self.set_aside_allowed(&mut matches, &listing.seller.seller_id, photos);
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

    /// Takes out of `matches` the products whose matched listing photo (any orientation) is on
    /// their allow-list for this seller, and returns them with the entries that allow them. Only
    /// the photo that matched a product best is looked at (`Match::listing_image`).
    fn set_aside_allowed(
        &self,
        matches: &mut Vec<Match>,
        seller_id: &str,
        photos: &Photos<'_>,
    ) -> Vec<Allowed> {
        let mut allowed = Vec::new();
        self.allow.read(|list| {
            if list.is_empty() {
                return;
            }
            matches.retain(|m| {
                let photo = photos
                    .places
                    .get(&m.listing_image)
                    .map_or(m.listing_image.as_str(), |(p, _)| p.as_str());
                let hashes: Vec<u64> =
                    photos.hashes.iter().filter(|(n, _)| n == photo).map(|(_, h)| *h).collect();
                let Some((entry, bits)) = list.find(&m.brand, &m.product_id, seller_id, &hashes)
                else {
                    return true;
                };
                allowed.push(Allowed {
                    listing_image: photo.to_string(),
                    hash_distance: bits,
                    similarity: m.similarity,
                    entry: entry.clone(),
                });
                false
            });
        });
        allowed
    }

    /// The candidates `verify` checks: of the best `verify.candidates` matches, those scoring at
    /// least `verify.min_score`, and the `near` duplicates wherever they rank, with their index.
    fn to_verify<'a>(
        &'a self,
        matches: &'a [Match],
        near: &'a HashSet<usize>,
    ) -> impl Iterator<Item = (usize, &'a Match)> {
        let (n, min) = (self.ctx.config.verify.candidates, self.ctx.config.verify.min_score);
        let is_near = move |m: &Match| {
            !near.is_empty()
                && self
                    .view
                    .product_index
                    .get(&(m.brand.clone(), m.product_id.clone()))
                    .is_some_and(|pi| near.contains(pi))
        };
        matches
            .iter()
            .enumerate()
            .filter(move |(i, m)| (*i < n && m.similarity as f64 >= min) || is_near(m))
    }

    /// Whether `judge` will verify a listing with these candidate matches: verification is on and
    /// `to_verify` leaves one. Only such listings get their photos' local features extracted.
    fn will_verify(&self, matches: &[Match], near: &HashSet<usize>) -> bool {
        self.view.features.is_some() && self.to_verify(matches, near).next().is_some()
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
    fn near_duplicates(
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
    fn verify(
        &self,
        matches: &mut [Match],
        queries: &[(String, Searched)],
        listing_photos: &Photos<'_>,
        store: &crate::catalog::FeatureStore,
    ) -> Result<Vec<Posed>> {
        use rayon::prelude::*;
        let (photos, places) = (listing_photos.features, listing_photos.places);
        let v = &self.ctx.config.verify;
        if photos.is_empty() {
            return Ok(Vec::new());
        }
        // each reference vector's best similarity to any of the listing's photos, where searched
        let mut seen: HashMap<u32, f32> = HashMap::new();
        for (_, searched) in queries {
            for h in &searched.hits {
                let e = seen.entry(h.vector).or_insert(f32::MIN);
                *e = e.max(h.similarity);
            }
        }
        // each candidate's reference photos, the most similar to the listing's photos first, with
        // the points its brand's other products share
        type Reference =
            (u32, std::sync::Arc<Features>, Option<std::sync::Arc<crate::vision::verify::Shared>>);
        // (match index, reference photos, near-duplicate: hash distance and listing photo)
        type Candidate<'p> = (usize, Vec<Reference>, Option<(u32, &'p str)>);
        let mut candidates: Vec<Candidate> = Vec::new();
        for (i, m) in self.to_verify(matches, listing_photos.near) {
            let Some(&pi) = self.view.product_index.get(&(m.brand.clone(), m.product_id.clone()))
            else {
                continue;
            };
            let mut vids = self.view.product_vectors[pi].clone();
            vids.sort_by(|a, b| {
                seen.get(b)
                    .unwrap_or(&f32::MIN)
                    .total_cmp(seen.get(a).unwrap_or(&f32::MIN))
                    .then(a.cmp(b))
            });
            let mut refs = Vec::new();
            for vid in vids {
                if refs.len() == v.references {
                    break;
                }
                if let Some(f) = store.get(vid)? {
                    refs.push((vid, f, store.shared(vid)?));
                }
            }
            // the listing photo (in any orientation) or region nearest to one of the product's
            // reference photos by perceptual hash, when a near-duplicate
            let mut near: Option<(u32, &str)> = None;
            for &vid in &self.view.product_vectors[pi] {
                let Some(r) = store.phash(vid)? else { continue };
                for (photo, h) in listing_photos.hashes {
                    let d = crate::vision::phash::distance(*h, r);
                    if d <= crate::vision::phash::NEAR && near.is_none_or(|(best, _)| d < best) {
                        near = Some((d, photo.as_str()));
                    }
                }
            }
            // (images stored before knockoff kept local features have none: nothing to verify)
            if !refs.is_empty() || near.is_some() {
                candidates.push((i, refs, near));
            }
        }
        // the photo pair with the most evidence (with the listing photo's name and the reference
        // photo's vector), with the most distinct evidence of any pair, and where in the listing
        // photo its inliers are
        type Most = (crate::vision::verify::Verified, Option<Place>, Option<(String, u32)>);
        let most = |qs: &[(&str, &Features)], mirrored: bool, refs: &[Reference]| -> Most {
            let pairs: Vec<(&str, &Features, &Reference)> =
                qs.iter().flat_map(|(name, q)| refs.iter().map(move |r| (*name, *q, r))).collect();
            let (ver, pair) = pairs
                .par_iter()
                .map(|(name, q, (vid, r, shared))| {
                    (
                        crate::vision::verify::verify(q, r, shared.as_deref(), v.min_inliers),
                        Some((*name, *vid)),
                    )
                })
                .reduce(
                    || (crate::vision::verify::Verified::default(), None),
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
                places.get(name).map(|(photo, area)| Place::within(photo, *area, spot))
            });
            (ver, place, pair.map(|(name, vid)| (name.to_string(), vid)))
        };
        let direct: Vec<(&str, &Features)> =
            photos.iter().map(|(name, q)| (name.as_str(), *q)).collect();
        let mut counted: Vec<Counted> = candidates
            .iter()
            .map(|(i, refs, _)| {
                let (ver, place, pair) = most(&direct, false, refs);
                (*i, ver, false, place, pair)
            })
            .collect();
        // the mirror pass: for candidates the embedding rates a possible copy that did not verify
        // fully, and once the listing photos turn out mirrored, for every such candidate (so a
        // sibling does not win on its mirror image against the true product's few direct inliers)
        let review =
            |i: usize| matches[i].similarity as f64 >= self.ctx.thresholds.review_threshold;
        let mut flipped: Option<Vec<Features>> = None; // the listing photos mirrored, made when first needed
        let mut done = vec![false; counted.len()];
        for all in [false, true] {
            let mut gained = false;
            for (k, (i, refs, _)) in candidates.iter().enumerate() {
                if done[k]
                    || !review(*i)
                    || (!all && counted[k].1.evidence() >= v.full_inliers as f64)
                {
                    continue;
                }
                done[k] = true;
                let flipped = flipped
                    .get_or_insert_with(|| photos.iter().map(|(_, q)| q.mirrored()).collect());
                let mirror: Vec<(&str, &Features)> = photos
                    .iter()
                    .zip(flipped.iter())
                    .map(|((name, _), q)| (name.as_str(), q))
                    .collect();
                // taken only when it verifies, so the counts a verdict shows and `mirrored` agree
                let (mut other, place, pair) = most(&mirror, true, refs);
                if other.evidence() > counted[k].1.evidence()
                    && other.evidence() >= v.min_inliers as f64
                {
                    other.distinct = other.distinct.max(counted[k].1.distinct);
                    gained = true;
                    counted[k] = (*i, other, true, place, pair);
                }
            }
            if !gained {
                break;
            }
        }
        // each candidate's evidence and distinct evidence, a near-duplicate's at least full
        let (min, full) = (v.min_inliers as f64, v.full_inliers as f64);
        let weighed: Vec<(f64, f64, Option<Place>)> = counted
            .iter()
            .zip(&candidates)
            .map(|((_, ver, _, place, _), (_, _, near))| match near {
                Some((_, name)) if ver.evidence() < full => {
                    // verified on the photo or region the hash is of, unless its inliers say where
                    let at = match ver.evidence() >= min {
                        true => place.clone(),
                        false => places
                            .get(*name)
                            .map(|(photo, area)| Place { photo: photo.clone(), area: *area }),
                    };
                    (full, ver.distinct.max(full), at)
                }
                _ => (ver.evidence(), ver.distinct, place.clone()),
            })
            .collect();
        // where each candidate is: where it verified, else the part of the photo its embedding
        // matched best (the whole photo or a region)
        let here: Vec<Option<Place>> = counted
            .iter()
            .zip(&weighed)
            .map(|((i, _, _, _, _), (e, _, place))| match *e >= min {
                true => place.clone(),
                false => places
                    .get(&matches[*i].listing_image)
                    .map(|(photo, area)| Place { photo: photo.clone(), area: *area }),
            })
            .collect();
        // the most evidence and distinct evidence among the candidates verified where each one is
        let rivals: Vec<(f64, f64)> = here
            .iter()
            .map(|at| {
                weighed
                    .iter()
                    .filter(|(e, _, place)| {
                        *e >= min
                            && at.as_ref().zip(place.as_ref()).is_none_or(|(a, b)| a.overlaps(b))
                    })
                    .fold((0.0, 0.0), |(be, bd), (e, d, _)| (f64::max(be, *e), f64::max(bd, *d)))
            })
            .collect();
        let mut posed = Vec::new();
        for (
            ((((i, ver, flipped, _, pair), (_, _, near)), (e, d, _)), (best, best_distinct)),
            at,
        ) in counted.into_iter().zip(&candidates).zip(weighed).zip(rivals).zip(here)
        {
            let adj = v.adjustment(e, d, best.max(e), best_distinct.max(d)) as f32;
            let features = self.features_shown(&matches[i], &ver, pair.as_ref(), flipped, places);
            // where to compare again (`locate`): candidates with a homography that are not explained
            // away and cover less of the photo than a region does
            if let (Some(pose), Some((name, vector)), true) =
                (ver.pose, pair, ver.inliers >= v.min_inliers && adj >= 0.0)
            {
                let share = places.get(&name).and_then(|(_, area)| pose.share(*area, flipped));
                if share.is_some_and(|s| s < LOCATE_MAX_SHARE) {
                    posed.push(Posed {
                        product: (matches[i].brand.clone(), matches[i].product_id.clone()),
                        vector,
                        name,
                        mirrored: flipped,
                        pose,
                    });
                }
            }
            let m = &mut matches[i];
            m.inliers = Some(ver.inliers as u32);
            m.central_inliers = Some(ver.central as u32);
            m.shared_inliers = (ver.shared > 0).then_some(ver.shared as u32);
            m.hash_distance = near.map(|(bits, _)| bits);
            m.mirrored = flipped;
            m.region = at
                .filter(|at| {
                    e >= min && at.area != regions::WHOLE && at.photo == photo_of(&m.listing_image)
                })
                .map(|at| MatchRegion { area: at.area.map(round4) });
            m.features = features;
            if adj != 0.0 {
                m.raw_similarity.get_or_insert(m.similarity);
                m.verification = Some(round4(adj));
                m.similarity = round4(m.similarity + adj);
            }
        }
        matches.sort_by(|a, b| {
            b.similarity.total_cmp(&a.similarity).then_with(|| a.product_id.cmp(&b.product_id))
        });
        Ok(posed)
    }

    /// The verified points of `ver` as a match shows them, in the whole listing photo (`in_photo`;
    /// `mirrored` when the mirrored photo verified), when it verified (`verify.min_inliers`
    /// evidence) and its photo pair (`pair`: the listing photo or region, and the reference
    /// photo's vector) is the one the match names (`listing_image` and `image`); none otherwise,
    /// as they would be drawn on photos they are not of.
    fn features_shown(
        &self,
        m: &Match,
        ver: &crate::vision::verify::Verified,
        pair: Option<&(String, u32)>,
        mirrored: bool,
        places: &Places,
    ) -> Vec<FeaturePair> {
        let Some((name, vid)) = pair else { return Vec::new() };
        let Some((photo, area)) = places.get(name) else { return Vec::new() };
        let owners = self.view.vector_products.get(*vid as usize).into_iter().flatten();
        let product = |pi: usize| {
            let p = self.view.products.get(pi);
            p.is_some_and(|p| p.brand == m.brand && p.product_id == m.product_id)
        };
        let verified = ver.evidence() >= self.ctx.config.verify.min_inliers as f64;
        let shown = photo == photo_of(&m.listing_image)
            && owners.into_iter().any(|(pi, src)| *src == m.image && product(*pi));
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

    /// Verified candidates compared again where they were found (`posed` by `verify`: those with
    /// a homography of at least `verify.min_inliers` inliers, not explained away, whose reference
    /// photo covers less than `LOCATE_MAX_SHARE` of the listing photo). That part of the listing
    /// photo is cut out and straightened (`verify::Pose::rectify`) and embedded, and its
    /// similarity to the reference photo (less its background term) replaces the candidate's best
    /// similarity when higher (`Match::located`). A copy pasted small, turned or tilted in a
    /// listing photo is then compared as the copy it is, not through the whole photo or a fixed
    /// region around it.
    fn locate(
        &mut self,
        matches: &mut [Match],
        posed: Vec<Posed>,
        photos: &Photos<'_>,
    ) -> Result<()> {
        let manifest = self.embedder.manifest().clone();
        let mut crops = Vec::new();
        let mut which = Vec::new();
        for p in posed {
            let Some((photo, area)) = photos.places.get(&p.name) else { continue };
            let Some((_, img)) = photos.images.iter().find(|(name, _)| name == photo) else {
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
            let Some(m) =
                matches.iter_mut().find(|m| m.brand == product.0 && m.product_id == product.1)
            else {
                continue;
            };
            if vector as usize >= self.view.index.len() {
                continue;
            }
            let r = self.view.index.rows().row_f32(vector as usize);
            let located = crate::index::simd::dot(e, &r) - term.unwrap_or(0.0);
            let best_pair = m.similarity - m.verification.unwrap_or(0.0) - m.support.unwrap_or(0.0);
            if located > best_pair {
                m.located = Some(round4(located));
                m.raw_similarity.get_or_insert(m.similarity);
                m.similarity = round4(m.similarity + located - best_pair);
            }
        }
        matches.sort_by(|a, b| {
            b.similarity.total_cmp(&a.similarity).then_with(|| a.product_id.cmp(&b.product_id))
        });
        Ok(())
    }

    /// Siblings told apart by colour: when the two best matches are look-alike products of one
    /// brand (both verified with at least `verify.min_inliers` inliers, scores within
    /// `colour::SIBLING_GAP` of each other), each product's reference photos that have
    /// colours (`colour::Colours::of_reference`) are compared with the listing photo it matched,
    /// and the second goes first when it shares more than `colour::SIBLING_MARGIN` more of that
    /// photo's colour. The embedding ignores colour by design and local features agree on the
    /// design siblings share, so colour is what is left to tell a brand's milks or juices apart.
    /// Both get `colour`; scores are left as they are.
    fn prefer_by_colour(
        &self,
        matches: &mut [Match],
        colours: &[(String, &Colours)],
        store: &crate::catalog::FeatureStore,
    ) -> Result<()> {
        let [first, second, ..] = matches else { return Ok(()) };
        let verified =
            |m: &Match| m.inliers.is_some_and(|n| n as usize >= self.ctx.config.verify.min_inliers);
        if first.brand != second.brand
            || !verified(first)
            || !verified(second)
            || first.similarity - second.similarity >= crate::vision::colour::SIBLING_GAP
        {
            return Ok(());
        }
        // the share of the listing photo's colour that the product's reference photos have at most
        let share = |m: &Match| -> Result<Option<f32>> {
            let photo = photo_of(&m.listing_image);
            let Some((_, seen)) = colours.iter().find(|(name, _)| name == photo) else {
                return Ok(None);
            };
            let Some(&pi) = self.view.product_index.get(&(m.brand.clone(), m.product_id.clone()))
            else {
                return Ok(None);
            };
            let mut best: Option<f32> = None;
            for &vid in &self.view.product_vectors[pi] {
                if let Some(c) = store.colours(vid)? {
                    let s = seen.similarity(&c);
                    best = Some(best.map_or(s, |b| b.max(s)));
                }
            }
            Ok(best)
        };
        let (Some(a), Some(b)) = (share(first)?, share(second)?) else { return Ok(()) };
        first.colour = Some(round4(a));
        second.colour = Some(round4(b));
        if b - a > crate::vision::colour::SIBLING_MARGIN {
            matches.swap(0, 1);
        }
        Ok(())
    }

    /// Groups search hits of a listing's photos by product, keeping each product's best pair by
    /// score (similarity minus the photo's background term), best first: as many as the policy
    /// and verification look at, and the `near` duplicates (`near_duplicates`) wherever they rank.
    fn products_from_hits(
        &self,
        queries: &[(String, Searched)],
        near: &HashSet<usize>,
    ) -> Vec<Match> {
        let mut best: HashMap<usize, Match> = HashMap::new();
        // each product's reference photos, with the best score any listing photo got against each
        let mut per_photo: HashMap<usize, HashMap<u32, f32>> = HashMap::new();
        for (listing_image, searched) in queries {
            let term = searched.background.unwrap_or(0.0);
            for hit in &searched.hits {
                let score = hit.similarity - term;
                for (pi, src) in
                    self.view.vector_products.get(hit.vector as usize).into_iter().flatten()
                {
                    let Some(p) = self.view.products.get(*pi) else { continue };
                    let photo =
                        per_photo.entry(*pi).or_default().entry(hit.vector).or_insert(f32::MIN);
                    *photo = photo.max(score);
                    let entry = best.entry(*pi).or_insert_with(|| Match {
                        brand: p.brand.clone(),
                        product_id: p.product_id.clone(),
                        title: p.title.clone(),
                        image: src.clone(),
                        listing_image: listing_image.clone(),
                        similarity: f32::MIN,
                        raw_similarity: None,
                        background: None,
                        support: None,
                        inliers: None,
                        central_inliers: None,
                        hash_distance: None,
                        located: None,
                        shared_inliers: None,
                        verification: None,
                        mirrored: false,
                        colour: None,
                        region: None,
                        features: Vec::new(),
                        reference_price: p.price,
                        reference_currency: p.currency.clone(),
                    });
                    if score > entry.similarity {
                        entry.similarity = score;
                        entry.raw_similarity = Some(round4(hit.similarity));
                        entry.background = searched.background.map(round4);
                        entry.image = src.clone();
                        entry.listing_image = listing_image.clone();
                    }
                }
            }
        }
        let w = self.ctx.config.policy.support_weight as f32;
        if w > 0.0 {
            for (pi, m) in best.iter_mut() {
                let mut scores: Vec<f32> =
                    per_photo.remove(pi).map(|p| p.into_values().collect()).unwrap_or_default();
                scores.sort_by(|a, b| b.total_cmp(a));
                let support = w
                    * (scores.get(1).map_or(0.0, |s| s.max(0.0))
                        + 0.5 * scores.get(2).map_or(0.0, |s| s.max(0.0)));
                if support > 0.0 {
                    m.similarity += support;
                    m.support = Some(round4(support));
                }
            }
        }
        let mut v: Vec<(usize, Match)> = best.into_iter().collect();
        for (_, m) in &mut v {
            m.similarity = round4(m.similarity);
            if m.background.is_none() && m.support.is_none() {
                m.raw_similarity = None; // the score is the cosine itself
            }
        }
        v.sort_by(|(_, a), (_, b)| {
            b.similarity.total_cmp(&a.similarity).then_with(|| a.product_id.cmp(&b.product_id))
        });
        // the best, and the near-duplicates wherever they rank (they are verified)
        let keep = self.ctx.config.policy.top_k.max(if self.view.features.is_some() {
            self.ctx.config.verify.candidates
        } else {
            0
        });
        v.into_iter()
            .enumerate()
            .filter(|(rank, (pi, _))| *rank < keep || near.contains(pi))
            .map(|(_, (_, m))| m)
            .collect()
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

/// The listing photo a query was made from, without the region suffix `scan` gives region queries
/// ("photo.jpg#inset"), as a match's `listing_image` may name it.
pub fn photo_of(query: &str) -> &str {
    match query.rsplit_once('#') {
        Some((p, r))
            if r == regions::INSET
                || r == regions::STRAIGHTENED
                || regions::REGIONS.contains(&r) =>
        {
            p
        }
        _ => query,
    }
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

fn round4(x: f32) -> f32 {
    (x * 10000.0).round() / 10000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spot_is_placed_in_its_region_and_places_overlap_only_in_one_photo() {
        // the right half of a region that is the photo's bottom-left quadrant
        let p = Place::within("a.jpg", [0.0, 0.5, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]);
        let expect = [0.25 - SPOT_MARGIN, 0.5 - SPOT_MARGIN, 0.5 + SPOT_MARGIN, 1.0];
        assert!(p.area.iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-6), "{p:?}");
        let whole = Place { photo: "a.jpg".into(), area: regions::WHOLE };
        assert!(p.overlaps(&whole) && whole.overlaps(&p), "a part overlaps the whole photo");
        let right = Place { photo: "a.jpg".into(), area: [0.5, 0.0, 1.0, 1.0] };
        assert!(!p.overlaps(&right), "{p:?} and {right:?} share only their margin");
        let elsewhere = Place { photo: "b.jpg".into(), area: regions::WHOLE };
        assert!(!p.overlaps(&elsewhere), "another photo");
        let half_in = Place { photo: "a.jpg".into(), area: [0.1, 0.5, 0.4, 1.0] };
        assert!(p.overlaps(&half_in), "more than half of the smaller lies in the other");
    }

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
