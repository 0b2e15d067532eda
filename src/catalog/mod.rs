//! Reference catalogs: brand owners' products, their genuine photos and authorised sellers, stored
//! in a data directory.
//!
//! Data directory layout (format version 1):
//! - `catalog.sqlite`: brands, products, authorised sellers, images and the meta table (schema
//!   version, model, committed vector count, current vector file and HNSW generation);
//! - `vectors-<gen>.f32`: the reference embeddings (see `vectors`), row = `vectors.id`;
//! - `graph-<gen>.knkg`: the HNSW search graph over the first `hnsw_covered` vectors, present for
//!   large catalogs (see `graph`). Graphs written by knockoff before it had its own graph (the
//!   hnsw_rs directory `hnsw/<gen>/`) are not read: `query` and `scan` then ask for `catalog
//!   compact`, which builds the graph anew, as does the next `catalog add` that adds images;
//! - `background-<gen>.vec` (optional): embeddings of background photos, images that are not in
//!   the catalog, for score normalisation (see `Store::add_background`); rows match table
//!   `background`, count in meta `background_count`;
//! - table `local_features`: each reference image's local features for geometric verification
//!   (`verify::orb::Features::to_bytes`, format `KNKORB02`), keyed by content hash like `vectors`;
//!   images added before knockoff stored them, or stored in the outdated format `KNKORB01`, are
//!   not verified until they are added again (which replaces outdated features);
//! - table `shared_points`: for each reference image, which of its local feature points images of
//!   the brand's other products share (`verify::Shared::to_bytes`, format `KNKSHR01`), keyed by
//!   content hash; found again for a brand whenever `catalog add` stores products of it or
//!   `catalog compact` deletes some (see `Store::mark_shared`);
//! - table `colours`: the colour histogram of each reference image not on a white backdrop
//!   (`colour::Colours::to_bytes`, format `KNKCOL01`), keyed by content hash; images added before
//!   knockoff stored them have none, and take no part in telling siblings apart by colour;
//! - table `phashes`: the perceptual hash of each reference image (`phash::of`, 8 bytes, u64
//!   LE), keyed by content hash; images added before knockoff stored them are not recognised as
//!   near-duplicates (`scan` verifies them on local features only);
//! - `config.toml` (optional): settings (see `config`);
//! - `lock`: held while a command writes, so two writers never interleave.
//!
//! Every change commits in one SQLite transaction after the files it points to are written and
//! synced, so a crash leaves the previous catalog readable.

pub mod allowlist;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::config::Config;
use crate::index::graph::Graph;
use crate::index::vectors::{self, Storage, VectorFile};
use crate::index::Index;
use crate::input::records::{self, RawRecord};
use crate::model::Manifest;
use crate::vision::source::ImageRef;

pub mod snapshot;

/// Version of the data directory's format.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS background(id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS local_features(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS shared_points(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS colours(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS phashes(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
";

/// Images of the brand's other products each reference image is compared with to find its shared
/// points (`Store::mark_shared`): the most similar ones, so a brand's large catalog costs linear
/// time.
pub const SHARED_NEIGHBOURS: usize = 32;

/// A product as given in a catalog file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    /// Line in the catalog file.
    pub line: usize,
    /// Brand name.
    pub brand: String,
    /// The brand's own product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// Reference (genuine) price.
    pub price: f64,
    /// ISO 4217 currency code of the price.
    pub currency: String,
    /// Genuine photos.
    pub images: Vec<ImageRef>,
    /// Sellers allowed to sell the brand's products.
    pub authorized_sellers: Vec<String>,
    /// Optional category.
    pub category: Option<String>,
}

/// Turns a raw record from a catalog file into a product, or says what is wrong with it.
pub fn parse_product(
    raw: &RawRecord,
    base_dir: &Path,
    max_images: usize,
) -> Result<ProductRecord, String> {
    let f = raw.fields.as_ref().map_err(Clone::clone)?;
    let images = records::list(f, "images")?;
    if images.is_empty() {
        return Err("missing field `images` (one or more image paths or URLs)".into());
    }
    if images.len() > max_images {
        return Err(format!(
            "{} images, over the limit of {max_images} (limits.max_images_per_record)",
            images.len()
        ));
    }
    let currency = records::text(f, "currency")?.to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("field `currency` must be a 3-letter code like EUR, got {currency:?}"));
    }
    Ok(ProductRecord {
        line: raw.line,
        brand: records::text(f, "brand")?,
        product_id: records::text(f, "product_id")?,
        title: records::text(f, "title")?,
        price: reference_price(f)?,
        currency,
        images: images.iter().map(|s| ImageRef::parse(s, base_dir)).collect::<Result<_, _>>()?,
        authorized_sellers: records::list(f, "authorized_sellers")?,
        category: records::opt_text(f, "category")?,
    })
}

/// A product's reference price: a price above 0 (a listing's price is compared with it as a ratio).
fn reference_price(f: &serde_json::Map<String, serde_json::Value>) -> Result<f64, String> {
    match records::price(f, "price")? {
        p if p > 0.0 => Ok(p),
        _ => Err("field `price` must be above 0: a reference price of 0 cannot be compared with listings' prices".into()),
    }
}

/// A live product as the scanner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ProductInfo {
    /// Brand name.
    pub brand: String,
    /// The brand's product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// Reference price.
    pub price: f64,
    /// Currency of the reference price.
    pub currency: String,
    /// Category, if given.
    pub category: Option<String>,
}

/// Everything a search needs: live products, which products each vector belongs to, and who may
/// sell each brand.
pub struct CatalogView {
    /// Live products.
    pub products: Vec<ProductInfo>,
    /// For each vector id: (index into `products`, reference image source); empty when hidden.
    pub vector_products: Vec<Vec<(usize, String)>>,
    /// Sellers authorised per brand.
    pub brand_sellers: HashMap<String, HashSet<String>>,
    /// The reference vectors and their index.
    pub index: Index,
    /// Embeddings of the background photos (exact search), when the catalog has any.
    pub background: Option<Index>,
    /// For each product (index into `products`): its reference vectors.
    pub product_vectors: Vec<Vec<u32>>,
    /// Index into `products` by (brand, product id).
    pub product_index: HashMap<(String, String), usize>,
    /// Local features of the reference images, when geometric verification is on.
    pub features: Option<FeatureStore>,
    /// Perceptual hashes of the live reference images by vector id, when geometric verification
    /// is on: a scan looks up each listing photo's hashes here, so a near-duplicate is verified
    /// however low the embedding ranks it.
    pub hashes: crate::vision::phash::Index,
}

/// Reference images whose local features `FeatureStore` keeps in memory at most.
const FEATURE_CACHE_IMAGES: usize = 10_000;

/// Local features of reference images, read from the catalog when first needed and kept (up to
/// `FEATURE_CACHE_IMAGES`).
pub struct FeatureStore {
    inner: std::sync::Mutex<FeatureCache>,
}

struct FeatureCache {
    conn: Option<Connection>,
    /// Whether the catalog has the `shared_points` table (older ones do not).
    has_shared: bool,
    read: HashMap<u32, Option<std::sync::Arc<crate::vision::verify::orb::Features>>>,
    shared: HashMap<u32, Option<std::sync::Arc<crate::vision::verify::Shared>>>,
    /// Whether the catalog has the `colours` table (older ones do not).
    has_colours: bool,
    colours: HashMap<u32, Option<crate::vision::colour::Colours>>,
    /// Whether the catalog has the `phashes` table (older ones do not).
    has_phashes: bool,
    phashes: HashMap<u32, Option<u64>>,
    /// Whether outdated features were reported (once per scan, not once per image).
    warned_outdated: bool,
}

