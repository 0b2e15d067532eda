//! Output for people and machines: JSON lines, aligned tables (coloured as `--color` decides:
//! `cli::output::Color`), and the end-of-run summary written to stderr.

use std::borrow::Cow;
use std::time::Instant;

use crate::policy::Verdict;
use crate::scan::Report;
use crate::util::display::escape;

fn paint(text: &str, v: Verdict, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match v {
        Verdict::Flag => "1;31",
        Verdict::Review => "1;33",
        Verdict::Clear => "32",
        Verdict::Error => "1;35",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Lays out rows as columns separated by two spaces; the first row is the header. Cells are shown
/// with control characters escaped (`display::escape`): tables carry listings' and catalogs' text.
pub fn table(rows: &[Vec<String>]) -> String {
    table_min(rows, &[])
}

/// Like `table`, with minimum column widths, so tables printed chunk by chunk line up.
pub fn table_min(rows: &[Vec<String>], min_widths: &[usize]) -> String {
    let rows: Vec<Vec<Cow<str>>> =
        rows.iter().map(|r| r.iter().map(|c| escape(c)).collect()).collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            let w =
                rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0);
            w.max(min_widths.get(c).copied().unwrap_or(0))
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line per listing: verdict, risk, listing, best match and rule (for `scan --table`).
pub fn scan_table(reports: &[Report], header: bool, color: bool) -> String {
    let mut rows = Vec::new();
    if header {
        rows.push(
            ["VERDICT", "RISK", "LISTING", "SELLER", "BEST MATCH", "SCORE", "PRICE RATIO", "RULE"]
                .map(String::from)
                .to_vec(),
        );
    }
    for r in reports {
        let best = r.matches.first();
        rows.push(vec![
            r.verdict.as_str().to_uppercase(),
            format!("{:.2}", r.risk),
            r.listing_id.clone().unwrap_or_else(|| format!("line {}", r.line)),
            r.seller.as_ref().map(|s| s.seller_id.clone()).unwrap_or_else(|| "-".into()),
            best.map(|m| format!("{} / {}", m.brand, m.product_id)).unwrap_or_else(|| "-".into()),
            best.map(|m| format!("{:.3}", m.score)).unwrap_or_else(|| "-".into()),
            r.price_ratio.map(|x| format!("{:.2}", x)).unwrap_or_else(|| "-".into()),
            if r.verdict == Verdict::Error { r.reasons.join("; ") } else { r.rule.to_string() },
        ]);
    }
    let text = table_min(&rows, &[7, 4, 28, 18, 26, 10, 11]);
    if !color {
        return text;
    }
    // colour the verdict word of each data line
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let idx = i + usize::from(!header);
            if idx == 0 || idx > reports.len() {
                return format!("{line}\n");
            }
            let v = reports[idx - 1].verdict;
            let word = v.as_str().to_uppercase();
            format!("{}{}\n", paint(&word, v, true), &line[word.len()..])
        })
        .collect()
}

/// The full explanation of one verdict, for `query` without `--json`.
pub fn explain(r: &Report, color: bool) -> String {
    let mut out = String::new();
    let head =
        format!("{} (risk {:.2}, rule {})", r.verdict.as_str().to_uppercase(), r.risk, r.rule);
    out.push_str(&format!("verdict: {}\n", paint(&head, r.verdict, color)));
    for reason in &r.reasons {
        out.push_str(&format!("  - {}\n", escape(reason)));
    }
    for e in &r.image_errors {
        out.push_str(&format!("  ! {}\n", escape(e)));
    }
    if !r.matches.is_empty() {
        out.push_str("\nmatches:\n");
        let mut rows =
            vec![["#", "BRAND", "PRODUCT", "TITLE", "SCORE", "PRICE", "REFERENCE IMAGE"]
                .map(String::from)
                .to_vec()];
        for (i, m) in r.matches.iter().enumerate() {
            rows.push(vec![
                (i + 1).to_string(),
                m.brand.clone(),
                m.product_id.clone(),
                m.title.clone(),
                format!("{:.3}", m.score),
                format!("{:.2} {}", m.reference_price, m.reference_currency),
                m.image.clone(),
            ]);
        }
        for line in table(&rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    let t = &r.thresholds;
    out.push_str(&format!(
        "\nthresholds: match {:.2}, review {:.2}, flag price ratio {:.2}, review price ratio {:.2}; model {}\n",
        t.match_threshold, t.review_threshold, t.flag_price_ratio, t.review_price_ratio, escape(&r.model)
    ));
    out
}

/// Counts of verdicts and timing of a run.
pub struct Summary {
    started: Instant,
    counts: [usize; 4],
    skipped: usize,
    inferences: Option<crate::scan::Inferences>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary { started: Instant::now(), counts: [0; 4], skipped: 0, inferences: None }
    }
}

impl Summary {
    /// Counts a report.
    pub fn add(&mut self, r: &Report) {
        let i = match r.verdict {
            Verdict::Flag => 0,
            Verdict::Review => 1,
            Verdict::Clear => 2,
            Verdict::Error => 3,
        };
        self.counts[i] += 1;
    }

    /// Notes listings skipped because `--resume` found them done.
    pub fn skipped(&mut self, n: usize) {
        self.skipped = n;
    }

    /// Listings processed in this run.
    pub fn total(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Listings with an `error` verdict.
    pub fn errors(&self) -> usize {
        self.counts[3]
    }

    /// One line for stderr: counts, time and throughput.
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let n = self.total();
        let mut s = format!(
            "scanned {n} listings in {secs:.2} s ({:.1} listings/s): {} flag, {} review, {} clear, {} error",
            if secs > 0.0 { n as f64 / secs } else { 0.0 },
            self.counts[0],
            self.counts[1],
            self.counts[2],
            self.counts[3]
        );
        if self.skipped > 0 {
            s.push_str(&format!("; {} already done (--resume)", self.skipped));
        }
        if let Some(i) = self.inferences.filter(|i| i.with_regions > 0) {
            s.push_str(&format!(
                "; regions searched for {} of {} photos",
                i.with_regions, i.photos
            ));
        }
        s
    }

    /// Notes the scanner's inference counts, shown when region queries ran.
    pub fn inferences(&mut self, i: crate::scan::Inferences) {
        self.inferences = Some(i);
    }
}
