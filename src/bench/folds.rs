//! Folds over classes for the products task: the sibling margin (`[policy] sibling_margin`) is
//! chosen on the listings of four folds' classes and measured on the fifth's, five times; the
//! held-out figures are the ones to quote.
//!
//! Folds: the branded classes sorted by name are dealt out in turn (the i-th to fold i mod 5),
//! and so are the unbranded (fruit and vegetable) classes, so that every fold holds listings
//! that must not be flagged. A brand's siblings sort next to each other, so they land in
//! different folds: a held-out class is scanned against a catalog holding its siblings, whose
//! own listings the margin was chosen on. The catalog holds every product in every fold; only
//! the choice of the margin sees the training folds alone. The scan runs once; each listing's
//! verdict is made again from its matches at every margin tried (`policy::decide`, as the scan
//! makes it).

use std::collections::{BTreeSet, HashMap};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::Config;
use crate::policy::{self, Authorisations, CandidateProduct, Match, Offer, Thresholds, Verdict};
use crate::scan::Report;

/// Folds of the products task.
pub(super) const FOLDS: usize = 5;

/// The sibling margins tried: 0 (no candidate sets) to 0.3 in steps of 0.005; 0.3 is the gap
/// within which the scan already takes two products of one brand for look-alike siblings
/// (`colour::SIBLING_GAP`).
fn margins() -> Vec<f64> {
    (0..=60).map(|i| f64::from(i) * 0.005).collect()
}

/// The share of flags and reviews that must be correct on the training folds; the margin chosen
/// is the smallest that reaches it there (else the one with the most correct, the smallest of
/// ties): sets as small as the evidence allows.
pub(super) const TARGET_CORRECT: f64 = 0.95;

/// Each class's fold: the branded and the unbranded classes, each sorted by name and dealt out
/// in turn.
pub(super) fn assign<'a>(
    branded: impl Iterator<Item = &'a str>,
    unbranded: impl Iterator<Item = &'a str>,
) -> HashMap<String, usize> {
    let mut folds = HashMap::new();
    for classes in [branded.collect::<BTreeSet<_>>(), unbranded.collect::<BTreeSet<_>>()] {
        for (i, c) in classes.into_iter().enumerate() {
            folds.insert(c.to_string(), i % FOLDS);
        }
    }
    folds
}

/// One listing as the folds see it.
pub(super) struct Case {
    /// Fold of the listing's class.
    pub fold: usize,
    /// The listing's class when branded (the right product).
    pub truth: Option<String>,
    /// Whether it is offered at a suspicious price.
    pub low: bool,
}

/// What a verdict says about a listing: flag, review or clear, and the products it names (the
/// candidate set, else the best match alone).
#[derive(Debug, Clone)]
pub(super) struct Said {
    verdict: Verdict,
    best: Option<String>,
    named: Vec<String>,
}

/// The brands' authorised sellers of the benchmark catalog.
pub(super) struct Sellers(pub HashMap<String, Vec<String>>);

impl Authorisations for Sellers {
    fn sellers(&self, brand: &str) -> Vec<String> {
        self.0.get(brand).cloned().unwrap_or_default()
    }
}

/// The verdict of `r` made again from its matches with sibling margin `margin`, as the scan makes
/// it (`scan::judge`; the benchmark's listings have no title and no allow-list).
fn said(r: &Report, thresholds: &Thresholds, config: &Config, auth: &Sellers) -> Said {
    let seller = r.seller.as_ref().map_or("", |s| s.seller_id.as_str());
    let offer = Offer { seller_id: seller, price: r.offer.as_ref().map(|(a, c)| (*a, c.as_str())) };
    let d = policy::decide(&offer, &r.matches, auth, thresholds, &config.currency);
    saying(d.verdict, &r.matches, &d.candidates)
}

/// What a verdict with `matches` and `candidates` says.
fn saying(verdict: Verdict, matches: &[Match], candidates: &[CandidateProduct]) -> Said {
    let best = matches.first().map(|m| m.product_id.clone());
    let named = if candidates.is_empty() {
        best.iter().cloned().collect()
    } else {
        candidates.iter().map(|c| c.product_id.clone()).collect()
    };
    Said { verdict, best, named }
}

/// What the scan's own verdict `r` says.
fn as_scanned(r: &Report) -> Said {
    saying(r.verdict, &r.matches, &r.candidates)
}

