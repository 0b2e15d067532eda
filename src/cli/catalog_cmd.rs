//! `knockoff catalog`: add products and background photos, list, remove, compact, snapshot.

use super::*;

pub(super) fn catalog_cmd(g: &Global, config: Config, cmd: &CatalogCmd) -> Result<i32> {
    match cmd {
        CatalogCmd::Add { file, format } => {
            catalog_add(g, &config, file, input_format(*format, file))
        }
        CatalogCmd::Remove { brand, product_ids } => {
            let mut store = Store::open_existing(&g.data)?;
            let n = store.remove(&config, brand, product_ids)?;
            say(g, &format!("removed {n} product(s) of {brand} from search; `knockoff catalog compact` deletes them for good"));
            Ok(0)
        }
        CatalogCmd::Compact => {
            let mut store = Store::open_existing(&g.data)?;
            let (products, vectors) = store.compact(&config)?;
            say(g, &format!("compacted: deleted {products} removed product(s) and {vectors} unused reference image(s)"));
            Ok(0)
        }
        CatalogCmd::List { brand, removed, json } => {
            catalog_list(g, brand.as_deref(), *removed, *json)
        }
        CatalogCmd::Background(BackgroundCmd::Add { paths }) => background_add(g, &config, paths),
        CatalogCmd::Background(BackgroundCmd::Clear) => {
            let mut store = Store::open_existing(&g.data)?;
            let n = store.clear_background()?;
            say(g, &format!("deleted {n} background photo(s); score normalisation is off"));
            Ok(0)
        }
        CatalogCmd::Snapshot { out } => catalog_snapshot(g, out),
        CatalogCmd::Stats { json } => catalog_stats(g, *json),
    }
}

/// `catalog list`: the products, as a table or JSON lines.
fn catalog_list(g: &Global, brand: Option<&str>, removed: bool, json: bool) -> Result<i32> {
    let store = Store::open(&g.data, false)?;
    let products = store.list(brand, removed)?;
    let mut out = output::stdout();
    if json {
        for p in &products {
            writeln!(out, "{}", serde_json::to_string(p)?)?;
        }
    } else {
        let mut rows =
            vec![["BRAND", "PRODUCT", "TITLE", "PRICE", "IMAGES", "AUTHORISED SELLERS", "STATUS"]
                .map(String::from)
                .to_vec()];
        for p in &products {
            rows.push(vec![
                p.brand.clone(),
                p.product_id.clone(),
                p.title.clone(),
                format!("{:.2} {}", p.price, p.currency),
                p.images.to_string(),
                p.authorized_sellers.join(", "),
                if p.removed { "removed".into() } else { "live".into() },
            ]);
        }
        write!(out, "{}", report::table(&rows))?;
    }
    out.flush()?;
    Ok(0)
}

/// `catalog snapshot OUT`: a read-only copy of the catalog.
fn catalog_snapshot(g: &Global, out: &Path) -> Result<i32> {
    let store = Store::open(&g.data, true)?;
    let m = catalog::snapshot::create(&store, out)?;
    if !g.quiet {
        let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
        let model = m.model.as_ref().map_or("-", |r| r.name.as_str());
        eprintln!("snapshot of {} product(s), {} reference image(s), model {model}: {} ({} files, {:.1} MB)", m.products, m.vectors, out.display(), m.files.len() + 1, bytes as f64 / 1e6);
    }
    Ok(0)
}

/// `catalog stats`: counts, as text or JSON.
fn catalog_stats(g: &Global, json: bool) -> Result<i32> {
    let store = Store::open(&g.data, false)?;
    let s = store.stats()?;
    let mut out = output::stdout();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
    } else {
        write_stats(&mut out, g, &s)?;
    }
    out.flush()?;
    Ok(0)
}

