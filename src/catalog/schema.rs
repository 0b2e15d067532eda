//! The catalog database's schema: a numbered list of migrations, each a function, that a new
//! catalog file is created through and an older one upgraded through.
//!
//! `meta.schema_version` is the data directory's format version (`SCHEMA_VERSION`, 1 since the
//! first catalog): knockoff refuses a catalog of another format, and snapshots record it.
//! `meta.schema_migration` is the number of the last migration applied. Catalogs written before
//! knockoff recorded it have none; their migration is recognised once, from the tables they have
//! (each migration added tables, so a file holds the tables of the first N migrations), and
//! recorded when the catalog is next opened for writing.

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OptionalExtension};

/// Version of the data directory's format.
pub const SCHEMA_VERSION: i64 = 1;

/// A migration: SQL run in the transaction that upgrades a catalog, and the table it adds, by
/// which a catalog from before `schema_migration` was recorded is recognised.
struct Migration {
    /// What it adds, in the words of an error message.
    what: &'static str,
    /// The table whose presence shows the migration was applied.
    table: &'static str,
    /// Applies it.
    apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// The migrations, in order: migration N is `MIGRATIONS[N - 1]`. Append only: a released
/// migration never changes (catalogs were made by it).
const MIGRATIONS: &[Migration] = &[
    Migration { what: "products and images", table: "meta", apply: products_and_images },
    Migration { what: "background photos", table: "background", apply: background },
    Migration { what: "local features", table: "local_features", apply: local_features },
    Migration { what: "shared points", table: "shared_points", apply: shared_points },
    Migration { what: "colours", table: "colours", apply: colours },
    Migration { what: "perceptual hashes", table: "phashes", apply: phashes },
];

/// The migration a catalog written by this knockoff is at.
pub const CURRENT: usize = MIGRATIONS.len();

/// Migration 1: brands, products, their sellers and images, the vectors and the meta table.
fn products_and_images(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS brands(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS products(
    id INTEGER PRIMARY KEY,
    brand INTEGER NOT NULL REFERENCES brands(id),
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    price REAL NOT NULL,
    currency TEXT NOT NULL,
    category TEXT,
    removed INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    UNIQUE(brand, product_id));
CREATE TABLE IF NOT EXISTS sellers(
    product INTEGER NOT NULL REFERENCES products(id),
    seller_id TEXT NOT NULL,
    PRIMARY KEY(product, seller_id));
CREATE TABLE IF NOT EXISTS vectors(id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS images(
    product INTEGER NOT NULL REFERENCES products(id),
    vector INTEGER NOT NULL REFERENCES vectors(id),
    source TEXT NOT NULL,
    PRIMARY KEY(product, vector));
CREATE INDEX IF NOT EXISTS images_vector ON images(vector);
",
    )
}

/// Migration 2: background photos for score normalisation.
fn background(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS background(id INTEGER PRIMARY KEY, \
         sha256 TEXT NOT NULL UNIQUE, source TEXT NOT NULL);",
    )
}

/// Migration 3: local features of reference images (geometric verification).
fn local_features(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS local_features(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);",
    )
}

/// Migration 4: points each reference image shares with its brand's other products.
fn shared_points(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS shared_points(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);",
    )
}

/// Migration 5: colour histograms of reference images.
fn colours(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS colours(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);",
    )
}

/// Migration 6: perceptual hashes of reference images.
fn phashes(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS phashes(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);",
    )
}

/// Which tables a catalog has, by the migrations that made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// The last migration applied (0: an empty file).
    pub migration: usize,
}

impl Schema {
    /// The schema of a catalog written by this knockoff.
    pub const CURRENT: Schema = Schema { migration: CURRENT };

    /// Whether the catalog has the local features table.
    pub fn has_features(self) -> bool {
        self.migration >= 3
    }
    /// Whether the catalog has the shared points table.
    pub fn has_shared(self) -> bool {
        self.migration >= 4
    }
    /// Whether the catalog has the colours table.
    pub fn has_colours(self) -> bool {
        self.migration >= 5
    }
    /// Whether the catalog has the perceptual hashes table.
    pub fn has_phashes(self) -> bool {
        self.migration >= 6
    }
}

fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?1",
        [name],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Whether the catalog database has its `meta` table (a file without it was never committed to).
pub fn has_meta(conn: &Connection) -> Result<bool> {
    Ok(has_table(conn, "meta")?)
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0)).optional()?)
}

/// The migration a catalog is at: `meta.schema_migration`, or for a catalog written before
/// knockoff recorded it, the number of migrations whose tables it has. `db` names the file in
/// errors.
pub fn read(conn: &Connection, db: &std::path::Path) -> Result<Schema> {
    if !has_meta(conn)? {
        return Ok(Schema { migration: 0 });
    }
    let migration = match meta(conn, "schema_migration")? {
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= CURRENT => n,
            _ => bail!(
                "{} has schema migration {v:?}; this knockoff knows migrations 1 to {CURRENT}: \
                 use a newer knockoff",
                db.display()
            ),
        },
        None => recognise(conn)?,
    };
    Ok(Schema { migration })
}

/// The migration of a catalog from before `schema_migration` was recorded: how many migrations'
/// tables it has, in order.
fn recognise(conn: &Connection) -> Result<usize> {
    let mut n = 0;
    for m in MIGRATIONS {
        if !has_table(conn, m.table)? {
            break;
        }
        n += 1;
    }
    Ok(n)
}

/// Fails unless the catalog's `schema_version` is this knockoff's format version.
pub fn check_version(conn: &Connection, db: &std::path::Path) -> Result<()> {
    let v = meta(conn, "schema_version")?;
    if v.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
        bail!(
            "{} has format version {:?}; this knockoff reads version {SCHEMA_VERSION}",
            db.display(),
            v
        );
    }
    Ok(())
}