/// The figures of all the listings (`cases`) as scanned (`reports`, at the config's margin).
pub(super) fn pooled(cases: &[Case], reports: &[Report]) -> FoldFigures {
    let said: Vec<Said> = reports.iter().map(as_scanned).collect();
    figures(cases, &said, |_| true)
}

/// The verdicts of `reports` at every margin of `margins()`; fails when the scan's own verdict
/// (at the config's margin) is not what deciding again gives.
fn said_at_margins(
    reports: &[Report],
    config: &Config,
    thresholds: &Thresholds,
    auth: &Sellers,
) -> Result<Vec<(f64, Vec<Said>)>> {
    for r in reports {
        let again = said(r, thresholds, config, auth);
        let named: Vec<&str> = r.candidates.iter().map(|c| c.product_id.as_str()).collect();
        let same_set = again.named == named || (named.is_empty() && again.named.len() <= 1);
        if again.verdict != r.verdict || !same_set {
            bail!(
                "internal error: listing {} decided again from its matches is {} ({:?}), the scan \
                 said {} ({named:?})",
                r.listing_id.as_deref().unwrap_or("-"),
                again.verdict.as_str(),
                again.named,
                r.verdict.as_str()
            );
        }
    }
    Ok(margins()
        .into_iter()
        .map(|margin| {
            let t = Thresholds { sibling_margin: margin, ..thresholds.clone() };
            (margin, reports.iter().map(|r| said(r, &t, config, auth)).collect())
        })
        .collect())
}

/// The products task's figures over one set of listings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FoldFigures {
    /// Listings of branded products.
    pub branded_listings: usize,
    /// Listings of fruit and vegetables.
    pub unbranded_listings: usize,
    /// Share of branded listings whose best match is the right product.
    pub top1: f64,
    /// Share of branded listings whose best match is a product of the right brand.
    pub brand_top1: f64,
    /// Listings flagged or sent to review.
    pub flags_and_reviews: usize,
    /// Of the flags and reviews, the share on a branded listing that names its right product as
    /// the best match or holds it in its candidate set (`None` without flags or reviews).
    pub flags_and_reviews_correct: Option<f64>,
    /// Share of the branded listings at a suspicious price that were flagged.
    pub flag_recall: f64,
    /// Share of the unbranded listings flagged.
    pub unbranded_flagged: f64,
    /// Mean number of products a flag or review names (1 without a candidate set).
    pub mean_set_size: Option<f64>,
    /// Share of the flags and reviews that name a candidate set.
    pub with_set: Option<f64>,
}

/// The figures of the listings `keep` picks, from their verdicts `said`.
fn figures(cases: &[Case], said: &[Said], keep: impl Fn(&Case) -> bool) -> FoldFigures {
    let (mut nb, mut nu, mut top1, mut brand1, mut fr, mut right) = (0, 0, 0, 0, 0, 0);
    let (mut pos, mut tp, mut u_flag, mut sizes, mut sets) = (0, 0, 0, 0, 0);
    for (c, s) in cases.iter().zip(said).filter(|(c, _)| keep(c)) {
        let is_flag = s.verdict == Verdict::Flag;
        let is_fr = is_flag || s.verdict == Verdict::Review;
        if is_fr {
            fr += 1;
            sizes += s.named.len();
            sets += usize::from(s.named.len() > 1);
        }
        match &c.truth {
            Some(t) => {
                nb += 1;
                top1 += usize::from(s.best.as_ref() == Some(t));
                brand1 += usize::from(
                    s.best.as_deref().map(super::products::brand_of)
                        == Some(super::products::brand_of(t)),
                );
                right += usize::from(is_fr && s.named.contains(t));
                pos += usize::from(c.low);
                tp += usize::from(c.low && is_flag);
            }
            None => {
                nu += 1;
                u_flag += usize::from(is_flag);
            }
        }
    }
    let share = |a: usize, b: usize| a as f64 / b.max(1) as f64;
    FoldFigures {
        branded_listings: nb,
        unbranded_listings: nu,
        top1: share(top1, nb),
        brand_top1: share(brand1, nb),
        flags_and_reviews: fr,
        flags_and_reviews_correct: (fr > 0).then(|| share(right, fr)),
        flag_recall: share(tp, pos),
        unbranded_flagged: share(u_flag, nu),
        mean_set_size: (fr > 0).then(|| share(sizes, fr)),
        with_set: (fr > 0).then(|| share(sets, fr)),
    }
}

