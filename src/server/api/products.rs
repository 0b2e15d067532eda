//! `/v1/products`: a brand's reference catalog. Photos come as http(s) URLs in `images` or as
//! multipart uploads; the product is embedded and searchable when the answer arrives.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{save_upload, url_only};
use crate::catalog::{self, ListedProduct, ProductRecord};
use crate::input::records::{self, RawRecord};
use crate::server::error::{multipart_error, ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::server::keys::Caller;
use crate::server::AppState;

/// A product as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Product {
    /// Brand name.
    pub brand: String,
    /// The brand's product id.
    pub product_id: String,
    /// Title.
    pub title: String,
    /// Reference price.
    pub price: f64,
    /// Currency (ISO 4217).
    pub currency: String,
    /// Number of reference photos.
    pub images: usize,
    /// Sellers allowed to sell it.
    pub authorized_sellers: Vec<String>,
    /// Hidden from search (deleted) until the catalog is compacted.
    pub removed: bool,
}

impl From<ListedProduct> for Product {
    fn from(p: ListedProduct) -> Product {
        Product {
            brand: p.brand,
            product_id: p.product_id,
            title: p.title,
            price: p.price,
            currency: p.currency,
            images: p.images,
            authorized_sellers: p.authorized_sellers,
            removed: p.removed,
        }
    }
}

/// A product to add or update (JSON body, or the `product` part of a multipart body whose
/// `photo` parts are its photos).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProductInput {
    /// Brand name (a brand key: its own).
    brand: String,
    /// The brand's product id.
    product_id: String,
    /// Title.
    title: String,
    /// Reference price (non-negative).
    price: f64,
    /// 3-letter currency code.
    currency: String,
    /// Photo URLs (http or https); paths are refused. May be empty when photos are uploaded.
    #[serde(default)]
    images: Vec<String>,
    /// Sellers allowed to sell the brand.
    #[serde(default)]
    authorized_sellers: Vec<String>,
    /// Category.
    category: Option<String>,
}

/// Products, one page.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProductList {
    /// The products.
    products: Vec<Product>,
}

/// The result of an upload.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Upload {
    /// The product as stored.
    pub product: Product,
    /// Photos embedded now.
    pub embedded: usize,
    /// Photos already stored (same bytes).
    pub reused: usize,
    /// Photos that could not be used, with why (the others were).
    pub image_errors: Vec<String>,
}

/// Filters of the product list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this brand (a brand key sees only its own).
    brand: Option<String>,
    /// Include deleted products.
    #[serde(default)]
    removed: bool,
}

/// The brand a listing may cover: the caller's own when it is limited to one.
fn brand_scope(caller: &Caller, asked: Option<String>) -> Result<Option<String>, ApiError> {
    match (&caller.brand, asked) {
        (Some(own), Some(asked)) if *own != asked => Err(ApiError::forbidden_brand(&asked)),
        (Some(own), _) => Ok(Some(own.clone())),
        (None, asked) => Ok(asked),
    }
}

/// Lists products.
#[utoipa::path(get, path = "/v1/products", tag = "products", params(ListQuery), security(("bearer" = [])),
    description = "Roles: brand (its own brand), analyst, admin.",
    responses((status = 200, body = ProductList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProductList>, ApiError> {
    let brand = brand_scope(&caller, q.brand)?;
    let products = state.with_catalog(move |s| s.list(brand.as_deref(), q.removed)).await?;
    Ok(Json(ProductList { products: products.into_iter().map(Product::from).collect() }))
}

async fn find(
    state: &Arc<AppState>,
    brand: &str,
    product_id: &str,
) -> Result<Option<ListedProduct>, ApiError> {
    let (b, id) = (brand.to_string(), product_id.to_string());
    let all = state.with_catalog(move |s| s.list(Some(&b), true)).await?;
    Ok(all.into_iter().find(|p| p.product_id == id))
}

/// One product.
#[utoipa::path(get, path = "/v1/products/{brand}/{product_id}", tag = "products", security(("bearer" = [])),
    params(("brand" = String, Path, description = "Brand"), ("product_id" = String, Path, description = "Product id")),
    description = "Roles: brand (its own brand), analyst, admin.",
    responses((status = 200, body = Product), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((brand, product_id)): ApiPath<(String, String)>,
) -> Result<Json<Product>, ApiError> {
    if !caller.sees_brand(&brand) {
        return Err(ApiError::forbidden_brand(&brand));
    }
    match find(&state, &brand, &product_id).await? {
        Some(p) => Ok(Json(p.into())),
        None => Err(ApiError::not_found(format!("brand {brand:?} has no product {product_id:?}"))),
    }
}

/// Reads a product body: JSON, or multipart with a `product` JSON part and `photo` file parts.
/// Photo URLs must be http(s); uploads are kept under `DATA/uploads` and named by their paths.
async fn read_product(state: &Arc<AppState>, req: Request) -> Result<Map<String, Value>, ApiError> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (mut fields, uploads) = if multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
        let (mut fields, mut uploads) = (None, Vec::new());
        while let Some(part) = form.next_field().await.map_err(multipart_error)? {
            match part.name() {
                Some("product") => {
                    let text = part.text().await.map_err(multipart_error)?;
                    let v: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                        ApiError::bad_request("bad_json", format!("part `product`: {e}"))
                    })?;
                    fields = Some(v);
                }
                Some("photo") => uploads.push(
                    save_upload(state, part.bytes().await.map_err(multipart_error)?.to_vec())
                        .await?,
                ),
                other => {
                    return Err(ApiError::bad_request(
                        "bad_request",
                        format!("unexpected part {other:?} (expected `product` and `photo`)"),
                    ))
                }
            }
        }
        (
            fields.ok_or_else(|| {
                ApiError::bad_request("bad_request", "missing part `product` (the product as JSON)")
            })?,
            uploads,
        )
    } else {
        let ApiJson(v) = ApiJson::<Map<String, Value>>::from_request(req, &()).await?;
        (v, Vec::new())
    };
    let mut images =
        records::list(&fields, "images").map_err(|e| ApiError::bad_request("bad_request", e))?;
    for i in &images {
        url_only(i).map_err(|e| ApiError::bad_request("bad_image_ref", e))?;
    }
    images.extend(uploads.iter().map(|p| p.display().to_string()));
    fields.insert("images".into(), images.into_iter().map(Value::String).collect());
    Ok(fields)
}

