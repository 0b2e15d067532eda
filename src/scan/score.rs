//! A candidate product's score: its parts, and the total the thresholds apply to, computed here
//! and nowhere else.
//!
//! The total is built in the order the evidence comes in, each step rounded to four decimals as
//! the verdict shows it: the best photo pair's cosine less its background term, plus `support`
//! (`ranked`); plus `verification` (`verified`); then, when the part of the listing photo where
//! the reference photo lies scores better than the best pair (`located`), that score stands for
//! the best pair's.

use crate::policy::Match;
use crate::vision::colour::{SIBLING_GAP, SIBLING_MARGIN};

/// A candidate product's score and its parts, as computed (the verdict shows them rounded,
/// `Score::show`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Score {
    /// The raw cosine similarity of the best photo pair.
    cosine: f32,
    /// The best pair's background term, with score normalisation (`Judge::background_terms`).
    background: Option<f32>,
    /// The best pair's score: its cosine less its background term.
    pair: f32,
    /// Evidence from the product's other reference photos (`Score::support_of`), when positive.
    support: Option<f32>,
    /// What geometric verification adds (`VerifyConfig::adjustment`), when not zero.
    verification: Option<f32>,
    /// The score where the reference photo lies in the listing photo (`Judge::locate`), when it
    /// beats the best pair's.
    located: Option<f32>,
    /// The share of the listing photo's colour the product's reference photos have, when the
    /// colour decided between look-alike siblings (`Judge::prefer_by_colour`).
    colour: Option<f32>,
}

impl Default for Score {
    /// No photo pair yet: any pair beats it.
    fn default() -> Score {
        Score {
            cosine: f32::MIN,
            background: None,
            pair: f32::MIN,
            support: None,
            verification: None,
            located: None,
            colour: None,
        }
    }
}

impl Score {
    /// A photo pair's score: its cosine less the listing photo's background term.
    pub fn of_pair(cosine: f32, background: Option<f32>) -> f32 {
        cosine - background.unwrap_or(0.0)
    }

    /// Takes the photo pair when it scores higher than the best so far; says whether it did.
    pub fn offer_pair(&mut self, cosine: f32, background: Option<f32>) -> bool {
        let score = Score::of_pair(cosine, background);
        if score > self.pair {
            self.pair = score;
            self.cosine = cosine;
            self.background = background;
            return true;
        }
        false
    }

    /// Support from the product's other reference photos, given the best score any listing photo
    /// got against each of them: `weight` × (the second best + half the third best, each at
    /// least 0).
    pub fn support_of(weight: f32, mut scores: Vec<f32>) -> f32 {
        scores.sort_by(|a, b| b.total_cmp(a));
        weight
            * (scores.get(1).map_or(0.0, |s| s.max(0.0))
                + 0.5 * scores.get(2).map_or(0.0, |s| s.max(0.0)))
    }

    /// Adds `support` (`support_of`) when positive.
    pub fn add_support(&mut self, support: f32) {
        if support > 0.0 {
            self.support = Some(support);
        }
    }

    /// Adds what verification found (`VerifyConfig::adjustment`), when not zero.
    pub fn add_verification(&mut self, adjustment: f32) {
        if adjustment != 0.0 {
            self.verification = Some(adjustment);
        }
    }

    /// Takes the score of the part of the listing photo where the reference photo lies, when it
    /// beats the best pair's.
    pub fn offer_located(&mut self, located: f32) {
        if located > self.best_pair() {
            self.located = Some(located);
        }
    }

    /// Records the colour share that decided between look-alike siblings.
    pub fn set_colour(&mut self, share: f32) {
        self.colour = Some(share);
    }

    /// The best pair's score plus support: how candidates rank before verification.
    fn ranked(&self) -> f32 {
        let mut s = self.pair;
        if let Some(support) = self.support {
            s += support;
        }
        round4(s)
    }

    /// `ranked` plus verification.
    fn verified(&self) -> f32 {
        match self.verification {
            Some(v) => round4(self.ranked() + v),
            None => self.ranked(),
        }
    }

    /// The best pair's part of `verified`, as the verdict's rounded parts give it.
    fn best_pair(&self) -> f32 {
        self.verified()
            - self.verification.map(round4).unwrap_or(0.0)
            - self.support.map(round4).unwrap_or(0.0)
    }

    /// The score, which the thresholds apply to.
    pub fn total(&self) -> f32 {
        match self.located {
            Some(located) => round4(self.verified() + located - self.best_pair()),
            None => self.verified(),
        }
    }

    /// Whether two candidates' scores are too far apart for colour to decide between them as
    /// look-alike siblings (`colour::SIBLING_GAP`).
    pub fn siblings_apart(&self, second: &Score) -> bool {
        self.total() - second.total() >= SIBLING_GAP
    }

    /// Whether the second of two look-alike siblings goes first, given the shares of the listing
    /// photo's colour each one's reference photos have (`colour::SIBLING_MARGIN`).
    pub fn colour_prefers_second(first: f32, second: f32) -> bool {
        second - first > SIBLING_MARGIN
    }

    /// Writes the score and its parts into a verdict's match, rounded.
    pub fn show(&self, m: &mut Match) {
        m.score = self.total();
        m.cosine = round4(self.cosine);
        m.background = self.background.map(round4);
        m.support = self.support.map(round4);
        m.verification = self.verification.map(round4);
        m.located = self.located.map(round4);
        m.colour = self.colour.map(round4);
    }
}

/// `x` rounded to four decimals, as verdicts show scores.
pub(super) fn round4(x: f32) -> f32 {
    (x * 10000.0).round() / 10000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_adds_the_parts_in_order_and_located_stands_for_the_best_pair() {
        let mut s = Score::default();
        assert!(s.offer_pair(0.7, Some(0.1)));
        assert!(!s.offer_pair(0.55, None), "a pair scoring less is not taken");
        assert_eq!(s.total(), 0.6);
        s.add_support(Score::support_of(0.1, vec![0.6, 0.5, 0.4]));
        assert_eq!(s.total(), round4(0.6 + 0.1 * (0.5 + 0.5 * 0.4)));
        s.add_verification(0.0);
        assert_eq!(s.verification, None, "no adjustment: no part");
        s.add_verification(0.25);
        let verified = s.total();
        assert_eq!(verified, round4(round4(0.6 + 0.07) + 0.25));
        s.offer_located(0.5);
        assert_eq!(s.located, None, "below the best pair: not taken");
        s.offer_located(0.8);
        assert_eq!(s.total(), round4(verified + 0.8 - s.best_pair()));
        assert!((s.total() - (0.8 + 0.07 + 0.25)).abs() < 1e-4, "{s:?}");
    }
}
