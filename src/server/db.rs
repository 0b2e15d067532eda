//! The server's own database, `DATA/server.sqlite` (SQLite in WAL mode): API keys, stored
//! verdicts and decisions, jobs. Its schema is versioned by `PRAGMA user_version` and changed only by
//! the numbered migrations below, each applied once in its own transaction.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::Connection;

/// File name of the server database in the data directory.
pub const FILE: &str = "server.sqlite";

/// Migration N (1-based) brings the schema from version N-1 to N. Never edit one that shipped;
/// add another.
const MIGRATIONS: &[&str] = &[
    // 1: keys, verdicts, decisions
    "CREATE TABLE keys(
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL,
        role TEXT NOT NULL,
        brand TEXT,
        name TEXT,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER);
     CREATE TABLE verdicts(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        submitted_by TEXT NOT NULL,
        listing_id TEXT,
        verdict TEXT NOT NULL,
        risk REAL NOT NULL,
        brand TEXT,
        product_id TEXT,
        seller_id TEXT,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL);
     CREATE INDEX verdicts_brand ON verdicts(brand, verdict);
     CREATE INDEX verdicts_submitter ON verdicts(submitted_by);
     CREATE TABLE decisions(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        verdict INTEGER NOT NULL REFERENCES verdicts(id),
        decision TEXT NOT NULL,
        note TEXT NOT NULL,
        key_id TEXT NOT NULL,
        created_at INTEGER NOT NULL);
     CREATE INDEX decisions_verdict ON decisions(verdict);",
    // 2: each verdict's listing photos with their perceptual hashes, for allow-lists
    "CREATE TABLE verdict_photos(
        verdict INTEGER NOT NULL REFERENCES verdicts(id),
        image TEXT NOT NULL,
        phash INTEGER);
     CREATE INDEX verdict_photos_verdict ON verdict_photos(verdict);",
    // 3: jobs and their listings; an item's verdict is set in the transaction that stores it
    "CREATE TABLE jobs(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        submitted_by TEXT NOT NULL,
        total INTEGER NOT NULL,
        done INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        finished_at INTEGER);
     CREATE TABLE job_items(
        job INTEGER NOT NULL REFERENCES jobs(id),
        seq INTEGER NOT NULL,
        line INTEGER NOT NULL,
        listing TEXT NOT NULL,
        verdict INTEGER REFERENCES verdicts(id),
        PRIMARY KEY(job, seq)) WITHOUT ROWID;
     CREATE INDEX jobs_unfinished ON jobs(finished_at);",
];

/// Opens (creating when missing) the server database in `data` and brings its schema up to date.
pub fn open(data: &Path) -> Result<Connection> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let path = data.join(FILE);
    let mut conn =
        Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)
        .with_context(|| format!("cannot update the schema of {}", path.display()))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if version > MIGRATIONS.len() {
        bail!(
            "schema version {version} is newer than this knockoff knows ({}); use a newer knockoff",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).with_context(|| format!("migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `secs` since the epoch as an RFC 3339 UTC time (`2026-12-03T18:40:00Z`): the one formatter,
/// shared with the case files.
pub use crate::network::case::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(dir.path()).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        open(dir.path()).expect("reopening applies nothing again");
        let conn = Connection::open(dir.path().join(FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = open(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("newer"), "{e:#}");
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_256_000 + 3661), "2026-12-03T01:01:01Z");
    }
}