/// Validates and stores a product (as a client sent its fields); answers what was stored. The one
/// way a product is written, by the API and the review console alike.
pub async fn store_product(
    state: &Arc<AppState>,
    caller: &Caller,
    fields: Map<String, Value>,
) -> Result<Upload, ApiError> {
    let raw = RawRecord { line: 0, fields: Ok(fields) };
    let record: ProductRecord =
        catalog::parse_product(&raw, &state.uploads, state.config.limits.max_images_per_record)
            .map_err(|e| ApiError::bad_request("bad_request", e))?;
    if !caller.sees_brand(&record.brand) {
        return Err(ApiError::forbidden_brand(&record.brand));
    }
    let (brand, product_id) = (record.brand.clone(), record.product_id.clone());
    let done = state.engine.upsert(record).await?;
    if let Some(why) = done.skipped {
        let msg = format!("{why}: {}", done.image_errors.join("; "));
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no_usable_image", msg));
    }
    let product = find(state, &brand, &product_id).await?.ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "product {brand}/{product_id} not found after storing it"
        ))
    })?;
    Ok(Upload {
        product: product.into(),
        embedded: done.embedded,
        reused: done.reused,
        image_errors: done.image_errors,
    })
}

/// Validates, stores and answers with the product as stored.
async fn upsert(
    state: &Arc<AppState>,
    caller: &Caller,
    fields: Map<String, Value>,
    created: StatusCode,
) -> Result<Response, ApiError> {
    let body = store_product(state, caller, fields).await?;
    let (brand, product_id) = (body.product.brand.clone(), body.product.product_id.clone());
    let mut resp = (created, Json(body)).into_response();
    if let Ok(loc) =
        header::HeaderValue::from_str(&format!("/v1/products/{}/{}", pct(&brand), pct(&product_id)))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(resp)
}

/// Percent-encodes a path segment.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Adds a product, or updates it when it exists (photos accumulate, as with `catalog add`).
#[utoipa::path(post, path = "/v1/products", tag = "products", security(("bearer" = [])),
    request_body(content = ProductInput, description = "JSON, or multipart/form-data with a `product` part (this JSON) and `photo` file parts"),
    description = "Roles: brand (its own brand), admin.",
    responses((status = 201, body = Upload), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> Result<Response, ApiError> {
    let fields = read_product(&state, req).await?;
    upsert(&state, &caller, fields, StatusCode::CREATED).await
}

/// Sets a product's fields (photos given are added to those stored).
#[utoipa::path(put, path = "/v1/products/{brand}/{product_id}", tag = "products", security(("bearer" = [])),
    params(("brand" = String, Path, description = "Brand"), ("product_id" = String, Path, description = "Product id")),
    request_body(content = ProductInput, description = "As for POST; `brand` and `product_id` may be left out"),
    description = "Roles: brand (its own brand), admin.",
    responses((status = 200, body = Upload), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((brand, product_id)): ApiPath<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    if !caller.sees_brand(&brand) {
        return Err(ApiError::forbidden_brand(&brand));
    }
    let mut fields = read_product(&state, req).await?;
    for (key, value) in [("brand", &brand), ("product_id", &product_id)] {
        match records::opt_text(&fields, key) {
            Ok(Some(v)) if v != *value => {
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!("field `{key}` is {v:?} but the URL names {value:?}"),
                ))
            }
            _ => {
                fields.insert(key.into(), Value::String(value.clone()));
            }
        }
    }
    upsert(&state, &caller, fields, StatusCode::OK).await
}

/// Removes a product from search at once.
#[utoipa::path(delete, path = "/v1/products/{brand}/{product_id}", tag = "products", security(("bearer" = [])),
    params(("brand" = String, Path, description = "Brand"), ("product_id" = String, Path, description = "Product id")),
    description = "Roles: brand (its own brand), admin.",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath((brand, product_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if !caller.sees_brand(&brand) {
        return Err(ApiError::forbidden_brand(&brand));
    }
    match find(&state, &brand, &product_id).await? {
        Some(p) if !p.removed => {}
        _ => {
            return Err(ApiError::not_found(format!(
                "brand {brand:?} has no live product {product_id:?}"
            )))
        }
    }
    state.engine.remove(brand, product_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
