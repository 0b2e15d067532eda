//! `knockoff serve`: the HTTP API over the same catalog, scan and policy code as the command line.
//!
//! One process: an axum router on a tokio runtime answers requests; `engine` runs the one model
//! session on its own thread behind a bounded queue; `db` keeps keys, verdicts and decisions in
//! `DATA/server.sqlite`; `decisions` takes every decision (API and console alike); `jobs` stores
//! large batches and checks them in the background; `auth` checks every `/v1` request's key and
//! role as a layer; `api` holds the small handlers; `openapi` the generated API description;
//! `console` the review console's HTML pages. Nothing below the server imports it.

pub mod api;
pub mod auth;
pub mod cli;
pub mod console;
pub mod db;
pub mod decisions;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod keys;
pub mod ledger;
pub mod openapi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{get, post};
use axum::Router;
use rusqlite::Connection;

use crate::catalog::Store;
use crate::config::Config;

use self::error::ApiError;

/// Largest number of listings one `POST /v1/scan` may carry.
pub const MAX_SCAN_LISTINGS: usize = 1000;

/// Shared by all requests.
pub struct AppState {
    /// The server database (keys, verdicts, decisions).
    db: Mutex<Connection>,
    /// The catalog, read-only, for product listings.
    catalog: Mutex<Store>,
    /// The model's worker.
    engine: engine::Engine,
    /// The data directory.
    data: PathBuf,
    /// Where uploaded photos are kept (`DATA/uploads`).
    uploads: PathBuf,
    /// The configuration.
    config: Config,
    /// Wakes the job runner when a job is added.
    jobs_added: tokio::sync::Notify,
    /// Turns true when the server shuts down (job result streams end).
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// Runs `f` on the server database on a blocking thread.
    pub async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn =
                state.db.lock().map_err(|_| anyhow::anyhow!("server database lock poisoned"))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("database task failed: {e}")))?
        .map_err(ApiError::internal)
    }

    /// Runs `f` on the catalog (read-only) on a blocking thread.
    pub async fn with_catalog<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let store =
                state.catalog.lock().map_err(|_| anyhow::anyhow!("catalog lock poisoned"))?;
            f(&store)
        })
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("catalog task failed: {e}")))?
        .map_err(ApiError::internal)
    }
}

/// The API's routes: `/v1` behind the key layer, `/openapi.json` open.
pub fn router(state: Arc<AppState>) -> Router {
    let json_limit = state.config.server.max_body_bytes;
    let upload_limit = state.config.server.max_upload_bytes;
    let uploads = DefaultBodyLimit::max(upload_limit);
    let v1 = Router::new()
        .route("/v1/products", get(api::products::list).post(api::products::create.layer(uploads)))
        .route(
            "/v1/products/{brand}/{product_id}",
            get(api::products::show)
                .put(api::products::replace.layer(uploads))
                .delete(api::products::delete),
        )
        .route("/v1/scan", post(api::scan::scan))
        .route("/v1/query", post(api::scan::query.layer(uploads)))
        .route("/v1/verdicts", get(api::verdicts::list))
        .route("/v1/verdicts/{id}", get(api::verdicts::show))
        .route("/v1/verdicts/{id}/decision", post(api::verdicts::decide))
        .route("/v1/decisions", get(api::verdicts::decisions))
        .route("/v1/jobs", post(api::jobs::create.layer(uploads)))
        .route("/v1/jobs/{id}", get(api::jobs::show))
        .route("/v1/jobs/{id}/results", get(api::jobs::results))
        .route("/v1/networks", get(api::networks::list))
        .route("/v1/networks/{id}", get(api::networks::show))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate));
    Router::new()
        .merge(v1)
        // the review console (HTML pages, sessions instead of bearer keys): `console`
        .merge(console::router(&state))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Where and how to serve.
pub struct ServeOptions {
    /// The data directory (catalog, server database, uploads).
    pub data: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The configuration (model choice included).
    pub config: Config,
}

/// Runs the server until SIGTERM or ctrl-c; requests in flight are finished first.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let data = &opts.data;
    let (engine, worker) = engine::start(data, &opts.config)?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        db: Mutex::new(db::open(data)?),
        catalog: Mutex::new(Store::open(data, false)?),
        engine,
        data: data.clone(),
        uploads: uploads_dir(data)?,
        config: opts.config,
        jobs_added: tokio::sync::Notify::new(),
        stopping: stopping.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("cannot listen on {}", opts.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("knockoff serve: listening on http://{addr} (data {})", data.display());
        // unfinished jobs (from before a restart too) go on at once
        let runner = tokio::spawn(jobs::run(state.clone(), stopping.clone()));
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let stopped = stopping.clone();
        let until = stopping;
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(until_stopped(until))
            .await
            .context("server failed");
        // the runner finishes the chunk in hand; what is left resumes at the next start
        if !*stopped.borrow() {
            runner.abort(); // the server failed: no signal will stop the runner
        }
        let _ = runner.await;
        served
    })?;
    // the router, the runner and the state are gone: the worker's queue is closed and it ends
    // after its work
    worker.join().map_err(|_| anyhow::anyhow!("the model thread panicked"))?;
    eprintln!("knockoff serve: stopped");
    Ok(())
}

fn uploads_dir(data: &Path) -> Result<PathBuf> {
    let dir = data.join("uploads");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// Resolves when `stopping` turns true (or its sender is gone).
pub async fn until_stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopped = *stopping.borrow_and_update();
        if stopped || stopping.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves when SIGTERM or ctrl-c (SIGINT) arrives.
async fn shutdown_signal() {
    let notify = Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            n.notify_one();
        }
    });
    #[cfg(unix)]
    {
        let n = notify.clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::spawn(async move {
                    term.recv().await;
                    n.notify_one();
                });
            }
            Err(e) => tracing::warn!("cannot listen for SIGTERM: {e}"),
        }
    }
    notify.notified().await;
    eprintln!("knockoff serve: shutting down (finishing requests in flight)");
}
