//! `knockoff calibrate`: precision and recall on the user's labelled outcomes, and thresholds.

use super::*;

/// A labelled outcome with the brand of its best match.
struct Labelled {
    brand: Option<String>,
    outcome: calibrate::Outcome,
}

pub(super) fn calibrate_cmd(g: &Global, config: Config, args: &CalibrateArgs) -> Result<i32> {
    for (name, p) in
        [("--precision", args.precision), ("--review-precision", args.review_precision)]
    {
        if !(p > 0.0 && p <= 1.0) {
            bail!("{name} must be in (0, 1], got {p}");
        }
    }
    let Gathered { labelled, errors, name } = gather_labels(g, &config, args)?;
    let outcomes: Vec<calibrate::Outcome> = labelled.iter().map(|l| l.outcome).collect();
    let positives = outcomes.iter().filter(|o| o.counterfeit).count();
    if positives == 0 || positives == outcomes.len() {
        bail!("{name}: calibration needs both counterfeit and genuine outcomes ({positives} counterfeit of {})", outcomes.len());
    }
    let in_force = {
        let store = Store::open(&g.data, false).ok();
        let loc = locate(&config, store.as_ref())?;
        config.policy.thresholds(&loc.manifest)?
    };
    let c = Calibration {
        in_use: by_brand(&labelled, in_force.match_threshold, in_force.review_threshold),
        matched: calibrate::threshold_for_precision(&outcomes, args.precision),
        review: calibrate::threshold_for_precision(&outcomes, args.review_precision),
        curve: calibrate::curve(&outcomes),
        in_force: (in_force.match_threshold, in_force.review_threshold),
        outcomes: outcomes.len(),
        positives,
    };
    let mut out = output::stdout();
    write_report(&mut out, args, &c)?;
    out.flush()?;
    if args.write {
        write_chosen(g, &c)?;
    }
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
}

/// The labelled outcomes `calibrate` was given, from a labels file and the server's decisions.
struct Gathered {
    labelled: Vec<Labelled>,
    /// Records that could not be used.
    errors: usize,
    /// Where they come from, for messages.
    name: String,
}

fn gather_labels(g: &Global, config: &Config, args: &CalibrateArgs) -> Result<Gathered> {
    let mut labelled = Vec::new();
    let mut errors = 0usize;
    let mut names = Vec::new();
    if let Some(labels) = &args.labels {
        names.push(labels.display().to_string());
        errors += labels_from_file(g, config, args, labels, &mut labelled)?;
    }
    if args.decisions {
        let found = crate::server::ledger::labels(&g.data, args.brand.as_deref())?;
        names.push(format!("{} decisions", found.len()));
        labelled.extend(found.into_iter().map(|l| Labelled {
            brand: l.brand,
            outcome: calibrate::Outcome { score: l.score, counterfeit: l.counterfeit },
        }));
    }
    if names.is_empty() {
        bail!("give a labels file, or --decisions to use the decisions taken through `knockoff serve`");
    }
    Ok(Gathered { labelled, errors, name: names.join(" and ") })
}

/// What `calibrate` found: the thresholds for the target precisions, the precision-recall
/// curve, and how the thresholds in force do per brand.
struct Calibration {
    in_use: Vec<calibrate::InUse>,
    matched: Option<calibrate::Point>,
    review: Option<calibrate::Point>,
    curve: Vec<calibrate::Point>,
    /// The (match, review) thresholds in force.
    in_force: (f64, f64),
    /// Labelled outcomes, and how many of them counterfeit.
    outcomes: usize,
    positives: usize,
}

