//! The results as Markdown (`results.md`, and what `knockoff bench accuracy` prints).

use super::folds::{FoldFigures, Spread, Summary};
use super::{CopyResults, ProductResults, Results};

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn at_p(x: &Option<(f64, f32)>) -> String {
    match x {
        Some((r, t)) => format!("{} (sim ≥ {t:.3})", pct(*r)),
        None => "— (never reached)".into(),
    }
}

/// The results as Markdown tables.
pub fn markdown(r: &Results) -> String {
    let mut s = format!(
        "## Accuracy benchmark — model `{}` (match threshold {:.2}, review {:.2}, --limit {}{}, {})\n\n",
        r.model,
        r.match_threshold,
        r.review_threshold,
        r.limit,
        if r.seed != 0 { format!(", --seed {}", r.seed) } else { String::new() },
        if r.background > 0 { format!("scores normalised against {} background photos", r.background) } else { "raw scores".into() }
    );
    if let Some(c) = &r.copy {
        s += &copy_markdown(c);
    }
    if !r.products.is_empty() {
        s += &products_markdown(&r.products);
    }
    s += &baseline_markdown(r);
    s
}

/// The copy-detection section: the figures, the wrong pairs by group and the families' table.
fn copy_markdown(c: &CopyResults) -> String {
    let mut s = String::new();
    s += &format!(
        "### Copy detection\n\n{} reference images; {} edited copies; {} distractor photos. Scan {:.0} s, task {:.0} s; regions searched for {} of the query photos.\n\n\
         | metric | value |\n|---|---|\n| µAP (all query–reference pairs, top 10 per query) | {:.3} |\n\
         | µAP without the Grocery iconic references | {:.3} |\n\
         | recall at 90 % precision | {} |\n| recall at 99 % precision | {} |\n\
         | pairs at match threshold: precision / recall | {} / {} |\n| pairs at review threshold: precision / recall | {} / {} |\n\
         | distractors reaching review / match threshold | {} / {} |\n\n",
        c.references,
        c.copies,
        c.distractors,
        c.scan_seconds,
        c.seconds,
        pct(c.region_share),
        c.micro_ap,
        c.micro_ap_without_iconic,
        at_p(&c.recall_at_p90),
        at_p(&c.recall_at_p99),
        pct(c.at_match_threshold.precision),
        pct(c.at_match_threshold.recall),
        pct(c.at_review_threshold.precision),
        pct(c.at_review_threshold.recall),
        pct(c.distractors_above_review),
        pct(c.distractors_above_match),
    );
    let v: Vec<String> =
        c.false_matches_by_group.iter().map(|(a, b, n)| format!("{a} → {b}: {n}")).collect();
    s += &format!("Wrong pairs at or above the match threshold (true reference group → matched group): {}\n\n", if v.is_empty() { "none".into() } else { v.join("; ") });
    s += "| family | queries | top-1 | top-1 ≥ match | top-1 ≥ review | median sim. of true ref. |\n|---|---:|---:|---:|---:|---:|\n";
    for f in &c.families {
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.3} |\n",
            f.family,
            f.queries,
            pct(f.top1),
            pct(f.top1_at_match),
            pct(f.top1_at_review),
            f.median_similarity
        );
    }
    s += "\n";
    s
}

/// The products section: one row per catalog setting, the region share and the confusions.
fn products_markdown(products: &[ProductResults]) -> String {
    let mut s = String::new();
    s += "### Products photographed again (Grocery)\n\n\
          | K shop photos | products / ref. images | branded / unbranded listings | top-1 | top-5 | sibling confusion | other-brand confusion | ident. AP | flags | flag precision | flag recall | flags on the right product | flag or review recall | unbranded flagged | unbranded flag or review |\n\
          |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for p in products {
        s += &format!(
            "| {} | {} / {} | {} / {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.k,
            p.products,
            p.reference_images,
            p.branded_listings,
            p.unbranded_listings,
            pct(p.top1),
            pct(p.top5),
            pct(p.sibling_confusion),
            pct(p.other_brand_confusion),
            p.identification_ap,
            p.flagged,
            p.flag_precision.map(pct).unwrap_or_else(|| "— (no flags)".into()),
            pct(p.flag_recall),
            p.flag_right_product.map(pct).unwrap_or_else(|| "—".into()),
            pct(p.flag_or_review_recall),
            pct(p.unbranded_flagged),
            pct(p.unbranded_flag_or_review),
        );
    }
    if products.iter().any(|p| p.region_share > 0.0) {
        let v: Vec<String> =
            products.iter().map(|p| format!("K={}: {}", p.k, pct(p.region_share))).collect();
        s += &format!("\nListing photos whose regions were searched too: {}.\n", v.join(", "));
    }
    s += &folds_markdown(products);
    if let Some(p) = products.last() {
        s += &format!("\nMost frequent wrong best matches at K={}: ", p.k);
        let v: Vec<String> =
            p.top_confusions.iter().take(5).map(|(a, b, n)| format!("{a} → {b} ({n})")).collect();
        s += &v.join("; ");
        s += "\n";
    }
    s
}

