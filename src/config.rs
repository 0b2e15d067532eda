//! Settings: thresholds of the flag policy, currency rates, input limits, index and model choices.
//!
//! Loaded from a TOML file (`--config FILE`, else `DATA/config.toml` when it exists); every field
//! has a documented default, so an empty file is a valid configuration.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::index::IndexConfig;
use crate::index::HNSW_M_RANGE;
pub use crate::input::limits::LimitsConfig;
pub use crate::model::ModelConfig;
use crate::model::RegionQueries;
pub use crate::policy::currency::CurrencyConfig;
pub use crate::policy::wording::WordingConfig;
pub use crate::policy::PolicyConfig;

/// The whole configuration, as read from TOML.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The flag policy's thresholds.
    pub policy: PolicyConfig,
    /// Exchange rates used to compare prices in different currencies.
    pub currency: CurrencyConfig,
    /// Limits on what the tool accepts from users.
    pub limits: LimitsConfig,
    /// Which model embeds images and where ONNX Runtime is.
    pub model: ModelConfig,
    /// Nearest-neighbour search settings.
    pub index: IndexConfig,
    /// How listing photos are searched.
    pub scan: ScanConfig,
    /// Geometric verification of the best candidates with local features.
    pub verify: VerifyConfig,
    /// Seller networks: recorded scans and how sellers are linked (`[network]`, see `network`).
    pub network: NetworkConfig,
    /// `knockoff serve`: outbound address policy, request limits, queue (docs/server.md).
    pub server: ServerConfig,
    /// Counterfeit wording in listing titles.
    pub wording: WordingConfig,
}

/// Seller networks (`[network]`, docs/networks.md): what scans record and which shared values link
/// sellers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Whether `knockoff scan` records each judged listing in DATA/records.sqlite (`--no-record`
    /// turns it off for one scan).
    pub record: bool,
    /// Country assumed for phone numbers written without a country code (ISO 3166 alpha-2).
    pub default_country: String,
    /// A value shared by more sellers than this is platform-wide (a hotline, a stock photo, a
    /// logistics hub) and links nobody. The default, 18, is the middle of the values (13–24) that
    /// met the benchmark's targets on one draw (BENCHMARKS.md, "Seller networks").
    pub max_sharing: usize,
    /// Values that never link sellers, as `kind:value` (e.g. `phone:+86 400 800 8888`); they are
    /// normalised like the listings' values.
    pub never_link: Vec<String>,
    /// Two listing photos are the same photo when their perceptual hashes differ by at most this
    /// many bits (at most 4, the hash index's reach) ...
    pub photo_hash_bits: u32,
    /// ... and, when both have embeddings, their cosine similarity is at least this.
    pub photo_min_similarity: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            record: true,
            default_country: "US".into(),
            max_sharing: 18,
            never_link: Vec::new(),
            photo_hash_bits: 4,
            photo_min_similarity: 0.8,
        }
    }
}

/// Settings of `knockoff serve` (`[server]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Hosts (names or IP literals) photos may be downloaded from even when they resolve to a
    /// loopback, private, link-local or multicast address; all others must be public.
    pub allow_hosts: Vec<String>,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest multipart upload (photos and fields), in bytes.
    pub max_upload_bytes: usize,
    /// Requests that may wait for the model (scans, queries, product changes) before new ones
    /// are refused with 503.
    pub queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allow_hosts: Vec::new(),
            max_body_bytes: 8 * 1024 * 1024,
            max_upload_bytes: 64 * 1024 * 1024,
            queue: 16,
        }
    }
}

/// Geometric verification (`[verify]`, or `scan --verify`): the best candidate products of each
/// listing are checked with local features (see `verify`). The product whose photo shares the most
/// geometrically consistent points with the listing's photo (its evidence: inliers in the centre
/// of the reference photo, the others at a quarter, see `verify::Verified::evidence`) gains up to
/// `weight`; a candidate with far less distinct evidence than the most (`dominance`; points the
/// brand's other products share count a quarter there, see `verify::Shared`) is explained away and
/// loses as much. Defaults measured with `knockoff bench accuracy` (docs/benchmarks-notebook.md,
/// "Geometric verification").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// Whether scans and queries verify their candidates.
    pub enabled: bool,
    /// How many of a listing's best products are verified.
    pub candidates: usize,
    /// How many reference photos of each candidate are verified: those most similar to the
    /// listing's photos.
    pub references: usize,
    /// Products scoring below this are not verified (clearly unrelated).
    pub min_score: f64,
    /// Evidence (inliers, those off the reference photo's centre counted a quarter) at which
    /// verification starts to count (unrelated photos share a few by chance); pairs of photos with
    /// fewer descriptor matches are not fitted at all.
    pub min_inliers: usize,
    /// Evidence at which it counts fully.
    pub full_inliers: usize,
    /// The most verification adds to, or takes from, a score.
    pub weight: f64,
    /// A candidate is explained away when the best verified candidate has more than this many
    /// times its evidence.
    pub dominance: f64,
    /// Photos are shrunk to this long side before their features are extracted.
    pub max_side: u32,
    /// Smaller photos are enlarged to this long side first.
    pub min_side: u32,
    /// Most local features kept per photo.
    pub max_features: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        VerifyConfig {
            enabled: true,
            candidates: 8,
            references: 6,
            min_score: 0.15,
            min_inliers: 8,
            full_inliers: 30,
            weight: 0.5,
            dominance: 1.25,
            max_side: 512,
            min_side: 384,
            max_features: 1000,
        }
    }
}

