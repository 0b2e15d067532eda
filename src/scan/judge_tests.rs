//! Fast tests of the judge, the score and the policy: a small catalog of photos whose cells follow
//! Walsh patterns, embedded by the fake model (`model::fake`), and listings scanned through the
//! whole `Scanner` in milliseconds, without ONNX Runtime. Geometric verification is off, so a
//! product's score is the cosine of the fake vectors plus the support of its other photos.

use std::path::Path;

use crate::catalog::{self, ProductRecord, Store};
use crate::config::Config;
use crate::model::fake::{photo, FakeEmbedder};
use crate::policy::{Rule, Verdict};
use crate::scan::{Listing, Parsed, Report, Scanner, Seller};
use crate::vision::source::{Fetcher, ImageRef};

/// The fake model's thresholds: a copy from this cosine ...
const MATCH: f64 = 0.9;
/// ... and a possible copy from this one.
const REVIEW: f64 = 0.8;

/// Photos as (Walsh pattern, weight): distinct patterns are orthogonal (cosine 0).
const RUNNER: &[(usize, f32)] = &[(1, 60.0)];
const TRAIL: &[(usize, f32)] = &[(6, 60.0)];
const TOTE: &[(usize, f32)] = &[(9, 60.0)];
/// The tote seen from the side: cosine 1 / sqrt(1 + 0.6²) = 0.857 with `TOTE`.
const TOTE_SIDE: &[(usize, f32)] = &[(9, 60.0), (12, 36.0)];
/// A photo like the runner's, but only as much: cosine 0.857 with `RUNNER`, a possible copy.
const LIKE_RUNNER: &[(usize, f32)] = &[(1, 60.0), (3, 36.0)];
/// A photo like nothing in the catalog.
const UNRELATED: &[(usize, f32)] = &[(15, 60.0)];

/// The cosine of `TOTE` and `TOTE_SIDE`, `RUNNER` and `LIKE_RUNNER`.
fn blend_cosine() -> f32 {
    1.0 / (1.0f32 + 0.6 * 0.6).sqrt()
}

/// A catalog of three products in a temporary directory and a scanner over it.
struct Shop {
    dir: tempfile::TempDir,
    scanner: Scanner,
}

/// The configuration the tests scan with: defaults, geometric verification off.
fn config() -> Config {
    let mut c = Config::default();
    c.verify.enabled = false;
    c
}

/// Saves a 64 x 64 photo of `patterns` on grey level `base` as `dir/name`.
fn save(dir: &Path, name: &str, base: f32, patterns: &[(usize, f32)]) -> ImageRef {
    let path = dir.join(name);
    photo(64, base, patterns).save(&path).expect("photo saved");
    ImageRef::Path(path)
}

fn product(
    brand: &str,
    id: &str,
    price: f64,
    images: Vec<ImageRef>,
    sellers: &[&str],
) -> ProductRecord {
    ProductRecord {
        line: 1,
        brand: brand.into(),
        product_id: id.into(),
        title: format!("{brand} {id}"),
        price,
        currency: "EUR".into(),
        images,
        authorized_sellers: sellers.iter().map(|s| s.to_string()).collect(),
        category: None,
    }
}

/// Northwind's runner (100 EUR) and trail shoe (150 EUR), sold by `northwind-official`, and
/// Lumen's tote (200 EUR, two photos, no authorised sellers), added as `catalog add` does.
fn shop() -> Shop {
    let config = config();
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    let official: &[&str] = &["northwind-official"];
    let products = vec![
        product(
            "Northwind",
            "nw-runner",
            100.0,
            vec![save(d, "runner.png", 128.0, RUNNER)],
            official,
        ),
        product("Northwind", "nw-trail", 150.0, vec![save(d, "trail.png", 128.0, TRAIL)], official),
        product(
            "Lumen",
            "lumen-tote",
            200.0,
            vec![save(d, "tote.png", 128.0, TOTE), save(d, "tote_side.png", 128.0, TOTE_SIDE)],
            &[],
        ),
    ];
    let mut embedder = FakeEmbedder::new(MATCH, REVIEW);
    let fetcher = Fetcher::new(&config.limits).expect("fetcher");
    let mut store = Store::open(&d.join("data"), true).expect("catalog opened");
    let mut adder = catalog::Adder::new(&mut store, &mut embedder, &fetcher, &config)
        .expect("a new catalog takes any model");
    let mut added = (0, 0);
    adder
        .add_products(catalog::in_chunks(products), |done| {
            assert!(done.skipped.is_empty() && done.image_errors.is_empty(), "{done:?}");
            added = (added.0 + done.products, added.1 + done.embedded);
            Ok(())
        })
        .expect("products added");
    assert_eq!(added, (3, 4), "products added, images embedded");
    adder.finish().expect("index built");
    let view = store.view(&config).expect("catalog view");
    let scanner = Scanner::new(view, embedder, config).expect("scanner");
    Shop { dir, scanner }
}

