//! Stored verdicts (`GET /v1/verdicts`, `GET /v1/verdicts/{id}`) and decisions on them
//! (`POST /v1/verdicts/{id}/decision`, `GET /v1/decisions` for audits, JSON Lines or CSV).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::server::decisions::{self, Decided};
use crate::server::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::server::keys::Caller;
use crate::server::ledger::{self, DecisionRow, Outcome, VerdictFilter};
use crate::server::AppState;

/// A page of verdicts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerdictPage {
    /// Verdicts, oldest first.
    #[schema(value_type = Vec<Object>)]
    verdicts: Vec<Value>,
    /// Pass as `after` for the next page; null on the last.
    next: Option<i64>,
}

/// Lists the verdicts the key may see.
#[utoipa::path(get, path = "/v1/verdicts", tag = "verdicts", security(("bearer" = [])), params(VerdictFilter),
    description = "Roles: all. A marketplace sees its own submissions, a brand (or an analyst limited to one) flag and review verdicts about its products.",
    responses((status = 200, body = VerdictPage), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(f): ApiQuery<VerdictFilter>,
) -> Result<Json<VerdictPage>, ApiError> {
    if let (Some(own), Some(asked)) = (&caller.brand, &f.brand) {
        if own != asked {
            return Err(ApiError::forbidden_brand(asked));
        }
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 500);
    let rows = state.with_db(move |c| ledger::list(c, &caller, &f)).await?;
    let next = if rows.len() == limit { rows.last().map(|r| r.id) } else { None };
    Ok(Json(VerdictPage { verdicts: rows.into_iter().map(|r| r.body).collect(), next }))
}

async fn visible(
    state: &Arc<AppState>,
    caller: &Caller,
    id: i64,
) -> Result<ledger::Stored, ApiError> {
    let c = caller.clone();
    state
        .with_db(move |db| ledger::get(db, &c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verdict {id}")))
}

/// One verdict, with its latest decision.
#[utoipa::path(get, path = "/v1/verdicts/{id}", tag = "verdicts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Verdict id")),
    description = "Roles: all, for the verdicts they may see (others are 404).",
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(visible(&state, &caller, id).await?.body))
}

/// A decision on a verdict.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    /// counterfeit, genuine or not_our_product.
    decision: Outcome,
    /// Why (up to 4000 characters).
    #[serde(default)]
    note: String,
}

/// Records a decision (who and when are stored; the latest one counts, all are kept). A genuine or
/// not_our_product decision puts the listing photo on the product's allow-list.
#[utoipa::path(post, path = "/v1/verdicts/{id}/decision", tag = "verdicts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Verdict id")), request_body = DecisionInput,
    description = "Roles: brand (verdicts about its products), analyst, admin.",
    responses((status = 201, body = Decided, description = "The decision, and what it changed on the product's allow-list"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<DecisionInput>,
) -> Result<(StatusCode, Json<Decided>), ApiError> {
    let row = decisions::decide(&state, &caller, id, input.decision, input.note).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Export options.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// jsonl (default) or csv.
    format: Option<String>,
    /// Only decisions with an id above this.
    after: Option<i64>,
}

/// All decisions on the verdicts the key may see, oldest first, for audits.
#[utoipa::path(get, path = "/v1/decisions", tag = "verdicts", security(("bearer" = [])), params(ExportQuery),
    description = "Roles: brand (its products), analyst, admin. JSON Lines (application/x-ndjson) or CSV (text/csv).",
    responses((status = 200, body = DecisionRow, description = "One decision per line"), (status = 400, body = ErrorBody)))]
pub async fn decisions(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("unknown format {other:?} (jsonl or csv)"),
            ))
        }
    };
    let after = q.after.unwrap_or(0);
    let rows = state.with_db(move |c| ledger::decisions(c, &caller, after)).await?;
    let (body, kind) = if csv {
        (to_csv(&rows)?, "text/csv; charset=utf-8")
    } else {
        (to_jsonl(&rows)?, "application/x-ndjson")
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

fn to_jsonl(rows: &[DecisionRow]) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r).map_err(|e| ApiError::internal(e.into()))?;
        out.push(b'\n');
    }
    Ok(out)
}

fn to_csv(rows: &[DecisionRow]) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| ApiError::internal(e.into()))?;
    }
    if rows.is_empty() {
        w.write_record([
            "id",
            "verdict_id",
            "listing_id",
            "brand",
            "product_id",
            "decision",
            "note",
            "key_id",
            "created_at",
        ])
        .map_err(|e| ApiError::internal(e.into()))?;
    }
    w.into_inner().map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))
}
