//! Load test of `knockoff serve`, on loopback only and bounded in time: CLIENTS concurrent clients
//! (default 200) mix photo queries, verdict reads and decisions for SECS seconds (default 60),
//! then every decision answered 201 is looked for in the audit export. Prints errors, decisions
//! lost, p50/p99 latency and throughput per kind of request, and a query's throughput under load
//! against `knockoff scan` on the same photos (JSON on stdout).
//!
//! ```sh
//! nice cargo build --release --locked --bin knockoff --example load
//! target/release/examples/load [--secs 60] [--clients 200] [--bin target/release/knockoff]
//! ```
//!
//! The server gets a data directory of its own (the bundled catalog) with `[server] queue` at
//! least CLIENTS, so that a client waits for the model rather than being refused (503 `busy`
//! counts as an error here).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

struct Args {
    secs: u64,
    clients: usize,
    bin: PathBuf,
}

fn args() -> Result<Args> {
    let exe = std::env::current_exe()?;
    // target/release/examples/load -> target/release/knockoff
    let default_bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("knockoff"))
        .context("no binary directory")?;
    let mut a = Args { secs: 60, clients: 200, bin: default_bin };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--secs" => a.secs = value.parse().context("--secs")?,
            "--clients" => a.clients = value.parse().context("--clients")?,
            "--bin" => a.bin = value.into(),
            other => bail!("unknown option {other} (--secs, --clients, --bin)"),
        }
    }
    if a.secs == 0 || a.secs > 600 || a.clients == 0 || a.clients > 1000 {
        bail!("--secs must be 1..=600 and --clients 1..=1000");
    }
    Ok(a)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `knockoff --data DATA ARGS`; its stdout.
fn knockoff(bin: &Path, data: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!("knockoff {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The bundled listing photos that can be checked: (file name, bytes).
fn photos() -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("testdata/listings"))? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // L029 on are broken on purpose (missing, corrupt, bombs)
        if name.as_str() < "L029"
            && matches!(p.extension().and_then(|x| x.to_str()), Some("jpg" | "png" | "webp"))
        {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p)?));
        }
    }
    out.sort();
    Ok(out)
}

/// Starts the server; returns it and its base URL.
fn serve(bin: &Path, data: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
    let base = loop {
        let line = lines.next().context("the server exited before listening")??;
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().context("no address")?.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, base))
}

/// One request's outcome.
struct Sample {
    kind: &'static str,
    status: u16,
    micros: u64,
}

