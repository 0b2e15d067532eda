//! In headless Chromium (Debian's `chromium` and `chromium-driver`), driven over WebDriver with
//! `fantoccini`:
//! - the review console: sign in with a key, triage three verdicts with the keyboard (`j`/`k`,
//!   `c`/`g`/`n`), the decisions found stored through the API; screenshots of the queue and a
//!   verdict page;
//! - a case file from `knockoff network export --format html`: its SVG graph, regions table and
//!   photo thumbnails render; a screenshot.
//!
//! Screenshots are written to `target/test-output/`. The tests run only with
//! `KNOCKOFF_BROWSER_TESTS=1` (set by `.ci/run`, which installs the browser); without it they
//! say loudly that they were skipped, and with it a missing browser fails them.

mod common;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The chromedriver to use when the browser tests are asked for (`KNOCKOFF_BROWSER_TESTS=1`);
/// `None`, said loudly, when they are not. Asked for without a browser: a failure.
fn browser_tests() -> Option<PathBuf> {
    if std::env::var("KNOCKOFF_BROWSER_TESTS").as_deref() != Ok("1") {
        // straight to stderr, past the test harness's capture, so the skip shows in every run
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: browser test not run; set KNOCKOFF_BROWSER_TESTS=1 to run it \
             (needs Debian's chromium and chromium-driver, as .ci/run installs them)"
        );
        return None;
    }
    let driver = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join("chromedriver")).find(|p| p.is_file())
    });
    match (driver, Path::new(CHROMIUM).is_file()) {
        (Some(d), true) => Some(d),
        _ => panic!(
            "KNOCKOFF_BROWSER_TESTS=1 but {CHROMIUM} or chromedriver is missing \
             (apt-get install chromium chromium-driver)"
        ),
    }
}

