//! `network export-records`: the recorded sellers' identifiers, normalised exactly as
//! `network build` compares them, and the settings that decide which shared values link
//! (`max_sharing`, the never-link values normalised), for an identifier join outside knockoff
//! (Spark SQL: `spark/knockoff_links.py`, docs/spark.md). Normalisation stays here, so both sides
//! compare the same values.
//!
//! The export is a directory written aside and renamed into place in one step:
//! `identifiers.jsonl` (one row per recorded identifier, in the order `network build` reads them)
//! and `settings.json` (format, version, settings, counts).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::build::BuildOptions;
use super::normalise::Kind;
use super::record::RecordStore;

/// `settings.json`'s `format`.
pub const FORMAT: &str = "knockoff-records-export";
/// `settings.json`'s `version`.
pub const VERSION: u32 = 1;
/// The identifiers' file in the export.
pub const IDENTIFIERS: &str = "identifiers.jsonl";
/// The settings' file in the export.
pub const SETTINGS: &str = "settings.json";

/// One recorded identifier, as `identifiers.jsonl` carries it.
#[derive(Debug, Serialize)]
struct IdentifierRow<'a> {
    /// Order in which `network build` reads it (the row's id in the store): of one seller's ways
    /// of writing a value, the link's evidence quotes the first.
    seq: i64,
    listing_id: &'a str,
    seller_id: &'a str,
    /// The kind values are compared under (a WhatsApp number is a `phone`).
    kind: &'a str,
    /// The kind as recorded.
    recorded_kind: &'a str,
    /// The normalised value.
    value: &'a str,
    /// As the listing wrote it.
    raw: &'a str,
}

/// `settings.json`: what decides which shared values link, and what the export holds.
#[derive(Debug, Serialize)]
pub struct ExportSettings {
    /// Always `knockoff-records-export`.
    pub format: &'static str,
    /// Format version.
    pub version: u32,
    /// The knockoff that wrote it.
    pub knockoff_version: &'static str,
    /// A value shared by more sellers than this links nobody (`network.max_sharing`).
    pub max_sharing: usize,
    /// Values that never link, as `kind:value` keys normalised like the identifiers, sorted.
    pub never_link: Vec<String>,
    /// Rows in `identifiers.jsonl`.
    pub identifiers: u64,
    /// Recorded listings.
    pub listings: u64,
}

/// Writes the export of `store` to the directory `out`, which must not exist.
pub fn export(store: &RecordStore, opts: &BuildOptions, out: &Path) -> Result<ExportSettings> {
    if out.exists() {
        bail!("{} already exists; choose another directory or remove it", out.display());
    }
    let tmp = crate::util::fsutil::temp_sibling(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the leftover {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = write_export(store, opts, &tmp);
    let settings = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    crate::util::fsutil::sync_dir(out.parent());
    Ok(settings)
}

/// Writes both files into `dir`.
fn write_export(store: &RecordStore, opts: &BuildOptions, dir: &Path) -> Result<ExportSettings> {
    let conn = Connection::open_with_flags(
        store.path(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", store.path().display()))?;
    // one read transaction: identifiers and counts from the same state of the store
    conn.execute_batch("BEGIN")
        .with_context(|| format!("cannot read {}", store.path().display()))?;
    let identifiers = write_identifiers(&conn, &dir.join(IDENTIFIERS))?;
    let listings =
        conn.query_row("SELECT count(*) FROM listings", [], |r| r.get::<_, i64>(0))? as u64;
    let mut never_link: Vec<String> = opts.never_link.iter().cloned().collect();
    never_link.sort();
    let settings = ExportSettings {
        format: FORMAT,
        version: VERSION,
        knockoff_version: env!("CARGO_PKG_VERSION"),
        max_sharing: opts.max_sharing,
        never_link,
        identifiers,
        listings,
    };
    let path = dir.join(SETTINGS);
    let mut text = serde_json::to_string_pretty(&settings)?;
    text.push('\n');
    crate::util::fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(settings)
}

/// Streams the identifiers to `path` in the order `network build` reads them; returns how many.
/// Rows of a kind this knockoff does not know are left out, as `network build` leaves them out.
fn write_identifiers(conn: &Connection, path: &Path) -> Result<u64> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut st = conn.prepare(
        "SELECT rowid, listing_id, seller_id, kind, value, raw FROM identifiers ORDER BY rowid",
    )?;
    let mut rows = st.query([])?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let recorded: String = r.get(3)?;
        let Some(kind) = Kind::parse(&recorded) else {
            continue;
        };
        let (listing_id, seller_id, value, raw): (String, String, String, String) =
            (r.get(1)?, r.get(2)?, r.get(4)?, r.get(5)?);
        let row = IdentifierRow {
            seq: r.get(0)?,
            listing_id: &listing_id,
            seller_id: &seller_id,
            kind: kind.key_kind().as_str(),
            recorded_kind: kind.as_str(),
            value: &value,
            raw: &raw,
        };
        serde_json::to_writer(&mut w, &row)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    let file = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::normalise::Identifier;
    use crate::network::record::RecordedListing;

    fn id(kind: Kind, value: &str, raw: &str) -> Identifier {
        Identifier { kind, value: value.into(), raw: raw.into(), country: None }
    }

    #[test]
    fn exports_identifiers_in_build_order_with_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RecordStore::open(dir.path(), true).unwrap().unwrap();
        let listing = |lid: &str, sid: &str, ids: Vec<Identifier>| RecordedListing {
            listing_id: lid.into(),
            seller_id: sid.into(),
            verdict: "clear".into(),
            rule: "r".into(),
            ids,
            ..RecordedListing::default()
        };
        store
            .record(&[
                listing(
                    "l1",
                    "s1",
                    vec![id(Kind::Whatsapp, "+8613800138000", "+86 138 0013 8000")],
                ),
                listing(
                    "l2",
                    "s2",
                    vec![
                        id(Kind::Phone, "+8613800138000", "13800138000"),
                        id(Kind::Email, "a@b.example", "A@B.example"),
                    ],
                ),
            ])
            .unwrap();
        let opts = BuildOptions {
            max_sharing: 7,
            never_link: ["email:x@y.example".to_string()].into(),
            photo_hash_bits: 4,
            photo_min_similarity: 0.8,
        };
        let out = dir.path().join("export");
        let s = export(&store, &opts, &out).unwrap();
        assert_eq!((s.identifiers, s.listings, s.max_sharing), (3, 2, 7));
        let text = std::fs::read_to_string(out.join(IDENTIFIERS)).unwrap();
        let rows: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows[0]["kind"], "phone", "a WhatsApp number is compared as a phone number");
        assert_eq!(rows[0]["recorded_kind"], "whatsapp");
        assert_eq!(rows[1]["raw"], "13800138000");
        assert!(rows.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
        let settings: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(SETTINGS)).unwrap()).unwrap();
        assert_eq!(settings["never_link"], serde_json::json!(["email:x@y.example"]));
        assert!(export(&store, &opts, &out).is_err(), "an existing export is never overwritten");
    }
}