impl FeatureCache {
    /// The `data` stored for reference vector `id` in `table` (keyed by content hash), when the
    /// catalog has the table (`present`) and a row for the image.
    fn blob(&self, table: &str, present: bool, id: u32) -> Result<Option<Vec<u8>>> {
        match (&self.conn, present) {
            (Some(conn), true) => Ok(conn
                .query_row(&format!("SELECT t.data FROM vectors v JOIN {table} t ON t.sha256=v.sha256 WHERE v.id=?1"), [id as i64], |r| r.get(0))
                .optional()?),
            _ => Ok(None),
        }
    }
}

/// Keeps `value` for `id` in a cache of at most `FEATURE_CACHE_IMAGES` entries (emptied when full:
/// bounded memory on long scans of large catalogs, about 40 KB per image of features) and returns it.
fn remember<T: Clone>(cache: &mut HashMap<u32, T>, id: u32, value: T) -> T {
    if cache.len() >= FEATURE_CACHE_IMAGES {
        cache.clear();
    }
    cache.insert(id, value.clone());
    value
}

impl FeatureStore {
    /// Opens the features of the catalog database `db` for reading (a catalog written before
    /// knockoff stored features has none).
    fn open(db: &Path, in_snapshot: bool) -> Result<FeatureStore> {
        let conn = if in_snapshot {
            snapshot::open_db(db)?
        } else {
            Connection::open_with_flags(
                db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .with_context(|| format!("cannot open {}", db.display()))?
        };
        let table = |name: &str| -> Result<bool> {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name=?1",
                [name],
                |r| r.get::<_, i64>(0),
            )? > 0)
        };
        let (has, has_shared, has_colours, has_phashes) = (
            table("local_features")?,
            table("shared_points")?,
            table("colours")?,
            table("phashes")?,
        );
        let cache = FeatureCache {
            conn: has.then_some(conn),
            has_shared,
            read: HashMap::new(),
            shared: HashMap::new(),
            has_colours,
            colours: HashMap::new(),
            has_phashes,
            phashes: HashMap::new(),
            warned_outdated: false,
        };
        Ok(FeatureStore { inner: std::sync::Mutex::new(cache) })
    }

    /// The local features of reference vector `id`, `None` when none are stored for it (or they
    /// are damaged, which is logged).
    pub fn get(
        &self,
        id: u32,
    ) -> Result<Option<std::sync::Arc<crate::vision::verify::orb::Features>>> {
        let mut c = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: feature cache poisoned"))?;
        if let Some(f) = c.read.get(&id) {
            return Ok(f.clone());
        }
        let blob = c.blob("local_features", true, id)?;
        // damaged or outdated features cost that image its verification, not the scan
        let f = match blob.map(|b| crate::vision::verify::orb::Features::from_bytes(&b)) {
            None => None,
            Some(Ok(f)) => Some(std::sync::Arc::new(f)),
            Some(Err(e @ crate::vision::verify::orb::FormatError::Outdated(_))) => {
                if !c.warned_outdated {
                    c.warned_outdated = true;
                    tracing::warn!("reference images are not verified: {e}; add the catalog's products again to store new features (`knockoff catalog stats` counts the images verified)");
                }
                None
            }
            Some(Err(e)) => {
                tracing::warn!("reference image (vector {id}) is not verified: {e}; add it again to store new features");
                None
            }
        };
        Ok(remember(&mut c.read, id, f))
    }

    /// The points of reference vector `id` that images of the brand's other products share, `None`
    /// when they were not found (a catalog from before knockoff looked for them, or damaged, which
    /// is logged).
    pub fn shared(&self, id: u32) -> Result<Option<std::sync::Arc<crate::vision::verify::Shared>>> {
        let mut c = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: feature cache poisoned"))?;
        if let Some(s) = c.shared.get(&id) {
            return Ok(s.clone());
        }
        let blob = c.blob("shared_points", c.has_shared, id)?;
        let s = match blob.map(|b| crate::vision::verify::Shared::from_bytes(&b)) {
            None => None,
            Some(Ok(s)) => Some(std::sync::Arc::new(s)),
            Some(Err(e)) => {
                tracing::warn!("reference image (vector {id}): {e}; add its brand's products again to find its shared points");
                None
            }
        };
        Ok(remember(&mut c.shared, id, s))
    }

    /// The colours of reference vector `id`, `None` when none are stored (a photo on a white
    /// backdrop, one added before knockoff stored colours, or damaged ones, which is logged).
    pub fn colours(&self, id: u32) -> Result<Option<crate::vision::colour::Colours>> {
        let mut c = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: feature cache poisoned"))?;
        if let Some(s) = c.colours.get(&id) {
            return Ok(s.clone());
        }
        let s = match c.blob("colours", c.has_colours, id)? {
            None => None,
            Some(b) => {
                let s = crate::vision::colour::Colours::from_bytes(&b);
                if s.is_none() {
                    tracing::warn!("reference image (vector {id}): its stored colours are damaged ({} bytes); add it again to store them", b.len());
                }
                s
            }
        };
        Ok(remember(&mut c.colours, id, s))
    }

    /// The perceptual hash of reference vector `id` (`phash::of`), `None` when none is stored (an
    /// image added before knockoff stored them, or a damaged row, which is logged).
    pub fn phash(&self, id: u32) -> Result<Option<u64>> {
        let mut c = self
            .inner
            .lock()
            .map_err(|_| anyhow::anyhow!("internal error: feature cache poisoned"))?;
        if let Some(h) = c.phashes.get(&id) {
            return Ok(*h);
        }
        let h = match c.blob("phashes", c.has_phashes, id)? {
            None => None,
            Some(b) => match <[u8; 8]>::try_from(b.as_slice()) {
                Ok(bytes) => Some(u64::from_le_bytes(bytes)),
                Err(_) => {
                    tracing::warn!("reference image (vector {id}): its stored perceptual hash is damaged ({} bytes); add it again to store it", b.len());
                    None
                }
            },
        };
        Ok(remember(&mut c.phashes, id, h))
    }
}

impl CatalogView {
    /// True when vector `id` belongs to at least one live product.
    pub fn visible(&self, id: u32) -> bool {
        self.vector_products.get(id as usize).is_some_and(|v| !v.is_empty())
    }
}

/// Which reference images `Store::mark_shared` examines.
#[derive(Debug, Clone, Copy)]
pub enum SharedScope<'a> {
    /// Every image of these brands' live products.
    Brands(&'a [String]),
    /// The images with these content hashes, and their `SHARED_NEIGHBOURS` nearest images of
    /// their brand's other products, whose neighbourhood they may have joined (or, when their
    /// products were removed, left).
    Near(&'a [String]),
}

/// Counts shown by `catalog stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Brands with live products.
    pub brands: usize,
    /// Live products.
    pub products: usize,
    /// Removed products not yet compacted away.
    pub removed_products: usize,
    /// Distinct reference images (embeddings) stored.
    pub vectors: usize,
    /// Reference images of live products.
    pub live_vectors: usize,
    /// Vectors covered by the HNSW graph (0: exact search only).
    pub hnsw_covered: usize,
    /// Background photos stored for score normalisation.
    pub background_images: usize,
    /// Reference images of live products with usable local features stored (geometric
    /// verification; features in an outdated format do not count).
    pub live_vectors_with_features: usize,
    /// Reference images of live products whose points shared with the brand's other products
    /// were looked for (`Store::mark_shared`).
    pub live_vectors_with_shared: usize,
    /// Reference images of live products with colours stored (`colour::Colours::of_reference`;
    /// photos on a white backdrop have none).
    pub live_vectors_with_colours: usize,
    /// Reference images of live products with a perceptual hash stored (`phash::of`; flat photos
    /// and images added before knockoff stored them have none).
    pub live_vectors_with_phash: usize,
    /// Model the catalog was built with.
    pub model: Option<String>,
    /// Size of the data directory's files in bytes.
    pub disk_bytes: u64,
}

