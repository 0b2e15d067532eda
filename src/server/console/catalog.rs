//! A brand's catalog: products with thumbnails of their reference photos, and a photo upload per
//! product (stored and embedded by `api::products::store_product`, as `POST /v1/products` does).

use std::sync::Arc;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pages::me;
use super::session::Signed;
use super::{may, pct, permit, render, PageError};
use crate::catalog::ListedProduct;
use crate::server::api::products::store_product;
use crate::server::api::save_upload;
use crate::server::error::{multipart_error, ApiError};
use crate::server::AppState;

/// Most thumbnails shown per product.
const THUMBS: usize = 6;

/// `?brand=` (a brand key always sees its own) and the result of an upload.
#[derive(Deserialize, Default, Serialize)]
pub struct CatalogQuery {
    brand: Option<String>,
    added: Option<String>,
}

/// A product row.
#[derive(Serialize)]
struct Item {
    brand: String,
    product_id: String,
    title: String,
    price: String,
    sellers: Vec<String>,
    photos: Vec<usize>,
    more: usize,
    path: String,
}

fn item(p: ListedProduct) -> Item {
    Item {
        path: format!("{}/{}", pct(&p.brand), pct(&p.product_id)),
        photos: (0..p.images.min(THUMBS)).collect(),
        more: p.images.saturating_sub(THUMBS),
        price: format!("{:.2} {}", p.price, p.currency),
        brand: p.brand,
        product_id: p.product_id,
        title: p.title,
        sellers: p.authorized_sellers,
    }
}

/// The catalog page.
pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Query(q): Query<CatalogQuery>,
) -> Result<Response, PageError> {
    permit(&signed.caller, Method::GET, "/v1/products")?;
    let asked = q.brand.clone().filter(|b| !b.is_empty());
    let brand = match (&signed.caller.brand, asked) {
        (Some(own), Some(asked)) if *own != asked => {
            return Err(ApiError::forbidden_brand(&asked).into())
        }
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked,
    };
    let b = brand.clone();
    let products = state.with_catalog(move |s| s.list(b.as_deref(), false)).await?;
    let items: Vec<Item> = products.into_iter().map(item).collect();
    let page = render(
        "catalog.html",
        minijinja::context! {
            me => me(&signed.caller), csrf => signed.csrf, items, brand, added => q.added,
            may_upload => may(&signed.caller, Method::POST, "/v1/products"),
        },
    )?;
    Ok(page.into_response())
}

/// Reads the upload form: its CSRF token and the photo's bytes (kept in memory until the token
/// is checked; the body limit bounds them).
async fn read_form(mut form: Multipart) -> Result<(String, Vec<u8>), PageError> {
    let (mut csrf, mut photo) = (String::new(), None);
    while let Some(part) = form.next_field().await.map_err(multipart_error)? {
        match part.name() {
            Some("csrf") => csrf = part.text().await.map_err(multipart_error)?,
            Some("photo") => photo = Some(part.bytes().await.map_err(multipart_error)?.to_vec()),
            other => {
                let msg = format!("unexpected form field {other:?}");
                return Err(ApiError::bad_request("bad_request", msg).into());
            }
        }
    }
    let photo = photo.filter(|p| !p.is_empty()).ok_or_else(|| {
        PageError::from(ApiError::bad_request("bad_request", "choose a photo to upload"))
    })?;
    Ok((csrf, photo))
}

/// Adds an uploaded photo to a product.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    headers: HeaderMap,
    Path((brand, product_id)): Path<(String, String)>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PageError> {
    let form = form.map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
    let (csrf, photo) = read_form(form).await?;
    signed.check_post(&headers, &csrf)?;
    permit(&signed.caller, Method::POST, "/v1/products")?;
    if !signed.caller.sees_brand(&brand) {
        return Err(ApiError::forbidden_brand(&brand).into());
    }
    let (b, id) = (brand.clone(), product_id.clone());
    let product = state
        .with_catalog(move |s| s.list(Some(&b), false))
        .await?
        .into_iter()
        .find(|p| p.product_id == id)
        .ok_or_else(|| {
            PageError::from(ApiError::not_found(format!(
                "brand {brand:?} has no product {product_id:?}"
            )))
        })?;
    let path = save_upload(&state, photo).await?;
    let mut fields = Map::new();
    fields.insert("brand".into(), product.brand.clone().into());
    fields.insert("product_id".into(), product.product_id.clone().into());
    fields.insert("title".into(), product.title.into());
    fields.insert("price".into(), product.price.into());
    fields.insert("currency".into(), product.currency.into());
    fields.insert("authorized_sellers".into(), product.authorized_sellers.into());
    if let Some(category) = product.category {
        // the product is stored again whole: what it had is kept
        fields.insert("category".into(), category.into());
    }
    fields.insert("images".into(), Value::Array(vec![path.display().to_string().into()]));
    let done = store_product(&state, &signed.caller, fields).await?;
    let added = if done.embedded > 0 {
        format!("{}/{}: photo added", product.brand, product.product_id)
    } else {
        format!("{}/{}: this photo was already stored", product.brand, product.product_id)
    };
    let to = format!("/console/catalog?brand={}&added={}", pct(&product.brand), pct(&added));
    Ok(Redirect::to(&to).into_response())
}
