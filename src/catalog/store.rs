//! The store: the catalog's SQLite database (`schema`) and the files it points to (vectors,
//! search graph, background embeddings), opened for reading or writing; rows in, rows out. It
//! knows nothing of images or models: what is known of an image arrives as bytes (`ImageNotes`,
//! made by `ingest`) and the feature store (`features`) reads it back.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::schema::{self, Schema};
use super::snapshot;
use crate::config::Config;
use crate::index::graph::Graph;
use crate::index::vectors::{Storage, VectorFile};

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
    pub(super) dir: PathBuf,
    pub(super) conn: Connection,
    pub(super) _lock: Option<File>,
    /// The manifest, when the directory is a read-only snapshot (`snapshot`).
    pub(super) snapshot: Option<snapshot::SnapshotManifest>,
    /// Which tables the catalog has.
    pub(super) schema: Schema,
}

/// The model a catalog's embeddings were made with, as the store records it (`model` makes one
/// from a model manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStamp {
    /// Model name.
    pub name: String,
    /// sha256 of its ONNX file.
    pub sha256: String,
    /// Its preprocessing, as text.
    pub preprocessing: String,
    /// Embedding dimension.
    pub dim: usize,
}

/// A product to store: its catalog fields and its images, (content hash, source) each, whose
/// hashes are stored or among the vectors stored with it.
#[derive(Debug, Clone, Copy)]
pub struct NewProduct<'a> {
    /// Brand name.
    pub brand: &'a str,
    /// The brand's product identifier.
    pub product_id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Reference price.
    pub price: f64,
    /// Currency of the price.
    pub currency: &'a str,
    /// Category, when given.
    pub category: Option<&'a str>,
    /// Sellers the brand authorised.
    pub authorized_sellers: &'a [String],
    /// Images: (content hash, source).
    pub images: &'a [(String, String)],
}