/// One row of `catalog list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListedProduct {
    /// Brand name.
    pub brand: String,
    /// Product identifier.
    pub product_id: String,
    /// Title.
    pub title: String,
    /// Reference price.
    pub price: f64,
    /// Currency.
    pub currency: String,
    /// Number of reference images.
    pub images: usize,
    /// Authorised sellers of this product.
    pub authorized_sellers: Vec<String>,
    /// Category, when given.
    pub category: Option<String>,
    /// True when removed (hidden from search until compaction deletes it).
    pub removed: bool,
}

/// A catalog in a data directory, opened for reading or writing.
pub struct Store {
    dir: PathBuf,
    conn: Connection,
    _lock: Option<File>,
    /// The manifest, when the directory is a read-only snapshot (`snapshot`).
    snapshot: Option<snapshot::SnapshotManifest>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Creates the schema and its version in one transaction, so that a kill while a catalog is
/// created leaves either no tables or all of them with their version.
fn create_schema(conn: &Connection, db: &Path) -> Result<()> {
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch(SCHEMA).context("cannot create the catalog schema")?;
    let version: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0))
        .optional()?;
    match version {
        None => {
            tx.execute(
                "INSERT INTO meta VALUES('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => bail!(
            "{} has format version {v}; this knockoff reads version {SCHEMA_VERSION}",
            db.display()
        ),
    }
    tx.commit().context("cannot create the catalog schema")?;
    Ok(())
}

/// Whether the catalog database has its `meta` table (a file without it was never committed to).
fn has_meta(conn: &Connection) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
        [],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

impl Store {
    /// Opens an existing catalog to change it (remove, compact, clear the background): an error,
    /// with nothing created, when `dir` holds no catalog. Only adding creates one (`open(dir, true)`).
    pub fn open_existing(dir: &Path) -> Result<Store> {
        if !dir.join("catalog.sqlite").is_file() {
            bail!("no catalog in {} (add one with `knockoff catalog add FILE`, or choose another with --data)", dir.display());
        }
        drop(Store::open(dir, false)?); // a catalog file never committed to is no catalog either
        Store::open(dir, true)
    }