impl Shop {
    /// A listing `id` by `seller` at `price` EUR with one photo of `patterns` (brighter than the
    /// catalog's: brightness does not count).
    fn listing(
        &self,
        id: &str,
        seller: &str,
        price: Option<f64>,
        patterns: &[(usize, f32)],
    ) -> Parsed {
        Ok(Listing {
            line: 1,
            listing_id: id.into(),
            title: None,
            price,
            currency: price.map(|_| "EUR".to_string()),
            images: vec![save(self.dir.path(), &format!("{id}.png"), 150.0, patterns)],
            seller: Seller { seller_id: seller.into(), ..Seller::default() },
            warnings: Vec::new(),
        })
    }

    /// Scans one listing.
    fn scan(
        &mut self,
        id: &str,
        seller: &str,
        price: Option<f64>,
        patterns: &[(usize, f32)],
    ) -> Report {
        let listing = self.listing(id, seller, price, patterns);
        let mut reports = self.scanner.check(vec![listing]).expect("scanned");
        assert_eq!(reports.len(), 1);
        reports.remove(0)
    }
}

/// The verdict, the rule and the reasons of a report, for assertions' messages.
fn said(r: &Report) -> String {
    format!("{:?} {} {:#?}", r.verdict, r.rule, r.reasons)
}

#[test]
fn a_copy_at_a_low_price_from_an_unauthorised_seller_is_flagged() {
    let mut shop = shop();
    let r = shop.scan("L1", "bestdeals", Some(20.0), RUNNER);
    assert_eq!((r.verdict, r.rule), (Verdict::Flag, Rule::CopyAtLowPrice), "{}", said(&r));
    let m = &r.matches[0];
    assert_eq!((m.brand.as_str(), m.product_id.as_str()), ("Northwind", "nw-runner"));
    assert!(m.image.ends_with("runner.png") && m.listing_image.ends_with("L1.png"), "{m:?}");
    assert!((m.score - 1.0).abs() < 0.01, "a brighter copy has cosine 1: {m:?}");
    assert_eq!(r.price_ratio, Some(0.2));
    assert_eq!(r.model, "fake");
    let json = serde_json::to_value(&r).expect("a verdict serialises");
    assert!(json.get("candidates").is_none(), "a separated verdict names no set: {json}");
    let reasons = r.reasons.join("\n");
    for part in [
        "matches Northwind / nw-runner (\"Northwind nw-runner\") with similarity 1.000 \
         (at or above the match threshold 0.90, review threshold 0.80)",
        "price 20.00 EUR is 20% of the reference price 100.00 EUR",
        "seller bestdeals is not among the sellers authorised for brand Northwind \
         (northwind-official)",
        "rule copy_at_low_price: copy at 20% of the reference price (flag at or below 50%) → flag",
    ] {
        assert!(reasons.contains(part), "no {part:?} in\n{reasons}");
    }
}

#[test]
fn an_authorised_seller_is_not_flagged() {
    let mut shop = shop();
    let r = shop.scan("L1", "northwind-official", Some(20.0), RUNNER);
    assert_eq!((r.verdict, r.rule), (Verdict::Clear, Rule::AuthorisedSeller), "{}", said(&r));
    assert_eq!(r.matches[0].product_id, "nw-runner");
    assert!(r.risk <= 0.1, "{}", r.risk);
    assert!(
        r.reasons
            .iter()
            .any(|s| s == "seller northwind-official is authorised for brand Northwind"),
        "{}",
        said(&r)
    );
}

#[test]
fn a_copy_at_a_high_price_is_reviewed_not_flagged() {
    let mut shop = shop();
    let r = shop.scan("L1", "bestdeals", Some(95.0), RUNNER);
    assert_eq!((r.verdict, r.rule), (Verdict::Review, Rule::CopyAtNormalPrice), "{}", said(&r));
    assert_eq!(r.price_ratio, Some(0.95));
    let p = r.price.as_ref().expect("a price comparison");
    assert_eq!((p.listing, p.reference, p.currency.as_str()), (95.0, 100.0, "EUR"));
    let r = shop.scan("L2", "bestdeals", None, RUNNER);
    assert_eq!((r.verdict, r.rule), (Verdict::Review, Rule::CopyPriceUnknown), "{}", said(&r));
    assert!(r.reasons.iter().any(|s| s == "the listing gives no price"), "{}", said(&r));
}

