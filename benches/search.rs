//! Search benchmark: exact (float32 and int8) and HNSW on the same vectors, printed as a table.
//!
//! `cargo bench --bench search` (N = 100000 by default; `KNOCKOFF_BENCH_N=1000000` for 1M).
//! Vectors are clustered unit vectors (centres, members around them, and queries that are
//! perturbed copies of members: near-duplicates, as in copy detection). They are written to
//! `target/bench-search/` so that `benches/python/run.sh` measures hnswlib and numpy on the same
//! data. Recall is measured against exact float32 search.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use knockoff::attack::Rng;
use knockoff::config::IndexConfig;
use knockoff::embed::l2_normalize;
use knockoff::index::{Graph, Hit, Index};
use knockoff::vectors::{Rows, Storage};

const DIM: usize = 512;

/// `n` members of `n / 50` clusters, and `nq` queries near random members.
fn data(n: usize, nq: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(0x9E3779B97F4A7C15);
    let centres: Vec<Vec<f32>> = (0..(n / 50).max(1))
        .map(|_| {
            let mut c: Vec<f32> = (0..DIM).map(|_| rng.range(-0.5, 0.5)).collect();
            l2_normalize(&mut c);
            c
        })
        .collect();
    let mut base = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let c = &centres[rng.below(centres.len())];
        let mut v: Vec<f32> = c.iter().map(|x| x + 0.06 * rng.range(-0.5, 0.5)).collect();
        l2_normalize(&mut v);
        base.extend(v);
    }
    let mut queries = Vec::with_capacity(nq * DIM);
    for _ in 0..nq {
        let m = rng.below(n);
        let mut v: Vec<f32> = base[m * DIM..(m + 1) * DIM].iter().map(|x| x + 0.03 * rng.range(-0.5, 0.5)).collect();
        l2_normalize(&mut v);
        queries.extend(v);
    }
    (base, queries)
}

fn rss_kb() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn recall(truth: &[Vec<Hit>], got: &[Vec<Hit>], at: usize) -> f64 {
    let mut hit = 0usize;
    for (t, g) in truth.iter().zip(got) {
        let want: Vec<u32> = t.iter().take(at).map(|h| h.vector).collect();
        hit += g.iter().take(at).filter(|h| want.contains(&h.vector)).count();
    }
    hit as f64 / (truth.len() * at) as f64
}

