//! Nearest-neighbour search over the reference embeddings.
//!
//! Two layers answer one query together: an HNSW graph (`graph`) over the first `covered` vectors,
//! built only for catalogs of at least `index.hnsw_min_images`, and an exact scan over the rest
//! (all of a small catalog). The exact scan is a blocked matrix product (`simd`): a block of rows
//! that fits in cache is compared with every query of a batch before the next block is read, and
//! the rows are split between threads. Hidden vectors (removed products) are filtered out before any
//! arithmetic. When the filter is selective, or the graph's results run short after filtering,
//! the query is answered by the exact scan over the allowed rows, so filtering never costs recall.
//! The graph computes its similarities on the same stored rows as the exact scan.

pub(crate) mod graph;
pub(crate) mod simd;
pub(crate) mod vectors;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use crate::index::graph::Graph;
pub use crate::index::vectors::{Row, Rows, Storage};

/// One search result: a vector id and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row of the vector in the embedding store.
    pub vector: u32,
    /// Cosine similarity (dot product of unit vectors).
    pub similarity: f32,
}

/// Rows per exact-scan block at 512-d float32: 128 KiB, which stays in L2 while every query of a
/// batch is compared with it.
const BLOCK_BYTES: usize = 128 * 1024;
/// Allowed fraction of the rows below which a filtered query over 100 000 vectors skips the graph
/// for an exact scan. Measured there (docs/benchmarks-notebook.md, "Filtered search", int8,
/// top-10, ef_search 128, one query): with 10 % of the rows allowed the graph ran 756 queries/s
/// against exact's 1675, with 20 % 1506 against 1275, with 50 % 3457 against 822.
const SELECTIVE: f32 = 0.2;
/// Catalog size at which `SELECTIVE` was measured.
const SELECTIVE_AT: f32 = 100_000.0;
/// Rows × queries below which an exact scan stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// The searchable reference vectors: stored rows, optionally with an HNSW graph over a prefix.
pub struct Index {
    rows: Rows,
    graph: Option<Graph>,
    ef_search: usize,
}

/// Min-heap entry for top-k selection.
#[derive(PartialEq)]
struct Entry(f32, u32);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // reversed: the heap's top is the smallest similarity
        other.0.total_cmp(&self.0).then_with(|| self.1.cmp(&other.1))
    }
}

/// The best `k` (similarity, id) pairs seen so far.
struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    #[inline]
    fn push(&mut self, s: f32, id: u32) {
        if self.heap.len() < self.k {
            self.heap.push(Entry(s, id));
        } else if self.heap.peek().is_some_and(|top| s > top.0) {
            self.heap.pop();
            self.heap.push(Entry(s, id));
        }
    }

    fn merge(mut self, other: TopK) -> TopK {
        for Entry(s, id) in other.heap {
            self.push(s, id);
        }
        self
    }

    fn into_hits(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> =
            self.heap.into_iter().map(|Entry(s, id)| Hit { vector: id, similarity: s }).collect();
        sort_hits(&mut hits);
        hits
    }
}

fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.vector.cmp(&b.vector)));
}

impl Index {
    /// An index over float `vectors` held in memory (`dim` values per row) and an optional graph
    /// over a prefix of them.
    pub fn new(dim: usize, vectors: Vec<f32>, graph: Option<Graph>, ef_search: usize) -> Index {
        Index::from_rows(Rows::from_f32(dim, vectors), graph, ef_search)
    }

    /// An index over stored rows (float or int8, in memory or memory-mapped). A graph that covers
    /// more vectors than there are rows does not belong to them and is left out (with a warning).
    pub fn from_rows(rows: Rows, graph: Option<Graph>, ef_search: usize) -> Index {
        let graph = graph.filter(|g| {
            let fits = g.covered() <= rows.len();
            if !fits {
                tracing::warn!(
                    "search graph covers {} vectors but only {} are stored; searching exactly",
                    g.covered(),
                    rows.len()
                );
            }
            fits
        });
        Index { rows, graph, ef_search }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.rows.dim()
    }

    /// The stored rows.
    pub fn rows(&self) -> &Rows {
        &self.rows
    }

