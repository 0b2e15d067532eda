//! Grouping sellers into networks: every strong value (a normalised contact, payment account,
//! business registration, warehouse, or a listing photo that is not a catalog photo) shared by
//! between 2 and `max_sharing` sellers joins them (union–find, `petgraph::unionfind`); a value
//! shared by more is platform-wide and joins nobody. Weak likenesses between members of one
//! network (seller names, shop URLs, title templates) are added as supporting links.
//!
//! Photos are grouped first: photos with the same perceptual hash and a similar embedding are one
//! photo; such photos within `photo_hash_bits` of each other (`phash::Index`) whose embeddings
//! agree are one photo as well. A photo is then a value like a phone number.

use std::collections::{BTreeMap, HashMap, HashSet};

use petgraph::unionfind::UnionFind;
use serde::Serialize;

use super::normalise::{self, Kind, Normaliser};
use super::record::Recorded;

/// What links sellers.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// A value shared by more sellers than this links nobody.
    pub max_sharing: usize,
    /// Values (`Identifier::key`) that never link.
    pub never_link: HashSet<String>,
    /// Most bits two hashes of one photo differ by.
    pub photo_hash_bits: u32,
    /// Least cosine similarity of two embeddings of one photo.
    pub photo_min_similarity: f32,
}

impl BuildOptions {
    /// Options from the `[network]` settings; never-link values are normalised like listings'.
    pub fn from_config(c: &crate::config::NetworkConfig) -> BuildOptions {
        let n = Normaliser::new(&c.default_country);
        let never_link = c
            .never_link
            .iter()
            .filter_map(|s| n.contact(s).ok().flatten())
            .map(|i| i.key())
            .collect();
        BuildOptions {
            max_sharing: c.max_sharing,
            never_link,
            photo_hash_bits: c.photo_hash_bits,
            photo_min_similarity: c.photo_min_similarity as f32,
        }
    }
}

/// A link between two sellers (indices into `Recorded::sellers`), with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// One seller.
    pub a: u32,
    /// The other.
    pub b: u32,
    /// What they share.
    pub kind: Kind,
    /// The shared value, normalised (for a photo: one of the photos).
    pub value: String,
    /// Strong links join networks; weak ones only support.
    pub strong: bool,
    /// How each wrote it, or how alike the photos are.
    pub evidence: String,
}

/// One network: member sellers and the links among them.
#[derive(Debug, Clone)]
pub struct Group {
    /// Member sellers, ascending.
    pub members: Vec<u32>,
    /// Links among them, strong first.
    pub links: Vec<Link>,
}

/// A value left out because too many sellers share it.
#[derive(Debug, Clone, Serialize)]
pub struct Platform {
    /// Its kind.
    pub kind: Kind,
    /// The value.
    pub value: String,
    /// How many sellers share it.
    pub sellers: usize,
}

/// The networks found, and what was left out.
#[derive(Debug, Default)]
pub struct Built {
    /// Networks of two or more sellers, largest first.
    pub groups: Vec<Group>,
    /// Platform-wide values (over `max_sharing`), most shared first.
    pub platform: Vec<Platform>,
    /// Values that linked sellers.
    pub linking_values: usize,
}

/// A shared value: its kind, normalised text, and each seller's way of writing it.
struct Shared {
    kind: Kind,
    value: String,
    /// (seller, as written), one per seller, ascending.
    by: Vec<(u32, String)>,
}

/// Groups recorded sellers into networks, with their weak links (`group`, then `support`).
#[cfg(test)]
pub fn build(rec: &Recorded, opts: &BuildOptions) -> Built {
    let mut built = group(rec, opts);
    support(rec, &mut built);
    built
}

