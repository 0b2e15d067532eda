//! The flag policy: from the best matches, the listing's price and its seller to a verdict with
//! its reasons, risk score and the rule that fired.
//!
//! Rules, applied to every matched product at or above the review threshold; the most severe
//! outcome wins (ties: the higher score):
//! - `authorised_seller`: the seller is authorised for the product's brand → clear;
//! - `copy_at_low_price`: score ≥ `match_threshold` and price ≤ `flag_price_ratio` × reference → flag;
//! - `copy_price_unknown`: strong match but the prices cannot be compared (unknown currency) → review;
//! - `copy_at_normal_price`: strong match at a higher price → review;
//! - `possible_copy_at_very_low_price`: score ≥ `review_threshold` and price ≤
//!   `review_price_ratio` × reference → review;
//! - `possible_match_normal_price`: weaker match at a higher price → clear;
//! - `no_match`: nothing at or above the review threshold → clear.
//!
//! Look-alike siblings: when products of the best match's brand score within `sibling_margin` of
//! it, the evidence does not separate them, and they are judged together as one candidate set
//! (`Decision::candidates`, best first): the rules apply to the highest score among them, the
//! price is compared with the highest reference price among them (in the base currency; none
//! when one cannot be converted), and the reasons say "one of …".

pub mod calibrate;
pub mod currency;
pub mod wording;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::policy::currency::CurrencyConfig;
use crate::policy::wording::WordingHit;

/// The outcome for one listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing suspicious.
    Clear,
    /// A person should look at it.
    Review,
    /// Very likely a counterfeit.
    Flag,
    /// The listing could not be processed.
    Error,
}

impl Verdict {
    /// Lower-case name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clear => "clear",
            Verdict::Review => "review",
            Verdict::Flag => "flag",
            Verdict::Error => "error",
        }
    }
}

/// The rule that decided a verdict (see the module's description); written in the JSON output,
/// the tables and the records of seller networks by its name (`as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The seller is authorised for the product's brand → clear.
    AuthorisedSeller,
    /// A copy at or below the flag price ratio → flag.
    CopyAtLowPrice,
    /// A copy whose price cannot be compared → review.
    CopyPriceUnknown,
    /// A copy at a higher price → review.
    CopyAtNormalPrice,
    /// A possible copy at or below the review price ratio → review.
    PossibleCopyAtVeryLowPrice,
    /// A possible copy at a higher price → clear.
    PossibleMatchNormalPrice,
    /// Nothing at or above the review threshold → clear.
    NoMatch,
    /// Every match was set aside by the allow-list (`catalog::allowlist`) → clear.
    AllowList,
    /// Raised one level because the seller is linked to an enforced network (`network::watch`).
    NetworkEnforced,
    /// The listing could not be processed.
    Error,
}

impl Rule {
    /// The rule's name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthorisedSeller => "authorised_seller",
            Rule::CopyAtLowPrice => "copy_at_low_price",
            Rule::CopyPriceUnknown => "copy_price_unknown",
            Rule::CopyAtNormalPrice => "copy_at_normal_price",
            Rule::PossibleCopyAtVeryLowPrice => "possible_copy_at_very_low_price",
            Rule::PossibleMatchNormalPrice => "possible_match_normal_price",
            Rule::NoMatch => "no_match",
            Rule::AllowList => "allow_list",
            Rule::NetworkEnforced => "network_enforced",
            Rule::Error => "error",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A catalog product that a listing's photo matched.
#[derive(Debug, Clone, Serialize)]
pub struct Match {
    /// Brand of the product.
    pub brand: String,
    /// The brand's product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// The reference image that matched best.
    pub image: String,
    /// The listing's photo that matched (its path or URL).
    pub listing_image: String,
    /// Score of the match, which the thresholds apply to (up to 1.5): the cosine similarity of the
    /// best photo pair, minus `background` when scores are normalised, plus `support` when other
    /// reference photos of the product match too, plus `verification` when local features confirm
    /// it (computed in `scan::score`).
    pub score: f32,
    /// The raw cosine similarity of the best photo pair.
    pub cosine: f32,
    /// With score normalisation: what was subtracted, `policy.background_beta` × the listing
    /// photo's mean similarity to its nearest background photos (how generic the photo is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background: Option<f32>,
    /// Evidence from the product's other reference photos: `policy.support_weight` × (the second
    /// best photo's score + half the third best's), when the product has several photos.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support: Option<f32>,
    /// With geometric verification: the most local-feature pairs that one homography explains
    /// between a listing photo and a reference photo of the product.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inliers: Option<u32>,
    /// With geometric verification: of `inliers`, those in the centre of the reference photo,
    /// where its product is; the others count a quarter (`verify::Verified::evidence`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub central_inliers: Option<u32>,
    /// With geometric verification: of `inliers`, those on points of the reference photo that
    /// photos of the brand's other products share (logo, layout); which sibling a photo shows is
    /// decided on the others (`verify::Shared`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_inliers: Option<u32>,
    /// With geometric verification: when a listing photo is a near-duplicate of a reference photo
    /// of the product, how many of the 64 bits of their perceptual hashes differ (at most
    /// `phash::NEAR`); that counts as verified, for copies too smooth for local features.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_distance: Option<u32>,
    /// With geometric verification: the similarity (less its background term) to the reference
    /// photo of the part of the listing photo where that photo lies, cut out and straightened, when
    /// higher than the best similarity, for which it then stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub located: Option<f32>,
    /// With geometric verification: what verification added to the score (negative when another
    /// candidate verified far better; see `[verify]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<f32>,
    /// With geometric verification: true when the photos agree only once the listing photo is
    /// mirrored (left and right swapped).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mirrored: bool,
    /// With geometric verification, when the two best matches are look-alike siblings of one
    /// brand: the share of the listing photo's colour (0 to 1) that the product's reference photos
    /// have; the one with more goes first (see `colour`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub colour: Option<f32>,
    /// With geometric verification, when the match verified in the photo `listing_image`: where
    /// in it the product lies (the box around the verified local features, or the part of the
    /// photo that is a near-duplicate), for an outline drawn over the photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<MatchRegion>,
    /// With geometric verification, when the match verified between the photos `listing_image`
    /// and `image`: up to `verify::MAX_POINTS` of the local features one homography explains, as
    /// points of both photos (`FeaturePair`), to draw the agreement over them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<FeaturePair>,
    /// Reference price of the product.
    pub reference_price: f64,
    /// Currency of the reference price.
    pub reference_currency: String,
}

/// A local feature of a listing photo and the reference photo's feature that it matched, one
/// homography explaining the pair (`verify::PointPair`, in whole photos).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FeaturePair {
    /// x and y of the point in the listing photo, as shares (0 to 1) of its width and height.
    pub listing: [f32; 2],
    /// x and y of the point in the reference photo, as shares of its width and height.
    pub reference: [f32; 2],
}