    /// Opens the catalog in `dir`; `write` takes the directory's lock and creates it when missing.
    pub fn open(dir: &Path, write: bool) -> Result<Store> {
        if snapshot::is_snapshot(dir) {
            if write {
                bail!("{} is a catalog snapshot, which is read-only: change the data directory it was taken from, then take a new snapshot", dir.display());
            }
            return snapshot::open(dir);
        }
        let db = dir.join("catalog.sqlite");
        if !write && !db.is_file() {
            bail!("no catalog in {} (add one with `knockoff catalog add FILE`, or choose another with --data)", dir.display());
        }
        let lock = if write {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
            let f = File::create(dir.join("lock"))
                .with_context(|| format!("cannot create lock in {}", dir.display()))?;
            match f.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    bail!(
                        "another knockoff command is writing to {}; try again when it ends",
                        dir.display()
                    )
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).context("cannot lock the data directory")
                }
            }
            Some(f)
        } else {
            None
        };
        let conn =
            Connection::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        if write {
            create_schema(&conn, &db)?;
        } else if !has_meta(&conn)? {
            bail!(
                "no catalog in {} (the first `knockoff catalog add` there stopped before it saved anything; run it again)",
                dir.display()
            );
        }
        let store = Store { dir: dir.to_path_buf(), conn, _lock: lock, snapshot: None };
        if !write {
            let v = store.meta("schema_version")?;
            if v.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
                bail!(
                    "{} has format version {:?}; this knockoff reads version {SCHEMA_VERSION}",
                    db.display(),
                    v
                );
            }
        }
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn meta_num(&self, key: &str) -> Result<u64> {
        Ok(self.meta(key)?.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Number of committed vectors.
    pub fn vector_count(&self) -> Result<usize> {
        Ok(self.meta_num("vector_count")? as usize)
    }

    /// The model this catalog was built with, if any vectors exist.
    pub fn model(&self) -> Result<Option<String>> {
        self.meta("model")
    }

    /// Fails when the catalog was built with a different model than `manifest`.
    pub fn check_model(&self, manifest: &Manifest) -> Result<()> {
        if let Some(name) = self.meta("model")? {
            let sha = self.meta("model_sha256")?.unwrap_or_default();
            let pre = self.meta("model_preprocessing")?.unwrap_or_default();
            if name == manifest.name && sha == manifest.sha256 && pre != manifest.preprocessing() {
                bail!(
                    "the catalog in {} was embedded with preprocessing {pre:?}, but model {name:?} now uses {:?}; rebuild the catalog in a new --data directory",
                    self.dir.display(),
                    manifest.preprocessing()
                );
            }
            if name != manifest.name || sha != manifest.sha256 {
                bail!(
                    "the catalog in {} was built with model {name:?}; this command uses {:?}. Use --model {name}, or build a new catalog in another --data directory",
                    self.dir.display(),
                    manifest.name
                );
            }
        }
        if let Some(m) = &self.snapshot {
            snapshot::check_model(&self.dir, m, manifest)?;
        }
        Ok(())
    }

    /// The snapshot's manifest, when the catalog is a read-only snapshot.
    pub fn snapshot(&self) -> Option<&snapshot::SnapshotManifest> {
        self.snapshot.as_ref()
    }

    /// The current vector file; a missing one is created with `storage`.
    fn vector_file(&self, dim: usize, storage: Storage) -> Result<VectorFile> {
        let gen = self.meta_num("vectors_generation")?;
        VectorFile::open(&self.dir.join(format!("vectors-{gen}.f32")), dim, storage)
    }

    /// Looks up the vector of an image by content hash.
    pub fn vector_by_hash(&self, hash: &str) -> Result<Option<u32>> {
        Ok(self
            .conn
            .query_row("SELECT id FROM vectors WHERE sha256=?1", [hash], |r| r.get(0))
            .optional()?)
    }

    /// The current background vector file; a missing one is created with `storage`.
    fn background_file(&self, dim: usize, storage: Storage) -> Result<VectorFile> {
        let gen = self.meta_num("background_generation")?;
        VectorFile::open(&self.dir.join(format!("background-{gen}.vec")), dim, storage)
    }

    /// True when a background photo with this content hash is stored.
    pub fn background_known(&self, hash: &str) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM background WHERE sha256=?1",
            [hash],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Stores background photos: (content hash, source, embedding) each, in one transaction after
    /// the rows are written and synced. Background photos are images that are not in the catalog;
    /// a listing photo's similarity to them measures how generic it is (`scan` subtracts it).
    pub fn add_background(
        &mut self,
        manifest: &Manifest,
        storage: Storage,
        photos: &[(String, String, Vec<f32>)],
    ) -> Result<()> {
        self.check_model(manifest)?;
        if photos.is_empty() {
            return Ok(());
        }
        let committed = self.meta_num("background_count")? as usize;
        let rows: Vec<f32> = photos.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        self.background_file(manifest.dim, storage)?.append(committed, &rows)?;
        let tx = self.conn.transaction()?;
        record_model(&tx, manifest)?;
        set_meta(&tx, "background_count", (committed + photos.len()).to_string())?;
        for (i, (hash, source, _)) in photos.iter().enumerate() {
            tx.execute(
                "INSERT INTO background(id, sha256, source) VALUES(?1, ?2, ?3)",
                params![(committed + i) as i64, hash, source],
            )?;
        }
        tx.commit().context("cannot commit the background photos")?;
        Ok(())
    }

    /// Deletes all background photos (score normalisation is off until new ones are added).
    /// Returns how many there were.
    pub fn clear_background(&mut self) -> Result<usize> {
        let n = self.meta_num("background_count")? as usize;
        let gen = self.meta_num("background_generation")? + 1;
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM background", [])?;
        for (k, v) in
            [("background_count", "0".to_string()), ("background_generation", gen.to_string())]
        {
            tx.execute("INSERT OR REPLACE INTO meta VALUES(?1, ?2)", params![k, v])?;
        }
        tx.commit().context("cannot commit the removal of the background photos")?;
        self.cleanup();
        Ok(n)
    }

    /// Adds (or updates) products with their images in one transaction. `new_vectors` are the
    /// embeddings of images not stored before, with their content hashes; `images` of each product
    /// are (content hash, source) pairs whose hashes are stored or among `new_vectors`. A new vector
    /// file stores its rows as `storage`; an existing one keeps its own storage until compaction.
    /// `notes` are what else is known of the images (`ImageNotes`).
    pub fn add_products(
        &mut self,
        manifest: &Manifest,
        storage: Storage,
        products: &[(ProductRecord, Vec<(String, String)>)],
        new_vectors: &[(String, Vec<f32>)],
        notes: &ImageNotes,
    ) -> Result<()> {
        self.check_model(manifest)?;
        let dim = manifest.dim;
        let committed = self.vector_count()?;
        if !new_vectors.is_empty() {
            let rows: Vec<f32> = new_vectors.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            self.vector_file(dim, storage)?.append(committed, &rows)?;
        }
        let tx = self.conn.transaction()?;
        record_model(&tx, manifest)?;
        for (i, (hash, _)) in new_vectors.iter().enumerate() {
            tx.execute(
                "INSERT INTO vectors(id, sha256) VALUES(?1, ?2)",
                params![(committed + i) as i64, hash],
            )?;
        }
        set_meta(&tx, "vector_count", (committed + new_vectors.len()).to_string())?;
        for (hash, data) in &notes.features {
            // an image added again keeps its features, unless they are in an outdated format
            tx.execute(
                "INSERT INTO local_features VALUES(?1, ?2)
                 ON CONFLICT(sha256) DO UPDATE SET data=excluded.data WHERE substr(local_features.data, 1, 8) <> ?3",
                params![hash, data, &crate::vision::verify::orb::MAGIC[..]],
            )?;
        }
        for (hash, data) in &notes.colours {
            tx.execute("INSERT OR REPLACE INTO colours VALUES(?1, ?2)", params![hash, data])?;
        }
        for (hash, h) in &notes.phashes {
            tx.execute(
                "INSERT OR REPLACE INTO phashes VALUES(?1, ?2)",
                params![hash, &h.to_le_bytes()[..]],
            )?;
        }
        let t = now();
        for (p, images) in products {
            tx.execute(
                "INSERT INTO brands(name) VALUES(?1) ON CONFLICT(name) DO NOTHING",
                [&p.brand],
            )?;
            let brand: i64 =
                tx.query_row("SELECT id FROM brands WHERE name=?1", [&p.brand], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO products(brand, product_id, title, price, currency, category, removed, updated_at)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)
                 ON CONFLICT(brand, product_id) DO UPDATE SET title=excluded.title, price=excluded.price,
                   currency=excluded.currency, category=excluded.category, removed=0, updated_at=excluded.updated_at",
                params![brand, p.product_id, p.title, p.price, p.currency, p.category, t],
            )?;
            let pk: i64 = tx.query_row(
                "SELECT id FROM products WHERE brand=?1 AND product_id=?2",
                params![brand, p.product_id],
                |r| r.get(0),
            )?;
            tx.execute("DELETE FROM sellers WHERE product=?1", [pk])?;
            for s in &p.authorized_sellers {
                tx.execute("INSERT OR IGNORE INTO sellers VALUES(?1, ?2)", params![pk, s])?;
            }
            for (hash, source) in images {
                let vid: i64 = tx
                    .query_row("SELECT id FROM vectors WHERE sha256=?1", [hash], |r| r.get(0))
                    .with_context(|| {
                        format!("internal error: image {source} has no stored vector")
                    })?;
                tx.execute(
                    "INSERT OR IGNORE INTO images VALUES(?1, ?2, ?3)",
                    params![pk, vid, source],
                )?;
            }
        }
        tx.commit().context("cannot commit the catalog change")?;
        Ok(())
    }

    /// What follows adding products whose images have the content hashes `images`: the search
    /// graph is extended (`update_graph`) and shared points are found again around those images
    /// (`mark_shared`).
    pub fn finish_adding(&mut self, config: &Config, dim: usize, images: &[String]) -> Result<()> {
        self.update_graph(config, dim)?;
        let t = std::time::Instant::now();
        let n = self.mark_shared(config, SharedScope::Near(images))?;
        tracing::debug!("shared points of {n} reference images found in {:?}", t.elapsed());
        Ok(())
    }

    /// Finds which local feature points of reference images of live products images of the
    /// brand's other products share (`verify::Shared`), comparing each image with its
    /// `SHARED_NEIGHBOURS` most similar images (embeddings) of those products, and stores them in
    /// one transaction. `scope` says which images are examined. Returns how many were.
    pub fn mark_shared(&mut self, config: &Config, scope: SharedScope) -> Result<usize> {
        use rayon::prelude::*;
        let Some(dim) = self.meta("dim")?.and_then(|d| d.parse::<usize>().ok()) else {
            return Ok(0); // empty catalog
        };
        let count = self.vector_count()?;
        let rows = self.vector_file(dim, config.index.storage)?.map(count)?;
        let given: HashSet<&str> = match scope {
            SharedScope::Near(images) => images.iter().map(String::as_str).collect(),
            SharedScope::Brands(_) => HashSet::new(),
        };
        // the brands to examine, each with the given images its removed products show
        let brands: Vec<(String, HashSet<String>)> = match scope {
            SharedScope::Brands(b) => b.iter().map(|name| (name.clone(), HashSet::new())).collect(),
            SharedScope::Near(images) => {
                let mut st = self.conn.prepare(
                    "SELECT DISTINCT b.name, p.removed FROM vectors v JOIN images i ON i.vector=v.id JOIN products p ON p.id=i.product
                     JOIN brands b ON b.id=p.brand WHERE v.sha256=?1",
                )?;
                let mut names: std::collections::BTreeMap<String, HashSet<String>> =
                    std::collections::BTreeMap::new();
                for sha in images {
                    for row in
                        st.query_map([sha], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
                    {
                        let (name, removed) = row?;
                        let gone = names.entry(name).or_default();
                        if removed {
                            gone.insert(sha.clone());
                        }
                    }
                }
                names.into_iter().collect()
            }
        };
        let mut found: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (brand, removed) in &brands {
            // the brand's live images: content hash, products, embedding
            let mut owners: HashMap<u32, (String, HashSet<i64>)> = HashMap::new();
            {
                let mut st = self.conn.prepare(
                    "SELECT i.vector, i.product, v.sha256 FROM images i JOIN products p ON p.id=i.product
                     JOIN brands b ON b.id=p.brand JOIN vectors v ON v.id=i.vector WHERE b.name=?1 AND p.removed=0",
                )?;
                let mut q = st.query([brand])?;
                while let Some(r) = q.next()? {
                    let (vid, product, sha): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                    owners
                        .entry(vid as u32)
                        .or_insert_with(|| (sha, HashSet::new()))
                        .1
                        .insert(product);
                }
            }
            let mut vids: Vec<u32> =
                owners.keys().copied().filter(|&v| (v as usize) < rows.len()).collect();
            vids.sort_unstable();
            let embeddings: HashMap<u32, Vec<f32>> =
                vids.iter().map(|&v| (v, rows.row_f32(v as usize))).collect();
            // the most similar images of the brand's products other than `own`
            let nearest_to = |e: &[f32], own: &HashSet<i64>| -> Vec<u32> {
                let mut others: Vec<(f32, u32)> = vids
                    .iter()
                    .filter(|o| owners[o].1.is_disjoint(own))
                    .map(|o| (e.iter().zip(&embeddings[o]).map(|(a, b)| a * b).sum::<f32>(), *o))
                    .collect();
                others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                others.into_iter().take(SHARED_NEIGHBOURS).map(|(_, o)| o).collect()
            };
            let nearest = |vid: u32| nearest_to(&embeddings[&vid], &owners[&vid].1);
            // the images to examine: all of the brand's, or the given ones and their neighbours
            // (whose neighbourhood the given ones may have joined)
            let mut known: HashMap<u32, Vec<u32>> = HashMap::new();
            let targets: Vec<u32> = if given.is_empty() {
                vids.clone()
            } else {
                let mut t: std::collections::BTreeSet<u32> = std::collections::BTreeSet::new();
                for &v in vids.iter().filter(|v| given.contains(owners[v].0.as_str())) {
                    let near = nearest(v);
                    t.insert(v);
                    t.extend(near.iter().copied());
                    known.insert(v, near);
                }
                // given images of removed products that no live product of the brand shows: the
                // images nearest them, whose points they shared
                let live: HashSet<&str> = owners.values().map(|(sha, _)| sha.as_str()).collect();
                let mut st = self.conn.prepare("SELECT id FROM vectors WHERE sha256=?1")?;
                for sha in removed.iter().filter(|sha| !live.contains(sha.as_str())) {
                    let vid: Option<i64> = st.query_row([sha], |r| r.get(0)).optional()?;
                    if let Some(v) =
                        vid.and_then(|v| usize::try_from(v).ok()).filter(|&v| v < rows.len())
                    {
                        t.extend(nearest_to(&rows.row_f32(v), &HashSet::new()));
                    }
                }
                t.into_iter().collect()
            };
            let plan: Vec<(u32, Vec<u32>)> = targets
                .par_iter()
                .map(|&v| (v, known.get(&v).cloned().unwrap_or_else(|| nearest(v))))
                .collect();
            let mut features: HashMap<u32, crate::vision::verify::orb::Features> = HashMap::new();
            for v in plan.iter().flat_map(|(v, n)| std::iter::once(v).chain(n)) {
                if features.contains_key(v) {
                    continue;
                }
                let blob: Option<Vec<u8>> = self
                    .conn
                    .query_row(
                        "SELECT data FROM local_features WHERE sha256=?1",
                        [&owners[v].0],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(Ok(f)) =
                    blob.map(|b| crate::vision::verify::orb::Features::from_bytes(&b))
                {
                    features.insert(*v, f);
                }
            }
            let marked: Vec<(String, Option<Vec<u8>>)> = plan
                .par_iter()
                .map(|(v, near)| {
                    let sha = owners[v].0.clone();
                    let Some(f) = features.get(v) else { return (sha, None) }; // no usable features: nothing to mark
                    let others: Vec<&crate::vision::verify::orb::Features> =
                        near.iter().filter_map(|o| features.get(o)).collect();
                    (
                        sha,
                        Some(
                            crate::vision::verify::Shared::find(
                                f,
                                &others,
                                config.verify.min_inliers,
                            )
                            .to_bytes(),
                        ),
                    )
                })
                .collect();
            found.extend(marked);
        }
        let tx = self.conn.transaction()?;
        for (sha, data) in &found {
            match data {
                Some(d) => tx.execute(
                    "INSERT OR REPLACE INTO shared_points VALUES(?1, ?2)",
                    params![sha, d],
                )?,
                None => tx.execute("DELETE FROM shared_points WHERE sha256=?1", [sha])?,
            };
        }
        tx.commit().context("cannot commit the shared points")?;
        Ok(found.len())
    }

    /// Builds or extends the HNSW graph when the catalog is large enough, as a new generation. A
    /// graph in the old hnsw_rs format is not extended but built anew.
    pub fn update_graph(&mut self, config: &Config, dim: usize) -> Result<()> {
        let count = self.vector_count()?;
        let covered = self.meta_num("hnsw_covered")? as usize;
        if count < config.index.hnsw_min_images || count == covered {
            return Ok(());
        }
        let rows = self.vector_file(dim, config.index.storage)?.map(count)?;
        let gen = self.meta_num("hnsw_generation")?;
        let base = if covered > 0 && !legacy_graph_dir(&self.dir, gen).exists() {
            Some(self.load_graph(gen, covered)?)
        } else {
            None
        };
        let graph = Graph::build(base, &rows, &config.index)?;
        let new_gen = gen + 1;
        graph.save(&graph_path(&self.dir, new_gen))?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO meta VALUES('hnsw_generation', ?1)",
            [new_gen.to_string()],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta VALUES('hnsw_covered', ?1)",
            [graph.covered().to_string()],
        )?;
        tx.commit()?;
        self.cleanup();
        Ok(())
    }

    /// Loads graph generation `gen`, which must cover `covered` vectors.
    fn load_graph(&self, gen: u64, covered: usize) -> Result<Graph> {
        let path = graph_path(&self.dir, gen);
        let legacy = legacy_graph_dir(&self.dir, gen);
        if !path.exists() && legacy.exists() {
            bail!(
                "the search graph {} was written by an older knockoff (hnsw_rs format), which this one does not read; rebuild it with `knockoff catalog compact`",
                legacy.display()
            );
        }
        let t = std::time::Instant::now();
        let graph = Graph::load(&path)?;
        tracing::debug!("search graph of {} vectors loaded in {:?}", graph.covered(), t.elapsed());
        if graph.covered() != covered {
            bail!(
                "the search graph {} covers {} vectors but the catalog records {covered}; run `knockoff catalog compact` to rebuild it",
                path.display(),
                graph.covered()
            );
        }
        Ok(graph)
    }

    /// Hides products from search at once (one transaction). With no product ids, hides all of the
    /// brand's products. Then the points their images shared with the brand's other products no
    /// longer count against those: the shared points of the images nearest theirs are found again
    /// (`mark_shared`). Returns how many products were hidden.
    pub fn remove(
        &mut self,
        config: &Config,
        brand: &str,
        product_ids: &[String],
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let brand_id: Option<i64> = tx
            .query_row("SELECT id FROM brands WHERE name=?1", [brand], |r| r.get(0))
            .optional()?;
        let Some(brand_id) = brand_id else { bail!("no brand {brand:?} in the catalog") };
        let pks: Vec<i64> = if product_ids.is_empty() {
            let mut st = tx.prepare("SELECT id FROM products WHERE brand=?1 AND removed=0")?;
            let rows = st.query_map([brand_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        } else {
            let mut pks = Vec::with_capacity(product_ids.len());
            for id in product_ids {
                let pk: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM products WHERE brand=?1 AND product_id=?2",
                        params![brand_id, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(pk) = pk else {
                    bail!("brand {brand:?} has no product {id:?}; nothing was removed")
                };
                pks.push(pk);
            }
            pks
        };
        let mut images = Vec::new();
        {
            let mut hide =
                tx.prepare("UPDATE products SET removed=1, updated_at=?2 WHERE id=?1")?;
            let mut shown = tx.prepare(
                "SELECT v.sha256 FROM images i JOIN vectors v ON v.id=i.vector WHERE i.product=?1",
            )?;
            for pk in &pks {
                hide.execute(params![pk, now()])?;
                for sha in shown.query_map([pk], |r| r.get::<_, String>(0))? {
                    images.push(sha?);
                }
            }
        }
        tx.commit()?;
        self.mark_shared(config, SharedScope::Near(&images))
            .context("the products are hidden, but the shared points around their images were not found again (`knockoff catalog compact` does it)")?;
        Ok(pks.len())
    }

    /// Deletes removed products and the vectors only they used, renumbers the rest and rebuilds the
    /// HNSW graph, all as a new generation that one transaction switches to.
    pub fn compact(&mut self, config: &Config) -> Result<(usize, usize)> {
        let Some(dim) = self.meta("dim")?.and_then(|d| d.parse::<usize>().ok()) else {
            return Ok((0, 0)); // empty catalog
        };
        let count = self.vector_count()?;
        let all = self.vector_file(dim, config.index.storage)?.read(count)?;
        let live: Vec<i64> = {
            let mut st = self.conn.prepare(
                "SELECT DISTINCT i.vector FROM images i JOIN products p ON p.id=i.product WHERE p.removed=0 ORDER BY i.vector",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut rows = Vec::with_capacity(live.len() * dim);
        for &v in &live {
            let i = v as usize;
            if i >= count {
                bail!("catalog is inconsistent: image vector {v} is beyond the {count} stored");
            }
            rows.extend_from_slice(&all[i * dim..(i + 1) * dim]);
        }
        drop(all);
        let vgen = self.meta_num("vectors_generation")? + 1;
        let vpath = self.dir.join(format!("vectors-{vgen}.f32"));
        vectors::write_atomic_rows(&vpath, dim, config.index.storage, &rows)?;
        drop(rows);
        let hgen = self.meta_num("hnsw_generation")? + 1;
        let covered = if live.len() >= config.index.hnsw_min_images && !live.is_empty() {
            // the graph is built on the rows as the new file stores them
            let stored = VectorFile::open(&vpath, dim, config.index.storage)?.map(live.len())?;
            let graph = Graph::build(None, &stored, &config.index)?;
            graph.save(&graph_path(&self.dir, hgen))?;
            graph.covered()
        } else {
            0
        };
        let touched: Vec<String> = {
            let mut st = self.conn.prepare("SELECT DISTINCT b.name FROM products p JOIN brands b ON b.id=p.brand WHERE p.removed=1")?;
            let names = st.query_map([], |r| r.get(0))?;
            names.collect::<Result<_, _>>()?
        };
        let tx = self.conn.transaction()?;
        // ids are renumbered in two steps; foreign keys are checked once, at commit
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        let removed_products = tx
            .execute(
                "DELETE FROM sellers WHERE product IN (SELECT id FROM products WHERE removed=1)",
                [],
            )
            .and_then(|_| {
                tx.execute(
                    "DELETE FROM images WHERE product IN (SELECT id FROM products WHERE removed=1)",
                    [],
                )
            })
            .and_then(|_| tx.execute("DELETE FROM products WHERE removed=1", []))?;
        tx.execute("DELETE FROM brands WHERE id NOT IN (SELECT brand FROM products)", [])?;
        let dropped =
            tx.execute("DELETE FROM vectors WHERE id NOT IN (SELECT vector FROM images)", [])?;
        tx.execute(
            "DELETE FROM local_features WHERE sha256 NOT IN (SELECT sha256 FROM vectors)",
            [],
        )?;
        tx.execute(
            "DELETE FROM shared_points WHERE sha256 NOT IN (SELECT sha256 FROM vectors)",
            [],
        )?;
        tx.execute("DELETE FROM colours WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
        tx.execute("DELETE FROM phashes WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
        for (new, &old) in live.iter().enumerate() {
            tx.execute("UPDATE vectors SET id=?1 WHERE id=?2", params![-(new as i64) - 1, old])?;
            tx.execute(
                "UPDATE images SET vector=?1 WHERE vector=?2",
                params![-(new as i64) - 1, old],
            )?;
        }
        tx.execute("UPDATE vectors SET id=-id-1", [])?;
        tx.execute("UPDATE images SET vector=-vector-1", [])?;
        for (k, v) in [
            ("vectors_generation", vgen.to_string()),
            ("vector_count", live.len().to_string()),
            ("hnsw_generation", hgen.to_string()),
            ("hnsw_covered", covered.to_string()),
        ] {
            tx.execute("INSERT OR REPLACE INTO meta VALUES(?1, ?2)", params![k, v])?;
        }
        tx.commit().context("cannot commit the compaction")?;
        self.cleanup();
        // what a deleted product shared with its siblings no longer counts against them
        self.mark_shared(config, SharedScope::Brands(&touched))?;
        Ok((removed_products, dropped))
    }

    /// Deletes files of generations that are no longer current (best effort).
    fn cleanup(&self) {
        let vgen = self.meta_num("vectors_generation").unwrap_or(0);
        let hgen = self.meta_num("hnsw_generation").unwrap_or(0);
        let bgen = self.meta_num("background_generation").unwrap_or(0);
        let current = [
            ("vectors-", format!("vectors-{vgen}.f32")),
            ("background-", format!("background-{bgen}.vec")),
            ("graph-", format!("graph-{hgen}.knkg")),
        ];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if current.iter().any(|(prefix, keep)| name.starts_with(prefix) && &name != keep) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // graphs in the old hnsw_rs format: kept only while one is still the current generation
        let legacy = self.dir.join("hnsw");
        if let Ok(entries) = std::fs::read_dir(&legacy) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy() != hgen.to_string() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            let _ = std::fs::remove_dir(&legacy); // only when empty
        }
    }

    /// Loads live products, vector ownership, authorised sellers and the search index.
    pub fn view(&self, config: &Config) -> Result<CatalogView> {
        let dim: usize = self.meta("dim")?.and_then(|d| d.parse().ok()).unwrap_or(0);
        let count = self.vector_count()?;
        let mut products = Vec::new();
        let mut pk_index = HashMap::new();
        {
            let mut st = self.conn.prepare(
                "SELECT p.id, b.name, p.product_id, p.title, p.price, p.currency, p.category
                 FROM products p JOIN brands b ON b.id=p.brand WHERE p.removed=0 ORDER BY p.id",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                pk_index.insert(r.get::<_, i64>(0)?, products.len());
                products.push(ProductInfo {
                    brand: r.get(1)?,
                    product_id: r.get(2)?,
                    title: r.get(3)?,
                    price: r.get(4)?,
                    currency: r.get(5)?,
                    category: r.get(6)?,
                });
            }
        }
        let mut vector_products = vec![Vec::new(); count];
        {
            let mut st = self
                .conn
                .prepare("SELECT product, vector, source FROM images ORDER BY product, vector")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let (pk, v, src): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
                if let (Some(&pi), Some(slot)) =
                    (pk_index.get(&pk), vector_products.get_mut(v as usize))
                {
                    slot.push((pi, src));
                }
            }
        }
        let mut brand_sellers: HashMap<String, HashSet<String>> = HashMap::new();
        {
            let mut st = self.conn.prepare(
                "SELECT b.name, s.seller_id FROM sellers s JOIN products p ON p.id=s.product
                 JOIN brands b ON b.id=p.brand WHERE p.removed=0",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                brand_sellers.entry(r.get(0)?).or_default().insert(r.get(1)?);
            }
        }
        let index = if count == 0 || dim == 0 {
            Index::new(dim.max(1), Vec::new(), None, config.index.hnsw_ef_search)
        } else {
            let vectors = self.vector_file(dim, config.index.storage)?.map(count)?;
            let covered = self.meta_num("hnsw_covered")? as usize;
            let graph = if covered > 0 {
                if covered > count {
                    bail!("catalog is inconsistent: the search graph covers {covered} vectors of {count}; run `knockoff catalog compact`");
                }
                Some(self.load_graph(self.meta_num("hnsw_generation")?, covered)?)
            } else {
                None
            };
            Index::from_rows(vectors, graph, config.index.hnsw_ef_search)
        };
        let background = match self.meta_num("background_count")? as usize {
            0 => None,
            n => Some(Index::from_rows(
                self.background_file(dim, config.index.storage)?.map(n)?,
                None,
                0,
            )),
        };
        let mut product_vectors = vec![Vec::new(); products.len()];
        for (v, owners) in vector_products.iter().enumerate() {
            for (pi, _) in owners {
                product_vectors[*pi].push(v as u32);
            }
        }
        let product_index = products
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.brand.clone(), p.product_id.clone()), i))
            .collect();
        let features = if config.verify.enabled {
            Some(FeatureStore::open(&self.dir.join("catalog.sqlite"), self.snapshot.is_some())?)
        } else {
            None
        };
        let hashes = if config.verify.enabled {
            self.live_hashes(&vector_products)?
        } else {
            crate::vision::phash::Index::default()
        };
        Ok(CatalogView {
            products,
            vector_products,
            brand_sellers,
            index,
            background,
            product_vectors,
            product_index,
            features,
            hashes,
        })
    }

    /// The perceptual hashes of the live reference images (vector id, hash), indexed; damaged rows
    /// are left out and counted in a warning (`FeatureStore::phash` names them when used).
    fn live_hashes(
        &self,
        vector_products: &[Vec<(usize, String)>],
    ) -> Result<crate::vision::phash::Index> {
        let t = std::time::Instant::now();
        let exists: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='phashes'",
            [],
            |r| r.get(0),
        )?;
        if exists == 0 {
            return Ok(crate::vision::phash::Index::default());
        }
        let mut st = self
            .conn
            .prepare("SELECT v.id, h.data FROM vectors v JOIN phashes h ON h.sha256=v.sha256")?;
        let mut rows = st.query([])?;
        let (mut hashes, mut damaged) = (Vec::new(), 0usize);
        while let Some(r) = rows.next()? {
            let (id, data): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            let live = usize::try_from(id)
                .ok()
                .and_then(|i| vector_products.get(i))
                .is_some_and(|owners| !owners.is_empty());
            match <[u8; 8]>::try_from(data.as_slice()) {
                Ok(bytes) if live => hashes.push((id as u32, u64::from_le_bytes(bytes))),
                Ok(_) => {}
                Err(_) => damaged += 1,
            }
        }
        if damaged > 0 {
            tracing::warn!("{damaged} stored perceptual hashes are damaged and not searched; add their products again to store them");
        }
        let index = crate::vision::phash::Index::new(hashes);
        tracing::debug!(
            "perceptual hashes of {} reference photos loaded in {:?}",
            index.len(),
            t.elapsed()
        );
        Ok(index)
    }

    /// Products for `catalog list`, optionally of one brand, removed ones included when asked.
    pub fn list(&self, brand: Option<&str>, include_removed: bool) -> Result<Vec<ListedProduct>> {
        let mut st = self.conn.prepare(
            "SELECT p.id, b.name, p.product_id, p.title, p.price, p.currency, p.removed,
                    (SELECT COUNT(*) FROM images i WHERE i.product=p.id), p.category
             FROM products p JOIN brands b ON b.id=p.brand
             WHERE (?1 IS NULL OR b.name=?1) AND (?2 OR p.removed=0)
             ORDER BY b.name, p.product_id",
        )?;
        let rows = st.query_map(params![brand, include_removed], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                ListedProduct {
                    brand: r.get(1)?,
                    product_id: r.get(2)?,
                    title: r.get(3)?,
                    price: r.get(4)?,
                    currency: r.get(5)?,
                    removed: r.get::<_, i64>(6)? != 0,
                    images: r.get::<_, i64>(7)? as usize,
                    authorized_sellers: Vec::new(),
                    category: r.get(8)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        let mut sellers = self
            .conn
            .prepare("SELECT seller_id FROM sellers WHERE product=?1 ORDER BY seller_id")?;
        for row in rows {
            let (pk, mut p) = row?;
            p.authorized_sellers =
                sellers.query_map([pk], |r| r.get(0))?.collect::<Result<_, _>>()?;
            out.push(p);
        }
        Ok(out)
    }

    /// The sources (paths or URLs, as stored) of the reference photos of `brand`'s product
    /// `product_id`, in a stable order.
    pub fn image_sources(&self, brand: &str, product_id: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT i.source FROM images i JOIN products p ON p.id=i.product JOIN brands b ON b.id=p.brand
             WHERE b.name=?1 AND p.product_id=?2 ORDER BY i.vector",
        )?;
        let rows = st.query_map(params![brand, product_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts for `catalog stats`.
    pub fn stats(&self) -> Result<Stats> {
        let q = |sql: &str| -> Result<usize> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as usize)
        };
        let mut disk_bytes = 0;
        for e in walk(&self.dir) {
            disk_bytes += e;
        }
        Ok(Stats {
            brands: q("SELECT COUNT(DISTINCT brand) FROM products WHERE removed=0")?,
            products: q("SELECT COUNT(*) FROM products WHERE removed=0")?,
            removed_products: q("SELECT COUNT(*) FROM products WHERE removed=1")?,
            vectors: self.vector_count()?,
            live_vectors: q("SELECT COUNT(DISTINCT i.vector) FROM images i JOIN products p ON p.id=i.product WHERE p.removed=0")?,
            hnsw_covered: self.meta_num("hnsw_covered")? as usize,
            background_images: self.meta_num("background_count")? as usize,
            live_vectors_with_features: if q("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='local_features'")? > 0 {
                self.conn.query_row(
                    "SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                     JOIN local_features f ON f.sha256=v.sha256 WHERE p.removed=0 AND substr(f.data, 1, 8) = ?1",
                    [&crate::vision::verify::orb::MAGIC[..]],
                    |r| r.get::<_, i64>(0),
                )? as usize
            } else {
                0
            },
            live_vectors_with_shared: if q("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='shared_points'")? > 0 {
                q("SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                   JOIN shared_points s ON s.sha256=v.sha256 WHERE p.removed=0")?
            } else {
                0
            },
            live_vectors_with_colours: if q("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='colours'")? > 0 {
                q("SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                   JOIN colours c ON c.sha256=v.sha256 WHERE p.removed=0")?
            } else {
                0
            },
            live_vectors_with_phash: if q("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='phashes'")? > 0 {
                q("SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                   JOIN phashes h ON h.sha256=v.sha256 WHERE p.removed=0")?
            } else {
                0
            },
            model: self.model()?,
            disk_bytes,
        })
    }
}

/// Sets one meta value inside a transaction.
fn set_meta(tx: &rusqlite::Transaction, key: &str, value: String) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO meta VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        params![key, value],
    )
}

/// Records which model (and preprocessing and dimension) made the catalog's embeddings.
fn record_model(tx: &rusqlite::Transaction, manifest: &Manifest) -> rusqlite::Result<()> {
    set_meta(tx, "model", manifest.name.clone())?;
    set_meta(tx, "model_sha256", manifest.sha256.clone())?;
    set_meta(tx, "model_preprocessing", manifest.preprocessing())?;
    set_meta(tx, "dim", manifest.dim.to_string())?;
    Ok(())
}

/// File of search graph generation `gen` inside a data directory.
fn graph_path(data_dir: &Path, gen: u64) -> PathBuf {
    data_dir.join(format!("graph-{gen}.knkg"))
}

/// Directory where knockoff versions that used hnsw_rs kept graph generation `gen`.
fn legacy_graph_dir(data_dir: &Path, gen: u64) -> PathBuf {
    data_dir.join("hnsw").join(gen.to_string())
}

/// Sizes of the files below `dir`.
fn walk(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => out.extend(walk(&e.path())),
                Ok(m) => out.push(m.len()),
                Err(_) => {}
            }
        }
    }
    out
}

