//! Views: what a search reads of a catalog (`CatalogView`): live products, which products each
//! reference vector belongs to, who may sell each brand, the search index, the background
//! embeddings, the feature store and the perceptual hashes.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};
use serde::Serialize;

use super::features::FeatureStore;
use super::store::Store;
use crate::config::Config;
use crate::index::Index;

/// A live product as the scanner sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ProductInfo {
    /// Brand name.
    pub brand: String,
    /// The brand's product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// Reference price.
    pub price: f64,
    /// Currency of the reference price.
    pub currency: String,
    /// Category, if given.
    pub category: Option<String>,
}

/// Everything a search needs: live products, which products each vector belongs to, and who may
/// sell each brand.
pub struct CatalogView {
    /// Live products.
    pub(crate) products: Vec<ProductInfo>,
    /// For each vector id: (index into `products`, reference image source); empty when hidden.
    pub(crate) vector_products: Vec<Vec<(usize, String)>>,
    /// Sellers authorised per brand.
    pub(crate) brand_sellers: HashMap<String, HashSet<String>>,
    /// The reference vectors and their index.
    pub(crate) index: Index,
    /// Embeddings of the background photos (exact search), when the catalog has any.
    pub(crate) background: Option<Index>,
    /// For each product (index into `products`): its reference vectors.
    pub(crate) product_vectors: Vec<Vec<u32>>,
    /// Local features of the reference images, when geometric verification is on.
    pub(crate) features: Option<FeatureStore>,
    /// Perceptual hashes of the live reference images by vector id, when geometric verification
    /// is on: a scan looks up each listing photo's hashes here, so a near-duplicate is verified
    /// however low the embedding ranks it.
    pub(crate) hashes: crate::vision::phash::Index,
}

impl CatalogView {
    /// True when vector `id` belongs to at least one live product.
    pub(crate) fn visible(&self, id: u32) -> bool {
        self.vector_products.get(id as usize).is_some_and(|v| !v.is_empty())
    }
}

/// The live products of a catalog and where each product row is among them.
struct LiveProducts {
    /// Live products in id order.
    products: Vec<ProductInfo>,
    /// Index into `products` by product row id.
    pk_index: HashMap<i64, usize>,
}

impl Store {
    /// Loads live products, vector ownership, authorised sellers and the search index.
    pub fn view(&self, config: &Config) -> Result<CatalogView> {
        let dim: usize = self.meta("dim")?.and_then(|d| d.parse().ok()).unwrap_or(0);
        let count = self.vector_count()?;
        let live = self.live_products()?;
        let vector_products = self.vector_products(&live.pk_index, count)?;
        let brand_sellers = self.brand_sellers()?;
        let index = self.search_index(config, dim, count)?;
        let background = match self.meta_num("background_count")? as usize {
            0 => None,
            n => Some(Index::from_rows(
                self.background_file(dim, config.index.storage)?.map(n)?,
                None,
                0,
            )),
        };
        let products = live.products;
        let mut product_vectors = vec![Vec::new(); products.len()];
        for (v, owners) in vector_products.iter().enumerate() {
            for (pi, _) in owners {
                product_vectors[*pi].push(v as u32);
            }
        }
        let features = if config.verify.enabled {
            let db = self.dir.join("catalog.sqlite");
            Some(FeatureStore::open(&db, self.snapshot.is_some(), self.schema)?)
        } else {
            None
        };
        let hashes = if config.verify.enabled {
            self.live_hashes(&vector_products)?
        } else {
            crate::vision::phash::Index::default()
        };
        Ok(CatalogView {
            products,
            vector_products,
            brand_sellers,
            index,
            background,
            product_vectors,
            features,
            hashes,
        })
    }

    /// The live products in id order, with the index of each product's row id.
    fn live_products(&self) -> Result<LiveProducts> {
        let mut products = Vec::new();
        let mut pk_index = HashMap::new();
        let mut st = self.conn.prepare(
            "SELECT p.id, b.name, p.product_id, p.title, p.price, p.currency, p.category
             FROM products p JOIN brands b ON b.id=p.brand WHERE p.removed=0 ORDER BY p.id",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            pk_index.insert(r.get::<_, i64>(0)?, products.len());
            products.push(ProductInfo {
                brand: r.get(1)?,
                product_id: r.get(2)?,
                title: r.get(3)?,
                price: r.get(4)?,
                currency: r.get(5)?,
                category: r.get(6)?,
            });
        }
        Ok(LiveProducts { products, pk_index })
    }

