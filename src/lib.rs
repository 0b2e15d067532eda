//! knockoff: finds marketplace listings whose photos copy protected products, sold below the
//! genuine price by sellers the brand has not authorised.
//!
//! Layers, each readable on its own: `source` and `decode` bring images in; `model` and `embed`
//! turn them and their regions (`inset` finds a photo shown inside a photo, `tilt` one turned
//! inside its frame) into embeddings;
//! `vectors`, `graph` and `index` store and search them; `catalog` keeps brands' products in a
//! data directory; `scan` and `policy` decide verdicts, with `verify` checking candidates on local
//! features and `colour` telling look-alike siblings apart; `report` writes them; `cli` is the command line; `bench`, with `attack` and
//! `metrics`, measures accuracy on benchmark photos.

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