/// The side-by-side table of the model and the pHash baseline (empty without `--baseline`).
fn baseline_markdown(r: &Results) -> String {
    let mut s = String::new();
    if let (Some(m), Some(b)) = (&r.copy, &r.baseline_copy) {
        s += &format!("\n### `{}` against a pHash baseline, same queries\n\n| copy detection | {} | pHash (64-bit DCT) |\n|---|---:|---:|\n", r.model, r.model);
        s += &format!("| µAP | {:.3} | {:.3} |\n| µAP without the Grocery iconic references | {:.3} | {:.3} |\n", m.micro_ap, b.micro_ap, m.micro_ap_without_iconic, b.micro_ap_without_iconic);
        s += &format!(
            "| recall at 90 % precision | {} | {} |\n| recall at 99 % precision | {} | {} |\n",
            at_p(&m.recall_at_p90),
            at_p(&b.recall_at_p90),
            at_p(&m.recall_at_p99),
            at_p(&b.recall_at_p99)
        );
        s += &format!(
            "| distractors reaching the review threshold | {} | {} |\n",
            pct(m.distractors_above_review),
            pct(b.distractors_above_review)
        );
        for (fm, fb) in m.families.iter().zip(&b.families) {
            s += &format!("| top-1: {} | {} | {} |\n", fm.family, pct(fm.top1), pct(fb.top1));
        }
        s += &format!(
            "| time (pHash: hashing and ranking; model: scan) | {:.0} s | {:.0} s |\n",
            m.scan_seconds, b.seconds
        );
    }
    if !r.baseline_products.is_empty() {
        s += &format!("\n| products photographed again | {} top-1 / top-5 / ident. AP | pHash top-1 / top-5 / ident. AP |\n|---|---|---|\n", r.model);
        for (m, b) in r.products.iter().zip(&r.baseline_products) {
            s += &format!(
                "| K = {} | {} / {} / {:.3} | {} / {} / {:.3} |\n",
                m.k,
                pct(m.top1),
                pct(m.top5),
                m.identification_ap,
                pct(b.top1),
                pct(b.top5),
                b.identification_ap
            );
        }
    }
    s
}

/// A figure over the folds: mean ± spread (sample standard deviation).
fn spread(x: &Spread) -> String {
    format!("{:.1} ± {:.1} %", 100.0 * x.mean, 100.0 * x.sd)
}

/// One fold's held-out cells: top-1, brand top-1, flags and reviews correct (without sets →
/// with), flag recall, unbranded flagged, mean set size.
fn fold_row(without: &FoldFigures, with: &FoldFigures) -> String {
    let opt = |x: Option<f64>| x.map(pct).unwrap_or_else(|| "—".into());
    format!(
        "{} | {} | {} → {} | {} | {} | {}",
        pct(with.top1),
        pct(with.brand_top1),
        opt(without.flags_and_reviews_correct),
        opt(with.flags_and_reviews_correct),
        pct(with.flag_recall),
        pct(with.unbranded_flagged),
        with.mean_set_size.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
    )
}

/// The held-out summary as the cells of `fold_row`.
fn summary_row(x: &Summary) -> String {
    format!(
        "{} | {} | {} | {} | {} | {:.2} ± {:.2}",
        spread(&x.top1),
        spread(&x.brand_top1),
        spread(&x.flags_and_reviews_correct),
        spread(&x.flag_recall),
        spread(&x.unbranded_flagged),
        x.mean_set_size.mean,
        x.mean_set_size.sd
    )
}

/// The folds section: per K the held-out means with and without candidate sets; per fold of the
/// last K its classes' figures and the margin chosen on the other folds.
fn folds_markdown(products: &[ProductResults]) -> String {
    let Some(last) = products.last() else { return String::new() };
    let mut s = format!(
        "\n#### By folds over classes (held out)\n\n{}.\n\n\
         | K | sibling margin | top-1 | right brand first | flags and reviews correct | \
         flag recall | unbranded flagged | mean set size |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
        last.folds.method
    );
    for p in products {
        let f = &p.folds;
        s += &format!("| {} | 0 (no sets) | {} |\n", p.k, summary_row(&f.held_out_without_sets));
        s += &format!(
            "| {} | {:.3} ± {:.3} (chosen per fold) | {} |\n",
            p.k,
            f.margin.mean,
            f.margin.sd,
            summary_row(&f.held_out)
        );
    }
    s += &format!(
        "\nK = {}, per held-out fold (without sets → with the margin chosen on the other \
         four):\n\n\
         | fold | classes | margin | top-1 | right brand first | flags and reviews correct | \
         flag recall | unbranded flagged | mean set size |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
        last.k
    );
    for f in &last.folds.folds {
        s += &format!(
            "| {} | {} | {:.3} | {} |\n",
            f.fold,
            f.classes.join(", "),
            f.margin,
            fold_row(&f.held_out_without_sets, &f.held_out)
        );
    }
    s
}
