//! The review queue, the verdict page and triage: a decision posted from the verdict page (a
//! button, or `c`/`g`/`n` on the keyboard) is stored at once and the next verdict of the queue
//! shown.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::session::Signed;
use super::{may, pct, permit, render, view, PageError};
use crate::server::decisions;
use crate::server::error::ApiError;
use crate::server::keys::Caller;
use crate::server::ledger::{self, Outcome, QueueFilter};
use crate::server::AppState;

/// Most verdicts the queue page lists.
const QUEUE_PAGE: usize = 200;

/// Checks a brand filter against the key's brand, as `GET /v1/verdicts` does.
fn check_filter(caller: &Caller, f: &QueueFilter) -> Result<(), PageError> {
    match (&caller.brand, f.brand.as_deref().filter(|b| !b.is_empty())) {
        (Some(own), Some(asked)) if own != asked => Err(ApiError::forbidden_brand(asked).into()),
        _ => Ok(()),
    }
}

/// The filter as a query string (`brand=..&seller=..&all=1`), to carry from page to page.
fn query_of(f: &QueueFilter) -> String {
    let mut parts = Vec::new();
    for (name, value) in [("brand", &f.brand), ("seller", &f.seller)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{name}={}", pct(v)));
        }
    }
    if f.all {
        parts.push("all=true".into());
    }
    parts.join("&")
}

/// A queue row.
#[derive(Serialize)]
struct Row {
    id: i64,
    verdict: Value,
    risk: String,
    listing_id: Value,
    title: Value,
    brand: Value,
    product_id: Value,
    seller: Value,
    price: Option<String>,
    decision: Value,
}

fn row(s: ledger::Stored) -> Row {
    let b = s.body;
    let m = &b["matches"][0];
    Row {
        id: s.id,
        verdict: b["verdict"].clone(),
        risk: format!("{:.2}", b["risk"].as_f64().unwrap_or(0.0)),
        listing_id: b["listing_id"].clone(),
        title: b["title"].clone(),
        brand: m["brand"].clone(),
        product_id: m["product_id"].clone(),
        seller: b["seller"]["seller_id"].clone(),
        price: b["price"]["ratio"].as_f64().map(|r| format!("{:.0} %", r * 100.0)),
        decision: b["decision"]["decision"].clone(),
    }
}

/// Where a finished decision is reported (`saved` and `as` in the query).
#[derive(Deserialize, Default)]
pub struct Saved {
    saved: Option<i64>,
    #[serde(rename = "as")]
    outcome: Option<String>,
}

/// The queue: flag and review verdicts the key may see, riskiest first.
pub async fn queue(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Query(f): Query<QueueFilter>,
    Query(saved): Query<Saved>,
) -> Result<Response, PageError> {
    permit(&signed.caller, Method::GET, "/v1/verdicts")?;
    check_filter(&signed.caller, &f)?;
    let (caller, filter) = (signed.caller.clone(), f.clone());
    let rows = state.with_db(move |c| ledger::queue(c, &caller, &filter, QUEUE_PAGE)).await?;
    let rows: Vec<Row> = rows.into_iter().map(row).collect();
    let page = render(
        "queue.html",
        minijinja::context! {
            me => me(&signed.caller), csrf => signed.csrf, rows, filter => f, query => query_of(&f),
            limit => QUEUE_PAGE, saved => saved.saved, saved_as => saved.outcome,
        },
    )?;
    Ok(page.into_response())
}

/// Who is signed in, for the page header.
pub fn me(caller: &Caller) -> minijinja::Value {
    minijinja::context! {
        role => caller.role.as_str(), brand => caller.brand, key_id => caller.key_id,
        fixed_brand => caller.brand.is_some(),
    }
}