/// Where in a listing photo a product was found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MatchRegion {
    /// Left, top, right and bottom edges as shares (0 to 1) of the photo's width and height.
    pub area: [f32; 4],
}

/// The listing's side of the decision.
#[derive(Debug, Clone)]
pub struct Offer<'a> {
    /// Seller id.
    pub seller_id: &'a str,
    /// Price and currency, if given.
    pub price: Option<(f64, &'a str)>,
}

/// Price comparison behind a verdict, all in the base currency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PriceComparison {
    /// Listing price converted to the base currency.
    pub listing: f64,
    /// Reference price converted to the base currency.
    pub reference: f64,
    /// The base currency.
    pub currency: String,
    /// listing / reference.
    pub ratio: f64,
}

/// A verdict and everything that explains it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Risk between 0 and 1: match strength × price suspicion × seller factor.
    pub risk: f64,
    /// The rule that fired.
    pub rule: Rule,
    /// Price comparison with that product, when possible.
    pub price: Option<PriceComparison>,
    /// Sentences saying why.
    pub reasons: Vec<String>,
    /// When the verdict is about products the evidence does not separate (siblings of one brand
    /// within `sibling_margin` of the best match): all of them, best first; else empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<CandidateProduct>,
}

/// One of the products a verdict may be about, when the evidence does not separate them.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CandidateProduct {
    /// The brand's product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// Score of its match.
    pub score: f32,
}

/// The thresholds a verdict is made with (from the config, or the model manifest's defaults).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Thresholds {
    /// Similarity from which a photo is a copy.
    pub match_threshold: f64,
    /// Similarity from which a photo is a possible copy.
    pub review_threshold: f64,
    /// A copy at or below this fraction of the reference price is flagged.
    pub flag_price_ratio: f64,
    /// A possible copy at or below this fraction is sent to review.
    pub review_price_ratio: f64,
    /// Products of the best match's brand scoring less than this below it form a candidate set
    /// with it (`Decision::candidates`); 0: never. Not written in verdicts' `thresholds`.
    #[serde(skip)]
    pub sibling_margin: f64,
}

/// The authorised sellers of a brand.
pub trait Authorisations {
    /// Sellers authorised for `brand` (empty when none are known).
    fn sellers(&self, brand: &str) -> Vec<String>;
}

fn pct(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

/// Decides the verdict for a listing given its matches (best first).
pub fn decide(
    offer: &Offer<'_>,
    matches: &[Match],
    auth: &dyn Authorisations,
    policy: &Thresholds,
    currency: &CurrencyConfig,
) -> Decision {
    let set = sibling_set(matches, policy);
    let mut best: Option<Decision> = None;
    for (i, m) in matches.iter().enumerate() {
        if (m.score as f64) < policy.review_threshold
            || (i > 0 && set.iter().any(|c| std::ptr::eq(*c, m)))
        {
            continue;
        }
        let d = match i {
            0 if set.len() > 1 => decide_set(offer, &set, auth, policy, currency),
            _ => decide_one(offer, m, auth, policy, currency),
        };
        let better = match &best {
            None => true,
            Some(b) => severity(d.verdict) > severity(b.verdict),
        };
        if better {
            best = Some(d);
        }
    }
    best.unwrap_or_else(|| {
        let reason = match matches.first() {
            Some(m) => format!(
                "best match {} / {} has score {:.3}, below the review threshold {:.2}",
                m.brand, m.product_id, m.score, policy.review_threshold
            ),
            None => "no catalog image to compare with".to_string(),
        };
        Decision {
            verdict: Verdict::Clear,
            risk: 0.0,
            rule: Rule::NoMatch,
            price: None,
            reasons: vec![reason],
            candidates: Vec::new(),
        }
    })
}

/// The candidate set of `matches` (best first): the best match, when at or above the review
/// threshold, with every other product of its brand whose score is less than `sibling_margin`
/// below it (or above it: colour may have put a look-alike first). Empty when the evidence
/// separates the best match from its siblings, and always with a margin of 0.
fn sibling_set<'a>(matches: &'a [Match], policy: &Thresholds) -> Vec<&'a Match> {
    let Some((best, rest)) = matches.split_first() else { return Vec::new() };
    if (best.score as f64) < policy.review_threshold || policy.sibling_margin <= 0.0 {
        return Vec::new();
    }
    let mut set = vec![best];
    set.extend(rest.iter().filter(|m| {
        m.brand == best.brand && f64::from(best.score) - f64::from(m.score) < policy.sibling_margin
    }));
    if set.len() < 2 {
        set.clear();
    }
    set
}

fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Clear => 0,
        Verdict::Review => 1,
        Verdict::Flag => 2,
        Verdict::Error => 3,
    }
}

/// Decides the verdict about one match `m` at or above the review threshold.
fn decide_one(
    offer: &Offer<'_>,
    m: &Match,
    auth: &dyn Authorisations,
    policy: &Thresholds,
    currency: &CurrencyConfig,
) -> Decision {
    let strong = m.score as f64 >= policy.match_threshold;
    let reasons = vec![match_reason(m, strong, policy)];
    decide_priced(offer, m, Priced::Own, reasons, auth, policy, currency)
}

/// Decides the verdict about a candidate `set` (`sibling_set`, best first, at least two): the
/// highest score among them (the best match is not always the highest: colour may have put a
/// look-alike sibling first, `scan::siblings`) with the highest reference price among them, in
/// the base currency (none when one of them cannot be compared).
fn decide_set(
    offer: &Offer<'_>,
    set: &[&Match],
    auth: &dyn Authorisations,
    policy: &Thresholds,
    currency: &CurrencyConfig,
) -> Decision {
    let mut m = set[0];
    for &c in &set[1..] {
        if c.score > m.score {
            m = c;
        }
    }
    let strong = m.score as f64 >= policy.match_threshold;
    let named: Vec<String> =
        set.iter().map(|c| format!("{} ({:?}, {:.3})", c.product_id, c.title, c.score)).collect();
    let reasons = vec![
        match_reason(m, strong, policy),
        format!(
            "matches one of {} {} products: {}; their scores are within the sibling margin {:.3} \
             of the best, so the evidence does not separate them",
            set.len(),
            m.brand,
            named.join(", "),
            policy.sibling_margin
        ),
    ];
    let priced = Priced::HighestOf(highest_priced(set, currency));
    let mut d = decide_priced(offer, m, priced, reasons, auth, policy, currency);
    d.candidates = set
        .iter()
        .map(|c| CandidateProduct {
            product_id: c.product_id.clone(),
            title: c.title.clone(),
            score: c.score,
        })
        .collect();
    d
}

/// Of a candidate `set`, the match whose reference price is the highest in the base currency:
/// the first whose price cannot be converted when there is one (its price then cannot be
/// compared, and no flag comes from the others' lower prices).
fn highest_priced<'a>(set: &[&'a Match], currency: &CurrencyConfig) -> &'a Match {
    let mut best: Option<(&Match, f64)> = None;
    for &c in set {
        let Some(p) = currency.to_base(c.reference_price, &c.reference_currency) else {
            return c;
        };
        if best.is_none_or(|(_, b)| p > b) {
            best = Some((c, p));
        }
    }
    best.map_or(set[0], |(c, _)| c)
}

/// Which reference price a verdict compares the listing's price with.
enum Priced<'a> {
    /// The match's own.
    Own,
    /// The highest of its candidate set's, this match's (`highest_priced`).
    HighestOf(&'a Match),
}

/// Decides the verdict about match `m` with its first `reasons` given, comparing the listing's
/// price with the reference price `priced` says.
fn decide_priced(
    offer: &Offer<'_>,
    m: &Match,
    priced: Priced<'_>,
    mut reasons: Vec<String>,
    auth: &dyn Authorisations,
    policy: &Thresholds,
    currency: &CurrencyConfig,
) -> Decision {
    let strong = m.score as f64 >= policy.match_threshold;
    let of = match priced {
        Priced::Own => m,
        Priced::HighestOf(p) => p,
    };
    let price = compare_price(offer, of, currency);
    let mut said = price_reason(offer, of, price.as_ref());
    if let Priced::HighestOf(p) = priced {
        said += &format!(" ({}'s, the highest reference price among them)", p.product_id);
    }
    reasons.push(said);
    let authorised = auth.sellers(&m.brand);
    let is_authorised = authorised.iter().any(|s| s == offer.seller_id);
    let strength = match_strength(m, strong, policy);
    let price_factor = price_suspicion(price.as_ref(), policy);
    if is_authorised {
        reasons.push(format!("seller {} is authorised for brand {}", offer.seller_id, m.brand));
        return Decision {
            verdict: Verdict::Clear,
            risk: round3(strength * price_factor * 0.1),
            rule: Rule::AuthorisedSeller,
            price,
            reasons,
            candidates: Vec::new(),
        };
    }
    reasons.push(unauthorised_reason(offer, m, &authorised));
    let Ruling { verdict, rule, why } =
        rule_for_copy(strong, price.as_ref().map(|p| p.ratio), policy);
    reasons.push(format!("rule {rule}: {why} → {}", verdict.as_str()));
    Decision {
        verdict,
        risk: round3(strength * price_factor),
        rule,
        price,
        reasons,
        candidates: Vec::new(),
    }
}