/// The margin chosen on the training listings: the smallest whose flags and reviews are
/// `TARGET_CORRECT` correct, else the one with the most correct (the smallest of ties).
fn choose(training: &[(f64, FoldFigures)]) -> (f64, FoldFigures) {
    let correct = |f: &FoldFigures| f.flags_and_reviews_correct.unwrap_or(0.0);
    if let Some(hit) = training.iter().find(|(_, f)| correct(f) >= TARGET_CORRECT) {
        return hit.clone();
    }
    let mut best = training[0].clone();
    for t in training {
        if correct(&t.1) > correct(&best.1) {
            best = t.clone();
        }
    }
    best
}

/// Mean, spread (sample standard deviation) and range of a figure over the folds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Mean over the folds.
    pub mean: f64,
    /// Sample standard deviation over the folds.
    pub sd: f64,
    /// Lowest fold.
    pub min: f64,
    /// Highest fold.
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Spread {
        let n = v.len().max(1) as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread { mean, sd: var.sqrt(), min, max }
    }
}

/// The held-out figures over the folds, each as mean and spread.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Right product first.
    pub top1: Spread,
    /// Right brand first.
    pub brand_top1: Spread,
    /// Flags and reviews naming the right product or a set holding it (folds without flags or
    /// reviews left out).
    pub flags_and_reviews_correct: Spread,
    /// Flag recall of the branded listings at a suspicious price.
    pub flag_recall: Spread,
    /// Unbranded listings flagged.
    pub unbranded_flagged: Spread,
    /// Products a flag or review names, on average.
    pub mean_set_size: Spread,
}

impl Summary {
    fn of(f: &[&FoldFigures]) -> Summary {
        let s = |g: &dyn Fn(&FoldFigures) -> Option<f64>| {
            Spread::of(&f.iter().filter_map(|x| g(x)).collect::<Vec<_>>())
        };
        Summary {
            top1: s(&|x| Some(x.top1)),
            brand_top1: s(&|x| Some(x.brand_top1)),
            flags_and_reviews_correct: s(&|x| x.flags_and_reviews_correct),
            flag_recall: s(&|x| Some(x.flag_recall)),
            unbranded_flagged: s(&|x| Some(x.unbranded_flagged)),
            mean_set_size: s(&|x| x.mean_set_size),
        }
    }
}

/// One fold: its classes, the margin chosen on the other folds and its held-out figures.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResult {
    /// The fold (0 to 4).
    pub fold: usize,
    /// Its branded classes.
    pub classes: Vec<String>,
    /// Its unbranded classes.
    pub unbranded_classes: Vec<String>,
    /// The sibling margin chosen on the other four folds.
    pub margin: f64,
    /// The other four folds' figures at that margin.
    pub training: FoldFigures,
    /// This fold's figures without candidate sets (margin 0).
    pub held_out_without_sets: FoldFigures,
    /// This fold's figures at the margin chosen on the others: the ones to quote.
    pub held_out: FoldFigures,
}

/// The products task by folds over classes.
#[derive(Debug, Clone, Serialize)]
pub struct FoldResults {
    /// How the folds and the margin were made, in words.
    pub method: String,
    /// Per fold.
    pub folds: Vec<FoldResult>,
    /// Held-out figures without candidate sets (margin 0), over the folds.
    pub held_out_without_sets: Summary,
    /// Held-out figures at each fold's chosen margin, over the folds: the headline.
    pub held_out: Summary,
    /// The margins chosen, over the folds.
    pub margin: Spread,
}

