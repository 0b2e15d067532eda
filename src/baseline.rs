//! The perceptual-hash baseline of the accuracy benchmark: a 64-bit DCT hash (pHash, from the
//! `image_hasher` crate) of every photo, compared by Hamming distance. It shows what the embedding
//! models add over a classic hash on the same queries; scans never use it.

use std::collections::HashMap;

use image_hasher::{HashAlg, Hasher, HasherConfig, ImageHash};

/// Bits of the hash.
const BITS: u32 = 64;

/// A pHash hasher: greyscale 32×32, DCT, the 8×8 lowest frequencies against their mean.
pub fn hasher() -> Hasher {
    HasherConfig::new().hash_alg(HashAlg::Mean).preproc_dct().hash_size(8, 8).to_hasher()
}

/// The pHash of an upright RGB photo.
pub fn hash(hasher: &Hasher, img: &image::RgbImage) -> ImageHash {
    hasher.hash_image(&image::DynamicImage::ImageRgb8(img.clone()))
}

/// Reference hashes, each with the product it shows.
#[derive(Default)]
pub struct HashIndex {
    refs: Vec<(String, ImageHash)>,
}

impl HashIndex {
    /// Adds a reference photo of `product`.
    pub fn add(&mut self, product: &str, hash: ImageHash) {
        self.refs.push((product.to_string(), hash));
    }

    /// The `k` most similar products to `query`, best first: similarity = 1 − Hamming distance /
    /// 64 of the product's closest photo (ties by product id).
    pub fn rank(&self, query: &ImageHash, k: usize) -> Vec<(String, f32)> {
        let mut best: HashMap<&str, f32> = HashMap::new();
        for (product, h) in &self.refs {
            let s = 1.0 - query.dist(h) as f32 / BITS as f32;
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
        let h = hasher();
        let mut idx = HashIndex::default();
        idx.add("a", hash(&h, &picture(0)));
        idx.add("b", hash(&h, &picture(90)));
        let r = idx.rank(&hash(&h, &picture(0)), 2);
        assert_eq!(r[0], ("a".to_string(), 1.0));
        assert!(r[1].1 < 1.0, "a different picture has a different hash: {r:?}");
    }
}