/// The first reason about a match: which photo matches which product, with what score and how it
/// was made up (`score_parts`), against the thresholds.
fn match_reason(m: &Match, strong: bool, policy: &Thresholds) -> String {
    let parts = score_parts(m);
    let score = match parts.is_empty() {
        true => format!("similarity {:.3}", m.cosine), // the score is the cosine
        false => format!("score {:.3} ({})", m.score, parts.join(", ")),
    };
    format!(
        "photo {} matches {} / {} ({:?}) with {score} ({} the match threshold {:.2}, review threshold {:.2})",
        m.listing_image,
        m.brand,
        m.product_id,
        m.title,
        if strong { "at or above" } else { "below" },
        policy.match_threshold,
        policy.review_threshold
    )
}

/// What made up a match's score besides the cosine similarity, in words (empty when the score is
/// the cosine itself).
fn score_parts(m: &Match) -> Vec<String> {
    let mut parts = Vec::new();
    // the cosine is said when the score is more than the cosine
    if m.background.is_some()
        || m.support.is_some()
        || m.verification.is_some()
        || m.located.is_some()
    {
        parts.push(format!("cosine {:.3}", m.cosine));
    }
    if let Some(bg) = m.background {
        parts.push(format!("minus {bg:.3} for the photo's likeness to background photos"));
    }
    if let Some(l) = m.located {
        parts.push(format!("raised to {l:.3} where the reference photo lies in the listing photo, cut out and straightened"));
    }
    if let Some(s) = m.support {
        parts.push(format!("plus {s:.3} because other reference photos of the product match too"));
    }
    if let (Some(v), Some(n)) = (m.verification, m.inliers) {
        parts.extend(verification_part(m, v, n));
    }
    if let Some(c) = m.colour {
        parts.push(format!("ranked against its look-alike sibling on colour: its reference photos share {c:.2} of the listing photo's colour"));
    }
    parts
}

/// What geometric verification added (`v` > 0) or took (`v` < 0) with `n` inliers, in words.
fn verification_part(m: &Match, v: f32, n: u32) -> Option<String> {
    let shared = m
        .shared_inliers
        .map(|s| format!(", {s} of them on design the brand's other products share"))
        .unwrap_or_default();
    if v > 0.0 {
        let flip = if m.mirrored { " once the listing photo is mirrored" } else { "" };
        let centre = m
            .central_inliers
            .map(|c| format!(", {c} of them in the middle of the reference photo"))
            .unwrap_or_default();
        Some(match m.hash_distance {
            Some(bits) => format!("plus {v:.3} because the photos are near-duplicates (their perceptual hashes differ in {bits} of 64 bits; {n} local features agree geometrically{flip})"),
            None => format!("plus {v:.3} because {n} local features of the photos agree geometrically{flip}{centre}{shared}"),
        })
    } else if v < 0.0 {
        Some(format!("minus {:.3} because another product's photo agrees geometrically far better on what sets the products apart (only {n} local features agree here{shared})", -v))
    } else {
        None
    }
}

/// The listing's price against the product's, both in the base currency; `None` without a
/// listing price, an exchange rate for either currency, or a reference price above 0.
fn compare_price(
    offer: &Offer<'_>,
    m: &Match,
    currency: &CurrencyConfig,
) -> Option<PriceComparison> {
    offer.price.and_then(|(amount, cur)| {
        let listing = currency.to_base(amount, cur)?;
        let reference = currency.to_base(m.reference_price, &m.reference_currency)?;
        (reference > 0.0).then(|| PriceComparison {
            listing,
            reference,
            currency: currency.base.clone(),
            ratio: listing / reference,
        })
    })
}

/// The reason about the price: the comparison, or why there is none.
fn price_reason(offer: &Offer<'_>, m: &Match, price: Option<&PriceComparison>) -> String {
    match (&offer.price, price) {
        (Some((amount, cur)), Some(p)) => {
            let in_base = |amount: f64, cur: &str, base: f64| {
                if cur.eq_ignore_ascii_case(&p.currency) {
                    format!("{amount:.2} {cur}")
                } else {
                    format!("{amount:.2} {cur} ({base:.2} {})", p.currency)
                }
            };
            format!(
                "price {} is {} of the reference price {}",
                in_base(*amount, cur, p.listing),
                pct(p.ratio),
                in_base(m.reference_price, &m.reference_currency, p.reference)
            )
        }
        (Some((amount, cur)), None) => format!(
            "price {amount:.2} {cur} cannot be compared with the reference price {:.2} {}: {}",
            m.reference_price,
            m.reference_currency,
            if m.reference_price > 0.0 {
                "no exchange rate (currency.rates)"
            } else {
                "the reference price is 0"
            }
        ),
        (None, _) => "the listing gives no price".to_string(),
    }
}