impl VerifyConfig {
    /// Feature extraction settings.
    pub(crate) fn params(&self) -> crate::vision::verify::orb::Params {
        crate::vision::verify::orb::Params {
            max_side: self.max_side,
            min_side: self.min_side,
            max_features: self.max_features,
        }
    }

    /// How far `evidence` counts: 0 below `min_inliers`, rising linearly to 1 at `full_inliers`.
    fn strength(&self, evidence: f64) -> f64 {
        let min = self.min_inliers as f64;
        if evidence < min {
            return 0.0;
        }
        let span = (self.full_inliers as f64 - min).max(1.0);
        ((evidence - min) / span).min(1.0)
    }

    /// What verification adds to a candidate's score, given its evidence and distinct evidence
    /// (`verify::Verified`) and the most of each among the listing's candidates: `weight` × its
    /// strength, or minus `weight` × the strongest one's strength when another candidate has more
    /// than `dominance` times its distinct evidence. Sibling products share their brand's logo and
    /// layout, so which of them a photo shows is decided on the points they do not share.
    pub fn adjustment(
        &self,
        evidence: f64,
        distinct: f64,
        best_evidence: f64,
        best_distinct: f64,
    ) -> f64 {
        if distinct < best_distinct && distinct * self.dominance < best_distinct {
            -self.weight * self.strength(best_evidence)
        } else {
            self.weight * self.strength(evidence)
        }
    }
}

/// How listing photos are searched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// When to also search the four quadrants, the centre half and the inset (`inset::find`) of a
    /// listing photo, so collages, products small in the frame and photos pasted into others are
    /// found (5 or 6 smaller inferences for each such photo: 3.8x or 4.4x the inference of the
    /// whole photo alone at the shipped models' region size). Unset: the
    /// model's default (`Manifest::region_queries`), `all` for `sscd_distilled`, which then scans as
    /// fast as `sscd` without regions, and `off` for `sscd` (docs/benchmarks-notebook.md,
    /// "Region queries").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_queries: Option<RegionQueries>,
    /// With `region_queries = "uncertain"`: a photo's regions are searched when its best score is
    /// at least this and below the match threshold.
    pub region_min_score: f64,
    /// With `region_queries = "all"`: a photo whose whole-photo best score is at least this, with
    /// every other product at least `region_skip_margin` lower, is already decided (a copy, found
    /// whole) and its regions are not searched. Above 1: every photo's regions are searched.
    pub region_skip_score: f64,
    /// See `region_skip_score`.
    pub region_skip_margin: f64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            region_queries: None,
            region_min_score: 0.15,
            region_skip_score: 0.75,
            region_skip_margin: 0.25,
        }
    }
}

impl Config {
    /// Reads a config file; a missing file is an error, unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        // a relative lexicon path is relative to the config file, as a user reads it
        if let (Some(lexicon), Some(dir)) = (&config.wording.lexicon, path.parent()) {
            if lexicon.is_relative() {
                config.wording.lexicon = Some(dir.join(lexicon));
            }
        }
        config.validate().with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    /// Loads `explicit` if given, else `DATA/config.toml` if it exists, else the defaults.
    pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Config> {
        if let Some(path) = explicit {
            return Config::from_file(path);
        }
        let in_data = data_dir.join("config.toml");
        if in_data.is_file() {
            return Config::from_file(&in_data);
        }
        Ok(Config::default())
    }