fn main() {
    let n: usize = std::env::var("KNOCKOFF_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let nq = 1000;
    let k = 10;
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-search");
    std::fs::create_dir_all(&out).expect("mkdir");
    eprintln!("generating {n} x {DIM} vectors and {nq} queries");
    let (base, queries) = data(n, nq);
    for (name, v) in [("base.f32", &base), ("queries.f32", &queries)] {
        let mut f = std::fs::File::create(out.join(name)).expect("create");
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        f.write_all(&bytes).expect("write");
    }
    let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
    let threads = rayon::current_num_threads();
    println!("# search benchmark: n = {n}, dim = {DIM}, {nq} queries, top-{k}, {threads} threads");
    println!("| method | storage | filter | build s | index MB | bytes/vector | queries/s | recall@1 | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|---|");

    let f32_index = Index::new(DIM, base.clone(), None, 128);
    let t = Instant::now();
    let truth = f32_index.search_batch(&qs, k, &|_| true);
    let batch_qps = nq as f64 / t.elapsed().as_secs_f64();
    let row = |m: &str, st: &str, filt: &str, build: f64, bytes: usize, qps: f64, r1: f64, r10: f64| {
        println!(
            "| {m} | {st} | {filt} | {} | {:.1} | {} | {qps:.0} | {r1:.3} | {r10:.3} |",
            if build > 0.0 { format!("{build:.1}") } else { "-".into() },
            bytes as f64 / 1e6,
            bytes / n
        );
    };
    row("exact, batch of 1000", "f32", "none", 0.0, n * DIM * 4, batch_qps, 1.0, 1.0);

    // one query at a time (latency case)
    let single = |index: &Index, filter: &(dyn Fn(u32) -> bool + Sync), count: usize| {
        let t = Instant::now();
        let res: Vec<Vec<Hit>> = qs[..count].iter().map(|q| index.search(q, k, filter)).collect();
        (count as f64 / t.elapsed().as_secs_f64(), res)
    };
    let (qps, _) = single(&f32_index, &|_| true, 200);
    row("exact, one query", "f32", "none", 0.0, n * DIM * 4, qps, 1.0, 1.0);

    // the previous implementation: scalar loop, one query, one thread
    {
        let t = Instant::now();
        let count = 20;
        for q in &qs[..count] {
            let mut best = (f32::MIN, 0usize);
            for (i, r) in base.chunks_exact(DIM).enumerate() {
                let s: f32 = q.iter().zip(r).map(|(a, b)| a * b).sum();
                if s > best.0 {
                    best = (s, i);
                }
            }
            std::hint::black_box(best);
        }
        row("old scalar loop, one query", "f32", "none", 0.0, n * DIM * 4, count as f64 / t.elapsed().as_secs_f64(), 1.0, 1.0);
    }

    let ten = |id: u32| id % 10 == 3;
    let t = Instant::now();
    let truth10 = f32_index.search_batch(&qs, k, &ten);
    row("exact, batch of 1000", "f32", "10 %", 0.0, n * DIM * 4, nq as f64 / t.elapsed().as_secs_f64(), 1.0, 1.0);

    let i8_index = Index::from_rows(Rows::new(DIM, Storage::Int8, base.clone()), None, 128);
    let t = Instant::now();
    let got = i8_index.search_batch(&qs, k, &|_| true);
    let qps = nq as f64 / t.elapsed().as_secs_f64();
    let mut max_diff = 0f32;
    for (q, g) in qs.iter().zip(&got) {
        for h in g {
            let exact = knockoff::simd::dot(q, &base[h.vector as usize * DIM..(h.vector as usize + 1) * DIM]);
            max_diff = max_diff.max((exact - h.similarity).abs());
        }
    }
    let i8_bytes = i8_index.rows().bytes();
    row("exact, batch of 1000", "int8", "none", 0.0, i8_bytes, qps, recall(&truth, &got, 1), recall(&truth, &got, 10));
    let (qps, got1) = single(&i8_index, &|_| true, 200);
    row("exact, one query", "int8", "none", 0.0, i8_bytes, qps, recall(&truth[..200], &got1, 1), recall(&truth[..200], &got1, 10));
    let t = Instant::now();
    let got = i8_index.search_batch(&qs, k, &ten);
    row("exact, batch of 1000", "int8", "10 %", 0.0, i8_bytes, nq as f64 / t.elapsed().as_secs_f64(), recall(&truth10, &got, 1), recall(&truth10, &got, 10));
    println!("\nint8 vs f32: largest similarity difference over the top-{k} lists: {max_diff:.5}\n");

    // HNSW, M=16, ef_construction=200, built with the SIMD distance
    let cfg = IndexConfig { hnsw_m: 16, hnsw_ef_construction: 200, ..IndexConfig::default() };
    let rss0 = rss_kb();
    let t = Instant::now();
    let graph = Graph::build(None, &base, DIM, &cfg);
    let build = t.elapsed().as_secs_f64();
    let graph_bytes = (rss_kb().saturating_sub(rss0)) * 1024;
    println!("| method | storage | filter | build s | graph MB (RSS growth) | bytes/vector | queries/s | recall@1 | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut hnsw = Index::from_rows(Rows::new(DIM, Storage::Int8, base.clone()), Some(graph), 16);
    for ef in [16usize, 32, 64, 128, 256] {
        hnsw.set_ef_search(ef);
        let (qps, got) = single(&hnsw, &|_| true, nq);
        row(&format!("HNSW ef_search={ef}, one query"), "int8 rerank", "none", build, graph_bytes, qps, recall(&truth, &got, 1), recall(&truth, &got, 10));
    }
    hnsw.set_ef_search(128);
    let (qps, got) = single(&hnsw, &ten, nq);
    row("HNSW ef_search=128 (falls back to exact)", "int8", "10 %", build, graph_bytes, qps, recall(&truth10, &got, 1), recall(&truth10, &got, 10));
    let half = |id: u32| id % 2 == 0;
    let truth50 = f32_index.search_batch(&qs, k, &half);
    let (qps, got) = single(&hnsw, &half, nq);
    row("HNSW ef_search=128", "int8", "50 %", build, graph_bytes, qps, recall(&truth50, &got, 1), recall(&truth50, &got, 10));
    let (qps, got) = single(&i8_index, &half, 200);
    row("exact, one query", "int8", "50 %", 0.0, i8_bytes, qps, recall(&truth50[..200], &got, 1), recall(&truth50[..200], &got, 10));
}