/// Products of one batch with their images fetched, decoded and resized (one result per image).
pub type LoadedProduct = (ProductRecord, Vec<Result<crate::model::load::Loaded, String>>);

/// Fetches, decodes and resizes the images of `products` for the model and extracts their local
/// features (in parallel); one entry per product, its image results in the product's order.
pub fn load_products(
    fetcher: &crate::vision::source::Fetcher,
    limits: &crate::vision::decode::Limits,
    manifest: &Manifest,
    features: crate::vision::verify::orb::Params,
    products: Vec<ProductRecord>,
) -> Vec<LoadedProduct> {
    let refs: Vec<&ImageRef> = products.iter().flat_map(|p| p.images.iter()).collect();
    let owners: Vec<usize> =
        products.iter().enumerate().flat_map(|(i, p)| p.images.iter().map(move |_| i)).collect();
    let opts = crate::model::load::LoadOptions {
        hash: true,
        regions: false,
        features: crate::model::load::LocalFeatures::Extract(features),
        phash: false,
    };
    let mut loaded =
        crate::model::load::load_images(fetcher, &refs, &owners, limits, manifest, opts)
            .into_iter();
    products
        .into_iter()
        .map(|p| {
            let imgs = loaded.by_ref().take(p.images.len()).collect();
            (p, imgs)
        })
        .collect()
}

