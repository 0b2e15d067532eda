//! The review console (`/console` of `knockoff serve`) over real HTTP on a loopback port, as a
//! browser speaks to it but without one (tests/browser.rs drives Chromium): sign-in and its
//! cookie, form posts refused without the session's token or from another site, a brand key's
//! queue and catalog limited to its brand, the verdict page and its photos, decisions stored
//! exactly as the API stores them, photo upload from the catalog page.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use common::*;
use serde_json::{json, Value};

/// A running `knockoff serve`; killed on drop.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = cmd(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start knockoff serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines.next().expect("server exited before listening").expect("read stderr");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers of interest, body.
struct Answer {
    status: u16,
    location: String,
    set_cookie: String,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends a request without following redirects (a browser's view of each step).
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut res =
        agent.run(req.body(body).unwrap()).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let header = |name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (location, set_cookie, content_type) =
        (header("location"), header("set-cookie"), header("content-type"));
    Answer {
        status: res.status().as_u16(),
        location,
        set_cookie,
        content_type,
        body: res.body_mut().read_to_vec().unwrap_or_default(),
    }
}

/// A browser's console session: its cookie and the CSRF token of its forms.
struct Session {
    cookie: String,
    csrf: String,
}

fn form_ct() -> (&'static str, &'static str) {
    ("Content-Type", "application/x-www-form-urlencoded")
}

/// Signs in with `key`; checks the cookie's attributes.
fn sign_in(server: &Server, key: &str) -> Session {
    let a = send(
        "POST",
        &server.url("/console/login"),
        &[form_ct()],
        format!("key={key}").into_bytes(),
    );
    assert_eq!(a.status, 303, "sign-in: {}", a.text());
    assert_eq!(a.location, "/console/queue");
    let c = &a.set_cookie;
    assert!(c.starts_with("knockoff_session="), "{c}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(c.split("; ").any(|p| p == attr), "cookie lacks {attr}: {c}");
    }
    let cookie = c.split(';').next().unwrap().to_string();
    let page = send("GET", &server.url("/console/queue"), &[("Cookie", &cookie)], Vec::new());
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    Session { cookie, csrf }
}

fn key(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    run_ok(data, &all, 0).trim().to_string()
}

/// A multipart body of text fields and one photo.
fn multipart(texts: &[(&str, &str)], file: (&str, &[u8])) -> (String, Vec<u8>) {
    let boundary = "knockoffConsoleTest";
    let mut b = Vec::new();
    for (name, value) in texts {
        write!(
            b,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    }
    write!(b, "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n", file.0).unwrap();
    b.extend_from_slice(file.1);
    write!(b, "\r\n--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), b)
}

/// Queries one bundled listing photo as a marketplace; returns the stored verdict's id.
fn query(server: &Server, key: &str, photo: &str, seller: &str) -> i64 {
    let bytes = std::fs::read(testdata(&format!("listings/{photo}"))).unwrap();
    let id = photo.split('.').next().unwrap();
    let (ct, body) = multipart(
        &[("listing_id", id), ("seller", seller), ("price", "25"), ("currency", "USD")],
        ("image", &bytes),
    );
    let auth = format!("Bearer {key}");
    let a = send(
        "POST",
        &server.url("/v1/query"),
        &[("Authorization", &auth), ("Content-Type", &ct)],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["verdict"], "flag", "{photo}: {v}");
    v["id"].as_i64().unwrap()
}

/// The verdict ids a queue page links to, in order.
fn queue_ids(html: &str) -> Vec<i64> {
    html.split("<a href=\"/console/verdicts/")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .collect()
}

fn api(server: &Server, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let a = match body {
        Some(b) => send(
            "POST",
            &server.url(path),
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            serde_json::to_vec(&b).unwrap(),
        ),
        None => send("GET", &server.url(path), &[("Authorization", &auth)], Vec::new()),
    };
    let text = a.text();
    let v = if path.starts_with("/v1/decisions") {
        Value::Array(text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (a.status, v)
}

#[test]
fn console_sessions_csrf_brand_scope_and_decisions_as_the_api_stores_them() {
    let data = catalog_with(None);
    let d = data.path();
    let market = key(d, &["--role", "marketplace"]);
    let analyst = key(d, &["--role", "analyst"]);
    let acme = key(d, &["--role", "brand", "--brand", "Acme"]);
    let server = Server::start(d);
    let chrono = query(&server, &market, "L002-copy-crop-hard.jpg", "shop-a"); // Acme
    let runner = query(&server, &market, "L001-copy-crop.jpg", "shop-b"); // Northwind
    let tote = query(&server, &market, "L003-copy-jpeg-q20.jpg", "shop-c"); // Lumen
    let diver = query(&server, &market, "L005-copy-text-price.jpg", "shop-d"); // Acme

    // signed out: pages send to the sign-in page, a wrong key gets 401
    let a = send("GET", &server.url("/console/queue"), &[], Vec::new());
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"));
    let a = send(
        "POST",
        &server.url("/console/login"),
        &[form_ct()],
        b"key=ko_0123456789ab_wrong".to_vec(),
    );
    assert_eq!(a.status, 401);
    assert!(a.set_cookie.is_empty() && a.text().contains("unknown or revoked key"));
    // a sign-in form posted from another site is refused
    let a = send(
        "POST",
        &server.url("/console/login"),
        &[form_ct(), ("Origin", "https://evil.example")],
        format!("key={analyst}").into_bytes(),
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert!(a.set_cookie.is_empty());

    let s = sign_in(&server, &analyst);
    let page = send("GET", &server.url("/console/queue"), &[("Cookie", &s.cookie)], Vec::new());
    let ids = queue_ids(&page.text());
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| [chrono, runner, tote, diver].contains(id)));

    // a brand key sees only its brand: queue, verdict pages, photos, catalog
    let b = sign_in(&server, &acme);
    let page =
        send("GET", &server.url("/console/queue"), &[("Cookie", &b.cookie)], Vec::new()).text();
    let mut seen = queue_ids(&page);
    seen.sort();
    let mut want = vec![chrono, diver];
    want.sort();
    assert_eq!(seen, want, "Acme's queue");
    let other = send(
        "GET",
        &server.url("/console/queue?brand=Northwind"),
        &[("Cookie", &b.cookie)],
        Vec::new(),
    );
    assert_eq!(other.status, 403, "another brand's queue");
    for path in
        [format!("/console/verdicts/{runner}"), format!("/console/photo/verdict/{runner}/listing")]
    {
        let a = send("GET", &server.url(&path), &[("Cookie", &b.cookie)], Vec::new());
        assert_eq!(a.status, 404, "{path} for Acme: {}", a.text());
    }
    let catalog =
        send("GET", &server.url("/console/catalog"), &[("Cookie", &b.cookie)], Vec::new()).text();
    assert!(
        catalog.contains("acme-chrono")
            && !catalog.contains("nw-runner")
            && !catalog.contains("lumen-tote"),
        "Acme's catalog"
    );
    let a = send(
        "GET",
        &server.url("/console/photo/product/Northwind/nw-runner/0"),
        &[("Cookie", &b.cookie)],
        Vec::new(),
    );
    assert_eq!(a.status, 403);

    verdict_page_and_photos(&server, &s, &analyst, chrono);
    refused_posts(&server, &s, &analyst, chrono);
    decided_as_the_api_decides(&server, &s, &analyst, chrono, tote);
    catalog_upload(&server, &b);
    matched_in_a_region(&server, &s, &analyst, &market);

    // signing out ends the session on the server
    let a = send(
        "POST",
        &server.url("/console/logout"),
        &[("Cookie", &s.cookie), form_ct()],
        format!("csrf={}", s.csrf).into_bytes(),
    );
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"));
    assert!(a.set_cookie.contains("Max-Age=0"), "{}", a.set_cookie);
    let a = send("GET", &server.url("/console/queue"), &[("Cookie", &s.cookie)], Vec::new());
    assert_eq!(
        (a.status, a.location.as_str()),
        (303, "/console/login"),
        "the old session still signs in"
    );
    // revoking a key ends its sessions at once
    let acme_id = acme.split('_').nth(1).unwrap();
    run_ok(d, &["keys", "revoke", acme_id], 0);
    let a = send("GET", &server.url("/console/queue"), &[("Cookie", &b.cookie)], Vec::new());
    assert_eq!((a.status, a.location.as_str()), (303, "/console/login"), "a revoked key's session");
}

/// The verdict page shows both photos, the score in words, the price and the decision form, and
/// the verified local features the API returns with the verdict circled on both photos; the
/// photos are JPEGs the server makes from what it stored.
fn verdict_page_and_photos(server: &Server, s: &Session, analyst: &str, id: i64) {
    let a = send(
        "GET",
        &server.url(&format!("/console/verdicts/{id}")),
        &[("Cookie", &s.cookie)],
        Vec::new(),
    );
    assert_eq!(a.status, 200);
    let html = a.text();
    let (status, v) = api(server, analyst, &format!("/v1/verdicts/{id}"), None);
    assert_eq!(status, 200, "{v}");
    let top = &v["matches"][0];
    let features = top["features"].as_array().unwrap_or_else(|| panic!("no features: {v}"));
    let (n, inliers) = (features.len(), top["inliers"].as_u64().unwrap_or(0) as usize);
    assert!(n > 0 && n == inliers.min(48), "{n} features of {inliers} inliers");
    for which in ["listing-features", "reference-features"] {
        let after = html.split(&format!("id=\"{which}\"")).nth(1);
        let svg = after.and_then(|r| r.split("</svg>").next());
        let svg = svg.unwrap_or_else(|| panic!("no {which}"));
        assert_eq!(svg.matches("<circle ").count(), n, "{which}: {svg}");
    }
    let legend = "verified local features (ORB points that one homography explains)";
    assert!(html.contains(&format!("{inliers} {legend}")), "no legend for {inliers} inliers");
    assert!(html.contains("id=\"feature-links\""), "no place for the lines");
    assert!(!html.contains("uploads/"), "the verdict page shows a server path");
    for part in [
        "id=\"listing-photo\"",
        "id=\"reference-photo\"",
        "Score: ",
        "below the reference price",
        "data-key=\"c\"",
        "data-key=\"g\"",
        "data-key=\"n\"",
    ] {
        assert!(html.contains(part), "the verdict page lacks {part}");
    }
    for which in ["listing", "reference"] {
        let a = send(
            "GET",
            &server.url(&format!("/console/photo/verdict/{id}/{which}")),
            &[("Cookie", &s.cookie)],
            Vec::new(),
        );
        assert_eq!(a.status, 200, "{which}: {}", a.text());
        assert_eq!(a.content_type, "image/jpeg");
        let img = image::load_from_memory(&a.body).expect("a JPEG");
        assert!(
            img.width().max(img.height()) <= 720 && img.width() > 50,
            "{which}: {}x{}",
            img.width(),
            img.height()
        );
    }
    let a = send(
        "GET",
        &server.url(&format!("/console/photo/verdict/{id}/..%2F..%2Fetc%2Fpasswd")),
        &[("Cookie", &s.cookie)],
        Vec::new(),
    );
    assert_eq!(a.status, 404);
}

/// A listing photo whose inset matched (its `listing_image` names `photo#inset`): the page
/// shows the photo itself, with the features verified in the inset drawn over it.
fn matched_in_a_region(server: &Server, s: &Session, analyst: &str, market: &str) {
    let id = query(server, market, "L012-copy-plain-bg.webp", "shop-e");
    let (_, v) = api(server, analyst, &format!("/v1/verdicts/{id}"), None);
    let named = v["matches"][0]["listing_image"].as_str().unwrap_or("");
    assert!(named.starts_with("upload:") && named.ends_with("#inset"), "{v}");
    let cookie = [("Cookie", s.cookie.as_str())];
    let get = |path: String| send("GET", &server.url(&path), &cookie, Vec::new());
    let html = get(format!("/console/verdicts/{id}")).text();
    for part in ["id=\"listing-photo\"", "id=\"listing-features\"", "id=\"reference-features\""] {
        assert!(html.contains(part), "the page of a region's match lacks {part}");
    }
    let a = get(format!("/console/photo/verdict/{id}/listing"));
    assert_eq!((a.status, a.content_type.as_str()), (200, "image/jpeg"), "{}", a.text());
}

/// A decision posted without the session's token, with another token, from another site, or
/// without a session stores nothing.
fn refused_posts(server: &Server, s: &Session, analyst: &str, id: i64) {
    let url = server.url(&format!("/console/verdicts/{id}/decision"));
    let ok_body = format!("csrf={}&decision=genuine", s.csrf);
    type Refused<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: [Refused; 4] = [
        ("no token", vec![("Cookie", &s.cookie)], "decision=genuine".into()),
        (
            "a wrong token",
            vec![("Cookie", &s.cookie)],
            format!("csrf={}&decision=genuine", "0".repeat(64)),
        ),
        (
            "another site",
            vec![("Cookie", &s.cookie), ("Origin", "http://evil.example")],
            ok_body.clone(),
        ),
        ("no session", vec![], ok_body),
    ];
    for (what, mut headers, body) in cases {
        headers.push(form_ct());
        let a = send("POST", &url, &headers, body.into_bytes());
        let expected = if what == "no session" { 303 } else { 403 };
        assert_eq!(a.status, expected, "{what}: {}", a.text());
    }
    let (_, stored) = api(server, analyst, "/v1/decisions", None);
    assert_eq!(stored, json!([]), "a refused post stored a decision");
}

/// A decision from the console and one from the API give the same record: same fields, same
/// key, same shapes; the console then shows the next verdict.
fn decided_as_the_api_decides(
    server: &Server,
    s: &Session,
    analyst: &str,
    by_console: i64,
    by_api: i64,
) {
    let origin = server.base.clone();
    let body = format!("csrf={}&decision=counterfeit&note=logo+font+%22differs%22", s.csrf);
    let url = server.url(&format!("/console/verdicts/{by_console}/decision"));
    let a = send(
        "POST",
        &url,
        &[("Cookie", &s.cookie), form_ct(), ("Origin", &origin)],
        body.into_bytes(),
    );
    assert_eq!(a.status, 303, "{}", a.text());
    assert!(a.location.contains(&format!("saved={by_console}&as=counterfeit")), "{}", a.location);
    assert!(
        a.location.starts_with("/console/verdicts/") || a.location.starts_with("/console/queue"),
        "{}",
        a.location
    );
    let (status, _) = api(
        server,
        analyst,
        &format!("/v1/verdicts/{by_api}/decision"),
        Some(json!({"decision": "counterfeit", "note": "logo font \"differs\""})),
    );
    assert_eq!(status, 201);
    let (_, rows) = api(server, analyst, "/v1/decisions", None);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let strip = |r: &Value| {
        let mut r = r.as_object().unwrap().clone();
        for k in
            ["id", "verdict_id", "listing_id", "created_at", "seller_id", "product_id", "brand"]
        {
            r.remove(k);
        }
        r
    };
    assert_eq!(rows[0]["verdict_id"], by_console);
    assert_eq!(strip(&rows[0]), strip(&rows[1]), "console vs API decision records");
    let keys = |r: &Value| r.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&rows[0]), keys(&rows[1]));
    let (_, a) = api(server, analyst, &format!("/v1/verdicts/{by_console}"), None);
    let (_, b) = api(server, analyst, &format!("/v1/verdicts/{by_api}"), None);
    assert_eq!(strip(&a["decision"]), strip(&b["decision"]), "the latest decision on the verdict");
    assert_eq!(a["decision"]["note"], "logo font \"differs\"");
    // an unknown decision is refused as by the API, nothing stored
    let a = send(
        "POST",
        &url,
        &[("Cookie", &s.cookie), form_ct()],
        format!("csrf={}&decision=maybe", s.csrf).into_bytes(),
    );
    assert!(a.status == 400 || a.status == 422, "{}: {}", a.status, a.text());
    let (_, rows) = api(server, analyst, "/v1/decisions", None);
    assert_eq!(rows.as_array().unwrap().len(), 2);
}

/// A brand key adds a photo to its product from the catalog page (with the session's token);
/// another brand's product is refused.
fn catalog_upload(server: &Server, b: &Session) {
    let photo = std::fs::read(testdata("catalog/acme/acme-diver_1.jpg")).unwrap();
    let flipped = image::load_from_memory(&photo).unwrap().fliph();
    let mut bytes = Vec::new();
    flipped.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Jpeg).unwrap();
    let (ct, body) = multipart(&[("csrf", &b.csrf)], ("photo", &bytes));
    let before =
        send("GET", &server.url("/console/catalog"), &[("Cookie", &b.cookie)], Vec::new()).text();
    let count = |html: &str| html.matches(" of acme-diver\"").count();
    let a = send(
        "POST",
        &server.url("/console/catalog/Acme/acme-diver/photos"),
        &[("Cookie", &b.cookie), ("Content-Type", &ct)],
        body.clone(),
    );
    assert_eq!(a.status, 303, "{}", a.text());
    let after = send("GET", &server.url(&a.location), &[("Cookie", &b.cookie)], Vec::new()).text();
    assert!(count(&before) > 0, "thumbnails of acme-diver");
    assert_eq!(count(&after), count(&before) + 1, "one more thumbnail");
    let a = send(
        "POST",
        &server.url("/console/catalog/Northwind/nw-runner/photos"),
        &[("Cookie", &b.cookie), ("Content-Type", &ct)],
        body,
    );
    assert_eq!(a.status, 403, "{}", a.text());
    let (ct, body) = multipart(&[], ("photo", &bytes));
    let a = send(
        "POST",
        &server.url("/console/catalog/Acme/acme-diver/photos"),
        &[("Cookie", &b.cookie), ("Content-Type", &ct)],
        body,
    );
    assert_eq!(a.status, 403, "an upload without the token: {}", a.text());
}
