//! The command line: argument parsing and the commands, each a thin layer over the library.

pub mod output;

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::scan::batch::{self, Batch, BatchOptions, Resume};
use crate::policy::calibrate;
use crate::catalog::{self, Store};
use crate::config::Config;
use crate::util::display::escape;
use crate::model::embed::Embedder;
use crate::model::{self, ModelChoice, ModelLocation};
use crate::scan::pipeline::overlapped;
use crate::policy::Verdict;
use crate::input::records::{Format, RecordReader};
use crate::scan::report::{self, Summary};
use crate::scan::{self, Listing, Scanner, Seller};
use crate::vision::source::{Fetcher, ImageRef};

mod network_cmds;

/// Exit code: some records could not be processed (they are reported; the rest was done).
pub const EXIT_PARTIAL: i32 = 3;

const ABOUT: &str = "knockoff finds marketplace listings whose photos copy protected products, \
sold below the genuine price by sellers the brand has not authorised.";

const AFTER_HELP: &str = "\
Examples:
  knockoff catalog add testdata/catalog.csv        # brand owners' genuine products
  knockoff scan testdata/listings.jsonl > verdicts.jsonl
  knockoff scan listings.jsonl -o verdicts.jsonl --resume
  knockoff query suspect.jpg --price 19.99 --currency USD --seller shop42

Exit codes: 0 done; 1 failed (message on stderr); 2 bad usage; 3 done, but some records had errors
(reported in the output and on stderr).";

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(name = "knockoff", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Data directory holding the catalog and its index.
    #[arg(long, global = true, env = "KNOCKOFF_DATA", default_value = "knockoff-data")]
    data: PathBuf,
    /// Config file (TOML); default: DATA/config.toml when it exists.
    #[arg(long, global = true, env = "KNOCKOFF_CONFIG")]
    config: Option<PathBuf>,
    /// Model: a manifest name in the models directory (sscd, sscd_distilled) or a .toml path
    /// [default: the model the catalog was built with; sscd_distilled for a new catalog].
    #[arg(long, global = true, env = "KNOCKOFF_MODEL")]
    model: Option<String>,
    /// Directory with model manifests, model files and ONNX Runtime [default: ./models, or models/ near the executable].
    #[arg(long, global = true, env = "KNOCKOFF_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// ONNX Runtime library (libonnxruntime.so) [default: found in the models directory].
    #[arg(long, global = true, env = "KNOCKOFF_ORT_LIB")]
    ort_lib: Option<PathBuf>,
    /// Nothing on stderr but fatal errors (no progress bar, summary or per-record messages).
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the reference catalog of genuine products.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Check listings (JSON Lines or CSV) and write one JSON verdict per listing.
    #[command(after_help = SCAN_HELP)]
    Scan(ScanArgs),
    /// Check a single suspect image: its best matches and the verdict it would get.
    Query(QueryArgs),
    /// Print the effective configuration as TOML (save it as DATA/config.toml to change it).
    Config,
    /// Calibrate the match thresholds on your own labelled outcomes.
    #[command(after_help = CALIBRATE_HELP)]
    Calibrate(CalibrateArgs),
    /// Benchmarks on photos outside the repository.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Seller networks: link recorded sellers, case files, enforcement marks.
    #[command(subcommand, after_help = network_cmds::NETWORK_HELP)]
    Network(network_cmds::NetworkCmd),
    /// Serve the HTTP API (docs/server.md).
    Serve(ServeArgs),
    /// Manage the server's API keys.
    #[command(subcommand)]
    Keys(crate::server::cli::KeysCmd),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
}

const CALIBRATE_HELP: &str = "\
LABELS is CSV or JSON Lines with `listing_id` and `label` (counterfeit or genuine), and either an
`image` (path or URL; it is checked against the catalog) or a verdict for the listing in the
--verdicts file (the output of `knockoff scan`). The score of a listing is its best similarity.
--decisions adds the latest decision on every verdict decided through `knockoff serve`. The report
gives, per brand, precision and recall at the thresholds in force.
Examples:
  knockoff calibrate --decisions --brand Acme
  knockoff calibrate labels.csv --verdicts verdicts.jsonl --precision 0.99
  knockoff calibrate labels.jsonl --precision 0.995 --write      # updates DATA/config.toml";

