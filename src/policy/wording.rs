//! Counterfeit wording in listing titles: phrases such as "replica", "1:1", "mirror quality",
//! "高仿" or "A货" that sellers of fakes write and sellers of genuine goods do not.
//!
//! A shipped, editable lexicon (`lexicon/counterfeit-wording.toml`, built into the binary;
//! `[wording] lexicon` replaces it) lists each phrase with a language and a weight. A phrase found
//! in a title counts its weight in full when it stands within `[wording] near_chars` characters of
//! the brand's name or a product title, less with distance, and least when the title names neither
//! (`far_factor`, `unanchored_factor`): "replica Acme watch" says more than "AAA batteries". The
//! policy turns the findings into risk and a reason (`policy::apply_wording`); wording never
//! changes a verdict on its own.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Counterfeit wording in listing titles (`[wording]`, see `wording`): phrases of a lexicon found
/// in a title raise the verdict's risk by up to `weight` of what is left to 1, never its verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WordingConfig {
    /// Whether titles are read for counterfeit wording.
    pub enabled: bool,
    /// A lexicon file to use instead of the built-in one (`lexicon/counterfeit-wording.toml`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexicon: Option<PathBuf>,
    /// The most the wording raises risk, as a share of what is left to 1 (0 turns it off).
    pub weight: f64,
    /// A phrase within this many characters of the brand's name or a product title counts fully.
    pub near_chars: usize,
    /// From this many characters on, a phrase counts `far_factor` of its weight.
    pub far_chars: usize,
    /// What a phrase far from the brand's name and product titles counts.
    pub far_factor: f64,
    /// What a phrase counts in a title that names no matched brand or product.
    pub unanchored_factor: f64,
}

impl Default for WordingConfig {
    fn default() -> Self {
        WordingConfig {
            enabled: true,
            lexicon: None,
            weight: 0.3,
            near_chars: 16,
            far_chars: 48,
            far_factor: 0.5,
            unanchored_factor: 0.35,
        }
    }
}

/// The lexicon shipped with knockoff.
const BUILTIN: &str = include_str!("../../lexicon/counterfeit-wording.toml");

/// Where the built-in lexicon comes from, as named in messages.
const BUILTIN_NAME: &str = "the built-in lexicon (lexicon/counterfeit-wording.toml)";

/// A lexicon file: a list of `[[term]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    #[serde(rename = "term", default)]
    terms: Vec<TermSpec>,
}

/// One `[[term]]` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TermSpec {
    text: String,
    lang: String,
    weight: f64,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

/// A phrase of the lexicon, normalised for matching.
#[derive(Debug, Clone)]
struct Term {
    /// The phrase as written in the lexicon.
    text: String,
    /// Its normalised characters.
    chars: Vec<char>,
    lang: String,
    weight: f64,
}

/// The phrases knockoff looks for in titles.
#[derive(Debug, Clone)]
pub struct Lexicon {
    terms: Vec<Term>,
}

/// A phrase of the lexicon found in a title, and what it contributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WordingHit {
    /// The phrase, as the lexicon writes it.
    pub term: String,
    /// Its language.
    pub lang: String,
    /// Its weight in the lexicon.
    pub weight: f64,
    /// The brand name or product title it stands nearest to, when the title names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near: Option<String>,
    /// Characters between the phrase and `near` (0 when adjacent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<usize>,
    /// `weight` × the closeness factor: what the phrase adds to the wording score.
    pub contribution: f64,
}

/// A span of characters in a normalised title.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// Characters between two spans (0 when they touch or overlap).
    fn gap(self, other: Span) -> usize {
        if self.end <= other.start {
            other.start - self.end
        } else {
            self.start.saturating_sub(other.end)
        }
    }
}

impl Lexicon {
    /// The lexicon shipped with knockoff.
    pub fn builtin() -> Result<Lexicon> {
        Lexicon::from_toml(BUILTIN, BUILTIN_NAME)
    }

    /// The configured lexicon: the file `[wording] lexicon` names, else the built-in one.
    pub fn load(path: Option<&Path>) -> Result<Lexicon> {
        match path {
            None => Lexicon::builtin(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read the wording lexicon {}", p.display()))?;
                Lexicon::from_toml(&text, &p.display().to_string())
            }
        }
    }

    /// Parses a lexicon; `origin` names it in errors, which also name the bad term.
    pub fn from_toml(text: &str, origin: &str) -> Result<Lexicon> {
        let file: LexiconFile =
            toml::from_str(text).with_context(|| format!("invalid wording lexicon {origin}"))?;
        let mut terms = Vec::with_capacity(file.terms.len());
        for (i, spec) in file.terms.into_iter().enumerate() {
            let chars = normalise(&spec.text);
            if chars.is_empty() {
                bail!("invalid wording lexicon {origin}: term {} has empty text", i + 1);
            }
            if !(0.0..=1.0).contains(&spec.weight) {
                bail!("invalid wording lexicon {origin}: term {} ({:?}) has weight {}, not between 0 and 1", i + 1, spec.text, spec.weight);
            }
            terms.push(Term { text: spec.text, chars, lang: spec.lang, weight: spec.weight });
        }
        Ok(Lexicon { terms })
    }