/// Groups recorded sellers into networks by their strong links; `rec.listings` is not used.
pub fn group(rec: &Recorded, opts: &BuildOptions) -> Built {
    let mut shared = shared_values(rec);
    shared.extend(shared_photos(rec, opts));
    let mut uf = UnionFind::<u32>::new(rec.sellers.len());
    let mut built = Built::default();
    let mut linking = Vec::new();
    for s in shared {
        let key = format!("{}:{}", s.kind.key_kind().as_str(), s.value);
        if s.by.len() < 2 || opts.never_link.contains(&key) {
            continue;
        }
        if s.by.len() > opts.max_sharing {
            built.platform.push(Platform { kind: s.kind, value: s.value, sellers: s.by.len() });
            continue;
        }
        for w in s.by.windows(2) {
            uf.union(w[0].0, w[1].0);
        }
        linking.push(s);
    }
    built.linking_values = linking.len();
    built.platform.sort_by(|a, b| b.sellers.cmp(&a.sellers).then_with(|| a.value.cmp(&b.value)));
    // components of two or more
    let mut comps: HashMap<u32, Vec<u32>> = HashMap::new();
    for s in 0..rec.sellers.len() as u32 {
        comps.entry(uf.find(s)).or_default().push(s);
    }
    let mut index: HashMap<u32, usize> = HashMap::new();
    for (root, members) in comps.into_iter().filter(|(_, m)| m.len() >= 2) {
        index.insert(root, built.groups.len());
        built.groups.push(Group { members, links: Vec::new() });
    }
    for s in linking {
        let g = index[&uf.find(s.by[0].0)];
        built.groups[g].links.extend(pair_links(&s));
    }
    for g in &mut built.groups {
        g.members.sort_unstable();
        // the values come out of hash maps: one order for every build
        g.links.sort_by(|x, y| {
            (x.a, x.b, x.kind, &x.value, &x.evidence).cmp(&(
                y.a,
                y.b,
                y.kind,
                &y.value,
                &y.evidence,
            ))
        });
    }
    built.groups.sort_by(|a, b| {
        b.members.len().cmp(&a.members.len()).then_with(|| a.members.cmp(&b.members))
    });
    built
}

/// Adds the weak links between members of each network; needs the members' listings in
/// `rec.listings` (the others are not looked at).
pub fn support(rec: &Recorded, built: &mut Built) {
    add_weak_links(rec, &mut built.groups);
}

/// Every seller pair sharing `s`, with how each wrote it.
fn pair_links(s: &Shared) -> Vec<Link> {
    let mut out = Vec::new();
    for (i, (a, ra)) in s.by.iter().enumerate() {
        for (b, rb) in &s.by[i + 1..] {
            let evidence = if s.kind == Kind::Photo {
                format!("{ra} / {rb}")
            } else {
                format!("written {ra:?} / {rb:?}")
            };
            out.push(Link {
                a: *a,
                b: *b,
                kind: s.kind,
                value: s.value.clone(),
                strong: true,
                evidence,
            });
        }
    }
    out
}

/// Strong identifier values and the sellers that share them.
fn shared_values(rec: &Recorded) -> Vec<Shared> {
    let mut by_key: HashMap<(Kind, &str), BTreeMap<u32, &str>> = HashMap::new();
    for (seller, id) in &rec.ids {
        by_key
            .entry((id.kind.key_kind(), id.value.as_str()))
            .or_default()
            .entry(*seller)
            .or_insert(id.raw.as_str());
    }
    by_key
        .into_iter()
        .filter(|(_, by)| by.len() >= 2)
        .map(|((kind, value), by)| Shared {
            kind,
            value: value.to_string(),
            by: by.into_iter().map(|(s, r)| (s, r.to_string())).collect(),
        })
        .collect()
}

/// Cosine similarity of two embeddings; `None` when either is missing or they differ in length.
fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let dot = crate::index::simd::dot(a, b);
    let na = crate::index::simd::dot(a, a).sqrt();
    let nb = crate::index::simd::dot(b, b).sqrt();
    (na > 0.0 && nb > 0.0).then(|| dot / (na * nb))
}

