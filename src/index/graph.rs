//! knockoff's own HNSW graph (hierarchical navigable small world, Malkov & Yashunin 2018) over the
//! stored reference rows.
//!
//! The graph holds only adjacency. Similarities are computed against the index's stored `Rows`
//! (int8 by default, or float32), so a vector costs its stored row (516 B as int8 at 512-d) plus
//! its links (about 140 B at M = 16), and a search sees exactly the similarities an exact scan sees.
//! Similarity is the dot product of unit vectors; an int8 row's is `dot(query, ints) × scale`.
//!
//! **Structure.** Every node is on level 0; node `i` is also on levels `1..=level(i)`, the level
//! drawn once from the graph's own seeded generator (`SplitMix`, keyed by the id) with
//! P(level ≥ l) = M^-l (multiplier 1 / ln M). Level 0 keeps up to 2M neighbours, the upper
//! levels up to M. A node inserted gets up to M neighbours on each of its levels, chosen by the
//! HNSW heuristic (Malkov & Yashunin, algorithm 4, as hnswlib's `getNeighborsByHeuristic2`: a
//! candidate is kept only when it is closer to the new node than to every neighbour kept before
//! it); each chosen neighbour links back, and a list that overflows is pruned with the same
//! heuristic.
//!
//! **Build.** Deterministic: the same rows and settings give the same graph, byte for byte, on
//! any number of threads, so a catalog rebuilt gives the same verdicts. Nodes are inserted in id
//! order, in batches of `BUILD_BATCH`: the rayon threads search the graph as it stood before the
//! batch (frozen, read only) for each node's candidates on its levels; then the batch is linked in
//! id order on one thread, each node's candidates completed with the exact similarities to the
//! nodes of its batch inserted before it (which the frozen graph does not hold yet), its lists
//! chosen and its neighbours linked back. An existing graph is extended the same way, from the
//! first vector it lacks.
//!
//! **Search.** Greedy descent through the upper levels, then a best-first search at level 0 with a
//! candidate list of `ef`. A filter is applied as hnswlib does: every node is traversed, only
//! allowed ones enter the result list, and the search stops early only once that list is full.
//! Visited nodes are marked in a per-thread array of generation counters, reused between searches.
//!
//! **File format** (`DATA/graph-<generation>.knkg`), little endian, version 1:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `KNKGRF01` |
//! | 4 | `u32` format version (1) |
//! | 4 | `u32` M |
//! | 4 | `u32` top level |
//! | 4 | `u32` entry point (node id) |
//! | 4 | `u32` node count `n` (the graph covers vectors `0..n`) |
//! | 4 | `u32` `U`, the length of the upper-level section in `u32` words |
//! | 8 | `u64` checksum of everything after the header (FNV-1a over 32-bit words in four lanes, see `checksum`) |
//! | `n`, padded to a multiple of 4 | `u8` level of each node |
//! | `n × (1 + 2M) × 4` | level-0 links, a fixed stride per node: `u32` count, then 2M `u32` ids (unused slots 0) |
//! | `(n + 1) × 4` | `u32` offset of each node's upper-level blocks in the upper section (in words), then `U` |
//! | `U × 4` | upper-level links: for each node with level L > 0, L blocks `[u32 count, M u32 ids]`, levels 1..=L |
//!
//! Loading memory-maps the file (the links are used in place, 4 ms for 100k vectors) and checks
//! the size, the checksum and every count, offset and id before a search uses them, so a truncated
//! or corrupt file is an error that names the file, never a panic.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

use crate::index::simd;
use crate::index::vectors::Rows;
use crate::index::Hit;
use crate::index::IndexConfig;

/// Magic at the start of a graph file; the last two digits are the format version.
pub const MAGIC: &[u8; 8] = b"KNKGRF01";
/// Format version written in the header.
const VERSION: u32 = 1;
/// Bytes of the header before the levels section.
const HEADER_BYTES: usize = 40;
/// Highest level a node can be drawn (a level above 15 has odds M^-16).
const MAX_LEVEL: usize = 15;
/// Largest M a graph file may declare (the config allows less, see `config`).
const MAX_M: usize = 1024;
/// Bytes of each row prefetched ahead of its similarity: a whole int8 row at 512-d. Measured at
/// 100k × 512 (docs/benchmarks-notebook.md, "Search"): int8 search +30 % and build −13 % CPU
/// against the first cache line only; float rows gain nothing from prefetching all 2 KiB (it costs
/// 10 %), so they get the same 576 bytes and the hardware prefetcher does the rest.
const PREFETCH_BYTES: usize = 576;
/// Seed of the level draws.
const LEVEL_SEED: u64 = 0x6b6e_6f63_6b6f_6666;
/// Nodes inserted per batch of a build (see the module doc): their searches run in parallel against
/// the graph before the batch. A constant, never the thread count, so that a build is the same on
/// every machine. Each node computes at most 255 exact similarities to its batch, little next to
/// its search at ef_construction 200; build times before and after in BENCHMARKS.md.
const BUILD_BATCH: usize = 256;

/// A node with its similarity to the vector being searched for, ordered by similarity (ties: the
/// smaller id ranks higher).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scored {
    sim: f32,
    id: u32,
}

impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim.total_cmp(&other.sim).then_with(|| other.id.cmp(&self.id))
    }
}

