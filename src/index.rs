//! Nearest-neighbour search over the reference embeddings.
//!
//! Two layers answer one query together: an HNSW graph (hnsw_rs) over the first `covered` vectors,
//! built only for catalogs of at least `index.hnsw_min_images`, and an exact scan over the rest
//! (all of a small catalog). Hidden vectors (removed products) are filtered out; when the graph's
//! candidates run short after filtering, the query falls back to an exact scan, so filtering never
//! costs recall.
//!
//! On disk an HNSW graph is the pair `DATA/hnsw/<generation>/knockoff.hnsw.{graph,data}` written by
//! hnsw_rs; the catalog database records which generation is current and how many vectors it covers.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use hnsw_rs::prelude::{AnnT, DistDot, Hnsw, HnswIo};

use crate::config::IndexConfig;
use crate::embed::dot;

/// Base name of the hnsw_rs dump files.
const BASENAME: &str = "knockoff";
/// Layers of the HNSW graph (hnsw_rs's maximum is 16).
const MAX_LAYERS: usize = 16;

/// One search result: a vector id and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Row of the vector in the embedding store.
    pub vector: u32,
    /// Cosine similarity (dot product of unit vectors).
    pub similarity: f32,
}

/// The HNSW part of an index: a graph over vectors `0..covered`.
pub struct Graph {
    hnsw: Hnsw<'static, f32, DistDot>,
    covered: usize,
}

impl Graph {
    /// Builds a graph over `vectors` (`dim` values each), or extends `base` with the vectors it lacks.
    pub fn build(base: Option<Graph>, vectors: &[f32], dim: usize, cfg: &IndexConfig) -> Graph {
        let count = vectors.len() / dim;
        let (hnsw, start) = match base {
            Some(g) => (g.hnsw, g.covered),
            None => {
                let h = Hnsw::<f32, DistDot>::new(
                    cfg.hnsw_m.clamp(1, 256),
                    count.max(1),
                    MAX_LAYERS,
                    cfg.hnsw_ef_construction.max(1),
                    DistDot,
                );
                (h, 0)
            }
        };
        let new: Vec<(&[f32], usize)> =
            (start..count).map(|i| (&vectors[i * dim..(i + 1) * dim], i)).collect();
        if !new.is_empty() {
            hnsw.parallel_insert_slice(&new);
        }
        Graph { hnsw, covered: count }
    }

    /// Number of vectors the graph covers.
    pub fn covered(&self) -> usize {
        self.covered
    }

    /// Writes the graph into a new directory `dir` (which must not exist yet), written aside and renamed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = crate::fsutil::temp_sibling(dir);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        self.hnsw
            .file_dump(&tmp, BASENAME)
            .map_err(|e| anyhow!("cannot write HNSW graph to {}: {e}", tmp.display()))?;
        for entry in std::fs::read_dir(&tmp)? {
            let f = std::fs::File::open(entry?.path())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir).with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
        crate::fsutil::sync_dir(dir.parent());
        Ok(())
    }

    /// Loads a graph written by `save`; `covered` is the vector count recorded with it.
    pub fn load(dir: &Path, covered: usize) -> Result<Graph> {
        for ext in ["hnsw.graph", "hnsw.data"] {
            let p = dir.join(format!("{BASENAME}.{ext}"));
            if !p.is_file() {
                return Err(anyhow!("HNSW file {} is missing; run `knockoff catalog compact` to rebuild", p.display()));
            }
        }
        // hnsw_rs's reloaded graph borrows its loader for the graph's whole life; a process holds
        // one graph, so the loader is leaked on purpose rather than kept in a self-referential struct.
        let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
        let hnsw: Hnsw<'static, f32, DistDot> = io
            .load_hnsw::<f32, DistDot>()
            .map_err(|e| anyhow!("cannot load HNSW graph from {}: {e}; run `knockoff catalog compact` to rebuild", dir.display()))?;
        Ok(Graph { hnsw, covered })
    }
}

/// Directory of graph generation `gen` inside a data directory.
pub fn graph_dir(data_dir: &Path, gen: u64) -> PathBuf {
    data_dir.join("hnsw").join(gen.to_string())
}

/// The searchable reference vectors: stored rows, optionally with an HNSW graph over a prefix.
pub struct Index {
    dim: usize,
    vectors: Vec<f32>,
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

impl Index {
    /// An index over `vectors` (`dim` values per row) and an optional graph over a prefix of them.
    pub fn new(dim: usize, vectors: Vec<f32>, graph: Option<Graph>, ef_search: usize) -> Index {
        Index { dim, vectors, graph, ef_search }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    /// True when there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Whether an HNSW graph is in use, and how many vectors it covers.
    pub fn graph_covered(&self) -> Option<usize> {
        self.graph.as_ref().map(|g| g.covered)
    }

    /// The stored vector `id`.
    pub fn vector(&self, id: u32) -> &[f32] {
        let i = id as usize * self.dim;
        &self.vectors[i..i + self.dim]
    }

    /// The `k` most similar allowed vectors to `query`, best first.
    pub fn search(&self, query: &[f32], k: usize, allowed: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let Some(graph) = &self.graph else {
            return self.exact(query, k, 0, self.len(), allowed);
        };
        let covered = graph.covered.min(self.len());
        // ask the graph for more than k so that filtering leaves enough
        let want = (k * 2).max(k + 8);
        let ef = self.ef_search.max(want);
        let mut hits: Vec<Hit> = graph
            .hnsw
            .search(query, want, ef)
            .into_iter()
            .filter(|n| n.d_id < covered)
            .map(|n| n.d_id as u32)
            .filter(|&id| allowed(id))
            .map(|id| Hit { vector: id, similarity: dot(query, self.vector(id)) })
            .collect();
        if hits.len() < k.min(covered) {
            // too many candidates were filtered out: an exact scan keeps recall
            return self.exact(query, k, 0, self.len(), allowed);
        }
        hits.extend(self.exact(query, k, covered, self.len(), allowed));
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.vector.cmp(&b.vector)));
        hits.truncate(k);
        hits
    }

    /// Exact top-k over rows `from..to`.
    fn exact(&self, query: &[f32], k: usize, from: usize, to: usize, allowed: &dyn Fn(u32) -> bool) -> Vec<Hit> {
        let mut heap: BinaryHeap<Entry> = BinaryHeap::with_capacity(k + 1);
        for i in from..to {
            let id = i as u32;
            if !allowed(id) {
                continue;
            }
            let s = dot(query, &self.vectors[i * self.dim..(i + 1) * self.dim]);
            if heap.len() < k {
                heap.push(Entry(s, id));
            } else if heap.peek().is_some_and(|top| s > top.0) {
                heap.pop();
                heap.push(Entry(s, id));
            }
        }
        let mut hits: Vec<Hit> = heap.into_iter().map(|Entry(s, id)| Hit { vector: id, similarity: s }).collect();
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.vector.cmp(&b.vector)));
        hits
    }
}