/// Reads, decodes and resizes background photo files for the model (in parallel), with their
/// content hashes; one (source, result) each, in order.
pub fn load_background(
    fetcher: &crate::vision::source::Fetcher,
    limits: &crate::vision::decode::Limits,
    manifest: &Manifest,
    paths: &[PathBuf],
) -> Vec<(String, Result<crate::model::load::Loaded, String>)> {
    let refs: Vec<ImageRef> = paths.iter().map(|p| ImageRef::Path(p.clone())).collect();
    let r: Vec<&ImageRef> = refs.iter().collect();
    let owners: Vec<usize> = (0..r.len()).collect();
    let loaded = crate::model::load::load_images(
        fetcher,
        &r,
        &owners,
        limits,
        manifest,
        crate::model::load::LoadOptions {
            hash: true,
            regions: false,
            features: crate::model::load::LocalFeatures::Skip,
            phash: false,
        },
    );
    paths.iter().map(|p| p.display().to_string()).zip(loaded).collect()
}

/// What `ingest` did with one batch of loaded products.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Products added or updated.
    pub products: usize,
    /// Content hashes of their images.
    pub images: Vec<String>,
    /// Images embedded and stored now.
    pub embedded: usize,
    /// Images whose embedding was already stored (same bytes).
    pub reused: usize,
    /// Images that could not be used: (catalog line, message).
    pub image_errors: Vec<(usize, String)>,
    /// Products skipped because none of their images could be used: (catalog line, message).
    pub skipped: Vec<(usize, String)>,
}

