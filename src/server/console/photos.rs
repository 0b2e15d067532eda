//! Photos for the console, only from what the server itself stored: uploads (`DATA/uploads`, by
//! content hash) and the catalog's own reference photos. A client names a verdict or a product
//! and a photo number, never a path; a photo given only as a URL is not fetched again or proxied.
//! Every photo is decoded and re-encoded as a JPEG within the configured image limits, so what
//! the browser gets is always a plain image.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::Signed;
use super::{permit, PageError};
use crate::server::error::ApiError;
use crate::server::ledger;
use crate::server::AppState;

/// Long side of a photo on the verdict page, and of a catalog thumbnail.
const LARGE: u32 = 720;
const SMALL: u32 = 200;

/// `?size=small` for thumbnails.
#[derive(Deserialize, Default)]
pub struct Size {
    size: Option<String>,
}

impl Size {
    fn side(&self) -> u32 {
        match self.size.as_deref() {
            Some("small") => SMALL,
            _ => LARGE,
        }
    }
}

fn gone(what: &str) -> PageError {
    PageError::new(StatusCode::NOT_FOUND, format!("{what}: no photo stored on the server"))
}

/// The upload a verdict names (`upload:SHA256`), as a file in the upload directory.
fn upload_path(state: &AppState, reference: &str) -> Option<PathBuf> {
    let hash = reference.strip_prefix("upload:")?;
    let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| state.uploads.join(hash))
}

/// A verdict's listing photo (`which` = `listing`) or the reference photo it matched
/// (`reference`).
pub async fn verdict_photo(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((id, which)): Path<(i64, String)>,
    Query(size): Query<Size>,
) -> Result<Response, PageError> {
    permit(&signed.caller, Method::GET, "/v1/verdicts/{id}")?;
    let caller = signed.caller.clone();
    let stored = state
        .with_db(move |c| ledger::get(c, &caller, id))
        .await?
        .ok_or_else(|| PageError::from(ApiError::not_found(format!("no verdict {id}"))))?;
    let m = &stored.body["matches"][0];
    let named = m[if which == "reference" { "image" } else { "listing_image" }]
        .as_str()
        .unwrap_or("")
        .to_string();
    let path = match which.as_str() {
        "listing" => upload_path(&state, &crate::scan::PhotoRef::parse(&named).photo),
        "reference" => {
            let (brand, product) = (
                m["brand"].as_str().unwrap_or("").to_string(),
                m["product_id"].as_str().unwrap_or("").to_string(),
            );
            catalog_file(&state, brand, product, Some(named), 0).await?
        }
        _ => None,
    };
    let path = path.ok_or_else(|| gone(&format!("verdict {id}, {which}")))?;
    jpeg(&state, path, size.side()).await
}

/// Photo `n` (0-based) of a catalog product.
pub async fn product_photo(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path((brand, product_id, n)): Path<(String, String, usize)>,
    Query(size): Query<Size>,
) -> Result<Response, PageError> {
    permit(&signed.caller, Method::GET, "/v1/products/{brand}/{product_id}")?;
    if !signed.caller.sees_brand(&brand) {
        return Err(ApiError::forbidden_brand(&brand).into());
    }
    let what = format!("{brand}/{product_id} photo {n}");
    let path =
        catalog_file(&state, brand, product_id, None, n).await?.ok_or_else(|| gone(&what))?;
    jpeg(&state, path, size.side()).await
}

/// The file of a product's reference photo: the one whose source is `named` (as a verdict shows
/// it), else the `n`th; `None` when the catalog holds it only as a URL.
async fn catalog_file(
    state: &Arc<AppState>,
    brand: String,
    product_id: String,
    named: Option<String>,
    n: usize,
) -> Result<Option<PathBuf>, PageError> {
    let sources = state.with_catalog(move |s| s.image_sources(&brand, &product_id)).await?;
    let shown = |source: &str| -> String {
        // a verdict shows uploads as `upload:HASH` (api::hide_paths)
        let prefix = format!("{}/", state.uploads.display());
        match source.strip_prefix(&prefix) {
            Some(hash) => format!("upload:{hash}"),
            None => source.to_string(),
        }
    };
    let source = match &named {
        Some(named) => sources.iter().find(|s| shown(s) == *named),
        None => sources.get(n),
    };
    Ok(source
        .filter(|s| !s.starts_with("http://") && !s.starts_with("https://"))
        .map(PathBuf::from))
}

/// The photo at `path` as a JPEG whose long side is at most `side`.
async fn jpeg(state: &Arc<AppState>, path: PathBuf, side: u32) -> Result<Response, PageError> {
    let limits = crate::vision::decode::Limits::from(&state.config.limits);
    let bytes = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        use anyhow::Context;
        let raw =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let img = crate::vision::decode::decode(&raw, &limits, side)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let small = crate::vision::decode::fit_long_side(&img, side)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let buf = image::RgbImage::from_raw(small.width, small.height, small.data.clone())
            .context("internal error: image buffer size")?;
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&buf)?;
        Ok(out)
    })
    .await
    .map_err(|e| PageError::internal(anyhow::anyhow!("photo task failed: {e}")))?
    .map_err(|e| {
        tracing::warn!("console photo: {e:#}");
        gone("the photo cannot be read")
    })?;
    Ok((
        [(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=300")],
        bytes,
    )
        .into_response())
}