/// A decision the server accepted.
struct Decided {
    id: i64,
    verdict: i64,
    decision: &'static str,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// Sends a request; (status, body).
fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    key: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (u16, String) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("Authorization", format!("Bearer {key}"));
    let res = match body {
        None => agent.run(req.body(()).unwrap()),
        Some((ct, bytes)) => agent.run(req.header("Content-Type", ct).body(bytes).unwrap()),
    };
    match res {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn multipart(photo: &[u8]) -> (&'static str, Vec<u8>) {
    let mut b = Vec::new();
    b.extend_from_slice(
        b"--loadBoundary\r\nContent-Disposition: form-data; name=\"price\"\r\n\r\n20\r\n",
    );
    b.extend_from_slice(
        b"--loadBoundary\r\nContent-Disposition: form-data; name=\"currency\"\r\n\r\nUSD\r\n",
    );
    b.extend_from_slice(b"--loadBoundary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p.jpg\"\r\n\r\n");
    b.extend_from_slice(photo);
    b.extend_from_slice(b"\r\n--loadBoundary--\r\n");
    ("multipart/form-data; boundary=loadBoundary", b)
}

/// What every client shares.
struct Shared<'a> {
    base: &'a str,
    market: &'a str,
    analyst: &'a str,
    photos: &'a [(String, Vec<u8>)],
    verdicts: &'a [i64],
    deadline: Instant,
}

/// One client: until the deadline, a query (1 in 4), a decision (1 in 4) or a verdict read.
fn client(n: usize, s: &Shared) -> (Vec<Sample>, Vec<Decided>) {
    let agent = agent();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (n as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut samples, mut decided) = (Vec::new(), Vec::new());
    while Instant::now() < s.deadline {
        let r = next();
        let t = Instant::now();
        let verdict = s.verdicts[(r >> 8) as usize % s.verdicts.len()];
        let (kind, (status, body)) = match r % 4 {
            0 => (
                "query",
                send(
                    &agent,
                    "POST",
                    &format!("{}/v1/query", s.base),
                    s.market,
                    Some(multipart(&s.photos[(r >> 20) as usize % s.photos.len()].1)),
                ),
            ),
            1 => {
                let decision =
                    ["counterfeit", "genuine", "not_our_product"][(r >> 32) as usize % 3];
                let body = json!({"decision": decision, "note": format!("load client {n}")})
                    .to_string()
                    .into_bytes();
                let answer = send(
                    &agent,
                    "POST",
                    &format!("{}/v1/verdicts/{verdict}/decision", s.base),
                    s.analyst,
                    Some(("application/json", body)),
                );
                if answer.0 == 201 {
                    let v: Value = serde_json::from_str(&answer.1).unwrap_or(Value::Null);
                    decided.push(Decided { id: v["id"].as_i64().unwrap_or(-1), verdict, decision });
                }
                ("decision", answer)
            }
            2 => (
                "read",
                send(&agent, "GET", &format!("{}/v1/verdicts/{verdict}", s.base), s.analyst, None),
            ),
            _ => (
                "list",
                send(
                    &agent,
                    "GET",
                    &format!("{}/v1/verdicts?limit=50&after={}", s.base, verdict - 1),
                    s.analyst,
                    None,
                ),
            ),
        };
        if status >= 400 || status == 0 {
            eprintln!(
                "client {n}: {kind} -> {status}: {}",
                body.chars().take(200).collect::<String>()
            );
        }
        samples.push(Sample { kind, status, micros: t.elapsed().as_micros() as u64 });
    }
    (samples, decided)
}

/// Decisions answered 201 that the audit export lacks, or shows otherwise.
fn lost_decisions(base: &str, admin: &str, decided: &[Decided]) -> Result<usize> {
    let (status, body) = send(&agent(), "GET", &format!("{base}/v1/decisions"), admin, None);
    if status != 200 {
        bail!("export failed: {status} {body}");
    }
    let mut exported = HashMap::new();
    for line in body.lines() {
        let v: Value = serde_json::from_str(line)?;
        exported.insert(
            v["id"].as_i64().unwrap_or(-1),
            (
                v["verdict_id"].as_i64().unwrap_or(-1),
                v["decision"].as_str().unwrap_or("").to_string(),
            ),
        );
    }
    Ok(decided
        .iter()
        .filter(|d| exported.get(&d.id) != Some(&(d.verdict, d.decision.to_string())))
        .count())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Latency (ms) and throughput per kind of request, and in all.
fn summarise(samples: &[Sample], secs: f64) -> BTreeMap<String, Value> {
    let mut by: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for s in samples {
        by.entry(s.kind).or_default().push(s.micros);
        by.entry("all").or_default().push(s.micros);
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            let errors = samples
                .iter()
                .filter(|s| (k == "all" || s.kind == k) && (s.status >= 400 || s.status == 0))
                .count();
            (
                k.to_string(),
                json!({"requests": v.len(), "errors": errors, "per_sec": v.len() as f64 / secs,
                "p50_ms": percentile(&v, 0.5), "p99_ms": percentile(&v, 0.99)}),
            )
        })
        .collect()
}

/// `knockoff scan` over the same photos (each `repeat` times, as paths): listings per second as
/// the scan reports it (after loading the model) and over its whole run.
fn scan_baseline(
    bin: &Path,
    data: &Path,
    photos: &[(String, Vec<u8>)],
    repeat: usize,
) -> Result<Value> {
    let input = data.join("baseline.jsonl");
    let mut f = std::fs::File::create(&input)?;
    for r in 0..repeat {
        for (i, (name, _)) in photos.iter().enumerate() {
            let path = repo().join("testdata/listings").join(name);
            writeln!(
                f,
                "{}",
                json!({"listing_id": format!("B{r}-{i}"), "seller_id": "s", "price": 20, "currency": "USD", "images": [path]})
            )?;
        }
    }
    drop(f);
    let t = Instant::now();
    let out = Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(["scan", input.to_str().unwrap(), "--json", "--no-record"])
        .output()?;
    let wall = t.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let n = repeat * photos.len();
    let reported = stderr
        .split("listings/s")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse::<f64>().ok());
    Ok(
        json!({"listings": n, "wall_secs": wall, "per_sec_wall": n as f64 / wall, "per_sec_reported": reported, "ok": out.status.success()}),
    )
}