/// The stored rows as the graph reads them: float32 rows, or int8 rows with their scale in front.
#[derive(Clone, Copy)]
enum Vectors<'a> {
    F32 { all: &'a [f32], dim: usize },
    Int8 { raw: &'a [u8], dim: usize },
}

impl<'a> Vectors<'a> {
    fn of(rows: &'a Rows) -> Vectors<'a> {
        match (rows.as_f32(), rows.as_int8_bytes()) {
            (_, Some(raw)) => Vectors::Int8 { raw, dim: rows.dim() },
            (Some(all), None) => Vectors::F32 { all, dim: rows.dim() },
            // unaligned float storage cannot happen for rows written by knockoff; no rows is safe
            (None, None) => Vectors::F32 { all: &[], dim: rows.dim() },
        }
    }

    fn len(&self) -> usize {
        match *self {
            Vectors::F32 { all, dim } => all.len() / dim.max(1),
            Vectors::Int8 { raw, dim } => raw.len() / (dim + 4),
        }
    }

    #[inline(always)]
    fn f32_row(all: &[f32], dim: usize, id: u32) -> &[f32] {
        &all[id as usize * dim..(id as usize + 1) * dim]
    }

    #[inline(always)]
    fn int8_row(raw: &[u8], dim: usize, id: u32) -> (f32, &[i8]) {
        let r = &raw[id as usize * (dim + 4)..(id as usize + 1) * (dim + 4)];
        let scale = f32::from_le_bytes([r[0], r[1], r[2], r[3]]);
        // SAFETY: i8 and u8 have the same size and alignment; the slice is `dim` bytes long.
        let ints = unsafe { std::slice::from_raw_parts(r[4..].as_ptr() as *const i8, dim) };
        (scale, ints)
    }

    /// Similarities of `q` to four rows (`ids < len()`).
    #[inline]
    fn sim4(&self, q: &[f32], ids: [u32; 4]) -> [f32; 4] {
        match *self {
            Vectors::F32 { all, dim } => {
                let r = |j: usize| Self::f32_row(all, dim, ids[j]);
                simd::dot_f32_x4(q, [r(0), r(1), r(2), r(3)])
            }
            Vectors::Int8 { raw, dim } => {
                let r = [
                    Self::int8_row(raw, dim, ids[0]),
                    Self::int8_row(raw, dim, ids[1]),
                    Self::int8_row(raw, dim, ids[2]),
                    Self::int8_row(raw, dim, ids[3]),
                ];
                let d = simd::dot_i8_x4(q, [r[0].1, r[1].1, r[2].1, r[3].1]);
                [d[0] * r[0].0, d[1] * r[1].0, d[2] * r[2].0, d[3] * r[3].0]
            }
        }
    }

    /// Similarity of `q` to one row.
    #[inline]
    fn sim(&self, q: &[f32], id: u32) -> f32 {
        match *self {
            Vectors::F32 { all, dim } => simd::dot(q, Self::f32_row(all, dim, id)),
            Vectors::Int8 { .. } => self.sim4(q, [id; 4])[0],
        }
    }

    /// Starts loading the first `PREFETCH_BYTES` of a row into the cache.
    #[inline(always)]
    fn prefetch(&self, id: u32) {
        let (start, bytes) = match *self {
            Vectors::F32 { all, dim } => {
                (all.as_ptr().wrapping_add(id as usize * dim) as *const u8, dim * 4)
            }
            Vectors::Int8 { raw, dim } => {
                (raw.as_ptr().wrapping_add(id as usize * (dim + 4)), dim + 4)
            }
        };
        let end = start as usize + bytes.min(PREFETCH_BYTES);
        let mut line = start as usize & !63;
        while line < end {
            simd::prefetch(line as *const u8);
            line += 64;
        }
    }

    /// Row `id` as float values: the stored slice for float rows, int8 rows scaled back into `buf`.
    fn load<'b>(&'b self, id: u32, buf: &'b mut Vec<f32>) -> &'b [f32] {
        match *self {
            Vectors::F32 { all, dim } => Self::f32_row(all, dim, id),
            Vectors::Int8 { raw, dim } => {
                let (scale, ints) = Self::int8_row(raw, dim, id);
                buf.clear();
                buf.extend(ints.iter().map(|&x| x as f32 * scale));
                buf
            }
        }
    }
}

/// Marks of the nodes one search has visited: generation counters, so that starting a new search
/// is one increment instead of clearing the array.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn start(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `id`; true when it was not marked yet in this search.
    #[inline(always)]
    fn first_visit(&mut self, id: u32) -> bool {
        let m = &mut self.marks[id as usize];
        let fresh = *m != self.epoch;
        *m = self.epoch;
        fresh
    }
}

/// Buffers of one thread's searches and insertions, reused from one to the next.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Scored>,
    results: BinaryHeap<Reverse<Scored>>,
    fresh: Vec<u32>,
    found: Vec<Scored>,
    chosen: Vec<Scored>,
    pruned: Vec<Scored>,
    query: Vec<f32>,
    node: Vec<f32>,
    candidate: Vec<f32>,
    merged: Vec<Scored>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (fresh ones if they are in use further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Read access to neighbour lists, for the search routines shared by building and searching.
trait Adjacency {
    /// Number of nodes.
    fn nodes(&self) -> usize;
    /// Calls `f` with each neighbour of `node` on `level` (`level <= level(node)`).
    fn each_neighbour(&self, node: u32, level: usize, f: impl FnMut(u32));
}

/// A graph's lists together with the rows they link, as the search routines walk them.
struct Walk<'g, A> {
    adj: &'g A,
    vecs: Vectors<'g>,
}

impl<A: Adjacency> Walk<'_, A> {
    /// Greedy walk on one level: moves to the most similar neighbour until none is more similar.
    fn greedy(&self, q: &[f32], mut cur: Scored, level: usize, s: &mut Scratch) -> Scored {
        let (adj, vecs) = (self.adj, self.vecs);
        loop {
            s.fresh.clear();
            let fresh = &mut s.fresh;
            adj.each_neighbour(cur.id, level, |n| fresh.push(n));
            let mut best = cur;
            for g in s.fresh.chunks(4) {
                let ids =
                    [g[0], g[1.min(g.len() - 1)], g[2.min(g.len() - 1)], g[3.min(g.len() - 1)]];
                let sims = vecs.sim4(q, ids);
                for (j, &id) in g.iter().enumerate() {
                    let c = Scored { sim: sims[j], id };
                    if c > best {
                        best = c;
                    }
                }
            }
            if best == cur {
                return cur;
            }
            cur = best;
        }
    }

    /// Best-first search on one level from `entries`, keeping the `ef` most similar allowed nodes;
    /// leaves them in `s.found`, best first.
    fn search_level(
        &self,
        q: &[f32],
        entries: &[Scored],
        ef: usize,
        level: usize,
        allowed: Option<&dyn Fn(u32) -> bool>,
        s: &mut Scratch,
    ) {
        let (adj, vecs) = (self.adj, self.vecs);
        let ef = ef.max(1);
        let ok = |id: u32| allowed.is_none_or(|f| f(id));
        s.visited.start(adj.nodes());
        s.candidates.clear();
        s.results.clear();
        for &e in entries {
            if !s.visited.first_visit(e.id) {
                continue;
            }
            s.candidates.push(e);
            if ok(e.id) {
                s.results.push(Reverse(e));
                if s.results.len() > ef {
                    s.results.pop();
                }
            }
        }
        let mut bound = s.results.peek().map_or(f32::NEG_INFINITY, |r| r.0.sim);
        while let Some(c) = s.candidates.pop() {
            if c.sim < bound && s.results.len() >= ef {
                break;
            }
            s.fresh.clear();
            let (visited, fresh) = (&mut s.visited, &mut s.fresh);
            adj.each_neighbour(c.id, level, |n| {
                if visited.first_visit(n) {
                    fresh.push(n);
                }
            });
            let n = s.fresh.len();
            for &first in &s.fresh[..n.min(4)] {
                vecs.prefetch(first);
            }
            let mut j = 0;
            while j < n {
                let g = &s.fresh[j..(j + 4).min(n)];
                let ids =
                    [g[0], g[1.min(g.len() - 1)], g[2.min(g.len() - 1)], g[3.min(g.len() - 1)]];
                for &next in s.fresh[(j + 4).min(n)..(j + 8).min(n)].iter() {
                    vecs.prefetch(next);
                }
                let sims = vecs.sim4(q, ids);
                for (t, &id) in g.iter().enumerate() {
                    let sim = sims[t];
                    if s.results.len() < ef || sim > bound {
                        let e = Scored { sim, id };
                        s.candidates.push(e);
                        if ok(id) {
                            s.results.push(Reverse(e));
                            if s.results.len() > ef {
                                s.results.pop();
                            }
                            bound = s.results.peek().map_or(f32::NEG_INFINITY, |r| r.0.sim);
                        }
                    }
                }
                j += 4;
            }
        }
        s.found.clear();
        s.found.extend(s.results.drain().map(|r| r.0));
        s.found.sort_unstable_by(|a, b| b.cmp(a));
    }
}

