//! Calibration on generated labels: thresholds chosen between the genuine and counterfeit scores,
//! written into the config without losing the user's comments, and used by later verdicts.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn calibrate_from_images_and_write_the_config() {
    let data = catalog_with(Some("# my settings\n[policy]\nflag_price_ratio = 0.4 # keep me\n"));
    let dir = tempdir();
    let mut rows = vec!["listing_id,label,image".to_string()];
    let exp = expected();
    let mut counterfeit = Vec::new();
    let mut genuine = Vec::new();
    for (id, e) in &exp {
        let edit = e["edit"].as_str().unwrap_or("");
        let img = testdata(&format!("listings/{id}"));
        let file =
            ["jpg", "png", "webp"].iter().map(|x| img.with_extension(x)).find(|p| p.exists());
        let Some(file) = file else { continue };
        if e["source_product"].is_string() && e["expected"] == "flag" && !id.starts_with("L027") {
            counterfeit.push(id.clone());
            rows.push(format!("{id},counterfeit,{}", file.display()));
        } else if edit.starts_with("unrelated") || id.contains("unrelated") {
            genuine.push(id.clone());
            rows.push(format!("{id},genuine,{}", file.display()));
        }
    }
    assert!(counterfeit.len() >= 10 && genuine.len() >= 4, "{counterfeit:?} {genuine:?}");
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, rows.join("\n")).unwrap();

    let out = run_ok(
        data.path(),
        &["calibrate", labels.to_str().unwrap(), "--precision", "0.99", "--json"],
        0,
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let t = v["match_threshold"]["threshold"].as_f64().unwrap();
    assert_eq!(v["match_threshold"]["precision"], 1.0);
    assert_eq!(v["match_threshold"]["recall"], 1.0);
    // scores of the same images through query, to check the threshold separates them
    let score = |id: &str| -> f64 {
        let img = rows
            .iter()
            .find(|r| r.starts_with(&format!("{id},")))
            .unwrap()
            .rsplit(',')
            .next()
            .unwrap()
            .to_string();
        let q: Value =
            serde_json::from_str(&run_ok(data.path(), &["query", &img, "--json"], 0)).unwrap();
        q["matches"][0]["score"].as_f64().unwrap()
    };
    let min_fake = counterfeit.iter().map(|id| score(id)).fold(f64::MAX, f64::min);
    let max_real = genuine.iter().map(|id| score(id)).fold(f64::MIN, f64::max);
    assert!(max_real < t && t < min_fake, "{max_real} < {t} < {min_fake}");

    let err = run(data.path(), &["calibrate", labels.to_str().unwrap(), "--write"]);
    assert_eq!(err.status.code(), Some(0), "{}", String::from_utf8_lossy(&err.stderr));
    let cfg = std::fs::read_to_string(data.path().join("config.toml")).unwrap();
    assert!(
        cfg.contains("# my settings") && cfg.contains("flag_price_ratio = 0.4 # keep me"),
        "{cfg}"
    );
    let img = testdata("listings/L001-copy-crop.jpg");
    let q: Value =
        serde_json::from_str(&run_ok(data.path(), &["query", img.to_str().unwrap(), "--json"], 0))
            .unwrap();
    assert!(
        (q["thresholds"]["match_threshold"].as_f64().unwrap() - (t * 1000.0).round() / 1000.0)
            .abs()
            < 1e-9
    );
    assert_eq!(q["thresholds"]["flag_price_ratio"], 0.4);
}

#[test]
fn calibrate_from_verdicts_reports_bad_labels_and_needs_both_classes() {
    let data = catalog_with(None);
    let dir = tempdir();
    let verdicts = dir.path().join("v.jsonl");
    let listings = testdata("listings.jsonl");
    run_ok(data.path(), &["scan", listings.to_str().unwrap(), "-o", verdicts.to_str().unwrap()], 3);
    let labels = dir.path().join("labels.jsonl");
    std::fs::write(
        &labels,
        [
            r#"{"listing_id":"L001-copy-crop","label":"counterfeit"}"#,
            r#"{"listing_id":"L004-copy-text-sale","label":"counterfeit"}"#,
            r#"{"listing_id":"L023-unrelated-lamp","label":"genuine"}"#,
            r#"{"listing_id":"L024-unrelated-blob","label":"maybe"}"#,
            r#"{"listing_id":"nope","label":"genuine"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let out = run(
        data.path(),
        &["calibrate", labels.to_str().unwrap(), "--verdicts", verdicts.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("labels.jsonl:4: field `label` must be counterfeit or genuine"), "{err}");
    assert!(err.contains("labels.jsonl:5: listing nope has no `image` and no verdict"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("3 labelled outcomes: 2 counterfeit, 1 genuine"));

    std::fs::write(&labels, r#"{"listing_id":"L001-copy-crop","label":"counterfeit"}"#).unwrap();
    let out = run(
        data.path(),
        &["calibrate", labels.to_str().unwrap(), "--verdicts", verdicts.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs both counterfeit and genuine"));
}
