//! A stored verdict in words for the verdict page: the parts of the matched product's score, the
//! price against the reference, where the matched region lies in the listing photo, and the
//! verified local features on both photos.

use serde::Serialize;
use serde_json::Value;

/// The part of the listing photo where the matched product was found, as percentages of its
/// width and height (for an outline drawn over the photo).
#[derive(Debug, Serialize, PartialEq)]
pub struct Region {
    /// Left edge, 0 to 100.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The best match's score, part by part, in sentences.
pub fn score_parts(verdict: &Value) -> Vec<String> {
    let m = &verdict["matches"][0];
    let Some(score) = crate::scan::stored_score(m) else {
        return vec!["No catalog product matched.".into()];
    };
    let mut out = Vec::new();
    let raw = crate::scan::stored_cosine(m).unwrap_or(score);
    out.push(format!("The photos' embeddings agree at {raw:.3} (cosine similarity)."));
    if let Some(b) = num(&m["background"]) {
        out.push(format!(
            "{b:.3} is taken off because the listing photo looks like generic background imagery."
        ));
    }
    if let Some(s) = num(&m["support"]) {
        out.push(format!("The product's other reference photos match too: {s:+.3}."));
    }
    if let Some(l) = num(&m["located"]) {
        out.push(format!("Cut out where it lies in the listing photo and straightened, the copy compares at {l:.3}."));
    }
    out.extend(verification(m));
    if m["mirrored"].as_bool() == Some(true) {
        out.push("The listing photo is mirrored (left and right swapped).".into());
    }
    if let Some(c) = num(&m["colour"]) {
        out.push(format!("{:.0} % of the listing photo's colour is the product's (look-alike siblings told apart by colour).", c * 100.0));
    }
    let t = &verdict["thresholds"];
    let against = match (num(&t["match_threshold"]), num(&t["review_threshold"])) {
        (Some(f), Some(r)) => format!(" (review from {r:.3}, a match from {f:.3})"),
        _ => String::new(),
    };
    out.push(format!("Score: {score:.3}{against}."));
    out
}

/// What geometric verification found, in sentences.
fn verification(m: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = m["inliers"].as_u64() {
        let central = m["central_inliers"].as_u64().unwrap_or(0);
        let mut s = format!("{n} local features agree under one perspective ({central} in the centre of the reference photo");
        if let Some(shared) = m["shared_inliers"].as_u64() {
            s.push_str(&format!(", {shared} on details the brand's other products share"));
        }
        s.push_str(").");
        out.push(s);
    }
    if let Some(d) = m["hash_distance"].as_u64() {
        out.push(format!("The listing photo is a near-duplicate of a reference photo ({d} of 64 perceptual-hash bits differ)."));
    }
    if let Some(v) = num(&m["verification"]) {
        out.push(format!("Verification changed the score by {v:+.3}."));
    }
    out
}

/// The listing's price against the reference, in a sentence.
pub fn price_words(verdict: &Value) -> Option<String> {
    let p = &verdict["price"];
    let (listing, reference, ratio) =
        (num(&p["listing"])?, num(&p["reference"])?, num(&p["ratio"])?);
    let currency = p["currency"].as_str().unwrap_or("");
    let where_ = if ratio < 1.0 {
        format!("{:.0} % below", (1.0 - ratio) * 100.0)
    } else if ratio > 1.0 {
        format!("{:.0} % above", (ratio - 1.0) * 100.0)
    } else {
        "exactly".into()
    };
    Some(format!(
        "Listed at {listing:.2} {currency}, {where_} the reference price of {reference:.2} {currency} (ratio {ratio:.2})."
    ))
}

/// The matched region of the best match, when the verdict carries one (`matches[0].region`:
/// left, top, right, bottom as shares of the listing photo).
pub fn region(verdict: &Value) -> Option<Region> {
    let a = verdict["matches"][0]["region"]["area"].as_array()?;
    let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
    let [l, t, r, b] = <[f64; 4]>::try_from(v).ok()?;
    let ok = |x: f64| (0.0..=1.0).contains(&x);
    if !(ok(l) && ok(t) && ok(r) && ok(b) && r > l && b > t) {
        return None;
    }
    Some(Region { x: l * 100.0, y: t * 100.0, w: (r - l) * 100.0, h: (b - t) * 100.0 })
}

/// One verified local feature of the best match, on both photos: x and y as percentages (0 to
/// 100) of each photo's width and height, and a hue (0 to 360) that tells the pairs apart.
#[derive(Debug, Serialize, PartialEq)]
pub struct Feature {
    /// x in the listing photo.
    pub lx: f64,
    /// y in the listing photo.
    pub ly: f64,
    /// x in the reference photo.
    pub rx: f64,
    /// y in the reference photo.
    pub ry: f64,
    /// Colour of the pair's circles and line.
    pub hue: u32,
}

/// Most features drawn, whatever a stored verdict holds (scans keep 48).
const MAX_FEATURES: usize = 100;

/// The verified local features of the best match, when the verdict carries them
/// (`matches[0].features`: `listing` and `reference` points as shares of each photo); pairs
/// that are not two points within the photos are left out.
pub fn features(verdict: &Value) -> Vec<Feature> {
    let point = |p: &Value| -> Option<[f64; 2]> {
        let v: Vec<f64> = p.as_array()?.iter().filter_map(Value::as_f64).collect();
        let [x, y] = <[f64; 2]>::try_from(v).ok()?;
        ((0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y)).then_some([x * 100.0, y * 100.0])
    };
    let Some(all) = verdict["matches"][0]["features"].as_array() else { return Vec::new() };
    let pairs: Vec<([f64; 2], [f64; 2])> = all
        .iter()
        .filter_map(|f| Some((point(&f["listing"])?, point(&f["reference"])?)))
        .take(MAX_FEATURES)
        .collect();
    let n = pairs.len().max(1);
    pairs
        .into_iter()
        .enumerate()
        .map(|(i, ([lx, ly], [rx, ry]))| Feature { lx, ly, rx, ry, hue: (i * 360 / n) as u32 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_score_and_a_price_in_words() {
        let v = json!({
            "matches": [{"score": 0.91, "cosine": 0.8, "background": 0.05, "inliers": 40,
                "central_inliers": 30, "verification": 0.16, "region": {"photo": "x", "area": [0.1, 0.2, 0.6, 0.9]}}],
            "thresholds": {"match_threshold": 0.6, "review_threshold": 0.45},
            "price": {"listing": 20.0, "reference": 80.0, "currency": "EUR", "ratio": 0.25}});
        let words = score_parts(&v).join(" ");
        assert!(
            words.contains("0.800")
                && words.contains("40 local features")
                && words.contains("+0.160"),
            "{words}"
        );
        assert!(words.contains("Score: 0.910 (review from 0.450, a match from 0.600)"), "{words}");
        assert_eq!(
            price_words(&v).unwrap(),
            "Listed at 20.00 EUR, 75 % below the reference price of 80.00 EUR (ratio 0.25)."
        );
        let r = region(&v).unwrap();
        assert!(
            (r.x - 10.0).abs() < 1e-9 && (r.w - 50.0).abs() < 1e-9 && (r.h - 70.0).abs() < 1e-9
        );
        assert!(region(&json!({"matches": [{"region": {"area": [0.5, 0, 0.2, 1]}}]})).is_none());
        assert_eq!(score_parts(&json!({"matches": []})), vec!["No catalog product matched."]);
    }

    #[test]
    fn features_become_percentages_and_bad_pairs_are_left_out() {
        let v = json!({"matches": [{"features": [
            {"listing": [0.25, 0.5], "reference": [0.1, 1.0]},
            {"listing": [1.5, 0.5], "reference": [0.1, 0.2]},
            {"listing": [0.5], "reference": [0.1, 0.2]},
            {"listing": [0.0, 0.0], "reference": "x"},
            {"listing": [0.75, 0.125], "reference": [0.0, 0.0]}]}]});
        let f = features(&v);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0], Feature { lx: 25.0, ly: 50.0, rx: 10.0, ry: 100.0, hue: 0 });
        assert_eq!((f[1].lx, f[1].ly, f[1].hue), (75.0, 12.5, 180));
        assert!(features(&json!({"matches": [{"inliers": 40}]})).is_empty());
    }
}
