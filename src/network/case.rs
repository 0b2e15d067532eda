//! Case files: what an analyst sends on about one network — its sellers, their listings with
//! verdict counts, the brands and products affected, the estimated counterfeit turnover, where the
//! shops are registered, ship from and where their contacts point, every link with its evidence,
//! first and last seen, and a rank (evidence × turnover) so the strongest cases come first.
//!
//! Network ids are stable: a network that contains sellers of an earlier build keeps the earliest
//! earlier network's id (and its `enforced` mark); a new one is named after its founder, the member
//! seen first (`super::network_id`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::build::{Built, Group, Link};
use super::record::{Recorded, RecordedListing};

/// One network's case file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    /// Stable id.
    pub network_id: String,
    /// `open` or `enforced`.
    pub status: String,
    /// evidence × turnover: cases are listed by it, highest first.
    pub rank: f64,
    /// Sum of the weights of the distinct shared values (`Kind::weight`).
    pub evidence: f64,
    /// Estimated counterfeit turnover: price × sold_count of flag and review listings, in `currency`.
    pub turnover: f64,
    /// The base currency.
    pub currency: String,
    /// Flag and review listings whose price could not be converted (not in the turnover).
    pub turnover_unknown: usize,
    /// Member sellers.
    pub sellers: Vec<CaseSeller>,
    /// Their listings.
    pub listings: Vec<CaseListing>,
    /// Verdict counts over the listings.
    pub verdicts: BTreeMap<String, usize>,
    /// Brands of flagged and reviewed listings.
    pub brands: Vec<String>,
    /// Products (`brand/product_id`) of flagged and reviewed listings.
    pub products: Vec<String>,
    /// Where the work happens.
    pub regions: Regions,
    /// Every link with its evidence, strong first.
    pub links: Vec<CaseLink>,
    /// Earliest listing (listed_at, else when recorded).
    pub first_seen: Option<String>,
    /// Latest listing.
    pub last_seen: Option<String>,
}

/// A member seller.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseSeller {
    /// Seller id.
    pub seller_id: String,
    /// Names used.
    pub names: Vec<String>,
    /// Registered regions.
    pub regions: Vec<String>,
    /// Ship-from places.
    pub ship_from: Vec<String>,
    /// Listings recorded.
    pub listings: usize,
    /// Earliest listing.
    pub first_seen: Option<String>,
    /// Latest listing.
    pub last_seen: Option<String>,
}

/// A listing of a member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseListing {
    /// Listing id.
    pub listing_id: String,
    /// Its seller.
    pub seller_id: String,
    /// clear, review or flag.
    pub verdict: String,
    /// Title.
    pub title: Option<String>,
    /// Brand and product the verdict is about.
    pub brand: Option<String>,
    /// Product id.
    pub product_id: Option<String>,
    /// Price in the base currency.
    pub price_base: Option<f64>,
    /// Items sold.
    pub sold_count: Option<u64>,
    /// price × sold_count in the base currency, for flag and review listings.
    pub turnover: Option<f64>,
    /// When it was listed (or recorded).
    pub seen: String,
}

/// The regions table: counts by place.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Regions {
    /// Where the shops are registered: sellers per region.
    pub registered: BTreeMap<String, usize>,
    /// Where goods ship from: listings per place.
    pub ship_from: BTreeMap<String, usize>,
    /// Where the phone contacts point: distinct numbers per country.
    pub contacts: BTreeMap<String, usize>,
}

/// A link with its evidence.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseLink {
    /// One seller id.
    pub a: String,
    /// The other.
    pub b: String,
    /// What they share (phone, wechat, payment_account, warehouse, photo, seller_name, ...).
    pub kind: String,
    /// The shared value, normalised.
    pub value: String,
    /// `strong` (joins networks) or `weak` (supports).
    pub strength: String,
    /// How each wrote it, or the photos.
    pub evidence: String,
}

/// Earlier networks, for stable ids: member seller id → (network id, created at).
pub type Previous = HashMap<String, (String, i64)>;

/// Seconds since 1970 as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// When a listing was seen: its `listed_at` when it looks like RFC 3339, else when recorded.
pub fn seen(l: &RecordedListing) -> String {
    match &l.listed_at {
        Some(t) if looks_rfc3339(t) => t.clone(),
        _ => rfc3339(l.recorded_at),
    }
}

/// Whether `t` starts like an RFC 3339 date-time (`YYYY-MM-DDTHH:MM`).
pub fn looks_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 16
        && b.iter().take(16).enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T' || *c == b't' || *c == b' ',
            13 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Case files of the built networks, highest rank first, with for each the earlier network ids it
