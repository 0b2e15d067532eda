//! `POST /v1/scan` (up to `MAX_SCAN_LISTINGS` listings as JSON) and `POST /v1/query` (one
//! uploaded photo): verdicts from the same scanner as `knockoff scan`, stored for later reads and
//! decisions.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{hide_paths, save_upload, url_only};
use crate::input::records::{self, RawRecord};
use crate::scan::{self, Listing, Parsed, Report, Seller};
use crate::server::error::{multipart_error, ApiError, ApiJson, ErrorBody};
use crate::server::keys::{Caller, Role};
use crate::server::{ledger, AppState, MAX_SCAN_LISTINGS};
use crate::vision::source::ImageRef;

/// A listing to check (fields as in `knockoff scan` input; photos only as http(s) URLs).
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ListingInput {
    /// The marketplace's listing id.
    listing_id: String,
    /// Seller id.
    seller_id: String,
    /// Photo URLs (http or https).
    images: Vec<String>,
    /// Price (needs `currency`).
    price: Option<f64>,
    /// Currency of the price.
    currency: Option<String>,
    /// Title.
    title: Option<String>,
    /// Seller's display name.
    seller_name: Option<String>,
    /// Seller's region.
    region: Option<String>,
    /// Where goods ship from.
    ship_from: Option<String>,
    /// Seller's published contact.
    contact: Option<String>,
    /// Items the seller sold.
    sold_count: Option<u64>,
}

/// A batch of listings.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ScanRequest {
    /// Up to 1000 listings.
    #[schema(value_type = Vec<ListingInput>)]
    listings: Vec<Value>,
}

/// Verdicts, one per listing, in order.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ScanResponse {
    /// Verdict objects as `knockoff scan` writes them, with `id`, `created_at` and `decision`.
    #[schema(value_type = Vec<Object>)]
    verdicts: Vec<Value>,
}

/// Parses one listing of a request (line = its 1-based position); photo paths are refused.
pub fn parse(line: usize, v: Value, max_images: usize) -> Parsed {
    let Value::Object(fields) = v else {
        return Err((line, None, "listing is not a JSON object".into()));
    };
    let id = records::opt_text(&fields, "listing_id").ok().flatten();
    let images = records::list(&fields, "images").map_err(|e| (line, id.clone(), e))?;
    for i in &images {
        url_only(i).map_err(|e| (line, id.clone(), e))?;
    }
    let raw = RawRecord { line, fields: Ok(fields) };
    scan::parse_listing(&raw, std::path::Path::new("/nonexistent"), max_images)
        .map_err(|(id, e)| (line, id, e))
}

/// Stores reports submitted by `caller` and answers them with their ids.
async fn store(
    state: &Arc<AppState>,
    caller: &Caller,
    reports: Vec<Report>,
) -> Result<Vec<Value>, ApiError> {
    let (mut values, photos) = rows(state, &reports)?;
    let key = caller.key_id.clone();
    let rows = values.clone();
    let ids = state.with_db(move |c| ledger::insert_verdicts(c, &key, &rows, &photos)).await?;
    let now = crate::server::db::rfc3339(crate::server::db::now());
    for (v, id) in values.iter_mut().zip(ids) {
        if let Value::Object(m) = v {
            m.insert("id".into(), id.into());
            m.insert("created_at".into(), now.clone().into());
            m.insert("decision".into(), Value::Null);
        }
    }
    Ok(values)
}

/// Reports as stored and answered (server paths hidden), with their listing photos.
pub fn rows(
    state: &AppState,
    reports: &[Report],
) -> Result<(Vec<Value>, Vec<Vec<ledger::VerdictPhoto>>), ApiError> {
    let mut values = Vec::with_capacity(reports.len());
    let mut photos = Vec::with_capacity(reports.len());
    for r in reports {
        let mut v = serde_json::to_value(r).map_err(|e| ApiError::internal(e.into()))?;
        hide_paths(&mut v, &state.uploads);
        values.push(v);
        photos.push(verdict_photos(state, r));
    }
    Ok((values, photos))
}

/// A report's listing photos as its verdict names them, with their perceptual hashes (kept for
/// allow-lists).
fn verdict_photos(state: &AppState, r: &Report) -> Vec<ledger::VerdictPhoto> {
    r.photos
        .iter()
        .map(|p| {
            let mut image = Value::String(p.image.clone());
            hide_paths(&mut image, &state.uploads);
            ledger::VerdictPhoto {
                image: image.as_str().unwrap_or_default().to_string(),
                phash: p.phash,
            }
        })
        .collect()
}

