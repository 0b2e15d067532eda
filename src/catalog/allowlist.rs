//! Allow-lists fed by reviewers' decisions: a listing photo decided `genuine` or `not_our_product`
//! for a product is not flagged for that product again, nor any near-duplicate of it.
//!
//! Entries live in `DATA/allowlist.sqlite` (WAL; schema versioned by `PRAGMA user_version` and
//! numbered migrations), one row per (product, photo): the photo's perceptual hash (`phash`), the
//! decision, who took it and when. A listing photo is on a product's allow-list when one of its
//! hashes (every orientation, `load::Loaded::phashes`) is at most `phash::NEAR` bits from an
//! entry's: the threshold measured for near-duplicates (docs/benchmarks-notebook.md,
//! "Near-duplicates by perceptual hash": every blurred, JPEG and greyscale copy within 4 bits of
//! its original, no photo that is not a copy within 6). A photo that copies one of the brand's own
//! reference photos is allowed only for the seller decided on (`Entry::seller_id`): counterfeiters
//! copy those photos too.
//!
//! `knockoff scan` reads the file once; the server shares one `Shared` list between its decisions
//! (which write through it) and its scanner, so a decision counts from the next scan on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection};
use serde::Serialize;

/// File name of the allow-list database in the data directory.
pub const FILE: &str = "allowlist.sqlite";

/// Migration N (1-based) brings the schema from version N-1 to N. Never edit one that shipped.
const MIGRATIONS: &[&str] = &[
    // 1: entries
    "CREATE TABLE entries(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        brand TEXT NOT NULL,
        product_id TEXT NOT NULL,
        image TEXT NOT NULL,
        phash INTEGER NOT NULL,
        seller_id TEXT,
        decision TEXT NOT NULL,
        decided_by TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        verdict_id INTEGER,
        listing_id TEXT);
     CREATE INDEX entries_product ON entries(brand, product_id);
     CREATE INDEX entries_verdict ON entries(verdict_id);",
];

/// One allowed photo of a product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The product's brand.
    pub brand: String,
    /// The product.
    pub product_id: String,
    /// The listing photo decided on (URL, `upload:SHA256` or path, as the verdict showed it).
    pub image: String,
    /// Its perceptual hash.
    #[serde(skip)]
    pub phash: u64,
    /// When set, the photo is allowed only for this seller (it copies a reference photo).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    /// `genuine` or `not_our_product`.
    pub decision: String,
    /// Who decided (a key id).
    pub decided_by: String,
    /// When (RFC 3339, UTC).
    pub decided_at: String,
    /// The verdict decided on (server verdict id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_id: Option<i64>,
    /// Its listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listing_id: Option<String>,
}

/// A product match set aside because its listing photo is allowed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allowed {
    /// The listing photo.
    pub listing_image: String,
    /// Bits between its hash and the entry's (0 for the same photo).
    pub hash_distance: u32,
    /// The score the product's match had.
    pub score: f32,
    /// The entry that allows it.
    pub entry: Entry,
}

impl Allowed {
    /// A sentence for the verdict's reasons.
    pub fn reason(&self) -> String {
        let e = &self.entry;
        let on = match (e.verdict_id, &e.listing_id) {
            (Some(v), Some(l)) => format!(" on verdict {v} (listing {l})"),
            (Some(v), None) => format!(" on verdict {v}"),
            _ => String::new(),
        };
        let seller = e.seller_id.as_ref().map(|s| format!(", for seller {s}")).unwrap_or_default();
        format!(
            "photo {} is on the allow-list of {} / {}: decided {} by key {} at {}{on}{seller} (hashes {} of 64 bits apart); its match ({:.3}) is set aside",
            self.listing_image, e.brand, e.product_id, e.decision, e.decided_by, e.decided_at, self.hash_distance, self.score
        )
    }
}

/// The entries, by product.
#[derive(Debug, Default)]
pub struct Allowlist {
    by_product: HashMap<(String, String), Vec<Entry>>,
}

impl Allowlist {
    /// Reads `DATA/allowlist.sqlite`; empty when there is none.
    pub fn open(data: &Path) -> Result<Allowlist> {
        let path = data.join(FILE);
        if !path.is_file() {
            return Ok(Allowlist::default());
        }
        let conn = connect(&path)?;
        let mut list = Allowlist::default();
        let mut st = conn.prepare(
            "SELECT brand, product_id, image, phash, seller_id, decision, decided_by, decided_at, verdict_id, listing_id
             FROM entries ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Entry {
                brand: r.get(0)?,
                product_id: r.get(1)?,
                image: r.get(2)?,
                phash: r.get::<_, i64>(3)? as u64,
                seller_id: r.get(4)?,
                decision: r.get(5)?,
                decided_by: r.get(6)?,
                decided_at: r.get(7)?,
                verdict_id: r.get(8)?,
                listing_id: r.get(9)?,
            })
        })?;
        for e in rows {
            list.insert(e.with_context(|| format!("cannot read {}", path.display()))?);
        }
        Ok(list)
    }

    fn insert(&mut self, e: Entry) {
        self.by_product.entry((e.brand.clone(), e.product_id.clone())).or_default().push(e);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.by_product.values().map(Vec::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_product.is_empty()
    }

    /// The nearest entry of product (`brand`, `product_id`) within `phash::NEAR` bits of one of
    /// `hashes` (a listing photo's, every orientation) that applies to `seller_id`.
    pub fn find(
        &self,
        brand: &str,
        product_id: &str,
        seller_id: &str,
        hashes: &[u64],
    ) -> Option<(&Entry, u32)> {
        let entries = self.by_product.get(&(brand.to_string(), product_id.to_string()))?;
        entries
            .iter()
            .filter(|e| e.seller_id.as_deref().is_none_or(|s| s == seller_id))
            .filter_map(|e| {
                hashes
                    .iter()
                    .map(|h| crate::vision::phash::distance(*h, e.phash))
                    .min()
                    .map(|d| (e, d))
            })
            .filter(|(_, d)| *d <= crate::vision::phash::NEAR)
            .min_by_key(|(_, d)| *d)
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let mut conn =
        Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&mut conn)
        .with_context(|| format!("cannot update the schema of {}", path.display()))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
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

/// An allow-list shared by a scanner and the decisions that feed it (a server's), backed by
/// `DATA/allowlist.sqlite` when it has a data directory.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    list: Arc<RwLock<Allowlist>>,
    path: Option<PathBuf>,
}

