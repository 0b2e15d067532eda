//! Seller networks end to end with the real model: scan records listings, `network build` turns the
//! bundled ring (testdata/ring) into one case file, exports, enforcement and sellers who come back.

mod common;

use common::*;
use serde_json::Value;

fn ring() -> String {
    testdata("ring/listings.jsonl").to_str().unwrap().to_string()
}

/// A data directory with the catalog, the ring scanned and networks built.
fn built() -> tempfile::TempDir {
    let data = catalog_with(None);
    let out = run_ok(data.path(), &["scan", &ring()], 0);
    let v = verdicts(&out);
    for id in ["R001-ring-a", "R002-ring-b", "R003-ring-c"] {
        assert_eq!(v[id]["verdict"], "flag", "{id}: {}", v[id]);
    }
    assert!(
        v["R004-lookalike"]["warnings"].to_string().contains("one digit"),
        "{}",
        v["R004-lookalike"]
    );
    run_ok(data.path(), &["network", "build"], 0);
    data
}

fn cases(data: &std::path::Path) -> Vec<Value> {
    let out = run_ok(data, &["network", "export", "--format", "jsonl"], 0);
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn links<'a>(case: &'a Value, kind: &str) -> Vec<(&'a str, &'a str)> {
    let mut v: Vec<(&str, &str)> = case["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| {
            let (a, b) = (l["a"].as_str().unwrap(), l["b"].as_str().unwrap());
            if a < b {
                (a, b)
            } else {
                (b, a)
            }
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_bundled_ring_becomes_one_case_file_with_its_links() {
    let data = built();
    let all = cases(data.path());
    assert_eq!(all.len(), 1, "{all:#?}");
    let c = &all[0];
    let sellers: Vec<&str> =
        c["sellers"].as_array().unwrap().iter().map(|s| s["seller_id"].as_str().unwrap()).collect();
    assert_eq!(sellers, ["ring-a", "ring-b", "ring-c"]);
    assert_eq!(
        links(c, "wechat"),
        [("ring-a", "ring-b"), ("ring-a", "ring-c"), ("ring-b", "ring-c")]
    );
    assert_eq!(links(c, "warehouse"), [("ring-a", "ring-c")]);
    assert_eq!(links(c, "photo"), [("ring-b", "ring-c")]);
    let wechat = c["links"].as_array().unwrap().iter().find(|l| l["kind"] == "wechat").unwrap();
    assert_eq!(wechat["value"], "starsports 01");
    assert_eq!(wechat["strength"], "strong");
    // the look-alike names support but are weak; the look-alike shop stays out
    assert!(c["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["kind"] == "seller_name" && l["strength"] == "weak"));
    assert_eq!(c["regions"]["registered"], serde_json::json!({"CN-GD": 1, "CN-ZJ": 2}));
    assert_eq!(c["regions"]["contacts"], serde_json::json!({"CN": 1}));
    assert_eq!(c["verdicts"]["flag"], 3);
    assert_eq!(c["brands"], serde_json::json!(["Acme", "Northwind"]));
    // 25 EUR x 1200 + 22 EUR x 800 + 15 USD x 3000 in EUR
    let turnover = c["turnover"].as_f64().unwrap();
    assert!(turnover > 25.0 * 1200.0 + 22.0 * 800.0, "{turnover}");
    assert!(c["rank"].as_f64().unwrap() > 0.0);
    assert_eq!(c["first_seen"], "2026-03-02T08:00:00+08:00");
    // rebuilding keeps the id
    let id = c["network_id"].as_str().unwrap().to_string();
    run_ok(data.path(), &["network", "build"], 0);
    assert_eq!(cases(data.path())[0]["network_id"], id.as_str());
    // list, show, CSV and HTML
    assert!(run_ok(data.path(), &["network", "list"], 0).contains(&id));
    let shown = run_ok(data.path(), &["network", "show", &id], 0);
    assert!(shown.contains("ring-b") && shown.contains("warehouse"), "{shown}");
    let csv = run_ok(data.path(), &["network", "export", "--format", "csv"], 0);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with(&id));
    let html = run_ok(data.path(), &["network", "export", "--format", "html"], 0);
    for want in
        [id.as_str(), "<svg", ";base64,", "CN-ZJ: 2 seller(s)", "starsports 01", "@media print"]
    {
        assert!(html.contains(want), "HTML lacks {want:?}");
    }
    assert!(!html.contains("<script"), "no scripts in a case file");
    assert_eq!(
        html.matches("<img ").count(),
        6,
        "three flagged photos beside their reference photos"
    );
}

#[test]
fn a_new_seller_linked_to_an_enforced_network_is_raised() {
    let data = built();
    let id = cases(data.path())[0]["network_id"].as_str().unwrap().to_string();
    let dir = tempdir();
    let lamp = testdata("listings/L022-unrelated-bottle.jpg");
    let listings = format!(
        "{{\"listing_id\":\"R101\",\"seller_id\":\"ring-new\",\"price\":30,\"currency\":\"EUR\",\"images\":[\"{0}\"],\"contacts\":[\"wechat:StarSports_01\"]}}\n\
         {{\"listing_id\":\"R102\",\"seller_id\":\"ring-a\",\"price\":30,\"currency\":\"EUR\",\"images\":[\"{0}\"]}}\n\
         {{\"listing_id\":\"R103\",\"seller_id\":\"honest\",\"price\":30,\"currency\":\"EUR\",\"images\":[\"{0}\"]}}\n",
        lamp.display()
    );
    let file = dir.path().join("new.jsonl");
    std::fs::write(&file, listings).unwrap();
    // known but not enforced: marked, not raised
    let v = verdicts(&run_ok(data.path(), &["scan", file.to_str().unwrap(), "--no-record"], 0));
    assert_eq!(v["R101"]["verdict"], "clear");
    assert_eq!(v["R101"]["network"]["network_id"], id.as_str());
    assert_eq!(v["R101"]["network"]["kind"], "wechat");
    assert_eq!(v["R102"]["network"]["kind"], "member");
    assert!(v["R103"].get("network").is_none());
    run_ok(data.path(), &["network", "mark", &id, "enforced"], 0);
    let v = verdicts(&run_ok(data.path(), &["scan", file.to_str().unwrap()], 0));
    assert_eq!(v["R101"]["verdict"], "review", "{}", v["R101"]);
    assert_eq!(v["R101"]["rule"], "network_enforced");
    assert!(v["R101"]["reasons"].to_string().contains("marked enforced"));
    assert_eq!(v["R102"]["verdict"], "clear", "a known member is not raised");
    assert_eq!(v["R103"]["verdict"], "clear");
    // the new seller joins the network on the next build, which stays enforced
    run_ok(data.path(), &["network", "build"], 0);
    let c = &cases(data.path())[0];
    assert_eq!(c["network_id"], id.as_str());
    assert_eq!(c["status"], "enforced");
    assert_eq!(
        c["sellers"].as_array().unwrap().len(),
        5,
        "ring-new joined; honest did not: {}",
        c["sellers"]
    );
}

#[test]
fn no_record_records_nothing_and_build_says_so() {
    let data = catalog_with(None);
    run_ok(data.path(), &["scan", &ring(), "--no-record"], 0);
    let out = run(data.path(), &["network", "build"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing to link"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        run(data.path(), &["network", "list"]).status.code() != Some(0),
        "nothing recorded: list fails with a message"
    );
}

#[test]
fn bad_seller_fields_are_reported_and_the_rest_is_used() {
    let data = catalog_with(None);
    let dir = tempdir();
    let img = testdata("listings/L001-copy-crop.jpg");
    let line = format!(
        "{{\"listing_id\":\"B1\",\"seller_id\":\"bad\",\"price\":20,\"currency\":\"EUR\",\"images\":[\"{}\"],\"sold_count\":1e30,\"contacts\":{{\"x\":1}},\"warehouse\":[1],\"payment_account\":\"6222 0000 1111\",\"listed_at\":\"last week\"}}\n",
        img.display()
    );
    let file = dir.path().join("bad.jsonl");
    std::fs::write(&file, line).unwrap();
    let out = run(data.path(), &["scan", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = verdicts(&String::from_utf8_lossy(&out.stdout));
    let b = &v["B1"];
    assert_eq!(b["verdict"], "flag", "the listing is judged: {b}");
    let w = b["warnings"].to_string();
    for want in ["`sold_count`", "`contacts`", "`warehouse`", "listed_at"] {
        assert!(w.contains(want), "warnings lack {want}: {w}");
    }
    assert_eq!(b["seller"]["payment_account"], "6222 0000 1111");
    assert!(String::from_utf8_lossy(&out.stderr).contains("listed_at"), "said on stderr too");
}