    fn validate_wording(&self) -> Result<()> {
        let w = &self.wording;
        for (name, v) in [
            ("wording.weight", w.weight),
            ("wording.far_factor", w.far_factor),
            ("wording.unanchored_factor", w.unanchored_factor),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} must be between 0 and 1, got {v}");
            }
        }
        if w.far_chars <= w.near_chars {
            bail!(
                "wording.far_chars ({}) must exceed wording.near_chars ({})",
                w.far_chars,
                w.near_chars
            );
        }
        Ok(())
    }

    /// Checks values that would make the tool misbehave.
    pub fn validate(&self) -> Result<()> {
        self.validate_wording()?;
        self.validate_thresholds_and_limits()?;
        self.validate_verify()?;
        self.validate_network_and_scan()?;
        self.validate_scores_and_rates()?;
        self.validate_index_and_model()
    }

    /// The policy's thresholds, price ratios, `top_k` and background weight, and the time to
    /// fetch a listing's photos.
    fn validate_thresholds_and_limits(&self) -> Result<()> {
        let p = &self.policy;
        for (name, v) in [
            ("policy.match_threshold", p.match_threshold),
            ("policy.review_threshold", p.review_threshold),
        ] {
            if let Some(v) = v.filter(|v| !(-1.0..=1.0).contains(v)) {
                bail!("{name} must be between -1 and 1 (cosine similarity), got {v}");
            }
        }
        for (name, v) in [
            ("policy.flag_price_ratio", p.flag_price_ratio),
            ("policy.review_price_ratio", p.review_price_ratio),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("{name} must be a non-negative number, got {v}");
            }
        }
        if p.top_k == 0 {
            bail!("policy.top_k must be at least 1");
        }
        if !(p.sibling_margin.is_finite() && (0.0..=0.5).contains(&p.sibling_margin)) {
            bail!("policy.sibling_margin must be between 0 and 0.5, got {}", p.sibling_margin);
        }
        if self.limits.listing_fetch_secs == 0 {
            bail!("limits.listing_fetch_secs must be at least 1 (seconds to fetch one listing's photos)");
        }
        if !(p.background_beta.is_finite() && (0.0..=2.0).contains(&p.background_beta)) {
            bail!("policy.background_beta must be between 0 and 2, got {}", p.background_beta);
        }
        Ok(())
    }

    /// The `[verify]` section.
    fn validate_verify(&self) -> Result<()> {
        let v = &self.verify;
        if !(v.weight.is_finite() && (0.0..=1.0).contains(&v.weight)) {
            bail!("verify.weight must be between 0 and 1, got {}", v.weight);
        }
        if v.full_inliers <= v.min_inliers || v.min_inliers < 4 {
            bail!("verify.min_inliers must be at least 4 and below verify.full_inliers, got {} and {}", v.min_inliers, v.full_inliers);
        }
        if v.candidates == 0 || v.references == 0 {
            bail!("verify.candidates and verify.references must be at least 1");
        }
        if !(v.dominance.is_finite() && v.dominance >= 1.0) {
            bail!("verify.dominance must be at least 1, got {}", v.dominance);
        }
        if v.min_side > v.max_side {
            bail!(
                "verify.min_side ({}) must not exceed verify.max_side ({})",
                v.min_side,
                v.max_side
            );
        }
        if !(64..=4096).contains(&v.max_side) || !(16..=5000).contains(&v.max_features) {
            bail!("verify.max_side must be 64..=4096 and verify.max_features 16..=5000, got {} and {}", v.max_side, v.max_features);
        }
        if !(v.min_score.is_finite() && (-1.0..=1.0).contains(&v.min_score)) {
            bail!("verify.min_score must be between -1 and 1, got {}", v.min_score);
        }
        Ok(())
    }

    /// The `[network]` section and the regions' minimum score.
    fn validate_network_and_scan(&self) -> Result<()> {
        let n = &self.network;
        if n.max_sharing < 2
            || n.photo_hash_bits > crate::vision::phash::NEAR
            || !(n.photo_min_similarity.is_finite()
                && (-1.0..=1.0).contains(&n.photo_min_similarity))
        {
            bail!(
                "network.max_sharing must be at least 2, network.photo_hash_bits at most {} and network.photo_min_similarity between -1 and 1; got {}, {} and {}",
                crate::vision::phash::NEAR, n.max_sharing, n.photo_hash_bits, n.photo_min_similarity
            );
        }
        let sc = &self.scan;
        if !(sc.region_min_score.is_finite() && (-1.0..=1.0).contains(&sc.region_min_score)) {
            bail!("scan.region_min_score must be between -1 and 1, got {}", sc.region_min_score);
        }
        if !(sc.region_skip_score.is_finite() && sc.region_skip_margin.is_finite())
            || sc.region_skip_margin < 0.0
        {
            bail!(
                "scan.region_skip_score must be a number and scan.region_skip_margin at least 0, got {} and {}",
                sc.region_skip_score,
                sc.region_skip_margin
            );
        }
        Ok(())
    }

    /// The support weight, the background's `k` and the currency rates.
    fn validate_scores_and_rates(&self) -> Result<()> {
        let p = &self.policy;
        if !(p.support_weight.is_finite() && (0.0..=1.0).contains(&p.support_weight)) {
            bail!("policy.support_weight must be between 0 and 1, got {}", p.support_weight);
        }
        if p.background_k == 0 || p.background_k > 100 {
            bail!("policy.background_k must be between 1 and 100, got {}", p.background_k);
        }
        for (code, rate) in &self.currency.rates {
            if !(rate.is_finite() && *rate > 0.0) {
                bail!("currency.rates.{code} must be a positive number, got {rate}");
            }
        }
        Ok(())
    }

    /// The search graph's parameters, the model's batch and threads, and the HTTP limit.
    fn validate_index_and_model(&self) -> Result<()> {
        if !HNSW_M_RANGE.contains(&self.index.hnsw_m) {
            bail!(
                "index.hnsw_m must be between {} and {} (neighbours per node of the search graph), got {}",
                HNSW_M_RANGE.start(),
                HNSW_M_RANGE.end(),
                self.index.hnsw_m
            );
        }
        if self.index.hnsw_ef_construction == 0 || self.index.hnsw_ef_search == 0 {
            bail!("index.hnsw_ef_construction and index.hnsw_ef_search must be at least 1");
        }
        if self.model.batch_size == 0 || self.model.intra_threads == 0 {
            bail!("model.batch_size and model.intra_threads must be at least 1");
        }
        if self.limits.http_max_in_flight == 0 {
            bail!("limits.http_max_in_flight must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_raises_the_dominant_candidate_and_lowers_those_far_behind() {
        let v = VerifyConfig::default(); // weight 0.5, evidence counts from 8, fully at 30, dominance 1.25
        let plain = |e: f64, best: f64| v.adjustment(e, e, best, best); // nothing shared
        assert_eq!(plain(6.0, 6.0), 0.0, "below min_inliers: no evidence either way");
        assert_eq!(plain(30.0, 30.0), 0.5);
        assert_eq!(plain(400.0, 400.0), 0.5, "capped at weight");
        assert!((plain(19.0, 19.0) - 0.25).abs() < 1e-12, "linear between 8 and 30");
        assert!(
            (plain(25.0, 30.0) - 0.5 * 17.0 / 22.0).abs() < 1e-12,
            "close behind the best: its own strength"
        );
        assert_eq!(plain(30.0, 300.0), -0.5, "far behind a verified best: explained away");
        assert_eq!(plain(3.0, 7.5), 0.0, "the best itself too weak to explain anything away");
        // a sibling with as many inliers, but on the brand's shared logo and layout: explained away
        assert_eq!(v.adjustment(100.0, 25.0, 100.0, 100.0), -0.5);
        assert_eq!(
            v.adjustment(100.0, 100.0, 100.0, 100.0),
            0.5,
            "the product whose own design agrees"
        );
        assert_eq!(
            v.adjustment(40.0, 90.0, 100.0, 100.0),
            0.5,
            "within the dominance band on distinct points: its own strength"
        );
        let mut bad = Config::default();
        bad.verify.dominance = 0.5;
        assert!(bad.validate().unwrap_err().to_string().contains("verify.dominance"));
        bad = Config::default();
        bad.verify.min_side = 1000;
        assert!(bad.validate().unwrap_err().to_string().contains("verify.min_side"));
        bad = Config::default();
        bad.scan.region_skip_margin = -0.1;
        assert!(bad.validate().unwrap_err().to_string().contains("scan.region_skip_margin"));
        bad.scan.region_skip_margin = 0.0;
        bad.scan.region_skip_score = f64::NAN;
        assert!(bad.validate().unwrap_err().to_string().contains("scan.region_skip_score"));
    }

    #[test]
    fn hnsw_m_outside_its_range_is_a_config_error() {
        for (m, ok) in [(3, false), (4, true), (16, true), (128, true), (129, false), (1000, false)]
        {
            let mut c = Config::default();
            c.index.hnsw_m = m;
            match c.validate() {
                Ok(()) => assert!(ok, "m = {m} accepted"),
                Err(e) => {
                    assert!(!ok, "m = {m} refused: {e}");
                    assert!(
                        e.to_string().contains("index.hnsw_m must be between 4 and 128"),
                        "{e}"
                    );
                }
            }
        }
        let mut c = Config::default();
        c.index.hnsw_ef_search = 0;
        assert!(c.validate().is_err());
    }
}
