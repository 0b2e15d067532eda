//! knockoff: finds marketplace listings whose photos copy protected products, sold below the
//! genuine price by sellers the brand has not authorised.
//!
//! The `knockoff` command (`cli`) is one user of this library; a Rust program can be another. The
//! steps, each with its types at the crate root:
//!
//! 1. **Configuration**: [`Config::load`] reads `DATA/config.toml` (or a given file); every field
//!    has a default. Its sections are in [`config`].
//! 2. **Model**: [`model::locate`] finds a model's manifest, ONNX file and ONNX Runtime (installed
//!    by `bash models/fetch.sh`, [`model::DEFAULT_MODEL`] unless chosen otherwise);
//!    [`Embedder::load`] loads it.
//! 3. **Catalog**: [`Store::open`] opens (or creates) the catalog in a data directory. Products are
//!    read with a [`RecordReader`] ([`Format::Csv`] or [`Format::Jsonl`]) and [`parse_product`];
//!    an [`Adder`] fetches and analyses their photos, embeds and stores them chunk by chunk
//!    ([`Adder::add_products`]) and [`Adder::finish`] then updates the search index.
//! 4. **Scan**: a [`Scanner`] over the catalog's [`Store::view`] judges chunks of [`Listing`]s
//!    (read with [`parse_listing`], or built by hand for one photo, as `knockoff query` does):
//!    [`Scanner::check`] for one chunk, [`Scanner::run`] for many with loading ahead.
//! 5. **Verdicts**: one [`Report`] per listing, in input order: its [`Verdict`] (clear, review,
//!    flag, error), risk, best [`Match`]es, price comparison and `reasons`; it serialises to the
//!    JSON line `knockoff scan` writes, and [`explain`] renders it as text.
//!
//! Fallible functions return [`anyhow::Result`], with errors that name the record or file; a
//! listing that cannot be judged gets an `error` verdict instead, and the scan goes on. Two
//! components stand alone: [`decode`] (photo bytes to RGB within limits against hostile files) and
//! [`index`] (nearest-neighbour search, exact and HNSW, over unit vectors).
//!
//! Reading listings needs no model:
//!
//! ```
//! use knockoff::{parse_listing, Format, RecordReader};
//!
//! let jsonl = r#"{"listing_id": "L1", "seller_id": "shop42", "images": ["photos/l1.jpg"]}"#;
//! let base = std::path::Path::new(".");
//! for raw in RecordReader::new(jsonl.as_bytes(), Format::Jsonl, 1 << 20) {
//!     let raw = raw?;
//!     let listing = parse_listing(&raw, base, 20).map_err(|(_, why)| anyhow::anyhow!(why))?;
//!     assert_eq!((listing.listing_id.as_str(), listing.images.len()), ("L1", 1));
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Adding products and scanning needs the model files (`bash models/fetch.sh`), so this one is
//! compiled but not run:
//!
//! ```no_run
//! use std::io::BufReader;
//! use std::path::Path;
//!
//! use knockoff::model::{self, ModelChoice};
//! use knockoff::{Adder, Config, Embedder, Fetcher, Format, ImageRef, Listing, RecordReader};
//! use knockoff::{Scanner, Seller, Store, Verdict};
//!
//! let data = tempfile::tempdir()?; // the data directory: catalog, vectors, index
//! let config = Config::load(None, data.path())?;
//! let mut store = Store::open(data.path(), true)?;
//! let location = model::locate(&ModelChoice {
//!     name: model::DEFAULT_MODEL.to_string(),
//!     dir: config.model.dir.clone(),
//!     ort_lib: config.model.ort_lib.clone(),
//! })?;
//! let mut embedder =
//!     Embedder::load(&location, config.model.batch_size, config.model.intra_threads)?;
//!
//! // products: a catalog file, its photo paths relative to its directory
//! let file = std::fs::File::open("testdata/catalog.csv")?;
//! let max_images = config.limits.max_images_per_record;
//! let mut products = Vec::new();
//! for raw in RecordReader::new(BufReader::new(file), Format::Csv, config.limits.max_line_bytes) {
//!     let raw = raw?;
//!     match knockoff::parse_product(&raw, Path::new("testdata"), max_images) {
//!         Ok(product) => products.push(product),
//!         Err(why) => eprintln!("line {}: {why}", raw.line),
//!     }
//! }
//! let fetcher = Fetcher::new(&config.limits)?;
//! let mut adder = Adder::new(&mut store, &mut embedder, &fetcher, &config)?;
//! adder.add_products(knockoff::in_chunks(products), |added| {
//!     for (line, why) in added.image_errors.iter().chain(&added.skipped) {
//!         eprintln!("line {line}: {why}");
//!     }
//!     Ok(())
//! })?;
//! adder.finish()?;
//!
//! // one listing photo, judged against the catalog
//! let view = store.view(&config)?;
//! let mut scanner = Scanner::new(view, embedder, config)?;
//! let listing = Listing {
//!     line: 0,
//!     listing_id: "suspect".to_string(),
//!     title: Some("Northwind Runner Pro, 100% original".to_string()),
//!     price: Some(19.99),
//!     currency: Some("EUR".to_string()),
//!     images: vec![ImageRef::parse("suspect.jpg", Path::new(".")).map_err(anyhow::Error::msg)?],
//!     seller: Seller { seller_id: "shop42".to_string(), ..Seller::default() },
//!     warnings: Vec::new(),
//! };
//! for report in scanner.check(vec![Ok(listing)])? {
//!     if report.verdict != Verdict::Clear {
//!         println!("{}", serde_json::to_string(&report)?);
//!     }
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! # Inside the crate
//!
//! One folder per step of the data's path (docs/ARCHITECTURE.md draws it), each a layer that
//! imports only the layers before it in this list:
//! - `util`: atomic file writes, untrusted text made safe to show, a seeded random generator;
//! - `input`: input records (products, listings) read from JSON Lines or CSV, and input limits;
//! - `vision`: photos before any model sees them: fetching (`source`, `netguard`), `decode`, the
//!   regions searched besides the whole photo (`regions`, `inset`, `tilt`), perceptual hash
//!   (`phash`), colours (`colour`) and local features for geometric verification (`verify`);
//! - `model`: model manifests, the embedder (`embed`: preprocessing, ONNX inference) and `load`
//!   (photos fetched, decoded and analysed for the model, in parallel);
//! - `index`: nearest-neighbour search (exact, with `simd` kernels, and the HNSW `graph`) over the
//!   stored `vectors`; it knows nothing of images or config files;
//! - `policy`: thresholds, prices (`currency`), counterfeit `wording` → verdicts; `calibrate`;
//! - `config`: the TOML configuration, assembled from each layer's section;
//! - `catalog`: brands' products in a data directory (`snapshot`, reviewers' `allowlist`);
//! - `scan`: the scanner and judge (`batch`, verdict output in `report`);
//! - `network`: seller networks; `server`: the HTTP API and review console;
//! - `cli`: the command line; `bench`: the accuracy benchmark (`attack`, `metrics`, `baseline`).

