//! The feature store: what is stored of each reference image besides its embedding (local
//! features, shared points, colours, perceptual hash), decoded from the catalog's rows when a
//! scan first needs it and kept.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension};

use super::schema::Schema;
use super::snapshot;
use super::store::{Stats, Store};

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
    /// Opens the features of the catalog database `db`, whose tables `schema` says, for reading
    /// (a catalog written before knockoff stored features has none).
    pub(super) fn open(db: &Path, in_snapshot: bool, schema: Schema) -> Result<FeatureStore> {
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
        let (has, has_shared, has_colours, has_phashes) = (
            schema.has_features(),
            schema.has_shared(),
            schema.has_colours(),
            schema.has_phashes(),
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

impl Store {
    /// Counts for `catalog stats` (local features in an outdated format do not count).
    pub fn stats(&self) -> Result<Stats> {
        self.stats_counting(&crate::vision::verify::orb::MAGIC[..])
    }
}
