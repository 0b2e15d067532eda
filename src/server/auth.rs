//! Authentication and role checks, as one layer in front of every `/v1` route: the bearer key is
//! verified (constant-time hash comparison, see `keys`), then the key's role is checked against
//! `POLICY`, the table of which roles may call which route. A route missing from the table is
//! refused. Handlers get the `Caller` and check brands on the data itself.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::keys::{self, Role};
use super::AppState;

use Role::{Admin, Analyst, Brand, Marketplace};

/// Which roles may call each route (method, path as routed).
pub const POLICY: &[(Method, &str, &[Role])] = &[
    (Method::GET, "/v1/products", &[Brand, Analyst, Admin]),
    (Method::POST, "/v1/products", &[Brand, Admin]),
    (Method::GET, "/v1/products/{brand}/{product_id}", &[Brand, Analyst, Admin]),
    (Method::PUT, "/v1/products/{brand}/{product_id}", &[Brand, Admin]),
    (Method::DELETE, "/v1/products/{brand}/{product_id}", &[Brand, Admin]),
    (Method::POST, "/v1/scan", &[Marketplace, Admin]),
    (Method::POST, "/v1/query", &[Marketplace, Analyst, Admin]),
    (Method::GET, "/v1/verdicts", &[Brand, Marketplace, Analyst, Admin]),
    (Method::GET, "/v1/verdicts/{id}", &[Brand, Marketplace, Analyst, Admin]),
    (Method::POST, "/v1/verdicts/{id}/decision", &[Brand, Analyst, Admin]),
    (Method::GET, "/v1/decisions", &[Brand, Analyst, Admin]),
    (Method::POST, "/v1/jobs", &[Marketplace, Admin]),
    (Method::GET, "/v1/jobs/{id}", &[Marketplace, Admin]),
    (Method::GET, "/v1/jobs/{id}/results", &[Marketplace, Admin]),
    (Method::GET, "/v1/networks", &[Brand, Analyst, Admin]),
    (Method::GET, "/v1/networks/{id}", &[Brand, Analyst, Admin]),
];

/// The roles allowed on a route, if it is in `POLICY`.
pub fn allowed(method: &Method, path: &str) -> Option<&'static [Role]> {
    POLICY.iter().find(|(m, p, _)| m == method && *p == path).map(|(_, _, roles)| *roles)
}

/// The layer: 401 without a valid key, 403 when the key's role may not call the route.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string());
    let Some(presented) = presented else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer KEY` header",
        )
        .into_response();
    };
    let caller = match state.with_db(move |c| keys::verify(c, &presented)).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or revoked key",
            )
            .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let path = matched.as_ref().map(|m| m.as_str()).unwrap_or("");
    let roles = allowed(req.method(), path).unwrap_or(&[]);
    if !roles.contains(&caller.role) {
        let msg = format!("a {} key may not call {} {path}", caller.role, req.method());
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg).into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}
