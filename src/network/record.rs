//! The recorded-scan store: `DATA/records.sqlite`, one SQLite file beside the catalog (WAL,
//! transactions, so a crash leaves the last committed chunk). Each judged listing is one row with
//! its seller's fields, verdict and offer; its normalised identifiers and its photos (perceptual
//! hash, embedding) are rows of their own. A listing recorded again replaces its earlier record.
//! `network build` writes its networks back here (members, linking values, case files) so later
//! scans know them; analysts' marks (`enforced`) live here too.
//!
//! The format is versioned with `PRAGMA user_version` and explicit numbered migrations
//! (`MIGRATIONS`); a file from a newer knockoff is refused, an older one is migrated on opening.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use super::normalise::{Identifier, Kind};

/// File name of the store in the data directory.
pub const FILE: &str = "records.sqlite";

/// Migrations, in order: the store's version is the number of them applied.
const MIGRATIONS: &[&str] = &[
    // 1: listings, their identifiers and photos; networks, their members and linking values
    "CREATE TABLE listings(
        listing_id TEXT PRIMARY KEY, seller_id TEXT NOT NULL, seller_name TEXT, region TEXT,
        ship_from TEXT, shop_url TEXT, title TEXT, verdict TEXT NOT NULL, rule TEXT NOT NULL,
        price REAL, currency TEXT, price_base REAL, sold_count INTEGER, brand TEXT, product_id TEXT,
        listed_at TEXT, recorded_at INTEGER NOT NULL);
     CREATE INDEX listings_seller ON listings(seller_id);
     CREATE TABLE identifiers(
        listing_id TEXT NOT NULL, seller_id TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL,
        raw TEXT NOT NULL, country TEXT);
     CREATE INDEX identifiers_listing ON identifiers(listing_id);
     CREATE TABLE photos(
        listing_id TEXT NOT NULL, seller_id TEXT NOT NULL, position INTEGER NOT NULL,
        image TEXT NOT NULL, phash INTEGER, embedding BLOB, catalog INTEGER NOT NULL,
        reference TEXT, PRIMARY KEY(listing_id, position));
     CREATE TABLE networks(
        network_id TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'open', created_at INTEGER NOT NULL,
        marked_at INTEGER);
     CREATE TABLE members(seller_id TEXT PRIMARY KEY, network_id TEXT NOT NULL);
     CREATE TABLE network_values(key TEXT NOT NULL, network_id TEXT NOT NULL, PRIMARY KEY(key, network_id));
     CREATE TABLE network_photos(phash INTEGER NOT NULL, network_id TEXT NOT NULL, image TEXT NOT NULL);
     CREATE TABLE cases(network_id TEXT PRIMARY KEY, rank REAL NOT NULL, body TEXT NOT NULL);",
];

/// A listing as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedListing {
    /// The marketplace's listing id.
    pub listing_id: String,
    /// Its seller.
    pub seller_id: String,
    /// The seller's display name.
    pub seller_name: Option<String>,
    /// Where the shop is registered.
    pub region: Option<String>,
    /// Where goods ship from.
    pub ship_from: Option<String>,
    /// The shop's URL.
    pub shop_url: Option<String>,
    /// The listing's title.
    pub title: Option<String>,
    /// clear, review or flag.
    pub verdict: String,
    /// The rule that decided it.
    pub rule: String,
    /// The price as given.
    pub price: Option<f64>,
    /// Its currency.
    pub currency: Option<String>,
    /// The price in the base currency, when the rate is known.
    pub price_base: Option<f64>,
    /// Items sold.
    pub sold_count: Option<u64>,
    /// Brand of the product the verdict is about.
    pub brand: Option<String>,
    /// That product's id.
    pub product_id: Option<String>,
    /// When it went online (RFC 3339 as given).
    pub listed_at: Option<String>,
    /// When it was recorded (seconds since 1970).
    pub recorded_at: i64,
    /// Its seller's normalised identifiers.
    pub ids: Vec<Identifier>,
    /// Its photos.
    pub photos: Vec<RecordedPhoto>,
}