/// How strong the match is, for the risk: 1 for a copy, 0.5 to 1 across the review band.
fn match_strength(m: &Match, strong: bool, policy: &Thresholds) -> f64 {
    if strong {
        1.0
    } else {
        let span = (policy.match_threshold - policy.review_threshold).max(1e-6);
        0.5 + 0.5 * ((m.score as f64 - policy.review_threshold) / span).clamp(0.0, 1.0)
    }
}

/// How suspicious the price is, for the risk: 1 at or below the flag ratio, falling to 0.3 at the
/// reference price; 0.6 when it cannot be compared.
fn price_suspicion(price: Option<&PriceComparison>, policy: &Thresholds) -> f64 {
    match price {
        None => 0.6,
        Some(p) if p.ratio <= policy.flag_price_ratio => 1.0,
        Some(p) => {
            let span = (1.0 - policy.flag_price_ratio).max(1e-6);
            (1.0 - 0.7 * ((p.ratio - policy.flag_price_ratio) / span)).clamp(0.3, 1.0)
        }
    }
}

/// The reason why the seller is not authorised for the product's brand (`authorised`).
fn unauthorised_reason(offer: &Offer<'_>, m: &Match, authorised: &[String]) -> String {
    if authorised.is_empty() {
        format!(
            "seller {} is not authorised: brand {} names no authorised sellers",
            offer.seller_id, m.brand
        )
    } else {
        format!(
            "seller {} is not among the sellers authorised for brand {} ({})",
            offer.seller_id,
            m.brand,
            authorised.join(", ")
        )
    }
}

/// A rule's outcome for a match from an unauthorised seller.
struct Ruling {
    verdict: Verdict,
    rule: Rule,
    /// Why, in words.
    why: String,
}

/// The rule for a match from an unauthorised seller: by whether it is a copy (`strong`) and the
/// listing's price ratio to the reference price, if known.
fn rule_for_copy(strong: bool, ratio: Option<f64>, policy: &Thresholds) -> Ruling {
    let ruling = |verdict, rule, why| Ruling { verdict, rule, why };
    match (strong, ratio) {
        (true, Some(r)) if r <= policy.flag_price_ratio => ruling(
            Verdict::Flag,
            Rule::CopyAtLowPrice,
            format!(
                "copy at {} of the reference price (flag at or below {})",
                pct(r),
                pct(policy.flag_price_ratio)
            ),
        ),
        (true, None) => ruling(
            Verdict::Review,
            Rule::CopyPriceUnknown,
            "copy whose price cannot be compared".to_string(),
        ),
        (true, Some(r)) => ruling(
            Verdict::Review,
            Rule::CopyAtNormalPrice,
            format!(
                "copy at {} of the reference price (above the flag ratio {})",
                pct(r),
                pct(policy.flag_price_ratio)
            ),
        ),
        (false, Some(r)) if r <= policy.review_price_ratio => ruling(
            Verdict::Review,
            Rule::PossibleCopyAtVeryLowPrice,
            format!(
                "possible copy at {} of the reference price (review at or below {})",
                pct(r),
                pct(policy.review_price_ratio)
            ),
        ),
        (false, _) => ruling(
            Verdict::Clear,
            Rule::PossibleMatchNormalPrice,
            "weaker match at a price that is not very low".to_string(),
        ),
    }
}

/// Raises `decision`'s risk for counterfeit wording in the listing's title (`hits`, see `wording`):
/// by `weight` × the wording score of what is left to 1. The verdict stays as it is: wording alone
/// never flags, nor sends to review.
pub fn apply_wording(decision: &mut Decision, hits: &[WordingHit], weight: f64) {
    if hits.is_empty() || weight <= 0.0 {
        return;
    }
    let score = wording::score(hits);
    let before = decision.risk;
    decision.risk = round3(before + (1.0 - before) * weight * score);
    let found: Vec<String> = hits.iter().map(describe_wording).collect();
    decision.reasons.push(format!(
        "title wording {} raises risk from {before:.3} to {:.3} (wording score {score:.3} × weight {weight:.2}; wording alone never changes the verdict)",
        found.join("; "),
        decision.risk
    ));
}