/// The HNSW neighbour heuristic: from `cands` (best first by similarity to the base node), keeps
/// at most `cap`, each only if it is more similar to the base than to every node kept before it.
/// `buf` holds one candidate's float values at a time.
fn select_neighbours(
    vecs: Vectors,
    cands: &[Scored],
    cap: usize,
    buf: &mut Vec<f32>,
    out: &mut Vec<Scored>,
) {
    out.clear();
    if cands.len() <= cap {
        out.extend_from_slice(cands);
        return;
    }
    for &c in cands {
        if out.len() >= cap {
            break;
        }
        let v = vecs.load(c.id, buf);
        let diverse = out.chunks(4).all(|g| {
            let ids = [
                g[0].id,
                g[1.min(g.len() - 1)].id,
                g[2.min(g.len() - 1)].id,
                g[3.min(g.len() - 1)].id,
            ];
            let sims = vecs.sim4(v, ids);
            sims[..g.len()].iter().all(|&s| s <= c.sim)
        });
        if diverse {
            out.push(c);
        }
    }
}

/// The graph's random numbers: SplitMix64 (Steele, Lea & Flood 2014), one 64-bit state, fixed by
/// its seed. The graph owns it so that its levels never change with another module's generator.
struct SplitMix(u64);

impl SplitMix {
    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Level of node `id`: a seeded hash of the id turned into a geometric draw with ratio 1/M.
fn level_of(id: u32, m: usize) -> u8 {
    let bits = SplitMix(LEVEL_SEED.wrapping_add(u64::from(id))).next_u64() >> 11;
    let u = 1.0 - bits as f64 / (1u64 << 53) as f64; // in (0, 1]
    let level = (-u.ln() / (m.max(2) as f64).ln()).floor();
    level.min(MAX_LEVEL as f64) as u8
}

/// Where the searches start: the entry node and the top level.
#[derive(Clone, Copy)]
struct Top {
    entry: Option<u32>,
    level: usize,
}

/// A graph while it is being built.
struct Builder<'a> {
    vecs: Vectors<'a>,
    m: usize,
    ef_construction: usize,
    levels: Vec<u8>,
    /// `links[node][level]`: the node's neighbours on each of its levels.
    links: Vec<Vec<Vec<u32>>>,
    top: Top,
}

/// What the search for one node found in the graph frozen before its batch.
struct Plan {
    node: u32,
    /// Its candidates on levels `0..found.len()`, best first (none on levels above the frozen
    /// graph's top, nor in an empty graph).
    found: Vec<Vec<Scored>>,
}

impl Adjacency for Builder<'_> {
    fn nodes(&self) -> usize {
        self.levels.len()
    }

    fn each_neighbour(&self, node: u32, level: usize, mut f: impl FnMut(u32)) {
        if let Some(list) = self.links[node as usize].get(level) {
            for &n in list {
                f(n);
            }
        }
    }
}