fn main() -> Result<()> {
    let a = args()?;
    let data = tempfile::tempdir()?;
    let d = data.path();
    std::fs::write(
        d.join("config.toml"),
        format!("[server]\nqueue = {}\n", a.clients.max(16) + 16),
    )?;
    knockoff(
        &a.bin,
        d,
        &["catalog", "add", repo().join("testdata/catalog.csv").to_str().unwrap()],
    )?;
    let key = |args: &[&str]| -> Result<String> {
        let mut all = vec!["keys", "create"];
        all.extend_from_slice(args);
        Ok(knockoff(&a.bin, d, &all)?.trim().to_string())
    };
    let (market, analyst, admin) = (
        key(&["--role", "marketplace"])?,
        key(&["--role", "analyst"])?,
        key(&["--role", "admin"])?,
    );
    let photos = photos()?;
    let baseline = scan_baseline(&a.bin, d, &photos, 4)?;
    let (mut server, base) = serve(&a.bin, d)?;
    // verdicts to read and decide on: one query per photo
    let mut verdicts = Vec::new();
    for (name, bytes) in &photos {
        let (status, body) =
            send(&agent(), "POST", &format!("{base}/v1/query"), &market, Some(multipart(bytes)));
        if status != 200 {
            bail!("seeding query {name}: {status} {body}");
        }
        verdicts.push(serde_json::from_str::<Value>(&body)?["id"].as_i64().context("no id")?);
    }
    let load = Instant::now();
    let shared = Shared {
        base: &base,
        market: &market,
        analyst: &analyst,
        photos: &photos,
        verdicts: &verdicts,
        deadline: load + Duration::from_secs(a.secs),
    };
    let results: Vec<(Vec<Sample>, Vec<Decided>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.clients)
            .map(|n| {
                let sh = &shared;
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || client(n, sh))
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = load.elapsed().as_secs_f64();
    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let samples: Vec<Sample> = results
        .iter()
        .flat_map(|(s, _)| {
            s.iter().map(|x| Sample { kind: x.kind, status: x.status, micros: x.micros })
        })
        .collect();
    let decided: Vec<Decided> = results.into_iter().flat_map(|(_, d)| d).collect();
    let lost = lost_decisions(&base, &admin, &decided)?;
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopped = server.wait()?;
    let summary = summarise(&samples, secs);
    let query_rate = summary.get("query").and_then(|q| q["per_sec"].as_f64()).unwrap_or(0.0);
    let scan_rate = baseline["per_sec_reported"]
        .as_f64()
        .unwrap_or(baseline["per_sec_wall"].as_f64().unwrap_or(f64::NAN));
    let report = json!({
        "clients": a.clients, "secs": secs, "requests": summary, "decisions_accepted": decided.len(),
        "decisions_lost": lost, "scan_baseline": baseline, "query_vs_scan": query_rate / scan_rate,
        "server_exit": stopped.code(), "load_average_after": load_avg.trim(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    let errors = samples.iter().filter(|s| s.status >= 400 || s.status == 0).count();
    if errors > 0 || lost > 0 {
        bail!("{errors} errors, {lost} decisions lost");
    }
    Ok(())
}
