//! Images given as http URLs, fetched from a local server this test starts: good, slow, huge and
//! failing URLs; the bad ones get an `error` verdict quickly and the scan goes on.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn serve(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let req = String::from_utf8_lossy(&buf[..n]).to_string();
    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
    let file = |rel: &str| std::fs::read(testdata(rel)).unwrap();
    match path.as_str() {
        "/copy.jpg" | "/ref.jpg" => {
            let body = if path == "/copy.jpg" {
                file("listings/L011-copy-border.jpg")
            } else {
                file("catalog/acme/acme-diver_1.jpg")
            };
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
        "/slow.jpg" => {
            // headers, then one byte a second: the download timeout must end it
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n");
            for _ in 0..60 {
                if s.write_all(&[0xFF]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "/huge.jpg" => {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 900000000\r\nConnection: close\r\n\r\n");
            let _ = s.write_all(&[0u8; 65536]);
        }
        "/endless.jpg" => {
            // no length given: the size cap must stop the read
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n"
            );
            let chunk = vec![0u8; 65536];
            for _ in 0..200 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
        _ => {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
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

#[test]
fn images_from_urls_with_timeouts_and_size_limits() {
    let base = start_server();
    let config = "[limits]\nhttp_timeout_secs = 3\nmax_image_bytes = 2000000\n";
    let data = catalog_with(Some(config));
    let dir = tempdir();
    // a catalog product whose photo is only at a URL
    let cat = dir.path().join("remote.jsonl");
    std::fs::write(
        &cat,
        format!(r#"{{"brand":"Acme","product_id":"remote-diver","title":"Diver (web)","price":300,"currency":"EUR","images":["{base}/ref.jpg"]}}"#),
    )
    .unwrap();
    run_ok(data.path(), &["catalog", "add", cat.to_str().unwrap()], 0);

    let listings: Vec<String> = [
        ("U1-copy", "copy.jpg"),
        ("U2-slow", "slow.jpg"),
        ("U3-huge", "huge.jpg"),
        ("U4-endless", "endless.jpg"),
        ("U5-missing", "missing.jpg"),
    ]
    .iter()
    .map(|(id, p)| format!(r#"{{"listing_id":"{id}","seller_id":"s","price":10,"currency":"EUR","images":["{base}/{p}"]}}"#))
    .collect();
    let input = dir.path().join("urls.jsonl");
    std::fs::write(&input, listings.join("\n")).unwrap();
    let t = Instant::now();
    let out = run_ok(data.path(), &["scan", input.to_str().unwrap()], 3);
    assert!(t.elapsed() < Duration::from_secs(30), "no hang: {:?}", t.elapsed());
    let got = verdicts(&out);
    assert_eq!(got["U1-copy"]["verdict"], "flag");
    assert_eq!(got["U1-copy"]["matches"][0]["product_id"], "acme-chrono");
    for id in ["U2-slow", "U3-huge", "U4-endless", "U5-missing"] {
        assert_eq!(got[id]["verdict"], "error", "{id}: {}", got[id]);
    }
    let reason = |id: &str| got[id]["reasons"][0].as_str().unwrap().to_string();
    assert!(
        reason("U2-slow").contains("timed out") || reason("U2-slow").contains("download failed"),
        "{}",
        reason("U2-slow")
    );
    assert!(reason("U3-huge").contains("over the limit"), "{}", reason("U3-huge"));
    assert!(reason("U4-endless").contains("over the limit"), "{}", reason("U4-endless"));
    assert!(reason("U5-missing").contains("HTTP 404"), "{}", reason("U5-missing"));

    // the web-only reference is searchable too
    let img = testdata("catalog/acme/acme-diver_1.jpg");
    let v: serde_json::Value =
        serde_json::from_str(&run_ok(data.path(), &["query", img.to_str().unwrap(), "--json"], 0))
            .unwrap();
    let ids: Vec<&str> =
        v["matches"].as_array().unwrap().iter().filter_map(|m| m["product_id"].as_str()).collect();
    assert!(ids.contains(&"remote-diver") && ids.contains(&"acme-diver"), "{ids:?}");
}
