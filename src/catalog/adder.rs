//! Adding to a catalog the way `catalog add` does, for every caller (the command line, the
//! server, the benchmark, tests, library users): chunks of products or background photos are
//! fetched, decoded and analysed on another thread while the previous chunk is embedded and
//! stored, and the search index is brought up to date once at the end (`Adder::finish`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;

use super::ingest::{self, BackgroundIngested, Ingested, ProductRecord};
use super::store::Store;
use crate::config::Config;
use crate::model::{Embed, Manifest};
use crate::util::pipeline::overlapped;
use crate::vision::decode;
use crate::vision::source::Fetcher;

/// Products or background photos a chunk holds at most.
pub const CHUNK: usize = 64;

/// A record of a catalog file: a product, or (line, why it could not be read).
pub type ProductLine = Result<ProductRecord, (usize, String)>;

/// Adds products and background photos to one catalog with one model.
pub struct Adder<'a> {
    store: &'a mut Store,
    embedder: &'a mut dyn Embed,
    fetcher: &'a Fetcher,
    config: &'a Config,
    manifest: Manifest,
    limits: decode::Limits,
    /// Content hashes of the product images added so far (`finish` updates the index for them).
    stored: BTreeSet<String>,
}

impl<'a> Adder<'a> {
    /// An adder to `store` with `embedder`'s model (refused when the catalog was built with
    /// another model), reading photos with `fetcher` within `config`'s limits.
    pub fn new(
        store: &'a mut Store,
        embedder: &'a mut dyn Embed,
        fetcher: &'a Fetcher,
        config: &'a Config,
    ) -> Result<Adder<'a>> {
        let manifest = embedder.manifest().clone();
        store.check_model(&manifest)?;
        let limits = decode::Limits::from(&config.limits);
        Ok(Adder { store, embedder, fetcher, config, manifest, limits, stored: BTreeSet::new() })
    }

    /// Adds the products of `chunks` (each at most `CHUNK` records, unreadable ones included so
    /// they are reported in order); `each` sees what every chunk did, in input order, and may
    /// stop the work by returning an error. Products are stored chunk by chunk.
    pub fn add_products(
        &mut self,
        chunks: impl Iterator<Item = Vec<ProductLine>> + Send,
        mut each: impl FnMut(&Ingested) -> Result<()>,
    ) -> Result<()> {
        let (fetcher, limits, manifest) = (self.fetcher, &self.limits, &self.manifest);
        let features = self.config.verify.params();
        let load = |chunk: Vec<ProductLine>| {
            let records = chunk.len();
            let mut unreadable = Vec::new();
            let good: Vec<ProductRecord> =
                chunk.into_iter().filter_map(|r| r.map_err(|e| unreadable.push(e)).ok()).collect();
            let loaded = ingest::load_products(fetcher, limits, manifest, features, good);
            (records, unreadable, loaded)
        };
        let storage = self.config.index.storage;
        let (store, embedder, stored) = (&mut *self.store, &mut *self.embedder, &mut self.stored);
        overlapped(chunks, load, |(records, unreadable, loaded)| -> Result<()> {
            let mut done = ingest::ingest(store, embedder, manifest, storage, &loaded)?;
            done.records = records;
            done.unreadable = unreadable;
            stored.extend(done.images.iter().cloned());
            each(&done)
        })
    }

    /// Adds the background photos in `files`, `CHUNK` at a time; `each` sees what every chunk
    /// did, in order, and may stop the work by returning an error.
    pub fn add_background(
        &mut self,
        files: &[PathBuf],
        mut each: impl FnMut(&BackgroundIngested) -> Result<()>,
    ) -> Result<()> {
        let (fetcher, limits, manifest) = (self.fetcher, &self.limits, &self.manifest);
        let load = |chunk: &[PathBuf]| ingest::load_background(fetcher, limits, manifest, chunk);
        let storage = self.config.index.storage;
        let (store, embedder) = (&mut *self.store, &mut *self.embedder);
        overlapped(files.chunks(CHUNK), load, |photos| -> Result<()> {
            let done = ingest::ingest_background(store, embedder, manifest, storage, &photos)?;
            each(&done)
        })
    }

    /// Brings the search index and the shared points up to date for the product images added
    /// (`Store::finish_adding`); without it the products are stored but not yet searched well.
    pub fn finish(self) -> Result<()> {
        let images: Vec<String> = self.stored.into_iter().collect();
        self.store.finish_adding(self.config, self.manifest.dim, &images)
    }
}

/// `products` in chunks of at most `CHUNK`, for `Adder::add_products`.
pub fn in_chunks(products: Vec<ProductRecord>) -> impl Iterator<Item = Vec<ProductLine>> + Send {
    let mut rest = products.into_iter().map(Ok);
    std::iter::from_fn(move || {
        let chunk: Vec<ProductLine> = rest.by_ref().take(CHUNK).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}
