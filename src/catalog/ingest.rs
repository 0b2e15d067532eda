//! Ingestion, above the store: products and background photos read from files, their images
//! fetched, decoded, analysed (local features, colours, perceptual hash) and embedded, then
//! handed to the store (`Store::add_products`, `Store::add_background`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Deserialize;

use super::store::{ImageNotes, ModelStamp, NewProduct, Store};
use crate::index::vectors::Storage;
use crate::input::fields::{self, List, Price, Text};
use crate::input::records::RawRecord;
use crate::model::Manifest;
use crate::vision::source::ImageRef;

/// A product as given in a catalog file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRecord {
    /// Line in the catalog file.
    pub line: usize,
    /// Brand name.
    pub brand: String,
    /// The brand's own product identifier.
    pub product_id: String,
    /// Product title.
    pub title: String,
    /// Reference (genuine) price.
    pub price: f64,
    /// ISO 4217 currency code of the price.
    pub currency: String,
    /// Genuine photos.
    pub images: Vec<ImageRef>,
    /// Sellers allowed to sell the brand's products.
    pub authorized_sellers: Vec<String>,
    /// Optional category.
    pub category: Option<String>,
}

/// The fields of a catalog file's record, as given (see `input::fields`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ProductFields {
    brand: Text,
    product_id: Text,
    title: Text,
    price: Price,
    currency: Text,
    images: List,
    authorized_sellers: List,
    category: Text,
}

/// Turns a raw record from a catalog file into a product, or says what is wrong with it.
pub fn parse_product(
    raw: &RawRecord,
    base_dir: &Path,
    max_images: usize,
) -> Result<ProductRecord, String> {
    let f: ProductFields = fields::record(raw.fields.as_ref().map_err(Clone::clone)?)?;
    let images = f.images.named("images")?;
    if images.is_empty() {
        return Err("missing field `images` (one or more image paths or URLs)".into());
    }
    if images.len() > max_images {
        return Err(format!(
            "{} images, over the limit of {max_images} (limits.max_images_per_record)",
            images.len()
        ));
    }
    let currency = f.currency.required("currency")?.to_ascii_uppercase();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(format!("field `currency` must be a 3-letter code like EUR, got {currency:?}"));
    }
    Ok(ProductRecord {
        line: raw.line,
        brand: f.brand.required("brand")?,
        product_id: f.product_id.required("product_id")?,
        title: f.title.required("title")?,
        price: reference_price(f.price)?,
        currency,
        images: images.iter().map(|s| ImageRef::parse(s, base_dir)).collect::<Result<_, _>>()?,
        authorized_sellers: f.authorized_sellers.named("authorized_sellers")?,
        category: f.category.named("category")?,
    })
}

/// A product's reference price: a price above 0 (a listing's price is compared with it as a ratio).
fn reference_price(price: Price) -> Result<f64, String> {
    match price.required("price")? {
        p if p > 0.0 => Ok(p),
        _ => Err("field `price` must be above 0: a reference price of 0 cannot be compared with listings' prices".into()),
    }
}

/// Products of one batch with their images fetched, decoded and resized (one result per image).
pub type LoadedProduct = (ProductRecord, Vec<Result<crate::model::load::Loaded, String>>);

/// Fetches, decodes and resizes the images of `products` for the model and extracts their local
/// features (in parallel); one entry per product, its image results in the product's order.
pub(super) fn load_products(
    fetcher: &crate::vision::source::Fetcher,
    limits: &crate::vision::decode::Limits,
    manifest: &Manifest,
    features: crate::vision::verify::orb::Params,
    products: Vec<ProductRecord>,
) -> Vec<LoadedProduct> {
    let refs: Vec<&ImageRef> = products.iter().flat_map(|p| p.images.iter()).collect();
    let owners: Vec<usize> =
        products.iter().enumerate().flat_map(|(i, p)| p.images.iter().map(move |_| i)).collect();
    let opts = crate::model::load::LoadOptions {
        hash: true,
        regions: false,
        features: crate::model::load::LocalFeatures::Extract(features),
        phash: false,
    };
    let mut loaded =
        crate::model::load::load_images(fetcher, &refs, &owners, limits, manifest, opts)
            .into_iter();
    products
        .into_iter()
        .map(|p| {
            let imgs = loaded.by_ref().take(p.images.len()).collect();
            (p, imgs)
        })
        .collect()
}

