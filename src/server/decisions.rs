//! Decisions on verdicts, taken in one place: the JSON API (`POST /v1/verdicts/{id}/decision`)
//! and the review console both call `decide`, so a decision means the same wherever it is taken.
//!
//! Decisions flow back: a `genuine` or `not_our_product` decision puts the listing photo that
//! matched the verdict's product on that product's allow-list (`crate::catalog::allowlist`), which the
//! server's scanner and `knockoff scan` respect; a later `counterfeit` decision on the same verdict
//! takes it off again (the latest decision counts).

use std::sync::Arc;

use anyhow::Result;
use rusqlite::Connection;
use serde::Serialize;

use super::error::ApiError;
use super::keys::Caller;
use super::ledger::{self, DecisionRow, Outcome};
use super::AppState;
use crate::catalog::allowlist::{self, Entry};

/// Longest decision note, in characters.
pub const MAX_NOTE: usize = 4000;

/// A decision as recorded, and what it changed on the allow-list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Decided {
    /// The decision.
    #[serde(flatten)]
    pub row: DecisionRow,
    /// Its effect on the product's allow-list.
    pub allow_list: AllowListChange,
}

/// What a decision changed on an allow-list.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct AllowListChange {
    /// Entries added (the photo, the product, who, when).
    #[schema(value_type = Vec<Object>)]
    pub added: Vec<Entry>,
    /// Entries of this verdict's earlier decisions removed.
    pub removed: usize,
    /// Why nothing was added to an allow-list, when a genuine or not_our_product decision added
    /// nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Records `caller`'s decision on verdict `verdict_id` and feeds the allow-list: refuses a note
/// over `MAX_NOTE` characters (400 `bad_request`) and a verdict the caller may not see (404
/// `not_found`); who and when are stored, every decision is kept and the latest counts.
pub async fn decide(
    state: &Arc<AppState>,
    caller: &Caller,
    verdict_id: i64,
    outcome: Outcome,
    note: String,
) -> Result<Decided, ApiError> {
    if note.chars().count() > MAX_NOTE {
        return Err(ApiError::bad_request(
            "bad_request",
            format!("the note is longer than {MAX_NOTE} characters"),
        ));
    }
    let c = caller.clone();
    let allow = state.engine.allowlist().clone();
    state
        .with_db(move |db| {
            if ledger::get(db, &c, verdict_id)?.is_none() {
                return Ok(None);
            }
            // the allow-list is written before the decision commits: when it cannot be written,
            // no decision is recorded and the client is told
            let tx = db.transaction()?;
            let row = ledger::decide(&tx, &c, verdict_id, outcome, &note)?;
            let allow_list = feed(&tx, &allow, &row, outcome)?;
            tx.commit()?;
            Ok(Some(Decided { row, allow_list }))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no verdict {verdict_id}")))
}

/// Replaces the allow-list entries of the verdict of `row` by what its decision `outcome` adds.
fn feed(
    conn: &Connection,
    allow: &allowlist::Shared,
    row: &DecisionRow,
    outcome: Outcome,
) -> Result<AllowListChange> {
    let removed = allow.revoke(row.verdict_id)?;
    let mut change = AllowListChange { removed, ..AllowListChange::default() };
    if outcome == Outcome::Counterfeit {
        return Ok(change);
    }
    let Some(src) = ledger::allow_source(conn, row.verdict_id)? else {
        change.note =
            Some("the verdict is not about a product (clear or error): nothing to allow".into());
        return Ok(change);
    };
    let Some(phash) = src.phash else {
        change.note = Some(format!(
            "photo {} has no perceptual hash (a flat image, or scanned before hashes were kept): it cannot be recognised again",
            src.image
        ));
        return Ok(change);
    };
    let entry = Entry {
        brand: src.brand,
        product_id: src.product_id,
        image: src.image,
        phash,
        // a copy of the brand's own reference photo is allowed only for this seller
        seller_id: src.seller_id.filter(|_| src.copies_reference),
        decision: outcome.as_str().into(),
        decided_by: row.key_id.clone(),
        decided_at: row.created_at.clone(),
        verdict_id: Some(row.verdict_id),
        listing_id: src.listing_id,
    };
    allow.add(entry.clone())?;
    change.added.push(entry);
    Ok(change)
}
