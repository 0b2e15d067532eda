//! A benchmark with a known answer: a seeded generator of a marketplace with planted seller rings
//! and the noise that fools naive linking, recorded as a scan would record it; then `network
//! build` (`super::rebuild`) is timed and its networks compared with the planted truth.
//!
//! Rings of 2–30 shops are joined by chains of shared values — phone numbers, e-mail addresses,
//! WeChat ids, payment accounts, warehouses and reused photos — each member writing them its own
//! way (`+86 138 0013 8000`, `13800138000`, `0086-138-0013-8000`, mixed-case e-mails, addresses
//! with other punctuation). The noise: a platform hotline and a logistics hub shared by thousands of
//! honest sellers, stock photos reused by unrelated sellers, honest resellers sharing a
//! wholesaler's photos (some of them catalog photos), look-alike names of unrelated shops, and
//! unrelated photos whose hashes collide.
//!
//! Measured: precision and recall of same-network seller pairs against the truth, the largest
//! network, build time and peak memory.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::normalise::Normaliser;
use super::record::{RecordStore, RecordedListing, RecordedPhoto};

/// What to generate.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Sellers in the marketplace.
    pub sellers: usize,
    /// Share of sellers in planted rings.
    pub ring_share: f64,
    /// Seed of the draw.
    pub seed: u64,
    /// Length of the generated photo embeddings.
    pub dim: usize,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Seed of the draw.
    pub seed: u64,
    /// Sellers generated.
    pub sellers: usize,
    /// Listings recorded.
    pub listings: usize,
    /// Rings planted.
    pub rings: usize,
    /// Sellers in the largest planted ring.
    pub largest_ring: usize,
    /// Seller pairs in one ring.
    pub true_pairs: u64,
    /// Seller pairs in one network found.
    pub found_pairs: u64,
    /// Pairs both.
    pub correct_pairs: u64,
    /// correct / found.
    pub precision: f64,
    /// correct / true.
    pub recall: f64,
    /// Networks found.
    pub networks: usize,
    /// Sellers in the largest network found.
    pub largest_network: usize,
    /// Values left out as platform-wide.
    pub platform_values: usize,
    /// Seconds generating and recording (not part of the build).
    pub generate_secs: f64,
    /// Seconds of `network build`: reading, linking, case files and saving.
    pub build_secs: f64,
    /// Of which reading the records.
    pub load_secs: f64,
    /// Of which linking and grouping.
    pub link_secs: f64,
    /// Peak resident memory of the process after the build, MB (VmHWM).
    pub peak_rss_mb: f64,
}

/// SplitMix64: small, seeded, good enough to draw a marketplace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn normal(&mut self) -> f32 {
        // Box–Muller
        let (u, v) = (self.unit().max(1e-12), self.unit());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// A photo as generated: hash and embedding.
#[derive(Clone)]
struct Pic {
    hash: u64,
    emb: Vec<f32>,
}