impl Builder<'_> {
    /// Inserts nodes `from..to` (their levels and empty lists exist already), in batches.
    fn insert_all(&mut self, from: usize, to: usize) {
        let mut start = from;
        while start < to {
            let end = (start + BUILD_BATCH).min(to);
            let this = &*self;
            let plans: Vec<Plan> = (start as u32..end as u32)
                .into_par_iter()
                .map(|q| with_scratch(|s| this.plan(q, s)))
                .collect();
            with_scratch(|s| {
                for plan in plans {
                    self.apply(plan, start as u32, s);
                }
            });
            start = end;
        }
    }

    /// Searches the graph as it stands (without node `q`) for `q`'s candidates on its levels.
    fn plan(&self, q: u32, s: &mut Scratch) -> Plan {
        let level = self.levels[q as usize] as usize;
        let Some(entry) = self.top.entry else { return Plan { node: q, found: Vec::new() } };
        let top_level = self.top.level;
        let mut qbuf = std::mem::take(&mut s.query);
        let qv = self.vecs.load(q, &mut qbuf);
        let walk = Walk { adj: self, vecs: self.vecs };
        let mut cur = Scored { sim: self.vecs.sim(qv, entry), id: entry };
        for l in (level + 1..=top_level).rev() {
            cur = walk.greedy(qv, cur, l, s);
        }
        let reach = level.min(top_level);
        let mut found = vec![Vec::new(); reach + 1];
        let mut entries = vec![cur];
        for l in (0..=reach).rev() {
            walk.search_level(qv, &entries, self.ef_construction, l, None, s);
            found[l] = s.found.clone();
            entries.clear();
            entries.extend_from_slice(&s.found);
        }
        s.query = qbuf;
        Plan { node: q, found }
    }

    /// Links node `plan.node` on each of its levels: its candidates are what its plan found and
    /// the nodes of its batch (from `batch_start`) inserted before it; then it may become the entry.
    fn apply(&mut self, plan: Plan, batch_start: u32, s: &mut Scratch) {
        let q = plan.node;
        let level = self.levels[q as usize] as usize;
        let vecs = self.vecs;
        let mut qbuf = std::mem::take(&mut s.query);
        let qv = vecs.load(q, &mut qbuf);
        for l in 0..=level {
            let mut merged = std::mem::take(&mut s.merged);
            merged.clear();
            merged.extend_from_slice(plan.found.get(l).map_or(&[][..], |f| f.as_slice()));
            for p in batch_start..q {
                if self.levels[p as usize] as usize >= l {
                    merged.push(Scored { sim: vecs.sim(qv, p), id: p });
                }
            }
            merged.sort_unstable_by(|a, b| b.cmp(a));
            let mut chosen = std::mem::take(&mut s.chosen);
            select_neighbours(vecs, &merged, self.m, &mut s.candidate, &mut chosen);
            self.links[q as usize][l] = chosen.iter().map(|c| c.id).collect();
            let cap = if l == 0 { 2 * self.m } else { self.m };
            for c in &chosen {
                self.link(c.id, Scored { sim: c.sim, id: q }, l, cap, s);
            }
            s.chosen = chosen;
            s.merged = merged;
        }
        if self.top.entry.is_none() || level > self.top.level {
            self.top = Top { entry: Some(q), level };
        }
        s.query = qbuf;
    }

    /// Adds `new` to `node`'s list on `level`; a full list keeps the heuristic's choice among its
    /// old neighbours and the new one.
    fn link(&mut self, node: u32, new: Scored, level: usize, cap: usize, s: &mut Scratch) {
        let vecs = self.vecs;
        let Some(list) = self.links[node as usize].get_mut(level) else { return };
        if list.contains(&new.id) {
            return;
        }
        if list.len() < cap {
            list.push(new.id);
            return;
        }
        let v = vecs.load(node, &mut s.node);
        s.pruned.clear();
        s.pruned.push(new);
        for g in list.chunks(4) {
            let ids = [g[0], g[1.min(g.len() - 1)], g[2.min(g.len() - 1)], g[3.min(g.len() - 1)]];
            let sims = vecs.sim4(v, ids);
            for (j, &id) in g.iter().enumerate() {
                s.pruned.push(Scored { sim: sims[j], id });
            }
        }
        s.pruned.sort_unstable_by(|a, b| b.cmp(a));
        let mut kept = std::mem::take(&mut s.chosen);
        select_neighbours(vecs, &s.pruned, cap, &mut s.candidate, &mut kept);
        list.clear();
        list.extend(kept.iter().map(|c| c.id));
        s.chosen = kept;
    }
}

/// The link words of a graph (level-0 lists, upper-level offsets, upper-level lists, in file
/// order): built in memory, or read in place from a memory-mapped file.
#[derive(Debug)]
enum Links {
    Owned(Vec<u32>),
    /// The mapped file and the byte offset of the first link word in it (a multiple of 4).
    Mapped(memmap2::Mmap, usize),
}

impl Links {
    #[inline(always)]
    fn words(&self) -> &[u32] {
        match self {
            Links::Owned(v) => v,
            Links::Mapped(map, at) => {
                // SAFETY: `Graph::load` checked that the words from `at` to the end are 4-aligned in
                // memory, a whole number of u32 and little endian like this target; any bits are a
                // valid u32; the map lives as long as `self`, and graph files are never rewritten in
                // place (a new generation is a new file, renamed into place).
                unsafe {
                    std::slice::from_raw_parts(
                        map.as_ptr().add(*at) as *const u32,
                        (map.len() - at) / 4,
                    )
                }
            }
        }
    }
}

/// An HNSW graph over vectors `0..covered()` of the stored rows (see the module doc).
#[derive(Debug)]
pub struct Graph {
    m: usize,
    entry: u32,
    top_level: usize,
    levels: Vec<u8>,
    /// Level-0 lists (`1 + 2M` words per node: the count, then the ids), from word 0; the offset
    /// of each node's upper-level blocks (`n + 1` words), from `offsets_at`; the upper-level lists
    /// (`1 + M` words per block: the count, then the ids), from `upper_at`.
    links: Links,
    offsets_at: usize,
    upper_at: usize,
}

impl Clone for Graph {
    fn clone(&self) -> Graph {
        Graph {
            links: Links::Owned(self.links.words().to_vec()),
            levels: self.levels.clone(),
            ..*self
        }
    }
}

impl PartialEq for Graph {
    fn eq(&self, other: &Graph) -> bool {
        (self.m, self.entry, self.top_level, self.offsets_at, self.upper_at)
            == (other.m, other.entry, other.top_level, other.offsets_at, other.upper_at)
            && self.levels == other.levels
            && self.links.words() == other.links.words()
    }
}

impl Adjacency for Graph {
    fn nodes(&self) -> usize {
        self.levels.len()
    }

    #[inline]
    fn each_neighbour(&self, node: u32, level: usize, mut f: impl FnMut(u32)) {
        let list = self.neighbours(node, level);
        for &n in list {
            f(n);
        }
    }
}