/// continues.
pub fn cases(
    rec: &Recorded,
    built: &Built,
    previous: &Previous,
    statuses: &HashMap<String, String>,
    currency: &str,
) -> Vec<(Case, Vec<String>)> {
    let mut by_seller: HashMap<u32, Vec<&RecordedListing>> = HashMap::new();
    let members: std::collections::HashSet<u32> =
        built.groups.iter().flat_map(|g| g.members.iter().copied()).collect();
    for (s, l) in rec.listings.iter().filter(|(s, _)| members.contains(s)) {
        by_seller.entry(*s).or_default().push(l);
    }
    let mut countries: HashMap<u32, BTreeSet<(&str, &str)>> = HashMap::new();
    for (s, id) in rec.ids.iter().filter(|(s, _)| members.contains(s)) {
        if let Some(c) = &id.country {
            countries.entry(*s).or_default().insert((id.value.as_str(), c.as_str()));
        }
    }
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::with_capacity(built.groups.len());
    for g in &built.groups {
        let (id, merged) = assign_id(g, rec, &by_seller, previous, &mut taken);
        let status = statuses.get(&id).cloned().unwrap_or_else(|| {
            if merged.iter().any(|m| statuses.get(m).is_some_and(|s| s == "enforced")) {
                "enforced".into()
            } else {
                "open".into()
            }
        });
        out.push((one_case(id, status, g, rec, &by_seller, &countries, currency), merged));
    }
    out.sort_by(|a, b| {
        b.0.rank.total_cmp(&a.0.rank).then_with(|| a.0.network_id.cmp(&b.0.network_id))
    });
    out
}

/// A group's id: the earliest earlier network among its members', else its founder's.
fn assign_id(
    g: &Group,
    rec: &Recorded,
    by_seller: &HashMap<u32, Vec<&RecordedListing>>,
    previous: &Previous,
    taken: &mut BTreeSet<String>,
) -> (String, Vec<String>) {
    let mut earlier: Vec<&(String, i64)> =
        g.members.iter().filter_map(|m| previous.get(&rec.sellers[*m as usize])).collect();
    earlier.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    earlier.dedup_by(|a, b| a.0 == b.0);
    let merged: Vec<String> = earlier.iter().map(|e| e.0.clone()).collect();
    if let Some(e) = earlier.iter().find(|e| !taken.contains(&e.0)) {
        taken.insert(e.0.clone());
        return (e.0.clone(), merged);
    }
    let first =
        |m: &u32| by_seller.get(m).into_iter().flatten().map(|l| seen(l)).min().unwrap_or_default();
    let mut order: Vec<(String, &str)> =
        g.members.iter().map(|m| (first(m), rec.sellers[*m as usize].as_str())).collect();
    order.sort();
    let founder = order.first().map(|o| o.1).unwrap_or_default();
    let mut id = super::network_id(founder);
    let mut n = 1;
    while taken.contains(&id) {
        n += 1;
        id = format!("{}-{n}", super::network_id(founder));
    }
    taken.insert(id.clone());
    (id, merged)
}

/// Whether a verdict counts towards the turnover.
fn counterfeit(verdict: &str) -> bool {
    verdict == "flag" || verdict == "review"
}

fn one_case(
    network_id: String,
    status: String,
    g: &Group,
    rec: &Recorded,
    by_seller: &HashMap<u32, Vec<&RecordedListing>>,
    countries: &HashMap<u32, BTreeSet<(&str, &str)>>,
    currency: &str,
) -> Case {
    let name = |s: u32| rec.sellers[s as usize].clone();
    let mut case = Case::empty(network_id, status, currency);
    let (mut brands, mut products) = (BTreeSet::new(), BTreeSet::new());
    let mut numbers: BTreeSet<(&str, &str)> = BTreeSet::new();
    for m in &g.members {
        let listings = by_seller.get(m).map(Vec::as_slice).unwrap_or_default();
        let seller = case_seller(name(*m), listings);
        for r in &seller.regions {
            *case.regions.registered.entry(r.clone()).or_default() += 1;
        }
        case.sellers.push(seller);
        numbers.extend(countries.get(m).into_iter().flatten());
        for l in listings {
            case.listings.push(case_listing(l, &mut case.turnover_unknown));
            *case.verdicts.entry(l.verdict.clone()).or_default() += 1;
            if let Some(p) = &l.ship_from {
                *case.regions.ship_from.entry(p.clone()).or_default() += 1;
            }
            if counterfeit(&l.verdict) {
                brands.extend(l.brand.clone());
                if let (Some(b), Some(p)) = (&l.brand, &l.product_id) {
                    products.insert(format!("{b}/{p}"));
                }
            }
        }
    }
    for (_, c) in numbers {
        *case.regions.contacts.entry(c.to_string()).or_default() += 1;
    }
    case.turnover = round2(case.listings.iter().filter_map(|l| l.turnover).sum());
    case.brands = brands.into_iter().collect();
    case.products = products.into_iter().collect();
    case.first_seen = case.sellers.iter().filter_map(|s| s.first_seen.clone()).min();
    case.last_seen = case.sellers.iter().filter_map(|s| s.last_seen.clone()).max();
    let distinct: BTreeSet<(super::Kind, &str)> =
        g.links.iter().map(|l| (l.kind, l.value.as_str())).collect();
    case.evidence = distinct.iter().map(|(k, _)| k.weight()).sum();
    case.rank = round2(case.evidence * case.turnover);
    case.links = g.links.iter().map(|l| case_link(l, rec)).collect();
    case
}