impl Shared {
    /// The allow-list of data directory `data`, read now; `add` and `revoke` write there.
    pub fn open(data: &Path) -> Result<Shared> {
        Ok(Shared {
            list: Arc::new(RwLock::new(Allowlist::open(data)?)),
            path: Some(data.join(FILE)),
        })
    }

    /// Runs `f` on the entries.
    pub fn read<T>(&self, f: impl FnOnce(&Allowlist) -> T) -> T {
        match self.list.read() {
            Ok(l) => f(&l),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Stores an entry (durably, before the scanner sees it).
    pub fn add(&self, e: Entry) -> Result<()> {
        if let Some(path) = &self.path {
            let conn = connect(path)?;
            conn.execute(
                "INSERT INTO entries(brand, product_id, image, phash, seller_id, decision, decided_by, decided_at, verdict_id, listing_id)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![e.brand, e.product_id, e.image, e.phash as i64, e.seller_id, e.decision, e.decided_by, e.decided_at, e.verdict_id, e.listing_id],
            )
            .with_context(|| format!("cannot store an allow-list entry in {}", path.display()))?;
        }
        self.list.write().unwrap_or_else(|p| p.into_inner()).insert(e);
        Ok(())
    }

    /// Removes the entries that verdict `verdict_id`'s decisions added (a later decision said
    /// counterfeit); returns how many.
    pub fn revoke(&self, verdict_id: i64) -> Result<usize> {
        if let Some(path) = &self.path {
            let conn = connect(path)?;
            conn.execute("DELETE FROM entries WHERE verdict_id = ?1", [verdict_id])
                .with_context(|| format!("cannot update {}", path.display()))?;
        }
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        let before = list.len();
        for entries in list.by_product.values_mut() {
            entries.retain(|e| e.verdict_id != Some(verdict_id));
        }
        list.by_product.retain(|_, v| !v.is_empty());
        Ok(before - list.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(product: &str, phash: u64, seller: Option<&str>, verdict: i64) -> Entry {
        Entry {
            brand: "Acme".into(),
            product_id: product.into(),
            image: "https://m.example/p.jpg".into(),
            phash,
            seller_id: seller.map(String::from),
            decision: "genuine".into(),
            decided_by: "3f9a1c0b2d4e".into(),
            decided_at: "2026-12-03T22:00:00Z".into(),
            verdict_id: Some(verdict),
            listing_id: Some("L1".into()),
        }
    }

    #[test]
    fn near_hashes_of_the_product_are_allowed_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let shared = Shared::open(dir.path()).unwrap();
        assert!(shared.read(Allowlist::is_empty));
        shared.add(entry("diver", 0xF0F0_F0F0_0000_FFFF, None, 7)).unwrap();
        shared.add(entry("chrono", 0x1234, Some("shop1"), 8)).unwrap();
        let near = 0xF0F0_F0F0_0000_FFFF ^ 0b1011; // 3 bits
        let far = 0xF0F0_F0F0_0000_FFFF ^ 0b11111; // 5 bits
        for list in [
            Allowlist::open(dir.path()).unwrap(),
            std::mem::take(&mut *shared.list.write().unwrap()),
        ] {
            assert_eq!(list.len(), 2);
            assert_eq!(
                list.find("Acme", "diver", "anyone", &[far, near]).map(|(e, d)| (e.verdict_id, d)),
                Some((Some(7), 3))
            );
            assert!(
                list.find("Acme", "diver", "anyone", &[far]).is_none(),
                "5 bits is not a near-duplicate"
            );
            assert!(list.find("Acme", "classic", "anyone", &[near]).is_none(), "another product");
            assert!(list.find("Other", "diver", "anyone", &[near]).is_none(), "another brand");
            assert!(list.find("Acme", "chrono", "shop1", &[0x1234]).is_some());
            assert!(
                list.find("Acme", "chrono", "shop2", &[0x1234]).is_none(),
                "limited to its seller"
            );
        }
        let shared = Shared::open(dir.path()).unwrap();
        assert_eq!(shared.revoke(7).unwrap(), 1);
        assert_eq!(Allowlist::open(dir.path()).unwrap().len(), 1);
        assert!(shared.read(|l| l.find("Acme", "diver", "x", &[near]).is_none()));
    }

    #[test]
    fn reasons_say_which_decision_who_and_when() {
        let a = Allowed {
            listing_image: "https://m.example/p.jpg".into(),
            hash_distance: 0,
            score: 0.9,
            entry: entry("diver", 1, Some("shop1"), 7),
        };
        let r = a.reason();
        for part in [
            "allow-list of Acme / diver",
            "decided genuine",
            "key 3f9a1c0b2d4e",
            "2026-12-03T22:00:00Z",
            "verdict 7",
            "seller shop1",
        ] {
            assert!(r.contains(part), "{part} missing: {r}");
        }
    }
}