#[test]
fn a_photo_with_no_close_vector_is_clear() {
    let mut shop = shop();
    let r = shop.scan("L1", "bestdeals", Some(1.0), UNRELATED);
    assert_eq!((r.verdict, r.rule, r.risk), (Verdict::Clear, Rule::NoMatch, 0.0), "{}", said(&r));
    assert!(r.price.is_none() && r.price_ratio.is_none(), "{}", said(&r));
    assert!(r.matches.iter().all(|m| m.score.abs() < 0.01), "{:?}", r.matches);
    assert!(r.reasons[0].contains("below the review threshold 0.80"), "{}", said(&r));
}

#[test]
fn a_possible_copy_is_reviewed_only_at_a_very_low_price() {
    let mut shop = shop();
    let r = shop.scan("L1", "bestdeals", Some(20.0), LIKE_RUNNER);
    assert_eq!(
        (r.verdict, r.rule),
        (Verdict::Review, Rule::PossibleCopyAtVeryLowPrice),
        "{}",
        said(&r)
    );
    let m = &r.matches[0];
    assert_eq!(m.product_id, "nw-runner");
    assert!((m.score - blend_cosine()).abs() < 0.01, "{m:?}");
    assert!(r.reasons[0].contains("(below the match threshold 0.90"), "{}", said(&r));
    assert!(r.risk > 0.5 && r.risk < 1.0, "a weaker match is less risky: {}", r.risk);
    let r = shop.scan("L2", "bestdeals", Some(80.0), LIKE_RUNNER);
    assert_eq!(
        (r.verdict, r.rule),
        (Verdict::Clear, Rule::PossibleMatchNormalPrice),
        "{}",
        said(&r)
    );
}

#[test]
fn other_reference_photos_of_a_product_support_its_score() {
    let mut shop = shop();
    let r = shop.scan("L1", "bestdeals", Some(30.0), TOTE);
    assert_eq!((r.verdict, r.rule), (Verdict::Flag, Rule::CopyAtLowPrice), "{}", said(&r));
    let m = &r.matches[0];
    assert_eq!(m.product_id, "lumen-tote");
    assert!(m.image.ends_with("tote.png"), "the best photo pair is named: {m:?}");
    let want = 0.2 * blend_cosine();
    let support = m.support.expect("support from the side photo");
    assert!((support - want).abs() < 0.01, "{support} != {want}");
    assert!((m.score - (1.0 + support)).abs() < 1e-3, "{m:?}");
    assert_eq!((m.cosine * 100.0).round(), 100.0, "{m:?}");
    let reasons = r.reasons.join("\n");
    for part in [
        format!("with score {:.3} (cosine 1.000, plus {support:.3} because", m.score),
        "price 30.00 EUR is 15% of the reference price 200.00 EUR".to_string(),
        "seller bestdeals is not authorised: brand Lumen names no authorised sellers".to_string(),
    ] {
        assert!(reasons.contains(&part), "no {part:?} in\n{reasons}");
    }
    // the side photo alone matches its product at its own cosine, less than a copy of the front
    let r = shop.scan("L2", "bestdeals", Some(30.0), TOTE_SIDE);
    assert_eq!(r.matches[0].product_id, "lumen-tote");
    assert!(r.matches[0].image.ends_with("tote_side.png"), "{:?}", r.matches[0]);
}

#[test]
fn a_chunk_gets_one_report_per_listing_in_input_order() {
    let mut shop = shop();
    let missing = Listing {
        images: vec![ImageRef::Path(shop.dir.path().join("missing.png"))],
        ..shop.listing("L3", "bestdeals", Some(10.0), TRAIL).expect("a listing")
    };
    let chunk = vec![
        shop.listing("L1", "bestdeals", Some(10.0), TRAIL),
        shop.listing("L2", "northwind-official", Some(10.0), TRAIL),
        Ok(missing),
        shop.listing("L4", "bestdeals", Some(10.0), UNRELATED),
    ];
    let reports = shop.scanner.check(chunk).expect("scanned");
    let got: Vec<(Option<&str>, Verdict, Rule)> =
        reports.iter().map(|r| (r.listing_id.as_deref(), r.verdict, r.rule)).collect();
    assert_eq!(
        got,
        [
            (Some("L1"), Verdict::Flag, Rule::CopyAtLowPrice),
            (Some("L2"), Verdict::Clear, Rule::AuthorisedSeller),
            (Some("L3"), Verdict::Error, Rule::Error),
            (Some("L4"), Verdict::Clear, Rule::NoMatch),
        ]
    );
    assert_eq!(reports[0].matches[0].product_id, "nw-trail");
    assert!(reports[2].reasons[0].starts_with("no usable photo: "), "{:?}", reports[2].reasons);
    assert_eq!(shop.scanner.inferences().photos, 3, "the missing photo is not embedded");
}