impl Case {
    /// A case file with nothing in it yet.
    fn empty(network_id: String, status: String, currency: &str) -> Case {
        Case {
            network_id,
            status,
            rank: 0.0,
            evidence: 0.0,
            turnover: 0.0,
            currency: currency.to_string(),
            turnover_unknown: 0,
            sellers: Vec::new(),
            listings: Vec::new(),
            verdicts: BTreeMap::new(),
            brands: Vec::new(),
            products: Vec::new(),
            regions: Regions::default(),
            links: Vec::new(),
            first_seen: None,
            last_seen: None,
        }
    }
}

/// A member of a network as its case file shows it: the names, regions and places it ships from
/// seen in its `listings` (each once, in order), how many, and when first and last seen.
fn case_seller(seller_id: String, listings: &[&RecordedListing]) -> CaseSeller {
    let set = |f: fn(&RecordedListing) -> Option<&String>| {
        listings
            .iter()
            .filter_map(|l| f(l).cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    };
    let seen_all: Vec<String> = listings.iter().map(|l| seen(l)).collect();
    CaseSeller {
        seller_id,
        names: set(|l| l.seller_name.as_ref()),
        regions: set(|l| l.region.as_ref()),
        ship_from: set(|l| l.ship_from.as_ref()),
        listings: listings.len(),
        first_seen: seen_all.iter().min().cloned(),
        last_seen: seen_all.iter().max().cloned(),
    }
}

/// A link between two members as the case file shows it, sellers by name.
fn case_link(l: &Link, rec: &Recorded) -> CaseLink {
    let name = |s: u32| rec.sellers[s as usize].clone();
    CaseLink {
        a: name(l.a),
        b: name(l.b),
        kind: l.kind.as_str().to_string(),
        value: l.value.clone(),
        strength: if l.strong { "strong" } else { "weak" }.to_string(),
        evidence: l.evidence.clone(),
    }
}

fn case_listing(l: &RecordedListing, unknown: &mut usize) -> CaseListing {
    let turnover = if counterfeit(&l.verdict) {
        match (l.price_base, l.sold_count) {
            (Some(p), Some(n)) => Some(round2(p * n as f64)),
            (None, Some(n)) if n > 0 && l.price.is_some() => {
                *unknown += 1;
                None
            }
            _ => None,
        }
    } else {
        None
    };
    CaseListing {
        listing_id: l.listing_id.clone(),
        seller_id: l.seller_id.clone(),
        verdict: l.verdict.clone(),
        title: l.title.clone(),
        brand: l.brand.clone(),
        product_id: l.product_id.clone(),
        price_base: l.price_base,
        sold_count: l.sold_count,
        turnover,
        seen: seen(l),
    }
}

fn round2(x: f64) -> f64 {
    if x.is_finite() {
        (x * 100.0).round() / 100.0
    } else {
        f64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_256_000 + 3661), "2026-12-03T01:01:01Z");
        assert!(looks_rfc3339("2026-05-01T10:00:00+08:00"));
        assert!(!looks_rfc3339("yesterday"));
    }

    #[test]
    fn turnover_counts_flag_and_review_and_never_overflows() {
        let l = |verdict: &str, price: f64, n: u64| RecordedListing {
            verdict: verdict.into(),
            price: Some(price),
            price_base: Some(price),
            sold_count: Some(n),
            ..RecordedListing::default()
        };
        let mut unknown = 0;
        assert_eq!(case_listing(&l("flag", 2.5, 10), &mut unknown).turnover, Some(25.0));
        assert_eq!(case_listing(&l("clear", 2.5, 10), &mut unknown).turnover, None);
        let huge = case_listing(&l("review", 1e300, u64::MAX), &mut unknown).turnover.unwrap();
        assert!(huge.is_finite());
    }
}