impl Graph {
    /// Builds a graph over all of `rows`, or extends `base` (which covers a prefix of them) with the
    /// rows it lacks. M and ef_construction come from `cfg`; an extended graph keeps its own M.
    pub fn build(base: Option<Graph>, rows: &Rows, cfg: &IndexConfig) -> Result<Graph> {
        let count = rows.len();
        if count > u32::MAX as usize {
            bail!("a graph holds at most {} vectors, got {count}", u32::MAX);
        }
        let vecs = Vectors::of(rows);
        if vecs.len() < count {
            bail!("internal error: float rows are not aligned in memory");
        }
        let (m, covered, levels, links, top) = match base {
            Some(g) => {
                if g.covered() > count {
                    bail!(
                        "internal error: the graph covers {} vectors, only {count} are stored",
                        g.covered()
                    );
                }
                let covered = g.covered();
                let links: Vec<Vec<Vec<u32>>> = (0..covered as u32)
                    .map(|i| {
                        (0..=g.levels[i as usize] as usize)
                            .map(|l| g.neighbours(i, l).to_vec())
                            .collect()
                    })
                    .collect();
                let top = Top { entry: (covered > 0).then_some(g.entry), level: g.top_level };
                (g.m, covered, g.levels.clone(), links, top)
            }
            None => (
                cfg.hnsw_m.clamp(2, MAX_M),
                0,
                Vec::new(),
                Vec::new(),
                Top { entry: None, level: 0 },
            ),
        };
        let mut levels = levels;
        let mut links = links;
        for i in covered..count {
            let level = level_of(i as u32, m);
            levels.push(level);
            let cap0 = 2 * m + 1;
            links.push(
                (0..=level as usize)
                    .map(|l| Vec::with_capacity(if l == 0 { cap0 } else { m + 1 }))
                    .collect(),
            );
        }
        let mut builder = Builder {
            vecs,
            m,
            ef_construction: cfg.hnsw_ef_construction.max(m),
            levels,
            links,
            top,
        };
        builder.insert_all(covered, count);
        Ok(builder.freeze())
    }

    /// Number of vectors the graph covers (ids `0..covered()`).
    pub fn covered(&self) -> usize {
        self.levels.len()
    }

    /// Neighbours kept per node on the upper levels (twice as many on level 0).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Highest level of any node.
    pub fn top_level(&self) -> usize {
        self.top_level
    }

    /// Bytes the graph holds in memory (links, levels and offsets; the vectors are not counted).
    pub fn bytes(&self) -> usize {
        self.levels.capacity() + 4 * self.links.words().len()
    }

    /// `node`'s neighbours on `level`.
    #[inline]
    fn neighbours(&self, node: u32, level: usize) -> &[u32] {
        let words = self.links.words();
        let at = if level == 0 {
            node as usize * (1 + 2 * self.m)
        } else {
            self.upper_at
                + words[self.offsets_at + node as usize] as usize
                + (level - 1) * (1 + self.m)
        };
        let n = words[at] as usize;
        &words[at + 1..at + 1 + n]
    }

    /// The `k` most similar allowed vectors to `query` among those the graph covers, best first,
    /// with a candidate list of `ef` (at least `k`). Similarities are computed against `rows`, the
    /// rows the graph was built on; fewer than `k` hits come back when the filter leaves fewer
    /// within reach. A query of the wrong dimension, or rows shorter than the graph, get none.
    pub fn search(
        &self,
        rows: &Rows,
        query: &[f32],
        k: usize,
        ef: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> Vec<Hit> {
        let vecs = Vectors::of(rows);
        if k == 0
            || self.levels.is_empty()
            || query.len() != rows.dim()
            || vecs.len() < self.covered()
        {
            return Vec::new();
        }
        let walk = Walk { adj: self, vecs };
        with_scratch(|s| {
            let mut cur = Scored { sim: vecs.sim(query, self.entry), id: self.entry };
            for l in (1..=self.top_level).rev() {
                cur = walk.greedy(query, cur, l, s);
            }
            walk.search_level(query, &[cur], ef.max(k), 0, Some(allowed), s);
            s.found.iter().take(k).map(|c| Hit { vector: c.id, similarity: c.sim }).collect()
        })
    }

    /// Writes the graph to `path` (aside, synced, then renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::fsutil::write_atomic(path, &self.to_bytes())
            .with_context(|| format!("cannot write the search graph {}", path.display()))
    }

    /// Reads a graph written by `save`, memory-mapped (the page cache is shared, nothing is copied).
    /// A missing, truncated, corrupt or differently versioned file is an error naming it and saying
    /// how to rebuild it.
    pub fn load(path: &Path) -> Result<Graph> {
        let rebuild = "run `knockoff catalog compact` to rebuild it";
        let unusable = |e: anyhow::Error| {
            anyhow!("the search graph {} is unusable: {e}; {rebuild}", path.display())
        };
        let file = std::fs::File::open(path).with_context(|| {
            format!("cannot read the search graph {}; {rebuild}", path.display())
        })?;
        let len = file
            .metadata()
            .with_context(|| format!("cannot read the search graph {}", path.display()))?
            .len();
        if cfg!(target_endian = "big") || len < HEADER_BYTES as u64 {
            let bytes = std::fs::read(path).with_context(|| {
                format!("cannot read the search graph {}; {rebuild}", path.display())
            })?;
            return Graph::from_bytes(&bytes).map_err(unusable);
        }
        // SAFETY: graph files are written aside and renamed into place, never changed in place, so
        // the mapped bytes stay as they are (a file cut by another program would raise SIGBUS).
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .with_context(|| format!("cannot map the search graph {}", path.display()))?;
        let layout = Layout::read(&map).map_err(unusable)?;
        let at = layout.words_at;
        if !(map.as_ptr() as usize + at).is_multiple_of(4) {
            return Graph::from_bytes(&map).map_err(unusable);
        }
        let links = Links::Mapped(map, at);
        let graph = Graph::from_parts(layout, links);
        graph.check().map_err(unusable)?;
        Ok(graph)
    }

