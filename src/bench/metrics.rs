//! Retrieval metrics for the accuracy benchmark: micro average precision over scored pairs,
//! recall at a precision target, the precision–recall curve, and its plot as SVG.

use serde::Serialize;

/// A scored query–reference pair: its similarity and whether the reference is the right one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// Similarity score (higher means more alike).
    pub score: f32,
    /// The pair is a true match.
    pub positive: bool,
}

/// One point of a precision–recall curve, at a score threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrPoint {
    /// Pairs at or above this score are predicted matches.
    pub threshold: f32,
    /// Share of predicted matches that are true.
    pub precision: f64,
    /// Share of all true matches found (out of `n_positives`).
    pub recall: f64,
}

/// The precision–recall curve of `pairs` ranked by score (best first; ties broken pessimistically,
/// negatives first), with recall relative to `n_positives` (the number of true matches that exist,
/// including those that no pair retrieved). One point per pair.
pub fn pr_curve(pairs: &[Pair], n_positives: usize) -> Vec<PrPoint> {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.positive.cmp(&b.positive)));
    let mut tp = 0usize;
    let mut out = Vec::with_capacity(sorted.len());
    for (i, p) in sorted.iter().enumerate() {
        if p.positive {
            tp += 1;
        }
        out.push(PrPoint {
            threshold: p.score,
            precision: tp as f64 / (i + 1) as f64,
            recall: if n_positives == 0 { 0.0 } else { tp as f64 / n_positives as f64 },
        });
    }
    out
}

/// Micro average precision (µAP, as in SSCD and the DISC21 challenge): all pairs of all queries
/// ranked together by score; the mean of the precision at each true pair, over `n_positives`.
pub fn micro_ap(pairs: &[Pair], n_positives: usize) -> f64 {
    if n_positives == 0 {
        return 0.0;
    }
    let curve = pr_curve(pairs, n_positives);
    let mut sum = 0.0;
    let mut prev_recall = 0.0;
    for p in &curve {
        if p.recall > prev_recall {
            sum += p.precision * (p.recall - prev_recall);
            prev_recall = p.recall;
        }
    }
    sum
}

/// The highest recall reached at any threshold whose precision is at least `precision`, with that
/// threshold (`None` when no threshold reaches the precision).
pub fn recall_at_precision(
    pairs: &[Pair],
    n_positives: usize,
    precision: f64,
) -> Option<(f64, f32)> {
    pr_curve(pairs, n_positives)
        .into_iter()
        .filter(|p| p.precision >= precision && p.recall > 0.0)
        .max_by(|a, b| a.recall.total_cmp(&b.recall))
        .map(|p| (p.recall, p.threshold))
}

/// Precision and recall when pairs scoring at least `threshold` are predicted matches.
pub fn at_threshold(pairs: &[Pair], n_positives: usize, threshold: f32) -> PrPoint {
    let (mut tp, mut n) = (0usize, 0usize);
    for p in pairs.iter().filter(|p| p.score >= threshold) {
        n += 1;
        tp += usize::from(p.positive);
    }
    PrPoint {
        threshold,
        precision: if n == 0 { 1.0 } else { tp as f64 / n as f64 },
        recall: if n_positives == 0 { 0.0 } else { tp as f64 / n_positives as f64 },
    }
}

/// A precision–recall plot as a self-contained SVG: one polyline per named curve, recall on x,
/// precision on y, with a grid and a legend.
pub fn pr_svg(title: &str, curves: &[(String, Vec<PrPoint>)]) -> String {
    const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
    let (w, h, left, top, pw, ph) = (640.0, 480.0, 60.0, 40.0, 540.0, 380.0);
    let x = |r: f64| left + r * pw;
    let y = |p: f64| top + (1.0 - p) * ph;
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        esc(title)
    );
    for i in 0..=10 {
        let v = i as f64 / 10.0;
        s += &format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.1}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            x(v), y(0.0), x(v), y(1.0), x(0.0), y(v), x(1.0), y(v),
            x(v), y(0.0) + 16.0, x(0.0) - 6.0, y(v) + 4.0
        );
    }
    s += &format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">recall</text>\n\
         <text x=\"16\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {:.1})\">precision</text>\n",
        left + pw / 2.0,
        h - 8.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    for (i, (name, pts)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        // keep the plot small: at most ~1000 vertices per curve
        let step = (pts.len() / 1000).max(1);
        let coords: Vec<String> = pts
            .iter()
            .step_by(step)
            .map(|p| format!("{:.1},{:.1}", x(p.recall), y(p.precision)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            coords.join(" ")
        );
        let ly = top + ph - 20.0 - 18.0 * (curves.len() - 1 - i) as f64;
        s += &format!(
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            left + 12.0,
            left + 36.0,
            left + 42.0,
            ly + 4.0,
            esc(name)
        );
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(score: f32, positive: bool) -> Pair {
        Pair { score, positive }
    }

    #[test]
    fn micro_ap_of_a_perfect_ranking_is_one() {
        let pairs = [p(0.9, true), p(0.8, true), p(0.3, false)];
        assert!((micro_ap(&pairs, 2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn micro_ap_by_hand() {
        // ranking: + - + -, 3 positives exist (one never retrieved)
        // precision at the positives: 1/1, 2/3; AP = (1 + 2/3) / 3
        let pairs = [p(0.9, true), p(0.7, false), p(0.6, true), p(0.2, false)];
        assert!((micro_ap(&pairs, 3) - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // order of input does not matter, ties rank negatives first
        let pairs = [p(0.6, true), p(0.6, false)];
        assert!((micro_ap(&pairs, 1) - 0.5).abs() < 1e-12);
        assert_eq!(micro_ap(&[], 0), 0.0);
    }

    #[test]
    fn recall_at_precision_by_hand() {
        // + + - + - - +  with 5 positives
        let s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3];
        let l = [true, true, false, true, false, false, true];
        let pairs: Vec<Pair> = s.iter().zip(l).map(|(&s, l)| p(s, l)).collect();
        // precision 1.0 holds down to 0.8: recall 2/5
        assert_eq!(recall_at_precision(&pairs, 5, 1.0), Some((0.4, 0.8)));
        // precision >= 0.75 holds at 0.6 (3/4): recall 3/5
        assert_eq!(recall_at_precision(&pairs, 5, 0.75), Some((0.6, 0.6)));
        // nothing reaches precision 1 when the best pair is negative
        assert_eq!(recall_at_precision(&[p(0.9, false), p(0.1, true)], 1, 1.0), None);
    }

    #[test]
    fn at_threshold_counts() {
        let pairs = [p(0.9, true), p(0.7, false), p(0.6, true)];
        let q = at_threshold(&pairs, 4, 0.65);
        assert_eq!((q.precision, q.recall), (0.5, 0.25));
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let c = pr_curve(&[p(0.9, true), p(0.5, false)], 1);
        let s = pr_svg("a <b>", &[("x & y".into(), c)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("a &lt;b&gt;") && s.contains("x &amp; y") && s.contains("<polyline"));
    }
}
