//! Maintenance: hiding products from search (`remove`) and deleting them for good, with the
//! vectors only they used, as a new generation (`compact`).

use anyhow::{bail, Context, Result};
use rusqlite::{params, OptionalExtension};

use super::shared::SharedScope;
use super::store::{graph_path, now, Store};
use crate::config::Config;
use crate::index::graph::Graph;
use crate::index::vectors::{self, VectorFile};

impl Store {
    /// Hides products from search at once (one transaction). With no product ids, hides all of the
    /// brand's products. Then the points their images shared with the brand's other products no
    /// longer count against those: the shared points of the images nearest theirs are found again
    /// (`mark_shared`). Returns how many products were hidden.
    pub fn remove(
        &mut self,
        config: &Config,
        brand: &str,
        product_ids: &[String],
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let brand_id: Option<i64> = tx
            .query_row("SELECT id FROM brands WHERE name=?1", [brand], |r| r.get(0))
            .optional()?;
        let Some(brand_id) = brand_id else { bail!("no brand {brand:?} in the catalog") };
        let pks: Vec<i64> = if product_ids.is_empty() {
            let mut st = tx.prepare("SELECT id FROM products WHERE brand=?1 AND removed=0")?;
            let rows = st.query_map([brand_id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        } else {
            let mut pks = Vec::with_capacity(product_ids.len());
            for id in product_ids {
                let pk: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM products WHERE brand=?1 AND product_id=?2",
                        params![brand_id, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(pk) = pk else {
                    bail!("brand {brand:?} has no product {id:?}; nothing was removed")
                };
                pks.push(pk);
            }
            pks
        };
        let mut images = Vec::new();
        {
            let mut hide =
                tx.prepare("UPDATE products SET removed=1, updated_at=?2 WHERE id=?1")?;
            let mut shown = tx.prepare(
                "SELECT v.sha256 FROM images i JOIN vectors v ON v.id=i.vector WHERE i.product=?1",
            )?;
            for pk in &pks {
                hide.execute(params![pk, now()])?;
                for sha in shown.query_map([pk], |r| r.get::<_, String>(0))? {
                    images.push(sha?);
                }
            }
        }
        tx.commit()?;
        self.mark_shared(config, SharedScope::Near(&images))
            .context("the products are hidden, but the shared points around their images were not found again (`knockoff catalog compact` does it)")?;
        Ok(pks.len())
    }

    /// Deletes removed products and the vectors only they used, renumbers the rest and rebuilds the
    /// HNSW graph, all as a new generation that one transaction switches to.
    pub fn compact(&mut self, config: &Config) -> Result<(usize, usize)> {
        let Some(dim) = self.meta("dim")?.and_then(|d| d.parse::<usize>().ok()) else {
            return Ok((0, 0)); // empty catalog
        };
        let next = self.write_generation(config, dim)?;
        let touched: Vec<String> = {
            let mut st = self.conn.prepare("SELECT DISTINCT b.name FROM products p JOIN brands b ON b.id=p.brand WHERE p.removed=1")?;
            let names = st.query_map([], |r| r.get(0))?;
            names.collect::<Result<_, _>>()?
        };
        let tx = self.conn.transaction()?;
        // ids are renumbered in two steps; foreign keys are checked once, at commit
        tx.execute_batch("PRAGMA defer_foreign_keys = ON")?;
        let (removed_products, dropped) = delete_removed(&tx)?;
        for (new, &old) in next.live.iter().enumerate() {
            tx.execute("UPDATE vectors SET id=?1 WHERE id=?2", params![-(new as i64) - 1, old])?;
            tx.execute(
                "UPDATE images SET vector=?1 WHERE vector=?2",
                params![-(new as i64) - 1, old],
            )?;
        }
        tx.execute("UPDATE vectors SET id=-id-1", [])?;
        tx.execute("UPDATE images SET vector=-vector-1", [])?;
        for (k, v) in [
            ("vectors_generation", next.vectors_generation.to_string()),
            ("vector_count", next.live.len().to_string()),
            ("hnsw_generation", next.hnsw_generation.to_string()),
            ("hnsw_covered", next.covered.to_string()),
        ] {
            tx.execute("INSERT OR REPLACE INTO meta VALUES(?1, ?2)", params![k, v])?;
        }
        tx.commit().context("cannot commit the compaction")?;
        self.cleanup();
        // what a deleted product shared with its siblings no longer counts against them
        self.mark_shared(config, SharedScope::Brands(&touched))?;
        Ok((removed_products, dropped))
    }

    /// Writes the next generation's files: the vectors of live products, renumbered in order, and
    /// the HNSW graph over them when there are enough.
    fn write_generation(&self, config: &Config, dim: usize) -> Result<NextGeneration> {
        let count = self.vector_count()?;
        let all = self.vector_file(dim, config.index.storage)?.read(count)?;
        let live: Vec<i64> = {
            let mut st = self.conn.prepare(
                "SELECT DISTINCT i.vector FROM images i JOIN products p ON p.id=i.product WHERE p.removed=0 ORDER BY i.vector",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut rows = Vec::with_capacity(live.len() * dim);
        for &v in &live {
            let i = v as usize;
            if i >= count {
                bail!("catalog is inconsistent: image vector {v} is beyond the {count} stored");
            }
            rows.extend_from_slice(&all[i * dim..(i + 1) * dim]);
        }
        drop(all);
        let vgen = self.meta_num("vectors_generation")? + 1;
        let vpath = self.dir.join(format!("vectors-{vgen}.f32"));
        vectors::write_atomic_rows(&vpath, dim, config.index.storage, &rows)?;
        drop(rows);
        let hgen = self.meta_num("hnsw_generation")? + 1;
        let covered = if live.len() >= config.index.hnsw_min_images && !live.is_empty() {
            // the graph is built on the rows as the new file stores them
            let stored = VectorFile::open(&vpath, dim, config.index.storage)?.map(live.len())?;
            let graph = Graph::build(None, &stored, &config.index)?;
            graph.save(&graph_path(&self.dir, hgen))?;
            graph.covered()
        } else {
            0
        };
        Ok(NextGeneration { live, vectors_generation: vgen, hnsw_generation: hgen, covered })
    }
}

/// The files `Store::compact` wrote for the catalog's next generation.
struct NextGeneration {
    /// The old ids of the vectors kept, in their new order.
    live: Vec<i64>,
    /// The new vector file's generation.
    vectors_generation: u64,
    /// The new search graph's generation.
    hnsw_generation: u64,
    /// Vectors the new graph covers (0: none was built).
    covered: usize,
}

/// Deletes the removed products, their sellers and images, brands left without products, and the
/// vectors no image uses with what was stored of them. Returns (products, vectors) deleted.
fn delete_removed(tx: &rusqlite::Transaction) -> Result<(usize, usize)> {
    let removed_products = tx
        .execute(
            "DELETE FROM sellers WHERE product IN (SELECT id FROM products WHERE removed=1)",
            [],
        )
        .and_then(|_| {
            tx.execute(
                "DELETE FROM images WHERE product IN (SELECT id FROM products WHERE removed=1)",
                [],
            )
        })
        .and_then(|_| tx.execute("DELETE FROM products WHERE removed=1", []))?;
    tx.execute("DELETE FROM brands WHERE id NOT IN (SELECT brand FROM products)", [])?;
    let dropped =
        tx.execute("DELETE FROM vectors WHERE id NOT IN (SELECT vector FROM images)", [])?;
    tx.execute("DELETE FROM local_features WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
    tx.execute("DELETE FROM shared_points WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
    tx.execute("DELETE FROM colours WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
    tx.execute("DELETE FROM phashes WHERE sha256 NOT IN (SELECT sha256 FROM vectors)", [])?;
    Ok((removed_products, dropped))
}
