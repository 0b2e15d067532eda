//! Benchmarks of the embedding pipeline's stages and of search (figures in
//! docs/benchmarks-notebook.md).
//!
//! `cargo bench --bench pipeline` (needs `bash models/fetch.sh`). Inputs are generated: JPEGs made
//! from the bundled test images scaled up to 1000² and 2000², and clustered unit vectors for search.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use knockoff::decode::{self, Limits};
use knockoff::index::Index;
use knockoff::model::embed::{self, Embedder};
use knockoff::model::{self, ModelChoice};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A JPEG of `side`² pixels made by scaling a bundled catalog photo.
fn big_jpeg(side: u32) -> Vec<u8> {
    let src =
        image::open(root().join("testdata/catalog/acme/acme-chrono_1.jpg")).expect("test image");
    let img = src.resize_exact(side, side, image::imageops::FilterType::Triangle).to_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .expect("encode");
    out
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_to_288");
    let limits = Limits::default();
    for side in [1000u32, 2000] {
        let jpeg = big_jpeg(side);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("dct_scaled", side), &jpeg, |b, jpeg| {
            b.iter(|| {
                decode::resize_short_side(&decode::decode(jpeg, &limits, 288).expect("decode"), 288)
                    .expect("resize")
            })
        });
        g.bench_with_input(BenchmarkId::new("full_size", side), &jpeg, |b, jpeg| {
            b.iter(|| {
                decode::resize_short_side(&decode::decode(jpeg, &limits, 0).expect("decode"), 288)
                    .expect("resize")
            })
        });
    }
    g.finish();
}

/// Resize policy: 16 photos of four aspect ratios (1:1, 4:3, 3:4, 16:9), short side 288 with
/// equal sizes batched together, against the same photos squashed to 288x288 in batches of 8.
fn bench_resize_policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("resize_policy_16_mixed_photos");
    g.sample_size(10);
    let loc = model::locate(&ModelChoice {
        name: "sscd".into(),
        dir: Some(root().join("models")),
        ort_lib: None,
    })
    .expect("models: run bash models/fetch.sh");
    let mut e = Embedder::load(&loc, 8, 2).expect("load model");
    let img = decode::decode(&big_jpeg(1000), &Limits::default(), 0).expect("decode");
    let mut short = Vec::new();
    let mut square = Vec::new();
    for i in 0..16 {
        let (w, h) = [(1000, 1000), (1000, 750), (750, 1000), (1000, 562)][i % 4];
        let photo = decode::resize(&img, w, h).expect("resize");
        let s = decode::resize_short_side(&photo, 288).expect("resize");
        short.push(embed::Prepared { width: s.width, height: s.height, data: s.data });
        let q = decode::resize(&photo, 288, 288).expect("resize");
        square.push(embed::Prepared { width: 288, height: 288, data: q.data });
    }
    g.throughput(Throughput::Elements(16));
    g.bench_function("short_side_288_grouped", |b| {
        b.iter(|| e.embed(&short.iter().collect::<Vec<_>>()).expect("embed"))
    });
    g.bench_function("square_288_batch8", |b| {
        b.iter(|| e.embed(&square.iter().collect::<Vec<_>>()).expect("embed"))
    });
    g.finish();
}

fn bench_embed(c: &mut Criterion) {
    let mut g = c.benchmark_group("embed_batch8_288");
    g.sample_size(10);
    for name in ["sscd", "sscd_distilled"] {
        let loc = model::locate(&ModelChoice {
            name: name.into(),
            dir: Some(root().join("models")),
            ort_lib: None,
        })
        .expect("models: run bash models/fetch.sh");
        let mut e = Embedder::load(&loc, 8, 2).expect("load model");
        let img = decode::decode(&big_jpeg(1000), &Limits::default(), 288).expect("decode");
        let p = embed::prepare(&img, &loc.manifest).expect("prepare");
        let batch: Vec<&embed::Prepared> = (0..8).map(|_| &p).collect();
        g.throughput(Throughput::Elements(8));
        g.bench_function(name, |b| b.iter(|| e.embed(&batch).expect("embed")));
    }
    g.finish();
}

/// `n` clustered unit vectors of dimension `dim` (deterministic).
fn clustered(n: usize, dim: usize) -> Vec<f32> {
    let mut rng = knockoff::internals::Rng::new(0x9E3779B97F4A7C15u64);
    let mut rnd = move || rng.range(-0.5, 0.5);
    let centres: Vec<Vec<f32>> = (0..256).map(|_| (0..dim).map(|_| rnd()).collect()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[i % centres.len()];
        let mut v: Vec<f32> = c.iter().map(|x| x + 0.35 * rnd()).collect();
        embed::l2_normalize(&mut v);
        out.extend(v);
    }
    out
}

fn bench_search(c: &mut Criterion) {
    let mut g = c.benchmark_group("exact_search_top50");
    let dim = 512;
    for n in [10_000usize, 100_000] {
        let vectors = clustered(n, dim);
        let query = vectors[..dim].to_vec();
        let index = Index::new(dim, vectors, None, 128);
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::from_parameter(n), &index, |b, index| {
            b.iter(|| index.search(&query, 50, &|_| true))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_embed, bench_resize_policy, bench_search);
criterion_main!(benches);
