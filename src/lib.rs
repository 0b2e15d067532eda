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

pub mod bench;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod index;
pub mod input;
pub mod model;
pub mod network;
pub mod policy;
pub mod scan;
pub mod server;
pub mod util;
pub mod vision;