/// A listing photo as recorded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedPhoto {
    /// Path or URL as given.
    pub image: String,
    /// Perceptual hash.
    pub phash: Option<u64>,
    /// Whole-photo embedding (may be empty).
    pub embedding: Vec<f32>,
    /// Whether it is a catalog photo (links nobody).
    pub catalog: bool,
    /// The catalog reference photo it copies, for flagged and reviewed listings.
    pub reference: Option<String>,
}

/// Everything recorded, with seller ids interned (`sellers[i]`), for `network build`.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Seller ids; the others refer to them by index.
    pub sellers: Vec<String>,
    /// Listings (identifiers and photos empty; they are below).
    pub listings: Vec<(u32, RecordedListing)>,
    /// Identifiers with their seller.
    pub ids: Vec<(u32, Identifier)>,
    /// Photos that are not catalog photos and have a hash, with their seller.
    pub photos: Vec<(u32, RecordedPhoto)>,
}

/// A network written by `network build`: its members, the values that link them and its case.
#[derive(Debug, Clone)]
pub struct StoredNetwork {
    /// Its id.
    pub network_id: String,
    /// Member seller ids.
    pub members: Vec<String>,
    /// Linking values (`Identifier::key`).
    pub keys: Vec<String>,
    /// Linking photos: hash and photo.
    pub photos: Vec<(u64, String)>,
    /// Its rank (cases are listed by it).
    pub rank: f64,
    /// The case file as JSON.
    pub body: String,
}

/// The store.
pub struct RecordStore {
    conn: Connection,
    path: PathBuf,
}