/// Reads, decodes and resizes background photo files for the model (in parallel), with their
/// content hashes; one (source, result) each, in order.
pub(super) fn load_background(
    fetcher: &crate::vision::source::Fetcher,
    limits: &crate::vision::decode::Limits,
    manifest: &Manifest,
    paths: &[PathBuf],
) -> Vec<(String, Result<crate::model::load::Loaded, String>)> {
    let refs: Vec<ImageRef> = paths.iter().map(|p| ImageRef::Path(p.clone())).collect();
    let r: Vec<&ImageRef> = refs.iter().collect();
    let owners: Vec<usize> = (0..r.len()).collect();
    let loaded = crate::model::load::load_images(
        fetcher,
        &r,
        &owners,
        limits,
        manifest,
        crate::model::load::LoadOptions {
            hash: true,
            regions: false,
            features: crate::model::load::LocalFeatures::Skip,
            phash: false,
        },
    );
    paths.iter().map(|p| p.display().to_string()).zip(loaded).collect()
}

/// What `ingest` did with one batch of loaded products.
#[derive(Debug, Default, Clone)]
pub struct Ingested {
    /// Records of the chunk, read or not (set by `Adder::add_products`).
    pub records: usize,
    /// Records that could not be read: (catalog line, message); set by `Adder::add_products`.
    pub unreadable: Vec<(usize, String)>,
    /// Products added or updated.
    pub products: usize,
    /// Content hashes of their images.
    pub images: Vec<String>,
    /// Images embedded and stored now.
    pub embedded: usize,
    /// Images whose embedding was already stored (same bytes).
    pub reused: usize,
    /// Images that could not be used: (catalog line, message).
    pub image_errors: Vec<(usize, String)>,
    /// Products skipped because none of their images could be used: (catalog line, message).
    pub skipped: Vec<(usize, String)>,
}

/// Adds loaded products to `store`: embeds the images not stored yet (by content hash) with
/// `embedder` and stores the products in one transaction (new vectors in `storage` when the catalog
/// is new). This is the core of `catalog add`.
pub(super) fn ingest(
    store: &mut Store,
    embedder: &mut dyn crate::model::Embed,
    manifest: &Manifest,
    storage: Storage,
    products: &[LoadedProduct],
) -> Result<Ingested> {
    let mut done = Ingested::default();
    let mut to_embed: Vec<(String, &crate::model::embed::Prepared)> = Vec::new();
    let mut notes = ImageNotes::default();
    let mut keep = Vec::new();
    for (p, imgs) in products {
        let mut refs = Vec::new();
        for (r, img) in p.images.iter().zip(imgs) {
            match img {
                Ok(l) => {
                    let Some(hash) = &l.hash else {
                        bail!("internal error: image {} was loaded without its hash", r.display())
                    };
                    if let Some(f) = &l.features {
                        notes.features.push((hash.clone(), f.to_bytes()));
                    }
                    if let Some(c) = &l.colours {
                        notes.colours.push((hash.clone(), c.to_bytes()));
                    }
                    if let Some((_, h)) = l.phashes.iter().find(|(region, _)| region.is_none()) {
                        notes.phashes.push((hash.clone(), *h));
                    }
                    let known = store.vector_by_hash(hash)?.is_some()
                        || to_embed.iter().any(|(h, _)| h == hash);
                    if known {
                        done.reused += 1;
                    } else {
                        to_embed.push((hash.clone(), &l.prepared));
                    }
                    refs.push((hash.clone(), r.display()));
                }
                Err(e) => done
                    .image_errors
                    .push((p.line, format!("product {} image {}: {e}", p.product_id, r.display()))),
            }
        }
        if refs.is_empty() {
            done.skipped.push((
                p.line,
                format!("product {} has no usable image; product skipped", p.product_id),
            ));
        } else {
            keep.push((p, refs));
        }
    }
    let imgs: Vec<&crate::model::embed::Prepared> = to_embed.iter().map(|(_, p)| *p).collect();
    let vecs = embedder.embed(&imgs)?;
    let new_vectors: Vec<(String, Vec<f32>)> =
        to_embed.iter().map(|(h, _)| h.clone()).zip(vecs).collect();
    done.embedded = new_vectors.len();
    done.products = keep.len();
    done.images = keep.iter().flat_map(|(_, refs)| refs.iter().map(|(h, _)| h.clone())).collect();
    let rows: Vec<NewProduct> = keep.iter().map(|(p, refs)| p.as_new(refs)).collect();
    store.add_products(&ModelStamp::of(manifest), storage, &rows, &new_vectors, &notes)?;
    Ok(done)
}

