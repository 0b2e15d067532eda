//! Stored verdicts and decisions (in `server.sqlite`): who submitted each verdict, which brand's
//! product it is about, and every decision taken on it, by whom and when. Visibility follows the
//! key: a marketplace sees its own submissions, a brand (or an analyst limited to one) the
//! verdicts about its brand's products, admins and unscoped analysts everything.

use anyhow::Result;
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::db;
use super::keys::{Caller, Role};

/// What a reviewer decided about a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The listing sells a counterfeit.
    Counterfeit,
    /// The listing sells the genuine product.
    Genuine,
    /// The listing does not show the matched product.
    NotOurProduct,
}

impl Outcome {
    /// Name as stored and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Counterfeit => "counterfeit",
            Outcome::Genuine => "genuine",
            Outcome::NotOurProduct => "not_our_product",
        }
    }
}

/// A stored verdict's row.
pub struct Stored {
    /// Its id.
    pub id: i64,
    /// The verdict as answered (with `id`, `created_at` and the latest `decision` added).
    pub body: Value,
}

/// A decision as exported.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DecisionRow {
    /// Decision id.
    pub id: i64,
    /// The verdict decided on.
    pub verdict_id: i64,
    /// The listing of that verdict.
    pub listing_id: Option<String>,
    /// The brand of its matched product.
    pub brand: Option<String>,
    /// The matched product.
    pub product_id: Option<String>,
    /// counterfeit, genuine or not_our_product.
    pub decision: String,
    /// The reviewer's note.
    pub note: String,
    /// Id of the key that decided.
    pub key_id: String,
    /// When (RFC 3339, UTC).
    pub created_at: String,
}

/// Filters of a verdict listing.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct VerdictFilter {
    /// Only this verdict (flag, review, clear, error).
    pub verdict: Option<String>,
    /// Only verdicts about this brand's products.
    pub brand: Option<String>,
    /// Only listings of this seller.
    pub seller: Option<String>,
    /// Only verdicts with an id above this (the `next` of the previous page).
    pub after: Option<i64>,
    /// Page size (1 to 500, default 100).
    pub limit: Option<usize>,
}

/// A listing photo kept with its verdict, for allow-lists.
#[derive(Debug, Clone)]
pub struct VerdictPhoto {
    /// The photo as the verdict shows it (URL or `upload:SHA256`).
    pub image: String,
    /// Its perceptual hash (none for a flat photo).
    pub phash: Option<u64>,
}

/// Stores reports (already serialised) submitted by `key_id`, with each report's listing
/// `photos`, in one transaction; returns their ids, in order.
pub fn insert_verdicts(
    conn: &mut Connection,
    key_id: &str,
    reports: &[Value],
    photos: &[Vec<VerdictPhoto>],
) -> Result<Vec<i64>> {
    let tx = conn.transaction()?;
    let ids = insert_verdicts_in(&tx, key_id, reports, photos)?;
    tx.commit()?;
    Ok(ids)
}