    /// The file image of the graph (see the module doc).
    fn to_bytes(&self) -> Vec<u8> {
        let n = self.covered();
        let words = self.links.words();
        let mut body: Vec<u8> = Vec::with_capacity(n.next_multiple_of(4) + 4 * words.len());
        body.extend_from_slice(&self.levels);
        body.resize(n.next_multiple_of(4), 0);
        for w in words {
            body.extend_from_slice(&w.to_le_bytes());
        }
        let upper_len = words.len() - self.upper_at;
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(MAGIC);
        for v in
            [VERSION, self.m as u32, self.top_level as u32, self.entry, n as u32, upper_len as u32]
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&checksum(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses and checks a file image, copying the links into memory.
    fn from_bytes(bytes: &[u8]) -> Result<Graph> {
        let layout = Layout::read(bytes)?;
        let words = bytes[layout.words_at..]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let graph = Graph::from_parts(layout, Links::Owned(words));
        graph.check()?;
        Ok(graph)
    }

    fn from_parts(layout: Layout, links: Links) -> Graph {
        let Layout { m, entry, top_level, levels, offsets_at, upper_at, .. } = layout;
        Graph { m, entry, top_level, levels, links, offsets_at, upper_at }
    }

    /// Checks every count, offset and id, so that searches can index without failing.
    fn check(&self) -> Result<()> {
        let (n, m, levels) = (self.covered(), self.m, &self.levels);
        let words = self.links.words();
        let stride0 = 1 + 2 * m;
        let (level0, upper_offsets, upper) = (
            &words[..self.offsets_at],
            &words[self.offsets_at..self.upper_at],
            &words[self.upper_at..],
        );
        if n > 0 {
            if self.entry as usize >= n {
                bail!("entry point {} is not one of the {n} nodes", self.entry);
            }
            if levels[self.entry as usize] as usize != self.top_level {
                bail!("entry point {} is not on the top level", self.entry);
            }
        }
        if upper_offsets[0] != 0 || upper_offsets[n] as usize != upper.len() {
            bail!("upper-level offsets do not span the upper-level section");
        }
        for (i, &l) in levels.iter().enumerate() {
            let l = l as usize;
            if l > self.top_level {
                bail!("node {i} is on level {l}, above the top level {}", self.top_level);
            }
            let (a, b) = (upper_offsets[i] as usize, upper_offsets[i + 1] as usize);
            if b.checked_sub(a) != Some(l * (1 + m)) || b > upper.len() {
                bail!("upper-level offsets of node {i} are inconsistent");
            }
            check_list(&level0[i * stride0..(i + 1) * stride0], 2 * m, 0, levels, i)?;
            for lvl in 1..=l {
                let s = a + (lvl - 1) * (1 + m);
                check_list(&upper[s..s + 1 + m], m, lvl, levels, i)?;
            }
        }
        Ok(())
    }
}

/// The header of a graph file and where its sections start, read and checked against the file's
/// size and checksum.
struct Layout {
    m: usize,
    entry: u32,
    top_level: usize,
    levels: Vec<u8>,
    /// Byte offset of the first link word in the file.
    words_at: usize,
    /// Word offsets (from `words_at`) of the upper-level offsets and of the upper-level lists.
    offsets_at: usize,
    upper_at: usize,
}

impl Layout {
    fn read(bytes: &[u8]) -> Result<Layout> {
        if bytes.len() < HEADER_BYTES {
            bail!("truncated ({} bytes, shorter than the header)", bytes.len());
        }
        if &bytes[..8] != MAGIC {
            if bytes.starts_with(b"KNKGRF") {
                bail!(
                    "format {} is not the {} this knockoff reads",
                    String::from_utf8_lossy(&bytes[..8]),
                    String::from_utf8_lossy(MAGIC)
                );
            }
            bail!("not a knockoff graph file (bad magic)");
        }
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (version, m, top_level, entry, n, upper_len) = (
            word(8),
            word(12) as usize,
            word(16) as usize,
            word(20),
            word(24) as usize,
            word(28) as usize,
        );
        let sum = u64::from_le_bytes([
            bytes[32], bytes[33], bytes[34], bytes[35], bytes[36], bytes[37], bytes[38], bytes[39],
        ]);
        if version != VERSION {
            bail!("format version {version}, this knockoff reads version {VERSION}");
        }
        if !(2..=MAX_M).contains(&m) {
            bail!("M = {m} is out of range");
        }
        if top_level > MAX_LEVEL {
            bail!("top level {top_level} is above {MAX_LEVEL}");
        }
        let stride0 = 1 + 2 * m;
        let sizes = (|| {
            let levels = n.checked_next_multiple_of(4)?;
            let level0 = n.checked_mul(stride0)?;
            let offsets = n.checked_add(1)?;
            let words = level0.checked_add(offsets)?.checked_add(upper_len)?;
            Some((
                levels,
                level0,
                words,
                HEADER_BYTES.checked_add(levels)?.checked_add(words.checked_mul(4)?)?,
            ))
        })();
        let Some((levels_bytes, level0_words, _, size)) = sizes else {
            bail!("sizes in the header overflow")
        };
        if bytes.len() != size {
            bail!("{} bytes where the header announces {size} (truncated or corrupt)", bytes.len());
        }
        if checksum(&bytes[HEADER_BYTES..]) != sum {
            bail!("checksum mismatch (corrupt)");
        }
        Ok(Layout {
            m,
            entry,
            top_level,
            levels: bytes[HEADER_BYTES..HEADER_BYTES + n].to_vec(),
            words_at: HEADER_BYTES + levels_bytes,
            offsets_at: level0_words,
            upper_at: level0_words + n + 1,
        })
    }
}

/// Checks one stored list `[count, ids…]`: at most `cap` ids, each a node that is on `level`.
fn check_list(list: &[u32], cap: usize, level: usize, levels: &[u8], node: usize) -> Result<()> {
    let count = list[0] as usize;
    if count > cap {
        bail!("node {node} has {count} neighbours on level {level}, more than {cap}");
    }
    let ids = &list[1..1 + count];
    if level == 0 {
        // every node is on level 0
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= levels.len()) {
            bail!("node {node} links to {id} on level 0, which is not a node of that level");
        }
        return Ok(());
    }
    for &id in ids {
        if levels.get(id as usize).is_none_or(|&l| (l as usize) < level) {
            bail!("node {node} links to {id} on level {level}, which is not a node of that level");
        }
    }
    Ok(())
}

/// 64-bit checksum of a byte string whose length is a multiple of 4: FNV-1a over 32-bit words in
/// four interleaved lanes (word `i` goes to lane `i % 4`, so the lanes run in parallel), the lanes
/// then folded into one with FNV-1a. Each step XORs a word into a lane, then multiplies the lane.
fn checksum(bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut lanes = [0xcbf2_9ce4_8422_2325u64; 4];
    let mut blocks = bytes.chunks_exact(16);
    for b in &mut blocks {
        for (j, lane) in lanes.iter_mut().enumerate() {
            let w = u32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]);
            *lane = (*lane ^ u64::from(w)).wrapping_mul(PRIME);
        }
    }
    for (j, w) in blocks.remainder().chunks_exact(4).enumerate() {
        lanes[j] = (lanes[j] ^ u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .wrapping_mul(PRIME);
    }
    lanes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &l| (h ^ l).wrapping_mul(PRIME))
}