    /// Sets the graph's candidate list size for searching (`index.hnsw_ef_search`).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.ef_search = ef;
    }

    /// The HNSW graph in use, if any.
    pub fn graph(&self) -> Option<&Graph> {
        self.graph.as_ref()
    }

    /// Whether an HNSW graph is in use, and how many vectors it covers.
    pub fn graph_covered(&self) -> Option<usize> {
        self.graph.as_ref().map(Graph::covered)
    }

    /// The `k` most similar allowed vectors to `query`, best first (`search_batch` of one query).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<Hit> {
        self.search_batch(&[query], k, allowed).pop().unwrap_or_default()
    }

    /// For each query, the `k` most similar allowed vectors, best first. A query of the wrong
    /// dimension gets no hits.
    pub fn search_batch(
        &self,
        queries: &[&[f32]],
        k: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<Vec<Hit>> {
        let dim = self.dim();
        let mut out: Vec<Vec<Hit>> = vec![Vec::new(); queries.len()];
        if k == 0 || self.is_empty() {
            return out;
        }
        let valid: Vec<usize> = (0..queries.len()).filter(|&i| queries[i].len() == dim).collect();
        if valid.is_empty() {
            return out;
        }
        let qs: Vec<&[f32]> = valid.iter().map(|&i| queries[i]).collect();
        let results = match &self.graph {
            Some(graph) if allowed_fraction(self.len(), allowed) >= graph_threshold(self.len()) => {
                qs.par_iter().map(|q| self.graph_search(graph, q, k, allowed)).collect()
            }
            _ => self.exact_batch(&qs, k, 0, self.len(), allowed),
        };
        for (i, hits) in valid.into_iter().zip(results) {
            out[i] = hits;
        }
        out
    }

    /// Exact top-`k` of every query over all rows, ignoring any graph (the reference for recall).
    pub fn exact_search_batch(
        &self,
        queries: &[&[f32]],
        k: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<Vec<Hit>> {
        if queries.iter().any(|q| q.len() != self.dim()) || k == 0 {
            return vec![Vec::new(); queries.len()];
        }
        self.exact_batch(queries, k, 0, self.len(), allowed)
    }

    /// One query through the graph, plus an exact scan of the rows the graph does not cover.
    fn graph_search(
        &self,
        graph: &Graph,
        query: &[f32],
        k: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<Hit> {
        let covered = graph.covered();
        let mut hits = graph.search(&self.rows, query, k, self.ef_search.max(k), allowed);
        if hits.len() < k.min(covered) {
            // the filter left too few within the graph's reach: an exact scan keeps recall
            return self.exact_batch(&[query], k, 0, self.len(), allowed).pop().unwrap_or_default();
        }
        hits.extend(
            self.exact_batch(&[query], k, covered, self.len(), allowed).into_iter().flatten(),
        );
        sort_hits(&mut hits);
        hits.truncate(k);
        hits
    }

    /// Exact top-k of each query over rows `from..to`, the range split between threads.
    fn exact_batch(
        &self,
        queries: &[&[f32]],
        k: usize,
        from: usize,
        to: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<Vec<Hit>> {
        if from >= to {
            return vec![Vec::new(); queries.len()];
        }
        let n = to - from;
        let parts =
            if n * queries.len() >= PARALLEL_MIN { rayon::current_num_threads().max(1) } else { 1 };
        let chunk = n.div_ceil(parts);
        let tops = (0..parts)
            .into_par_iter()
            .map(|p| {
                let a = from + p * chunk;
                self.exact_range(queries, k, a, (a + chunk).min(to), allowed)
            })
            .reduce_with(|a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y)).collect());
        match tops {
            Some(t) => t.into_iter().map(TopK::into_hits).collect(),
            None => vec![Vec::new(); queries.len()],
        }
    }

    /// Exact top-k over rows `from..to` on this thread: block by block, allowed rows only.
    fn exact_range(
        &self,
        queries: &[&[f32]],
        k: usize,
        from: usize,
        to: usize,
        allowed: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<TopK> {
        let dim = self.dim();
        let mut tops: Vec<TopK> = queries.iter().map(|_| TopK::new(k)).collect();
        let block = (BLOCK_BYTES / (dim * 4)).max(16);
        let mut ids: Vec<u32> = Vec::with_capacity(block);
        let mut scratch: Vec<f32> = Vec::new();
        let mut scales: Vec<f32> = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + block).min(to);
            ids.clear();
            ids.extend((start as u32..end as u32).filter(|&id| allowed(id)));
            start = end;
            if ids.is_empty() {
                continue;
            }
            match (self.rows.storage(), self.rows.as_f32()) {
                (Storage::F32, Some(all)) => {
                    let row = |j: usize| &all[ids[j] as usize * dim..(ids[j] as usize + 1) * dim];
                    score_block(queries, &ids, row, None, &mut tops);
                }
                _ if queries.len() == 1 => {
                    // one query: convert int8 in registers, reading each row once
                    let q = queries[0];
                    for g in ids.chunks(4) {
                        let mut s = [0f32; 4];
                        let mut r: [&[i8]; 4] = [&[]; 4];
                        for j in 0..4 {
                            if let Row::Int8(sc, row) =
                                self.rows.row(g[j.min(g.len() - 1)] as usize)
                            {
                                (s[j], r[j]) = (sc, row);
                            }
                        }
                        if r.iter().any(|x| x.len() < dim) {
                            continue;
                        }
                        let d = simd::dot_i8_x4(q, r);
                        for j in 0..g.len() {
                            tops[0].push(d[j] * s[j], g[j]);
                        }
                    }
                }
                _ => {
                    // many queries: widen the block's int8 rows once, then the float kernel
                    scratch.resize(ids.len() * dim, 0.0);
                    scales.clear();
                    for (j, &id) in ids.iter().enumerate() {
                        if let Row::Int8(s, r) = self.rows.row(id as usize) {
                            simd::widen_i8(r, &mut scratch[j * dim..(j + 1) * dim]);
                            scales.push(s);
                        } else {
                            scales.push(0.0);
                        }
                    }
                    let row = |j: usize| &scratch[j * dim..(j + 1) * dim];
                    score_block(queries, &ids, row, Some(&scales), &mut tops);
                }
            }
        }
        tops
    }
}