/// Creates or upgrades the schema in one transaction: applies the migrations the catalog lacks,
/// in order, and records its format version and migration, so that a kill while a catalog is
/// created or upgraded leaves it as it was or fully upgraded.
pub fn upgrade(conn: &Connection, db: &std::path::Path) -> Result<Schema> {
    let tx = conn.unchecked_transaction()?;
    let version = if has_meta(&tx)? { meta(&tx, "schema_version")? } else { None };
    if let Some(v) = &version {
        if *v != SCHEMA_VERSION.to_string() {
            bail!(
                "{} has format version {v}; this knockoff reads version {SCHEMA_VERSION}",
                db.display()
            );
        }
    }
    let from = read(&tx, db)?.migration;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(from) {
        (m.apply)(&tx).with_context(|| {
            format!("cannot create the catalog schema (migration {}: {})", i + 1, m.what)
        })?;
    }
    if version.is_none() {
        tx.execute("INSERT INTO meta VALUES('schema_version', ?1)", [SCHEMA_VERSION.to_string()])?;
    }
    if meta(&tx, "schema_migration")? != Some(CURRENT.to_string()) {
        tx.execute(
            "INSERT OR REPLACE INTO meta VALUES('schema_migration', ?1)",
            [CURRENT.to_string()],
        )?;
    }
    tx.commit().context("cannot create the catalog schema")?;
    Ok(Schema::CURRENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Store;

    /// A catalog file as knockoff wrote it after `n` migrations, before it recorded
    /// `schema_migration` (format version 1 since the first), with one brand in it.
    fn legacy_catalog(dir: &std::path::Path, n: usize) {
        let conn = Connection::open(dir.join("catalog.sqlite")).unwrap();
        for m in &MIGRATIONS[..n] {
            (m.apply)(&conn).unwrap();
        }
        if n > 0 {
            conn.execute_batch(
                "INSERT INTO meta VALUES('schema_version', '1');
                 INSERT INTO brands(name) VALUES('acme');",
            )
            .unwrap();
        }
    }

    fn tables(conn: &Connection) -> Vec<(String, String, Option<String>)> {
        let mut st =
            conn.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY rowid").unwrap();
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    fn meta_of(conn: &Connection, key: &str) -> Option<String> {
        meta(conn, key).unwrap()
    }

    #[test]
    fn a_new_catalog_is_made_by_every_migration_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        assert_eq!(read(&conn, dir.path()).unwrap().migration, 0);
        assert_eq!(upgrade(&conn, dir.path()).unwrap(), Schema::CURRENT);
        let names: Vec<String> = tables(&conn).into_iter().map(|(_, name, _)| name).collect();
        let expected = [
            "meta",
            "sqlite_autoindex_meta_1",
            "brands",
            "sqlite_autoindex_brands_1",
            "products",
            "sqlite_autoindex_products_1",
            "sellers",
            "sqlite_autoindex_sellers_1",
            "vectors",
            "sqlite_autoindex_vectors_1",
            "images",
            "sqlite_autoindex_images_1",
            "images_vector",
            "background",
            "sqlite_autoindex_background_1",
            "local_features",
            "sqlite_autoindex_local_features_1",
            "shared_points",
            "sqlite_autoindex_shared_points_1",
            "colours",
            "sqlite_autoindex_colours_1",
            "phashes",
            "sqlite_autoindex_phashes_1",
        ];
        assert_eq!(names, expected);
        assert_eq!(meta_of(&conn, "schema_version").as_deref(), Some("1"));
        assert_eq!(meta_of(&conn, "schema_migration"), Some(CURRENT.to_string()));
        // opening it again changes nothing
        let before = tables(&conn);
        assert_eq!(upgrade(&conn, dir.path()).unwrap(), Schema::CURRENT);
        assert_eq!(tables(&conn), before);
    }

    #[test]
    fn every_older_layout_is_recognised_read_and_upgraded_to_the_current_one() {
        let fresh = tempfile::tempdir().unwrap();
        let conn = Connection::open(fresh.path().join("catalog.sqlite")).unwrap();
        upgrade(&conn, fresh.path()).unwrap();
        let current = tables(&conn);
        for n in 1..=CURRENT {
            let dir = tempfile::tempdir().unwrap();
            legacy_catalog(dir.path(), n);
            // read as it is, without a change: its tables say which migrations made it
            let store = Store::open(dir.path(), false).unwrap();
            assert_eq!(store.schema.migration, n, "layout after migration {n}");
            let stats = store.stats().unwrap();
            assert_eq!((stats.brands, stats.live_vectors_with_phash), (0, 0));
            store.view(&crate::config::Config::default()).unwrap();
            drop(store);
            // opened to write: upgraded through the migrations it lacks, its rows kept
            let store = Store::open(dir.path(), true).unwrap();
            assert_eq!(store.schema, Schema::CURRENT);
            drop(store);
            let conn = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
            assert_eq!(tables(&conn), current, "layout after migration {n}");
            assert_eq!(meta_of(&conn, "schema_migration"), Some(CURRENT.to_string()));
            let brands: i64 =
                conn.query_row("SELECT count(*) FROM brands", [], |r| r.get(0)).unwrap();
            assert_eq!(brands, 1);
        }
    }

    #[test]
    fn a_catalog_of_the_current_layout_without_its_migration_recorded_is_current() {
        let dir = tempfile::tempdir().unwrap();
        legacy_catalog(dir.path(), CURRENT);
        let conn = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        let before = tables(&conn);
        assert_eq!(read(&conn, dir.path()).unwrap(), Schema::CURRENT);
        upgrade(&conn, dir.path()).unwrap();
        assert_eq!(tables(&conn), before);
        assert_eq!(meta_of(&conn, "schema_migration"), Some(CURRENT.to_string()));
    }

    #[test]
    fn a_newer_migration_or_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("catalog.sqlite")).unwrap();
        upgrade(&conn, dir.path()).unwrap();
        conn.execute(
            "UPDATE meta SET value=?1 WHERE key='schema_migration'",
            [(CURRENT + 1).to_string()],
        )
        .unwrap();
        let e = upgrade(&conn, dir.path()).unwrap_err().to_string();
        assert!(e.contains("use a newer knockoff"), "{e}");
        assert!(Store::open(dir.path(), false).is_err());
        conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'", []).unwrap();
        let e = upgrade(&conn, dir.path()).unwrap_err().to_string();
        assert!(e.contains("has format version 2"), "{e}");
    }
}
