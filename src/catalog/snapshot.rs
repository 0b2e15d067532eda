//! Catalog snapshots: a read-only, checksummed copy of a data directory that scans can use with
//! `--data` from anywhere (shipped to Spark executors, on read-only or shared storage).
//!
//! A snapshot is a directory holding the files a scan reads and a manifest:
//! - `snapshot.json`: format name and version, the knockoff version that wrote it, the catalog's
//!   schema version, the model (name, sha256 of its ONNX file, preprocessing, dimension), counts,
//!   and every other file with its size and sha256;
//! - `catalog.sqlite`: a compact copy of the catalog database (`VACUUM INTO`, rollback journal);
//! - `vectors-<gen>.f32`, `background-<gen>.vec`: the committed rows only;
//! - `graph-<gen>.knkg`: the HNSW search graph, when the catalog has one;
//! - `config.toml`: the data directory's settings, when it has them.
//!
//! It is written aside (`OUT.tmp-PID`), its files and directory made read-only, then renamed to
//! `OUT` in one step. Opening one checks every file's size and checksum, opens the database
//! immutable (SQLite takes no lock and writes nothing) and never creates a file in it: a scan on
//! a snapshot writes nothing there, so it may sit on read-only storage.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::schema::{self, SCHEMA_VERSION};
use super::store::{graph_path, Store};

/// The manifest's file name inside a snapshot.
pub const MANIFEST: &str = "snapshot.json";
/// The manifest's `format` value.
pub const FORMAT: &str = "knockoff-catalog-snapshot";
/// Version of the snapshot format this knockoff writes and reads.
pub const VERSION: u32 = 1;

/// What `snapshot.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SnapshotManifest {
    /// Always `FORMAT`.
    pub format: String,
    /// Snapshot format version (`VERSION`).
    pub version: u32,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: u64,
    /// knockoff version that wrote it.
    pub knockoff_version: String,
    /// The catalog database's format version (`catalog::SCHEMA_VERSION`).
    pub schema_version: i64,
    /// The model the catalog's embeddings were made with (none for an empty catalog).
    pub model: Option<ModelRecord>,
    /// Live products.
    pub products: usize,
    /// Stored reference embeddings.
    pub vectors: usize,
    /// Every file of the snapshot but the manifest, with size and checksum.
    pub files: Vec<FileEntry>,
}

/// The model recorded in a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelRecord {
    /// Manifest name (`sscd`, `sscd_distilled`, ...).
    pub name: String,
    /// sha256 of the ONNX file.
    pub sha256: String,
    /// Preprocessing that made the embeddings (`Manifest::preprocessing`).
    pub preprocessing: String,
    /// Embedding dimension.
    pub dim: usize,
}

/// One file of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the snapshot directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 of its bytes, lower-case hex.
    pub sha256: String,
}

/// True when `dir` holds a snapshot (a manifest), not a data directory.
pub fn is_snapshot(dir: &Path) -> bool {
    dir.join(MANIFEST).is_file()
}

/// Hex sha256 of a reader's bytes and how many there were.
fn hash_reader(mut r: impl Read) -> std::io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("{:x}", h.finalize()), n))
}

/// Hex sha256 of a file.
pub fn hash_file(path: &Path) -> Result<String> {
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hash_reader(std::io::BufReader::new(f))
        .with_context(|| format!("cannot read {}", path.display()))?
        .0)
}