#[derive(Args, Debug)]
struct CalibrateArgs {
    /// Labelled outcomes (CSV or JSON Lines); optional with --decisions.
    labels: Option<PathBuf>,
    /// Use the decisions reviewers took through `knockoff serve` (DATA/server.sqlite) as labels:
    /// counterfeit is counterfeit, genuine and not_our_product are not.
    #[arg(long)]
    decisions: bool,
    /// Only decisions on verdicts about this brand's products (with --decisions).
    #[arg(long, requires = "decisions")]
    brand: Option<String>,
    /// Verdicts (scan output) to take scores from, for labels without an `image`.
    #[arg(long)]
    verdicts: Option<PathBuf>,
    /// Precision the match threshold must reach (flags).
    #[arg(long, default_value_t = 0.99)]
    precision: f64,
    /// Precision the review threshold must reach.
    #[arg(long, default_value_t = 0.90)]
    review_precision: f64,
    /// Write the thresholds into the config file (--config, else DATA/config.toml).
    #[arg(long)]
    write: bool,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Accuracy through the real catalog and scan code: copy detection on edited copies, and
    /// Grocery products photographed again. Prints Markdown; writes results.json and SVG plots to --out.
    Accuracy(AccuracyArgs),
    /// Seller-network linking on a generated marketplace with planted rings: pair precision and
    /// recall against the truth, largest network, build time and memory. Prints JSON.
    Networks(network_cmds::NetworkBenchArgs),
}