    /// For each of the `count` vectors: the live products (index into the live products, by row
    /// id in `pk_index`) that show it, with the image's source.
    fn vector_products(
        &self,
        pk_index: &HashMap<i64, usize>,
        count: usize,
    ) -> Result<Vec<Vec<(usize, String)>>> {
        let mut vector_products = vec![Vec::new(); count];
        let mut st = self
            .conn
            .prepare("SELECT product, vector, source FROM images ORDER BY product, vector")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (pk, v, src): (i64, i64, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if let (Some(&pi), Some(slot)) =
                (pk_index.get(&pk), vector_products.get_mut(v as usize))
            {
                slot.push((pi, src));
            }
        }
        Ok(vector_products)
    }

    /// The sellers authorised per brand (by its live products).
    fn brand_sellers(&self) -> Result<HashMap<String, HashSet<String>>> {
        let mut brand_sellers: HashMap<String, HashSet<String>> = HashMap::new();
        let mut st = self.conn.prepare(
            "SELECT b.name, s.seller_id FROM sellers s JOIN products p ON p.id=s.product
             JOIN brands b ON b.id=p.brand WHERE p.removed=0",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            brand_sellers.entry(r.get(0)?).or_default().insert(r.get(1)?);
        }
        Ok(brand_sellers)
    }

    /// The search index over the `count` reference vectors, with the HNSW graph when the catalog
    /// has one.
    fn search_index(&self, config: &Config, dim: usize, count: usize) -> Result<Index> {
        if count == 0 || dim == 0 {
            return Ok(Index::new(dim.max(1), Vec::new(), None, config.index.hnsw_ef_search));
        }
        let vectors = self.vector_file(dim, config.index.storage)?.map(count)?;
        let covered = self.meta_num("hnsw_covered")? as usize;
        let graph = if covered > 0 {
            if covered > count {
                bail!("catalog is inconsistent: the search graph covers {covered} vectors of {count}; run `knockoff catalog compact`");
            }
            Some(self.load_graph(self.meta_num("hnsw_generation")?, covered)?)
        } else {
            None
        };
        Ok(Index::from_rows(vectors, graph, config.index.hnsw_ef_search))
    }

    /// The perceptual hashes of the live reference images (vector id, hash), indexed; damaged rows
    /// are left out and counted in a warning (`FeatureStore::phash` names them when used).
    fn live_hashes(
        &self,
        vector_products: &[Vec<(usize, String)>],
    ) -> Result<crate::vision::phash::Index> {
        let t = std::time::Instant::now();
        if !self.schema.has_phashes() {
            return Ok(crate::vision::phash::Index::default());
        }
        let mut st = self
            .conn
            .prepare("SELECT v.id, h.data FROM vectors v JOIN phashes h ON h.sha256=v.sha256")?;
        let mut rows = st.query([])?;
        let (mut hashes, mut damaged) = (Vec::new(), 0usize);
        while let Some(r) = rows.next()? {
            let (id, data): (i64, Vec<u8>) = (r.get(0)?, r.get(1)?);
            let live = usize::try_from(id)
                .ok()
                .and_then(|i| vector_products.get(i))
                .is_some_and(|owners| !owners.is_empty());
            match <[u8; 8]>::try_from(data.as_slice()) {
                Ok(bytes) if live => hashes.push((id as u32, u64::from_le_bytes(bytes))),
                Ok(_) => {}
                Err(_) => damaged += 1,
            }
        }
        if damaged > 0 {
            tracing::warn!("{damaged} stored perceptual hashes are damaged and not searched; add their products again to store them");
        }
        let index = crate::vision::phash::Index::new(hashes);
        tracing::debug!(
            "perceptual hashes of {} reference photos loaded in {:?}",
            index.len(),
            t.elapsed()
        );
        Ok(index)
    }
}