impl Pic {
    fn random(rng: &mut Rng, dim: usize) -> Pic {
        Pic { hash: rng.next(), emb: unit((0..dim).map(|_| rng.normal()).collect()) }
    }
    /// The same photo re-encoded: up to 2 hash bits flipped, a little embedding noise.
    fn copy(&self, rng: &mut Rng) -> Pic {
        let mut hash = self.hash;
        for _ in 0..rng.below(3) {
            hash ^= 1 << rng.below(64);
        }
        Pic { hash, emb: unit(self.emb.iter().map(|x| x + 0.04 * rng.normal()).collect()) }
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A seller as generated.
#[derive(Default)]
struct Profile {
    name: String,
    region: String,
    ship_from: String,
    contacts: Vec<String>,
    payment: Option<String>,
    warehouse: Option<String>,
    shop_url: String,
    /// Photos to use in its listings (shared ones); the rest are its own.
    shared_pics: Vec<(Pic, bool)>,
    ring: Option<u32>,
}

const REGIONS: [&str; 8] = ["CN-GD", "CN-ZJ", "CN-FJ", "CN-JS", "HK", "US", "DE", "TR"];
const SHIP: [&str; 6] =
    ["Shenzhen, CN", "Guangzhou, CN", "Yiwu, CN", "Putian, CN", "Hong Kong", "Istanbul, TR"];

/// A Chinese mobile number (valid) from an index, written one of five ways.
fn phone(n: u64, way: usize) -> String {
    let d = format!("13{}{:08}", 5 + n % 5, n % 100_000_000);
    match way % 5 {
        0 => format!("+86 {} {} {}", &d[..3], &d[3..7], &d[7..]),
        1 => d,
        2 => format!("0086-{}-{}-{}", &d[..3], &d[3..7], &d[7..]),
        3 => format!("(+86) {}-{}", &d[..3], &d[3..]),
        _ => format!("+86{d}"),
    }
}

/// A mixed-case way of writing an e-mail address.
fn email(n: u64, way: usize) -> String {
    let e = format!("shop{n}@mail{}.example", n % 50);
    match way % 3 {
        0 => e,
        1 => e.to_uppercase(),
        _ => format!(" {}", e.replacen('s', "S", 1)),
    }
}

/// An address written one of three ways.
fn address(n: u64, way: usize) -> String {
    match way % 3 {
        0 => format!("Bldg {}, Bao'an District, Shenzhen", n),
        1 => format!("BLDG {} BAO AN DISTRICT SHENZHEN", n),
        _ => format!("bldg. {} - bao-an district; shenzhen", n),
    }
}

/// How two ring members are chained.
fn chain(rng: &mut Rng, a: &mut Profile, b: &mut Profile, value: u64, pic: &Pic) {
    let (wa, wb) = (rng.below(5), rng.below(5));
    let mut kind = rng.below(6);
    // a shop has one payment account and one warehouse: a second chain through it takes a contact
    let taken = |p: &Profile| {
        p.payment.as_deref().is_some_and(|v| v.starts_with("6222")) || p.warehouse.is_some()
    };
    if (kind == 3 || kind == 4) && (taken(a) || taken(b)) {
        kind = 2;
    }
    match kind {
        0 => {
            a.contacts.push(format!("phone:{}", phone(value, wa)));
            b.contacts.push(format!("whatsapp:{}", phone(value, wb)));
        }
        1 => {
            a.contacts.push(format!("email:{}", email(value, wa)));
            b.contacts.push(email(value, wb));
        }
        2 => {
            a.contacts.push(format!("wechat:ring-{value}"));
            b.contacts.push(format!("WeChat:RING_{value}"));
        }
        3 => {
            a.payment = Some(format!("6222 {:04} {:08}", value % 10_000, value));
            b.payment = Some(format!("6222-{:04}-{:08}", value % 10_000, value));
        }
        4 => {
            a.warehouse = Some(address(value, wa));
            b.warehouse = Some(address(value, wb));
        }
        _ => {
            a.shared_pics.push((pic.copy(rng), false));
            b.shared_pics.push((pic.copy(rng), false));
        }
    }
}

/// Draws the marketplace's sellers: honest profiles, planted rings, noise. Returns the profiles.
fn sellers(opts: &BenchOptions, rng: &mut Rng) -> Vec<Profile> {
    let n = opts.sellers;
    let mut p: Vec<Profile> = (0..n as u64)
        .map(|i| Profile {
            name: format!("Shop {i}"),
            region: REGIONS[rng.below(REGIONS.len())].into(),
            ship_from: SHIP[rng.below(SHIP.len())].into(),
            contacts: vec![
                format!("phone:{}", phone(i, rng.below(5))),
                format!("email:{}", email(i, rng.below(3))),
            ],
            payment: rng.chance(0.5).then(|| format!("6217{i:012}")),
            shop_url: format!("https://shop.example/s/{i}"),
            ..Profile::default()
        })
        .collect();
    // rings: members drawn without replacement, sizes 2–30 (mostly small)
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let in_rings = (n as f64 * opts.ring_share) as usize;
    let (mut at, mut ring) = (0usize, 0u32);
    let mut value = 10_000_000u64 + n as u64; // ring values above honest ones
    while at + 2 <= in_rings {
        let size = (2 + (28.0 * rng.unit().powi(3)) as usize).min(in_rings - at);
        if size < 2 {
            break;
        }
        let members = &order[at..at + size];
        let pic = Pic::random(rng, opts.dim);
        for w in members.windows(2) {
            value += 1;
            let (lo, hi) = (w[0].min(w[1]), w[0].max(w[1]));
            let (left, right) = p.split_at_mut(hi);
            let (a, b) = (&mut left[lo], &mut right[0]);
            chain(rng, a, b, value, &pic);
        }
        for &m in members {
            p[m].ring = Some(ring);
        }
        at += size;
        ring += 1;
    }
    add_noise(&mut p, opts, rng);
    p
}

/// The noise that fools naive linking.
fn add_noise(p: &mut [Profile], opts: &BenchOptions, rng: &mut Rng) {
    let n = p.len();
    for s in p.iter_mut() {
        if rng.chance(0.05) {
            s.contacts.push(
                ["phone:400-820-8820", "phone:4008208820", "+86 400 820 8820"][rng.below(3)].into(),
            );
        }
        if rng.chance(0.02) && s.warehouse.is_none() {
            s.warehouse = Some(
                ["Cainiao Hub, Dongguan", "CAINIAO HUB DONGGUAN", "cainiao hub - dongguan"]
                    [rng.below(3)]
                .into(),
            );
        }
    }
    // stock photos (25–400 sellers each) and wholesalers' photos (21–150 resellers; half in the catalog)
    let groups = (n / 2000).max(3);
    for g in 0..2 * groups {
        let pic = Pic::random(rng, opts.dim);
        let (users, catalog) = if g < groups {
            (25 + rng.below(376), false)
        } else {
            (21 + rng.below(130), rng.chance(0.5))
        };
        for _ in 0..users.min(n) {
            let s = rng.below(n);
            let copy = pic.copy(rng);
            p[s].shared_pics.push((copy, catalog));
        }
    }
    // look-alike names of unrelated shops
    for i in 0..n / 100 {
        let (a, b) = (rng.below(n), rng.below(n));
        p[a].name = format!("Best Deals {i}");
        p[b].name = format!("best-deals-{i}");
    }
    // unrelated photos whose hashes collide (within 3 bits), embeddings unrelated
    for _ in 0..n / 1000 + 1 {
        let base = Pic::random(rng, opts.dim);
        for _ in 0..2 {
            let s = rng.below(n);
            let mut other = Pic::random(rng, opts.dim);
            other.hash = base.hash ^ (1 << rng.below(64)) ^ (1 << rng.below(64));
            p[s].shared_pics.push((other, false));
        }
    }
}

/// The listings of one seller, recorded as a scan would record them.
fn listings(
    i: usize,
    s: &Profile,
    norm: &Normaliser,
    opts: &BenchOptions,
    rng: &mut Rng,
) -> Vec<RecordedListing> {
    let seller_id = format!("s{i:07}");
    let count = (1 + rng.below(9)).max(s.shared_pics.len());
    let mut shared = s.shared_pics.iter();
    let ids = norm
        .seller(&crate::scan::Seller {
            seller_id: seller_id.clone(),
            contacts: s.contacts.clone(),
            payment_account: s.payment.clone(),
            warehouse: s.warehouse.clone(),
            ..Default::default()
        })
        .ids;
    (0..count)
        .map(|k| {
            let (pic, catalog) = match shared.next() {
                Some((pic, catalog)) => (pic.clone(), *catalog),
                None => (Pic::random(rng, opts.dim), false),
            };
            let fake = if s.ring.is_some() { rng.chance(0.7) } else { rng.chance(0.03) };
            let verdict = if fake {
                if rng.chance(0.7) {
                    "flag"
                } else {
                    "review"
                }
            } else {
                "clear"
            };
            let price = 5.0 + rng.below(20_000) as f64 / 100.0;
            RecordedListing {
                listing_id: format!("{seller_id}-{k}"),
                seller_id: seller_id.clone(),
                seller_name: Some(s.name.clone()),
                region: Some(s.region.clone()),
                ship_from: Some(s.ship_from.clone()),
                shop_url: Some(s.shop_url.clone()),
                title: Some(format!("Runner Pro {} sneakers", rng.below(50))),
                verdict: verdict.into(),
                rule: "bench".into(),
                price: Some(price),
                currency: Some("EUR".into()),
                price_base: Some(price),
                sold_count: Some(rng.below(5000) as u64),
                brand: fake.then(|| "Northwind".into()),
                product_id: fake.then(|| "nw-runner".into()),
                listed_at: Some(super::case::rfc3339(1_750_000_000 + rng.below(30_000_000) as i64)),
                recorded_at: 1_780_000_000,
                ids: ids.clone(),
                photos: vec![RecordedPhoto {
                    image: format!("{seller_id}-{k}.jpg"),
                    phash: Some(pic.hash),
                    embedding: pic.emb,
                    catalog,
                    reference: None,
                }],
            }
        })
        .collect()
}

/// Generates the marketplace into a record store in `dir`, returns each seller's ring (by seller
/// id) and the listing count.
pub fn generate(dir: &Path, opts: &BenchOptions) -> Result<(HashMap<String, u32>, usize)> {
    let mut rng = Rng(opts.seed ^ 0x5_EED0_F4E7);
    let profiles = sellers(opts, &mut rng);
    let norm = Normaliser::new("CN");
    let mut store = RecordStore::open(dir, true)?
        .ok_or_else(|| anyhow::anyhow!("cannot create a record store in {}", dir.display()))?;
    let mut truth = HashMap::new();
    let mut batch = Vec::new();
    let mut total = 0;
    for (i, s) in profiles.iter().enumerate() {
        if let Some(r) = s.ring {
            truth.insert(format!("s{i:07}"), r);
        }
        batch.extend(listings(i, s, &norm, opts, &mut rng));
        if batch.len() >= 20_000 {
            total += batch.len();
            store.record(&batch)?;
            batch.clear();
        }
    }
    total += batch.len();
    store.record(&batch)?;
    Ok((truth, total))
}

/// Peak resident memory of this process, MB (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The planted truth of a draw (each ring member's ring, by seller id) without recording it: the
/// rings depend only on the seed and the options, so a store generated earlier can be built again.
pub fn truth(opts: &BenchOptions) -> HashMap<String, u32> {
    let mut rng = Rng(opts.seed ^ 0x5_EED0_F4E7);
    sellers(opts, &mut rng)
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.ring.map(|r| (format!("s{i:07}"), r)))
        .collect()
}

/// Generates, builds and scores one draw in `dir` (which should be empty).
pub fn run(dir: &Path, opts: &BenchOptions, config: &crate::config::Config) -> Result<BenchResult> {
    let t = std::time::Instant::now();
    let (truth, listings) = generate(dir, opts)?;
    let generate_secs = t.elapsed().as_secs_f64();
    score(dir, opts, config, truth, listings, generate_secs)
}

/// Builds and scores a draw generated earlier into `dir` with the same options (`generate`).
pub fn rerun(
    dir: &Path,
    opts: &BenchOptions,
    config: &crate::config::Config,
) -> Result<BenchResult> {
    let store = RecordStore::open(dir, false)?
        .ok_or_else(|| anyhow::anyhow!("no record store in {}", dir.display()))?;
    let listings = store.count()? as usize;
    drop(store);
    score(dir, opts, config, truth(opts), listings, 0.0)
}

/// Builds the networks of the draw recorded in `dir` and scores them against `truth`.
fn score(
    dir: &Path,
    opts: &BenchOptions,
    config: &crate::config::Config,
    truth: HashMap<String, u32>,
    listings: usize,
    generate_secs: f64,
) -> Result<BenchResult> {
    let t = std::time::Instant::now();
    let mut store = RecordStore::open(dir, false)?
        .ok_or_else(|| anyhow::anyhow!("no record store in {}", dir.display()))?;
    let (summary, cases) = super::rebuild(&mut store, config)?;
    let build_secs = t.elapsed().as_secs_f64();
    let pairs = |n: u64| n * n.saturating_sub(1) / 2;
    let mut ring_sizes: HashMap<u32, u64> = HashMap::new();
    for r in truth.values() {
        *ring_sizes.entry(*r).or_default() += 1;
    }
    let (mut found, mut correct) = (0u64, 0u64);
    for c in &cases {
        found += pairs(c.sellers.len() as u64);
        let mut per_ring: HashMap<u32, u64> = HashMap::new();
        for s in &c.sellers {
            if let Some(r) = truth.get(&s.seller_id) {
                *per_ring.entry(*r).or_default() += 1;
            }
        }
        correct += per_ring.values().map(|n| pairs(*n)).sum::<u64>();
    }
    let true_pairs: u64 = ring_sizes.values().map(|n| pairs(*n)).sum();
    Ok(BenchResult {
        seed: opts.seed,
        sellers: opts.sellers,
        listings,
        rings: ring_sizes.len(),
        largest_ring: ring_sizes.values().copied().max().unwrap_or(0) as usize,
        true_pairs,
        found_pairs: found,
        correct_pairs: correct,
        precision: if found == 0 { 1.0 } else { correct as f64 / found as f64 },
        recall: if true_pairs == 0 { 1.0 } else { correct as f64 / true_pairs as f64 },
        networks: summary.networks,
        largest_network: summary.largest,
        platform_values: summary.platform_values,
        generate_secs,
        build_secs,
        load_secs: summary.load_secs,
        link_secs: summary.link_secs,
        peak_rss_mb: peak_rss_mb(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_marketplace_meets_the_targets() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.network.default_country = "CN".into();
        let opts = BenchOptions { sellers: 4000, ring_share: 0.08, seed: 7, dim: 32 };
        let r = run(dir.path(), &opts, &config).unwrap();
        assert!(r.rings >= 10 && r.listings > 10_000, "{r:?}");
        assert!(r.precision >= 0.99, "{r:?}");
        assert!(r.recall >= 0.95, "{r:?}");
        assert!(r.largest_network <= r.largest_ring, "{r:?}");
        assert!(r.platform_values >= 2, "hotline and stock photos are left out: {r:?}");
        // the same with every value linking (no platform limit) joins thousands: the limit matters
        config.network.max_sharing = usize::MAX;
        let dir = tempfile::tempdir().unwrap();
        let naive = run(dir.path(), &opts, &config).unwrap();
        assert!(naive.largest_network > 10 * r.largest_ring, "{naive:?}");
    }

    #[test]
    fn ways_of_writing_a_phone_number_normalise_to_one() {
        let n = Normaliser::new("CN");
        let v: Vec<String> = (0..5)
            .map(|w| n.value(super::super::Kind::Phone, &phone(42, w)).unwrap().unwrap().value)
            .collect();
        assert!(v.iter().all(|x| x == &v[0] && x.starts_with("+86")), "{v:?}");
    }
}