impl Builder<'_> {
    /// The finished graph in its compact layout.
    fn freeze(self) -> Graph {
        let n = self.levels.len();
        let m = self.m;
        let stride0 = 1 + 2 * m;
        let mut level0 = vec![0u32; n * stride0];
        let mut upper_offsets: Vec<u32> = Vec::with_capacity(n + 1);
        let mut upper: Vec<u32> = Vec::new();
        for (i, lists) in self.links.into_iter().enumerate() {
            upper_offsets.push(upper.len() as u32);
            for (l, list) in lists.iter().enumerate() {
                let cap = if l == 0 { 2 * m } else { m };
                let list = &list[..list.len().min(cap)];
                if l == 0 {
                    let row = &mut level0[i * stride0..(i + 1) * stride0];
                    row[0] = list.len() as u32;
                    row[1..1 + list.len()].copy_from_slice(list);
                } else {
                    upper.push(list.len() as u32);
                    upper.extend_from_slice(list);
                    upper.resize(upper.len() + m - list.len(), 0);
                }
            }
        }
        upper_offsets.push(upper.len() as u32);
        let top = self.top;
        let (offsets_at, upper_at) = (level0.len(), level0.len() + upper_offsets.len());
        let mut words = level0;
        words.extend_from_slice(&upper_offsets);
        words.extend_from_slice(&upper);
        Graph {
            m,
            entry: top.entry.unwrap_or(0),
            top_level: top.level,
            levels: self.levels,
            links: Links::Owned(words),
            offsets_at,
            upper_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vectors::Storage;
    use crate::util::rng::Rng;

    const DIM: usize = 64;

    /// `n` clustered unit vectors (clusters of about 20 members) and `nq` queries near members.
    fn clustered(n: usize, nq: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(seed);
        let unit = |mut v: Vec<f32>| {
            crate::model::embed::l2_normalize(&mut v);
            v
        };
        let centres: Vec<Vec<f32>> = (0..(n / 20).max(1))
            .map(|_| unit((0..DIM).map(|_| rng.range(-0.5, 0.5)).collect()))
            .collect();
        let mut base = Vec::with_capacity(n * DIM);
        for _ in 0..n {
            let c = &centres[rng.below(centres.len())];
            base.extend(unit(c.iter().map(|x| x + 0.4 * rng.range(-0.5, 0.5)).collect()));
        }
        let mut queries = Vec::with_capacity(nq * DIM);
        for _ in 0..nq {
            let m = rng.below(n);
            queries.extend(unit(
                base[m * DIM..(m + 1) * DIM]
                    .iter()
                    .map(|x| x + 0.1 * rng.range(-0.5, 0.5))
                    .collect(),
            ));
        }
        (base, queries)
    }

    fn cfg() -> IndexConfig {
        IndexConfig { hnsw_m: 12, hnsw_ef_construction: 100, ..IndexConfig::default() }
    }

    /// Exact top-k over the stored rows (the same similarities the graph sees).
    fn brute(rows: &Rows, q: &[f32], k: usize, allowed: &dyn Fn(u32) -> bool) -> Vec<u32> {
        let vecs = Vectors::of(rows);
        let mut all: Vec<Scored> = (0..rows.len() as u32)
            .filter(|&i| allowed(i))
            .map(|i| Scored { sim: vecs.sim(q, i), id: i })
            .collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        all.into_iter().take(k).map(|s| s.id).collect()
    }

    fn recall(
        graph: &Graph,
        rows: &Rows,
        queries: &[f32],
        k: usize,
        ef: usize,
        allowed: &dyn Fn(u32) -> bool,
    ) -> f64 {
        let mut hit = 0;
        let mut total = 0;
        for q in queries.chunks_exact(DIM) {
            let want = brute(rows, q, k, allowed);
            let got = graph.search(rows, q, k, ef, allowed);
            assert!(got.iter().all(|h| allowed(h.vector)), "a filtered-out vector came back");
            assert!(
                got.windows(2).all(|w| w[0].similarity >= w[1].similarity),
                "hits are best first"
            );
            hit += got.iter().filter(|h| want.contains(&h.vector)).count();
            total += want.len();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn recall_at_10_against_brute_force_for_both_storages() {
        let (base, queries) = clustered(4000, 200, 1);
        for storage in [Storage::F32, Storage::Int8] {
            let rows = Rows::new(DIM, storage, base.clone());
            let graph = Graph::build(None, &rows, &cfg()).expect("build");
            assert_eq!(graph.covered(), 4000);
            // ef = k, the smallest candidate list (measured 0.99 here)
            let r = recall(&graph, &rows, &queries, 10, 10, &|_| true);
            assert!(r >= 0.95, "{storage:?}: recall@10 {r}");
            // every level-0 list is within its cap and has no self-link
            for i in 0..4000u32 {
                let l = graph.neighbours(i, 0);
                assert!(l.len() <= 2 * graph.m() && !l.contains(&i));
            }
        }
    }

    #[test]
    fn filtered_search_returns_only_allowed_vectors_and_finds_them() {
        let (base, queries) = clustered(3000, 100, 2);
        let rows = Rows::new(DIM, Storage::Int8, base);
        let graph = Graph::build(None, &rows, &cfg()).expect("build");
        for (name, f) in [
            ("half", &(|id: u32| id.is_multiple_of(2)) as &dyn Fn(u32) -> bool),
            ("tenth", &|id: u32| id % 10 == 3),
        ] {
            let r = recall(&graph, &rows, &queries, 10, 64, f);
            assert!(r >= 0.9, "{name}: filtered recall@10 {r}");
        }
        // a filter that allows five vectors: the search goes through the whole graph and finds them
        let five = |id: u32| id % 600 == 7;
        let got = graph.search(&rows, &queries[..DIM], 10, 16, &five);
        let mut ids: Vec<u32> = got.iter().map(|h| h.vector).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![7, 607, 1207, 1807, 2407]);
        assert!(graph.search(&rows, &queries[..DIM], 10, 16, &|_| false).is_empty());
    }

    #[test]
    fn extending_a_graph_is_as_good_as_building_it_fresh() {
        let (base, queries) = clustered(4000, 200, 3);
        let rows = Rows::new(DIM, Storage::Int8, base.clone());
        let fresh = Graph::build(None, &rows, &cfg()).expect("fresh");
        let first = Rows::new(DIM, Storage::Int8, base[..1500 * DIM].to_vec());
        let part = Graph::build(None, &first, &cfg()).expect("part");
        let middle = Rows::new(DIM, Storage::Int8, base[..2500 * DIM].to_vec());
        let part = Graph::build(Some(part), &middle, &cfg()).expect("extend");
        let extended = Graph::build(Some(part), &rows, &cfg()).expect("extend");
        assert_eq!(extended.covered(), 4000);
        let (rf, re) = (
            recall(&fresh, &rows, &queries, 10, 10, &|_| true),
            recall(&extended, &rows, &queries, 10, 10, &|_| true),
        );
        assert!(re >= 0.95 && re >= rf - 0.02, "fresh {rf}, extended {re}");
        // the new vectors are reachable: each finds itself
        for i in [1500u32, 2600, 3999] {
            let q = rows.row_f32(i as usize);
            assert_eq!(extended.search(&rows, &q, 1, 32, &|_| true)[0].vector, i);
        }
    }

    #[test]
    fn builds_save_the_same_bytes_on_any_number_of_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, queries) = clustered(1500, 50, 4);
        let rows = Rows::new(DIM, Storage::Int8, base.clone());
        let saved = |threads: usize, name: &str| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let g = pool.install(|| Graph::build(None, &rows, &cfg())).expect("build");
            let path = dir.path().join(name);
            g.save(&path).expect("save");
            (g, std::fs::read(&path).expect("read"))
        };
        let (one, a) = saved(1, "a.knkg");
        let (_, b) = saved(1, "b.knkg");
        let (four, c) = saved(4, "c.knkg");
        let (_, d) = saved(3, "d.knkg");
        assert!(a == b && a == c && a == d, "builds differ");
        assert_eq!(one, four);
        // extending in two steps is deterministic too
        let extend = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            let first = Rows::new(DIM, Storage::Int8, base[..700 * DIM].to_vec());
            pool.install(|| Graph::build(Graph::build(None, &first, &cfg()).ok(), &rows, &cfg()))
                .expect("extend")
                .to_bytes()
        };
        assert_eq!(extend(1), extend(4));
        // and the deterministic build searches well (a batch's nodes see each other)
        let r = recall(&four, &rows, &queries, 10, 10, &|_| true);
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn save_and_load_round_trip_gives_the_same_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, queries) = clustered(2000, 50, 5);
        let rows = Rows::new(DIM, Storage::F32, base);
        let graph = Graph::build(None, &rows, &cfg()).expect("build");
        let path = dir.path().join("graph-1.knkg");
        graph.save(&path).expect("save");
        let back = Graph::load(&path).expect("load");
        assert_eq!(back, graph);
        for q in queries.chunks_exact(DIM) {
            assert_eq!(
                back.search(&rows, q, 10, 40, &|_| true),
                graph.search(&rows, q, 10, 40, &|_| true)
            );
        }
        // an empty graph round-trips too
        let empty =
            Graph::build(None, &Rows::new(DIM, Storage::F32, Vec::new()), &cfg()).expect("empty");
        empty.save(&path).expect("save empty");
        assert_eq!(Graph::load(&path).expect("load empty").covered(), 0);
        assert!(empty.search(&rows, &queries[..DIM], 10, 40, &|_| true).is_empty());
    }

    #[test]
    fn truncated_corrupt_or_foreign_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (base, _) = clustered(500, 0, 6);
        let rows = Rows::new(DIM, Storage::Int8, base);
        let graph = Graph::build(None, &rows, &cfg()).expect("build");
        let good = graph.to_bytes();
        let path = dir.path().join("graph-7.knkg");
        let expect_err = |bytes: &[u8], what: &str| {
            std::fs::write(&path, bytes).expect("write");
            let e = format!("{:#}", Graph::load(&path).expect_err(what));
            assert!(
                e.contains("graph-7.knkg") && e.contains("knockoff catalog compact"),
                "{what}: {e}"
            );
            e
        };
        for cut in [0, 7, 39, 40, good.len() / 2, good.len() - 1] {
            expect_err(&good[..cut], &format!("cut at {cut}"));
        }
        let e = expect_err(&[good.clone(), vec![0; 4]].concat(), "longer");
        assert!(e.contains("truncated or corrupt"), "{e}");
        // one flipped bit anywhere in the body
        for at in [HEADER_BYTES + 3, good.len() / 2, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            expect_err(&bad, &format!("bit flip at {at}"));
        }
        // a bad id with a matching checksum is still caught by validation
        let mut bad = graph.clone();
        if let Links::Owned(words) = &mut bad.links {
            words[0] = 1; // node 0: one neighbour...
            words[1] = 999_999; // ...that does not exist
        }
        let e = expect_err(&bad.to_bytes(), "bad id");
        assert!(e.contains("not a node"), "{e}");
        let mut bad = graph.clone();
        bad.entry = 10_000;
        expect_err(&bad.to_bytes(), "bad entry");
        let mut bad = good.clone();
        bad[..8].copy_from_slice(b"KNKGRF02");
        assert!(expect_err(&bad, "newer").contains("KNKGRF02"));
        expect_err(b"HNSW graph dump from somewhere else, long enough for a header", "foreign");
        std::fs::remove_file(&path).expect("rm");
        let e = format!("{:#}", Graph::load(&path).expect_err("missing"));
        assert!(e.contains("graph-7.knkg") && e.contains("knockoff catalog compact"), "{e}");
    }
}