/// What `ingest_background` did with one batch of photos.
#[derive(Debug, Default)]
pub struct BackgroundIngested {
    /// Photos embedded and stored now.
    pub added: usize,
    /// Photos already stored (same bytes).
    pub known: usize,
    /// Photos that could not be used: (source, message).
    pub errors: Vec<(String, String)>,
}

/// Embeds loaded background photos (source, load result) that are not stored yet and stores them
/// in one transaction. This is the core of `catalog background add`.
pub(super) fn ingest_background(
    store: &mut Store,
    embedder: &mut dyn crate::model::Embed,
    manifest: &Manifest,
    storage: Storage,
    photos: &[(String, Result<crate::model::load::Loaded, String>)],
) -> Result<BackgroundIngested> {
    let mut done = BackgroundIngested::default();
    let mut todo: Vec<(String, String, &crate::model::embed::Prepared)> = Vec::new();
    for (source, loaded) in photos {
        match loaded {
            Ok(l) => {
                let Some(hash) = &l.hash else {
                    bail!("internal error: photo {source} was loaded without its hash")
                };
                if store.background_known(hash)? || todo.iter().any(|(h, _, _)| h == hash) {
                    done.known += 1;
                } else {
                    todo.push((hash.clone(), source.clone(), &l.prepared));
                }
            }
            Err(e) => done.errors.push((source.clone(), e.clone())),
        }
    }
    let imgs: Vec<&crate::model::embed::Prepared> = todo.iter().map(|(_, _, p)| *p).collect();
    let vecs = embedder.embed(&imgs)?;
    let rows: Vec<(String, String, Vec<f32>)> =
        todo.into_iter().zip(vecs).map(|((h, s, _), v)| (h, s, v)).collect();
    done.added = rows.len();
    store.add_background(&ModelStamp::of(manifest), storage, &rows)?;
    Ok(done)
}

impl ProductRecord {
    /// The product as the store takes it, with its images (content hash, source).
    pub fn as_new<'a>(&'a self, images: &'a [(String, String)]) -> NewProduct<'a> {
        NewProduct {
            brand: &self.brand,
            product_id: &self.product_id,
            title: &self.title,
            price: self.price,
            currency: &self.currency,
            category: self.category.as_deref(),
            authorized_sellers: &self.authorized_sellers,
            images,
        }
    }
}

impl Default for ImageNotes {
    /// No notes yet; local features in the format this knockoff writes.
    fn default() -> ImageNotes {
        ImageNotes {
            features_format: &crate::vision::verify::orb::MAGIC[..],
            features: Vec::new(),
            colours: Vec::new(),
            phashes: Vec::new(),
        }
    }
}
