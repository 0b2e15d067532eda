//! The OpenAPI 3 description of the API, generated from the handlers' annotations
//! (`#[utoipa::path]`) and the request and answer types, served at `/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::api::{jobs, networks, products, scan, verdicts};
use super::error::ErrorBody;
use super::ledger::{DecisionRow, Outcome};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(title = "knockoff", description = "Counterfeit detection API: brands' catalogs, marketplace scans, verdicts and decisions. Every /v1 request carries `Authorization: Bearer KEY` (see docs/server.md)."),
    paths(
        products::list, products::create, products::show, products::replace, products::delete,
        scan::scan, scan::query,
        verdicts::list, verdicts::show, verdicts::decide, verdicts::decisions,
        jobs::create, jobs::show, jobs::results,
        networks::list, networks::show,
    ),
    components(schemas(ErrorBody, Outcome, DecisionRow, products::Product, products::ProductInput, products::ProductList, products::Upload,
        scan::ListingInput, scan::ScanRequest, scan::ScanResponse, scan::QueryForm, verdicts::VerdictPage, verdicts::DecisionInput,
        crate::server::decisions::Decided, crate::server::decisions::AllowListChange, crate::server::jobs::JobStatus, networks::NetworkList)),
    modifiers(&Bearer),
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