    /// The lexicon's phrases found in `title`, each once (its occurrence nearest an anchor),
    /// weighted by their closeness to the nearest of `anchors` (brand names, product titles) that
    /// the title contains; strongest first.
    pub fn find(&self, title: &str, anchors: &[&str], config: &WordingConfig) -> Vec<WordingHit> {
        let text = normalise(title);
        let anchor_spans: Vec<(&str, Vec<Span>)> =
            anchors.iter().map(|a| (*a, occurrences(&text, &normalise(a)))).collect();
        let mut hits: Vec<WordingHit> = self
            .terms
            .iter()
            .filter_map(|term| {
                let found = occurrences(&text, &term.chars);
                let nearest = found
                    .iter()
                    .filter_map(|s| nearest_anchor(*s, &anchor_spans))
                    .min_by_key(|(_, d)| *d);
                (!found.is_empty()).then(|| hit(term, nearest, config))
            })
            .collect();
        hits.sort_by(|a, b| {
            b.contribution.total_cmp(&a.contribution).then_with(|| a.term.cmp(&b.term))
        });
        hits
    }
}

/// The hit of `term`, nearest an anchor at `nearest` (label, distance) if any.
fn hit(term: &Term, nearest: Option<(&str, usize)>, config: &WordingConfig) -> WordingHit {
    let factor = match nearest {
        None => config.unanchored_factor,
        Some((_, d)) => closeness(d, config),
    };
    WordingHit {
        term: term.text.clone(),
        lang: term.lang.clone(),
        weight: term.weight,
        near: nearest.map(|(a, _)| a.to_string()),
        distance: nearest.map(|(_, d)| d),
        contribution: round3(term.weight * factor),
    }
}

/// 1 within `near_chars`, falling linearly to `far_factor` at `far_chars`, `far_factor` beyond.
fn closeness(distance: usize, config: &WordingConfig) -> f64 {
    let (near, far) = (config.near_chars as f64, config.far_chars as f64);
    let d = distance as f64;
    if d <= near {
        1.0
    } else if d >= far {
        config.far_factor
    } else {
        1.0 - (1.0 - config.far_factor) * (d - near) / (far - near).max(1.0)
    }
}

/// The anchor nearest `span`, with its distance.
fn nearest_anchor<'a>(span: Span, anchors: &[(&'a str, Vec<Span>)]) -> Option<(&'a str, usize)> {
    anchors
        .iter()
        .flat_map(|(label, spans)| spans.iter().map(move |s| (*label, span.gap(*s))))
        .min_by_key(|(_, d)| *d)
}

/// The wording score of a title's hits: 1 − Π(1 − contribution), between 0 and 1.
pub fn score(hits: &[WordingHit]) -> f64 {
    round3(1.0 - hits.iter().fold(1.0, |rest, h| rest * (1.0 - h.contribution.clamp(0.0, 1.0))))
}

/// NFKC, lower case, each run of white space one space, trimmed.
fn normalise(text: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            if out.last().is_some_and(|l| *l != ' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    while out.last() == Some(&' ') {
        out.pop();
    }
    out
}

/// Whether `c` belongs to a word that white space delimits: a letter or digit of a script that
/// puts spaces between words (not Chinese, Japanese kana or Korean, whose phrases match anywhere).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() && !is_cjk(c)
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK Extension A
        | 0x4E00..=0x9FFF    // CJK Unified Ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F) // CJK Extensions B–F, Compatibility Supplement
}

