//! The model's worker: one thread owns the catalog store (opened for writing), the one model
//! session and the scanner, and does all work that needs them (scans, queries, product changes)
//! one request at a time, in arrival order. Requests reach it through a bounded queue: when
//! `[server] queue` requests already wait, new ones are refused at once with 503 `busy`, so a
//! flood cannot pile up work or memory.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::catalog::allowlist;
use crate::catalog::{self, ProductRecord, Store};
use crate::config::Config;
use crate::model::embed::Embedder;
use crate::model::{self, ModelChoice};
use crate::scan::{Parsed, Report, Scanner};
use crate::vision::netguard::Guard;
use crate::vision::source::Fetcher;

use super::error::ApiError;

/// What a product change did.
#[derive(Debug)]
pub struct Upserted {
    /// Images embedded now.
    pub embedded: usize,
    /// Images already stored (same bytes).
    pub reused: usize,
    /// Images that could not be used, with why.
    pub image_errors: Vec<String>,
    /// Why the product was not stored (no usable image), if it was not.
    pub skipped: Option<String>,
}

enum Work {
    Scan { listings: Vec<Parsed>, reply: oneshot::Sender<Result<Vec<Report>, ApiError>> },
    Upsert { product: ProductRecord, reply: oneshot::Sender<Result<Upserted, ApiError>> },
    Remove { brand: String, product_id: String, reply: oneshot::Sender<Result<(), ApiError>> },
}

/// The handle requests use to reach the worker.
pub struct Engine {
    tx: mpsc::Sender<Work>,
    /// The allow-list the scanner respects and decisions feed.
    allow: allowlist::Shared,
}

/// The worker's state.
struct Worker {
    store: Store,
    scanner: Scanner,
    fetcher: Fetcher,
    config: Config,
    live_products: usize,
}

/// Opens the catalog for writing, loads the model and starts the worker thread.
pub fn start(data: &Path, config: &Config) -> Result<(Engine, JoinHandle<()>)> {
    let store = Store::open(data, true)?;
    let name = match &config.model.name {
        Some(n) => n.clone(),
        None => store.model()?.unwrap_or_else(|| crate::model::DEFAULT_MODEL.to_string()),
    };
    let loc = model::locate(&ModelChoice {
        name,
        dir: config.model.dir.clone(),
        ort_lib: config.model.ort_lib.clone(),
    })?;
    store.check_model(&loc.manifest)?;
    let embedder = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads)?;
    let view = store.view(config)?;
    let live_products = view.products.len();
    let guard = Guard::new(&config.server.allow_hosts);
    let mut scanner = Scanner::with_fetcher(
        view,
        embedder,
        config.clone(),
        Fetcher::guarded(&config.limits, guard.clone())?,
    )?;
    let allow = allowlist::Shared::open(data)?;
    scanner.set_allowlist(allow.clone());
    let fetcher = Fetcher::guarded(&config.limits, guard)?;
    let mut worker = Worker { store, scanner, fetcher, config: config.clone(), live_products };
    let (tx, mut rx) = mpsc::channel::<Work>(config.server.queue.max(1));
    let handle = std::thread::Builder::new()
        .name("knockoff-model".into())
        .spawn(move || {
            let mut next = None;
            while let Some(work) = next.take().or_else(|| rx.blocking_recv()) {
                match work {
                    Work::Scan { listings, reply } => {
                        // scans waiting together are checked as one batch (decoding and the
                        // model run on many photos at once); the first other work comes next
                        let mut batch = vec![(listings, reply)];
                        next = gather(&mut rx, &mut batch);
                        worker.scan_batch(batch);
                    }
                    other => worker.handle(other),
                }
            }
        })
        .context("cannot start the model thread")?;
    Ok((Engine { tx, allow }, handle))
}

impl Engine {
    /// The allow-list the scanner respects (decisions add to it).
    pub fn allowlist(&self) -> &allowlist::Shared {
        &self.allow
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> Work,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the scan queue is full; retry in a moment",
                ))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the server is shutting down",
                ))
            }
        }
        answer.await.map_err(|_| {
            ApiError::internal(anyhow::anyhow!("the model thread dropped a request"))
        })?
    }

    /// Checks listings like `scan`, but waits for a place in the queue instead of answering
    /// `busy` (for jobs, which have no client waiting on them).
    pub async fn scan_waiting(&self, listings: Vec<Parsed>) -> Result<Vec<Report>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Work::Scan { listings, reply }).await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the server is shutting down")
        })?;
        answer.await.map_err(|_| {
            ApiError::internal(anyhow::anyhow!("the model thread dropped a request"))
        })?
    }

    /// Checks listings; one report each, in order.
    pub async fn scan(&self, listings: Vec<Parsed>) -> Result<Vec<Report>, ApiError> {
        self.submit(|reply| Work::Scan { listings, reply }).await
    }

    /// Adds or updates a product (its photos fetched, decoded and embedded).
    pub async fn upsert(&self, product: ProductRecord) -> Result<Upserted, ApiError> {
        self.submit(|reply| Work::Upsert { product, reply }).await
    }

    /// Hides a product from search.
    pub async fn remove(&self, brand: String, product_id: String) -> Result<(), ApiError> {
        self.submit(|reply| Work::Remove { brand, product_id, reply }).await
    }
}