/// Checks listings and answers their verdicts (a listing that cannot be checked gets an `error`
/// verdict naming why; the others are checked).
#[utoipa::path(post, path = "/v1/scan", tag = "scan", security(("bearer" = [])), request_body = ScanRequest,
    description = "Roles: marketplace, admin. Up to 1000 listings; photos as http(s) URLs.",
    responses((status = 200, body = ScanResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn scan(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ScanRequest>,
) -> Result<Json<ScanResponse>, ApiError> {
    let n = req.listings.len();
    if n == 0 {
        return Err(ApiError::bad_request("bad_request", "no listings"));
    }
    if n > MAX_SCAN_LISTINGS {
        let msg = format!("{n} listings, over the limit of {MAX_SCAN_LISTINGS} per request");
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_listings", msg));
    }
    let max_images = state.config.limits.max_images_per_record;
    let parsed: Vec<Parsed> =
        req.listings.into_iter().enumerate().map(|(i, v)| parse(i + 1, v, max_images)).collect();
    let reports = state.engine.scan(parsed).await?;
    Ok(Json(ScanResponse { verdicts: store(&state, &caller, reports).await? }))
}

/// A single photo to check (multipart/form-data).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct QueryForm {
    /// The photo (or give `image_url`).
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
    /// An http(s) URL of the photo, instead of uploading it.
    image_url: Option<String>,
    /// The listing's price (needs `currency`).
    price: Option<f64>,
    /// Currency of the price.
    currency: Option<String>,
    /// The seller's id (default `unknown-seller`).
    seller: Option<String>,
    /// A listing id to keep with the verdict (default `query`).
    listing_id: Option<String>,
}

/// Reads the query form into a listing.
async fn read_query(state: &Arc<AppState>, mut form: Multipart) -> Result<Listing, ApiError> {
    let bad = |m: String| ApiError::bad_request("bad_request", m);
    let mut text: Map<String, Value> = Map::new();
    let mut image = None;
    while let Some(part) = form.next_field().await.map_err(multipart_error)? {
        let name = part.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" => {
                image = Some(ImageRef::Path(
                    save_upload(state, part.bytes().await.map_err(multipart_error)?.to_vec())
                        .await?,
                ))
            }
            "image_url" | "price" | "currency" | "seller" | "listing_id" | "title" => {
                text.insert(name, Value::String(part.text().await.map_err(multipart_error)?));
            }
            other => return Err(bad(format!("unexpected field {other:?}"))),
        }
    }
    if let Some(url) = records::opt_text(&text, "image_url").map_err(bad)? {
        if image.is_some() {
            return Err(bad("give `image` or `image_url`, not both".into()));
        }
        url_only(&url).map_err(|e| ApiError::bad_request("bad_image_ref", e))?;
        image = Some(ImageRef::Url(url));
    }
    let image =
        image.ok_or_else(|| bad("missing field `image` (the photo) or `image_url`".into()))?;
    let price = match records::opt_text(&text, "price").map_err(bad)? {
        Some(_) => Some(records::price(&text, "price").map_err(bad)?),
        None => None,
    };
    let currency =
        records::opt_text(&text, "currency").map_err(bad)?.map(|c| c.to_ascii_uppercase());
    if price.is_some() && currency.is_none() {
        return Err(bad("field `currency` is required with `price`".into()));
    }
    Ok(Listing {
        line: 1,
        listing_id: records::opt_text(&text, "listing_id")
            .map_err(bad)?
            .unwrap_or_else(|| "query".into()),
        title: records::opt_text(&text, "title").map_err(bad)?,
        price,
        currency,
        images: vec![image],
        seller: Seller {
            seller_id: records::opt_text(&text, "seller")
                .map_err(bad)?
                .unwrap_or_else(|| "unknown-seller".into()),
            ..Seller::default()
        },
        warnings: Vec::new(),
    })
}

/// Checks one photo and answers its verdict.
#[utoipa::path(post, path = "/v1/query", tag = "scan", security(("bearer" = [])),
    request_body(content = QueryForm, content_type = "multipart/form-data"),
    description = "Roles: marketplace, analyst (not limited to a brand), admin.",
    responses((status = 200, body = Object, description = "The verdict, with `id`"), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn query(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    if caller.role == Role::Analyst && caller.brand.is_some() {
        let msg =
            "a key limited to one brand cannot submit photos (verdicts name all brands' products)";
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg));
    }
    let form = form.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let listing = read_query(&state, form).await?;
    let reports = state.engine.scan(vec![Ok(listing)]).await?;
    let mut values = store(&state, &caller, reports).await?;
    values
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no verdict for the query")))
}