/// Distinct photos among the listing photos: photos with one hash and agreeing embeddings are one
/// look.
struct Looks {
    /// For each look: its hash and the photo (index into `Recorded::photos`) standing for it.
    reps: Vec<Look>,
    /// For each photo: its look (`u32::MAX` for a photo without a hash).
    of_photo: Vec<u32>,
}

/// One look: a hash and the first photo with it.
struct Look {
    hash: u64,
    photo: usize,
}

/// Groups the photos into looks.
fn looks(rec: &Recorded, opts: &BuildOptions) -> Looks {
    let mut reps: Vec<Look> = Vec::new();
    let mut of_photo: Vec<u32> = Vec::with_capacity(rec.photos.len());
    let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, (_, p)) in rec.photos.iter().enumerate() {
        let Some(h) = p.phash else {
            of_photo.push(u32::MAX);
            continue;
        };
        let same = |r: &u32| {
            cosine(&p.embedding, &rec.photos[reps[*r as usize].photo].1.embedding)
                .is_none_or(|c| c >= opts.photo_min_similarity)
        };
        let slot = by_hash.entry(h).or_default();
        let r = match slot.iter().find(|r| same(r)) {
            Some(r) => *r,
            None => {
                reps.push(Look { hash: h, photo: i });
                slot.push((reps.len() - 1) as u32);
                (reps.len() - 1) as u32
            }
        };
        of_photo.push(r);
    }
    Looks { reps, of_photo }
}

/// The sellers that use a group of looks, while they are few; once more than `max_sharing` the
/// group is platform-wide whatever joins it, and is not searched from any more.
enum Reach {
    Sellers(Vec<u32>),
    Wide,
}

/// Looks joined into photos (union–find), with each photo's reach.
struct Joiner {
    uf: UnionFind<u32>,
    reach: Vec<Reach>,
    max_sharing: usize,
}

impl Joiner {
    fn new(looks: &Looks, rec: &Recorded, max_sharing: usize) -> Joiner {
        let mut sellers: Vec<Vec<u32>> = vec![Vec::new(); looks.reps.len()];
        for (i, r) in looks.of_photo.iter().enumerate().filter(|(_, r)| **r != u32::MAX) {
            sellers[*r as usize].push(rec.photos[i].0);
        }
        let reach = sellers
            .into_iter()
            .map(|mut s| {
                s.sort_unstable();
                s.dedup();
                if s.len() > max_sharing {
                    Reach::Wide
                } else {
                    Reach::Sellers(s)
                }
            })
            .collect();
        Joiner { uf: UnionFind::new(looks.reps.len()), reach, max_sharing }
    }

    /// Whether the photo of look `r` is shared by more than `max_sharing` sellers (so far).
    fn wide(&mut self, r: u32) -> bool {
        let root = self.uf.find_mut(r);
        matches!(self.reach[root as usize], Reach::Wide)
    }

    /// Joins looks `a` and `b` into one photo, merging their sellers.
    fn join(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.uf.find_mut(a), self.uf.find_mut(b));
        if ra == rb || !self.uf.union(ra, rb) {
            return;
        }
        let root = self.uf.find_mut(ra);
        let other = if root == ra { rb } else { ra };
        let moved = std::mem::replace(&mut self.reach[other as usize], Reach::Sellers(Vec::new()));
        let merged = match (std::mem::replace(&mut self.reach[root as usize], Reach::Wide), moved) {
            (Reach::Sellers(mut x), Reach::Sellers(y)) => {
                x.extend(y);
                x.sort_unstable();
                x.dedup();
                if x.len() > self.max_sharing {
                    Reach::Wide
                } else {
                    Reach::Sellers(x)
                }
            }
            _ => Reach::Wide,
        };
        self.reach[root as usize] = merged;
    }
}

