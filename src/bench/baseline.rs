//! The perceptual-hash baseline of the accuracy benchmark: the 64-bit DCT hash of every photo
//! (`phash`), compared by Hamming distance. It shows what the embedding models add over a classic
//! hash on the same queries; scans use the hash only to confirm near-duplicates (`phash::NEAR`).

use std::collections::HashMap;

/// Bits of the hash.
const BITS: u32 = 64;

/// The perceptual hash of an upright RGB photo (all bits clear for a flat one, which has none).
pub fn hash(img: &image::RgbImage) -> u64 {
    let (width, height) = img.dimensions();
    crate::vision::phash::of(&crate::vision::decode::RgbImage {
        width,
        height,
        data: img.as_raw().clone(),
    })
    .unwrap_or(0)
}

/// Reference hashes, each with the product it shows.
#[derive(Default)]
pub struct HashIndex {
    refs: Vec<(String, u64)>,
}

impl HashIndex {
    /// Adds a reference photo of `product`.
    pub fn add(&mut self, product: &str, hash: u64) {
        self.refs.push((product.to_string(), hash));
    }

    /// The `k` most similar products to `query`, best first: similarity = 1 − Hamming distance /
    /// 64 of the product's closest photo (ties by product id).
    pub fn rank(&self, query: u64, k: usize) -> Vec<(String, f32)> {
        let mut best: HashMap<&str, f32> = HashMap::new();
        for (product, h) in &self.refs {
            let s = 1.0 - crate::vision::phash::distance(query, *h) as f32 / BITS as f32;
            let e = best.entry(product.as_str()).or_insert(f32::MIN);
            *e = e.max(s);
        }
        let mut v: Vec<(String, f32)> = best.into_iter().map(|(p, s)| (p.to_string(), s)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(shift: u8) -> image::RgbImage {
        image::RgbImage::from_fn(64, 64, |x, y| {
            let v = ((x * 4) as u8).wrapping_add(shift) ^ ((y * 3) as u8);
            image::Rgb([v, v / 2, 255 - v])
        })
    }

    #[test]
    fn identical_photo_ranks_first_with_similarity_one() {
        let mut idx = HashIndex::default();
        idx.add("a", hash(&picture(0)));
        idx.add("b", hash(&picture(90)));
        let r = idx.rank(hash(&picture(0)), 2);
        assert_eq!(r[0], ("a".to_string(), 1.0));
        assert!(r[1].1 < 1.0, "a different picture has a different hash: {r:?}");
    }
}
