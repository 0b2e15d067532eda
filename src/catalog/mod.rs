//! Reference catalogs: brand owners' products, their genuine photos and authorised sellers, stored
//! in a data directory.
//!
//! Data directory layout (format version 1):
//! - `catalog.sqlite`: brands, products, authorised sellers, images and the meta table (format
//!   version, schema migration (`schema`), model, committed vector count, current vector file and
//!   HNSW generation);
//! - `vectors-<gen>.f32`: the reference embeddings (see `vectors`), row = `vectors.id`;
//! - `graph-<gen>.knkg`: the HNSW search graph over the first `hnsw_covered` vectors, present for
//!   large catalogs (see `graph`). Graphs written by knockoff before it had its own graph (the
//!   hnsw_rs directory `hnsw/<gen>/`) are not read: `query` and `scan` then ask for `catalog
//!   compact`, which builds the graph anew, as does the next `catalog add` that adds images;
//! - `background-<gen>.vec` (optional): embeddings of background photos, images that are not in
//!   the catalog, for score normalisation (see `Store::add_background`); rows match table
//!   `background`, count in meta `background_count`;
//! - table `local_features`: each reference image's local features for geometric verification
//!   (`verify::orb::Features::to_bytes`, format `KNKORB02`), keyed by content hash like `vectors`;
//!   images added before knockoff stored them, or stored in the outdated format `KNKORB01`, are
//!   not verified until they are added again (which replaces outdated features);
//! - table `shared_points`: for each reference image, which of its local feature points images of
//!   the brand's other products share (`verify::Shared::to_bytes`, format `KNKSHR01`), keyed by
//!   content hash; found again for a brand whenever `catalog add` stores products of it or
//!   `catalog compact` deletes some (see `Store::mark_shared`);
//! - table `colours`: the colour histogram of each reference image not on a white backdrop
//!   (`colour::Colours::to_bytes`, format `KNKCOL01`), keyed by content hash; images added before
//!   knockoff stored them have none, and take no part in telling siblings apart by colour;
//! - table `phashes`: the perceptual hash of each reference image (`phash::of`, 8 bytes, u64
//!   LE), keyed by content hash; images added before knockoff stored them are not recognised as
//!   near-duplicates (`scan` verifies them on local features only);
//! - `config.toml` (optional): settings (see `config`);
//! - `lock`: held while a command writes, so two writers never interleave.
//!
//! Every change commits in one SQLite transaction after the files it points to are written and
//! synced, so a crash leaves the previous catalog readable.
//!
//! The module's layers, each using only those before it: `schema` (numbered migrations) and
//! `store` (the database and its files, rows in and out; no image or model code), `snapshot`;
//! then `features` (the feature store: stored image analyses decoded), `view` (what a search
//! reads), `shared` (shared points), `maintenance` (remove, compact), `model_check` and `ingest`
//! (products read, their images loaded, analysed and embedded, then stored).

mod adder;
pub mod allowlist;
mod features;
mod ingest;
mod maintenance;
mod model_check;
mod schema;
mod shared;
pub mod snapshot;
mod store;
mod view;

pub use adder::{in_chunks, Adder, ProductLine, CHUNK};
pub use features::FeatureStore;
pub use ingest::{parse_product, BackgroundIngested, Ingested, ProductRecord};
pub use store::{ImageNotes, ListedProduct, ModelStamp, NewProduct, Stats, Store};
pub use view::{CatalogView, ProductInfo};
