//! Writes a large catalog for load and search measurements (docs/benchmarks-notebook.md, "Search").
//!
//! `cargo run --release --example big_catalog -- DATA_DIR [N] [f32|int8] [graph]` (needs `bash models/fetch.sh`).
//! Real SSCD embeddings of generated variants of the bundled catalog photos (crops, JPEG
//! re-encoding, brightness and hue changes), plus synthetic vectors scattered around them up to N
//! (default 100000), one product per vector, each with a perceptual hash (random 64 bits) as
//! `catalog add` stores one for every reference image. With `graph`, builds the HNSW graph when N
//! reaches `index.hnsw_min_images`, as `catalog add` would; without, the catalog is searched
//! exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use knockoff::decode::RgbImage;
use knockoff::index::Storage;
use knockoff::model::embed::{self, Embedder};
use knockoff::model::{self, ModelChoice};
use knockoff::{Config, ImageNotes, ModelStamp, NewProduct, ProductRecord, Store};

fn photos(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            photos(&p, out);
        } else if p.extension().is_some_and(|x| x == "jpg") {
            out.push(p);
        }
    }
}

fn variants(img: &image::RgbImage) -> Vec<image::RgbImage> {
    let (w, h) = img.dimensions();
    let mut out = Vec::new();
    for (fx, fy, fw, fh) in [
        (0.0, 0.0, 1.0, 1.0),
        (0.1, 0.1, 0.8, 0.8),
        (0.0, 0.0, 0.7, 0.9),
        (0.25, 0.1, 0.75, 0.8),
        (0.05, 0.2, 0.9, 0.7),
    ] {
        let c = image::imageops::crop_imm(
            img,
            (fx * w as f32) as u32,
            (fy * h as f32) as u32,
            (fw * w as f32) as u32,
            (fh * h as f32) as u32,
        )
        .to_image();
        for b in [-40i32, 0, 40] {
            let mut v = image::imageops::colorops::brighten(&c, b);
            if b > 0 {
                v = image::imageops::colorops::huerotate(&v, 60);
            }
            // JPEG re-encoding at quality 40
            let mut jpg = Vec::new();
            if image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpg, 40)
                .encode_image(&v)
                .is_ok()
            {
                if let Ok(d) = image::load_from_memory(&jpg) {
                    v = d.to_rgb8();
                }
            }
            out.push(v);
        }
    }
    out
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let data = PathBuf::from(args.get(1).context("usage: big_catalog DATA_DIR [N] [f32|int8]")?);
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let storage = match args.get(3).map(String::as_str) {
        Some("f32") => Storage::F32,
        _ => Storage::Int8,
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let loc = model::locate(&ModelChoice {
        name: "sscd".into(),
        dir: Some(root.join("models")),
        ort_lib: None,
    })?;
    let mut embedder = Embedder::load(&loc, 8, 2)?;
    let mut files = Vec::new();
    photos(&root.join("testdata/catalog"), &mut files);
    files.sort();
    let mut real: Vec<Vec<f32>> = Vec::new();
    for f in &files {
        let img = image::open(f)?.to_rgb8();
        let prepared: Vec<embed::Prepared> = variants(&img)
            .into_iter()
            .map(|v| {
                let (width, height) = v.dimensions();
                embed::prepare(&RgbImage { width, height, data: v.into_raw() }, &loc.manifest)
            })
            .collect::<Result<_, _>>()?;
        for p in &prepared {
            real.extend(embedder.embed(&[p])?);
        }
    }
    eprintln!("{} real embeddings of {} photos", real.len(), files.len());
    let mut rng = knockoff::internals::Rng::new(0x2545F4914F6CDD1Du64);
    let mut rnd = move || rng.range(-0.5, 0.5);
    let mut vectors: Vec<(String, Vec<f32>)> = Vec::with_capacity(n);
    for i in 0..n {
        let v = if i < real.len() {
            real[i].clone()
        } else {
            // scattered around a real embedding: similarity to it between about 0.3 and 0.9
            let r = &real[i % real.len()];
            let spread = 0.02 + 0.08 * (rnd() + 0.5);
            let mut v: Vec<f32> = r.iter().map(|x| x + spread * rnd()).collect();
            embed::l2_normalize(&mut v);
            v
        };
        vectors.push((format!("synthetic-{i}"), v));
    }
    let mut hashes = knockoff::internals::Rng::new(0x9E3779B97F4A7C15);
    let mut store = Store::open(&data, true)?;
    let config = Config::default();
    let chunk = 20_000;
    for (c, part) in vectors.chunks(chunk).enumerate() {
        let products: Vec<(ProductRecord, Vec<(String, String)>)> = part
            .iter()
            .enumerate()
            .map(|(j, (hash, _))| {
                let i = c * chunk + j;
                (
                    ProductRecord {
                        line: i + 1,
                        brand: format!("Brand{}", i % 100),
                        product_id: format!("p{i}"),
                        title: format!("Product {i}"),
                        price: 100.0,
                        currency: "EUR".into(),
                        images: Vec::new(),
                        authorized_sellers: vec![format!("official{}", i % 100)],
                        category: None,
                    },
                    vec![(hash.clone(), format!("synthetic/{i}.jpg"))],
                )
            })
            .collect();
        let notes = ImageNotes {
            phashes: part.iter().map(|(hash, _)| (hash.clone(), hashes.next_u64())).collect(),
            ..Default::default()
        };
        let rows: Vec<NewProduct> = products.iter().map(|(p, images)| p.as_new(images)).collect();
        store.add_products(&ModelStamp::of(&loc.manifest), storage, &rows, part, &notes)?;
    }
    let t = std::time::Instant::now();
    if args.get(4).is_some_and(|a| a == "graph") {
        store.update_graph(&config, loc.manifest.dim)?;
    }
    eprintln!(
        "wrote {n} vectors to {} (graph build {:.1} s)",
        data.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
