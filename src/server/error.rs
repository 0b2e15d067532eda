//! JSON errors: every failure the API reports is `{"code": "...", "message": "..."}` with a
//! stable machine-readable `code` and an HTTP status that matches it.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`unauthorized`, `forbidden`, `not_found`, `bad_request`, ...).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

/// The body of an error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code: unauthorized, forbidden, forbidden_brand, not_found, bad_request, bad_json,
    /// bad_image_ref, too_large, too_many_listings, unsupported_media_type, no_usable_image,
    /// catalog_empty, busy, internal.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 403 for data of a brand the key is not for.
    pub fn forbidden_brand(brand: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_brand",
            format!("this key may not access brand {brand:?}"),
        )
    }

    /// 500; the cause is logged, the client learns only that it happened.
    pub fn internal(e: anyhow::Error) -> ApiError {
        tracing::error!("internal error: {e:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged on the server)",
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_string(), message: self.message };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A status's error code when the framework rejects a request.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "bad_json",
    }
}

/// `axum::Json` whose rejections (bad JSON, body over the limit, wrong content type) are JSON
/// errors like all others.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => {
                // syntax and data errors alike are 400 `bad_json`; size and media type keep theirs
                let status = match rejection.status() {
                    s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(ApiError::new(status, code_for(status), rejection.body_text()))
            }
        }
    }
}

/// A multipart rejection or read error as a JSON error (too large when the body limit was hit).
pub fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "too_large" } else { "bad_request" };
    ApiError::new(status, code, format!("cannot read the multipart body: {}", e.body_text()))
}

/// `axum::extract::Query` whose rejections are JSON errors.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(ApiError::bad_request("bad_request", rejection.body_text())),
        }
    }
}

/// `axum::extract::Path` whose rejections are JSON errors.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(ApiError::bad_request("bad_request", rejection.body_text())),
        }
    }
}