/// Where `pattern` occurs in `text`, as a whole word at each end that is a word character.
fn occurrences(text: &[char], pattern: &[char]) -> Vec<Span> {
    let (Some(first), Some(last)) = (pattern.first(), pattern.last()) else { return Vec::new() };
    if pattern.len() > text.len() {
        return Vec::new();
    }
    (0..=text.len() - pattern.len())
        .filter(|&i| text[i..i + pattern.len()] == *pattern)
        .filter(|&i| !is_word_char(*first) || i == 0 || !is_word_char(text[i - 1]))
        .filter(|&i| {
            let end = i + pattern.len();
            !is_word_char(*last) || end == text.len() || !is_word_char(text[end])
        })
        .map(|i| Span { start: i, end: i + pattern.len() })
        .collect()
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon() -> Lexicon {
        Lexicon::builtin().expect("the built-in lexicon parses")
    }

    fn terms(hits: &[WordingHit]) -> Vec<&str> {
        hits.iter().map(|h| h.term.as_str()).collect()
    }

    #[test]
    fn the_builtin_lexicon_has_phrases_in_several_languages() {
        let l = lexicon();
        let mut langs: Vec<&str> = l.terms.iter().map(|t| t.lang.as_str()).collect();
        langs.sort();
        langs.dedup();
        for lang in ["en", "zh", "ja", "ko", "es", "fr", "de", "ru"] {
            assert!(langs.contains(&lang), "no {lang} phrase in {langs:?}");
        }
    }

    #[test]
    fn english_phrases_next_to_the_brand_count_in_full() {
        let hits = lexicon().find(
            "Acme Chronograph 42 REPLICA mirror   quality",
            &["Acme", "Acme Chronograph 42"],
            &WordingConfig::default(),
        );
        assert_eq!(terms(&hits), ["mirror quality", "replica"]);
        assert!(hits.iter().all(|h| h.contribution == h.weight), "{hits:?}");
        assert_eq!(hits[1].near.as_deref(), Some("Acme Chronograph 42"));
        assert_eq!(hits[1].distance, Some(1));
    }

    #[test]
    fn chinese_phrases_match_without_spaces() {
        let hits = lexicon().find("Acme手表高仿A货 包邮", &["Acme"], &WordingConfig::default());
        assert_eq!(terms(&hits), ["a货", "高仿"]);
        assert!(
            hits.iter().all(|h| h.near.as_deref() == Some("Acme") && h.contribution == 1.0),
            "{hits:?}"
        );
        let hits = lexicon().find("复刻版 Acme 潜水表 原单", &["Acme"], &WordingConfig::default());
        assert_eq!(terms(&hits), ["复刻", "原单"]);
    }

    #[test]
    fn full_width_and_mixed_case_are_normalised() {
        let hits = lexicon().find("ＡＡＡ Acme watch", &["acme"], &WordingConfig::default());
        assert_eq!(terms(&hits), ["aaa"]);
    }

    #[test]
    fn latin_phrases_match_whole_words_only() {
        let l = lexicon();
        let c = WordingConfig::default();
        assert!(l.find("Replicated Acme diver, AAAA grade", &["Acme"], &c).is_empty());
        assert!(l.find("Acme 11:10 chronograph", &["Acme"], &c).is_empty());
        assert_eq!(terms(&l.find("Acme 1:1 chronograph", &["Acme"], &c)), ["1:1"]);
    }

    #[test]
    fn a_phrase_far_from_the_brand_or_without_it_counts_less() {
        let c = WordingConfig::default();
        let l = lexicon();
        let near = l.find("replica Acme", &["Acme"], &c);
        let far = l.find(
            "Acme chronograph, steel case, sapphire glass, box and papers, a replica",
            &["Acme"],
            &c,
        );
        let none = l.find("replica of a vintage lamp", &["Acme"], &c);
        assert_eq!(near[0].contribution, 1.0);
        assert!(
            far[0].contribution < near[0].contribution && far[0].contribution >= c.far_factor,
            "{far:?}"
        );
        assert_eq!(none[0].contribution, c.unanchored_factor);
        assert_eq!(none[0].near, None);
    }

    #[test]
    fn the_score_combines_phrases_without_exceeding_one() {
        let hits = lexicon().find(
            "Acme replica 1:1 mirror quality 高仿",
            &["Acme"],
            &WordingConfig::default(),
        );
        assert_eq!(score(&hits), 1.0);
        assert_eq!(score(&[]), 0.0);
        let one = lexicon().find("Acme dupe", &["Acme"], &WordingConfig::default());
        assert_eq!(score(&one), 0.8);
    }

    #[test]
    fn bad_lexicons_are_refused_naming_the_term() {
        let e =
            Lexicon::from_toml("[[term]]\ntext = \"x\"\nlang = \"en\"\nweight = 2.0\n", "my.toml")
                .unwrap_err();
        assert!(format!("{e:#}").contains("my.toml: term 1 (\"x\") has weight 2"), "{e:#}");
        let e =
            Lexicon::from_toml("[[term]]\ntext = \"  \"\nlang = \"en\"\nweight = 1\n", "my.toml")
                .unwrap_err();
        assert!(format!("{e:#}").contains("term 1 has empty text"), "{e:#}");
        let e = Lexicon::from_toml(
            "[[term]]\ntext = \"x\"\nlang = \"en\"\nweight = 1\ncolour = 2\n",
            "my.toml",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("my.toml"), "{e:#}");
    }

    #[test]
    fn an_empty_title_or_lexicon_finds_nothing() {
        let c = WordingConfig::default();
        assert!(lexicon().find("", &["Acme"], &c).is_empty());
        let empty = Lexicon::from_toml("", "empty.toml").expect("an empty lexicon is valid");
        assert!(empty.terms.is_empty() && empty.find("replica Acme", &["Acme"], &c).is_empty());
    }
}
