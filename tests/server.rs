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
            let line = lines
                .next()
                .expect("server exited before listening")
                .expect("read stderr");
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
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let res = match body {
        Body::None => agent.run(req.body(()).unwrap()),
        Body::Json(v) => agent.run(req.header("Content-Type", "application/json").body(serde_json::to_vec(&v).unwrap()).unwrap()),
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
        (
            "analyst_acme",
            key(d, &["--role", "analyst", "--brand", "Acme"]),
        ),
        (
            "brand_acme",
            key(d, &["--role", "brand", "--brand", "Acme"]),
        ),
        (
            "brand_other",
            key(d, &["--role", "brand", "--brand", "Northwind"]),
        ),
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
    let k = |name: &str| {
        keys.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| k.as_str())
    };

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
    assert!(
        failures.is_empty(),
        "authorisation table:\n{}",
        failures.join("\n")
    );

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
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let tried: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, r, ..)| (m.to_string(), r.to_string()))
        .collect();
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
    assert!(
        export.trim().is_empty(),
        "another brand's decisions leaked: {export}"
    );
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
    for bad in [
        "/etc/passwd",
        "../../etc/passwd",
        "catalog/acme/acme-diver_1.jpg",
        "file:///etc/passwd",
    ] {
        let (status, body) = call(
            "POST",
            &url("/v1/products"),
            Some(&admin),
            Body::Json(product(json!([bad]))),
        );
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
        let (status, body) = call(
            "POST",
            &url("/v1/query"),
            Some(&admin),
            multipart(&[("image_url", bad)], &[]),
        );
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // a URL to a loopback address is refused when the host is not allowed
    let loopback = format!("{photos}/catalog/acme/acme-diver_1.jpg");
    let (status, body) = call(
        "POST",
        &url("/v1/products"),
        Some(&admin),
        Body::Json(product(json!([loopback]))),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("non-public"), "{body}");
    let listing = json!({"listing_id": "X", "seller_id": "s", "images": [format!("{photos}/listings/L011-copy-border.jpg")]});
    let (_, body) = call(
        "POST",
        &url("/v1/scan"),
        Some(&admin),
        Body::Json(json!({"listings": [listing]})),
    );
    let v = &json_of(&body)["verdicts"][0];
    assert_eq!(v["verdict"], "error", "{v}");
    assert!(
        v["reasons"][0].as_str().unwrap().contains("non-public"),
        "{v}"
    );
    // body limit (64 KiB here), and the listing cap
    let big = json!({"listings": [{"listing_id": "x".repeat(70_000), "seller_id": "s", "images": ["https://example.com/a.jpg"]}]});
    let (status, body) = call("POST", &url("/v1/scan"), Some(&admin), Body::Json(big));
    assert_eq!(status, 413, "{body}");
    assert_eq!(json_of(&body)["code"], "too_large");
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"listing_id": i.to_string()}))
        .collect();
    let (status, body) = call(
        "POST",
        &url("/v1/scan"),
        Some(&admin),
        Body::Json(json!({"listings": many})),
    );
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
    let busy = answers
        .iter()
        .filter(|(s, b)| *s == 503 && json_of(b)["code"] == "busy")
        .count();
    assert!(
        ok >= 1 && busy >= 1 && ok + busy == answers.len(),
        "{answers:?}"
    );
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
    assert!(
        why.contains("localhost") && why.contains("non-public"),
        "{why} (port {port})"
    );
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
    let (status, body) = call(
        "POST",
        &url("/v1/scan"),
        Some(&market),
        Body::Json(json!({"listings": listings})),
    );
    assert_eq!(status, 200, "{body}");
    let got = json_of(&body)["verdicts"].as_array().unwrap().clone();
    assert_eq!(got.len(), listings.len());
    let expected = expected();
    let mut wrong = Vec::new();
    for v in &got {
        let id = v["listing_id"].as_str().unwrap_or("");
        let want = &expected[id]["expected"];
        if v["verdict"] != *want {
            wrong.push(format!(
                "{id}: {} (expected {want}): {}",
                v["verdict"], v["reasons"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "verdicts over HTTP differ:\n{}",
        wrong.join("\n")
    );

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
        multipart(
            &[("price", "30"), ("currency", "USD"), ("seller", "s9")],
            &[("image", photo)],
        ),
    );
    assert_eq!(status, 200, "{body}");
    let q = json_of(&body);
    assert_eq!(q["verdict"], "flag", "{q}");
    assert!(
        q["matches"][0]["listing_image"]
            .as_str()
            .unwrap()
            .starts_with("upload:"),
        "server path shown: {q}"
    );

    // decisions: who and when, the latest on the verdict, exported as JSON Lines and CSV
    let first = got[0]["id"].as_i64().unwrap();
    for (decision, note) in [
        ("genuine", "first look"),
        ("counterfeit", "stitching, logo, \"quotes\""),
    ] {
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
    let (_, body) = call(
        "GET",
        &url(&format!("/v1/verdicts/{first}")),
        Some(&analyst),
        Body::None,
    );
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
    let (_, csv) = call(
        "GET",
        &url("/v1/decisions?format=csv"),
        Some(&analyst),
        Body::None,
    );
    let mut r = csv::Reader::from_reader(csv.as_bytes());
    let recs: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(&recs[1][6], "stitching, logo, \"quotes\"");

    // SIGTERM: a clean exit; keys never in the logs
    let log_before = server.log();
    assert!(
        log_before.contains("/v1/scan"),
        "request logs expected at debug level:\n{log_before}"
    );
    assert_eq!(server.stop(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    for k in [&market, &analyst] {
        assert!(!log.contains(&k[16..]), "a key was logged");
    }
}