/// The report on stdout, as text or JSON.
fn write_report(out: &mut impl Write, args: &CalibrateArgs, c: &Calibration) -> Result<()> {
    let (matched, review) = (&c.matched, &c.review);
    if args.json {
        let v = serde_json::json!({
            "outcomes": c.outcomes, "counterfeit": c.positives,
            "match_threshold": matched, "review_threshold": review, "curve": c.curve,
            "in_use": {"match_threshold": c.in_force.0, "review_threshold": c.in_force.1, "groups": c.in_use},
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} labelled outcomes: {} counterfeit, {} genuine",
        c.outcomes,
        c.positives,
        c.outcomes - c.positives
    )?;
    write_calibration(out, &c.curve, &c.in_use, c.in_force)?;
    for (what, target, p) in
        [("match", args.precision, matched), ("review", args.review_precision, review)]
    {
        match p {
            Some(p) => writeln!(
                out,
                "{what} threshold for precision >= {target}: {:.3} (precision {:.3}, recall {:.3})",
                p.threshold, p.precision, p.recall
            )?,
            None => writeln!(
                out,
                "{what} threshold: no threshold reaches precision {target} on these labels"
            )?,
        }
    }
    Ok(())
}

/// `--write`: the thresholds found, into the configuration file.
fn write_chosen(g: &Global, c: &Calibration) -> Result<()> {
    let (Some(m), Some(r)) = (&c.matched, &c.review) else {
        bail!("nothing written: no threshold reaches the target precision");
    };
    if g.config.is_none() && catalog::snapshot::is_snapshot(&g.data) {
        bail!("nothing written: {} is a read-only catalog snapshot; give --config FILE, or calibrate on the data directory it was taken from", g.data.display());
    }
    let path = g.config.clone().unwrap_or_else(|| g.data.join("config.toml"));
    write_thresholds(&path, m.threshold, r.threshold.min(m.threshold))?;
    say(
        g,
        &format!(
            "wrote policy.match_threshold = {:.3} and policy.review_threshold = {:.3} to {}",
            m.threshold,
            r.threshold.min(m.threshold),
            path.display()
        ),
    );
    Ok(())
}

fn by_brand(
    labelled: &[Labelled],
    match_threshold: f64,
    review_threshold: f64,
) -> Vec<calibrate::InUse> {
    let mut groups: std::collections::BTreeMap<&str, Vec<calibrate::Outcome>> =
        std::collections::BTreeMap::new();
    for l in labelled {
        groups.entry(l.brand.as_deref().unwrap_or("(no match)")).or_default().push(l.outcome);
    }
    let all: Vec<calibrate::Outcome> = labelled.iter().map(|l| l.outcome).collect();
    std::iter::once(calibrate::in_use("all", &all, match_threshold, review_threshold))
        .chain(
            groups.iter().map(|(b, o)| calibrate::in_use(b, o, match_threshold, review_threshold)),
        )
        .collect()
}

/// The calibration tables: the curve, then precision at the thresholds in force by brand.
fn write_calibration(
    out: &mut impl Write,
    curve: &[calibrate::Point],
    in_use: &[calibrate::InUse],
    (m, r): (f64, f64),
) -> Result<()> {
    let mut rows =
        vec![["THRESHOLD", "PRECISION", "RECALL", "SELECTED"].map(String::from).to_vec()];
    for p in curve {
        rows.push(vec![
            format!("{:.2}", p.threshold),
            format!("{:.3}", p.precision),
            format!("{:.3}", p.recall),
            p.selected.to_string(),
        ]);
    }
    write!(out, "{}", report::table(&rows))?;
    writeln!(out, "at the thresholds in force (match {m:.3}, review {r:.3}):")?;
    let mut rows = vec![[
        "BRAND",
        "OUTCOMES",
        "COUNTERFEIT",
        "MATCH PRECISION",
        "MATCH RECALL",
        "REVIEW PRECISION",
        "REVIEW RECALL",
    ]
    .map(String::from)
    .to_vec()];
    for u in in_use {
        rows.push(vec![
            u.group.clone(),
            u.outcomes.to_string(),
            u.counterfeit.to_string(),
            format!("{:.3} ({} selected)", u.matched.precision, u.matched.selected),
            format!("{:.3}", u.matched.recall),
            format!("{:.3} ({} selected)", u.review.precision, u.review.selected),
            format!("{:.3}", u.review.recall),
        ]);
    }
    write!(out, "{}", report::table(&rows))?;
    Ok(())
}

/// Reads a labels file into `labelled` (scores from --verdicts, or by checking the images);
/// returns how many labels could not be used (each is reported).
fn labels_from_file(
    g: &Global,
    config: &Config,
    args: &CalibrateArgs,
    path: &Path,
    labelled: &mut Vec<Labelled>,
) -> Result<usize> {
    let name = path.display().to_string();
    let (reader, base, _) = open_input(path)?;
    let records = RecordReader::new(reader, input_format(None, path), config.limits.max_line_bytes);
    let from_verdicts = verdict_scores(args.verdicts.as_deref())?;
    let mut errors = 0usize;
    let mut to_query: Vec<(bool, Listing)> = Vec::new();
    for rec in records {
        let rec = rec.with_context(|| format!("cannot read {name}"))?;
        match parse_label(&rec, &base) {
            Err(e) => {
                errors += 1;
                say(g, &format!("{name}:{}: {e}", rec.line));
            }
            Ok((id, counterfeit, Some(image))) => {
                to_query.push((counterfeit, calibration_listing(rec.line, id, image)))
            }
            Ok((id, counterfeit, None)) => {
                match from_verdicts.get(&id) {
                    Some((score, brand)) => labelled.push(Labelled {
                        brand: brand.clone(),
                        outcome: calibrate::Outcome { score: *score, counterfeit },
                    }),
                    None => {
                        errors += 1;
                        say(g, &format!("{name}:{}: listing {id} has no `image` and no verdict in --verdicts", rec.line));
                    }
                }
            }
        }
    }
    if !to_query.is_empty() {
        errors += query_labels(g, config, &name, &to_query, labelled)?;
    }
    Ok(errors)
}

/// A labels file's record: (listing id, counterfeit, photo to scan when given).
fn parse_label(
    rec: &crate::input::records::RawRecord,
    base: &Path,
) -> std::result::Result<(String, bool, Option<ImageRef>), String> {
    let f = rec.fields.as_ref().map_err(Clone::clone)?;
    let id = crate::input::records::text(f, "listing_id")?;
    let counterfeit = match crate::input::records::text(f, "label")?.to_ascii_lowercase().as_str() {
        "counterfeit" | "fake" | "1" | "true" => true,
        "genuine" | "0" | "false" => false,
        other => {
            return Err(format!("field `label` must be counterfeit or genuine, got {other:?}"))
        }
    };
    let image = crate::input::records::opt_text(f, "image")?
        .map(|s| ImageRef::parse(&s, base))
        .transpose()?;
    Ok((id, counterfeit, image))
}

/// Scans the labelled listings that name a photo and adds their outcomes (best match's score and
/// brand) to `labelled`; returns how many could not be scanned (each said, with `name`).
fn query_labels(
    g: &Global,
    config: &Config,
    name: &str,
    to_query: &[(bool, Listing)],
    labelled: &mut Vec<Labelled>,
) -> Result<usize> {
    let mut errors = 0usize;
    let mut scanner = open_scanner(g, config.clone())?;
    for chunk in to_query.chunks(32) {
        let reports = scanner.check(chunk.iter().map(|(_, l)| Ok(l.clone())).collect())?;
        for ((counterfeit, l), r) in chunk.iter().zip(reports) {
            if r.verdict == Verdict::Error {
                errors += 1;
                say(
                    g,
                    &format!(
                        "{name}:{}: listing {}: {}",
                        l.line,
                        l.listing_id,
                        r.reasons.join("; ")
                    ),
                );
            } else {
                let score = r.matches.first().map(|m| m.score as f64).unwrap_or(-1.0);
                let brand = r.matches.first().map(|m| m.brand.clone());
                labelled.push(Labelled {
                    brand,
                    outcome: calibrate::Outcome { score, counterfeit: *counterfeit },
                });
            }
        }
    }
    Ok(errors)
}

fn calibration_listing(line: usize, listing_id: String, image: ImageRef) -> Listing {
    Listing {
        line,
        listing_id,
        title: None,
        price: None,
        currency: None,
        images: vec![image],
        seller: Seller { seller_id: "calibration".into(), ..Seller::default() },
        warnings: Vec::new(),
    }
}

/// Scores (best match's score) and best-match brands from a verdicts file, by listing id.
fn verdict_scores(
    path: Option<&Path>,
) -> Result<std::collections::HashMap<String, (f64, Option<String>)>> {
    let mut scores = std::collections::HashMap::new();
    let Some(path) = path else { return Ok(scores) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a verdict line", path.display(), i + 1))?;
        let Some(id) = v["listing_id"].as_str() else { continue };
        if v["verdict"] == "error" {
            continue;
        }
        let top = &v["matches"][0];
        scores.insert(
            id.to_string(),
            (
                crate::scan::stored_score(top).unwrap_or(-1.0),
                top["brand"].as_str().map(String::from),
            ),
        );
    }
    Ok(scores)
}

/// Sets the two thresholds in a config file, keeping the rest of it (comments included); atomic.
fn write_thresholds(path: &Path, match_threshold: f64, review_threshold: f64) -> Result<()> {
    let text = if path.exists() {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    } else {
        String::new()
    };
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("invalid config file {}", path.display()))?;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    doc["policy"]["match_threshold"] = toml_edit::value(round(match_threshold));
    doc["policy"]["review_threshold"] = toml_edit::value(round(review_threshold));
    let out = doc.to_string();
    let config: Config = toml::from_str(&out)
        .with_context(|| format!("the updated {} would be invalid", path.display()))?;
    config.validate()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::util::fsutil::write_atomic(path, out.as_bytes())
}
