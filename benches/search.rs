//! Search benchmark: exact (float32 and int8) and HNSW (`knockoff::index::Graph`) on the same vectors,
//! printed as tables.
//!
//! `cargo bench --bench search` (N = 100000 by default; `KNOCKOFF_BENCH_N=1000000` for 1M);
//! `KNOCKOFF_BENCH_SIZES=10000,20000,50000 cargo bench --bench search` compares the graph with
//! exact search at the settings `scan` uses, per catalog size (the `index.hnsw_min_images` cross-over);
//! `KNOCKOFF_BENCH_BUILD=1 cargo bench --bench search` times the graph build alone (twice).
//! Vectors are clustered unit vectors (centres, members around them, and queries that are
//! perturbed copies of members: near-duplicates, as in copy detection). They are written to
//! `target/bench-search/` so that `benches/python/search.py` measures hnswlib and numpy on the same
//! data. Recall is measured against exact float32 search.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use knockoff::index::Graph;
use knockoff::index::IndexConfig;
use knockoff::index::{Hit, Index};
use knockoff::index::{Rows, Storage};
use knockoff::internals::Rng;
use knockoff::model::embed::l2_normalize;

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
        let mut v: Vec<f32> =
            base[m * DIM..(m + 1) * DIM].iter().map(|x| x + 0.03 * rng.range(-0.5, 0.5)).collect();
        l2_normalize(&mut v);
        queries.extend(v);
    }
    (base, queries)
}

fn rss_kb() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
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

/// `KNOCKOFF_BENCH_BUILD=1`: the graph's build time (twice, with a check that both builds are
/// the same bytes) and its search recall against exact float32 search, nothing else.
fn build_only(n: usize) {
    let (nq, k) = (1000, 10);
    let (base, queries) = data(n, nq);
    let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
    let truth = Index::new(DIM, base.clone(), None, 128).search_batch(&qs, k, &|_| true);
    let cfg = IndexConfig { hnsw_m: 16, hnsw_ef_construction: 200, ..IndexConfig::default() };
    let rows = Rows::new(DIM, Storage::Int8, base);
    let mut builds = Vec::new();
    for run in 0..2 {
        let t = Instant::now();
        let graph = Graph::build(None, &rows, &cfg).expect("build");
        println!(
            "build {run}: {:.1} s ({} threads)",
            t.elapsed().as_secs_f64(),
            rayon::current_num_threads()
        );
        builds.push(graph);
    }
    println!(
        "the two builds are {}",
        if builds[0] == builds[1] { "identical" } else { "different" }
    );
    for ef in [16usize, 64, 128] {
        let got: Vec<Vec<Hit>> =
            qs.iter().map(|q| builds[0].search(&rows, q, k, ef, &|_| true)).collect();
        println!(
            "ef_search {ef}: recall@1 {:.3}, recall@10 {:.3}",
            recall(&truth, &got, 1),
            recall(&truth, &got, 10)
        );
    }
}

