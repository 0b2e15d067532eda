//! The verdict record written for each listing, and what verdicts are made with.

use serde::Serialize;

use crate::catalog::allowlist::Allowed;
use crate::catalog::CatalogView;
use crate::config::Config;
use crate::model::RegionQueries;
use crate::policy::wording::{Lexicon, WordingHit};
use crate::policy::{self, Authorisations, Match, Rule, Thresholds, Verdict};
use crate::scan::Seller;

/// A listing photo as recorded for seller networks: its perceptual hash and embedding, and whether
/// it is a catalog photo (similar to a reference photo), which links nobody.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoPrint {
    /// The photo (path or URL as given).
    pub image: String,
    /// Its perceptual hash (`phash::of`); none for a flat photo.
    pub phash: Option<u64>,
    /// Its whole-photo embedding.
    pub embedding: Vec<f32>,
    /// Its best similarity to a catalog reference photo, at least the review threshold, or a
    /// near-duplicate of one by hash.
    pub catalog: bool,
}

/// What the listing's seller links it to (filled by `network` when a scan knows networks).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NetworkRef {
    /// The network's id.
    pub network_id: String,
    /// The shared value (normalised), or the seller id for a known member.
    pub value: String,
    /// The kind of link (phone, email, payment_account, photo, member, ...).
    pub kind: String,
    /// Whether the network was marked enforced.
    pub enforced: bool,
}

/// The verdict record written for each listing (one JSON line); its schema is in the README.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The listing id (null when the record was unreadable).
    pub listing_id: Option<String>,
    /// Input line.
    pub line: usize,
    /// clear, review, flag or error.
    pub verdict: Verdict,
    /// Risk between 0 and 1 (0 for errors).
    pub risk: f64,
    /// Best matching products, best first.
    pub matches: Vec<Match>,
    /// When the evidence does not separate the best match from siblings of its brand (within
    /// `policy.sibling_margin`): the products the listing may be, best first, each with its
    /// `product_id`, `title` and `score`; the verdict is about all of them. Absent otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<policy::CandidateProduct>,
    /// Listing price / reference price of the product the verdict is about.
    pub price_ratio: Option<f64>,
    /// The full price comparison.
    pub price: Option<policy::PriceComparison>,
    /// The rule that fired (`error` for errors).
    pub rule: Rule,
    /// Sentences that explain the verdict.
    pub reasons: Vec<String>,
    /// Photos of the listing that could not be used, with why (the others were).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_errors: Vec<String>,
    /// The seller, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<Seller>,
    /// Listing title, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Counterfeit wording found in the title, strongest first (see `wording`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wording: Vec<WordingHit>,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// The model that embedded the photos.
    pub model: String,
    /// The seller network the listing's seller is linked to, when known (`network`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRef>,
    /// Optional fields left out because they were unusable.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Products set aside because the listing photo that matched them is on their allow-list
    /// (`allowlist`): which decision, who, when.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Allowed>,
    /// The listing's price and currency as given (recorded for case files).
    #[serde(skip)]
    pub offer: Option<(f64, String)>,
    /// The listing's photos as recorded for seller networks.
    #[serde(skip)]
    pub photos: Vec<PhotoPrint>,
}

impl Report {
    /// An `error` verdict naming what is wrong.
    pub(crate) fn error(
        line: usize,
        listing_id: Option<String>,
        why: String,
        ctx: &Context,
    ) -> Report {
        Report {
            listing_id,
            line,
            verdict: Verdict::Error,
            risk: 0.0,
            matches: Vec::new(),
            candidates: Vec::new(),
            price_ratio: None,
            price: None,
            rule: Rule::Error,
            reasons: vec![why],
            image_errors: Vec::new(),
            wording: Vec::new(),
            seller: None,
            title: None,
            thresholds: ctx.thresholds.clone(),
            model: ctx.model.clone(),
            network: None,
            warnings: Vec::new(),
            allowed: Vec::new(),
            offer: None,
            photos: Vec::new(),
        }
    }
}

/// What verdicts are made with: settings, the thresholds in force and the model's name.
pub struct Context {
    /// The configuration.
    pub config: Config,
    /// The thresholds in force.
    pub thresholds: Thresholds,
    /// Name of the model.
    pub model: String,
    /// When region queries run: `[scan] region_queries`, else the model's default.
    pub regions: RegionQueries,
    /// Counterfeit wording looked for in titles (`None` when `[wording]` is off).
    pub lexicon: Option<Lexicon>,
}

impl Context {
    /// The lexicon's phrases in `title`, weighed by how near they stand to the brands and titles
    /// of the listing's `matches` (empty without a title or with `[wording]` off).
    pub fn wording(&self, title: Option<&str>, matches: &[Match]) -> Vec<WordingHit> {
        let (Some(lexicon), Some(title)) = (&self.lexicon, title) else { return Vec::new() };
        let mut anchors: Vec<&str> = matches
            .iter()
            .flat_map(|m| [m.brand.as_str(), m.title.as_str()])
            .filter(|a| !a.trim().is_empty())
            .collect();
        anchors.sort_unstable();
        anchors.dedup();
        lexicon.find(title, &anchors, &self.config.wording)
    }
}

impl Authorisations for CatalogView {
    fn sellers(&self, brand: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.brand_sellers.get(brand).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        v.sort();
        v
    }
}

/// The score of a match in a verdict as stored (JSON): its `score`, or its `similarity` in
/// verdicts written before the field was renamed.
pub fn stored_score(m: &serde_json::Value) -> Option<f64> {
    m.get("score").or_else(|| m.get("similarity")).and_then(serde_json::Value::as_f64)
}

/// The cosine of a match in a verdict as stored (JSON): its `cosine`, or in verdicts written
/// before the field existed its `raw_similarity`, else its score (which was then the cosine).
pub fn stored_cosine(m: &serde_json::Value) -> Option<f64> {
    m.get("cosine")
        .or_else(|| m.get("raw_similarity"))
        .and_then(serde_json::Value::as_f64)
        .or_else(|| stored_score(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_verdicts_are_read_under_the_old_names_too() {
        let new = serde_json::json!({"score": 0.91, "cosine": 0.8});
        let old = serde_json::json!({"similarity": 0.91, "raw_similarity": 0.8});
        let plain = serde_json::json!({"similarity": 0.7});
        for m in [&new, &old] {
            assert_eq!((stored_score(m), stored_cosine(m)), (Some(0.91), Some(0.8)), "{m}");
        }
        assert_eq!(stored_cosine(&plain), Some(0.7), "the score was the cosine");
        assert_eq!(stored_score(&serde_json::json!({})), None);
    }
}