/// Listing photos reused by several sellers, as shared values (kind `photo`).
///
/// Looks within `photo_hash_bits` of each other (`phash::Index`) whose embeddings agree are one
/// photo. Each look searches its near hashes, skipping those already joined to it; a photo found
/// to be shared by more than `max_sharing` sellers is platform-wide and searches no further (what
/// joins it still joins it: it links nobody either way), so a widely reused stock photo costs
/// about as much as a photo used once.
fn shared_photos(rec: &Recorded, opts: &BuildOptions) -> Vec<Shared> {
    let looks = looks(rec, opts);
    let index = crate::vision::phash::Index::new(
        looks.reps.iter().enumerate().map(|(r, l)| (r as u32, l.hash)).collect(),
    );
    let mut joiner = Joiner::new(&looks, rec, opts.max_sharing);
    for (r, look) in looks.reps.iter().enumerate() {
        let r = r as u32;
        if joiner.wide(r) {
            continue;
        }
        let mine = &rec.photos[look.photo].1.embedding;
        index.each_near(look.hash, opts.photo_hash_bits, |other, _| {
            if other == r || joiner.uf.equiv(r, other) {
                return true;
            }
            let theirs = &rec.photos[looks.reps[other as usize].photo].1.embedding;
            if cosine(mine, theirs).is_none_or(|c| c >= opts.photo_min_similarity) {
                joiner.join(r, other);
            }
            !joiner.wide(r)
        });
    }
    let mut groups: HashMap<u32, BTreeMap<u32, &str>> = HashMap::new();
    for (i, r) in looks.of_photo.iter().enumerate().filter(|(_, r)| **r != u32::MAX) {
        let (seller, p) = &rec.photos[i];
        groups
            .entry(joiner.uf.find_mut(*r))
            .or_default()
            .entry(*seller)
            .or_insert(p.image.as_str());
    }
    groups
        .into_values()
        .filter(|by| by.len() >= 2)
        .map(|by| {
            let value = by.values().next().map(|s| s.to_string()).unwrap_or_default();
            Shared {
                kind: Kind::Photo,
                value,
                by: by.into_iter().map(|(s, r)| (s, r.to_string())).collect(),
            }
        })
        .collect()
}

