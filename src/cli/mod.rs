//! The command line: argument parsing and the commands, each a thin layer over the library.

mod output;

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::catalog::{self, Adder, Store};
use crate::config::Config;
use crate::input::records::{Format, RecordReader};
use crate::model::embed::Embedder;
use crate::model::{self, ModelChoice, ModelLocation};
use crate::policy::calibrate;
use crate::policy::Verdict;
use crate::scan::batch::{self, Batch, BatchOptions, Resume};
use crate::scan::report::{self, Summary};
use crate::scan::{self, Listing, Scanner, Seller};
use crate::util::display::escape;
use crate::vision::source::{Fetcher, ImageRef};

mod calibrate_cmd;
mod catalog_cmd;
mod network_cmds;
mod query_cmd;
mod scan_cmd;

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
    /// When to colour tables and verdicts: `auto` on a terminal unless NO_COLOR is set, `always`
    /// (into a pipe or file too), `never`.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value = "auto")]
    color: output::Color,
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
--verdicts file (the output of `knockoff scan`). The score of a listing is its best match's score.
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
error), risk, matches [{brand, product_id, title, image, listing_image, score, cosine, ...}],
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
        Command::Catalog(cmd) => catalog_cmd::catalog_cmd(g, config, cmd),
        Command::Scan(args) => scan_cmd::scan_cmd(g, config, args),
        Command::Query(args) => query_cmd::query_cmd(g, config, args),
        Command::Calibrate(args) => calibrate_cmd::calibrate_cmd(g, config, args),
        Command::Network(cmd) => network_cmds::run(&g.data, &config, g.quiet, cmd),
        Command::Bench(BenchCmd::Networks(args)) => network_cmds::bench(&config, g.quiet, args),
        Command::Serve(args) => {
            crate::server::serve(crate::server::ServeOptions {
                data: g.data.clone(),
                listen: args.listen,
                config,
            })?;
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
        (None, Some(store)) => {
            store.model()?.unwrap_or_else(|| crate::model::DEFAULT_MODEL.to_string())
        }
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

/// Whether a progress bar is drawn: on a terminal, without --quiet.
fn shows_progress(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

fn progress(quiet: bool, total: Option<u64>, what: &str) -> ProgressBar {
    if !shows_progress(quiet) {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner(),
    };
    pb.set_message(what.to_string());
    pb
}

/// An input opened for reading: the reader, the directory its relative paths are relative to, and
/// its number of records when counted.
type Input = (Box<dyn BufRead + Send>, PathBuf, Option<u64>);

/// Opens an input file (or stdin for `-`) and the directory its relative paths are relative to;
/// its lines are counted (for a progress bar's total) only when stderr is a terminal.
fn open_input(path: &Path) -> Result<Input> {
    open_input_counted(path, std::io::stderr().is_terminal())
}

/// `open_input`, counting the lines only when `count` (a progress bar will show the total) and the
/// input is a regular file: counting reads the whole input once more, which a pipe or FIFO cannot
/// give twice.
fn open_input_counted(path: &Path, count: bool) -> Result<Input> {
    if path == Path::new("-") {
        let cwd = std::env::current_dir()?;
        return Ok((Box::new(BufReader::new(std::io::stdin())), cwd, None));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let base = std::path::absolute(parent)
        .with_context(|| format!("cannot resolve {}", parent.display()))?;
    let regular = f.metadata().is_ok_and(|m| m.is_file());
    let lines = if count && regular { count_lines(path).ok() } else { None };
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
    explicit.unwrap_or_else(|| {
        if path == Path::new("-") {
            Format::Jsonl
        } else {
            Format::from_path(path)
        }
    })
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
        let embedder =
            model.join().map_err(|_| anyhow::anyhow!("internal error: model loading panicked"));
        (view, embedder)
    });
    let view = view?;
    let embedder = embedder??;
    if view.products.is_empty() {
        bail!(
            "the catalog in {} has no products; add some with `knockoff catalog add FILE`",
            g.data.display()
        );
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