/// `insert_verdicts` inside a transaction the caller commits (a job stores its verdicts and marks
/// its listings done at once).
pub fn insert_verdicts_in(
    tx: &Connection,
    key_id: &str,
    reports: &[Value],
    photos: &[Vec<VerdictPhoto>],
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(reports.len());
    {
        let mut photo =
            tx.prepare("INSERT INTO verdict_photos(verdict, image, phash) VALUES(?1, ?2, ?3)")?;
        let mut st = tx.prepare(
            "INSERT INTO verdicts(submitted_by, listing_id, verdict, risk, brand, product_id, seller_id, created_at, body)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let now = db::now();
        for r in reports {
            // a verdict is about a brand's product when it flags it or sends it to review
            let about = matches!(r["verdict"].as_str(), Some("flag" | "review"));
            let top = if about { &r["matches"][0] } else { &Value::Null };
            st.execute(params![
                key_id,
                r["listing_id"].as_str(),
                r["verdict"].as_str().unwrap_or("error"),
                r["risk"].as_f64().unwrap_or(0.0),
                top["brand"].as_str(),
                top["product_id"].as_str(),
                r["seller"]["seller_id"].as_str(),
                now,
                serde_json::to_string(r)?,
            ])?;
            let id = tx.last_insert_rowid();
            for p in photos.get(ids.len()).map(Vec::as_slice).unwrap_or_default() {
                photo.execute(params![id, p.image, p.phash.map(|h| h as i64)])?;
            }
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The SQL condition (and its parameters) of the verdicts `caller` may see.
fn scope(caller: &Caller) -> (String, Vec<Sql>) {
    match caller.role {
        Role::Admin => ("1".into(), vec![]),
        Role::Analyst if caller.brand.is_none() => ("1".into(), vec![]),
        Role::Marketplace => ("v.submitted_by = ?".into(), vec![Sql::Text(caller.key_id.clone())]),
        Role::Brand | Role::Analyst => {
            ("v.brand = ?".into(), vec![Sql::Text(caller.brand.clone().unwrap_or_default())])
        }
    }
}

const VERDICT_COLUMNS: &str = "v.id, v.submitted_by, v.brand, v.created_at, v.body,
    (SELECT json_object('decision', d.decision, 'note', d.note, 'key_id', d.key_id, 'created_at', d.created_at)
     FROM decisions d WHERE d.verdict = v.id ORDER BY d.id DESC LIMIT 1)";

fn stored(r: &rusqlite::Row) -> rusqlite::Result<Stored> {
    let id: i64 = r.get(0)?;
    let created: i64 = r.get(3)?;
    let body: String = r.get(4)?;
    let decision: Option<String> = r.get(5)?;
    let mut v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), id.into());
        m.insert("created_at".into(), db::rfc3339(created).into());
        let mut d: Value =
            decision.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or(Value::Null);
        if let Some(secs) = d["created_at"].as_i64() {
            d["created_at"] = db::rfc3339(secs).into();
        }
        m.insert("decision".into(), d);
    }
    Ok(Stored { id, body: v })
}

/// The verdict `id` if `caller` may see it.
pub fn get(conn: &Connection, caller: &Caller, id: i64) -> Result<Option<Stored>> {
    let (cond, mut args) = scope(caller);
    args.insert(0, Sql::Integer(id));
    let sql = format!("SELECT {VERDICT_COLUMNS} FROM verdicts v WHERE v.id = ? AND {cond}");
    Ok(conn.query_row(&sql, params_from_iter(args), stored).optional()?)
}

/// One page of the verdicts `caller` may see, oldest first.
pub fn list(conn: &Connection, caller: &Caller, f: &VerdictFilter) -> Result<Vec<Stored>> {
    let (cond, mut args) = scope(caller);
    let mut sql = format!("SELECT {VERDICT_COLUMNS} FROM verdicts v WHERE {cond}");
    for (column, value) in
        [("v.verdict", &f.verdict), ("v.brand", &f.brand), ("v.seller_id", &f.seller)]
    {
        if let Some(value) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            args.push(Sql::Text(value.clone()));
        }
    }
    sql.push_str(" AND v.id > ? ORDER BY v.id LIMIT ?");
    args.push(Sql::Integer(f.after.unwrap_or(0)));
    args.push(Sql::Integer(f.limit.unwrap_or(100).clamp(1, 500) as i64));
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(args), stored)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Records a decision on verdict `verdict_id` by `caller`.
pub fn decide(
    conn: &Connection,
    caller: &Caller,
    verdict_id: i64,
    outcome: Outcome,
    note: &str,
) -> Result<DecisionRow> {
    let now = db::now();
    conn.execute(
        "INSERT INTO decisions(verdict, decision, note, key_id, created_at) VALUES(?1, ?2, ?3, ?4, ?5)",
        params![verdict_id, outcome.as_str(), note, caller.key_id, now],
    )?;
    let id = conn.last_insert_rowid();
    let (listing_id, brand, product_id) = conn.query_row(
        "SELECT listing_id, brand, product_id FROM verdicts WHERE id=?1",
        [verdict_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(DecisionRow {
        id,
        verdict_id,
        listing_id,
        brand,
        product_id,
        decision: outcome.as_str().into(),
        note: note.into(),
        key_id: caller.key_id.clone(),
        created_at: db::rfc3339(now),
    })
}

/// Decisions on the verdicts `caller` may see, oldest first, after decision id `after`.
pub fn decisions(conn: &Connection, caller: &Caller, after: i64) -> Result<Vec<DecisionRow>> {
    let (cond, mut args) = scope(caller);
    args.push(Sql::Integer(after));
    let sql = format!(
        "SELECT d.id, d.verdict, v.listing_id, v.brand, v.product_id, d.decision, d.note, d.key_id, d.created_at
         FROM decisions d JOIN verdicts v ON v.id = d.verdict WHERE {cond} AND d.id > ? ORDER BY d.id"
    );
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok(DecisionRow {
            id: r.get(0)?,
            verdict_id: r.get(1)?,
            listing_id: r.get(2)?,
            brand: r.get(3)?,
            product_id: r.get(4)?,
            decision: r.get(5)?,
            note: r.get(6)?,
            key_id: r.get(7)?,
            created_at: db::rfc3339(r.get(8)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What a decision on a verdict puts on an allow-list: the product the verdict is about and the
/// listing photo that matched it best.
#[derive(Debug, Clone)]
pub struct AllowSource {
    /// The product's brand.
    pub brand: String,
    /// The product.
    pub product_id: String,
    /// The listing.
    pub listing_id: Option<String>,
    /// Its seller.
    pub seller_id: Option<String>,
    /// The listing photo that matched the product.
    pub image: String,
    /// That photo's perceptual hash, if it has one.
    pub phash: Option<u64>,
    /// Whether that photo is a near-duplicate of one of the product's reference photos.
    pub copies_reference: bool,
}

/// The allow-list source of verdict `id`; none when the verdict is not about a product (clear,
/// error).
pub fn allow_source(conn: &Connection, id: i64) -> Result<Option<AllowSource>> {
    struct Row {
        brand: Option<String>,
        product_id: Option<String>,
        listing_id: Option<String>,
        seller_id: Option<String>,
        body: String,
    }
    let row = conn
        .query_row(
            "SELECT brand, product_id, listing_id, seller_id, body FROM verdicts WHERE id=?1",
            [id],
            |r| {
                Ok(Row {
                    brand: r.get(0)?,
                    product_id: r.get(1)?,
                    listing_id: r.get(2)?,
                    seller_id: r.get(3)?,
                    body: r.get(4)?,
                })
            },
        )
        .optional()?;
    let Some(Row { brand: Some(brand), product_id: Some(product_id), listing_id, seller_id, body }) =
        row
    else {
        return Ok(None);
    };
    let body: Value = serde_json::from_str(&body)?;
    let top = &body["matches"][0];
    let matched = top["listing_image"].as_str().unwrap_or_default().to_string();
    let mut st =
        conn.prepare("SELECT image, phash FROM verdict_photos WHERE verdict=?1 ORDER BY rowid")?;
    let photos =
        st.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
    let mut found = None;
    for p in photos {
        let (image, phash) = p?;
        // a region's match names `photo#region`
        if matched == image
            || matched.strip_prefix(image.as_str()).is_some_and(|r| r.starts_with('#'))
        {
            found = Some((image, phash));
            break;
        }
    }
    let (image, phash) = found.unwrap_or((matched, None));
    Ok(Some(AllowSource {
        brand,
        product_id,
        listing_id,
        seller_id,
        image,
        phash: phash.map(|h| h as u64),
        copies_reference: !top["hash_distance"].is_null(),
    }))
}

/// A decided verdict as a calibration label.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Brand of the verdict's best match (none when nothing matched).
    pub brand: Option<String>,
    /// The best match's score (-1 when nothing matched).
    pub score: f64,
    /// Whether the latest decision was `counterfeit` (`genuine` and `not_our_product` are not).
    pub counterfeit: bool,
}

/// The latest decision on every decided verdict of `DATA/server.sqlite` as a label, oldest first;
/// with `brand`, only verdicts whose best match is that brand's. Fails when there is no server
/// database.
pub fn labels(data: &std::path::Path, brand: Option<&str>) -> Result<Vec<Label>> {
    use anyhow::Context;
    let path = data.join(db::FILE);
    if !path.is_file() {
        anyhow::bail!(
            "no decisions: {} does not exist (decisions are taken through `knockoff serve`)",
            path.display()
        );
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut st = conn.prepare(
        "SELECT v.id, v.body, d.decision FROM decisions d JOIN verdicts v ON v.id = d.verdict
         WHERE d.id = (SELECT MAX(id) FROM decisions WHERE verdict = d.verdict) ORDER BY d.id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body, decision) = row?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("verdict {id} in {} is not readable", path.display()))?;
        if v["verdict"] == "error" {
            continue; // nothing was scored
        }
        let top = &v["matches"][0];
        let label = Label {
            brand: top["brand"].as_str().map(String::from),
            score: crate::scan::stored_score(top).unwrap_or(-1.0),
            counterfeit: decision == Outcome::Counterfeit.as_str(),
        };
        if brand.is_none_or(|b| label.brand.as_deref() == Some(b)) {
            out.push(label);
        }
    }
    Ok(out)
}

/// Filters of the review queue (the console's): flag and review verdicts, riskiest first.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct QueueFilter {
    /// Only verdicts about this brand's products.
    #[serde(default)]
    pub brand: Option<String>,
    /// Only listings of this seller.
    #[serde(default)]
    pub seller: Option<String>,
    /// Decided verdicts too (by default only those without a decision).
    #[serde(default)]
    pub all: bool,
}

/// The SQL condition and parameters of the queue `f` as `caller` sees it.
fn queue_scope(caller: &Caller, f: &QueueFilter) -> (String, Vec<Sql>) {
    let (mut cond, mut args) = scope(caller);
    cond.push_str(" AND v.verdict IN ('flag', 'review')");
    for (column, value) in [("v.brand", &f.brand), ("v.seller_id", &f.seller)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            cond.push_str(&format!(" AND {column} = ?"));
            args.push(Sql::Text(value.to_string()));
        }
    }
    if !f.all {
        cond.push_str(" AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.verdict = v.id)");
    }
    (cond, args)
}

/// Up to `limit` verdicts of the queue, riskiest first (then oldest first).
pub fn queue(
    conn: &Connection,
    caller: &Caller,
    f: &QueueFilter,
    limit: usize,
) -> Result<Vec<Stored>> {
    let (cond, mut args) = queue_scope(caller, f);
    let sql = format!(
        "SELECT {VERDICT_COLUMNS} FROM verdicts v WHERE {cond} ORDER BY v.risk DESC, v.id LIMIT ?"
    );
    args.push(Sql::Integer(limit as i64));
    let mut st = conn.prepare(&sql)?;
    let rows = st.query_map(params_from_iter(args), stored)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The verdict after (`forward`) or before verdict `id` in the queue order, whether or not `id`
/// itself is in the queue (a verdict just decided has left it).
pub fn neighbour(
    conn: &Connection,
    caller: &Caller,
    f: &QueueFilter,
    id: i64,
    forward: bool,
) -> Result<Option<i64>> {
    let (cond, mut args) = queue_scope(caller, f);
    let Some(risk) = conn
        .query_row("SELECT risk FROM verdicts WHERE id = ?1", [id], |r| r.get::<_, f64>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let (after, order) = match forward {
        true => ("(v.risk < ? OR (v.risk = ? AND v.id > ?))", "v.risk DESC, v.id"),
        false => ("(v.risk > ? OR (v.risk = ? AND v.id < ?))", "v.risk, v.id DESC"),
    };
    let sql =
        format!("SELECT v.id FROM verdicts v WHERE {cond} AND {after} ORDER BY {order} LIMIT 1");
    args.extend([Sql::Real(risk), Sql::Real(risk), Sql::Integer(id)]);
    Ok(conn.query_row(&sql, params_from_iter(args), |r| r.get(0)).optional()?)
}