/// Weak links between members of one network: the same seller name, shop URL or title template
/// once folded (`normalise::compact`, `normalise::title_template`).
fn add_weak_links(rec: &Recorded, groups: &mut [Group]) {
    let mut group_of: HashMap<u32, usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        for m in &group.members {
            group_of.insert(*m, g);
        }
    }
    // (group, kind, folded) → sellers with how they wrote it
    let mut alike: BTreeMap<(usize, Kind, String), BTreeMap<u32, String>> = BTreeMap::new();
    for (seller, l) in &rec.listings {
        let Some(&g) = group_of.get(seller) else { continue };
        let values = [
            (Kind::SellerName, l.seller_name.as_deref().map(normalise::compact)),
            (
                Kind::ShopUrl,
                l.shop_url.as_deref().map(|u| {
                    normalise::compact(&normalise::url(u).unwrap_or_else(|| u.to_string()))
                }),
            ),
            (Kind::TitleTemplate, l.title.as_deref().map(normalise::title_template)),
        ];
        for (kind, v) in values {
            if let Some(v) = v.filter(|v| v.chars().count() >= 4) {
                let raw = match kind {
                    Kind::SellerName => l.seller_name.clone(),
                    Kind::ShopUrl => l.shop_url.clone(),
                    _ => l.title.clone(),
                };
                alike
                    .entry((g, kind, v))
                    .or_default()
                    .entry(*seller)
                    .or_insert(raw.unwrap_or_default());
            }
        }
    }
    for ((g, kind, value), by) in alike.into_iter().filter(|(_, by)| by.len() >= 2) {
        let s = Shared { kind, value, by: by.into_iter().collect() };
        groups[g].links.extend(pair_links(&s).into_iter().map(|l| Link { strong: false, ..l }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::normalise::Identifier;
    use crate::network::record::{RecordedListing, RecordedPhoto};

    fn opts() -> BuildOptions {
        BuildOptions {
            max_sharing: 3,
            never_link: ["email:help@market.example".to_string()].into(),
            photo_hash_bits: 4,
            photo_min_similarity: 0.8,
        }
    }

    fn id(kind: Kind, v: &str) -> Identifier {
        Identifier { kind, value: v.into(), raw: v.to_uppercase(), country: None }
    }

    fn photo(h: u64, e: Vec<f32>) -> RecordedPhoto {
        RecordedPhoto {
            image: format!("{h:x}.jpg"),
            phash: Some(h),
            embedding: e,
            catalog: false,
            reference: None,
        }
    }

    fn recorded(n: usize) -> Recorded {
        let sellers: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let listings = (0..n as u32)
            .map(|s| {
                (
                    s,
                    RecordedListing {
                        seller_id: sellers[s as usize].clone(),
                        ..RecordedListing::default()
                    },
                )
            })
            .collect();
        Recorded { sellers, listings, ids: Vec::new(), photos: Vec::new() }
    }

    #[test]
    fn shared_values_join_transitively_and_platform_values_join_nobody() {
        let mut r = recorded(9);
        r.ids = vec![
            (0, id(Kind::Wechat, "a")),
            (1, id(Kind::Wechat, "a")),
            (1, id(Kind::Whatsapp, "+861")),
            (2, id(Kind::Phone, "+861")),
            // a hotline of 4 sellers (over max_sharing 3) and a never-link e-mail
            (3, id(Kind::Phone, "+1800")),
            (4, id(Kind::Phone, "+1800")),
            (5, id(Kind::Phone, "+1800")),
            (6, id(Kind::Phone, "+1800")),
            (7, id(Kind::Email, "help@market.example")),
            (8, id(Kind::Email, "help@market.example")),
        ];
        let b = build(&r, &opts());
        assert_eq!(b.groups.len(), 1, "{:?}", b.groups);
        assert_eq!(b.groups[0].members, vec![0, 1, 2]);
        let kinds: Vec<Kind> = b.groups[0].links.iter().map(|l| l.kind).collect();
        assert!(kinds.contains(&Kind::Wechat) && kinds.contains(&Kind::Phone), "{kinds:?}");
        assert_eq!(b.platform.len(), 1);
        assert_eq!(b.platform[0].sellers, 4);
    }

    #[test]
    fn a_reused_photo_links_unless_its_embedding_disagrees() {
        let mut r = recorded(4);
        let e = vec![1.0, 0.0, 0.0];
        r.photos = vec![
            (0, photo(0xABCD_0000_1111, e.clone())),
            (1, photo(0xABCD_0000_1113, vec![0.95, 0.1, 0.0])), // 1 bit away, same look
            (2, photo(0xABCD_0000_1111, vec![0.0, 1.0, 0.0])),  // same hash, another picture
            (3, photo(0x1234_5678_9ABC, e)),                    // another hash
        ];
        let b = build(&r, &opts());
        assert_eq!(b.groups.len(), 1);
        assert_eq!(b.groups[0].members, vec![0, 1]);
        assert_eq!(b.groups[0].links[0].kind, Kind::Photo);
    }

    #[test]
    fn weak_likenesses_only_support() {
        let mut r = recorded(3);
        for (s, name) in [(0, "Best Deals 88"), (1, "best-deals-88"), (2, "BestDeals88")] {
            r.listings[s].1.seller_name = Some(name.into());
        }
        r.ids = vec![(0, id(Kind::PaymentAccount, "6222")), (1, id(Kind::PaymentAccount, "6222"))];
        let b = build(&r, &opts());
        assert_eq!(b.groups.len(), 1);
        assert_eq!(b.groups[0].members, vec![0, 1], "seller 2 shares only a name");
        let weak: Vec<&Link> = b.groups[0].links.iter().filter(|l| !l.strong).collect();
        assert_eq!(weak.len(), 1);
        assert_eq!(weak[0].kind, Kind::SellerName);
    }
}
