//! Seller networks: from fake listings to the people behind them.
//!
//! A scan records each judged listing (`record`): its seller's fields and identifiers normalised
//! (`normalise`), its verdict and offer, and each photo's perceptual hash and embedding.
//! `network build` links sellers that share a strong value — a contact, payment account, business
//! registration, warehouse, or a listing photo that is not a catalog photo — and groups them into
//! networks (`build`); weak likenesses (seller names, shop URLs, title templates) only support. A
//! value shared by more than `network.max_sharing` sellers is platform-wide and links nobody. Each
//! network gets a stable id and a case file (`case`), exported as JSON Lines, CSV or one HTML file
//! (`export`). A later scan marks listings whose seller links to a known network, and raises a new
//! seller linked to an enforced one (`watch`). `bench` plants rings in a generated marketplace and
//! measures how well they are found.
//!
//! This layer sits above `scan` and `policy`; the command line calls it.

pub mod bench;
pub mod build;
pub mod case;
pub mod export;
pub mod export_records;
pub mod normalise;
pub mod record;
pub mod watch;

use std::collections::HashMap;

pub use build::BuildOptions;
pub use case::Case;
pub use normalise::Kind;
pub use record::RecordStore;
pub use watch::Recorder;

/// What a scan knows of built networks: members, linking values and photos, each with its
/// network id and whether it is enforced.
#[derive(Debug, Default)]
pub struct Known {
    /// Member seller id → (network id, enforced).
    pub members: HashMap<String, (String, bool)>,
    /// Linking value (`Identifier::key`) → (network id, enforced).
    pub values: HashMap<String, (String, bool)>,
    /// Linking photos: (hash, network id, photo, enforced).
    photos: Vec<(u64, String, String, bool)>,
    /// `photos` by hash.
    photo_index: crate::vision::phash::Index,
}

impl Known {
    /// Sets the linking photos.
    pub fn set_photos(&mut self, photos: Vec<(u64, String, String, bool)>) {
        self.photo_index = crate::vision::phash::Index::new(
            photos.iter().enumerate().map(|(i, p)| (i as u32, p.0)).collect(),
        );
        self.photos = photos;
    }

    /// The network photo nearest `hash` within `bits`: (network id, photo, enforced).
    pub fn photo(&self, hash: u64, bits: u32) -> Option<(&str, &str, bool)> {
        let (i, _) = self.photo_index.near(hash).into_iter().find(|(_, d)| *d <= bits)?;
        let p = self.photos.get(i as usize)?;
        Some((&p.1, &p.2, p.3))
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.values.is_empty() && self.photos.is_empty()
    }
}

/// A network id derived from the seller that founded it (`N-` and 10 hex digits of a SHA-256):
/// the same seller gives the same id in every build.
pub fn network_id(founder: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(founder.as_bytes());
    format!("N-{}", d.iter().take(5).map(|b| format!("{b:02x}")).collect::<String>())
}

/// What `network build` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Recorded listings read.
    pub listings: usize,
    /// Distinct sellers among them.
    pub sellers: usize,
    /// Networks found.
    pub networks: usize,
    /// Sellers in the largest.
    pub largest: usize,
    /// Values that linked sellers.
    pub linking_values: usize,
    /// How many values were shared too widely to link (platform-wide).
    pub platform_values: usize,
    /// The most shared of them, most shared first (at most 20).
    pub platform: Vec<build::Platform>,
    /// Seconds reading the records.
    pub load_secs: f64,
    /// Seconds linking and grouping.
    pub link_secs: f64,
    /// Seconds writing case files and saving.
    pub save_secs: f64,
}

/// `network build`: reads everything recorded, links and groups sellers, writes the case files and
/// what later scans need; returns what it did and the cases, highest rank first.
pub fn rebuild(
    store: &mut RecordStore,
    config: &crate::config::Config,
) -> anyhow::Result<(Summary, Vec<Case>)> {
    let t = std::time::Instant::now();
    let mut rec = store.load_links()?;
    let mut load_secs = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut built = build::group(&rec, &BuildOptions::from_config(&config.network));
    let mut link_secs = t.elapsed().as_secs_f64();
    // only members' listings are needed (weak links, case files): the others are counted, not read
    let t = std::time::Instant::now();
    let members: Vec<u32> = built.groups.iter().flat_map(|g| g.members.iter().copied()).collect();
    store.load_listings(&mut rec, &members)?;
    let listings = store.count()? as usize;
    load_secs += t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    build::support(&rec, &mut built);
    link_secs += t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let previous = store.previous_members()?;
    let statuses = store.statuses()?;
    let cases = case::cases(&rec, &built, &previous, &statuses, &config.currency.base);
    let linked = linked_values(&cases);
    let mut hashes: HashMap<&str, Vec<u64>> = HashMap::new();
    let wanted: std::collections::HashSet<&str> =
        linked.iter().flat_map(|(_, p)| p.iter().map(String::as_str)).collect();
    for (_, p) in rec.photos.iter().filter(|(_, p)| wanted.contains(p.image.as_str())) {
        hashes.entry(p.image.as_str()).or_default().extend(p.phash);
    }
    let mut stored = Vec::with_capacity(cases.len());
    let mut merged = HashMap::new();
    for ((c, from), (keys, photos)) in cases.iter().zip(linked.iter()) {
        let mut photos: Vec<(u64, String)> = photos
            .iter()
            .flat_map(|p| {
                hashes.get(p.as_str()).into_iter().flatten().map(move |h| (*h, p.clone()))
            })
            .collect();
        photos.sort();
        photos.dedup();
        stored.push(record::StoredNetwork {
            network_id: c.network_id.clone(),
            members: c.sellers.iter().map(|s| s.seller_id.clone()).collect(),
            keys: keys.clone(),
            photos,
            rank: c.rank,
            body: serde_json::to_string(c)?,
        });
        merged.insert(c.network_id.clone(), from.clone());
    }
    store.save_networks(&stored, &merged)?;
    let summary = Summary {
        listings,
        sellers: rec.sellers.len(),
        networks: cases.len(),
        largest: built.groups.first().map_or(0, |g| g.members.len()),
        linking_values: built.linking_values,
        platform_values: built.platform.len(),
        platform: built.platform.iter().take(20).cloned().collect(),
        load_secs,
        link_secs,
        save_secs: t.elapsed().as_secs_f64(),
    };
    Ok((summary, cases.into_iter().map(|(c, _)| c).collect()))
}

/// For each case: the strong values (keys) its links rest on and the photos of its photo links,
/// which later scans look for.
fn linked_values(cases: &[(Case, Vec<String>)]) -> Vec<(Vec<String>, Vec<String>)> {
    cases
        .iter()
        .map(|(c, _)| {
            let mut keys = std::collections::BTreeSet::new();
            let mut photos = std::collections::BTreeSet::new();
            for l in c.links.iter().filter(|l| l.strength == "strong") {
                match Kind::parse(&l.kind) {
                    Some(Kind::Photo) => photos.extend(l.evidence.split(" / ").map(str::to_string)),
                    Some(k) => {
                        keys.insert(format!("{}:{}", k.key_kind().as_str(), l.value));
                    }
                    None => {}
                }
            }
            (keys.into_iter().collect(), photos.into_iter().collect())
        })
        .collect()
}