/// Runs an async test body on a tokio runtime (fantoccini is async).
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where screenshots go: `target/test-output/`.
fn output_dir() -> PathBuf {
    let dir = root().join("target/test-output");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// An HTTP answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

/// Sends a request with headers and a raw body (blocking; loopback only).
fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match agent().run(req.body(body).unwrap()) {
        Ok(mut r) => Answer {
            status: r.status().as_u16(),
            body: r.body_mut().read_to_string().unwrap_or_default(),
        },
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// chromedriver on a loopback port, and a headless Chromium session in it; both end on drop.
struct Browser {
    driver: Child,
    client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(chromedriver: &Path) -> Browser {
        let port = free_port();
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        let ready =
            || matches!(agent().get(format!("{url}/status")).call(), Ok(r) if r.status() == 200);
        while !ready() {
            if t.elapsed() > Duration::from_secs(30) {
                let _ = driver.kill();
                panic!("chromedriver did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempdir();
        let caps = json!({"browserName": "chrome", "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1000", "--hide-scrollbars", "--force-device-scale-factor=1",
                     format!("--user-data-dir={}", profile.path().display())]}});
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("WebDriver session: {e}"));
        Browser { driver, client, _profile: profile }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("go to {url}: {e}"));
    }

    /// Runs a script in the page and returns its result.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// Waits up to 30 s for the script to return true (pages load and forms post asynchronously).
    async fn wait(&self, what: &str, script: &str) {
        let t = Instant::now();
        while self.client.execute(script, vec![]).await.ok() != Some(Value::Bool(true)) {
            if t.elapsed() > Duration::from_secs(30) {
                let at = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                let text = self.js("return document.body ? document.body.innerText : ''").await;
                panic!("timed out waiting for {what} (at {at}, showing {text})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        let e =
            self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.click().await.unwrap();
    }

    /// Presses and releases one key, as a person types it (to the page, not to an element).
    async fn press(&self, key: char) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(keys).await.unwrap_or_else(|e| panic!("key {key:?}: {e}"));
    }

    /// A screenshot of the window, written to `target/test-output/NAME`; checked to be a picture
    /// with something on it (not one flat colour).
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .expect("the screenshot is a PNG")
            .to_luma8();
        let first = img.get_pixel(0, 0)[0];
        let differing = img.pixels().filter(|p| p[0].abs_diff(first) > 40).count();
        assert!(differing > 1000, "{name}: the screenshot is nearly blank");
        let path = output_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// The verdict id the open verdict page shows (-1 elsewhere).
    async fn shown(&self) -> i64 {
        self.js("var v = document.getElementById('verdict'); return v ? Number(v.dataset.id) : -1;")
            .await
            .as_i64()
            .unwrap_or(-1)
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // after `close` this finds the driver gone; after a failed assertion it ends it
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A running `knockoff serve` on a loopback port; killed on drop.
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

fn key(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    run_ok(data, &all, 0).trim().to_string()
}

/// Submits a listing photo to `POST /v1/query` (multipart); returns the stored verdict.
fn query(server: &Server, key: &str, photo: &str, seller: &str) -> Value {
    let boundary = "knockoffBrowserTest";
    let listing_id = photo.split('.').next().unwrap_or(photo);
    let mut body = Vec::new();
    for (name, value) in
        [("listing_id", listing_id), ("seller", seller), ("price", "25"), ("currency", "USD")]
    {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes());
    }
    body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").bytes());
    body.extend(std::fs::read(testdata(&format!("listings/{photo}"))).unwrap());
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
    let auth = format!("Bearer {key}");
    let ct = format!("multipart/form-data; boundary={boundary}");
    let a = http(
        "POST",
        &server.url("/v1/query"),
        &[("Authorization", &auth), ("Content-Type", &ct)],
        body,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// The decisions the API exports to `key`, as (verdict id, decision), oldest first.
fn stored_decisions(server: &Server, key: &str) -> Vec<(i64, String)> {
    let a = http(
        "GET",
        &server.url("/v1/decisions"),
        &[("Authorization", &format!("Bearer {key}"))],
        Vec::new(),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["verdict_id"].as_i64().unwrap(), v["decision"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn console_sign_in_and_keyboard_triage_store_decisions() {
    let Some(chromedriver) = browser_tests() else { return };
    let started = Instant::now();
    let data = catalog_with(None);
    let d = data.path();
    let market = key(d, &["--role", "marketplace"]);
    let analyst = key(d, &["--role", "analyst", "--name", "browser test"]);
    let server = Server::start(d);
    let mut queued = Vec::new();
    for (photo, seller) in [
        ("L011-copy-border.jpg", "shop-a"),
        ("L001-copy-crop.jpg", "shop-b"),
        ("L013-copy-combo.jpg", "shop-c"),
        ("L003-copy-jpeg-q20.jpg", "shop-d"),
    ] {
        let v = query(&server, &market, photo, seller);
        assert!(v["verdict"] == "flag" || v["verdict"] == "review", "{photo}: {v}");
        queued.push(v["id"].as_i64().unwrap());
    }
    block_on(async {
        let b = Browser::start(&chromedriver).await;
        sign_in(&b, &server, &analyst, queued.len()).await;
        let decided = triage(&b).await;
        // stored, as the API reports them, in the order they were made
        let want: Vec<(i64, String)> = decided.iter().map(|(id, o)| (*id, o.to_string())).collect();
        assert_eq!(stored_decisions(&server, &analyst), want, "decisions stored as made");
        // the one left is still queued, the decided ones are not
        b.goto(&server.url("/console/queue")).await;
        let rows = b.js("return Array.from(document.querySelectorAll('#queue tr[data-row] a')).map(function (a) { return a.getAttribute('href'); })").await;
        assert_eq!(
            rows.as_array().map(Vec::len),
            Some(queued.len() - 3),
            "queue after triage: {rows}"
        );
        sign_out(&b, &server).await;
        b.close().await;
    });
    eprintln!("console browser test: {:.1} s", started.elapsed().as_secs_f64());
}

/// Signed out, the queue sends to the sign-in page; a wrong key is refused; the right one opens
/// the queue with every queued verdict, and the session cookie is HttpOnly and SameSite=Strict.
async fn sign_in(b: &Browser, server: &Server, key: &str, queued: usize) {
    b.goto(&server.url("/console/queue")).await;
    b.wait("the sign-in page", "return location.pathname === '/console/login'").await;
    b.type_into("#key", "ko_000000000000_wrong").await;
    b.click("#sign-in").await;
    b.wait("the refusal", "return !!document.getElementById('login-error')").await;
    b.type_into("#key", key).await;
    b.click("#sign-in").await;
    b.wait(
        "the queue",
        "return location.pathname === '/console/queue' && !!document.getElementById('queue')",
    )
    .await;
    assert!(
        !b.js("return document.cookie").await.as_str().unwrap_or("").contains("knockoff_session"),
        "scripts read the session cookie"
    );
    let cookie = b.client.get_named_cookie("knockoff_session").await.expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie}");
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"), "{cookie}");
    let rows = b.js("return document.querySelectorAll('#queue tr[data-row]').length").await;
    assert_eq!(rows.as_u64(), Some(queued as u64), "every verdict queued");
    b.screenshot("console-queue.png").await;
}

/// Keyboard triage from the queue: `j`/`k` move the highlighted row, Enter opens it; on the
/// verdict page `j`/`k` move between verdicts and `c`, `g`, `n` decide, each decision saved at
/// once and the next verdict shown. Returns the decisions made, in order.
async fn triage(b: &Browser) -> Vec<(i64, &'static str)> {
    let current = "return document.querySelector('tr.current').dataset.row";
    b.press('j').await;
    assert_eq!(b.js(current).await.as_str(), Some("1"), "j moves down");
    b.press('k').await;
    assert_eq!(b.js(current).await.as_str(), Some("0"), "k moves up");
    b.press(Key::Enter.into()).await;
    b.wait("a verdict page", "var v = document.getElementById('verdict'); return !!v").await;
    let first = b.shown().await;
    let photos = "return ['listing-photo', 'reference-photo'].map(function (id) { var i = document.getElementById(id); \
                  return i && i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 100; })";
    b.wait(
        "both photos",
        &format!("var ok = (function () {{ {photos} }})(); return ok[0] && ok[1];"),
    )
    .await;
    features_drawn(b).await;
    b.screenshot("console-verdict.png").await;

    b.press('j').await;
    b.wait("the next verdict", &format!("var v = document.getElementById('verdict'); return !!v && Number(v.dataset.id) !== {first};")).await;
    b.press('k').await;
    b.wait("the first verdict again", &format!("var v = document.getElementById('verdict'); return !!v && Number(v.dataset.id) === {first};")).await;

    let mut decided = Vec::new();
    for (k, outcome) in [('c', "counterfeit"), ('g', "genuine"), ('n', "not_our_product")] {
        let id = b.shown().await;
        assert!(id > 0, "a verdict is open before {k}");
        b.press(k).await;
        let saved = format!("Verdict {id} decided: {outcome}");
        b.wait(&saved, &format!("var s = document.getElementById('saved'); return !!s && s.textContent.indexOf('{saved}') >= 0;")).await;
        decided.push((id, outcome));
    }
    let distinct: std::collections::BTreeSet<i64> = decided.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), 3, "three different verdicts: {decided:?}");
    decided
}

/// The verified local features of the open verdict: circled on both photos, each circle inside
/// its photo, and each listing circle joined by a line to the reference circle of its pair.
async fn features_drawn(b: &Browser) {
    let lines = "var n = document.querySelectorAll('#listing-features circle').length; \
                 return n > 0 && document.querySelectorAll('#feature-links line').length === n;";
    b.wait("a line for each verified feature", lines).await;
    // page coordinates: the photos' boxes, the circles' centres, the lines' ends
    let drawn = b
        .js("function box(id) { var r = document.getElementById(id).getBoundingClientRect(); \
               return [r.left, r.top, r.right, r.bottom]; } \
             function centres(css) { return Array.from(document.querySelectorAll(css)).map( \
               function (c) { var r = c.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }); } \
             var at = box('photos'); \
             var lines = Array.from(document.querySelectorAll('#feature-links line')).map( \
               function (l) { return ['x1', 'y1', 'x2', 'y2'].map( \
                 function (k, i) { return Number(l.getAttribute(k)) + at[i % 2]; }); }); \
             return {listing: box('listing-photo'), reference: box('reference-photo'), \
               lc: centres('#listing-features circle'), rc: centres('#reference-features circle'), \
               lines: lines, legend: document.getElementById('features-legend').textContent};")
        .await;
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array().unwrap_or_else(|| panic!("{drawn}")).iter().filter_map(Value::as_f64).collect()
    };
    let within = |p: &[f64], b: &[f64]| {
        p[0] >= b[0] - 0.5 && p[0] <= b[2] + 0.5 && p[1] >= b[1] - 0.5 && p[1] <= b[3] + 0.5
    };
    let near = |a: &[f64], b: &[f64]| (a[0] - b[0]).abs() < 1.0 && (a[1] - b[1]).abs() < 1.0;
    let (listing, reference) = (nums(&drawn["listing"]), nums(&drawn["reference"]));
    let (lc, rc) = (nums_all(&drawn["lc"]), nums_all(&drawn["rc"]));
    let lines = nums_all(&drawn["lines"]);
    assert!(lc.len() == rc.len() && lc.len() == lines.len(), "{drawn}");
    for ((l, r), line) in lc.iter().zip(&rc).zip(&lines) {
        assert!(within(l, &listing) && within(r, &reference), "a circle off its photo: {drawn}");
        assert!(near(l, &line[..2]) && near(r, &line[2..]), "{line:?} joins not {l:?} to {r:?}");
    }
    let legend = drawn["legend"].as_str().unwrap_or("");
    let says = "verified local features (ORB points that one homography explains)";
    assert!(legend.contains(says), "{legend}");
}

/// A list of lists of numbers, as a script returns it.
fn nums_all(v: &Value) -> Vec<Vec<f64>> {
    let all = v.as_array().map(Vec::as_slice).unwrap_or_default();
    let numbers = |p: &Value| -> Vec<f64> {
        p.as_array().into_iter().flatten().filter_map(Value::as_f64).collect()
    };
    all.iter().map(numbers).collect()
}

/// A form post without the session's token, or from another site, is refused and stores nothing;
/// signing out ends the session on the server.
async fn sign_out(b: &Browser, server: &Server) {
    let sid =
        b.client.get_named_cookie("knockoff_session").await.expect("session").value().to_string();
    let csrf = b
        .js("return document.querySelector('input[name=csrf]').value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    let cookie = format!("knockoff_session={sid}");
    let form = "application/x-www-form-urlencoded";
    let href =
        b.js("return document.querySelector('#queue tr[data-row] a').getAttribute('href')").await;
    let id: String = href
        .as_str()
        .unwrap()
        .trim_start_matches("/console/verdicts/")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let url = server.url(&format!("/console/verdicts/{id}/decision"));
    let before = http("GET", &server.url("/console/queue"), &[("Cookie", &cookie)], Vec::new());
    assert_eq!(before.status, 200);
    let no_token = http(
        "POST",
        &url,
        &[("Cookie", &cookie), ("Content-Type", form)],
        b"decision=genuine".to_vec(),
    );
    assert_eq!(no_token.status, 403, "no CSRF token: {}", no_token.body);
    let body = format!("csrf={csrf}&decision=genuine").into_bytes();
    let foreign = http(
        "POST",
        &url,
        &[("Cookie", &cookie), ("Content-Type", form), ("Origin", "http://evil.example")],
        body,
    );
    assert_eq!(foreign.status, 403, "cross-site: {}", foreign.body);
    b.click("form[action='/console/logout'] button").await;
    b.wait("the sign-in page", "return location.pathname === '/console/login'").await;
    let after = http("GET", &server.url("/console/queue"), &[("Cookie", &cookie)], Vec::new());
    assert!(
        after.body.contains("id=\"key\"") || after.status != 200,
        "the old session still signs in"
    );
    assert!(!after.body.contains("id=\"queue\""), "the old session still shows the queue");
}

#[test]
fn case_file_graph_regions_and_thumbnails_render_in_chromium() {
    let Some(chromedriver) = browser_tests() else { return };
    let started = Instant::now();
    let data = catalog_with(None);
    let ring = testdata("ring/listings.jsonl");
    run_ok(data.path(), &["scan", ring.to_str().unwrap()], 0);
    run_ok(data.path(), &["network", "build"], 0);
    let file = data.path().join("case.html");
    run_ok(
        data.path(),
        &["network", "export", "--format", "html", "-o", file.to_str().unwrap()],
        0,
    );
    block_on(async {
        let b = Browser::start(&chromedriver).await;
        b.goto(&format!("file://{}", file.display())).await;
        b.wait("the case file", "return document.readyState === 'complete'").await;
        let graph = b
            .js("var s = document.querySelector('svg[aria-label=\"network graph\"]'); if (!s) { return null; } var r = s.getBoundingClientRect(); \
                 return {w: r.width, h: r.height, nodes: s.querySelectorAll('circle').length, links: s.querySelectorAll('line').length, drawn: s.getBBox().width};")
            .await;
        assert!(
            graph["w"].as_f64() > Some(100.0) && graph["h"].as_f64() > Some(100.0),
            "the graph has no size: {graph}"
        );
        assert!(
            graph["nodes"].as_u64() >= Some(3) && graph["links"].as_u64() >= Some(2),
            "three sellers and their links drawn: {graph}"
        );
        assert!(graph["drawn"].as_f64() > Some(0.0), "nothing drawn in the graph: {graph}");
        let regions = b
            .js("var h = Array.from(document.querySelectorAll('h3')).find(function (e) { return e.textContent === 'Regions'; }); \
                 var t = h && h.nextElementSibling; return t && t.tagName === 'TABLE' ? t.innerText : null;")
            .await;
        let regions = regions.as_str().unwrap_or_else(|| panic!("no regions table: {regions}"));
        assert!(
            regions.contains("seller(s)") && regions.contains("listing(s)"),
            "regions table: {regions}"
        );
        let imgs = b
            .js("return Array.from(document.querySelectorAll('.pair img')).map(function (i) { var r = i.getBoundingClientRect(); \
                 return {ok: i.complete && i.naturalWidth > 0, w: r.width, h: r.height}; })")
            .await;
        let imgs = imgs.as_array().unwrap();
        assert!(
            imgs.len() >= 6 && imgs.len() % 2 == 0,
            "flagged photos beside their reference photos: {imgs:?}"
        );
        for i in imgs {
            assert!(
                i["ok"] == true && i["w"].as_f64() > Some(0.0) && i["h"].as_f64() > Some(0.0),
                "a thumbnail does not render: {imgs:?}"
            );
        }
        // the whole case file, as it would be printed or sent (one tall screenshot)
        b.client.set_window_size(1000, 1000).await.expect("resize the window");
        let height =
            b.js("return document.documentElement.scrollHeight").await.as_u64().unwrap_or(1000);
        b.client
            .set_window_size(1000, height.clamp(600, 4000) as u32)
            .await
            .expect("resize the window");
        let overflow = b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth").await;
        assert!(
            overflow.as_i64() <= Some(0),
            "the case file is wider than the window by {overflow} px"
        );
        b.screenshot("networks-case.png").await;
        b.close().await;
    });
    eprintln!("case file browser test: {:.1} s", started.elapsed().as_secs_f64());
}
