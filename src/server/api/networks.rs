//! Seller networks (`crate::network`, written by `knockoff network build`) as case files:
//! `GET /v1/networks` (highest rank first) and `GET /v1/networks/{id}`. A key limited to a brand
//! sees the networks whose flagged or reviewed listings touch its brand's products, with the
//! listings about other brands' products left out.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::network::{Case, RecordStore};
use crate::server::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::server::keys::Caller;
use crate::server::AppState;

/// Filters of a network listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct NetworkFilter {
    /// Only networks touching this brand's products.
    brand: Option<String>,
    /// Only networks with this status (open, enforced).
    status: Option<String>,
}

/// Case files, highest rank first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NetworkList {
    /// One case file per network (as `knockoff network export --format jsonl` writes them).
    #[schema(value_type = Vec<Object>)]
    networks: Vec<Case>,
}

/// The case as `brand` may see it: none when it does not touch the brand, else without the
/// listings and products of other brands (the turnover counts what is left).
fn for_brand(mut case: Case, brand: &str) -> Option<Case> {
    if !case.brands.iter().any(|b| b == brand) {
        return None;
    }
    case.listings.retain(|l| l.brand.as_deref().is_none_or(|b| b == brand));
    let prefix = format!("{brand}/");
    case.products.retain(|p| p.starts_with(&prefix));
    case.brands = vec![brand.to_string()];
    case.turnover = case.listings.iter().filter_map(|l| l.turnover).sum();
    Some(case)
}

/// The case as `caller` may see it.
fn visible(case: Case, caller: &Caller) -> Option<Case> {
    match &caller.brand {
        Some(b) => for_brand(case, b),
        None => Some(case),
    }
}

/// Runs `f` on the data directory's network store (none before the first `network build`).
async fn with_store<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(Option<RecordStore>) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let data = state.data.clone();
    tokio::task::spawn_blocking(move || f(RecordStore::open(&data, false)?))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("network task failed: {e}")))?
        .map_err(ApiError::internal)
}

fn parse(body: &str) -> anyhow::Result<Case> {
    serde_json::from_str(body).context("a stored case file is not readable")
}

/// Every case file, highest rank first.
async fn cases(state: &Arc<AppState>) -> Result<Vec<Case>, ApiError> {
    with_store(state, |store| match store {
        Some(s) => s.cases()?.iter().map(|b| parse(b)).collect(),
        None => Ok(Vec::new()),
    })
    .await
}

/// Lists the networks the key may see.
#[utoipa::path(get, path = "/v1/networks", tag = "networks", security(("bearer" = [])), params(NetworkFilter),
    description = "Roles: brand (networks touching its products), analyst (all, or its brand's), admin. Built by `knockoff network build`.",
    responses((status = 200, body = NetworkList), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(f): ApiQuery<NetworkFilter>,
) -> Result<Json<NetworkList>, ApiError> {
    if let (Some(own), Some(asked)) = (&caller.brand, &f.brand) {
        if own != asked {
            return Err(ApiError::forbidden_brand(asked));
        }
    }
    let networks = cases(&state)
        .await?
        .into_iter()
        .filter_map(|c| visible(c, &caller))
        .filter_map(|c| match &f.brand {
            Some(b) => for_brand(c, b),
            None => Some(c),
        })
        .filter(|c| f.status.as_ref().is_none_or(|s| *s == c.status))
        .collect();
    Ok(Json(NetworkList { networks }))
}

/// One network's case file.
#[utoipa::path(get, path = "/v1/networks/{id}", tag = "networks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Network id (N-...)")),
    description = "Roles: brand (networks touching its products; others are 404), analyst, admin.",
    responses((status = 200, body = Object, description = "The case file"), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Case>, ApiError> {
    let wanted = id.clone();
    with_store(&state, move |store| match store {
        Some(s) => s.case(&wanted)?.map(|b| parse(&b)).transpose(),
        None => Ok(None),
    })
    .await?
    .and_then(|c| visible(c, &caller))
    .map(Json)
    .ok_or_else(|| ApiError::not_found(format!("no network {id}")))
}
