//! During a scan: records each judged listing (`record::RecordStore`) and recognises sellers who
//! come back. A listing whose seller is a member of a known network, or shares a linking value or
//! photo with one, gets `network` in its verdict and a reason; a new seller linked to a network
//! marked `enforced` is raised one level (clear → review, review → flag, rule `network_enforced`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

use super::normalise::{Kind, Normalised, Normaliser};
use super::record::{now, RecordStore, RecordedListing, RecordedPhoto};
use super::Known;
use crate::config::Config;
use crate::policy::currency::CurrencyConfig;
use crate::policy::Verdict;
use crate::scan::{NetworkRef, Report, Seller};

/// The rule of a verdict raised because the seller is linked to an enforced network.
pub const RULE_ENFORCED: crate::policy::Rule = crate::policy::Rule::NetworkEnforced;

/// Records listings and links them to known networks during a scan.
pub struct Recorder {
    store: Option<RecordStore>,
    known: Known,
    normaliser: Normaliser,
    photo_bits: u32,
    currency: CurrencyConfig,
    /// Notes already said (each once per scan).
    noted: HashSet<String>,
}

impl Recorder {
    /// A recorder over the data directory: records when `record` is true, and knows the networks
    /// of the last `network build` when there was one.
    pub fn open(dir: &Path, config: &Config, record: bool) -> Result<Recorder> {
        let store = RecordStore::open(dir, record)?;
        let known = match &store {
            Some(s) => s.known()?,
            None => Known::default(),
        };
        Ok(Recorder {
            store: store.filter(|_| record),
            known,
            normaliser: Normaliser::new(&config.network.default_country),
            photo_bits: config.network.photo_hash_bits,
            currency: config.currency.clone(),
            noted: HashSet::new(),
        })
    }

    /// Links and records one chunk of verdicts (error verdicts are not recorded); returns the
    /// messages to show once (values that could not be normalised, with the listing).
    pub fn process(&mut self, reports: &mut [Report]) -> Result<Vec<String>> {
        let mut messages = Vec::new();
        let mut batch = Vec::new();
        for r in reports.iter_mut().filter(|r| r.verdict != Verdict::Error) {
            let Some(seller) = r.seller.clone() else { continue };
            let norm = self.normaliser.seller(&seller);
            let id = r.listing_id.clone().unwrap_or_default();
            messages.extend(r.warnings.iter().map(|w| format!("listing {id}: {w}")));
            let mut notes = norm.notes.clone();
            if let Some(t) = seller.listed_at.as_deref().filter(|t| !super::case::looks_rfc3339(t))
            {
                notes.push(format!("field `listed_at` is not an RFC 3339 time ({t:?}); the time it was recorded is used"));
            }
            for note in notes {
                if self.noted.insert(note.clone()) {
                    messages.push(format!("listing {id}: {note}"));
                }
                r.warnings.push(note);
            }
            if !self.known.is_empty() {
                self.link(r, &seller, &norm);
            }
            if self.store.is_some() {
                batch.push(self.recorded(r, &seller, norm));
            }
        }
        if let Some(store) = &mut self.store {
            if !batch.is_empty() {
                store.record(&batch)?;
            }
        }
        Ok(messages)
    }

