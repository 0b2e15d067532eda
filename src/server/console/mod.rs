//! The review console: server-rendered HTML pages under `/console` for analysts and brand owners,
//! served by `knockoff serve` beside the JSON API.
//!
//! - `session`: sign-in with an API key, kept server-side; the browser holds only a random
//!   session id in an HttpOnly, SameSite=Strict cookie; every form post carries the session's
//!   CSRF token and is refused from another origin.
//! - `pages`: the review queue, the verdict page and keyboard triage (decisions are stored by
//!   `server::decisions::decide`, exactly as the API stores them, allow-list included).
//! - `catalog`: a brand's products with thumbnails and photo upload (`api::products::store_product`).
//! - `networks`: seller networks and their case files (`network::export`).
//! - `photos`: photos the server itself stored (uploads, catalog), never a path a client names.
//!
//! Every page checks the signed-in key's role against the API's own table (`auth::allowed`) for
//! the API route it stands for, and scopes data by brand with the same ledger and catalog queries.
//! Templates (minijinja, autoescaping HTML) and the small script are embedded in the binary.

mod catalog;
mod networks;
mod pages;
mod photos;
mod session;
mod view;

use std::sync::{Arc, LazyLock};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::auth;
use super::error::ApiError;
use super::keys::Caller;
use super::AppState;

pub use session::Sessions;

/// The console's routes (merged into the server's router), with their session store.
pub fn router(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let uploads = DefaultBodyLimit::max(state.config.server.max_upload_bytes);
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/queue") }))
        .route("/console/", get(|| async { Redirect::to("/console/queue") }))
        .route("/console/login", get(session::login_page).post(session::login))
        .route("/console/logout", post(session::logout))
        .route("/console/queue", get(pages::queue))
        .route("/console/verdicts/{id}", get(pages::verdict))
        .route("/console/verdicts/{id}/decision", post(pages::decide))
        .route("/console/photo/verdict/{id}/{which}", get(photos::verdict_photo))
        .route("/console/photo/product/{brand}/{product_id}/{n}", get(photos::product_photo))
        .route("/console/catalog", get(catalog::page))
        .route("/console/catalog/{brand}/{product_id}/photos", post(catalog::upload).layer(uploads))
        .route("/console/networks", get(networks::list))
        .route("/console/networks/{id}", get(networks::case))
        .route("/console/static/console.js", get(script))
        .route("/console/static/console.css", get(style))
        .layer(axum::middleware::map_response(security_headers))
        .layer(Extension(Arc::new(Sessions::default())))
}

/// Headers every console answer carries: no framing, no sniffing, no referrer to other sites (a
/// same-origin referrer policy, not `no-referrer`: under that, browsers send `Origin: null` on the
/// console's own form posts and the origin check could not tell them from cross-site ones), and a
/// content security policy that runs only the console's own script.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let csp = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
               img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const SCRIPT: &str = include_str!("static/console.js");
const STYLE: &str = include_str!("static/console.css");

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    static_file("text/css; charset=utf-8", STYLE)
}

fn static_file(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "private, max-age=300")], body)
        .into_response()
}

/// The templates, parsed once; HTML autoescaping is on for every one (names end in `.html`).
static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("queue.html", include_str!("templates/queue.html")),
        ("verdict.html", include_str!("templates/verdict.html")),
        ("catalog.html", include_str!("templates/catalog.html")),
        ("networks.html", include_str!("templates/networks.html")),
        ("error.html", include_str!("templates/error.html")),
    ] {
        if let Err(e) = env.add_template(name, text) {
            tracing::error!("console template {name}: {e:#}");
        }
    }
    env
});

/// Renders template `name` with `ctx`.
fn render(name: &str, ctx: minijinja::Value) -> Result<Html<String>, PageError> {
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| PageError::internal(anyhow::anyhow!("console template {name}: {e:#}")))
}

/// A failed page: an HTML page with the status and what went wrong.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError { status, message: message.into() }
    }

    fn internal(e: anyhow::Error) -> PageError {
        PageError::from(ApiError::internal(e))
    }

    fn forbidden(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::FORBIDDEN, message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::new(e.status, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let ctx = minijinja::context! { status => self.status.as_u16(), message => self.message };
        let page = TEMPLATES
            .get_template("error.html")
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|_| "<!DOCTYPE html><title>error</title><p>error</p>".into());
        (self.status, Html(page)).into_response()
    }
}

/// Refuses `caller` unless its role may call the API route the page stands for (the API's own
/// table, `auth::POLICY`).
fn permit(caller: &Caller, method: Method, api_route: &str) -> Result<(), PageError> {
    let roles = auth::allowed(&method, api_route).unwrap_or(&[]);
    if roles.contains(&caller.role) {
        Ok(())
    } else {
        Err(PageError::forbidden(format!(
            "a {} key may not do this ({method} {api_route} in the API)",
            caller.role
        )))
    }
}

/// Whether `caller` may call the API route (for showing or hiding a form).
fn may(caller: &Caller, method: Method, api_route: &str) -> bool {
    permit(caller, method, api_route).is_ok()
}

/// Percent-encodes a query or path value.
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
