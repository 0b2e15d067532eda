//! `knockoff scan`: a batch of listings to verdicts, resumable, in input order.

use super::*;

pub(super) fn scan_cmd(g: &Global, mut config: Config, args: &ScanArgs) -> Result<i32> {
    configure(g, &mut config, args);
    let name = args.input.display().to_string();
    if let Some(out) = &args.output {
        refuse_output_is_input(&args.input, out)?;
    }
    let mut resume = match (&args.output, args.resume) {
        (Some(out), true) => Some(Resume::read(out)?),
        _ => None,
    };
    let already = resume.as_ref().map_or(0, Resume::len);
    let (reader, base_dir, lines) = open_input_counted(&args.input, shows_progress(g.quiet))?;
    let options = BatchOptions {
        format: input_format(args.format, &args.input),
        base_dir,
        chunk: args.chunk.max(1),
        name: name.clone(),
    };
    let mut batch = Batch::new(reader, options, &config, resume.as_ref());
    let mut scanner = open_scanner(g, config.clone())?;
    attach_allowlist(g, &mut scanner)?;
    let mut recorder = crate::network::Recorder::open(&g.data, &config, config.network.record)?;
    let mut out = open_output(args.output.as_deref(), args.resume)?;
    let color = g.color.enabled(args.output.is_none() && std::io::stdout().is_terminal());
    let table =
        args.table || (!args.json && args.output.is_none() && std::io::stdout().is_terminal());
    let pb = progress(g.quiet, lines.map(|n| n.saturating_sub(already as u64)), "scanning");
    let mut summary = Summary::default();
    summary.skipped(already);
    let mut first = true;
    let mut failure = None;
    let chunks = batch.by_ref().map_while(|c| c.map_err(|e| failure = Some(e)).ok());
    scanner.run(chunks, |mut reports| {
        for m in recorder.process(&mut reports)? {
            note(g, &pb, &format!("{name}: {m}"));
        }
        for r in &reports {
            summary.add(r);
            if r.verdict == Verdict::Error {
                let id = r.listing_id.as_deref().unwrap_or("-");
                note(g, &pb, &format!("{name}:{}: listing {id}: {}", r.line, r.reasons.join("; ")));
            }
        }
        // one write per chunk, so an interrupted scan leaves whole lines (a torn last line is cut by --resume)
        let buf = render(&reports, table.then_some(color), first)?;
        if let Some(resume) = resume.as_mut().filter(|_| first) {
            resume.cut_torn_line()?;
        }
        first = false;
        out.write_all(&buf)?;
        out.flush()?;
        pb.inc(reports.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(resume) = resume.as_mut() {
        resume.cut_torn_line()?;
    }
    for warning in batch::duplicate_warnings(&name, &batch.duplicates(), 100) {
        say(g, &format!("warning: {warning}"));
    }
    if let Some(path) = &args.output {
        std::fs::File::open(path).and_then(|f| f.sync_all()).ok();
    }
    summary.inferences(scanner.inferences());
    say(g, &summary.line());
    Ok(if summary.errors() > 0 { EXIT_PARTIAL } else { 0 })
}

/// The scan's flags that override the configuration.
fn configure(g: &Global, config: &mut Config, args: &ScanArgs) {
    if let Some(r) = args.regions {
        config.scan.region_queries = Some(r);
    }
    config.verify.enabled |= args.verify;
    // a snapshot is read-only (it may be on shared storage read by many scans): nothing is recorded in it
    config.network.record &= !args.no_record && !catalog::snapshot::is_snapshot(&g.data);
}

/// A chunk's verdicts as written: a table (`table`: `Some(colour)`, the header with the `first`
/// chunk) or JSON Lines.
fn render(reports: &[scan::Report], table: Option<bool>, first: bool) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(color) = table {
        buf.extend_from_slice(report::scan_table(reports, first, color).as_bytes());
    } else {
        for r in reports {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
    }
    Ok(buf)
}

/// Refuses to write verdicts over the input (`scan FILE -o FILE`, through a link too): that would
/// empty the input before it is read.
fn refuse_output_is_input(input: &Path, output: &Path) -> Result<()> {
    let same = if input == Path::new("-") {
        crate::util::fsutil::stdin_is(output)
    } else {
        crate::util::fsutil::same_file(input, output)
    };
    if same {
        bail!(
            "the output {} is the input {} (the same file); write the verdicts to another file",
            output.display(),
            if input == Path::new("-") {
                "read from standard input".to_string()
            } else {
                input.display().to_string()
            }
        );
    }
    Ok(())
}

/// Where verdicts go: the output file (appended to when resuming, else replaced), or stdout.
fn open_output(path: Option<&Path>, resume: bool) -> Result<Box<dyn Write>> {
    let Some(path) = path else { return Ok(Box::new(output::stdout())) };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(resume)
        .write(true)
        .truncate(!resume)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))?;
    Ok(Box::new(f))
}