    /// Sets `network` on a verdict whose seller is a member of, or shares a value or photo with, a
    /// known network, and raises a new seller linked to an enforced one.
    fn link(&self, r: &mut Report, seller: &Seller, norm: &Normalised) {
        let member = self.known.members.get(&seller.seller_id);
        let found = match member {
            Some((id, enforced)) => Some(NetworkRef {
                network_id: id.clone(),
                value: seller.seller_id.clone(),
                kind: "member".into(),
                enforced: *enforced,
            }),
            None => {
                // the strongest shared value, else a shared photo
                let mut ids: Vec<_> = norm.ids.iter().collect();
                ids.sort_by(|a, b| b.kind.weight().total_cmp(&a.kind.weight()));
                let by_value = ids.iter().find_map(|i| {
                    let (id, enforced) = self.known.values.get(&i.key())?;
                    Some(NetworkRef {
                        network_id: id.clone(),
                        value: i.value.clone(),
                        kind: i.kind.key_kind().as_str().into(),
                        enforced: *enforced,
                    })
                });
                by_value.or_else(|| {
                    r.photos.iter().filter(|p| !p.catalog).find_map(|p| {
                        let (id, photo, enforced) = self.known.photo(p.phash?, self.photo_bits)?;
                        Some(NetworkRef {
                            network_id: id.to_string(),
                            value: photo.to_string(),
                            kind: Kind::Photo.as_str().into(),
                            enforced,
                        })
                    })
                })
            }
        };
        let Some(n) = found else { return };
        let status = if n.enforced { "enforced" } else { "open" };
        if member.is_some() {
            r.reasons.push(format!(
                "seller {} is a member of seller network {} ({status})",
                seller.seller_id, n.network_id
            ));
        } else {
            r.reasons.push(format!(
                "seller {} shares {} {:?} with seller network {} ({status})",
                seller.seller_id, n.kind, n.value, n.network_id
            ));
            if n.enforced {
                let raised = match r.verdict {
                    Verdict::Clear => Some(Verdict::Review),
                    Verdict::Review => Some(Verdict::Flag),
                    _ => None,
                };
                if let Some(v) = raised {
                    r.reasons.push(format!(
                        "raised from {} to {}: a new seller linked to network {}, which was marked enforced",
                        r.verdict.as_str(),
                        v.as_str(),
                        n.network_id
                    ));
                    r.verdict = v;
                    r.rule = RULE_ENFORCED;
                }
            }
        }
        r.network = Some(n);
    }

    /// The record of a verdict.
    fn recorded(&self, r: &Report, seller: &Seller, norm: Normalised) -> RecordedListing {
        let counterfeit = matches!(r.verdict, Verdict::Flag | Verdict::Review);
        let best = r.matches.first().filter(|_| counterfeit);
        let (price, currency) = match &r.offer {
            Some((p, c)) => (Some(*p), Some(c.clone())),
            None => (None, None),
        };
        let price_base =
            price.zip(currency.as_deref()).and_then(|(p, c)| self.currency.to_base(p, c));
        let photos = r
            .photos
            .iter()
            .map(|p| {
                let copies = |m: &&crate::policy::Match| {
                    m.listing_image == p.image
                        || m.listing_image.starts_with(&format!("{}#", p.image))
                };
                RecordedPhoto {
                    image: p.image.clone(),
                    phash: p.phash,
                    embedding: p.embedding.clone(),
                    catalog: p.catalog,
                    // the reference photo this photo of a flag or review copies (a match of it
                    // at least at the review threshold)
                    reference: if counterfeit {
                        r.matches
                            .iter()
                            .filter(|m| f64::from(m.score) >= r.thresholds.review_threshold)
                            .find(copies)
                            .map(|m| m.image.clone())
                    } else {
                        None
                    },
                }
            })
            .collect();
        RecordedListing {
            listing_id: r.listing_id.clone().unwrap_or_default(),
            seller_id: seller.seller_id.clone(),
            seller_name: seller.seller_name.clone(),
            region: seller.region.clone(),
            ship_from: seller.ship_from.clone(),
            shop_url: seller.shop_url.clone(),
            title: r.title.clone(),
            verdict: r.verdict.as_str().to_string(),
            rule: r.rule.to_string(),
            price,
            currency,
            price_base,
            sold_count: seller.sold_count,
            brand: best.map(|m| m.brand.clone()),
            product_id: best.map(|m| m.product_id.clone()),
            listed_at: seller.listed_at.clone(),
            recorded_at: now(),
            ids: norm.ids,
            photos,
        }
    }
}
