//! End-to-end embedding throughput: decode + preprocess + inference + search through `knockoff
//! scan`, against the model alone on pre-decoded tensors (the limit) and against the Python
//! reference pipeline a user would otherwise write (`benches/python/reference_pipeline.py`: PIL
//! decode and resize, onnxruntime with the same model and threads), all on the same files in one run.
//!
//! `bash benches/e2e.sh` sets up the Python side and runs this; `cargo bench --bench e2e` alone
//! skips Python when its venv is missing. Photos are generated from `../shared/bench` (or
//! `$BENCH`) into `target/bench-e2e/`: 1000² and 2000² JPEGs, never committed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use knockoff::cli::{self, Cli};
use knockoff::decode::{self, Limits};
use knockoff::model::embed::{self, Embedder};
use knockoff::model::{self, ModelChoice};

const PER_SIZE: usize = 48;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `PER_SIZE` JPEGs of `side`² pixels, cut from the benchmark photos, unless present.
fn photos(side: u32, work: &Path) -> Vec<PathBuf> {
    let bench = std::env::var_os("BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/bench"));
    let mut sources: Vec<PathBuf> = ["backgrounds", "skimage"]
        .iter()
        .filter_map(|d| std::fs::read_dir(bench.join(d)).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no photos in {} (set BENCH=DIR)", bench.display());
    let dir = work.join(side.to_string());
    std::fs::create_dir_all(&dir).expect("create bench dir");
    (0..PER_SIZE)
        .map(|i| {
            let path = dir.join(format!("{i:03}.jpg"));
            if !path.exists() {
                let src =
                    image::open(&sources[i % sources.len()]).expect("open bench photo").to_rgb8();
                // a different crop of the source each time, scaled to side x side
                let (w, h) = src.dimensions();
                let s = w.min(h) * (6 + (i as u32 % 4)) / 10;
                let x = (w - s) * ((i as u32 * 37) % 11) / 10;
                let y = (h - s) * ((i as u32 * 53) % 7) / 6;
                let crop = image::imageops::crop_imm(&src, x, y, s, s).to_image();
                let img = image::imageops::resize(
                    &crop,
                    side,
                    side,
                    image::imageops::FilterType::Triangle,
                );
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                    .encode_image(&img)
                    .expect("encode");
                std::fs::write(&path, bytes).expect("write photo");
            }
            path
        })
        .collect()
}

/// Images/s of the model alone on pre-decoded, pre-resized tensors, batches of 8.
fn model_limit(name: &str, files: &[PathBuf]) -> f64 {
    let loc = model::locate(&ModelChoice {
        name: name.into(),
        dir: Some(root().join("models")),
        ort_lib: None,
    })
    .expect("models: run bash models/fetch.sh");
    let mut e = Embedder::load(&loc, 8, 2).expect("load model");
    let prepared: Vec<embed::Prepared> = files
        .iter()
        .map(|f| {
            let img = decode::decode(&std::fs::read(f).expect("read"), &Limits::default(), 0)
                .expect("decode");
            embed::prepare(&img, &loc.manifest).expect("prepare")
        })
        .collect();
    let refs: Vec<&embed::Prepared> = prepared.iter().collect();
    e.embed(&refs[..8]).expect("warm up");
    let t = Instant::now();
    for chunk in refs.chunks(8) {
        e.embed(chunk).expect("embed");
    }
    files.len() as f64 / t.elapsed().as_secs_f64()
}

fn knockoff(args: &[&str]) {
    let cli = Cli::parse_from(std::iter::once("knockoff").chain(args.iter().copied()));
    let code = cli::run(cli).expect("knockoff run");
    assert_eq!(code, 0, "knockoff {args:?} exited {code}");
}

/// Listings/s (one photo each) of `knockoff scan` against a small catalog, model load excluded.
fn scan_rate(name: &str, files: &[PathBuf], work: &Path) -> f64 {
    let data = work.join(format!("data-{name}"));
    let _ = std::fs::remove_dir_all(&data);
    let catalog = work.join("catalog.jsonl");
    let lines: Vec<String> = files
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, f)| format!(r#"{{"brand":"B","product_id":"p{i}","title":"t","price":100,"currency":"EUR","images":["{}"]}}"#, f.display()))
        .collect();
    std::fs::write(&catalog, lines.join("\n")).expect("write catalog");
    let listings = work.join("listings.jsonl");
    let lines: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, f)| format!(r#"{{"listing_id":"l{i}","seller_id":"s","price":10,"currency":"EUR","images":["{}"]}}"#, f.display()))
        .collect();
    std::fs::write(&listings, lines.join("\n")).expect("write listings");
    let (d, l, out) =
        (data.to_str().unwrap(), listings.to_str().unwrap(), work.join("verdicts.jsonl"));
    knockoff(&["--data", d, "--model", name, "-q", "catalog", "add", catalog.to_str().unwrap()]);
    // the first scan loads the model and warms the caches; the second is timed with model load included,
    // so subtract one model load measured by scanning a single listing
    let one = work.join("one.jsonl");
    std::fs::write(&one, &lines[0]).expect("write");
    knockoff(&[
        "--data",
        d,
        "--model",
        name,
        "-q",
        "scan",
        one.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let t = Instant::now();
    knockoff(&[
        "--data",
        d,
        "--model",
        name,
        "-q",
        "scan",
        one.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let fixed = t.elapsed().as_secs_f64();
    let t = Instant::now();
    knockoff(&["--data", d, "--model", name, "-q", "scan", l, "-o", out.to_str().unwrap()]);
    let total = t.elapsed().as_secs_f64();
    (files.len() - 1) as f64 / (total - fixed).max(1e-9)
}

/// Images/s of the Python reference pipeline on the same files, if its venv exists.
fn python_rate(name: &str, files: &[PathBuf], work: &Path) -> Option<f64> {
    let py = root().join("benches/python/.venv/bin/python");
    if !py.exists() {
        return None;
    }
    let list = work.join("files.txt");
    let text: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    std::fs::write(&list, text.join("\n")).expect("write list");
    let out = std::process::Command::new(py)
        .arg(root().join("benches/python/reference_pipeline.py"))
        .arg(root().join(format!("models/{name}.onnx")))
        .arg(&list)
        .output()
        .expect("run python");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`
    }
    let work = root().join("target/bench-e2e");
    println!("| model | photos | model alone (img/s) | knockoff scan (img/s) | scan / model | Python reference (img/s) | scan / Python |");
    println!("|---|---|---|---|---|---|---|");
    for name in ["sscd", "sscd_distilled"] {
        for side in [1000u32, 2000] {
            let files = photos(side, &work);
            let limit = model_limit(name, &files);
            let scan = scan_rate(name, &files, &work);
            let py = python_rate(name, &files, &work);
            println!(
                "| {name} | {PER_SIZE} × {side}² JPEG | {limit:.1} | {scan:.1} | {:.2} | {} | {} |",
                scan / limit,
                py.map(|p| format!("{p:.1}")).unwrap_or_else(|| "(no venv)".into()),
                py.map(|p| format!("{:.2}", scan / p)).unwrap_or_else(|| "-".into()),
            );
        }
    }
}
