//! knockoff: finds marketplace listings whose photos copy protected products, sold below the
//! genuine price by sellers the brand has not authorised.
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
//! - `scan`: the scanner and judge (`batch`, `pipeline`, verdict output in `report`);
//! - `network`: seller networks; `server`: the HTTP API and review console;
//! - `cli`: the command line; `bench`: the accuracy benchmark (`attack`, `metrics`, `baseline`).

mod bench;
mod catalog;
pub mod cli;
mod config;
pub mod index;
mod input;
pub mod model;
mod network;
mod policy;
mod scan;
mod server;
mod util;
mod vision;

pub use catalog::{
    ingest, load_products, parse_product, CatalogView, ImageNotes, Ingested, ListedProduct,
    LoadedProduct, ProductRecord, Stats as CatalogStats, Store,
};
pub use config::Config;
pub use input::records::{Format, RawRecord, RecordReader};
pub use model::embed::Embedder;
pub use policy::{FeaturePair, Match, MatchRegion, PriceComparison, Thresholds, Verdict};
pub use scan::report::explain;
pub use scan::{
    decode_limits, parse_listing, Inferences, Listing, Parsed, Report, Scanner, Seller,
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

/// Internals used by the integration tests (`tests/`), benchmarks (`benches/`) and examples only: not part
/// of the API, may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::index::simd::dot;
    pub use crate::util::rng::Rng;
    pub use crate::vision::source::http::{check_url, redirect_target};
}