/// The products task's listings (`cases`, with their `reports`) measured by folds.
pub(super) fn by_folds(
    cases: &[Case],
    reports: &[Report],
    classes: &HashMap<String, usize>,
    config: &Config,
    thresholds: &Thresholds,
    auth: &Sellers,
) -> Result<FoldResults> {
    let at = said_at_margins(reports, config, thresholds, auth)?;
    let mut folds = Vec::new();
    for fold in 0..FOLDS {
        let training: Vec<(f64, FoldFigures)> =
            at.iter().map(|(m, s)| (*m, figures(cases, s, |c| c.fold != fold))).collect();
        let (margin, train) = choose(&training);
        let index = at.iter().position(|(m, _)| *m == margin).unwrap_or(0);
        let held_out = |i: usize| figures(cases, &at[i].1, |c| c.fold == fold);
        let names = |branded: bool| {
            let known = |c: &str| cases.iter().any(|k| k.truth.as_deref() == Some(c));
            let mut v: Vec<String> = classes
                .iter()
                .filter(|(c, f)| **f == fold && known(c) == branded)
                .map(|(c, _)| c.clone())
                .collect();
            v.sort();
            v
        };
        folds.push(FoldResult {
            fold,
            classes: names(true),
            unbranded_classes: names(false),
            margin,
            training: train,
            held_out_without_sets: held_out(0),
            held_out: held_out(index),
        });
    }
    let without: Vec<&FoldFigures> = folds.iter().map(|f| &f.held_out_without_sets).collect();
    let with: Vec<&FoldFigures> = folds.iter().map(|f| &f.held_out).collect();
    Ok(FoldResults {
        method: format!(
            "{FOLDS} folds over classes: branded and unbranded classes each sorted by name and \
             dealt out in turn (siblings of a brand land in different folds); the sibling margin \
             (0 to 0.3 by 0.005) chosen on the other four folds' listings as the smallest whose \
             flags and reviews are {:.0} % correct, else the smallest with the most correct; \
             the catalog holds every product",
            TARGET_CORRECT * 100.0
        ),
        held_out_without_sets: Summary::of(&without),
        held_out: Summary::of(&with),
        margin: Spread::of(&folds.iter().map(|f| f.margin).collect::<Vec<_>>()),
        folds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_dealt_out_in_turn_by_name() {
        let branded = ["B-2", "A-1", "A-2", "C-1", "B-1", "D-1"];
        let f = assign(branded.into_iter(), ["Pear", "Apple"].into_iter());
        let fold = |c: &str| f[c];
        assert_eq!(
            ["A-1", "A-2", "B-1", "B-2", "C-1", "D-1"].map(fold),
            [0, 1, 2, 3, 4, 0],
            "siblings A-1 and A-2 in different folds"
        );
        assert_eq!((fold("Apple"), fold("Pear")), (0, 1));
    }

    fn said(verdict: Verdict, named: &[&str]) -> Said {
        let named: Vec<String> = named.iter().map(|s| s.to_string()).collect();
        Said { verdict, best: named.first().cloned(), named }
    }

    fn case(fold: usize, truth: Option<&str>, low: bool) -> Case {
        Case { fold, truth: truth.map(str::to_string), low }
    }

    #[test]
    fn a_set_holding_the_right_product_counts_as_correct() {
        let cases = [
            case(0, Some("A-1"), true),
            case(0, Some("A-2"), true),
            case(0, Some("B-1"), false),
            case(0, None, true),
            case(1, Some("A-1"), true),
        ];
        let said = [
            said(Verdict::Flag, &["A-2", "A-1"]),
            said(Verdict::Flag, &["A-1"]),
            said(Verdict::Review, &["B-1"]),
            said(Verdict::Clear, &[]),
            said(Verdict::Clear, &["A-1"]),
        ];
        let f = figures(&cases, &said, |c| c.fold == 0);
        assert_eq!((f.branded_listings, f.unbranded_listings, f.flags_and_reviews), (3, 1, 3));
        assert_eq!(f.top1, 1.0 / 3.0, "only B-1 is named first");
        assert_eq!(f.brand_top1, 1.0);
        assert_eq!(f.flags_and_reviews_correct, Some(2.0 / 3.0), "A-2 alone is wrong");
        assert_eq!(f.flag_recall, 1.0);
        assert_eq!(f.mean_set_size, Some(4.0 / 3.0));
        assert_eq!(f.unbranded_flagged, 0.0);
    }

    #[test]
    fn the_smallest_margin_reaching_the_target_is_chosen() {
        let f = |c: f64| FoldFigures { flags_and_reviews_correct: Some(c), ..Default::default() };
        let grid = [(0.0, f(0.9)), (0.01, f(0.96)), (0.02, f(0.99))];
        assert_eq!(choose(&grid).0, 0.01);
        let short = [(0.0, f(0.8)), (0.01, f(0.9)), (0.02, f(0.9))];
        assert_eq!(choose(&short).0, 0.01, "short of the target: the most correct, smallest");
        let s = Spread::of(&[1.0, 3.0]);
        assert_eq!((s.mean, s.min, s.max), (2.0, 1.0, 3.0));
        assert!((s.sd - 2f64.sqrt()).abs() < 1e-12, "sample standard deviation: {s:?}");
    }
}