/// What `catalog add` stores about reference images besides their embeddings, each by content
/// hash.
#[derive(Debug, Default)]
pub struct ImageNotes {
    /// Local features (`verify::orb::Features::to_bytes`), stored when the image has none yet.
    pub features: Vec<(String, Vec<u8>)>,
    /// Colour histograms (`colour::Colours::to_bytes`) of images not on a white backdrop.
    pub colours: Vec<(String, Vec<u8>)>,
    /// Perceptual hashes (`phash::of`).
    pub phashes: Vec<(String, u64)>,
}

/// Adds loaded products to `store`: embeds the images not stored yet (by content hash) with
/// `embedder` and stores the products in one transaction (new vectors in `storage` when the catalog
/// is new). This is the core of `catalog add`.
pub fn ingest(
    store: &mut Store,
    embedder: &mut dyn crate::model::Embed,
    manifest: &Manifest,
    storage: Storage,
    products: &[LoadedProduct],
) -> Result<Ingested> {
    let mut done = Ingested::default();
    let mut to_embed: Vec<(String, &crate::model::embed::Prepared)> = Vec::new();
    let mut notes = ImageNotes::default();
    let mut keep = Vec::new();
    for (p, imgs) in products {
        let mut refs = Vec::new();
        for (r, img) in p.images.iter().zip(imgs) {
            match img {
                Ok(l) => {
                    let Some(hash) = &l.hash else {
                        bail!("internal error: image {} was loaded without its hash", r.display())
                    };
                    if let Some(f) = &l.features {
                        notes.features.push((hash.clone(), f.to_bytes()));
                    }
                    if let Some(c) = &l.colours {
                        notes.colours.push((hash.clone(), c.to_bytes()));
                    }
                    if let Some((_, h)) = l.phashes.iter().find(|(region, _)| region.is_none()) {
                        notes.phashes.push((hash.clone(), *h));
                    }
                    let known = store.vector_by_hash(hash)?.is_some()
                        || to_embed.iter().any(|(h, _)| h == hash);
                    if known {
                        done.reused += 1;
                    } else {
                        to_embed.push((hash.clone(), &l.prepared));
                    }
                    refs.push((hash.clone(), r.display()));
                }
                Err(e) => done
                    .image_errors
                    .push((p.line, format!("product {} image {}: {e}", p.product_id, r.display()))),
            }
        }
        if refs.is_empty() {
            done.skipped.push((
                p.line,
                format!("product {} has no usable image; product skipped", p.product_id),
            ));
        } else {
            keep.push((p.clone(), refs));
        }
    }
    let imgs: Vec<&crate::model::embed::Prepared> = to_embed.iter().map(|(_, p)| *p).collect();
    let vecs = embedder.embed(&imgs)?;
    let new_vectors: Vec<(String, Vec<f32>)> =
        to_embed.iter().map(|(h, _)| h.clone()).zip(vecs).collect();
    done.embedded = new_vectors.len();
    done.products = keep.len();
    done.images = keep.iter().flat_map(|(_, refs)| refs.iter().map(|(h, _)| h.clone())).collect();
    store.add_products(manifest, storage, &keep, &new_vectors, &notes)?;
    Ok(done)
}

