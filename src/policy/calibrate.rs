//! Calibration on a user's own labelled outcomes: precision and recall of the match score at
//! candidate thresholds, and the thresholds that reach a target precision.
//!
//! A labelled outcome is a listing known to be `counterfeit` or `genuine`, with its score: the best
//! similarity from a verdict (`scan` output) or from running its image through the scanner. The
//! decisions reviewers took through `knockoff serve` are labels too (`server::ledger::labels`):
//! `in_use` tells, per brand, how precise the thresholds in force are on them.

use serde::Serialize;

/// One labelled outcome: the listing's best similarity and whether it was counterfeit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Best similarity of the listing's photos to the catalog.
    pub score: f64,
    /// True when the listing was a counterfeit.
    pub counterfeit: bool,
}

/// Precision and recall of "score ≥ threshold means counterfeit".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// The threshold.
    pub threshold: f64,
    /// Share of listings at or above the threshold that are counterfeit (1 when none are).
    pub precision: f64,
    /// Share of counterfeit listings at or above the threshold.
    pub recall: f64,
    /// Listings at or above the threshold.
    pub selected: usize,
}

/// Precision and recall at `threshold`.
pub fn point(outcomes: &[Outcome], threshold: f64) -> Point {
    let positives = outcomes.iter().filter(|o| o.counterfeit).count();
    let selected: Vec<&Outcome> = outcomes.iter().filter(|o| o.score >= threshold).collect();
    let tp = selected.iter().filter(|o| o.counterfeit).count();
    Point {
        threshold,
        precision: if selected.is_empty() { 1.0 } else { tp as f64 / selected.len() as f64 },
        recall: if positives == 0 { 0.0 } else { tp as f64 / positives as f64 },
        selected: selected.len(),
    }
}

/// The lowest threshold (highest recall) whose precision reaches `target`, with its point; `None`
/// when no threshold that selects a counterfeit reaches it. Thresholds sit halfway between adjacent
/// observed scores, so that they do not hinge on one exact value.
pub fn threshold_for_precision(outcomes: &[Outcome], target: f64) -> Option<Point> {
    let mut scores: Vec<f64> = outcomes.iter().map(|o| o.score).filter(|s| s.is_finite()).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    scores.dedup();
    let mut best = None;
    for (i, &s) in scores.iter().enumerate() {
        let p = point(outcomes, s);
        if p.recall > 0.0 && p.precision >= target {
            // halfway down to the next lower score keeps the same selection
            let t = scores.get(i + 1).map(|next| (s + next) / 2.0).unwrap_or(s);
            best = Some(Point { threshold: t, ..p });
        }
    }
    best
}

/// Points at the thresholds 0.20, 0.25, …, 0.95 for the report table.
pub fn curve(outcomes: &[Outcome]) -> Vec<Point> {
    (4..=19).map(|i| point(outcomes, i as f64 * 0.05)).collect()
}

/// Precision and recall of one group of outcomes at the thresholds in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InUse {
    /// The group (a brand, or `all`).
    pub group: String,
    /// Labelled outcomes in it.
    pub outcomes: usize,
    /// Of them counterfeit.
    pub counterfeit: usize,
    /// At the match (flag) threshold.
    pub matched: Point,
    /// At the review threshold.
    pub review: Point,
}

/// Precision and recall of `outcomes` at the thresholds in force, for the group named `group`.
pub fn in_use(
    group: &str,
    outcomes: &[Outcome],
    match_threshold: f64,
    review_threshold: f64,
) -> InUse {
    InUse {
        group: group.to_string(),
        outcomes: outcomes.len(),
        counterfeit: outcomes.iter().filter(|o| o.counterfeit).count(),
        matched: point(outcomes, match_threshold),
        review: point(outcomes, review_threshold),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(score: f64, counterfeit: bool) -> Outcome {
        Outcome { score, counterfeit }
    }

    #[test]
    fn precision_and_recall() {
        let v = [o(0.9, true), o(0.8, true), o(0.7, false), o(0.6, true), o(0.2, false)];
        let p = point(&v, 0.65);
        assert_eq!(p.selected, 3);
        assert!((p.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((p.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(point(&v, 0.95).precision, 1.0);
    }

    #[test]
    fn lowest_threshold_that_reaches_the_target() {
        let v = [o(0.9, true), o(0.8, true), o(0.7, false), o(0.6, true), o(0.2, false)];
        // 100 %: only the two above the genuine 0.7 -> halfway between 0.8 and 0.7
        let p = threshold_for_precision(&v, 1.0).unwrap();
        assert!((p.threshold - 0.75).abs() < 1e-12);
        assert!((p.recall - 2.0 / 3.0).abs() < 1e-12);
        // 75 %: 0.6 included (3 of 4) -> halfway between 0.6 and 0.2
        let p = threshold_for_precision(&v, 0.75).unwrap();
        assert!((p.threshold - 0.4).abs() < 1e-12);
        assert_eq!(p.recall, 1.0);
        assert!(threshold_for_precision(&[o(0.9, false)], 0.5).is_none());
    }

    #[test]
    fn precision_at_the_thresholds_in_force() {
        let v = [o(0.9, true), o(0.8, false), o(0.7, true), o(0.5, false)];
        let u = in_use("Acme", &v, 0.75, 0.6);
        assert_eq!((u.outcomes, u.counterfeit), (4, 2));
        assert_eq!((u.matched.selected, u.matched.precision, u.matched.recall), (2, 0.5, 0.5));
        assert!((u.review.precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(u.review.recall, 1.0);
    }
}