/// Compares every query with the block's rows (`row(j)` is the row of `ids[j]`), two queries by
/// four rows at a time, and keeps the best in `tops`. `scales` multiplies each row's result.
fn score_block<'a>(
    queries: &[&[f32]],
    ids: &[u32],
    row: impl Fn(usize) -> &'a [f32],
    scales: Option<&[f32]>,
    tops: &mut [TopK],
) {
    let n = ids.len();
    let scale = |j: usize| scales.map_or(1.0, |s| s[j]);
    let mut qi = 0;
    while qi < queries.len() {
        let pair = qi + 1 < queries.len();
        let mut j = 0;
        while j < n {
            let idx = [j, (j + 1).min(n - 1), (j + 2).min(n - 1), (j + 3).min(n - 1)];
            let r = [row(idx[0]), row(idx[1]), row(idx[2]), row(idx[3])];
            let valid = (n - j).min(4);
            if pair {
                let d = simd::dot_f32_2x4([queries[qi], queries[qi + 1]], r);
                for t in 0..valid {
                    let sc = scale(j + t);
                    tops[qi].push(d[0][t] * sc, ids[j + t]);
                    tops[qi + 1].push(d[1][t] * sc, ids[j + t]);
                }
            } else {
                let d = simd::dot_f32_x4(queries[qi], r);
                for t in 0..valid {
                    tops[qi].push(d[t] * scale(j + t), ids[j + t]);
                }
            }
            j += 4;
        }
        qi += if pair { 2 } else { 1 };
    }
}

/// Allowed fraction from which a graph search beats an exact scan over `n` rows. To fill its list a
/// filtered graph search visits about 1/f times the nodes of an unfiltered one, while an exact scan
/// costs about n·f, so the break-even fraction falls as 1/√n: `SELECTIVE` at 100k, 0.45 at 20k
/// (measured between 0.2 and 0.3 there: on the safe side), 1 (no filter at all) below 4 000.
fn graph_threshold(n: usize) -> f32 {
    (SELECTIVE * (SELECTIVE_AT / n.max(1) as f32).sqrt()).min(1.0)
}

/// Fraction of `n` rows that `allowed` lets through, estimated from up to 256 evenly spread rows.
fn allowed_fraction(n: usize, allowed: &(dyn Fn(u32) -> bool + Sync)) -> f32 {
    if n == 0 {
        return 0.0;
    }
    let samples = n.min(256);
    let hits = (0..samples).filter(|&s| allowed((s * n / samples) as u32)).count();
    hits as f32 / samples as f32
}

/// Allowed values of `index.hnsw_m`: fewer than 4 neighbours leave the graph badly connected, more
/// than 128 cost memory and build time for no recall.
pub const HNSW_M_RANGE: std::ops::RangeInclusive<usize> = 4..=128;

