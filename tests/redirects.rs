//! Hostile image servers (a loopback server this test starts): redirects to addresses without a
//! host or to other schemes, relative redirects, loops, and a server that accepts and never
//! answers. Each bad photo is an error of its own listing or product; the scan and `catalog add`
//! go on, and the other records get their verdicts or are added.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::*;

/// Where each hostile path redirects to.
const REDIRECTS: [(&str, &str); 9] = [
    ("/to-file", "file:///etc/passwd"),
    ("/to-data", "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="),
    ("/to-mailto", "mailto:x"),
    ("/to-about", "about:blank"),
    ("/to-nohost", "http://"),
    ("/to-ftp", "ftp://127.0.0.1/x.jpg"),
    ("/loop", "/loop"),
    ("/relative", "copy.jpg"),
    ("/hop1", "/hop2"),
];

fn respond(s: &mut TcpStream, path: &str) {
    let file = |rel: &str| std::fs::read(testdata(rel)).unwrap();
    if let Some((_, to)) = REDIRECTS.iter().find(|(from, _)| *from == path) {
        let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    match path {
        "/copy.jpg" | "/ref.jpg" | "/hop2" => {
            let body = if path == "/ref.jpg" {
                file("catalog/acme/acme-diver_1.jpg")
            } else {
                file("listings/L011-copy-border.jpg")
            };
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
        "/no-location" => {
            let _ = write!(
                s,
                "HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        _ => {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

fn serve(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let req = String::from_utf8_lossy(&buf[..n]).to_string();
    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
    respond(&mut s, &path);
}

fn start_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    format!("http://{addr}")
}

/// A server that accepts connections and never answers (each is held open for `hold`).
fn start_silent_server(hold: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(hold);
                drop(s);
            });
        }
    });
    format!("http://{addr}")
}

fn listing(id: &str, urls: &[String]) -> String {
    let images: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        r#"{{"listing_id":"{id}","seller_id":"s","price":10,"currency":"EUR","images":[{}]}}"#,
        images.join(",")
    )
}

#[test]
fn hostile_redirects_are_errors_of_their_listing_and_the_scan_goes_on() {
    let base = start_server();
    let data = catalog_with(None);
    let dir = tempdir();
    let mut lines = vec![listing("good-first", &[format!("{base}/copy.jpg")])];
    for (from, _) in REDIRECTS {
        lines.push(listing(&format!("R{from}"), &[format!("{base}{from}")]));
    }
    lines.push(listing("no-location", &[format!("{base}/no-location")]));
    // a listing with one hostile and one good photo: judged on the good one
    lines.push(listing("mixed", &[format!("{base}/to-file"), format!("{base}/copy.jpg")]));
    lines.push(listing("good-last", &[format!("{base}/copy.jpg")]));
    let input = dir.path().join("hostile.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = run(data.path(), &["scan", input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    let got = verdicts(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(got.len(), lines.len(), "one verdict per listing: {got:?}");
    for id in ["good-first", "good-last", "mixed", "R/relative", "R/hop1"] {
        assert_eq!(got[id]["verdict"], "flag", "{id}: {}", got[id]);
        assert_eq!(got[id]["matches"][0]["product_id"], "acme-chrono", "{id}");
    }
    let reason = |id: &str| {
        assert_eq!(got[id]["verdict"], "error", "{id}: {}", got[id]);
        got[id]["reasons"][0].as_str().unwrap().to_string()
    };
    for from in ["/to-file", "/to-data", "/to-mailto", "/to-about", "/to-ftp"] {
        let r = reason(&format!("R{from}"));
        assert!(r.contains("redirect") && r.contains("not an http(s) URL"), "{from}: {r}");
    }
    let r = reason("R/to-nohost");
    assert!(r.contains("redirect") && r.contains("empty host"), "{r}");
    let r = reason("R/loop");
    assert!(r.contains("redirect loop"), "{r}");
    let r = reason("no-location");
    assert!(r.contains("HTTP 301") && r.contains("Location"), "{r}");
    // the mixed listing names its failed photo
    assert!(got["mixed"].to_string().contains("not an http(s) URL"), "{}", got["mixed"]);
}

#[test]
fn catalog_add_keeps_the_good_products_of_a_file_with_hostile_redirects() {
    let base = start_server();
    let data = catalog_with(None);
    let dir = tempdir();
    let product = |id: &str, path: &str| {
        format!(
            r#"{{"brand":"Acme","product_id":"{id}","title":"t","price":300,"currency":"EUR","images":["{base}{path}"]}}"#
        )
    };
    let lines = [
        product("web-a", "/ref.jpg"),
        product("web-file", "/to-file"),
        product("web-about", "/to-about"),
        product("web-b", "/ref.jpg"),
    ];
    let cat = dir.path().join("remote.jsonl");
    std::fs::write(&cat, lines.join("\n")).unwrap();
    let out = run(data.path(), &["catalog", "add", cat.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("remote.jsonl:2")
            && stderr.contains("remote.jsonl:3")
            && stderr.contains("not an http(s) URL"),
        "{stderr}"
    );
    let img = testdata("catalog/acme/acme-diver_1.jpg");
    let v: serde_json::Value =
        serde_json::from_str(&run_ok(data.path(), &["query", img.to_str().unwrap(), "--json"], 0))
            .unwrap();
    let ids: Vec<&str> =
        v["matches"].as_array().unwrap().iter().filter_map(|m| m["product_id"].as_str()).collect();
    assert!(ids.contains(&"web-a") && ids.contains(&"web-b"), "{ids:?}");
    assert!(!ids.contains(&"web-file") && !ids.contains(&"web-about"), "{ids:?}");
}

#[test]
fn a_listings_photos_share_one_time_budget() {
    // twenty photos on a server that never answers, with a 2 s budget per listing and 3 s per photo
    let silent = start_silent_server(Duration::from_secs(60));
    let base = start_server();
    let config =
        "[limits]\nhttp_timeout_secs = 3\nhttp_max_in_flight = 4\nlisting_fetch_secs = 2\n";
    let data = catalog_with(Some(config));
    let dir = tempdir();
    let urls: Vec<String> = (0..20).map(|i| format!("{silent}/p{i}.jpg")).collect();
    let lines = [listing("stuck", &urls), listing("good", &[format!("{base}/copy.jpg")])];
    let input = dir.path().join("stuck.jsonl");
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = run_ok(data.path(), &["scan", input.to_str().unwrap()], 3);
    let got = verdicts(&out);
    assert_eq!(got["good"]["verdict"], "flag", "{}", got["good"]);
    assert_eq!(got["stuck"]["verdict"], "error", "{}", got["stuck"]);
    let text = got["stuck"].to_string();
    // the photos started in time ran into their listing's deadline; the others were never started
    assert!(text.contains("limits.listing_fetch_secs"), "{text}");
    assert!(text.contains("not fetched"), "{text}");
}