#[derive(Args, Debug)]
struct AccuracyArgs {
    /// Benchmark photos (read in place, never copied).
    #[arg(long, env = "KNOCKOFF_BENCH_DIR", default_value = "../shared/bench")]
    bench_dir: PathBuf,
    /// Output directory: edited copies, temporary catalogs, results.json, results.md, plots.
    #[arg(long, default_value = "target/bench-accuracy")]
    out: PathBuf,
    /// Which task to run.
    #[arg(long, value_enum, default_value = "all")]
    task: crate::bench::Task,
    /// At most this many photos per sampled group (copy distractors; branded and unbranded listings).
    #[arg(long, default_value_t = 300)]
    limit: usize,
    /// Score normalisation: store this many Grocery `val` photos of fruit and vegetables (photos of
    /// no catalog product, never used as queries) as background photos in each catalog. 0: off.
    #[arg(long, default_value_t = 0)]
    background: usize,
    /// Also measure a perceptual-hash baseline (64-bit DCT pHash) on the same queries, side by side.
    #[arg(long)]
    baseline: bool,
    /// Draws another benchmark: other random edits, filler photos, distractors, listings and shop
    /// reference photos, to check that figures hold on a draw the defaults were not tuned on.
    /// 0: the draw BENCHMARKS.md records.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const CATALOG_ADD_HELP: &str = "\
Input: CSV with a header, or JSON Lines (one object per line); the format follows the extension
(.csv, else JSON Lines) unless --format is given. Fields:
  brand, product_id, title, price, currency   required
  images                one or more paths (relative to the file) or http(s) URLs;
                        JSON: a list, CSV: separated by |
  authorized_sellers    optional; seller ids allowed to sell the brand (JSON list, CSV |-separated)
  category              optional
Example CSV:
  brand,product_id,title,price,currency,images,authorized_sellers,category
  Northwind,nw-runner,Runner Pro,129.00,EUR,catalog/nw-runner_1.jpg|catalog/nw-runner_2.jpg,northwind-official,shoes
Adding a product again updates it; an image already stored (same bytes) is not embedded again.";

const SCAN_HELP: &str = "\
Input fields: listing_id, seller_id, price, currency, images (required; images as in catalog add),
title, seller_name, region, ship_from, contact, sold_count, contacts (kind:value list), payment_account,
business_registration, warehouse, shop_url, listed_at (optional; see docs/networks.md).
Output: one JSON object per listing (JSON Lines; a table instead on a terminal), in input order: listing_id, line, verdict (flag, review, clear,
error), risk, matches [{brand, product_id, title, image, listing_image, similarity, ...}],
price_ratio, price, rule, reasons, image_errors, seller, thresholds, model.
Examples:
  knockoff scan listings.jsonl -o verdicts.jsonl
  cat listings.csv | knockoff scan - --format csv --table";

#[derive(Subcommand, Debug)]
enum CatalogCmd {
    /// Add or update products from a CSV or JSON Lines file.
    #[command(after_help = CATALOG_ADD_HELP)]
    Add {
        /// Catalog file (CSV or JSON Lines), or - for standard input.
        file: PathBuf,
        /// Input format [default: from the file extension].
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Hide products from search at once (all of the brand's when no product id is given).
    Remove {
        /// Brand name.
        brand: String,
        /// Product ids of the brand.
        product_ids: Vec<String>,
    },
    /// Delete removed products for good and rebuild the index.
    Compact,
    /// List the catalog's products.
    List {
        /// Only this brand.
        #[arg(long)]
        brand: Option<String>,
        /// Include removed products.
        #[arg(long)]
        removed: bool,
        /// JSON Lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Background photos for score normalisation: images that are NOT in the catalog.
    #[command(subcommand, after_help = BACKGROUND_HELP)]
    Background(BackgroundCmd),
    /// Write a read-only, checksummed copy of the catalog that scans use with --data OUT
    /// (for Spark executors, shared or read-only storage).
    #[command(after_help = SNAPSHOT_HELP)]
    Snapshot {
        /// New directory to write (must not exist).
        out: PathBuf,
    },
    /// Counts of brands, products and reference images.
    Stats {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

const BACKGROUND_HELP: &str = "\
A listing photo that looks like many ordinary photos (a shelf, a white backdrop) scores high
against many references. With background photos stored, knockoff lowers each listing photo's
similarities by policy.background_beta x its mean similarity to its policy.background_k nearest
background photos (SSCD's score normalisation); verdicts show the raw and subtracted parts.
Use a few hundred to thousands of photos like your listings that show no catalog product. The
thresholds then apply to the normalised score: calibrate them (`knockoff calibrate`).
Examples:
  knockoff catalog background add shop-photos/ more/photo.jpg
  knockoff catalog background clear";

const SNAPSHOT_HELP: &str = "\
OUT holds everything a scan reads (database, vectors, search graph, settings) and snapshot.json:
format version, model name and ONNX checksum, each file's sha256. A scan with --data OUT checks
the checksums and the model file, and writes nothing there. See docs/spark.md.
Example:
  knockoff catalog snapshot snapshots/2026-12-03 && knockoff --data snapshots/2026-12-03 scan listings.jsonl";

#[derive(Subcommand, Debug)]
enum BackgroundCmd {
    /// Embed and store background photos (image files, or directories searched at any depth).
    Add {
        /// Image files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Delete all background photos (turns score normalisation off).
    Clear,
}

#[derive(Args, Debug)]
struct ScanArgs {
    /// Listings file (JSON Lines or CSV), or - for standard input.
    input: PathBuf,
    /// Input format [default: from the extension; standard input: JSON Lines].
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write verdicts to this file instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Continue an interrupted scan: skip listings already in the output file and append the rest.
    #[arg(long, requires = "output")]
    resume: bool,
    /// Write a table for people [default when standard output is a terminal].
    #[arg(long, conflicts_with = "json")]
    table: bool,
    /// Write JSON Lines [default when output goes to a file or a pipe].
    #[arg(long)]
    json: bool,
    /// Listings per chunk (decoding of the next chunk overlaps inference on this one).
    #[arg(long, default_value_t = 32)]
    chunk: usize,
    /// Which photos also have their quadrants, centre and inset (a photo pasted or framed inside
    /// them) searched, to find collages and products small in the frame: every photo (`all`,
    /// sscd_distilled's default; 3.8x the inference with the shipped models' 216-px regions, 4.4x
    /// with an inset), photos whose best score is uncertain (`uncertain`), or none (`off`, sscd's
    /// default). Same as `[scan] region_queries`.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "all")]
    regions: Option<crate::model::RegionQueries>,
    /// Verify the best candidates with local features (geometric verification); same as
    /// `[verify] enabled = true`.
    #[arg(long)]
    verify: bool,
    /// Do not record the judged listings for seller networks (DATA/records.sqlite); same as
    /// `[network] record = false`.
    #[arg(long)]
    no_record: bool,
}

#[derive(Args, Debug)]
struct QueryArgs {
    /// The suspect image (path or http(s) URL).
    image: String,
    /// The listing's price.
    #[arg(long, requires = "currency")]
    price: Option<f64>,
    /// Currency of the price (ISO 4217, e.g. EUR).
    #[arg(long)]
    currency: Option<String>,
    /// The seller's id (to check authorisation).
    #[arg(long, default_value = "unknown-seller")]
    seller: String,
    /// How many products to list.
    #[arg(long)]
    top: Option<usize>,
    /// Also search the quadrants, centre and inset of the image (finds collages and pasted
    /// photos): `all` (the default with sscd_distilled), `uncertain` (only when the whole image's
    /// best score is uncertain) or `off` (the default with sscd).
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "all")]
    regions: Option<crate::model::RegionQueries>,
    /// Verify the best candidates with local features (geometric verification); same as
    /// `[verify] enabled = true`.
    #[arg(long)]
    verify: bool,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let mut config = Config::load(g.config.as_deref(), &g.data)?;
    if let Some(m) = &g.model {
        config.model.name = Some(m.clone());
    }
    if let Some(d) = &g.models_dir {
        config.model.dir = Some(d.clone());
    }
    if let Some(l) = &g.ort_lib {
        config.model.ort_lib = Some(l.clone());
    }
    match &cli.command {
        Command::Config => {
            let mut out = output::stdout();
            write!(out, "{}", toml::to_string_pretty(&config)?)?;
            out.flush()?;
            Ok(0)
        }
        Command::Catalog(cmd) => catalog_cmd(g, config, cmd),
        Command::Scan(args) => scan_cmd(g, config, args),
        Command::Query(args) => query_cmd(g, config, args),
        Command::Calibrate(args) => calibrate_cmd(g, config, args),
        Command::Network(cmd) => network_cmds::run(&g.data, &config, g.quiet, cmd),
        Command::Bench(BenchCmd::Networks(args)) => network_cmds::bench(&config, g.quiet, args),
        Command::Serve(args) => {
            crate::server::serve(crate::server::ServeOptions { data: g.data.clone(), listen: args.listen, config })?;
            Ok(0)
        }
        Command::Keys(cmd) => crate::server::cli::keys_cmd(&g.data, cmd),
        Command::Bench(BenchCmd::Accuracy(args)) => {
            if args.limit == 0 {
                bail!("--limit must be at least 1");
            }
            let loc = locate(&config, None)?;
            let opts = crate::bench::Options {
                bench_dir: args.bench_dir.clone(),
                out: args.out.clone(),
                task: args.task,
                limit: args.limit,
                background: args.background,
                baseline: args.baseline,
                seed: args.seed,
                verbose: !g.quiet,
            };
            let (_, md) = crate::bench::run(&config, &loc, &opts)?;
            let mut out = output::stdout();
            write!(out, "{md}")?;
            out.flush()?;
            say(g, &format!("results in {}", args.out.display()));
            Ok(0)
        }
    }
}

/// Finds the model chosen by flag, environment or config; unchosen, the model `store`'s catalog was
/// built with, or `DEFAULT_MODEL`.
fn locate(config: &Config, store: Option<&Store>) -> Result<ModelLocation> {
    let name = match (&config.model.name, store) {
        (Some(name), _) => name.clone(),
        (None, Some(store)) => store.model()?.unwrap_or_else(|| crate::model::DEFAULT_MODEL.to_string()),
        (None, None) => crate::model::DEFAULT_MODEL.to_string(),
    };
    model::locate(&ModelChoice {
        name,
        dir: config.model.dir.clone(),
        ort_lib: config.model.ort_lib.clone(),
    })
}

/// A message for people on stderr (a per-record error, a warning, a summary): nothing with
/// --quiet, untrusted text in it escaped (`display`), kept clear of the progress bar `pb`.
fn note(g: &Global, pb: &ProgressBar, msg: &str) {
    if !g.quiet {
        pb.suspend(|| eprintln!("{}", escape(msg)));
    }
}

/// `note` without a progress bar.
fn say(g: &Global, msg: &str) {
    note(g, &ProgressBar::hidden(), msg);
}

fn progress(quiet: bool, total: Option<u64>, what: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    pb.set_message(what.to_string());
    pb
}

/// Opens an input file (or stdin for `-`) and the directory its relative paths are relative to.
fn open_input(path: &Path) -> Result<(Box<dyn BufRead + Send>, PathBuf, Option<u64>)> {
    if path == Path::new("-") {
        let cwd = std::env::current_dir()?;
        return Ok((Box::new(BufReader::new(std::io::stdin())), cwd, None));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::path::absolute(parent).with_context(|| format!("cannot resolve {}", parent.display()))?;
    let lines = count_lines(path).ok();
    Ok((Box::new(BufReader::new(f)), base, lines))
}

fn count_lines(path: &Path) -> Result<u64> {
    let mut n = 0u64;
    let mut r = BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::new();
    while r.read_until(b'\n', &mut buf)? > 0 {
        if buf.iter().any(|b| !b.is_ascii_whitespace()) {
            n += 1;
        }
        buf.clear();
    }
    Ok(n)
}

fn input_format(explicit: Option<Format>, path: &Path) -> Format {
    explicit.unwrap_or_else(|| if path == Path::new("-") { Format::Jsonl } else { Format::from_path(path) })
}

fn catalog_cmd(g: &Global, config: Config, cmd: &CatalogCmd) -> Result<i32> {
    match cmd {
        CatalogCmd::Add { file, format } => catalog_add(g, &config, file, input_format(*format, file)),
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
            let store = Store::open(&g.data, false)?;
            let products = store.list(brand.as_deref(), *removed)?;
            let mut out = output::stdout();
            if *json {
                for p in &products {
                    writeln!(out, "{}", serde_json::to_string(p)?)?;
                }
            } else {
                let mut rows = vec![["BRAND", "PRODUCT", "TITLE", "PRICE", "IMAGES", "AUTHORISED SELLERS", "STATUS"].map(String::from).to_vec()];
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
        CatalogCmd::Background(BackgroundCmd::Add { paths }) => background_add(g, &config, paths),
        CatalogCmd::Background(BackgroundCmd::Clear) => {
            let mut store = Store::open_existing(&g.data)?;
            let n = store.clear_background()?;
            say(g, &format!("deleted {n} background photo(s); score normalisation is off"));
            Ok(0)
        }
        CatalogCmd::Snapshot { out } => {
            let store = Store::open(&g.data, true)?;
            let m = catalog::snapshot::create(&store, out)?;
            if !g.quiet {
                let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
                let model = m.model.as_ref().map_or("-", |r| r.name.as_str());
                eprintln!("snapshot of {} product(s), {} reference image(s), model {model}: {} ({} files, {:.1} MB)", m.products, m.vectors, out.display(), m.files.len() + 1, bytes as f64 / 1e6);
            }
            Ok(0)
        }
        CatalogCmd::Stats { json } => {
            let store = Store::open(&g.data, false)?;
            let s = store.stats()?;
            let mut out = output::stdout();
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
            } else {
                writeln!(out, "model:            {}", escape(s.model.as_deref().unwrap_or("-")))?;
                writeln!(out, "brands:           {}", s.brands)?;
                writeln!(out, "products:         {} live, {} removed (until compaction)", s.products, s.removed_products)?;
                writeln!(out, "reference images: {} stored, {} of live products", s.vectors, s.live_vectors)?;
                writeln!(out, "background:       {}", if s.background_images > 0 { format!("{} photos (scores normalised)", s.background_images) } else { "none (raw scores)".to_string() })?;
                writeln!(
                    out,
                    "local features:   {} of {} live reference images{}",
                    s.live_vectors_with_features,
                    s.live_vectors,
                    if s.live_vectors_with_features < s.live_vectors { " (add the others again to verify them geometrically)" } else { "" }
                )?;
                writeln!(
                    out,
                    "shared points:    looked for in {} of {} live reference images{}",
                    s.live_vectors_with_shared,
                    s.live_vectors,
                    if s.live_vectors_with_shared < s.live_vectors { " (add the others' brands again to tell sibling products apart better)" } else { "" }
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
                writeln!(out, "search:           {}", if s.hnsw_covered > 0 { format!("HNSW over {} images, exact over the rest", s.hnsw_covered) } else { "exact".to_string() })?;
                writeln!(out, "disk:             {:.1} MB in {}", s.disk_bytes as f64 / 1e6, escape(&g.data.display().to_string()))?;
            }
            out.flush()?;
            Ok(0)
        }
    }
}

fn catalog_add(g: &Global, config: &Config, file: &Path, format: Format) -> Result<i32> {
    let mut store = Store::open(&g.data, true)?;
    let loc = locate(config, Some(&store))?;
    store.check_model(&loc.manifest)?;
    let mut embedder = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads)?;
    let manifest = loc.manifest.clone();
    let fetcher = Fetcher::new(&config.limits)?;
    let limits = scan::decode_limits(config);
    let features = config.verify.params();
    let (reader, base, lines) = open_input(file)?;
    let name = file.display().to_string();
    let pb = progress(g.quiet, lines, "adding products");
    let mut records = RecordReader::new(reader, format, config.limits.max_line_bytes);
    let mut errors = 0usize;
    let (mut added, mut embedded, mut reused) = (0usize, 0usize, 0usize);
    let mut stored = std::collections::BTreeSet::new();
    let mut io_error = None;
    let chunks = std::iter::from_fn(|| {
        let mut chunk = Vec::new();
        while chunk.len() < 64 {
            match records.next() {
                None => break,
                Some(Err(e)) => {
                    io_error = Some(e);
                    break;
                }
                Some(Ok(raw)) => chunk.push(catalog::parse_product(&raw, &base, config.limits.max_images_per_record).map_err(|e| (raw.line, e))),
            }
        }
        (!chunk.is_empty()).then_some(chunk)
    });
    let load = |chunk: Vec<Result<catalog::ProductRecord, (usize, String)>>| {
        let mut bad = Vec::new();
        let good: Vec<catalog::ProductRecord> = chunk.into_iter().filter_map(|r| r.map_err(|e| bad.push(e)).ok()).collect();
        (bad, catalog::load_products(&fetcher, &limits, &manifest, features, good))
    };
    overlapped(chunks, load, |(bad, chunk): (Vec<(usize, String)>, Vec<catalog::LoadedProduct>)| -> Result<()> {
        for (line, e) in bad {
            errors += 1;
            note(g, &pb, &format!("{name}:{line}: {e}; product skipped"));
            pb.inc(1);
        }
        let done = catalog::ingest(&mut store, &mut embedder, &manifest, config.index.storage, &chunk)?;
        for (line, e) in &done.image_errors {
            errors += 1;
            note(g, &pb, &format!("{name}:{line}: {e}"));
        }
        for (line, e) in &done.skipped {
            note(g, &pb, &format!("{name}:{line}: {e}"));
        }
        embedded += done.embedded;
        reused += done.reused;
        added += done.products;
        stored.extend(done.images);
        pb.inc(chunk.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    if let Some(e) = io_error {
        return Err(e).with_context(|| format!("cannot read {name}"));
    }
    store.finish_adding(config, manifest.dim, &stored.into_iter().collect::<Vec<_>>())?;
    say(g, &format!("{name}: added or updated {added} product(s); embedded {embedded} new image(s), {reused} already stored; {errors} error(s)"));
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
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
        bail!("no image files (jpg, png, webp, gif, bmp, tiff) in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    let mut store = Store::open(&g.data, true)?;
    let loc = locate(config, Some(&store))?;
    store.check_model(&loc.manifest)?;
    let mut embedder = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads)?;
    let fetcher = Fetcher::new(&config.limits)?;
    let limits = scan::decode_limits(config);
    let pb = progress(g.quiet, Some(files.len() as u64), "adding background photos");
    let (mut added, mut known, mut errors) = (0usize, 0usize, 0usize);
    let load = |chunk: &[PathBuf]| catalog::load_background(&fetcher, &limits, &loc.manifest, chunk);
    overlapped(files.chunks(64), load, |photos| -> Result<()> {
        let done = catalog::ingest_background(&mut store, &mut embedder, &loc.manifest, config.index.storage, &photos)?;
        for (source, e) in &done.errors {
            note(g, &pb, &format!("{source}: {e}; photo skipped"));
        }
        (added, known, errors) = (added + done.added, known + done.known, errors + done.errors.len());
        pb.inc(photos.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();
    say(g, &format!("background: embedded {added} new photo(s), {known} already stored; {errors} error(s)"));
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
}

fn open_scanner(g: &Global, config: Config) -> Result<Scanner> {
    let store = Store::open(&g.data, false)?;
    let loc = locate(&config, Some(&store))?;
    store.check_model(&loc.manifest)?;
    // the catalog view and the model load independently: on two cores, at the same time
    let (view, embedder) = std::thread::scope(|s| {
        let model = s.spawn(|| {
            let t = std::time::Instant::now();
            let e = Embedder::load(&loc, config.model.batch_size, config.model.intra_threads);
            tracing::debug!("model {} loaded in {:?}", loc.manifest.name, t.elapsed());
            e
        });
        let t = std::time::Instant::now();
        let view = store.view(&config);
        tracing::debug!("catalog view loaded in {:?}", t.elapsed());
        let embedder = model.join().map_err(|_| anyhow::anyhow!("internal error: model loading panicked"));
        (view, embedder)
    });
    let view = view?;
    let embedder = embedder??;
    if view.products.is_empty() {
        bail!("the catalog in {} has no products; add some with `knockoff catalog add FILE`", g.data.display());
    }
    Scanner::new(view, embedder, config)
}

/// Makes a scan respect the data directory's allow-list (`allowlist`), when it has entries.
fn attach_allowlist(g: &Global, scanner: &mut Scanner) -> Result<()> {
    let allow = crate::catalog::allowlist::Shared::open(&g.data)?;
    if !allow.read(crate::catalog::allowlist::Allowlist::is_empty) {
        scanner.set_allowlist(allow);
    }
    Ok(())
}

fn scan_cmd(g: &Global, mut config: Config, args: &ScanArgs) -> Result<i32> {
    if let Some(r) = args.regions {
        config.scan.region_queries = Some(r);
    }
    config.verify.enabled |= args.verify;
    // a snapshot is read-only (it may be on shared storage read by many scans): nothing is recorded in it
    config.network.record &= !args.no_record && !catalog::snapshot::is_snapshot(&g.data);
    let name = args.input.display().to_string();
    if let Some(out) = &args.output {
        refuse_output_is_input(&args.input, out)?;
    }
    let mut resume = match (&args.output, args.resume) {
        (Some(out), true) => Some(Resume::read(out)?),
        _ => None,
    };
    let already = resume.as_ref().map_or(0, Resume::len);
    let (reader, base_dir, lines) = open_input(&args.input)?;
    let options = BatchOptions { format: input_format(args.format, &args.input), base_dir, chunk: args.chunk.max(1), name: name.clone() };
    let mut batch = Batch::new(reader, options, &config, resume.as_ref());
    let mut scanner = open_scanner(g, config.clone())?;
    attach_allowlist(g, &mut scanner)?;
    let mut recorder = crate::network::Recorder::open(&g.data, &config, config.network.record)?;
    let mut out = open_output(args.output.as_deref(), args.resume)?;
    let color = args.output.is_none() && report::stdout_color();
    let table = args.table || (!args.json && args.output.is_none() && std::io::stdout().is_terminal());
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
        let mut buf = Vec::new();
        if table {
            buf.extend_from_slice(report::scan_table(&reports, first, color).as_bytes());
        } else {
            for r in &reports {
                serde_json::to_writer(&mut buf, r)?;
                buf.push(b'\n');
            }
        }
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

/// Refuses to write verdicts over the input (`scan FILE -o FILE`, through a link too): that would
/// empty the input before it is read.
fn refuse_output_is_input(input: &Path, output: &Path) -> Result<()> {
    let same = if input == Path::new("-") { crate::util::fsutil::stdin_is(output) } else { crate::util::fsutil::same_file(input, output) };
    if same {
        bail!(
            "the output {} is the input {} (the same file); write the verdicts to another file",
            output.display(),
            if input == Path::new("-") { "read from standard input".to_string() } else { input.display().to_string() }
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

fn query_cmd(g: &Global, mut config: Config, args: &QueryArgs) -> Result<i32> {
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
    let report = scanner.check(vec![Ok(listing)])?.into_iter().next().context("internal error: no verdict")?;
    let mut out = output::stdout();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report::explain(&report, report::stdout_color()))?;
    }
    out.flush()?;
    Ok(if report.verdict == Verdict::Error { 1 } else { 0 })
}

/// A labelled outcome with the brand of its best match.
struct Labelled {
    brand: Option<String>,
    outcome: calibrate::Outcome,
}

fn calibrate_cmd(g: &Global, config: Config, args: &CalibrateArgs) -> Result<i32> {
    for (name, p) in [("--precision", args.precision), ("--review-precision", args.review_precision)] {
        if !(p > 0.0 && p <= 1.0) {
            bail!("{name} must be in (0, 1], got {p}");
        }
    }
    let mut labelled = Vec::new();
    let mut errors = 0usize;
    let mut names = Vec::new();
    if let Some(labels) = &args.labels {
        names.push(labels.display().to_string());
        errors += labels_from_file(g, &config, args, labels, &mut labelled)?;
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
    let name = names.join(" and ");
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
    let in_use = by_brand(&labelled, in_force.match_threshold, in_force.review_threshold);
    let matched = calibrate::threshold_for_precision(&outcomes, args.precision);
    let review = calibrate::threshold_for_precision(&outcomes, args.review_precision);
    let curve = calibrate::curve(&outcomes);
    let mut out = output::stdout();
    if args.json {
        let v = serde_json::json!({
            "outcomes": outcomes.len(), "counterfeit": positives,
            "match_threshold": matched, "review_threshold": review, "curve": curve,
            "in_use": {"match_threshold": in_force.match_threshold, "review_threshold": in_force.review_threshold, "groups": in_use},
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        writeln!(out, "{} labelled outcomes: {positives} counterfeit, {} genuine", outcomes.len(), outcomes.len() - positives)?;
        write_calibration(&mut out, &curve, &in_use, (in_force.match_threshold, in_force.review_threshold))?;
        for (what, target, p) in [("match", args.precision, &matched), ("review", args.review_precision, &review)] {
            match p {
                Some(p) => writeln!(
                    out,
                    "{what} threshold for precision >= {target}: {:.3} (precision {:.3}, recall {:.3})",
                    p.threshold, p.precision, p.recall
                )?,
                None => writeln!(out, "{what} threshold: no threshold reaches precision {target} on these labels")?,
            }
        }
    }
    out.flush()?;
    if args.write {
        let (Some(m), Some(r)) = (matched, review) else {
            bail!("nothing written: no threshold reaches the target precision");
        };
        if g.config.is_none() && catalog::snapshot::is_snapshot(&g.data) {
            bail!("nothing written: {} is a read-only catalog snapshot; give --config FILE, or calibrate on the data directory it was taken from", g.data.display());
        }
        let path = g.config.clone().unwrap_or_else(|| g.data.join("config.toml"));
        write_thresholds(&path, m.threshold, r.threshold.min(m.threshold))?;
        say(g, &format!("wrote policy.match_threshold = {:.3} and policy.review_threshold = {:.3} to {}", m.threshold, r.threshold.min(m.threshold), path.display()));
    }
    Ok(if errors > 0 { EXIT_PARTIAL } else { 0 })
}

/// Precision at the thresholds in force: all outcomes, then each brand's (by best match).
fn by_brand(labelled: &[Labelled], match_threshold: f64, review_threshold: f64) -> Vec<calibrate::InUse> {
    let mut groups: std::collections::BTreeMap<&str, Vec<calibrate::Outcome>> = std::collections::BTreeMap::new();
    for l in labelled {
        groups.entry(l.brand.as_deref().unwrap_or("(no match)")).or_default().push(l.outcome);
    }
    let all: Vec<calibrate::Outcome> = labelled.iter().map(|l| l.outcome).collect();
    std::iter::once(calibrate::in_use("all", &all, match_threshold, review_threshold))
        .chain(groups.iter().map(|(b, o)| calibrate::in_use(b, o, match_threshold, review_threshold)))
        .collect()
}

/// The calibration tables: the curve, then precision at the thresholds in force by brand.
fn write_calibration(out: &mut impl Write, curve: &[calibrate::Point], in_use: &[calibrate::InUse], (m, r): (f64, f64)) -> Result<()> {
    let mut rows = vec![["THRESHOLD", "PRECISION", "RECALL", "SELECTED"].map(String::from).to_vec()];
    for p in curve {
        rows.push(vec![format!("{:.2}", p.threshold), format!("{:.3}", p.precision), format!("{:.3}", p.recall), p.selected.to_string()]);
    }
    write!(out, "{}", report::table(&rows))?;
    writeln!(out, "at the thresholds in force (match {m:.3}, review {r:.3}):")?;
    let mut rows = vec![["BRAND", "OUTCOMES", "COUNTERFEIT", "MATCH PRECISION", "MATCH RECALL", "REVIEW PRECISION", "REVIEW RECALL"].map(String::from).to_vec()];
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
fn labels_from_file(g: &Global, config: &Config, args: &CalibrateArgs, path: &Path, labelled: &mut Vec<Labelled>) -> Result<usize> {
    let name = path.display().to_string();
    let (reader, base, _) = open_input(path)?;
    let records = RecordReader::new(reader, input_format(None, path), config.limits.max_line_bytes);
    let from_verdicts = verdict_scores(args.verdicts.as_deref())?;
    let mut errors = 0usize;
    let mut to_query: Vec<(bool, Listing)> = Vec::new();
    for rec in records {
        let rec = rec.with_context(|| format!("cannot read {name}"))?;
        let parsed = (|| -> std::result::Result<(String, bool, Option<ImageRef>), String> {
            let f = rec.fields.as_ref().map_err(Clone::clone)?;
            let id = crate::input::records::text(f, "listing_id")?;
            let counterfeit = match crate::input::records::text(f, "label")?.to_ascii_lowercase().as_str() {
                "counterfeit" | "fake" | "1" | "true" => true,
                "genuine" | "0" | "false" => false,
                other => return Err(format!("field `label` must be counterfeit or genuine, got {other:?}")),
            };
            let image = crate::input::records::opt_text(f, "image")?.map(|s| ImageRef::parse(&s, &base)).transpose()?;
            Ok((id, counterfeit, image))
        })();
        match parsed {
            Err(e) => {
                errors += 1;
                say(g, &format!("{name}:{}: {e}", rec.line));
            }
            Ok((id, counterfeit, Some(image))) => to_query.push((counterfeit, calibration_listing(rec.line, id, image))),
            Ok((id, counterfeit, None)) => match from_verdicts.get(&id) {
                Some((score, brand)) => labelled.push(Labelled { brand: brand.clone(), outcome: calibrate::Outcome { score: *score, counterfeit } }),
                None => {
                    errors += 1;
                    say(g, &format!("{name}:{}: listing {id} has no `image` and no verdict in --verdicts", rec.line));
                }
            },
        }
    }
    if !to_query.is_empty() {
        let mut scanner = open_scanner(g, config.clone())?;
        for chunk in to_query.chunks(32) {
            let reports = scanner.check(chunk.iter().map(|(_, l)| Ok(l.clone())).collect())?;
            for ((counterfeit, l), r) in chunk.iter().zip(reports) {
                if r.verdict == Verdict::Error {
                    errors += 1;
                    say(g, &format!("{name}:{}: listing {}: {}", l.line, l.listing_id, r.reasons.join("; ")));
                } else {
                    let score = r.matches.first().map(|m| m.similarity as f64).unwrap_or(-1.0);
                    let brand = r.matches.first().map(|m| m.brand.clone());
                    labelled.push(Labelled { brand, outcome: calibrate::Outcome { score, counterfeit: *counterfeit } });
                }
            }
        }
    }
    Ok(errors)
}

/// A one-photo listing to score a label's image.
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

/// Scores (best similarity) and best-match brands from a verdicts file, by listing id.
fn verdict_scores(path: Option<&Path>) -> Result<std::collections::HashMap<String, (f64, Option<String>)>> {
    let mut scores = std::collections::HashMap::new();
    let Some(path) = path else { return Ok(scores) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a verdict line", path.display(), i + 1))?;
        let Some(id) = v["listing_id"].as_str() else { continue };
        if v["verdict"] == "error" {
            continue;
        }
        let top = &v["matches"][0];
        scores.insert(id.to_string(), (top["similarity"].as_f64().unwrap_or(-1.0), top["brand"].as_str().map(String::from)));
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
    let mut doc: toml_edit::DocumentMut = text.parse().with_context(|| format!("invalid config file {}", path.display()))?;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    doc["policy"]["match_threshold"] = toml_edit::value(round(match_threshold));
    doc["policy"]["review_threshold"] = toml_edit::value(round(review_threshold));
    let out = doc.to_string();
    let config: Config = toml::from_str(&out).with_context(|| format!("the updated {} would be invalid", path.display()))?;
    config.validate()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    crate::util::fsutil::write_atomic(path, out.as_bytes())
}
