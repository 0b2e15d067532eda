//! Seller networks (built by `knockoff network build` into `DATA/records.sqlite`): a list, and a
//! case page per network, the same case file `knockoff network export --format html` writes.
//!
//! Who sees a network: admins and analysts not limited to a brand see all; a key limited to a
//! brand sees the networks whose flagged and reviewed listings are all about its own brand (a
//! network that also copies other brands' products would show their listings, so it stays with
//! the unscoped reviewers).

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use super::pages::me;
use super::session::Signed;
use super::{render, PageError};
use crate::network::{Case, RecordStore};
use crate::server::keys::{Caller, Role};
use crate::server::AppState;

/// Roles that may read networks (as analysts and brands read verdicts about their products).
const ROLES: &[Role] = &[Role::Brand, Role::Analyst, Role::Admin];

fn visible(caller: &Caller, c: &Case) -> bool {
    caller.sees_all_brands()
        || (!c.brands.is_empty() && c.brands.iter().all(|b| caller.sees_brand(b)))
}

fn check_role(caller: &Caller) -> Result<(), PageError> {
    if ROLES.contains(&caller.role) {
        Ok(())
    } else {
        Err(PageError::forbidden(format!("a {} key may not read seller networks", caller.role)))
    }
}

/// The stored cases, read on a blocking thread; empty when nothing was recorded.
async fn load<T: Send + 'static>(
    state: &Arc<AppState>,
    f: impl FnOnce(&RecordStore, Vec<Case>) -> anyhow::Result<T> + Send + 'static,
) -> Result<Option<T>, PageError> {
    let data = state.uploads.parent().map(std::path::Path::to_path_buf).ok_or_else(|| {
        PageError::internal(anyhow::anyhow!("the upload directory has no parent"))
    })?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<Option<T>> {
        let Some(store) = RecordStore::open(&data, false)? else { return Ok(None) };
        let cases = store
            .cases()?
            .iter()
            .map(|text| {
                serde_json::from_str(text)
                    .context("a stored case file is unreadable; run `knockoff network build` again")
            })
            .collect::<anyhow::Result<Vec<Case>>>()?;
        f(&store, cases).map(Some)
    })
    .await
    .map_err(|e| PageError::internal(anyhow::anyhow!("network task failed: {e}")))?
    .map_err(PageError::internal)
}

/// A network in the list.
#[derive(Serialize)]
struct Summary {
    network_id: String,
    status: String,
    sellers: usize,
    listings: usize,
    brands: Vec<String>,
    turnover: String,
    rank: String,
    last_seen: Option<String>,
}

/// The networks the key may see, strongest case first.
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: Signed,
) -> Result<Response, PageError> {
    check_role(&signed.caller)?;
    let caller = signed.caller.clone();
    let rows = load(&state, move |_, mut cases| {
        cases.sort_by(|a, b| b.rank.total_cmp(&a.rank));
        Ok(cases
            .into_iter()
            .filter(|c| visible(&caller, c))
            .map(|c| Summary {
                sellers: c.sellers.len(),
                listings: c.listings.len(),
                turnover: format!("{:.2} {}", c.turnover, c.currency),
                rank: format!("{:.1}", c.rank),
                network_id: c.network_id,
                status: c.status,
                brands: c.brands,
                last_seen: c.last_seen,
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let page = render(
        "networks.html",
        minijinja::context! { me => me(&signed.caller), csrf => signed.csrf, recorded => rows.is_some(), rows => rows.unwrap_or_default() },
    )?;
    Ok(page.into_response())
}

/// One network's case file.
pub async fn case(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    check_role(&signed.caller)?;
    let caller = signed.caller.clone();
    let want = id.clone();
    let html = load(&state, move |store, cases| {
        match cases.into_iter().find(|c| c.network_id == want && visible(&caller, c)) {
            Some(c) => crate::network::export::html(&[c], store).map(Some),
            None => Ok(None),
        }
    })
    .await?
    .flatten()
    .ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, format!("no network {id}")))?;
    Ok(Html(String::from_utf8_lossy(&html).into_owned()).into_response())
}
