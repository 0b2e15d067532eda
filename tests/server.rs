//! `knockoff serve` over real HTTP on a loopback port: keys and roles on every endpoint, photo
//! references (no server paths, no private addresses, redirects included), body limits, a scan
//! round trip with the real model, decisions and their export, graceful shutdown.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// A running `knockoff serve`; SIGTERM on drop.
struct Server {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = cmd(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("KNOCKOFF_LOG", "knockoff=debug,tower_http=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start knockoff serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let base = loop {
            let line = lines.next().expect("server exited before listening").expect("read stderr");
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Server { child, base, log }
    }

    /// Sends SIGTERM and returns the exit code.
    fn stop(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Kills the server with SIGKILL (no clean-up of any kind) and waits for it.
    fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A request body.
enum Body {
    None,
    Json(Value),
    Raw(String, Vec<u8>),
}

/// Sends a request; returns the status and the body (errors included).
fn call(method: &str, url: &str, key: Option<&str>, body: Body) -> (u16, String) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let res = match body {
        Body::None => agent.run(req.body(()).unwrap()),
        Body::Json(v) => agent.run(
            req.header("Content-Type", "application/json")
                .body(serde_json::to_vec(&v).unwrap())
                .unwrap(),
        ),
        Body::Raw(ct, bytes) => agent.run(req.header("Content-Type", ct).body(bytes).unwrap()),
    };
    match res {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A multipart/form-data body of text fields and files.
fn multipart(texts: &[(&str, &str)], files: &[(&str, Vec<u8>)]) -> Body {
    let boundary = "knockoffTestBoundary7d3a";
    let mut b = Vec::new();
    for (name, value) in texts {
        write!(
            b,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    for (name, bytes) in files {
        write!(b, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").unwrap();
        b.extend_from_slice(bytes);
        b.extend_from_slice(b"\r\n");
    }
    write!(b, "--{boundary}--\r\n").unwrap();
    Body::Raw(format!("multipart/form-data; boundary={boundary}"), b)
}

/// Creates a key with `knockoff keys create`.
fn key(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    run_ok(data, &all, 0).trim().to_string()
}

/// Serves `testdata/` on a loopback port; `/redirect/HOST/PATH` answers 302 to `http://HOST:PORT/PATH`.
fn photo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || serve_photo(s, port));
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn serve_photo(mut s: TcpStream, port: u16) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let req = String::from_utf8_lossy(&buf[..n]).to_string();
    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
    if let Some(rest) = path.strip_prefix("/redirect/") {
        let (host, target) = rest.split_once('/').unwrap_or((rest, ""));
        let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: http://{host}:{port}/{target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let file = testdata(path.trim_start_matches('/'));
    match std::fs::read(&file) {
        Ok(body) if !path.contains("..") => {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
        }
        _ => {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

/// The bundled listings with their photos as URLs on `photos`.
fn listings_as_urls(photos: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(testdata("listings.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if let Some(images) = v["images"].as_array_mut() {
                for i in images.iter_mut() {
                    *i = json!(format!("{photos}/{}", i.as_str().unwrap()));
                }
            }
            v
        })
        .collect()
}

fn data_with(config: &str) -> tempfile::TempDir {
    catalog_with(Some(config))
}

#[test]
fn every_endpoint_checks_role_and_brand() {
    let photos = photo_server();
    let data = data_with("[server]\nallow_hosts = [\"127.0.0.1\"]\n");
    let d = data.path();
    let keys: Vec<(&str, String)> = vec![
        ("admin", key(d, &["--role", "admin"])),
        ("analyst", key(d, &["--role", "analyst"])),
        ("analyst_acme", key(d, &["--role", "analyst", "--brand", "Acme"])),
        ("brand_acme", key(d, &["--role", "brand", "--brand", "Acme"])),
        ("brand_other", key(d, &["--role", "brand", "--brand", "Northwind"])),
        ("marketplace", key(d, &["--role", "marketplace"])),
        ("marketplace2", key(d, &["--role", "marketplace"])),
        ("revoked", key(d, &["--role", "admin"])),
    ];
    let revoked_id = keys[7].1.split('_').nth(1).unwrap().to_string();
    run_ok(d, &["keys", "revoke", &revoked_id], 0);
    let list = run_ok(d, &["keys", "list", "--json"], 0);
    for (_, k) in &keys {
        assert!(!list.contains(&k[16..]), "keys list shows a key");
    }
    let server = Server::start(d);
    let url = |p: &str| format!("{}{p}", server.base);
    let k = |name: &str| keys.iter().find(|(n, _)| *n == name).map(|(_, k)| k.as_str());

    // a verdict about Acme's chronograph, submitted by `marketplace`
    let listing = json!({"listing_id": "A1", "seller_id": "watchworld", "price": 54.0, "currency": "USD",
        "images": [format!("{photos}/listings/L002-copy-crop-hard.jpg")]});
    let (status, body) = call(
        "POST",
        &url("/v1/scan"),
        k("marketplace"),
        Body::Json(json!({"listings": [listing.clone()]})),
    );
    assert_eq!(status, 200, "{body}");
    let verdict = &json_of(&body)["verdicts"][0];
    assert_eq!(verdict["verdict"], "flag", "{verdict}");
    assert_eq!(verdict["matches"][0]["brand"], "Acme");
    let vid = verdict["id"].as_i64().unwrap();

    let job_line = |id: &str| {
        Body::Raw(
            "application/x-ndjson".into(),
            format!("{}\n", json!({"listing_id": id, "seller_id": "s", "images": ["/etc/passwd"]}))
                .into_bytes(),
        )
    };
    let (status, body) = call("POST", &url("/v1/jobs"), k("marketplace"), job_line("J0"));
    assert_eq!(status, 202, "{body}");
    let jid = json_of(&body)["id"].as_i64().unwrap();

    let probe = |id: &str| {
        json!({"brand": "Acme", "product_id": id, "title": "Probe", "price": 10, "currency": "USD",
        "images": [format!("{photos}/catalog/acme/acme-diver_1.jpg")]})
    };
    let photo = std::fs::read(testdata("listings/L011-copy-border.jpg")).unwrap();
    let query = || {
        multipart(
            &[("price", "20"), ("currency", "USD"), ("seller", "s1")],
            &[("image", photo.clone())],
        )
    };
    type Make<'a> = Box<dyn Fn() -> Body + 'a>;
    let none = || Body::None;
    // (method, route as in the API description, concrete path, body, expected status per caller)
    let table: Vec<(&str, &str, String, Make, [u16; 9])> = vec![
        // callers: none, revoked, admin, analyst, analyst_acme, brand_acme, brand_other, marketplace, marketplace2
        (
            "GET",
            "/v1/products",
            "/v1/products".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 200, 403, 403],
        ),
        (
            "GET",
            "/v1/products",
            "/v1/products?brand=Acme".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/products",
            "/v1/products".into(),
            Box::new(|| Body::Json(probe("probe-post"))),
            [401, 401, 201, 403, 403, 201, 403, 403, 403],
        ),
        (
            "GET",
            "/v1/products/{brand}/{product_id}",
            "/v1/products/Acme/acme-chrono".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 403, 403, 403],
        ),
        (
            "PUT",
            "/v1/products/{brand}/{product_id}",
            "/v1/products/Acme/probe-put".into(),
            Box::new(|| Body::Json(probe("probe-put"))),
            [401, 401, 200, 403, 403, 200, 403, 403, 403],
        ),
        (
            "DELETE",
            "/v1/products/{brand}/{product_id}",
            "/v1/products/Acme/no-such".into(),
            Box::new(none),
            [401, 401, 404, 403, 403, 404, 403, 403, 403],
        ),
        (
            "POST",
            "/v1/scan",
            "/v1/scan".into(),
            Box::new(|| Body::Json(json!({"listings": [listing.clone()]}))),
            [401, 401, 200, 403, 403, 403, 403, 200, 200],
        ),
        (
            "POST",
            "/v1/query",
            "/v1/query".into(),
            Box::new(query),
            [401, 401, 200, 200, 403, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/verdicts",
            "/v1/verdicts".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/v1/verdicts",
            "/v1/verdicts?brand=Acme".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 403, 200, 200],
        ),
        (
            "GET",
            "/v1/verdicts/{id}",
            format!("/v1/verdicts/{vid}"),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 404, 200, 404],
        ),
        (
            "POST",
            "/v1/verdicts/{id}/decision",
            format!("/v1/verdicts/{vid}/decision"),
            Box::new(|| Body::Json(json!({"decision": "counterfeit", "note": "logo font"}))),
            [401, 401, 201, 201, 201, 201, 404, 403, 403],
        ),
        (
            "GET",
            "/v1/decisions",
            "/v1/decisions".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 200, 403, 403],
        ),
        (
            "GET",
            "/v1/networks",
            "/v1/networks".into(),
            Box::new(none),
            [401, 401, 200, 200, 200, 200, 200, 403, 403],
        ),
        (
            "GET",
            "/v1/networks/{id}",
            "/v1/networks/N-0000000000".into(),
            Box::new(none),
            [401, 401, 404, 404, 404, 404, 404, 403, 403],
        ),
        (
            "POST",
            "/v1/jobs",
            "/v1/jobs".into(),
            Box::new(|| job_line("J1")),
            [401, 401, 202, 403, 403, 403, 403, 202, 202],
        ),
        (
            "GET",
            "/v1/jobs/{id}",
            format!("/v1/jobs/{jid}"),
            Box::new(none),
            [401, 401, 200, 403, 403, 403, 403, 200, 404],
        ),
        (
            "GET",
            "/v1/jobs/{id}/results",
            format!("/v1/jobs/{jid}/results?follow=false"),
            Box::new(none),
            [401, 401, 200, 403, 403, 403, 403, 200, 404],
        ),
    ];
    let callers = [
        "none",
        "revoked",
        "admin",
        "analyst",
        "analyst_acme",
        "brand_acme",
        "brand_other",
        "marketplace",
        "marketplace2",
    ];
    let mut failures = Vec::new();
    for (method, _, path, body, expected) in &table {
        for (i, caller) in callers.iter().enumerate() {
            let (status, text) = call(method, &url(path), k(caller), body());
            if status != expected[i] {
                failures.push(format!(
                    "{method} {path} as {caller}: {status}, expected {} ({text})",
                    expected[i]
                ));
            }
            if status >= 400 {
                let e = json_of(&text);
                assert!(
                    e["code"].is_string() && e["message"].is_string(),
                    "{method} {path} as {caller}: error not {{code, message}}: {text}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "authorisation table:\n{}", failures.join("\n"));

    // the table covers every route the API describes
    let (status, doc) = call("GET", &url("/openapi.json"), None, Body::None);
    assert_eq!(status, 200);
    let doc = json_of(&doc);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let tried: BTreeSet<(String, String)> =
        table.iter().map(|(m, r, ..)| (m.to_string(), r.to_string())).collect();
    assert_eq!(described, tried, "routes described vs tried");

    // lists show only what the key may see
    let seen = |caller: &str| -> Vec<i64> {
        let (_, body) = call("GET", &url("/v1/verdicts?limit=500"), k(caller), Body::None);
        json_of(&body)["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_i64().unwrap())
            .collect()
    };
    assert!(seen("brand_acme").contains(&vid) && seen("analyst_acme").contains(&vid));
    assert!(!seen("brand_other").contains(&vid) && !seen("marketplace2").contains(&vid));
    let (_, products) = call("GET", &url("/v1/products"), k("brand_other"), Body::None);
    let brands: BTreeSet<String> = json_of(&products)["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["brand"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(brands, BTreeSet::from(["Northwind".to_string()]));
    let (_, export) = call("GET", &url("/v1/decisions"), k("brand_other"), Body::None);
    assert!(export.trim().is_empty(), "another brand's decisions leaked: {export}");
    drop(server);
}

#[test]
fn photo_references_paths_and_private_addresses_are_refused() {
    let photos = photo_server();
    let port = photos.rsplit(':').next().unwrap().to_string();
    // strict: no host allowed
    let strict = data_with("[server]\nmax_body_bytes = 65536\nqueue = 1\n");
    let admin = key(strict.path(), &["--role", "admin"]);
    let server = Server::start(strict.path());
    let url = |p: &str| format!("{}{p}", server.base);
    let product = |images: Value| json!({"brand": "Acme", "product_id": "p1", "title": "T", "price": 1, "currency": "USD", "images": images});
    // paths on the server's disk, in every spelling
    for bad in
        ["/etc/passwd", "../../etc/passwd", "catalog/acme/acme-diver_1.jpg", "file:///etc/passwd"]
    {
        let (status, body) =
            call("POST", &url("/v1/products"), Some(&admin), Body::Json(product(json!([bad]))));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(json_of(&body)["code"], "bad_image_ref", "{body}");
        let listing = json!({"listing_id": "X", "seller_id": "s", "images": [bad]});
        let (status, body) = call(
            "POST",
            &url("/v1/scan"),
            Some(&admin),
            Body::Json(json!({"listings": [listing]})),
        );
        assert_eq!(status, 200, "{body}");
        let v = &json_of(&body)["verdicts"][0];
        assert_eq!(v["verdict"], "error");
        assert!(v["reasons"][0].as_str().unwrap().contains("refused"), "{v}");
        let (status, body) =
            call("POST", &url("/v1/query"), Some(&admin), multipart(&[("image_url", bad)], &[]));
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // a URL to a loopback address is refused when the host is not allowed
    let loopback = format!("{photos}/catalog/acme/acme-diver_1.jpg");
    let (status, body) =
        call("POST", &url("/v1/products"), Some(&admin), Body::Json(product(json!([loopback]))));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("non-public"), "{body}");
    let listing = json!({"listing_id": "X", "seller_id": "s", "images": [format!("{photos}/listings/L011-copy-border.jpg")]});
    let (_, body) =
        call("POST", &url("/v1/scan"), Some(&admin), Body::Json(json!({"listings": [listing]})));
    let v = &json_of(&body)["verdicts"][0];
    assert_eq!(v["verdict"], "error", "{v}");
    assert!(v["reasons"][0].as_str().unwrap().contains("non-public"), "{v}");
    // body limit (64 KiB here), and the listing cap
    let big = json!({"listings": [{"listing_id": "x".repeat(70_000), "seller_id": "s", "images": ["https://example.com/a.jpg"]}]});
    let (status, body) = call("POST", &url("/v1/scan"), Some(&admin), Body::Json(big));
    assert_eq!(status, 413, "{body}");
    assert_eq!(json_of(&body)["code"], "too_large");
    let many: Vec<Value> = (0..1001).map(|i| json!({"listing_id": i.to_string()})).collect();
    let (status, body) =
        call("POST", &url("/v1/scan"), Some(&admin), Body::Json(json!({"listings": many})));
    assert_eq!(status, 413, "{body}");
    assert_eq!(json_of(&body)["code"], "too_many_listings");
    // a flood with a queue of one: some are refused at once with 503 `busy`, the rest answered
    let photo = std::fs::read(testdata("listings/L011-copy-border.jpg")).unwrap();
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                s.spawn(|| {
                    call(
                        "POST",
                        &url("/v1/query"),
                        Some(&admin),
                        multipart(&[], &[("image", photo.clone())]),
                    )
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    let busy = answers.iter().filter(|(s, b)| *s == 503 && json_of(b)["code"] == "busy").count();
    assert!(ok >= 1 && busy >= 1 && ok + busy == answers.len(), "{answers:?}");
    drop(server);

    // allowed: 127.0.0.1 may be fetched, but a redirect to another name for a loopback address
    // (localhost, not allowed) is refused after the redirect
    let open = data_with("[server]\nallow_hosts = [\"127.0.0.1\"]\n");
    let admin = key(open.path(), &["--role", "admin"]);
    let server = Server::start(open.path());
    let url = |p: &str| format!("{}{p}", server.base);
    let listings = json!({"listings": [
        {"listing_id": "direct", "seller_id": "s", "price": 54, "currency": "USD", "images": [format!("{photos}/listings/L002-copy-crop-hard.jpg")]},
        {"listing_id": "redirect-ok", "seller_id": "s", "price": 54, "currency": "USD", "images": [format!("{photos}/redirect/127.0.0.1/listings/L002-copy-crop-hard.jpg")]},
        {"listing_id": "redirect-private", "seller_id": "s", "price": 54, "currency": "USD", "images": [format!("{photos}/redirect/localhost/listings/L002-copy-crop-hard.jpg")]},
    ]});
    let (status, body) = call("POST", &url("/v1/scan"), Some(&admin), Body::Json(listings));
    assert_eq!(status, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["verdicts"][0]["verdict"], "flag", "{}", v["verdicts"][0]);
    assert_eq!(v["verdicts"][1]["verdict"], "flag", "{}", v["verdicts"][1]);
    assert_eq!(v["verdicts"][2]["verdict"], "error", "{}", v["verdicts"][2]);
    let why = v["verdicts"][2]["reasons"][0].as_str().unwrap();
    assert!(why.contains("localhost") && why.contains("non-public"), "{why} (port {port})");
    drop(server);
}

#[test]
fn scan_round_trip_decisions_export_and_graceful_shutdown() {
    let photos = photo_server();
    let data = data_with("[server]\nallow_hosts = [\"127.0.0.1\"]\n");
    let d = data.path();
    let market = key(d, &["--role", "marketplace"]);
    let analyst = key(d, &["--role", "analyst", "--name", "review team"]);
    let mut server = Server::start(d);
    let url = |p: &str| format!("{}{p}", server.base);

    // the bundled listings, photos as URLs: the verdicts `knockoff scan` is expected to give
    let listings = listings_as_urls(&photos);
    let (status, body) =
        call("POST", &url("/v1/scan"), Some(&market), Body::Json(json!({"listings": listings})));
    assert_eq!(status, 200, "{body}");
    let got = json_of(&body)["verdicts"].as_array().unwrap().clone();
    assert_eq!(got.len(), listings.len());
    let expected = expected();
    let mut wrong = Vec::new();
    for v in &got {
        let id = v["listing_id"].as_str().unwrap_or("");
        let want = &expected[id]["expected"];
        if v["verdict"] != *want {
            wrong.push(format!("{id}: {} (expected {want}): {}", v["verdict"], v["reasons"]));
        }
    }
    assert!(wrong.is_empty(), "verdicts over HTTP differ:\n{}", wrong.join("\n"));

    // stored: paged reads with filters
    let flags = got.iter().filter(|v| v["verdict"] == "flag").count();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = call(
            "GET",
            &url(&format!("/v1/verdicts?verdict=flag&limit=5&after={after}")),
            Some(&analyst),
            Body::None,
        );
        assert_eq!(status, 200, "{body}");
        let page = json_of(&body);
        seen.extend(
            page["verdicts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["listing_id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), flags);
    let (_, body) = call(
        "GET",
        &url("/v1/verdicts?verdict=flag&brand=Acme&limit=500"),
        Some(&analyst),
        Body::None,
    );
    let acme = json_of(&body);
    assert!(!acme["verdicts"].as_array().unwrap().is_empty());
    assert!(acme["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| v["matches"][0]["brand"] == "Acme" && v["verdict"] == "flag"));

    // a query by upload
    let photo = std::fs::read(testdata("listings/L011-copy-border.jpg")).unwrap();
    let (status, body) = call(
        "POST",
        &url("/v1/query"),
        Some(&market),
        multipart(&[("price", "30"), ("currency", "USD"), ("seller", "s9")], &[("image", photo)]),
    );
    assert_eq!(status, 200, "{body}");
    let q = json_of(&body);
    assert_eq!(q["verdict"], "flag", "{q}");
    assert!(
        q["matches"][0]["listing_image"].as_str().unwrap().starts_with("upload:"),
        "server path shown: {q}"
    );

    // decisions: who and when, the latest on the verdict, exported as JSON Lines and CSV
    let first = got[0]["id"].as_i64().unwrap();
    for (decision, note) in
        [("genuine", "first look"), ("counterfeit", "stitching, logo, \"quotes\"")]
    {
        let (status, body) = call(
            "POST",
            &url(&format!("/v1/verdicts/{first}/decision")),
            Some(&analyst),
            Body::Json(json!({"decision": decision, "note": note})),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = call(
        "POST",
        &url(&format!("/v1/verdicts/{first}/decision")),
        Some(&analyst),
        Body::Json(json!({"decision": "maybe"})),
    );
    assert_eq!(status, 400, "{body}");
    let (_, body) = call("GET", &url(&format!("/v1/verdicts/{first}")), Some(&analyst), Body::None);
    let v = json_of(&body);
    assert_eq!(v["decision"]["decision"], "counterfeit");
    let analyst_id = analyst.split('_').nth(1).unwrap();
    assert_eq!(v["decision"]["key_id"], analyst_id);
    let (status, jsonl) = call("GET", &url("/v1/decisions"), Some(&analyst), Body::None);
    assert_eq!(status, 200);
    let rows: Vec<Value> = jsonl.lines().map(json_of).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["decision"], "counterfeit");
    assert_eq!(rows[1]["verdict_id"], first);
    assert_eq!(rows[1]["listing_id"], got[0]["listing_id"]);
    assert!(rows[1]["created_at"].as_str().unwrap().ends_with('Z'));
    let (_, csv) = call("GET", &url("/v1/decisions?format=csv"), Some(&analyst), Body::None);
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(&recs[1][6], "stitching, logo, \"quotes\"");

    // more decisions: flags are counterfeit except every fourth, the rest genuine
    let mut labels: Vec<(String, f64, bool)> = Vec::new(); // (brand, score, counterfeit) of the latest decisions
    for (i, v) in got.iter().enumerate() {
        if v["verdict"] == "error" || v["matches"].as_array().is_none_or(|m| m.is_empty()) {
            continue;
        }
        let counterfeit = i == 0 || (v["verdict"] == "flag" && i % 4 != 1);
        if i > 0 {
            let decision = if counterfeit { "counterfeit" } else { "genuine" };
            let id = v["id"].as_i64().unwrap();
            let (status, body) = call(
                "POST",
                &url(&format!("/v1/verdicts/{id}/decision")),
                Some(&analyst),
                Body::Json(json!({"decision": decision})),
            );
            assert_eq!(status, 201, "{body}");
        }
        let top = &v["matches"][0];
        labels.push((
            top["brand"].as_str().unwrap().into(),
            top["score"].as_f64().unwrap(),
            counterfeit,
        ));
    }

    // SIGTERM: a clean exit; keys never in the logs
    let log_before = server.log();
    assert!(log_before.contains("/v1/scan"), "request logs expected at debug level:\n{log_before}");
    assert_eq!(server.stop(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    for k in [&market, &analyst] {
        assert!(!log.contains(&k[16..]), "a key was logged");
    }

    // `knockoff calibrate --decisions`: the latest decisions as labels, per brand, precision at
    // the thresholds in force
    let t = &got[0]["thresholds"];
    let (m, r) = (t["match_threshold"].as_f64().unwrap(), t["review_threshold"].as_f64().unwrap());
    let acme: Vec<&(String, f64, bool)> = labels.iter().filter(|l| l.0 == "Acme").collect();
    let precision = |th: f64| {
        let sel: Vec<_> = acme.iter().filter(|l| l.1 >= th).collect();
        (sel.len(), sel.iter().filter(|l| l.2).count())
    };
    let out = run_ok(d, &["calibrate", "--decisions", "--brand", "Acme", "--json"], 0);
    let c = json_of(&out);
    assert_eq!(c["outcomes"], acme.len(), "{c}");
    assert_eq!(c["in_use"]["match_threshold"], m);
    let all = &c["in_use"]["groups"][0];
    assert_eq!(all["group"], "all");
    for (key, th) in [("matched", m), ("review", r)] {
        let (selected, tp) = precision(th);
        assert_eq!(all[key]["selected"], selected, "{key}: {c}");
        let want = if selected == 0 { 1.0 } else { tp as f64 / selected as f64 };
        assert!((all[key]["precision"].as_f64().unwrap() - want).abs() < 1e-9, "{key}: {c}");
    }
    if acme.iter().any(|l| !l.2 && l.1 >= m) {
        assert!(
            all["matched"]["precision"].as_f64().unwrap() < 1.0,
            "a genuine flag lowers precision: {c}"
        );
    }
    // every brand is reported without --brand; the table names the thresholds in force
    let out = run_ok(d, &["calibrate", "--decisions", "--json"], 0);
    let c = json_of(&out);
    assert_eq!(c["outcomes"], labels.len());
    let groups: Vec<&str> = c["in_use"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert!(groups.contains(&"Acme") && groups.contains(&"Northwind"), "{groups:?}");
    let text = run_ok(d, &["calibrate", "--decisions"], 0);
    assert!(text.contains("at the thresholds in force") && text.contains("Acme"), "{text}");
}

#[test]
fn a_genuine_decision_allow_lists_the_photo_for_its_product() {
    let photos = photo_server();
    let data = data_with("[server]\nallow_hosts = [\"127.0.0.1\"]\n");
    let d = data.path();
    let market = key(d, &["--role", "marketplace"]);
    let analyst = key(d, &["--role", "analyst"]);
    let analyst_id = analyst.split('_').nth(1).unwrap().to_string();
    let mut server = Server::start(d);
    let url = |p: &str| format!("{}{p}", server.base);
    let listing = |id: &str, seller: &str, file: &str| {
        json!({"listing_id": id, "seller_id": seller, "price": 19.45, "currency": "USD",
            "images": [format!("{photos}/listings/{file}")]})
    };
    let scan = |l: Value| -> Value {
        let (s, b) =
            call("POST", &url("/v1/scan"), Some(&market), Body::Json(json!({"listings": [l]})));
        assert_eq!(s, 200, "{b}");
        json_of(&b)["verdicts"][0].clone()
    };
    let decide = |id: i64, decision: &str| -> Value {
        let (s, b) = call(
            "POST",
            &url(&format!("/v1/verdicts/{id}/decision")),
            Some(&analyst),
            Body::Json(json!({"decision": decision, "note": "checked"})),
        );
        assert_eq!(s, 201, "{b}");
        json_of(&b)
    };
    let same = || listing("L005", "bestdeals88", "L005-copy-text-price.jpg");
    let not_about = |v: &Value, product: &str| {
        v["verdict"] != "flag"
            && v["matches"].as_array().unwrap().iter().all(|m| m["product_id"] != product)
    };

    let first = scan(same());
    assert_eq!(first["verdict"], "flag", "{first}");
    assert_eq!(first["matches"][0]["product_id"], "acme-diver");
    let id = first["id"].as_i64().unwrap();
    let decided = decide(id, "genuine");
    let added = &decided["allow_list"]["added"][0];
    assert_eq!(added["product_id"], "acme-diver", "{decided}");
    assert_eq!(added["decided_by"], analyst_id.as_str());
    assert_eq!(added["verdict_id"], id);

    // the same photo again: not flagged for acme-diver, and the verdict says why
    let again = scan(same());
    assert!(not_about(&again, "acme-diver"), "{again}");
    assert_eq!(again["allowed"][0]["entry"]["verdict_id"], id, "{again}");
    let reasons = again["reasons"].to_string();
    for part in [
        "allow-list of Acme / acme-diver",
        "decided genuine",
        &analyst_id,
        &format!("verdict {id}"),
    ] {
        assert!(reasons.contains(part), "{part} missing: {reasons}");
    }
    // a different photo of the same product is still flagged
    let other = scan(listing("L015", "topbrand_outlet", "L015-copy-rotate-crop.jpg"));
    assert_eq!(other["verdict"], "flag", "{other}");
    assert_eq!(other["matches"][0]["product_id"], "acme-diver");
    assert!(other.get("allowed").is_none(), "{other}");
    // this photo is not a copy of the reference photo (its hash is far): allowed for any seller
    assert!(first["matches"][0]["hash_distance"].is_null(), "{first}");
    assert!(added.get("seller_id").is_none(), "{decided}");
    let elsewhere = scan(listing("L005b", "someone-else", "L005-copy-text-price.jpg"));
    assert!(not_about(&elsewhere, "acme-diver"), "{elsewhere}");
    // a photo that copies the brand's reference photo (hashes near) is allowed for its seller only
    let copy = scan(listing("L008", "shop-a", "L008-copy-downscale.jpg"));
    assert_eq!(copy["matches"][0]["product_id"], "acme-classic", "{copy}");
    assert!(!copy["matches"][0]["hash_distance"].is_null(), "{copy}");
    let decided_copy = decide(copy["id"].as_i64().unwrap(), "not_our_product");
    assert_eq!(decided_copy["allow_list"]["added"][0]["seller_id"], "shop-a", "{decided_copy}");
    assert!(not_about(&scan(listing("L008", "shop-a", "L008-copy-downscale.jpg")), "acme-classic"));
    let other_seller = scan(listing("L008c", "shop-b", "L008-copy-downscale.jpg"));
    assert_eq!(other_seller["matches"][0]["product_id"], "acme-classic", "{other_seller}");
    assert_eq!(other_seller["verdict"], copy["verdict"], "{other_seller}");

    // a later counterfeit decision takes the photo off the list; genuine puts it back
    assert_eq!(decide(id, "counterfeit")["allow_list"]["removed"], 1);
    assert_eq!(scan(same())["verdict"], "flag");
    decide(id, "genuine");
    assert_eq!(server.stop(), Some(0), "{}", server.log());

    // `knockoff scan` reads the same allow-list
    let input = d.join("again.jsonl");
    let photo = testdata("listings/L005-copy-text-price.jpg");
    let line = json!({"listing_id": "L005", "seller_id": "bestdeals88", "price": 19.45, "currency": "USD",
        "images": [photo.to_str().unwrap()]});
    std::fs::write(&input, format!("{line}\n")).unwrap();
    let out = run_ok(d, &["scan", input.to_str().unwrap(), "--json"], 0);
    let v = json_of(out.trim());
    assert!(not_about(&v, "acme-diver"), "{v}");
    assert!(v["reasons"].to_string().contains("allow-list of Acme / acme-diver"), "{v}");
}

/// A job body of `n` lines: every `every`-th a real listing (photo by URL), the others lines that
/// cannot be checked (not JSON, no seller, a server path), each with a listing id `J{i}` (none
/// readable in the lines that are not JSON).
fn job_body(photos: &str, n: usize, every: usize) -> (String, Vec<Option<String>>) {
    // the bundled listings that can be checked (L029 on are broken on purpose)
    let real: Vec<Value> = listings_as_urls(photos)
        .into_iter()
        .filter(|l| l["listing_id"].as_str().unwrap() < "L029")
        .collect();
    let mut body = String::new();
    let mut ids = Vec::new();
    for i in 1..=n {
        let id = format!("J{i}");
        let line = if i % every == 0 {
            let mut l = real[(i / every) % real.len()].clone();
            l["listing_id"] = json!(id);
            l.to_string()
        } else {
            match i % 3 {
                0 => format!("{{\"listing_id\": \"{id}\", not json"),
                1 => json!({"listing_id": id, "seller_id": "s", "images": ["/etc/passwd"]})
                    .to_string(),
                _ => json!({"listing_id": id, "images": ["../x.jpg"]}).to_string(),
            }
        };
        body.push_str(&line);
        body.push('\n');
        if i % 50 == 0 {
            body.push('\n'); // blank lines are skipped
        }
        ids.push(Some(id).filter(|_| i % every == 0 || i % 3 != 0));
    }
    (body, ids)
}

fn job_status(base: &str, key: &str, id: i64) -> Value {
    let (status, body) = call("GET", &format!("{base}/v1/jobs/{id}"), Some(key), Body::None);
    assert_eq!(status, 200, "{body}");
    json_of(&body)
}

#[test]
fn a_job_survives_kill_9_with_every_verdict_once() {
    let photos = photo_server();
    let data = data_with("[server]\nallow_hosts = [\"127.0.0.1\"]\n");
    let d = data.path();
    let market = key(d, &["--role", "marketplace"]);
    let other = key(d, &["--role", "marketplace"]);
    let (body, ids) = job_body(&photos, 1200, 8);
    let mut server = Server::start(d);
    let (status, answer) = call(
        "POST",
        &format!("{}/v1/jobs", server.base),
        Some(&market),
        Body::Raw("application/x-ndjson".into(), body.into_bytes()),
    );
    assert_eq!(status, 202, "{answer}");
    let job = json_of(&answer);
    assert_eq!(job["total"], 1200, "more than /v1/scan's 1000: {job}");
    let id = job["id"].as_i64().unwrap();
    let (status, _) =
        call("GET", &format!("{}/v1/jobs/{id}", server.base), Some(&other), Body::None);
    assert_eq!(status, 404, "another marketplace's job");
    // limits: no listing, and more than 100 000
    let ndjson = |text: String| Body::Raw("application/x-ndjson".into(), text.into_bytes());
    let (status, e) =
        call("POST", &format!("{}/v1/jobs", server.base), Some(&other), ndjson("\n  \n".into()));
    assert_eq!((status, json_of(&e)["code"].as_str()), (400, Some("bad_request")), "{e}");
    let (status, e) = call(
        "POST",
        &format!("{}/v1/jobs", server.base),
        Some(&other),
        ndjson("{}\n".repeat(100_001)),
    );
    assert_eq!((status, json_of(&e)["code"].as_str()), (413, Some("too_many_listings")), "{e}");

    // kill -9 in the middle of the job
    let t = std::time::Instant::now();
    let done_at_kill = loop {
        let s = job_status(&server.base, &market, id);
        let done = s["done"].as_i64().unwrap();
        if done >= 100 {
            server.kill9();
            break done;
        }
        assert!(t.elapsed().as_secs() < 300, "job too slow: {s}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(
        done_at_kill < 1200,
        "the job finished before the kill ({done_at_kill}); make it longer"
    );

    // restart: the job goes on by itself; a following result stream ends when it is done
    let server = Server::start(d);
    let s = job_status(&server.base, &market, id);
    assert!(s["done"].as_i64().unwrap() >= done_at_kill, "{s}");
    let (tx, rx) = std::sync::mpsc::channel();
    let (base, k) = (server.base.clone(), market.clone());
    std::thread::spawn(move || {
        let _ = tx.send(call("GET", &format!("{base}/v1/jobs/{id}/results"), Some(&k), Body::None));
    });
    let t = std::time::Instant::now();
    let s = loop {
        let s = job_status(&server.base, &market, id);
        if s["state"] == "done" {
            break s;
        }
        assert!(t.elapsed().as_secs() < 300, "the job did not finish after the restart: {s}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (status, results) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the result stream ends when the job is done");
    assert_eq!(status, 200, "{results}");
    let (_, ready) = call(
        "GET",
        &format!("{}/v1/jobs/{id}/results?follow=false", server.base),
        Some(&market),
        Body::None,
    );
    assert_eq!(ready, results, "the streamed results are the stored ones");
    assert_eq!(s["done"], 1200, "{s}");
    let lines: Vec<Value> = results.lines().map(json_of).collect();
    let got: Vec<Option<String>> =
        lines.iter().map(|v| v["listing_id"].as_str().map(String::from)).collect();
    assert_eq!(got, ids, "every listing once, in order");
    for (i, v) in lines.iter().enumerate() {
        let real = (i + 1) % 8 == 0;
        assert_eq!(v["verdict"] != "error", real, "{v}");
        if !real {
            assert!(
                v["reasons"][0].as_str().unwrap().contains(&format!("{}", v["job_line"]))
                    || v["reasons"][0].as_str().unwrap().contains("refused"),
                "{v}"
            );
        }
    }
    let flags = lines.iter().filter(|v| v["verdict"] == "flag").count();
    assert!(flags > 50, "{flags} flags");
    let total: i64 = s["verdicts"].as_object().unwrap().values().map(|n| n.as_i64().unwrap()).sum();
    assert_eq!(total, 1200, "{s}");

    // no verdict stored twice: the marketplace's stored verdicts are exactly the job's
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let (_, body) = call(
            "GET",
            &format!("{}/v1/verdicts?limit=500&after={after}", server.base),
            Some(&market),
            Body::None,
        );
        let page = json_of(&body);
        stored
            .extend(page["verdicts"].as_array().unwrap().iter().map(|v| v["id"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let mut from_job: Vec<i64> = lines.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    from_job.sort();
    assert_eq!(stored, from_job, "stored verdicts are the job's, each once");
    // continuing a stream after a position
    let (_, rest) = call(
        "GET",
        &format!("{}/v1/jobs/{id}/results?after=1190", server.base),
        Some(&market),
        Body::None,
    );
    assert_eq!(rest.lines().count(), 10);
    drop(server);
}

#[test]
fn networks_are_shown_to_the_brands_they_touch() {
    let data = data_with("");
    let d = data.path();
    let ring = testdata("ring/listings.jsonl");
    run_ok(d, &["scan", ring.to_str().unwrap()], 0);
    run_ok(d, &["network", "build"], 0);
    let acme = key(d, &["--role", "brand", "--brand", "Acme"]);
    let lumen = key(d, &["--role", "brand", "--brand", "Lumen"]);
    let analyst = key(d, &["--role", "analyst"]);
    let analyst_lumen = key(d, &["--role", "analyst", "--brand", "Lumen"]);
    let server = Server::start(d);
    let get = |path: &str, k: &str| {
        let (status, body) = call("GET", &format!("{}{path}", server.base), Some(k), Body::None);
        (status, json_of(&body))
    };
    let (status, all) = get("/v1/networks", &analyst);
    assert_eq!(status, 200, "{all}");
    let all = all["networks"].as_array().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");
    let case = &all[0];
    let id = case["network_id"].as_str().unwrap();
    assert_eq!(case["brands"], json!(["Acme", "Northwind"]));
    let sellers: Vec<&str> = case["sellers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seller_id"].as_str().unwrap())
        .collect();
    assert_eq!(sellers, ["ring-a", "ring-b", "ring-c"]);

    // Acme sees it, without Northwind's listings
    let (status, mine) = get("/v1/networks", &acme);
    assert_eq!(status, 200);
    let mine = &mine["networks"][0];
    assert_eq!(mine["network_id"], id);
    assert_eq!(mine["brands"], json!(["Acme"]));
    let listings = mine["listings"].as_array().unwrap();
    assert!(!listings.is_empty());
    assert!(listings.iter().all(|l| l["brand"].is_null() || l["brand"] == "Acme"), "{listings:?}");
    assert!(
        case["listings"].as_array().unwrap().len() > listings.len(),
        "Northwind's listings are left out"
    );
    let (status, one) = get(&format!("/v1/networks/{id}"), &acme);
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["sellers"], case["sellers"]);
    // Lumen's products are not touched: nothing to see
    for k in [&lumen, &analyst_lumen] {
        let (status, none) = get("/v1/networks", k);
        assert_eq!(status, 200);
        assert_eq!(none["networks"], json!([]));
        let (status, e) = get(&format!("/v1/networks/{id}"), k);
        assert_eq!(status, 404, "{e}");
    }
    let (status, e) = get("/v1/networks?brand=Acme", &lumen);
    assert_eq!((status, e["code"].as_str()), (403, Some("forbidden_brand")));
    let (_, filtered) = get("/v1/networks?brand=Lumen", &analyst);
    assert_eq!(filtered["networks"], json!([]));
    let (_, enforced) = get("/v1/networks?status=enforced", &analyst);
    assert_eq!(enforced["networks"], json!([]));
    drop(server);
}