/// Seconds since 1970, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl RecordStore {
    /// Opens (and with `create`, creates) the store in `dir`, migrating an older one. `Ok(None)`
    /// when there is none and `create` is false.
    pub fn open(dir: &Path, create: bool) -> Result<Option<RecordStore>> {
        let path = dir.join(FILE);
        if !create && !path.is_file() {
            return Ok(None);
        }
        if create {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        }
        let mut conn =
            Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn).with_context(|| format!("cannot prepare {}", path.display()))?;
        Ok(Some(RecordStore { conn, path }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records listings in one transaction, each replacing its earlier record.
    pub fn record(&mut self, listings: &[RecordedListing]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut del_ids = tx.prepare_cached("DELETE FROM identifiers WHERE listing_id = ?1")?;
            let mut del_photos = tx.prepare_cached("DELETE FROM photos WHERE listing_id = ?1")?;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO listings VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
            )?;
            let mut put_id =
                tx.prepare_cached("INSERT INTO identifiers VALUES(?1,?2,?3,?4,?5,?6)")?;
            let mut put_photo =
                tx.prepare_cached("INSERT INTO photos VALUES(?1,?2,?3,?4,?5,?6,?7,?8)")?;
            for l in listings {
                del_ids.execute([&l.listing_id])?;
                del_photos.execute([&l.listing_id])?;
                let sold = l.sold_count.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
                put.execute(params![
                    l.listing_id,
                    l.seller_id,
                    l.seller_name,
                    l.region,
                    l.ship_from,
                    l.shop_url,
                    l.title,
                    l.verdict,
                    l.rule,
                    l.price,
                    l.currency,
                    l.price_base,
                    sold,
                    l.brand,
                    l.product_id,
                    l.listed_at,
                    l.recorded_at
                ])?;
                for i in &l.ids {
                    put_id.execute(params![
                        l.listing_id,
                        l.seller_id,
                        i.kind.as_str(),
                        i.value,
                        i.raw,
                        i.country
                    ])?;
                }
                for (pos, p) in l.photos.iter().enumerate() {
                    let blob: Vec<u8> = p.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
                    put_photo.execute(params![
                        l.listing_id,
                        l.seller_id,
                        pos as i64,
                        p.image,
                        p.phash.map(|h| h as i64),
                        blob,
                        p.catalog,
                        p.reference
                    ])?;
                }
            }
        }
        tx.commit()
            .with_context(|| format!("cannot record listings in {}", self.path.display()))?;
        Ok(())
    }

    /// Number of recorded listings.
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn.query_row("SELECT count(*) FROM listings", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Reads everything recorded: `load_links`, then every seller's listings.
    #[cfg(test)]
    pub fn load(&self) -> Result<Recorded> {
        let mut out = self.load_links()?;
        let all: Vec<u32> = (0..out.sellers.len() as u32).collect();
        self.load_listings(&mut out, &all)?;
        Ok(out)
    }

    /// Reads what links sellers: the seller ids (interned in ascending order), their identifiers
    /// (each distinct one once per seller, though every listing of the seller carries it) and their
    /// listing photos that are not catalog photos; no listings (`load_listings` reads those of the
    /// sellers that turn out to matter).
    pub fn load_links(&self) -> Result<Recorded> {
        let mut out = Recorded::default();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut st =
            self.conn.prepare("SELECT DISTINCT seller_id FROM listings ORDER BY seller_id")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            index.insert(id.clone(), out.sellers.len() as u32);
            out.sellers.push(id);
        }
        // identifiers and photos whose listing row is missing (never written so) still count
        let mut intern = |id: &str, sellers: &mut Vec<String>| -> u32 {
            if let Some(s) = index.get(id) {
                return *s;
            }
            sellers.push(id.to_string());
            index.insert(id.to_string(), (sellers.len() - 1) as u32);
            (sellers.len() - 1) as u32
        };
        let mut of_seller: HashMap<u32, Vec<usize>> = HashMap::new();
        let mut st =
            self.conn.prepare("SELECT seller_id, kind, value, raw, country FROM identifiers")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let Some(kind) = Kind::parse(r.get_ref(1)?.as_str()?) else { continue };
            let s = intern(r.get_ref(0)?.as_str()?, &mut out.sellers);
            let (value, raw, country) =
                (r.get_ref(2)?.as_str()?, r.get_ref(3)?.as_str()?, r.get_ref(4)?.as_str_or_null()?);
            let known = of_seller.entry(s).or_default();
            let same = |i: &Identifier| {
                i.kind == kind
                    && i.value == value
                    && i.raw == raw
                    && i.country.as_deref() == country
            };
            if known.iter().any(|k| same(&out.ids[*k].1)) {
                continue;
            }
            known.push(out.ids.len());
            out.ids.push((
                s,
                Identifier {
                    kind,
                    value: value.to_string(),
                    raw: raw.to_string(),
                    country: country.map(str::to_string),
                },
            ));
        }
        let mut st = self.conn.prepare("SELECT seller_id, image, phash, embedding, reference FROM photos WHERE catalog = 0 AND phash IS NOT NULL")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let s = intern(r.get_ref(0)?.as_str()?, &mut out.sellers);
            let embedding = r
                .get_ref(3)?
                .as_blob_or_null()?
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let phash: i64 = r.get(2)?;
            out.photos.push((
                s,
                RecordedPhoto {
                    image: r.get(1)?,
                    phash: Some(phash as u64),
                    embedding,
                    catalog: false,
                    reference: r.get(4)?,
                },
            ));
        }
        Ok(out)
    }

    /// Reads the listings of `sellers` (indices into `rec.sellers`) into `rec.listings`, by seller
    /// and listing id.
    pub fn load_listings(&self, rec: &mut Recorded, sellers: &[u32]) -> Result<()> {
        let mut st = self.conn.prepare(
            "SELECT listing_id, seller_id, seller_name, region, ship_from, shop_url, title, verdict, rule, price, currency,
                    price_base, sold_count, brand, product_id, listed_at, recorded_at FROM listings WHERE seller_id = ?1 ORDER BY listing_id",
        )?;
        let mut sorted = sellers.to_vec();
        sorted.sort_by(|a, b| rec.sellers[*a as usize].cmp(&rec.sellers[*b as usize]));
        sorted.dedup();
        for s in sorted {
            let mut rows = st.query([&rec.sellers[s as usize]])?;
            while let Some(r) = rows.next()? {
                rec.listings.push((s, listing_row(r)?));
            }
        }
        Ok(())
    }

    /// Photos of listings (all, catalog photos included) by listing id, for case files.
    pub fn photos_of(&self, listing_id: &str) -> Result<Vec<RecordedPhoto>> {
        let mut st = self.conn.prepare_cached("SELECT image, phash, catalog, reference FROM photos WHERE listing_id = ?1 ORDER BY position")?;
        let rows = st.query_map([listing_id], |r| {
            Ok(RecordedPhoto {
                image: r.get(0)?,
                phash: r.get::<_, Option<i64>>(1)?.map(|h| h as u64),
                embedding: Vec::new(),
                catalog: r.get(2)?,
                reference: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Previous networks: member seller id → (network id, created at).
    pub fn previous_members(&self) -> Result<HashMap<String, (String, i64)>> {
        let mut st = self.conn.prepare("SELECT m.seller_id, m.network_id, n.created_at FROM members m JOIN networks n USING(network_id)")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, (r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Statuses of networks by id (`open`, `enforced`, ...).
    pub fn statuses(&self) -> Result<HashMap<String, String>> {
        let mut st = self.conn.prepare("SELECT network_id, status FROM networks")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces the built networks in one transaction; `merged` says which earlier network ids
    /// each new one continues (their status carries over: enforced stays enforced).
    pub fn save_networks(
        &mut self,
        networks: &[StoredNetwork],
        merged: &HashMap<String, Vec<String>>,
    ) -> Result<()> {
        let statuses = self.statuses()?;
        let now = now();
        let tx = self.conn.transaction()?;
        tx.execute_batch("DELETE FROM members; DELETE FROM network_values; DELETE FROM network_photos; DELETE FROM cases;")?;
        {
            let mut net = tx.prepare("INSERT OR IGNORE INTO networks(network_id, status, created_at) VALUES(?1, 'open', ?2)")?;
            let mut status = tx.prepare("UPDATE networks SET status = ?2 WHERE network_id = ?1")?;
            let mut member = tx.prepare("INSERT OR REPLACE INTO members VALUES(?1, ?2)")?;
            let mut value = tx.prepare("INSERT OR IGNORE INTO network_values VALUES(?1, ?2)")?;
            let mut photo = tx.prepare("INSERT INTO network_photos VALUES(?1, ?2, ?3)")?;
            let mut case = tx.prepare("INSERT INTO cases VALUES(?1, ?2, ?3)")?;
            for n in networks {
                net.execute(params![n.network_id, now])?;
                let earlier = merged.get(&n.network_id).into_iter().flatten();
                if earlier.filter_map(|id| statuses.get(id)).any(|s| s == "enforced") {
                    status.execute(params![n.network_id, "enforced"])?;
                }
                for m in &n.members {
                    member.execute(params![m, n.network_id])?;
                }
                for k in &n.keys {
                    value.execute(params![k, n.network_id])?;
                }
                for (h, image) in &n.photos {
                    photo.execute(params![*h as i64, n.network_id, image])?;
                }
                case.execute(params![n.network_id, n.rank, n.body])?;
            }
        }
        tx.commit().with_context(|| format!("cannot save networks in {}", self.path.display()))?;
        Ok(())
    }

    /// Case files (JSON) of the last build, highest rank first.
    pub fn cases(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT body FROM cases ORDER BY rank DESC, network_id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One case file (JSON) by network id.
    pub fn case(&self, network_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT body FROM cases WHERE network_id = ?1", [network_id], |r| r.get(0))
            .optional()?)
    }

    /// Marks a network (`enforced`, `open`); fails for an unknown id.
    pub fn mark(&mut self, network_id: &str, status: &str) -> Result<()> {
        let n = self.conn.execute(
            "UPDATE networks SET status = ?2, marked_at = ?3 WHERE network_id = ?1",
            params![network_id, status, now()],
        )?;
        if n == 0 {
            bail!("no network {network_id} (see `knockoff network list`)");
        }
        Ok(())
    }

    /// What a scan needs to know about built networks (`Known`).
    pub fn known(&self) -> Result<super::Known> {
        let statuses = self.statuses()?;
        let enforced = |id: &str| statuses.get(id).is_some_and(|s| s == "enforced");
        let mut known = super::Known::default();
        let mut st = self.conn.prepare("SELECT seller_id, network_id FROM members")?;
        for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (seller, id) = r?;
            let e = enforced(&id);
            known.members.insert(seller, (id, e));
        }
        let mut st =
            self.conn.prepare("SELECT key, network_id FROM network_values ORDER BY network_id")?;
        for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (key, id) = r?;
            let e = enforced(&id);
            known.values.entry(key).or_insert((id, e));
        }
        let mut st = self.conn.prepare("SELECT phash, network_id, image FROM network_photos")?;
        let mut photos = Vec::new();
        for r in st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })? {
            let (h, id, image) = r?;
            let e = enforced(&id);
            photos.push((h as u64, id, image, e));
        }
        known.set_photos(photos);
        Ok(known)
    }
}

/// A listing row (the columns of `load_listings`' query), without identifiers and photos.
fn listing_row(r: &rusqlite::Row) -> rusqlite::Result<RecordedListing> {
    Ok(RecordedListing {
        listing_id: r.get(0)?,
        seller_id: r.get(1)?,
        seller_name: r.get(2)?,
        region: r.get(3)?,
        ship_from: r.get(4)?,
        shop_url: r.get(5)?,
        title: r.get(6)?,
        verdict: r.get(7)?,
        rule: r.get(8)?,
        price: r.get(9)?,
        currency: r.get(10)?,
        price_base: r.get(11)?,
        sold_count: r.get::<_, Option<i64>>(12)?.map(|n| n.max(0) as u64),
        brand: r.get(13)?,
        product_id: r.get(14)?,
        listed_at: r.get(15)?,
        recorded_at: r.get(16)?,
        ..RecordedListing::default()
    })
}

/// Brings the store to the current version (`MIGRATIONS`), each step in its own transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let current = MIGRATIONS.len() as i64;
    if version > current {
        bail!("recorded by a newer knockoff (format version {version}; this one reads up to {current})");
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql).with_context(|| format!("migration {} failed", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(id: &str, seller: &str) -> RecordedListing {
        RecordedListing {
            listing_id: id.into(),
            seller_id: seller.into(),
            verdict: "flag".into(),
            rule: "r".into(),
            sold_count: Some(u64::MAX),
            ids: vec![Identifier {
                kind: Kind::Wechat,
                value: "x".into(),
                raw: "X".into(),
                country: None,
            }],
            photos: vec![RecordedPhoto {
                image: "a.jpg".into(),
                phash: Some(u64::MAX - 1),
                embedding: vec![0.5, -1.0],
                catalog: false,
                reference: None,
            }],
            ..RecordedListing::default()
        }
    }

    #[test]
    fn a_listing_recorded_again_replaces_its_record() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RecordStore::open(dir.path(), false).unwrap().is_none());
        let mut s = RecordStore::open(dir.path(), true).unwrap().unwrap();
        s.record(&[listing("l1", "a"), listing("l2", "b")]).unwrap();
        let mut again = listing("l1", "c");
        again.ids.clear();
        s.record(&[again]).unwrap();
        drop(s);
        let s = RecordStore::open(dir.path(), false).unwrap().unwrap();
        assert_eq!(s.count().unwrap(), 2);
        let r = s.load().unwrap();
        assert_eq!(r.ids.len(), 1, "l1's identifiers were replaced");
        assert_eq!(r.photos.len(), 2);
        assert_eq!(r.photos[0].1.phash, Some(u64::MAX - 1));
        assert_eq!(r.photos[0].1.embedding, vec![0.5, -1.0]);
        let (_, l1) = r.listings.iter().find(|(_, l)| l.listing_id == "l1").unwrap();
        assert_eq!(l1.seller_id, "c");
        assert_eq!(
            l1.sold_count,
            Some(i64::MAX as u64),
            "a huge count is kept as the largest stored"
        );
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RecordStore::open(dir.path(), true).unwrap());
        let conn = Connection::open(dir.path().join(FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let e = RecordStore::open(dir.path(), false).err().unwrap();
        assert!(format!("{e:#}").contains("newer knockoff"), "{e:#}");
    }
}