mod bench;
mod catalog;
pub mod cli;
pub mod config;
pub mod index;
mod input;
pub mod model;
mod network;
mod policy;
mod scan;
mod server;
mod util;
mod vision;

// The public API: what the command line itself uses to add products and judge listings. The rest
// of the crate is private; `cli` is public for the `knockoff` binary (src/main.rs).
pub use catalog::allowlist::{Allowed, Entry as AllowlistEntry};
pub use catalog::{
    in_chunks, parse_product, Adder, BackgroundIngested, CatalogView, ImageNotes, Ingested,
    ListedProduct, ModelStamp, NewProduct, ProductLine, ProductRecord, Stats as CatalogStats,
    Store,
};
pub use config::Config;
pub use input::records::{Format, RawRecord, RecordReader};
pub use model::embed::Embedder;
pub use policy::wording::WordingHit;
pub use policy::{
    CandidateProduct, FeaturePair, Match, MatchRegion, PriceComparison, Rule, Thresholds, Verdict,
};
pub use scan::report::explain;
pub use scan::{
    parse_listing, Inferences, Listing, NetworkRef, Parsed, PhotoPrint, Report, Scanner, Seller,
};
pub use util::display::escape;
pub use vision::source::{Fetcher, ImageRef};

pub mod decode {
    //! Photo decoding: bytes of any supported format (JPEG, PNG, WebP, GIF, BMP, TIFF) to an
    //! upright 8-bit RGB image, within [`Limits`] against hostile files, and resizing.
    pub use crate::vision::decode::{
        decode, resize, resize_short_side, DecodeError, Limits, RgbImage,
    };
}

/// Internals used by the integration tests (`tests/fuzz.rs`), benchmarks (`benches/search.rs`,
/// `benches/pipeline.rs`) and `examples/big_catalog.rs` only: not part of the API, hidden from the
/// documentation, may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::index::simd::dot;
    pub use crate::util::rng::Rng;
    pub use crate::vision::source::http::{check_url, redirect_target};
}
