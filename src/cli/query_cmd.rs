//! `knockoff query`: one suspect image, its best matches and the verdict it would get.

use super::*;

pub(super) fn query_cmd(g: &Global, mut config: Config, args: &QueryArgs) -> Result<i32> {
    if let Some(r) = args.regions {
        config.scan.region_queries = Some(r);
    }
    config.verify.enabled |= args.verify;
    if let Some(k) = args.top {
        if k == 0 {
            bail!("--top must be at least 1");
        }
        config.policy.top_k = k;
    }
    if let Some(p) = args.price {
        if !p.is_finite() || p < 0.0 {
            bail!("--price must be a non-negative number");
        }
    }
    let cwd = std::env::current_dir()?;
    let image = ImageRef::parse(&args.image, &cwd).map_err(anyhow::Error::msg)?;
    let listing = Listing {
        line: 0,
        listing_id: args.image.clone(),
        title: None,
        price: args.price,
        currency: args.currency.as_ref().map(|c| c.to_ascii_uppercase()),
        images: vec![image],
        seller: Seller { seller_id: args.seller.clone(), ..Seller::default() },
        warnings: Vec::new(),
    };
    let mut scanner = open_scanner(g, config)?;
    attach_allowlist(g, &mut scanner)?;
    let report = scanner
        .check(vec![Ok(listing)])?
        .into_iter()
        .next()
        .context("internal error: no verdict")?;
    let mut out = output::stdout();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::explain(&report, g.color.stdout()))?;
    }
    out.flush()?;
    Ok(if report.verdict == Verdict::Error { 1 } else { 0 })
}