fn main() {
    let n_env =
        || std::env::var("KNOCKOFF_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    if std::env::var("KNOCKOFF_BENCH_BUILD").is_ok() {
        build_only(n_env());
        return;
    }
    if let Ok(sizes) = std::env::var("KNOCKOFF_BENCH_SIZES") {
        let sizes: Vec<usize> = sizes.split(',').filter_map(|s| s.trim().parse().ok()).collect();
        crossover(&sizes);
        return;
    }
    let n: usize =
        std::env::var("KNOCKOFF_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
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
    let row =
        |m: &str, st: &str, filt: &str, build: f64, bytes: usize, qps: f64, r1: f64, r10: f64| {
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
        row(
            "old scalar loop, one query",
            "f32",
            "none",
            0.0,
            n * DIM * 4,
            count as f64 / t.elapsed().as_secs_f64(),
            1.0,
            1.0,
        );
    }

    let ten = |id: u32| id % 10 == 3;
    let t = Instant::now();
    let truth10 = f32_index.search_batch(&qs, k, &ten);
    row(
        "exact, batch of 1000",
        "f32",
        "10 %",
        0.0,
        n * DIM * 4,
        nq as f64 / t.elapsed().as_secs_f64(),
        1.0,
        1.0,
    );

    let i8_index = Index::from_rows(Rows::new(DIM, Storage::Int8, base.clone()), None, 128);
    let t = Instant::now();
    let got = i8_index.search_batch(&qs, k, &|_| true);
    let qps = nq as f64 / t.elapsed().as_secs_f64();
    let mut max_diff = 0f32;
    for (q, g) in qs.iter().zip(&got) {
        for h in g {
            let exact = knockoff::internals::dot(
                q,
                &base[h.vector as usize * DIM..(h.vector as usize + 1) * DIM],
            );
            max_diff = max_diff.max((exact - h.similarity).abs());
        }
    }
    let i8_bytes = i8_index.rows().bytes();
    row(
        "exact, batch of 1000",
        "int8",
        "none",
        0.0,
        i8_bytes,
        qps,
        recall(&truth, &got, 1),
        recall(&truth, &got, 10),
    );
    let (qps, got1) = single(&i8_index, &|_| true, 200);
    row(
        "exact, one query",
        "int8",
        "none",
        0.0,
        i8_bytes,
        qps,
        recall(&truth[..200], &got1, 1),
        recall(&truth[..200], &got1, 10),
    );
    let t = Instant::now();
    let got = i8_index.search_batch(&qs, k, &ten);
    row(
        "exact, batch of 1000",
        "int8",
        "10 %",
        0.0,
        i8_bytes,
        nq as f64 / t.elapsed().as_secs_f64(),
        recall(&truth10, &got, 1),
        recall(&truth10, &got, 10),
    );
    println!(
        "\nint8 vs f32: largest similarity difference over the top-{k} lists: {max_diff:.5}\n"
    );

    // HNSW (src/index/graph.rs), M=16, ef_construction=200, over the int8 rows the index stores
    let cfg = IndexConfig { hnsw_m: 16, hnsw_ef_construction: 200, ..IndexConfig::default() };
    let rss0 = rss_kb();
    let t = Instant::now();
    let graph = Graph::build(None, i8_index.rows(), &cfg).expect("build");
    let build = t.elapsed().as_secs_f64();
    let rss_growth = rss_kb().saturating_sub(rss0) * 1024;
    let links = graph.bytes();
    println!(
        "\ngraph: M = {}, top level {}, links {:.1} MB = {} B/vector (RSS growth {:.1} MB); with the int8 rows {} B/vector\n",
        graph.m(),
        graph.top_level(),
        links as f64 / 1e6,
        links / n,
        rss_growth as f64 / 1e6,
        (links + i8_bytes) / n
    );
    println!("| method | storage | filter | build s | index MB (rows + links) | bytes/vector | queries/s | recall@1 | recall@10 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut hnsw = Index::from_rows(Rows::new(DIM, Storage::Int8, base.clone()), Some(graph), 16);
    let total = i8_bytes + links;
    for ef in [16usize, 32, 64, 128, 256] {
        hnsw.set_ef_search(ef);
        let (qps, got) = single(&hnsw, &|_| true, nq);
        row(
            &format!("HNSW ef_search={ef}, one query"),
            "int8",
            "none",
            build,
            total,
            qps,
            recall(&truth, &got, 1),
            recall(&truth, &got, 10),
        );
    }

    // filters: the graph alone (whatever the policy), exact search, and what the index chooses
    let ef = 128;
    hnsw.set_ef_search(ef);
    let graph = hnsw.graph().expect("graph");
    let graph_only = |filter: &(dyn Fn(u32) -> bool + Sync)| {
        let t = Instant::now();
        let res: Vec<Vec<Hit>> =
            qs.iter().map(|q| graph.search(hnsw.rows(), q, k, ef, filter)).collect();
        (nq as f64 / t.elapsed().as_secs_f64(), res)
    };
    let fifth = |id: u32| id % 5 == 1;
    let thirty = |id: u32| id % 10 < 3;
    let half = |id: u32| id.is_multiple_of(2);
    let ninety = |id: u32| id % 10 != 3;
    let filters: [(&str, &(dyn Fn(u32) -> bool + Sync)); 5] =
        [("10 %", &ten), ("20 %", &fifth), ("30 %", &thirty), ("50 %", &half), ("90 %", &ninety)];
    for (name, f) in filters {
        let truth_f = f32_index.search_batch(&qs, k, f);
        let (qps, got) = graph_only(f);
        row(
            &format!("HNSW alone ef_search={ef}, one query"),
            "int8",
            name,
            build,
            total,
            qps,
            recall(&truth_f, &got, 1),
            recall(&truth_f, &got, 10),
        );
        let (qps, got) = single(&i8_index, f, 200);
        row(
            "exact, one query",
            "int8",
            name,
            0.0,
            i8_bytes,
            qps,
            recall(&truth_f[..200], &got, 1),
            recall(&truth_f[..200], &got, 10),
        );
        let (qps, got) = single(&hnsw, f, nq);
        row(
            "index (graph or exact by SELECTIVE), one query",
            "int8",
            name,
            build,
            total,
            qps,
            recall(&truth_f, &got, 1),
            recall(&truth_f, &got, 10),
        );
    }

    // the settings `scan` uses: top-50 candidates, ef_search 128, one query and batches
    let (qps, got) = timed(|| qs.iter().map(|q| hnsw.search(q, 50, &|_| true)).collect());
    row(
        "HNSW ef_search=128, top-50, one query",
        "int8",
        "none",
        build,
        total,
        qps,
        recall(&truth, &got, 1),
        recall(&truth, &got, 10),
    );
    let (qps, _) = timed(|| qs[..200].iter().map(|q| i8_index.search(q, 50, &|_| true)).collect());
    row(
        "exact, top-50, one query",
        "int8",
        "none",
        0.0,
        i8_bytes,
        qps * 200.0 / nq as f64,
        1.0,
        1.0,
    );
    let (qps, got) = timed(|| hnsw.search_batch(&qs, 50, &|_| true));
    row(
        "HNSW ef_search=128, top-50, batch of 1000",
        "int8",
        "none",
        build,
        total,
        qps,
        recall(&truth, &got, 1),
        recall(&truth, &got, 10),
    );
    let (qps, _) = timed(|| i8_index.search_batch(&qs, 50, &|_| true));
    row("exact, top-50, batch of 1000", "int8", "none", 0.0, i8_bytes, qps, 1.0, 1.0);

    // the same graph over float32 rows, as hnswlib stores them
    if n <= 200_000 {
        let t = Instant::now();
        let graph = Graph::build(None, f32_index.rows(), &cfg).expect("build");
        let build = t.elapsed().as_secs_f64();
        let total = n * DIM * 4 + graph.bytes();
        let mut f32_hnsw = Index::new(DIM, base.clone(), Some(graph), 16);
        for ef in [16usize, 32, 64, 128] {
            f32_hnsw.set_ef_search(ef);
            let (qps, got) = single(&f32_hnsw, &|_| true, nq);
            row(
                &format!("HNSW ef_search={ef}, one query"),
                "f32",
                "none",
                build,
                total,
                qps,
                recall(&truth, &got, 1),
                recall(&truth, &got, 10),
            );
        }
    }
}

/// Runs `f`, which answers all 1000 bench queries, and returns its queries/s and its answers.
fn timed(f: impl FnOnce() -> Vec<Vec<Hit>>) -> (f64, Vec<Vec<Hit>>) {
    let t = Instant::now();
    let res = f();
    (1000.0 / t.elapsed().as_secs_f64(), res)
}

/// `KNOCKOFF_BENCH_SIZES=10000,20000,...`: exact int8 search against the graph at the settings
/// `scan` uses (top-50 candidates, ef_search 128, M 16, ef_construction 200), per catalog size.
fn crossover(sizes: &[usize]) {
    let nq = 1000;
    let cfg = IndexConfig { hnsw_m: 16, hnsw_ef_construction: 200, ..IndexConfig::default() };
    println!(
        "# graph against exact search (int8 rows, top-50, ef_search 128, {} threads)",
        rayon::current_num_threads()
    );
    println!("| vectors | build s | exact, one query | graph, one query | exact, batch of 1000 | graph, batch of 1000 | graph recall@10 |");
    println!("|---|---|---|---|---|---|---|");
    for &n in sizes {
        let (base, queries) = data(n, nq);
        let qs: Vec<&[f32]> = queries.chunks_exact(DIM).collect();
        let exact = Index::from_rows(Rows::new(DIM, Storage::Int8, base.clone()), None, 128);
        let truth = Index::new(DIM, base.clone(), None, 128).search_batch(&qs, 10, &|_| true);
        let t = Instant::now();
        let graph = Graph::build(None, exact.rows(), &cfg).expect("build");
        let build = t.elapsed().as_secs_f64();
        let hnsw = Index::from_rows(Rows::new(DIM, Storage::Int8, base), Some(graph), 128);
        let (e1, _) = timed(|| qs.iter().map(|q| exact.search(q, 50, &|_| true)).collect());
        let (g1, got) = timed(|| qs.iter().map(|q| hnsw.search(q, 50, &|_| true)).collect());
        let (eb, _) = timed(|| exact.search_batch(&qs, 50, &|_| true));
        let (gb, _) = timed(|| hnsw.search_batch(&qs, 50, &|_| true));
        println!(
            "| {n} | {build:.1} | {e1:.0} | {g1:.0} | {eb:.0} | {gb:.0} | {:.3} |",
            recall(&truth, &got, 10)
        );
    }
}
