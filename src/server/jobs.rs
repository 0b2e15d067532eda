//! Jobs: batches larger than `POST /v1/scan` takes, sent as JSON Lines and checked in the
//! background, `CHUNK` listings at a time.
//!
//! A job and every listing line of it are stored in `server.sqlite` before the job is answered.
//! The runner (`run`, one task per server) takes the oldest unfinished job's next pending
//! listings, has the model worker check them, and stores their verdicts and marks them done in one
//! transaction: after a crash (`kill -9`) and a restart, the listings done are never checked
//! again and the others are, so the job finishes with every verdict stored once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::http::StatusCode;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::db;
use super::error::ApiError;
use super::keys::{Caller, Role};
use super::ledger::{self, VerdictPhoto};
use super::AppState;

/// Largest number of listings one job may carry.
pub const MAX_JOB_LISTINGS: usize = 100_000;

/// Listings the runner hands the model worker at once.
pub const CHUNK: usize = 16;

/// A job's progress.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobStatus {
    /// Job id.
    pub id: i64,
    /// `queued` (nothing checked yet), `running` or `done`.
    pub state: String,
    /// Listings in the job.
    pub total: i64,
    /// Listings checked (their verdicts are stored).
    pub done: i64,
    /// Verdicts so far, by kind (flag, review, clear, error).
    pub verdicts: BTreeMap<String, i64>,
    /// When the job was submitted (RFC 3339, UTC).
    pub created_at: String,
    /// When its last listing was checked.
    pub finished_at: Option<String>,
}

/// One listing line of a job.
#[derive(Debug, Clone)]
pub struct Item {
    /// Position among the job's listings (1-based).
    pub seq: i64,
    /// Line in the submitted body (1-based).
    pub line: usize,
    /// The line as sent.
    pub text: String,
}

/// The next listings to check.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Their job.
    pub job: i64,
    /// The key that submitted it (the verdicts are its submissions).
    pub submitted_by: String,
    /// The listings, in order.
    pub items: Vec<Item>,
}

/// Stores a job of `items` (line number, text) submitted by `key_id`; returns its id.
pub fn create(conn: &mut Connection, key_id: &str, items: &[(usize, &str)]) -> Result<i64> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO jobs(submitted_by, total, done, created_at) VALUES(?1, ?2, 0, ?3)",
        params![key_id, items.len() as i64, db::now()],
    )?;
    let job = tx.last_insert_rowid();
    {
        let mut st =
            tx.prepare("INSERT INTO job_items(job, seq, line, listing) VALUES(?1, ?2, ?3, ?4)")?;
        for (i, (line, text)) in items.iter().enumerate() {
            st.execute(params![job, i as i64 + 1, *line as i64, text])?;
        }
    }
    tx.commit()?;
    Ok(job)
}

/// Whether `caller` may see job `id` (its submitter, or an admin).
pub fn visible(conn: &Connection, caller: &Caller, id: i64) -> Result<bool> {
    let by: Option<String> = conn
        .query_row("SELECT submitted_by FROM jobs WHERE id=?1", [id], |r| r.get(0))
        .optional()?;
    Ok(by.is_some_and(|by| caller.role == Role::Admin || by == caller.key_id))
}

/// Job `id`'s progress, if `caller` may see it.
pub fn status(conn: &Connection, caller: &Caller, id: i64) -> Result<Option<JobStatus>> {
    if !visible(conn, caller, id)? {
        return Ok(None);
    }
    let (total, done, created, finished): (i64, i64, i64, Option<i64>) = conn.query_row(
        "SELECT total, done, created_at, finished_at FROM jobs WHERE id=?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let mut st = conn.prepare(
        "SELECT v.verdict, COUNT(*) FROM job_items i JOIN verdicts v ON v.id = i.verdict
         WHERE i.job = ?1 GROUP BY v.verdict",
    )?;
    let verdicts = st
        .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    let state = match (finished, done) {
        (Some(_), _) => "done",
        (None, 0) => "queued",
        (None, _) => "running",
    };
    Ok(Some(JobStatus {
        id,
        state: state.into(),
        total,
        done,
        verdicts,
        created_at: db::rfc3339(created),
        finished_at: finished.map(db::rfc3339),
    }))
}

/// Up to `limit` pending listings of the oldest unfinished job, in order.
pub fn next_chunk(conn: &Connection, limit: usize) -> Result<Option<Chunk>> {
    let job: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, submitted_by FROM jobs WHERE finished_at IS NULL ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((job, submitted_by)) = job else { return Ok(None) };
    let mut st = conn.prepare(
        "SELECT seq, line, listing FROM job_items WHERE job=?1 AND verdict IS NULL ORDER BY seq LIMIT ?2",
    )?;
    let items = st
        .query_map(params![job, limit as i64], |r| {
            Ok(Item { seq: r.get(0)?, line: r.get::<_, i64>(1)? as usize, text: r.get(2)? })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Chunk { job, submitted_by, items }))
}