/// The text of `catalog stats`.
fn write_stats(out: &mut impl Write, g: &Global, s: &catalog::Stats) -> Result<()> {
    writeln!(out, "model:            {}", escape(s.model.as_deref().unwrap_or("-")))?;
    writeln!(out, "brands:           {}", s.brands)?;
    writeln!(
        out,
        "products:         {} live, {} removed (until compaction)",
        s.products, s.removed_products
    )?;
    writeln!(out, "reference images: {} stored, {} of live products", s.vectors, s.live_vectors)?;
    writeln!(
        out,
        "background:       {}",
        if s.background_images > 0 {
            format!("{} photos (scores normalised)", s.background_images)
        } else {
            "none (raw scores)".to_string()
        }
    )?;
    writeln!(
        out,
        "local features:   {} of {} live reference images{}",
        s.live_vectors_with_features,
        s.live_vectors,
        if s.live_vectors_with_features < s.live_vectors {
            " (add the others again to verify them geometrically)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "shared points:    looked for in {} of {} live reference images{}",
        s.live_vectors_with_shared,
        s.live_vectors,
        if s.live_vectors_with_shared < s.live_vectors {
            " (add the others' brands again to tell sibling products apart better)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "colours:          {} of {} live reference images (photos on a white backdrop have none)",
        s.live_vectors_with_colours, s.live_vectors
    )?;
    writeln!(
        out,
        "hashes:           {} of {} live reference images (near-duplicates; add older products again to hash them)",
        s.live_vectors_with_phash, s.live_vectors
    )?;
    writeln!(
        out,
        "search:           {}",
        if s.hnsw_covered > 0 {
            format!("HNSW over {} images, exact over the rest", s.hnsw_covered)
        } else {
            "exact".to_string()
        }
    )?;
    writeln!(
        out,
        "disk:             {:.1} MB in {}",
        s.disk_bytes as f64 / 1e6,
        escape(&g.data.display().to_string())
    )?;
    Ok(())
}

fn catalog_add(g: &Global, config: &Config, file: &Path, format: Format) -> Result<i32> {
    let mut store = Store::open(&g.data, true)?;
    let loc = locate(config, Some(&store))?;
    let mut embedder = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads)?;
    let fetcher = Fetcher::new(&config.limits)?;
    let (reader, base, lines) = open_input(file)?;
    let name = file.display().to_string();
    let pb = progress(g.quiet, lines, "adding products");
    let mut records = RecordReader::new(reader, format, config.limits.max_line_bytes);
    let mut io_error = None;
    let chunks = std::iter::from_fn(|| {
        let mut chunk = Vec::new();
        while chunk.len() < catalog::CHUNK {
            match records.next() {
                None => break,
                Some(Err(e)) => {
                    io_error = Some(e);
                    break;
                }
                Some(Ok(raw)) => chunk.push(
                    catalog::parse_product(&raw, &base, config.limits.max_images_per_record)
                        .map_err(|e| (raw.line, e)),
                ),
            }
        }
        (!chunk.is_empty()).then_some(chunk)
    });
    let mut tally = AddTally::default();
    let mut adder = Adder::new(&mut store, &mut embedder, &fetcher, config)?;
    adder.add_products(chunks, |done| {
        tally.count(done, |line, why| note(g, &pb, &format!("{name}:{line}: {why}")));
        pb.inc(done.records as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    if let Some(e) = io_error {
        return Err(e).with_context(|| format!("cannot read {name}"));
    }
    adder.finish()?;
    let AddTally { added, embedded, reused, errors } = tally;
    say(g, &format!("{name}: added or updated {added} product(s); embedded {embedded} new image(s), {reused} already stored; {errors} error(s)"));
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
}

/// What `catalog add` did so far.
#[derive(Default)]
struct AddTally {
    added: usize,
    embedded: usize,
    reused: usize,
    errors: usize,
}

impl AddTally {
    /// Counts a chunk's work and tells `say` (line, message) about each record or image that
    /// could not be used.
    fn count(&mut self, done: &catalog::Ingested, mut say: impl FnMut(usize, &str)) {
        for (line, e) in &done.unreadable {
            self.errors += 1;
            say(*line, &format!("{e}; product skipped"));
        }
        for (line, e) in &done.image_errors {
            self.errors += 1;
            say(*line, e);
        }
        for (line, e) in &done.skipped {
            say(*line, e);
        }
        self.embedded += done.embedded;
        self.reused += done.reused;
        self.added += done.products;
    }
}

fn background_add(g: &Global, config: &Config, paths: &[PathBuf]) -> Result<i32> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(crate::vision::source::image_files_under(p)?);
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    if files.is_empty() {
        bail!(
            "no image files (jpg, png, webp, gif, bmp, tiff) in {}",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut store = Store::open(&g.data, true)?;
    let loc = locate(config, Some(&store))?;
    let mut embedder = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads)?;
    let fetcher = Fetcher::new(&config.limits)?;
    let pb = progress(g.quiet, Some(files.len() as u64), "adding background photos");
    let (mut added, mut known, mut errors) = (0usize, 0usize, 0usize);
    let mut adder = Adder::new(&mut store, &mut embedder, &fetcher, config)?;
    adder.add_background(&files, |done| {
        for (source, e) in &done.errors {
            note(g, &pb, &format!("{source}: {e}; photo skipped"));
        }
        (added, known, errors) =
            (added + done.added, known + done.known, errors + done.errors.len());
        pb.inc((done.added + done.known + done.errors.len()) as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    say(
        g,
        &format!(
            "background: embedded {added} new photo(s), {known} already stored; {errors} error(s)"
        ),
    );
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
}
