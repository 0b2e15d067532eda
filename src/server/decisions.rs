//! Decisions on verdicts, taken in one place: the JSON API (`POST /v1/verdicts/{id}/decision`)
//! and the review console both call `decide`, so a decision means the same wherever it is taken.

use std::sync::Arc;

use super::error::ApiError;
use super::keys::Caller;
use super::ledger::{self, DecisionRow, Outcome};
use super::AppState;

/// Longest decision note, in characters.
pub const MAX_NOTE: usize = 4000;

/// Records `caller`'s decision on verdict `verdict_id`: refuses a note over `MAX_NOTE` characters
/// (400 `bad_request`) and a verdict the caller may not see (404 `not_found`); who and when are
/// stored, every decision is kept and the latest counts.
pub async fn decide(
    state: &Arc<AppState>,
    caller: &Caller,
    verdict_id: i64,
    outcome: Outcome,
    note: String,
) -> Result<DecisionRow, ApiError> {
    if note.chars().count() > MAX_NOTE {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("the note is longer than {MAX_NOTE} characters"),
        ));
    }
    let c = caller.clone();
    state
        .with_db(move |db| {
            if ledger::get(db, &c, verdict_id)?.is_none() {
                return Ok(None);
            }
            ledger::decide(db, &c, verdict_id, outcome, &note).map(Some)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verdict {verdict_id}")))
}