/// Stores the verdicts of `chunk` (one per item, in order) and marks its items done, in one
/// transaction; the job is finished when no item is left.
pub fn complete(
    conn: &mut Connection,
    chunk: &Chunk,
    verdicts: &[Value],
    photos: &[Vec<VerdictPhoto>],
) -> Result<()> {
    let tx = conn.transaction()?;
    let ids = ledger::insert_verdicts_in(&tx, &chunk.submitted_by, verdicts, photos)?;
    {
        let mut st = tx.prepare(
            "UPDATE job_items SET verdict=?1 WHERE job=?2 AND seq=?3 AND verdict IS NULL",
        )?;
        for (item, id) in chunk.items.iter().zip(&ids) {
            if st.execute(params![id, chunk.job, item.seq])? != 1 {
                anyhow::bail!("job {} listing {} was already checked", chunk.job, item.seq);
            }
        }
    }
    tx.execute(
        "UPDATE jobs SET done = done + ?1 WHERE id=?2",
        params![ids.len() as i64, chunk.job],
    )?;
    tx.execute(
        "UPDATE jobs SET finished_at=?1 WHERE id=?2 AND finished_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM job_items WHERE job=?2 AND verdict IS NULL)",
        params![db::now(), chunk.job],
    )?;
    tx.commit()?;
    Ok(())
}

/// Up to `limit` checked listings of job `job` after position `after`, in order: (position,
/// verdict as answered by `GET /v1/verdicts/{id}`, with `job_line`).
pub fn results(
    conn: &Connection,
    caller: &Caller,
    job: i64,
    after: i64,
    limit: usize,
) -> Result<Vec<(i64, Value)>> {
    let mut st = conn.prepare(
        "SELECT seq, line, verdict FROM job_items WHERE job=?1 AND seq > ?2 AND verdict IS NOT NULL ORDER BY seq LIMIT ?3",
    )?;
    let rows = st
        .query_map(params![job, after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (seq, line, verdict) in rows {
        // the caller submitted the job (or is an admin): its verdicts are the caller's to see
        let stored = ledger::get(conn, caller, verdict)?;
        let mut body = stored.map(|s| s.body).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut body {
            m.insert("job_line".into(), line.into());
        }
        out.push((seq, body));
    }
    Ok(out)
}

/// Whether job `job` is finished.
pub fn finished(conn: &Connection, job: i64) -> Result<bool> {
    Ok(conn
        .query_row("SELECT finished_at IS NOT NULL FROM jobs WHERE id=?1", [job], |r| {
            r.get::<_, bool>(0)
        })
        .optional()?
        .unwrap_or(true))
}

/// Parses one line of a job into a listing (not JSON, or not a listing: an `error` verdict
/// naming the line).
fn parse_item(item: &Item, max_images: usize) -> crate::scan::Parsed {
    match serde_json::from_str::<Value>(&item.text) {
        Ok(v) => super::api::scan::parse(item.line, v, max_images),
        Err(e) => Err((item.line, None, format!("line {}: not JSON ({e})", item.line))),
    }
}

/// Checks the next chunk; `Ok(false)` when no job has anything pending.
async fn step(state: &Arc<AppState>) -> Result<bool, ApiError> {
    let Some(chunk) = state.with_db(|c| next_chunk(c, CHUNK)).await? else { return Ok(false) };
    if chunk.items.is_empty() {
        // every listing is checked but the job is not marked: mark it
        let job = chunk.clone();
        state.with_db(move |c| complete(c, &job, &[], &[])).await?;
        return Ok(true);
    }
    let max_images = state.config.limits.max_images_per_record;
    let parsed = chunk.items.iter().map(|i| parse_item(i, max_images)).collect();
    let (values, photos) = match state.engine.scan_waiting(parsed).await {
        Ok(reports) => super::api::scan::rows(state, &reports)?,
        Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE || e.code == "catalog_empty" => {
            return Err(e)
        }
        // the chunk cannot be checked: each listing gets an error verdict saying why
        Err(e) => (
            chunk.items.iter().map(|i| failed(i, &e)).collect(),
            vec![Vec::new(); chunk.items.len()],
        ),
    };
    state.with_db(move |c| complete(c, &chunk, &values, &photos)).await?;
    Ok(true)
}

/// The `error` verdict of a listing whose chunk could not be checked.
fn failed(item: &Item, e: &ApiError) -> Value {
    let id = serde_json::from_str::<Value>(&item.text)
        .ok()
        .and_then(|v| v["listing_id"].as_str().map(String::from));
    json!({"listing_id": id, "line": item.line, "verdict": "error", "risk": 0.0, "matches": [],
        "price_ratio": null, "price": null, "rule": "error", "reasons": [format!("could not be checked: {}", e.message)]})
}

/// The job runner: checks pending listings until `stop` turns true (it finishes the chunk in
/// hand first); sleeps while there is nothing to do, woken by `AppState::jobs_added`.
pub async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let pause = match step(&state).await {
            Ok(true) => continue,
            Ok(false) => None,
            Err(e) => {
                tracing::warn!("jobs: {} ({}); retrying", e.message, e.code);
                Some(Duration::from_secs(1))
            }
        };
        tokio::select! {
            _ = state.jobs_added.notified(), if pause.is_none() => {}
            _ = tokio::time::sleep(pause.unwrap_or_default()), if pause.is_some() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
