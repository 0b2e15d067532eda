//! Jobs (`server::jobs`): `POST /v1/jobs` takes a JSON Lines batch of up to `MAX_JOB_LISTINGS`
//! listings, `GET /v1/jobs/{id}` shows its progress, `GET /v1/jobs/{id}/results` streams its
//! verdicts as JSON Lines, in input order, as they are made.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::server::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::server::jobs::{self, JobStatus, MAX_JOB_LISTINGS};
use crate::server::keys::Caller;
use crate::server::AppState;

/// The listing lines of a body (1-based line number, text), blank lines left out.
fn lines(body: &[u8]) -> Result<Vec<(usize, &str)>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request("bad_request", format!("the body is not UTF-8 text: {e}"))
    })?;
    let items: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    if items.is_empty() {
        return Err(ApiError::bad_request("bad_request", "no listings (one JSON object per line)"));
    }
    if items.len() > MAX_JOB_LISTINGS {
        let msg = format!("{} listings, over the limit of {MAX_JOB_LISTINGS} per job", items.len());
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_many_listings", msg));
    }
    Ok(items)
}

/// Submits a job: one listing (as for `POST /v1/scan`) per line.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-ndjson", description = "One listing per line (fields as for /v1/scan), up to 100000"),
    description = "Roles: marketplace, admin. A line that is not a listing gets an `error` verdict naming the line; the others are checked in the background. The job survives a restart of the server.",
    responses((status = 202, body = JobStatus), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    lines(&body)?;
    let key = caller.key_id.clone();
    let c = caller.clone();
    let job = state
        .with_db(move |db| {
            let items = lines(&body).map_err(|e| anyhow::anyhow!(e.message))?;
            let id = jobs::create(db, &key, &items)?;
            jobs::status(db, &c, id)
        })
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the new job is not found")))?;
    state.jobs_added.notify_one();
    let location = format!("/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response())
}

/// A job's progress.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Job id")),
    description = "Roles: marketplace (its own jobs), admin.",
    responses((status = 200, body = JobStatus), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<JobStatus>, ApiError> {
    state
        .with_db(move |db| jobs::status(db, &caller, id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no job {id}")))
}

/// Options of a result stream.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ResultsQuery {
    /// Keep the stream open until the job is done (default true); false sends what is ready.
    follow: Option<bool>,
    /// Only listings after this position in the job (to continue a broken stream).
    after: Option<i64>,
}

/// Where a result stream is.
struct Cursor {
    state: Arc<AppState>,
    caller: Caller,
    job: i64,
    after: i64,
    follow: bool,
}

/// The next lines of a stream: `None` at its end.
async fn next_lines(mut c: Cursor) -> Option<(Result<Bytes, std::io::Error>, Cursor)> {
    loop {
        if c.job < 0 {
            return None; // an error ended the stream
        }
        let (caller, job, after) = (c.caller.clone(), c.job, c.after);
        let fetched = c
            .state
            .with_db(move |db| {
                let finished = jobs::finished(db, job)?;
                Ok((finished, jobs::results(db, &caller, job, after, 200)?))
            })
            .await;
        let (finished, rows) = match fetched {
            Ok(r) => r,
            Err(e) => {
                return Some((
                    Err(std::io::Error::other(e.message)),
                    Cursor { follow: false, job: -1, ..c },
                ))
            }
        };
        if let Some((seq, _)) = rows.last() {
            c.after = *seq;
            let mut out = Vec::new();
            for (_, v) in &rows {
                out.extend_from_slice(v.to_string().as_bytes());
                out.push(b'\n');
            }
            return Some((Ok(Bytes::from(out)), c));
        }
        if finished || !c.follow {
            return None;
        }
        let stopping = c.state.stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = crate::server::until_stopped(stopping) => return None,
        }
    }
}

/// A job's verdicts as JSON Lines, in input order, each with `job_line` (its line in the job).
#[utoipa::path(get, path = "/v1/jobs/{id}/results", tag = "jobs", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Job id"), ResultsQuery),
    description = "Roles: marketplace (its own jobs), admin. Streams the verdicts made so far and, with follow (the default), the others as they are made, until the job is done.",
    responses((status = 200, content_type = "application/x-ndjson", description = "One verdict per line, as GET /v1/verdicts/{id} answers it"), (status = 404, body = ErrorBody)))]
pub async fn results(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ResultsQuery>,
) -> Result<Response, ApiError> {
    let c = caller.clone();
    if !state.with_db(move |db| jobs::visible(db, &c, id)).await? {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    let cursor = Cursor {
        state,
        caller,
        job: id,
        after: q.after.unwrap_or(0),
        follow: q.follow.unwrap_or(true),
    };
    let stream = futures_util::stream::unfold(cursor, next_lines);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream))
        .into_response())
}