/// What `ingest_background` did with one batch of photos.
#[derive(Debug, Default)]
pub struct BackgroundIngested {
    /// Photos embedded and stored now.
    pub added: usize,
    /// Photos already stored (same bytes).
    pub known: usize,
    /// Photos that could not be used: (source, message).
    pub errors: Vec<(String, String)>,
}

/// Embeds loaded background photos (source, load result) that are not stored yet and stores them
/// in one transaction. This is the core of `catalog background add`.
pub fn ingest_background(
    store: &mut Store,
    embedder: &mut dyn crate::model::Embed,
    manifest: &Manifest,
    storage: Storage,
    photos: &[(String, Result<crate::model::load::Loaded, String>)],
) -> Result<BackgroundIngested> {
    let mut done = BackgroundIngested::default();
    let mut todo: Vec<(String, String, &crate::model::embed::Prepared)> = Vec::new();
    for (source, loaded) in photos {
        match loaded {
            Ok(l) => {
                let Some(hash) = &l.hash else {
                    bail!("internal error: photo {source} was loaded without its hash")
                };
                if store.background_known(hash)? || todo.iter().any(|(h, _, _)| h == hash) {
                    done.known += 1;
                } else {
                    todo.push((hash.clone(), source.clone(), &l.prepared));
                }
            }
            Err(e) => done.errors.push((source.clone(), e.clone())),
        }
    }
    let imgs: Vec<&crate::model::embed::Prepared> = todo.iter().map(|(_, _, p)| *p).collect();
    let vecs = embedder.embed(&imgs)?;
    let rows: Vec<(String, String, Vec<f32>)> =
        todo.into_iter().zip(vecs).map(|((h, s, _), v)| (h, s, v)).collect();
    done.added = rows.len();
    store.add_background(manifest, storage, &rows)?;
    Ok(done)
}