/// One verdict: photos side by side, the score in words, price, seller and network, and the
/// decision buttons.
pub async fn verdict(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(id): Path<i64>,
    Query(f): Query<QueueFilter>,
    Query(saved): Query<Saved>,
) -> Result<Response, PageError> {
    permit(&signed.caller, Method::GET, "/v1/verdicts/{id}")?;
    check_filter(&signed.caller, &f)?;
    let (caller, filter) = (signed.caller.clone(), f.clone());
    let (stored, next, prev) = state
        .with_db(move |c| {
            let stored = ledger::get(c, &caller, id)?;
            let next = ledger::neighbour(c, &caller, &filter, id, true)?;
            let prev = ledger::neighbour(c, &caller, &filter, id, false)?;
            Ok((stored, next, prev))
        })
        .await?;
    let stored =
        stored.ok_or_else(|| PageError::from(ApiError::not_found(format!("no verdict {id}"))))?;
    let v = &stored.body;
    // the photo itself, also when a region of it matched (`photo#inset`)
    let listing_image = v["matches"][0]["listing_image"].as_str().unwrap_or("");
    let listing_image = crate::scan::PhotoRef::parse(listing_image).photo;
    let listing_image = listing_image.as_str();
    let page = render(
        "verdict.html",
        minijinja::context! {
            me => me(&signed.caller), csrf => signed.csrf, id, v => minijinja::Value::from_serialize(v),
            top => minijinja::Value::from_serialize(&v["matches"][0]),
            others => others(v), risk => format!("{:.2}", v["risk"].as_f64().unwrap_or(0.0)),
            seller_query => pct(v["seller"]["seller_id"].as_str().unwrap_or("")),
            network_path => pct(v["network"]["network_id"].as_str().unwrap_or("")),
            score_parts => view::score_parts(v), price_words => view::price_words(v), region => view::region(v),
            features => view::features(v), inliers => v["matches"][0]["inliers"].as_u64(),
            listing_stored => listing_image.starts_with("upload:"),
            listing_url => (listing_image.starts_with("http://") || listing_image.starts_with("https://")).then_some(listing_image),
            next, prev, query => query_of(&f), filter => f,
            may_decide => may(&signed.caller, Method::POST, "/v1/verdicts/{id}/decision"),
            saved => saved.saved, saved_as => saved.outcome,
        },
    )?;
    Ok(page.into_response())
}

/// The next best candidates after the first, in words.
fn others(v: &Value) -> Vec<String> {
    let Some(all) = v["matches"].as_array() else { return Vec::new() };
    all.iter()
        .skip(1)
        .take(4)
        .map(|m| {
            let score = crate::scan::stored_score(m).unwrap_or(0.0);
            let (b, p) =
                (m["brand"].as_str().unwrap_or(""), m["product_id"].as_str().unwrap_or(""));
            format!("{b} / {p}: {score:.3}")
        })
        .collect()
}

/// A decision posted from the verdict page.
#[derive(Deserialize)]
pub struct DecisionForm {
    #[serde(default)]
    csrf: String,
    decision: Outcome,
    #[serde(default)]
    note: String,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    seller: Option<String>,
    #[serde(default)]
    all: bool,
}

/// Stores the decision (as the API does) and shows the next verdict of the queue.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, PageError> {
    signed.check_post(&headers, &form.csrf)?;
    permit(&signed.caller, Method::POST, "/v1/verdicts/{id}/decision")?;
    let f = QueueFilter { brand: form.brand, seller: form.seller, all: form.all };
    check_filter(&signed.caller, &f)?;
    let row = decisions::decide(&state, &signed.caller, id, form.decision, form.note).await?.row;
    tracing::info!("console: verdict {id} decided {} by key {}", row.decision, row.key_id);
    let (caller, filter) = (signed.caller.clone(), f.clone());
    let next = state.with_db(move |c| ledger::neighbour(c, &caller, &filter, id, true)).await?;
    let mut query = query_of(&f);
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str(&format!("saved={id}&as={}", row.decision));
    let to = match next {
        Some(n) => format!("/console/verdicts/{n}?{query}"),
        None => format!("/console/queue?{query}"),
    };
    Ok(Redirect::to(&to).into_response())
}