/// Nearest-neighbour search settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Catalogs with at least this many reference images get an HNSW graph; smaller ones are searched
    /// exactly. The graph overtook exact search near 1 500 vectors (BENCHMARKS.md, "Search and
    /// index"); at 5 000 it is 2.5x faster for single queries and 1.4x for batches.
    pub hnsw_min_images: usize,
    /// HNSW: neighbours per node on the upper levels, twice as many on level 0 (4 to 128).
    pub hnsw_m: usize,
    /// HNSW: candidate list size while building.
    pub hnsw_ef_construction: usize,
    /// HNSW: candidate list size while searching.
    pub hnsw_ef_search: usize,
    /// Candidates fetched per query image before they are grouped by product.
    pub candidates: usize,
    /// How reference vectors are stored: `"int8"` (a quarter of the memory, similarities within
    /// about 0.002) or `"f32"` (exact). Applies to a new catalog and to `catalog compact`.
    pub storage: crate::index::vectors::Storage,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            hnsw_min_images: 5_000,
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef_search: 128,
            candidates: 50,
            storage: crate::index::vectors::Storage::Int8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            crate::model::embed::l2_normalize(&mut v);
            out.extend(v);
        }
        out
    }

    fn brute(
        rows: &[f32],
        dim: usize,
        q: &[f32],
        k: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<u32> {
        let mut all: Vec<(f32, u32)> = rows
            .chunks_exact(dim)
            .enumerate()
            .filter(|(i, _)| allowed(*i as u32))
            .map(|(i, r)| (q.iter().zip(r).map(|(a, b)| a * b).sum(), i as u32))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|x| x.1).collect()
    }

    #[test]
    fn batch_matches_brute_force_with_filters_and_storage() {
        let (n, dim, k) = (3001, 67, 7);
        let rows = unit_rows(n, dim, 42);
        let queries = unit_rows(5, dim, 7);
        let qs: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        let filters: [&(dyn Fn(u32) -> bool + Sync); 3] =
            [&|_| true, &|id| id % 10 == 3, &|id| id == 5];
        for storage in [Storage::F32, Storage::Int8] {
            let index = Index::from_rows(Rows::new(dim, storage, rows.clone()), None, 16);
            for f in filters {
                let batch = index.search_batch(&qs, k, f);
                for (q, hits) in qs.iter().zip(&batch) {
                    let want = brute(&rows, dim, q, k, f);
                    let got: Vec<u32> = hits.iter().map(|h| h.vector).collect();
                    assert_eq!(got.len(), want.len());
                    assert_eq!(index.search(q, k, f), *hits, "single query = batch of one");
                    if storage == Storage::F32 {
                        assert_eq!(got, want);
                    } else {
                        // int8: the true best must be found (its margin here is far above 0.01)
                        assert_eq!(got[0], want[0]);
                    }
                    for h in hits {
                        let exact: f32 = q
                            .iter()
                            .zip(&rows[h.vector as usize * dim..])
                            .map(|(a, b)| a * b)
                            .sum();
                        assert!((exact - h.similarity).abs() < 0.01);
                    }
                }
            }
        }
        // a query of the wrong dimension gets nothing, the others still get their hits
        let index = Index::new(dim, rows.clone(), None, 16);
        let short = vec![0.1f32; 3];
        let res = index.search_batch(&[qs[0], &short], k, &|_| true);
        assert_eq!(res[0].len(), k);
        assert!(res[1].is_empty());
    }

    #[test]
    fn graph_covers_a_prefix_and_the_rest_is_searched_exactly() {
        let (n, covered, dim, k) = (3200, 3000, 32, 5);
        let rows = unit_rows(n, dim, 9);
        let cfg =
            crate::index::IndexConfig { hnsw_m: 8, hnsw_ef_construction: 64, ..Default::default() };
        let graph =
            Graph::build(None, &Rows::new(dim, Storage::F32, rows[..covered * dim].to_vec()), &cfg)
                .expect("build");
        let index = Index::from_rows(Rows::new(dim, Storage::F32, rows.clone()), Some(graph), 64);
        assert_eq!(index.graph_covered(), Some(covered));
        // a stored vector finds itself first, whether the graph covers it or not
        for id in [0usize, 1234, 2999, 3000, 3199] {
            let q = &rows[id * dim..(id + 1) * dim];
            assert_eq!(index.search(q, k, &|_| true)[0].vector, id as u32, "vector {id}");
        }
        // selective filters go exact: the answer is the brute-force one
        let queries = unit_rows(4, dim, 10);
        for q in queries.chunks_exact(dim) {
            for f in
                [&(|id: u32| id % 50 == 1) as &(dyn Fn(u32) -> bool + Sync), &|id: u32| id >= 3100]
            {
                let got: Vec<u32> = index.search(q, k, f).iter().map(|h| h.vector).collect();
                assert_eq!(got, brute(&rows, dim, q, k, f));
            }
        }
        // a graph over more vectors than the rows is left out rather than read out of bounds
        let big =
            Graph::build(None, &Rows::new(dim, Storage::F32, rows.clone()), &cfg).expect("build");
        let small = Index::from_rows(
            Rows::new(dim, Storage::F32, rows[..100 * dim].to_vec()),
            Some(big),
            64,
        );
        assert_eq!(small.graph_covered(), None);
        assert_eq!(small.search(&rows[..dim], 1, &|_| true)[0].vector, 0);
    }

    #[test]
    fn graph_threshold_falls_with_catalog_size() {
        assert_eq!(graph_threshold(1000), 1.0);
        assert!((graph_threshold(100_000) - SELECTIVE).abs() < 1e-6);
        assert!(graph_threshold(20_000) > graph_threshold(100_000));
        assert!(graph_threshold(1_000_000) < 0.07);
    }
}