/// What is stored about reference images besides their embeddings, each by content hash, as
/// bytes the store keeps without reading them.
#[derive(Debug)]
pub struct ImageNotes {
    /// The first 8 bytes of local features in the current format: an image added again keeps
    /// its stored features unless they are in another (outdated) one.
    pub features_format: &'static [u8],
    /// Local features (`verify::orb::Features::to_bytes`), stored when the image has none yet.
    pub features: Vec<(String, Vec<u8>)>,
    /// Colour histograms (`colour::Colours::to_bytes`) of images not on a white backdrop.
    pub colours: Vec<(String, Vec<u8>)>,
    /// Perceptual hashes (`phash::of`).
    pub phashes: Vec<(String, u64)>,
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
        let lock = if write { Some(lock(dir)?) } else { None };
        let conn =
            Connection::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let schema = if write {
            schema::upgrade(&conn, &db)?
        } else if !schema::has_meta(&conn)? {
            bail!(
                "no catalog in {} (the first `knockoff catalog add` there stopped before it saved anything; run it again)",
                dir.display()
            );
        } else {
            schema::check_version(&conn, &db)?;
            schema::read(&conn, &db)?
        };
        Ok(Store { dir: dir.to_path_buf(), conn, _lock: lock, snapshot: None, schema })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub(super) fn meta_num(&self, key: &str) -> Result<u64> {
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

    /// Fails when the catalog was built with a different model than `model` (`check_model` also
    /// checks a snapshot's model file).
    pub fn check_stamp(&self, model: &ModelStamp) -> Result<()> {
        if let Some(name) = self.meta("model")? {
            let sha = self.meta("model_sha256")?.unwrap_or_default();
            let pre = self.meta("model_preprocessing")?.unwrap_or_default();
            if name == model.name && sha == model.sha256 && pre != model.preprocessing {
                bail!(
                    "the catalog in {} was embedded with preprocessing {pre:?}, but model {name:?} now uses {:?}; rebuild the catalog in a new --data directory",
                    self.dir.display(),
                    model.preprocessing
                );
            }
            if name != model.name || sha != model.sha256 {
                bail!(
                    "the catalog in {} was built with model {name:?}; this command uses {:?}. Use --model {name}, or build a new catalog in another --data directory",
                    self.dir.display(),
                    model.name
                );
            }
        }
        Ok(())
    }

    /// The snapshot's manifest, when the catalog is a read-only snapshot.
    pub(crate) fn snapshot(&self) -> Option<&snapshot::SnapshotManifest> {
        self.snapshot.as_ref()
    }

    /// The current vector file; a missing one is created with `storage`.
    pub(super) fn vector_file(&self, dim: usize, storage: Storage) -> Result<VectorFile> {
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
    pub(super) fn background_file(&self, dim: usize, storage: Storage) -> Result<VectorFile> {
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
        model: &ModelStamp,
        storage: Storage,
        photos: &[(String, String, Vec<f32>)],
    ) -> Result<()> {
        self.check_stamp(model)?;
        if photos.is_empty() {
            return Ok(());
        }
        let committed = self.meta_num("background_count")? as usize;
        let rows: Vec<f32> = photos.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        self.background_file(model.dim, storage)?.append(committed, &rows)?;
        let tx = self.conn.transaction()?;
        record_model(&tx, model)?;
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
    /// embeddings of images not stored before, with their content hashes; the images of each
    /// product are stored or among `new_vectors`. A new vector file stores its rows as `storage`;
    /// an existing one keeps its own storage until compaction. `notes` are what else is known of
    /// the images (`ImageNotes`).
    pub fn add_products(
        &mut self,
        model: &ModelStamp,
        storage: Storage,
        products: &[NewProduct],
        new_vectors: &[(String, Vec<f32>)],
        notes: &ImageNotes,
    ) -> Result<()> {
        self.check_stamp(model)?;
        let dim = model.dim;
        let committed = self.vector_count()?;
        if !new_vectors.is_empty() {
            let rows: Vec<f32> = new_vectors.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            self.vector_file(dim, storage)?.append(committed, &rows)?;
        }
        let tx = self.conn.transaction()?;
        record_model(&tx, model)?;
        for (i, (hash, _)) in new_vectors.iter().enumerate() {
            tx.execute(
                "INSERT INTO vectors(id, sha256) VALUES(?1, ?2)",
                params![(committed + i) as i64, hash],
            )?;
        }
        set_meta(&tx, "vector_count", (committed + new_vectors.len()).to_string())?;
        put_notes(&tx, notes)?;
        let t = now();
        for p in products {
            put_product(&tx, p, t)?;
        }
        tx.commit().context("cannot commit the catalog change")?;
        Ok(())
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
    pub(super) fn load_graph(&self, gen: u64, covered: usize) -> Result<Graph> {
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

    /// Deletes files of generations that are no longer current (best effort).
    pub(super) fn cleanup(&self) {
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

    /// Counts for `catalog stats`, local features counted when they begin with
    /// `features_format` (the current format; `stats` passes it).
    pub fn stats_counting(&self, features_format: &[u8]) -> Result<Stats> {
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
            live_vectors_with_features: if self.schema.has_features() {
                self.conn.query_row(
                    "SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                     JOIN local_features f ON f.sha256=v.sha256 WHERE p.removed=0 AND substr(f.data, 1, 8) = ?1",
                    [features_format],
                    |r| r.get::<_, i64>(0),
                )? as usize
            } else {
                0
            },
            live_vectors_with_shared: if self.schema.has_shared() {
                q("SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                   JOIN shared_points s ON s.sha256=v.sha256 WHERE p.removed=0")?
            } else {
                0
            },
            live_vectors_with_colours: if self.schema.has_colours() {
                q("SELECT COUNT(DISTINCT v.id) FROM images i JOIN products p ON p.id=i.product JOIN vectors v ON v.id=i.vector
                   JOIN colours c ON c.sha256=v.sha256 WHERE p.removed=0")?
            } else {
                0
            },
            live_vectors_with_phash: if self.schema.has_phashes() {
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

/// Stores what is known of images besides their embeddings (`ImageNotes`).
fn put_notes(tx: &rusqlite::Transaction, notes: &ImageNotes) -> Result<()> {
    for (hash, data) in &notes.features {
        // an image added again keeps its features, unless they are in an outdated format
        tx.execute(
            "INSERT INTO local_features VALUES(?1, ?2)
             ON CONFLICT(sha256) DO UPDATE SET data=excluded.data WHERE substr(local_features.data, 1, 8) <> ?3",
            params![hash, data, notes.features_format],
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
    Ok(())
}

/// Adds or updates one product (live again, updated at `t`), its sellers and its images.
fn put_product(tx: &rusqlite::Transaction, p: &NewProduct, t: i64) -> Result<()> {
    tx.execute("INSERT INTO brands(name) VALUES(?1) ON CONFLICT(name) DO NOTHING", [p.brand])?;
    let brand: i64 =
        tx.query_row("SELECT id FROM brands WHERE name=?1", [p.brand], |r| r.get(0))?;
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
    for s in p.authorized_sellers {
        tx.execute("INSERT OR IGNORE INTO sellers VALUES(?1, ?2)", params![pk, s])?;
    }
    for (hash, source) in p.images {
        let vid: i64 = tx
            .query_row("SELECT id FROM vectors WHERE sha256=?1", [hash], |r| r.get(0))
            .with_context(|| format!("internal error: image {source} has no stored vector"))?;
        tx.execute("INSERT OR IGNORE INTO images VALUES(?1, ?2, ?3)", params![pk, vid, source])?;
    }
    Ok(())
}

/// Takes the data directory's write lock, creating the directory when missing.
fn lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let f = File::create(dir.join("lock"))
        .with_context(|| format!("cannot create lock in {}", dir.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another knockoff command is writing to {}; try again when it ends",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context("cannot lock the data directory"),
    }
}

/// Sets one meta value inside a transaction.
pub(super) fn set_meta(
    tx: &rusqlite::Transaction,
    key: &str,
    value: String,
) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT INTO meta VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
        params![key, value],
    )
}

/// Records which model (and preprocessing and dimension) made the catalog's embeddings.
fn record_model(tx: &rusqlite::Transaction, model: &ModelStamp) -> rusqlite::Result<()> {
    set_meta(tx, "model", model.name.clone())?;
    set_meta(tx, "model_sha256", model.sha256.clone())?;
    set_meta(tx, "model_preprocessing", model.preprocessing.clone())?;
    set_meta(tx, "dim", model.dim.to_string())?;
    Ok(())
}

/// File of search graph generation `gen` inside a data directory.
pub(super) fn graph_path(data_dir: &Path, gen: u64) -> PathBuf {
    data_dir.join(format!("graph-{gen}.knkg"))
}

/// Directory where knockoff versions that used hnsw_rs kept graph generation `gen`.
pub(super) fn legacy_graph_dir(data_dir: &Path, gen: u64) -> PathBuf {
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