/// Copies the first `limit` bytes of `from` (all when `None`) to the new file `to`, synced and
/// made read-only; returns its manifest entry.
fn copy_file(from: &Path, to: &Path, limit: Option<u64>) -> Result<FileEntry> {
    let src = File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    let mut dst = File::create(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut reader = src.take(limit.unwrap_or(u64::MAX));
    std::io::copy(&mut reader, &mut dst)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    if let Some(n) = limit {
        if dst.metadata()?.len() != n {
            bail!("{} is shorter than the catalog records ({n} bytes)", from.display());
        }
    }
    dst.sync_all().with_context(|| format!("cannot sync {}", to.display()))?;
    drop(dst);
    seal_file(to)
}

/// Makes a finished file read-only and returns its manifest entry.
fn seal_file(path: &Path) -> Result<FileEntry> {
    set_mode(path, 0o444)?;
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (sha256, bytes) = hash_reader(std::io::BufReader::new(f))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    Ok(FileEntry { name, bytes, sha256 })
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot make {} read-only", path.display()))
}

#[cfg(not(unix))]
fn set_mode(path: &Path, _mode: u32) -> Result<()> {
    let mut p = std::fs::metadata(path)?.permissions();
    p.set_readonly(true);
    std::fs::set_permissions(path, p)
        .with_context(|| format!("cannot make {} read-only", path.display()))
}

/// Writes a snapshot of `store`'s catalog to the new directory `out` (which must not exist):
/// written aside, then renamed into place. `store` must be open for writing, so no other command
/// changes the catalog while it is copied.
pub fn create(store: &Store, out: &Path) -> Result<SnapshotManifest> {
    if out.exists() {
        bail!("{} already exists; choose a new path for the snapshot (snapshots are never overwritten)", out.display());
    }
    let tmp = crate::util::fsutil::temp_sibling(out);
    if tmp.exists() {
        make_writable(&tmp);
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove the leftover {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let manifest = write_files(store, &tmp).inspect_err(|_| {
        make_writable(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    set_mode(&tmp, 0o555)?;
    crate::util::fsutil::sync_dir(Some(&tmp));
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))?;
    crate::util::fsutil::sync_dir(out.parent());
    Ok(manifest)
}

/// Gives a half-written snapshot directory back its write permission, so it can be removed.
fn make_writable(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
}

/// Copies the catalog's files into `dir` and writes the manifest last.
fn write_files(store: &Store, dir: &Path) -> Result<SnapshotManifest> {
    let mut files = Vec::new();
    let db = dir.join("catalog.sqlite");
    let db_text = db.to_str().with_context(|| format!("{} is not valid UTF-8", db.display()))?;
    store
        .conn
        .execute("VACUUM INTO ?1", [db_text])
        .with_context(|| format!("cannot copy the catalog database to {}", db.display()))?;
    {
        let copy =
            Connection::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
        let _mode: String = copy.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    }
    File::open(&db)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", db.display()))?;
    files.push(seal_file(&db)?);
    let dim = store.meta("dim")?.and_then(|d| d.parse::<usize>().ok());
    let count = store.vector_count()?;
    if let Some(dim) = dim.filter(|_| count > 0) {
        let gen = store.meta_num("vectors_generation")?;
        let name = format!("vectors-{gen}.f32");
        let vf = crate::index::vectors::VectorFile::open(
            &store.dir.join(&name),
            dim,
            crate::index::vectors::Storage::default(),
        )?;
        let bytes = 16 + (count * vf.storage().row_bytes(dim)) as u64;
        files.push(copy_file(&store.dir.join(&name), &dir.join(&name), Some(bytes))?);
        if store.meta_num("hnsw_covered")? > 0 {
            let from = graph_path(&store.dir, store.meta_num("hnsw_generation")?);
            let name = from.file_name().context("graph file name")?.to_owned();
            files.push(copy_file(&from, &dir.join(name), None)?);
        }
    }
    let background = store.meta_num("background_count")? as usize;
    if let Some(dim) = dim.filter(|_| background > 0) {
        let name = format!("background-{}.vec", store.meta_num("background_generation")?);
        let vf = crate::index::vectors::VectorFile::open(
            &store.dir.join(&name),
            dim,
            crate::index::vectors::Storage::default(),
        )?;
        let bytes = 16 + (background * vf.storage().row_bytes(dim)) as u64;
        files.push(copy_file(&store.dir.join(&name), &dir.join(&name), Some(bytes))?);
    }
    let config = store.dir.join("config.toml");
    if config.is_file() {
        files.push(copy_file(&config, &dir.join("config.toml"), None)?);
    }
    let manifest = SnapshotManifest {
        format: FORMAT.to_string(),
        version: VERSION,
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        knockoff_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version: SCHEMA_VERSION,
        model: model_record(store)?,
        products: store.conn.query_row(
            "SELECT COUNT(*) FROM products WHERE removed=0",
            [],
            |r| r.get::<_, i64>(0),
        )? as usize,
        vectors: count,
        files,
    };
    let path = dir.join(MANIFEST);
    let mut f = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    set_mode(&path, 0o444)?;
    Ok(manifest)
}

/// The model recorded in the catalog's meta table, if any.
fn model_record(store: &Store) -> Result<Option<ModelRecord>> {
    let Some(name) = store.meta("model")? else {
        return Ok(None);
    };
    Ok(Some(ModelRecord {
        name,
        sha256: store.meta("model_sha256")?.unwrap_or_default(),
        preprocessing: store.meta("model_preprocessing")?.unwrap_or_default(),
        dim: store.meta("dim")?.and_then(|d| d.parse().ok()).unwrap_or(0),
    }))
}

/// Reads and checks a snapshot's manifest: format, version, and every file's size and sha256.
pub fn verify(dir: &Path) -> Result<SnapshotManifest> {
    use rayon::prelude::*;
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let retake = "take a new snapshot with `knockoff catalog snapshot`";
    let head: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the catalog snapshot {} is damaged: {} is not JSON; {retake}",
            dir.display(),
            path.display()
        )
    })?;
    if head["format"] != FORMAT {
        bail!(
            "{} is not a knockoff catalog snapshot manifest (format {})",
            path.display(),
            head["format"]
        );
    }
    if head["version"].as_u64() != Some(VERSION as u64) {
        bail!(
            "the catalog snapshot {} has format version {}; this knockoff reads version {VERSION}",
            dir.display(),
            head["version"]
        );
    }
    let m: SnapshotManifest = serde_json::from_value(head).with_context(|| {
        format!("the catalog snapshot {} is damaged: {}", dir.display(), path.display())
    })?;
    if m.schema_version != SCHEMA_VERSION {
        bail!("the catalog snapshot {} holds a catalog of format version {}; this knockoff reads version {SCHEMA_VERSION}", dir.display(), m.schema_version);
    }
    if !m.files.iter().any(|f| f.name == "catalog.sqlite") {
        bail!(
            "the catalog snapshot {} is damaged: its manifest lists no catalog.sqlite; {retake}",
            dir.display()
        );
    }
    m.files.par_iter().try_for_each(|f| check_file(dir, f))?;
    Ok(m)
}

/// Checks one file of a snapshot against its manifest entry.
fn check_file(dir: &Path, f: &FileEntry) -> Result<()> {
    let retake = "take a new snapshot with `knockoff catalog snapshot`";
    if f.name.is_empty() || f.name.contains(['/', '\\']) || f.name == ".." || f.name == "." {
        bail!(
            "the catalog snapshot {} is damaged: its manifest names the file {:?}",
            dir.display(),
            f.name
        );
    }
    let path = dir.join(&f.name);
    let len = std::fs::metadata(&path)
        .with_context(|| {
            format!(
                "the catalog snapshot {} is incomplete: {} is missing; {retake}",
                dir.display(),
                f.name
            )
        })?
        .len();
    if len != f.bytes {
        bail!("the catalog snapshot {} is damaged: {} has {len} bytes, its manifest records {}; {retake}", dir.display(), f.name, f.bytes);
    }
    let sha = hash_file(&path)?;
    if sha != f.sha256 {
        bail!("the catalog snapshot {} is damaged: {} has sha256 {sha}, its manifest records {} (checksum mismatch); {retake}", dir.display(), f.name, f.sha256);
    }
    Ok(())
}

/// `file:` URI of `path` for SQLite, percent-encoding what a URI would misread.
fn sqlite_uri(path: &Path, query: &str) -> Result<String> {
    let abs =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    let text = abs.to_str().with_context(|| format!("{} is not valid UTF-8", abs.display()))?;
    let mut uri = String::from("file:");
    for b in text.bytes() {
        match b {
            b'%' | b'?' | b'#' | b' ' | 0..=31 | 127..=255 => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(b as char),
        }
    }
    Ok(format!("{uri}?{query}"))
}

/// Opens a snapshot's database read-only and immutable: SQLite neither locks nor writes.
pub(super) fn open_db(db: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(sqlite_uri(db, "immutable=1")?, flags)
        .with_context(|| format!("cannot open {}", db.display()))
}

/// Opens a snapshot for reading after checking it (`verify`) and that the files its database
/// points to are among the checked ones.
pub(super) fn open(dir: &Path) -> Result<Store> {
    let t = std::time::Instant::now();
    let manifest = verify(dir)?;
    tracing::debug!("catalog snapshot {} checked in {:?}", dir.display(), t.elapsed());
    let db = dir.join("catalog.sqlite");
    let conn = open_db(&db)?;
    let schema = schema::read(&conn, &db)?;
    let store =
        Store { dir: dir.to_path_buf(), conn, _lock: None, snapshot: Some(manifest), schema };
    let listed = |name: &str| {
        store.snapshot.as_ref().is_some_and(|m| m.files.iter().any(|f| f.name == name))
    };
    let mut needed = Vec::new();
    if store.vector_count()? > 0 {
        needed.push(format!("vectors-{}.f32", store.meta_num("vectors_generation")?));
    }
    if store.meta_num("hnsw_covered")? > 0 {
        needed.push(format!("graph-{}.knkg", store.meta_num("hnsw_generation")?));
    }
    if store.meta_num("background_count")? > 0 {
        needed.push(format!("background-{}.vec", store.meta_num("background_generation")?));
    }
    if let Some(missing) = needed.iter().find(|n| !listed(n)) {
        bail!("the catalog snapshot {} is damaged: its catalog needs {missing}, which its manifest does not list", dir.display());
    }
    if model_record(&store)? != store.snapshot.as_ref().and_then(|m| m.model.clone()) {
        bail!("the catalog snapshot {} is damaged: its manifest and its catalog name different models", dir.display());
    }
    Ok(store)
}