fn describe_wording(h: &WordingHit) -> String {
    match (&h.near, h.distance) {
        (Some(anchor), Some(d)) => format!(
            "{:?} ({}, weight {:.2}, {d} characters from {anchor:?}, counts {:.2})",
            h.term, h.lang, h.weight, h.contribution
        ),
        _ => format!(
            "{:?} ({}, weight {:.2}, no matched brand or product named in the title, counts {:.2})",
            h.term, h.lang, h.weight, h.contribution
        ),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Thresholds of the flag policy (see `policy`). The similarity thresholds default to the values in
/// the model's manifest, measured for that model (BENCHMARKS.md); set them here to override.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Similarity at or above which a listing photo is taken as a copy of a reference photo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_threshold: Option<f64>,
    /// Similarity at or above which a photo is a possible (weaker) match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_threshold: Option<f64>,
    /// A copy priced at or below this fraction of the reference price is flagged.
    pub flag_price_ratio: f64,
    /// A weaker match priced at or below this fraction of the reference price is sent to review.
    pub review_price_ratio: f64,
    /// How many products each verdict lists as matches.
    pub top_k: usize,
    /// Score normalisation (when the catalog has background photos, `catalog background add`):
    /// a listing photo's similarities are lowered by `background_beta` × the mean similarity of the
    /// photo to its `background_k` nearest background photos. 0 turns normalisation off.
    pub background_beta: f64,
    /// Background photos averaged for score normalisation.
    pub background_k: usize,
    /// Evidence from several reference photos of one product: its score is the best photo pair's
    /// plus `support_weight` × (the second best photo's score + half the third's). 0: best pair only.
    pub support_weight: f64,
    /// Look-alike siblings: products of the best match's brand scoring less than this below it
    /// are named with it as the set of products the listing may be (`candidates`), and the price
    /// is compared with the highest reference price among them. 0: always one product. The
    /// default was chosen on held-out folds of the Grocery benchmark (BENCHMARKS.md).
    pub sibling_margin: f64,
}

impl PolicyConfig {
    /// The thresholds in force: this config's, else the model manifest's measured defaults.
    pub fn thresholds(
        &self,
        manifest: &crate::model::Manifest,
    ) -> Result<crate::policy::Thresholds> {
        let t = crate::policy::Thresholds {
            match_threshold: self.match_threshold.unwrap_or(manifest.match_threshold),
            review_threshold: self.review_threshold.unwrap_or(manifest.review_threshold),
            flag_price_ratio: self.flag_price_ratio,
            review_price_ratio: self.review_price_ratio,
            sibling_margin: self.sibling_margin,
        };
        if t.review_threshold > t.match_threshold {
            bail!(
                "policy.review_threshold ({}) must not exceed policy.match_threshold ({}) for model {}",
                t.review_threshold,
                t.match_threshold,
                manifest.name
            );
        }
        Ok(t)
    }
}

/// The default `sibling_margin` (BENCHMARKS.md, products by folds).
pub const DEFAULT_SIBLING_MARGIN: f64 = 0.255;

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            match_threshold: None,
            review_threshold: None,
            flag_price_ratio: 0.50,
            review_price_ratio: 0.35,
            top_k: 5,
            background_beta: 1.0,
            background_k: 3,
            support_weight: 0.2,
            sibling_margin: DEFAULT_SIBLING_MARGIN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Auth;
    impl Authorisations for Auth {
        fn sellers(&self, brand: &str) -> Vec<String> {
            if brand == "B" {
                vec!["official".into()]
            } else {
                vec![]
            }
        }
    }

    fn t() -> Thresholds {
        Thresholds {
            match_threshold: 0.5,
            review_threshold: 0.44,
            flag_price_ratio: 0.5,
            review_price_ratio: 0.35,
            sibling_margin: 0.05,
        }
    }

    fn m(sim: f32) -> Match {
        Match {
            brand: "B".into(),
            product_id: "p1".into(),
            title: "T".into(),
            image: "ref.jpg".into(),
            listing_image: "l.jpg".into(),
            score: sim,
            cosine: sim,
            background: None,
            support: None,
            inliers: None,
            central_inliers: None,
            hash_distance: None,
            located: None,
            shared_inliers: None,
            verification: None,
            mirrored: false,
            colour: None,
            region: None,
            features: Vec::new(),
            reference_price: 100.0,
            reference_currency: "EUR".into(),
        }
    }

    fn run(sim: f64, seller: &str, price: Option<(f64, &str)>) -> Decision {
        decide(
            &Offer { seller_id: seller, price },
            &[m(sim as f32)],
            &Auth,
            &t(),
            &CurrencyConfig::default(),
        )
    }

    fn wording_in(title: &str) -> Vec<WordingHit> {
        let lexicon = crate::policy::wording::Lexicon::builtin().expect("built-in lexicon");
        lexicon.find(title, &["B", "T"], &crate::policy::wording::WordingConfig::default())
    }

    #[test]
    fn wording_raises_risk_but_never_the_verdict() {
        for (sim, seller, price) in [
            (0.3, "x", Some((10.0, "EUR"))),
            (0.6, "official", Some((10.0, "EUR"))),
            (0.47, "x", Some((90.0, "EUR"))),
            (0.6, "x", Some((10.0, "EUR"))),
        ] {
            let plain = run(sim, seller, price);
            let mut worded = plain.clone();
            apply_wording(&mut worded, &wording_in("B replica 1:1 高仿"), 0.3);
            assert_eq!(
                worded.verdict, plain.verdict,
                "wording changed the verdict at {sim} for {seller}"
            );
            assert_eq!(worded.rule, plain.rule);
            assert!(
                worded.risk > plain.risk || plain.risk == 1.0,
                "{} !> {}",
                worded.risk,
                plain.risk
            );
            assert!(worded.risk <= 1.0);
            let last = worded.reasons.last().expect("a reason");
            assert!(
                last.contains("\"replica\" (en")
                    && last.contains("\"高仿\" (zh")
                    && last.contains("never changes the verdict"),
                "{last}"
            );
        }
    }

    #[test]
    fn wording_raises_risk_by_its_weight_of_what_is_left() {
        let mut d = run(0.3, "x", None);
        assert_eq!(d.risk, 0.0);
        apply_wording(&mut d, &wording_in("B replica"), 0.3);
        assert_eq!(d.risk, 0.3);
        let mut d = run(0.3, "x", None);
        apply_wording(&mut d, &wording_in("replica lamp"), 0.3);
        assert_eq!(d.risk, 0.105, "a phrase with no brand named counts 0.35 of its weight");
        let mut d = run(0.3, "x", None);
        apply_wording(&mut d, &wording_in("B Chronograph"), 0.3);
        assert_eq!((d.risk, d.reasons.len()), (0.0, 1), "no wording, no change");
        let mut d = run(0.3, "x", None);
        apply_wording(&mut d, &wording_in("B replica"), 0.0);
        assert_eq!(d.risk, 0.0, "weight 0 turns it off");
    }

    #[test]
    fn rules() {
        let p = t();
        let strong = p.match_threshold + 0.05;
        let weak = p.review_threshold + 0.01;
        assert_eq!(run(strong, "x", Some((20.0, "EUR"))).verdict, Verdict::Flag);
        assert_eq!(run(strong, "x", Some((20.0, "EUR"))).rule, Rule::CopyAtLowPrice);
        assert_eq!(run(strong, "x", Some((95.0, "EUR"))).verdict, Verdict::Review);
        assert_eq!(run(strong, "official", Some((20.0, "EUR"))).verdict, Verdict::Clear);
        assert_eq!(run(strong, "x", Some((20.0, "XXX"))).rule, Rule::CopyPriceUnknown);
        assert_eq!(run(weak, "x", Some((20.0, "EUR"))).verdict, Verdict::Review);
        assert_eq!(run(weak, "x", Some((80.0, "EUR"))).verdict, Verdict::Clear);
        assert_eq!(run(p.review_threshold - 0.1, "x", Some((1.0, "EUR"))).rule, Rule::NoMatch);
    }

    #[test]
    fn rules_are_written_by_the_names_they_always_had() {
        let all = [
            (Rule::AuthorisedSeller, "authorised_seller"),
            (Rule::CopyAtLowPrice, "copy_at_low_price"),
            (Rule::CopyPriceUnknown, "copy_price_unknown"),
            (Rule::CopyAtNormalPrice, "copy_at_normal_price"),
            (Rule::PossibleCopyAtVeryLowPrice, "possible_copy_at_very_low_price"),
            (Rule::PossibleMatchNormalPrice, "possible_match_normal_price"),
            (Rule::NoMatch, "no_match"),
            (Rule::AllowList, "allow_list"),
            (Rule::NetworkEnforced, "network_enforced"),
            (Rule::Error, "error"),
        ];
        for (rule, name) in all {
            assert_eq!(serde_json::to_string(&rule).expect("json"), format!("{name:?}"));
            assert_eq!((rule.as_str(), rule.to_string()), (name, name.to_string()));
        }
        let d = run(0.6, "x", Some((95.0, "EUR")));
        assert_eq!(
            d.reasons.last().map(String::as_str),
            Some(
                "rule copy_at_normal_price: copy at 95% of the reference price \
                 (above the flag ratio 50%) → review"
            )
        );
    }

    #[test]
    fn a_reference_price_of_0_is_named_as_the_reason_not_an_exchange_rate() {
        let mut zero = m(0.9);
        zero.reference_price = 0.0;
        let d = decide(
            &Offer { seller_id: "x", price: Some((20.0, "EUR")) },
            &[zero],
            &Auth,
            &t(),
            &CurrencyConfig::default(),
        );
        let reasons = d.reasons.join("; ");
        assert!(
            reasons.contains("the reference price is 0") && !reasons.contains("exchange rate"),
            "{reasons}"
        );
        let d = run(0.9, "x", Some((20.0, "XXX")));
        assert!(
            d.reasons.join("; ").contains("no exchange rate"),
            "an unknown currency still says so"
        );
    }

    /// A match of brand "B" product `id` with score `score` and reference price `price` EUR.
    fn sib(id: &str, score: f32, price: f64) -> Match {
        Match {
            product_id: id.into(),
            title: format!("T {id}"),
            reference_price: price,
            ..m(score)
        }
    }

    fn decide_on(matches: &[Match], price: f64, margin: f64) -> Decision {
        decide(
            &Offer { seller_id: "x", price: Some((price, "EUR")) },
            matches,
            &Auth,
            &Thresholds { sibling_margin: margin, ..t() },
            &CurrencyConfig::default(),
        )
    }

    fn ids(d: &Decision) -> Vec<&str> {
        d.candidates.iter().map(|c| c.product_id.as_str()).collect()
    }

    #[test]
    fn siblings_within_the_margin_form_a_candidate_set_best_first() {
        let other = Match { brand: "Other".into(), ..sib("o1", 0.89, 100.0) };
        let matches = [sib("p1", 0.9, 100.0), other, sib("p2", 0.86, 100.0), sib("p3", 0.8, 100.0)];
        let d = decide_on(&matches, 95.0, 0.05);
        assert_eq!(ids(&d), ["p1", "p2"], "p3 is 0.1 below; another brand never joins");
        assert_eq!(d.candidates[1].score, 0.86);
        assert!(d.reasons.iter().any(|r| r.starts_with("matches one of 2 B products: p1")));
        assert_eq!(ids(&decide_on(&matches, 95.0, 0.15)), ["p1", "p2", "p3"]);
        assert!(decide_on(&matches, 95.0, 0.03).candidates.is_empty(), "0.04 apart separates");
        assert!(decide_on(&matches, 95.0, 0.0).candidates.is_empty(), "margin 0: never a set");
        let weak = [sib("p1", 0.3, 100.0), sib("p2", 0.3, 100.0)];
        let d = decide_on(&weak, 95.0, 0.05);
        assert_eq!((d.rule, d.candidates.len()), (Rule::NoMatch, 0), "no verdict, no set");
    }

    #[test]
    fn a_set_is_priced_at_its_highest_reference_price() {
        // p2 (100 EUR) is the best match; p1 (200 EUR) scores 0.02 below it
        let together = [sib("p2", 0.9, 100.0), sib("p1", 0.88, 200.0)];
        let d = decide_on(&together, 80.0, 0.05);
        assert_eq!(ids(&d), ["p2", "p1"]);
        assert_eq!(d.price.as_ref().map(|p| (p.reference, p.ratio)), Some((200.0, 0.4)));
        assert_eq!((d.verdict, d.rule), (Verdict::Flag, Rule::CopyAtLowPrice));
        let price = d.reasons.iter().find(|r| r.starts_with("price")).expect("a price reason");
        assert!(price.contains("(p1's, the highest reference price among them)"), "{price}");
        // apart, the best match alone is judged on its own price: 80 % of it
        let apart = [sib("p2", 0.9, 100.0), sib("p1", 0.3, 200.0)];
        let d = decide_on(&apart, 80.0, 0.05);
        assert_eq!(d.price.as_ref().map(|p| p.reference), Some(100.0));
        assert_eq!((d.verdict, d.rule), (Verdict::Review, Rule::CopyAtNormalPrice));
        // the order of the set does not matter, nor which member is the best
        let d = decide_on(&[sib("p1", 0.9, 200.0), sib("p2", 0.88, 100.0)], 80.0, 0.05);
        assert_eq!(d.price.as_ref().map(|p| p.reference), Some(200.0));
        // a member whose price cannot be converted: no comparison, so no flag from the others
        let unknown = Match { reference_currency: "XXX".into(), ..sib("p2", 0.88, 100.0) };
        let d = decide_on(&[sib("p1", 0.9, 100.0), unknown], 10.0, 0.05);
        assert_eq!((d.verdict, d.rule), (Verdict::Review, Rule::CopyPriceUnknown));
    }

    #[test]
    fn without_a_margin_every_match_is_judged_on_its_own() {
        // p2 scores above the best (colour put p1 first); margin 0: as before sets existed
        let colour_swapped = [sib("p1", 0.47, 100.0), sib("p2", 0.52, 100.0)];
        let d = decide_on(&colour_swapped, 20.0, 0.0);
        assert_eq!((d.verdict, d.candidates.len()), (Verdict::Flag, 0), "p2 alone flags");
        assert!(d.reasons[0].contains("matches B / p2"), "{}", d.reasons[0]);
    }

    #[test]
    fn a_set_is_judged_on_its_highest_score() {
        // colour put p1 first below the match threshold (0.5); p2, within the margin, is above it
        let d = decide_on(&[sib("p1", 0.47, 100.0), sib("p2", 0.52, 100.0)], 20.0, 0.1);
        assert_eq!(ids(&d), ["p1", "p2"], "best first, as ranked");
        assert_eq!((d.verdict, d.rule), (Verdict::Flag, Rule::CopyAtLowPrice));
        assert!(d.reasons[0].contains("matches B / p2"), "{}", d.reasons[0]);
    }

    #[test]
    fn a_separated_verdict_has_no_candidates_field() {
        let d = decide_on(&[sib("p1", 0.9, 100.0), sib("p2", 0.7, 100.0)], 40.0, 0.05);
        let json = serde_json::to_value(&d).expect("serialises");
        assert!(json.get("candidates").is_none(), "{json}");
        let d = decide_on(&[sib("p1", 0.9, 100.0), sib("p2", 0.88, 100.0)], 40.0, 0.05);
        let json = serde_json::to_value(&d).expect("serialises");
        assert_eq!(json["candidates"][1]["product_id"], "p2", "{json}");
    }

    #[test]
    fn currency_conversion_and_risk() {
        let d = run(0.9, "x", Some((20.0, "USD")));
        let pc = d.price.unwrap();
        assert!((pc.ratio - 20.0 * 0.86 / 100.0).abs() < 1e-9);
        assert!(d.risk > 0.9 && d.risk <= 1.0);
        let low = run(0.9, "official", Some((20.0, "USD")));
        assert!(low.risk < 0.2);
        assert!(d.reasons.iter().any(|r| r.contains("not among the sellers authorised")));
    }
}
