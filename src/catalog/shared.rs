//! Shared points: which local feature points of each reference image images of its brand's
//! other products share (logo, layout), found after products are added or removed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use rayon::prelude::*;
use rusqlite::{params, Connection, OptionalExtension};

use super::store::Store;
use crate::config::Config;
use crate::index::vectors::Rows;
use crate::vision::verify::orb::Features;
use crate::vision::verify::Shared;

/// Images of the brand's other products each reference image is compared with to find its shared
/// points (`Store::mark_shared`): the most similar ones, so a brand's large catalog costs linear
/// time.
pub const SHARED_NEIGHBOURS: usize = 32;

/// Which reference images `Store::mark_shared` examines.
#[derive(Debug, Clone, Copy)]
pub enum SharedScope<'a> {
    /// Every image of these brands' live products.
    Brands(&'a [String]),
    /// The images with these content hashes, and their `SHARED_NEIGHBOURS` nearest images of
    /// their brand's other products, whose neighbourhood they may have joined (or, when their
    /// products were removed, left).
    Near(&'a [String]),
}

impl Store {
    /// What follows adding products whose images have the content hashes `images`: the search
    /// graph is extended (`update_graph`) and shared points are found again around those images
    /// (`mark_shared`).
    pub fn finish_adding(&mut self, config: &Config, dim: usize, images: &[String]) -> Result<()> {
        self.update_graph(config, dim)?;
        let t = std::time::Instant::now();
        let n = self.mark_shared(config, SharedScope::Near(images))?;
        tracing::debug!("shared points of {n} reference images found in {:?}", t.elapsed());
        Ok(())
    }

    /// Finds which local feature points of reference images of live products images of the
    /// brand's other products share (`verify::Shared`), comparing each image with its
    /// `SHARED_NEIGHBOURS` most similar images (embeddings) of those products, and stores them in
    /// one transaction. `scope` says which images are examined. Returns how many were.
    pub(crate) fn mark_shared(&mut self, config: &Config, scope: SharedScope) -> Result<usize> {
        let Some(dim) = self.meta("dim")?.and_then(|d| d.parse::<usize>().ok()) else {
            return Ok(0); // empty catalog
        };
        let count = self.vector_count()?;
        let rows = self.vector_file(dim, config.index.storage)?.map(count)?;
        let given: HashSet<&str> = match scope {
            SharedScope::Near(images) => images.iter().map(String::as_str).collect(),
            SharedScope::Brands(_) => HashSet::new(),
        };
        let mut found: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (brand, removed) in &self.brands_in_scope(scope)? {
            let images = BrandImages::load(&self.conn, brand, &rows)?;
            let plan = images.plan(&self.conn, &given, removed)?;
            let features = images.features(&self.conn, &plan)?;
            found.extend(images.mark(&plan, &features, config.verify.min_inliers));
        }
        let tx = self.conn.transaction()?;
        for (sha, data) in &found {
            match data {
                Some(d) => tx.execute(
                    "INSERT OR REPLACE INTO shared_points VALUES(?1, ?2)",
                    params![sha, d],
                )?,
                None => tx.execute("DELETE FROM shared_points WHERE sha256=?1", [sha])?,
            };
        }
        tx.commit().context("cannot commit the shared points")?;
        Ok(found.len())
    }

    /// The brands `scope` examines, each with the given images its removed products show.
    fn brands_in_scope(&self, scope: SharedScope) -> Result<Vec<(String, HashSet<String>)>> {
        let images = match scope {
            SharedScope::Brands(b) => {
                return Ok(b.iter().map(|name| (name.clone(), HashSet::new())).collect())
            }
            SharedScope::Near(images) => images,
        };
        let mut st = self.conn.prepare(
            "SELECT DISTINCT b.name, p.removed FROM vectors v JOIN images i ON i.vector=v.id JOIN products p ON p.id=i.product
             JOIN brands b ON b.id=p.brand WHERE v.sha256=?1",
        )?;
        let mut names: BTreeMap<String, HashSet<String>> = BTreeMap::new();
        for sha in images {
            for row in
                st.query_map([sha], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
            {
                let (name, removed) = row?;
                let gone = names.entry(name).or_default();
                if removed {
                    gone.insert(sha.clone());
                }
            }
        }
        Ok(names.into_iter().collect())
    }
}

/// The reference images of one brand's live products that `Store::mark_shared` compares.
struct BrandImages<'r> {
    /// By vector id: content hash and the products showing it.
    owners: HashMap<u32, (String, HashSet<i64>)>,
    /// The vector ids with a stored embedding, in order.
    vids: Vec<u32>,
    /// Their embeddings.
    embeddings: HashMap<u32, Vec<f32>>,
    /// All stored embeddings.
    rows: &'r Rows,
}

/// Images to examine, each with the images of the brand's other products it is compared with.
type Plan = Vec<(u32, Vec<u32>)>;

impl<'r> BrandImages<'r> {
    /// The images of `brand`'s live products, their embeddings read from `rows`.
    fn load(conn: &Connection, brand: &str, rows: &'r Rows) -> Result<BrandImages<'r>> {
        let mut owners: HashMap<u32, (String, HashSet<i64>)> = HashMap::new();
        let mut st = conn.prepare(
            "SELECT i.vector, i.product, v.sha256 FROM images i JOIN products p ON p.id=i.product
             JOIN brands b ON b.id=p.brand JOIN vectors v ON v.id=i.vector WHERE b.name=?1 AND p.removed=0",
        )?;
        let mut q = st.query([brand])?;
        while let Some(r) = q.next()? {
            let (vid, product, sha): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            owners.entry(vid as u32).or_insert_with(|| (sha, HashSet::new())).1.insert(product);
        }
        let mut vids: Vec<u32> =
            owners.keys().copied().filter(|&v| (v as usize) < rows.len()).collect();
        vids.sort_unstable();
        let embeddings: HashMap<u32, Vec<f32>> =
            vids.iter().map(|&v| (v, rows.row_f32(v as usize))).collect();
        Ok(BrandImages { owners, vids, embeddings, rows })
    }

    /// The most similar images of the brand's products other than `own`.
    fn nearest_to(&self, e: &[f32], own: &HashSet<i64>) -> Vec<u32> {
        let mut others: Vec<(f32, u32)> = self
            .vids
            .iter()
            .filter(|o| self.owners[o].1.is_disjoint(own))
            .map(|o| (e.iter().zip(&self.embeddings[o]).map(|(a, b)| a * b).sum::<f32>(), *o))
            .collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        others.into_iter().take(SHARED_NEIGHBOURS).map(|(_, o)| o).collect()
    }

    fn nearest(&self, vid: u32) -> Vec<u32> {
        self.nearest_to(&self.embeddings[&vid], &self.owners[&vid].1)
    }

    /// The images to examine, each with its nearest images: all of the brand's when no images
    /// are `given`, else the given ones and their neighbours (whose neighbourhood the given ones
    /// may have joined), and the images nearest the given ones of removed products that no live
    /// product of the brand shows (`removed`), whose points they shared.
    fn plan(
        &self,
        conn: &Connection,
        given: &HashSet<&str>,
        removed: &HashSet<String>,
    ) -> Result<Plan> {
        let mut known: HashMap<u32, Vec<u32>> = HashMap::new();
        let targets: Vec<u32> = if given.is_empty() {
            self.vids.clone()
        } else {
            let mut t: BTreeSet<u32> = BTreeSet::new();
            for &v in self.vids.iter().filter(|v| given.contains(self.owners[v].0.as_str())) {
                let near = self.nearest(v);
                t.insert(v);
                t.extend(near.iter().copied());
                known.insert(v, near);
            }
            let live: HashSet<&str> = self.owners.values().map(|(sha, _)| sha.as_str()).collect();
            let mut st = conn.prepare("SELECT id FROM vectors WHERE sha256=?1")?;
            for sha in removed.iter().filter(|sha| !live.contains(sha.as_str())) {
                let vid: Option<i64> = st.query_row([sha], |r| r.get(0)).optional()?;
                if let Some(v) =
                    vid.and_then(|v| usize::try_from(v).ok()).filter(|&v| v < self.rows.len())
                {
                    t.extend(self.nearest_to(&self.rows.row_f32(v), &HashSet::new()));
                }
            }
            t.into_iter().collect()
        };
        Ok(targets
            .par_iter()
            .map(|&v| (v, known.get(&v).cloned().unwrap_or_else(|| self.nearest(v))))
            .collect())
    }

    /// The stored, usable local features of the images `plan` names.
    fn features(&self, conn: &Connection, plan: &Plan) -> Result<HashMap<u32, Features>> {
        let mut features: HashMap<u32, Features> = HashMap::new();
        for v in plan.iter().flat_map(|(v, n)| std::iter::once(v).chain(n)) {
            if features.contains_key(v) {
                continue;
            }
            let blob: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT data FROM local_features WHERE sha256=?1",
                    [&self.owners[v].0],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(Ok(f)) = blob.map(|b| Features::from_bytes(&b)) {
                features.insert(*v, f);
            }
        }
        Ok(features)
    }

    /// The shared points of each image `plan` examines, as stored (`None`: no usable features,
    /// nothing to mark), by content hash.
    fn mark(
        &self,
        plan: &Plan,
        features: &HashMap<u32, Features>,
        min_inliers: usize,
    ) -> Vec<(String, Option<Vec<u8>>)> {
        plan.par_iter()
            .map(|(v, near)| {
                let sha = self.owners[v].0.clone();
                let Some(f) = features.get(v) else { return (sha, None) }; // no usable features: nothing to mark
                let others: Vec<&Features> = near.iter().filter_map(|o| features.get(o)).collect();
                (sha, Some(Shared::find(f, &others, min_inliers).to_bytes()))
            })
            .collect()
    }
}