/// Listings checked in one batch at most (scans waiting in the queue are joined up to this).
const BATCH_LISTINGS: usize = 32;

/// A scan request waiting for its reports.
type ScanRequest = (Vec<Parsed>, oneshot::Sender<Result<Vec<Report>, ApiError>>);

/// Adds the scans already waiting in the queue to `batch`, up to `BATCH_LISTINGS` listings;
/// returns the first other work taken from the queue, if any (it is done next).
fn gather(rx: &mut mpsc::Receiver<Work>, batch: &mut Vec<ScanRequest>) -> Option<Work> {
    let mut n: usize = batch.iter().map(|(l, _)| l.len()).sum();
    while n < BATCH_LISTINGS {
        match rx.try_recv() {
            Ok(Work::Scan { listings, reply }) => {
                n += listings.len();
                batch.push((listings, reply));
            }
            Ok(other) => return Some(other),
            Err(_) => return None,
        }
    }
    None
}

/// Runs `f`, turning a panic into an internal error so the worker keeps serving.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(ApiError::internal(anyhow::anyhow!("{what} panicked"))))
}

impl Worker {
    fn handle(&mut self, work: Work) {
        // a client that went away leaves nobody to answer: its result is dropped
        match work {
            Work::Scan { listings, reply } => self.scan_batch(vec![(listings, reply)]),
            Work::Upsert { product, reply } => {
                let _ = reply.send(guarded("product upload", || self.upsert(product)));
            }
            Work::Remove { brand, product_id, reply } => {
                let _ = reply.send(guarded("product removal", || self.remove(&brand, &product_id)));
            }
        }
    }

    /// Checks the listings of several requests at once and answers each its own reports.
    fn scan_batch(&mut self, batch: Vec<ScanRequest>) {
        let sizes: Vec<usize> = batch.iter().map(|(l, _)| l.len()).collect();
        let (listings, replies): (Vec<Vec<Parsed>>, Vec<_>) = batch.into_iter().unzip();
        let all: Vec<Parsed> = listings.into_iter().flatten().collect();
        match guarded("scan", || self.scan(all)) {
            Ok(reports) if reports.len() == sizes.iter().sum::<usize>() => {
                let mut reports = reports.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(reports.by_ref().take(n).collect()));
                }
            }
            Ok(reports) => {
                let e = anyhow::anyhow!(
                    "{} reports for {} listings",
                    reports.len(),
                    sizes.iter().sum::<usize>()
                );
                let e = ApiError::internal(e);
                for reply in replies {
                    let _ = reply.send(Err(ApiError::new(e.status, e.code, e.message.clone())));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(ApiError::new(e.status, e.code, e.message.clone())));
                }
            }
        }
    }

    fn scan(&mut self, listings: Vec<Parsed>) -> Result<Vec<Report>, ApiError> {
        if self.live_products == 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "catalog_empty",
                "the catalog has no products yet; add some with POST /v1/products",
            ));
        }
        Ok(self.scanner.check(listings)?)
    }

    fn upsert(&mut self, product: ProductRecord) -> Result<Upserted, ApiError> {
        let mut adder = catalog::Adder::new(
            &mut self.store,
            self.scanner.embedder_mut(),
            &self.fetcher,
            &self.config,
        )?;
        let mut done = catalog::Ingested::default();
        adder.add_products(catalog::in_chunks(vec![product]), |d| {
            done = d.clone();
            Ok(())
        })?;
        let image_errors: Vec<String> = done.image_errors.iter().map(|(_, e)| e.clone()).collect();
        if let Some((_, why)) = done.skipped.first() {
            return Ok(Upserted {
                embedded: 0,
                reused: 0,
                image_errors,
                skipped: Some(why.clone()),
            });
        }
        adder.finish()?;
        self.refresh()?;
        Ok(Upserted { embedded: done.embedded, reused: done.reused, image_errors, skipped: None })
    }

    fn remove(&mut self, brand: &str, product_id: &str) -> Result<(), ApiError> {
        self.store.remove(&self.config, brand, &[product_id.to_string()])?;
        self.refresh()?;
        Ok(())
    }

    /// Reloads the catalog view the scanner searches.
    fn refresh(&mut self) -> Result<()> {
        let view = self.store.view(&self.config)?;
        self.live_products = view.products.len();
        self.scanner.set_view(view);
        Ok(())
    }
}
