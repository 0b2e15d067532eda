//! Catalog maintenance with the real model: add, re-add, remove, compact, with exact and HNSW search.

mod common;

use common::*;
use serde_json::Value;

fn query(data: &std::path::Path, img: &str) -> Value {
    let path = testdata(img);
    let out = run_ok(
        data,
        &[
            "query",
            path.to_str().unwrap(),
            "--json",
            "--price",
            "10",
            "--currency",
            "EUR",
            "--seller",
            "shady",
        ],
        0,
    );
    serde_json::from_str(&out).unwrap()
}

fn stats(data: &std::path::Path) -> Value {
    serde_json::from_str(&run_ok(data, &["catalog", "stats", "--json"], 0)).unwrap()
}

/// The stored shared points (`catalog::Store::mark_shared`) of the images of live products, by
/// content hash.
fn shared_points(data: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let conn = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let mut st = conn
        .prepare(
            "SELECT DISTINCT s.sha256, s.data FROM shared_points s JOIN vectors v ON v.sha256=s.sha256
             JOIN images i ON i.vector=v.id JOIN products p ON p.id=i.product WHERE p.removed=0",
        )
        .unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// add → query → re-add (no re-embedding) → add more → remove → compact, checking search each time.
fn lifecycle(config: Option<&str>, expect_hnsw: bool) {
    let data = catalog_with(config);
    let d = data.path();
    let s = stats(d);
    assert_eq!(s["products"], 9);
    assert_eq!(s["vectors"], 14);
    assert_eq!(s["live_vectors_with_features"], 14, "every reference image gets local features");
    assert_eq!(s["hnsw_covered"].as_u64().unwrap() > 0, expect_hnsw);

    let v = query(d, "listings/L001-copy-crop.jpg");
    assert_eq!(v["verdict"], "flag");
    assert_eq!(v["matches"][0]["product_id"], "nw-runner");

    // the same file again: nothing is embedded twice
    let csv = testdata("catalog.csv");
    let out = run(d, &["catalog", "add", csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("embedded 0 new image(s), 14 already stored"), "{err}");
    assert_eq!(stats(d)["vectors"], 14);

    // the slide is not in the catalog yet; its copy matches nothing strongly
    assert_ne!(query(d, "listings/L028-copy-extra-product.jpg")["verdict"], "flag");
    let extra = testdata("catalog_extra.jsonl");
    run_ok(d, &["catalog", "add", extra.to_str().unwrap()], 0);
    let v = query(d, "listings/L028-copy-extra-product.jpg");
    assert_eq!(v["verdict"], "flag");
    assert_eq!(v["matches"][0]["product_id"], "nw-slide");
    let s = stats(d);
    assert_eq!(s["products"], 11);
    assert_eq!(s["live_vectors_with_shared"], s["live_vectors"], "{s}");

    // removal hides the product at once
    run_ok(d, &["catalog", "remove", "Northwind", "nw-runner"], 0);
    let v = query(d, "listings/L001-copy-crop.jpg");
    assert!(v["matches"].as_array().unwrap().iter().all(|m| m["product_id"] != "nw-runner"), "{v}");
    assert_ne!(v["verdict"], "flag");
    let listed = run_ok(d, &["catalog", "list", "--json", "--removed"], 0);
    assert!(listed.lines().any(|l| l.contains("\"nw-runner\"") && l.contains("\"removed\":true")));

    // compaction deletes it for good and keeps every other answer
    let before = query(d, "listings/L009-copy-mirror.jpg".replace(".jpg", ".png").as_str());
    let shared = shared_points(d);
    run_ok(d, &["catalog", "compact"], 0);
    // what the runner shared with its siblings stopped counting when it was removed, not only now
    assert_eq!(
        shared_points(d),
        shared,
        "shared points found again at removal, as compaction finds them"
    );
    let s = stats(d);
    assert_eq!(s["products"], 10);
    assert_eq!(s["removed_products"], 0);
    assert_eq!(s["vectors"], 14); // 16 images minus nw-runner's two
    assert_eq!(s["live_vectors_with_features"], 14);
    assert_eq!(
        s["live_vectors_with_shared"], 14,
        "shared points follow their images and are found again"
    );
    assert_eq!(s["hnsw_covered"].as_u64().unwrap() > 0, expect_hnsw);
    let after = query(d, "listings/L009-copy-mirror.png");
    assert_eq!(before["matches"][0], after["matches"][0]);
    assert_eq!(after["verdict"], "flag");
    assert_ne!(query(d, "listings/L001-copy-crop.jpg")["verdict"], "flag");
    let slide = query(d, "listings/L028-copy-extra-product.jpg");
    assert_eq!(slide["verdict"], "flag");
    // local features follow their images through compaction (the slide's rows moved)
    assert!(slide["matches"][0]["inliers"].as_u64().is_some_and(|n| n >= 40), "{slide}");
    let listed = run_ok(d, &["catalog", "list"], 0);
    assert!(!listed.contains("nw-runner") && listed.contains("nw-slide"), "{listed}");

    // re-adding the removed product brings it back without re-embedding what is stored
    run_ok(d, &["catalog", "add", csv.to_str().unwrap()], 0);
    assert_eq!(query(d, "listings/L001-copy-crop.jpg")["verdict"], "flag");
    assert_eq!(stats(d)["vectors"], 16);
}

#[test]
fn lifecycle_with_exact_search() {
    lifecycle(None, false);
}

#[test]
fn lifecycle_with_hnsw_graph() {
    lifecycle(Some("[index]\nhnsw_min_images = 1\n"), true);
}

/// Names of the search graph files in a data directory.
fn graph_files(data: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("graph-"))
        .collect();
    names.sort();
    names
}

#[test]
fn graph_files_are_replaced_and_bad_or_old_ones_ask_for_compaction() {
    let data = catalog_with(Some("[index]\nhnsw_min_images = 1\n"));
    let d = data.path();
    let files = graph_files(d);
    assert_eq!(files.len(), 1, "{files:?}");
    // extending the graph writes the next generation and removes the previous one
    run_ok(d, &["catalog", "add", testdata("catalog_extra.jsonl").to_str().unwrap()], 0);
    let next = graph_files(d);
    assert_eq!(next.len(), 1);
    assert_ne!(next, files);
    let current = d.join(&next[0]);

    // a truncated graph file: a clear error naming it, no panic
    let good = std::fs::read(&current).unwrap();
    std::fs::write(&current, &good[..good.len() / 2]).unwrap();
    let img = testdata("listings/L001-copy-crop.jpg");
    let out = run(d, &["query", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&next[0]) && err.contains("knockoff catalog compact"), "{err}");

    // a graph left by the hnsw_rs versions of knockoff: the same advice
    let gen = next[0].trim_start_matches("graph-").trim_end_matches(".knkg");
    std::fs::remove_file(&current).unwrap();
    let legacy = d.join("hnsw").join(gen);
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("knockoff.hnsw.graph"), b"old").unwrap();
    let out = run(d, &["query", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("older knockoff") && err.contains("knockoff catalog compact"), "{err}");

    // compaction rebuilds the graph and removes the old directory
    run_ok(d, &["catalog", "compact"], 0);
    assert!(!d.join("hnsw").exists());
    assert_eq!(graph_files(d).len(), 1);
    assert_eq!(query(d, "listings/L001-copy-crop.jpg")["verdict"], "flag");
}

#[test]
fn outdated_local_features_are_reported_once_and_replaced_by_adding_again() {
    let data = catalog_with(None);
    let d = data.path();
    // turn the stored features into the format of an older knockoff (another descriptor pattern)
    let db = rusqlite::Connection::open(d.join("catalog.sqlite")).unwrap();
    let rows: Vec<(String, Vec<u8>)> = db
        .prepare("SELECT sha256, data FROM local_features")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 14);
    for (hash, mut blob) in rows {
        blob[..8].copy_from_slice(b"KNKORB01");
        db.execute(
            "UPDATE local_features SET data=?1 WHERE sha256=?2",
            rusqlite::params![blob, hash],
        )
        .unwrap();
    }
    drop(db);
    assert_eq!(stats(d)["live_vectors_with_features"], 0, "outdated features do not count");
    let img = testdata("listings/L004-copy-text-sale.jpg");
    let out = run(d, &["query", img.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["matches"][0]["product_id"], "nw-trail",
        "the embedding alone still finds it: {v}"
    );
    assert!(v["matches"][0].get("inliers").is_none(), "{v}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("outdated format KNKORB01").count(),
        1,
        "one warning, not one per image: {err}"
    );
    assert!(err.contains("add the catalog's products again"), "{err}");
    // adding the same products again replaces them (and embeds nothing anew)
    run_ok(d, &["catalog", "add", testdata("catalog.csv").to_str().unwrap()], 0);
    assert_eq!(stats(d)["live_vectors_with_features"], 14);
    let w = query(d, "listings/L004-copy-text-sale.jpg");
    assert!(w["matches"][0]["inliers"].as_u64().is_some_and(|n| n >= 40), "{w}");
}

#[test]
fn bad_catalog_records_are_reported_and_the_rest_is_added() {
    let dir = tempdir();
    let cat = dir.path().join("cat.jsonl");
    let img = testdata("catalog/acme/acme-diver_1.jpg");
    let lines = [
        format!(r#"{{"brand":"Acme","product_id":"ok","title":"Diver","price":300,"currency":"EUR","images":["{}"]}}"#, img.display()),
        r#"{"brand":"Acme","product_id":"noprice","title":"x","currency":"EUR","images":["a.jpg"]}"#.to_string(),
        r#"{"brand":"Acme","product_id":"badimg","title":"x","price":1,"currency":"EUR","images":["missing.jpg"]}"#.to_string(),
        "this is not json".to_string(),
    ];
    std::fs::write(&cat, lines.join("\n")).unwrap();
    let data = tempdir();
    let out = run(data.path(), &["catalog", "add", cat.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cat.jsonl:2: missing field `price`"), "{err}");
    assert!(
        err.contains("cat.jsonl:3: product badimg image") && err.contains("file not found"),
        "{err}"
    );
    assert!(err.contains("cat.jsonl:4: invalid JSON"), "{err}");
    let listed = run_ok(data.path(), &["catalog", "list", "--json"], 0);
    assert_eq!(listed.lines().count(), 1);
    assert!(listed.contains("\"ok\""));
}

#[test]
fn a_catalog_built_with_one_model_refuses_another() {
    let data = catalog_with(None);
    let img = testdata("listings/L001-copy-crop.jpg");
    let out = run(data.path(), &["--model", "sscd", "query", img.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was built with model \"sscd_distilled\""), "{err}");
}

#[test]
fn missing_runtime_says_how_to_install_it() {
    let data = tempdir();
    let out = run(
        data.path(),
        &[
            "--ort-lib",
            "/nonexistent/libonnxruntime.so",
            "catalog",
            "add",
            testdata("catalog.csv").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bash models/fetch.sh"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_catalog_is_searched_with_the_model_it_was_built_with() {
    let data = tempdir();
    let csv = testdata("catalog.csv");
    run_ok(data.path(), &["--model", "sscd", "catalog", "add", csv.to_str().unwrap()], 0);
    let img = testdata("listings/L004-copy-text-sale.jpg");
    let out = run_ok(data.path(), &["query", img.to_str().unwrap(), "--json"], 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "sscd");
    assert_eq!(v["matches"][0]["product_id"], "nw-trail");
    // and with sscd's default region queries (off; the distilled model's are on)
    let listings = testdata("listings.jsonl");
    let scan = |d: &std::path::Path| {
        String::from_utf8_lossy(&run(d, &["scan", listings.to_str().unwrap(), "--json"]).stderr)
            .to_string()
    };
    let err = scan(data.path());
    assert!(err.contains("scanned 35 listings") && !err.contains("regions searched"), "{err}");
    // a new catalog gets the default model
    let fresh = catalog_with(None);
    let out = run_ok(fresh.path(), &["query", img.to_str().unwrap(), "--json"], 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "sscd_distilled");
    assert_eq!(v["matches"][0]["product_id"], "nw-trail");
    let err = scan(fresh.path());
    // regions for every photo but those a whole-photo search already decides (copies)
    let searched = err
        .split("regions searched for ")
        .nth(1)
        .and_then(|rest| rest.split(" of 29 photos").next())
        .and_then(|n| n.trim().parse::<usize>().ok());
    assert!(searched.is_some_and(|n| n > 0 && n < 29), "{err}");
}

#[test]
fn background_photos_normalise_scores_and_explain_it() {
    let data = catalog_with(None);
    let d = data.path();
    let raw = query(d, "listings/L003-copy-jpeg-q20.jpg");
    let raw_best = &raw["matches"][0];
    assert!(raw_best.get("background").is_none(), "no background yet: raw scores");
    let photos: Vec<String> = [
        "L022-unrelated-bottle.jpg",
        "L023-unrelated-lamp.jpg",
        "L024-unrelated-blob.jpg",
        "L025-unrelated-sneaker.jpg",
        "L026-unrelated-watch.jpg",
        "L030-corrupt.jpg",
    ]
    .iter()
    .map(|f| testdata(&format!("listings/{f}")).to_string_lossy().into_owned())
    .collect();
    let mut args = vec!["catalog", "background", "add"];
    args.extend(photos.iter().map(String::as_str));
    let out = run(d, &args);
    assert_eq!(out.status.code(), Some(3), "a corrupt photo is a partial failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("L030-corrupt.jpg") && err.contains("embedded 5 new photo(s)"), "{err}");
    // adding the same photos again stores nothing twice
    let err = String::from_utf8_lossy(&run(d, &args[..args.len() - 1]).stderr).into_owned();
    assert!(err.contains("embedded 0 new photo(s), 5 already stored"), "{err}");
    assert_eq!(stats(d)["background_images"], 5);
    let norm = query(d, "listings/L003-copy-jpeg-q20.jpg");
    let best = &norm["matches"][0];
    assert_eq!(best["product_id"], raw_best["product_id"]);
    let (s, r, b) = (
        best["score"].as_f64().unwrap(),
        best["cosine"].as_f64().unwrap(),
        best["background"].as_f64().unwrap(),
    );
    let extra = |m: &Value| {
        m["support"].as_f64().unwrap_or(0.0) + m["verification"].as_f64().unwrap_or(0.0)
    };
    let raw_cosine = raw_best["score"].as_f64().unwrap() - extra(raw_best);
    assert!((r - raw_cosine).abs() < 2e-4, "the cosine is the raw score: {r} vs {raw_cosine}");
    assert!(b > 0.0 && b < 0.5, "background term {b}");
    let support = extra(best);
    assert!(
        (s - (r - b + support)).abs() < 3e-4,
        "score = raw - background + support + verification: {s} vs {r} - {b} + {support}"
    );
    assert!(
        norm["reasons"][0].as_str().unwrap().contains("background photos"),
        "{}",
        norm["reasons"][0]
    );
    // clearing turns normalisation off again
    run_ok(d, &["catalog", "background", "clear"], 0);
    assert_eq!(stats(d)["background_images"], 0);
    let again = query(d, "listings/L003-copy-jpeg-q20.jpg");
    assert!(again["matches"][0].get("background").is_none());
    assert_eq!(again["matches"][0]["score"], raw_best["score"]);
}
