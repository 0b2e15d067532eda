//! The `network` commands and `bench networks`: thin layers over `crate::network`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::network::export::ExportFormat;
use crate::network::{self, Case, RecordStore};
use crate::scan::report;

pub(super) const NETWORK_HELP: &str = "\
Every `knockoff scan` records the listings it judged in DATA/records.sqlite (unless --no-record).
`network build` links sellers that share a contact, payment account, business registration,
warehouse or listing photo, and writes a case file per network. Examples:
  knockoff scan listings.jsonl -o verdicts.jsonl
  knockoff network build
  knockoff network list
  knockoff network show N-3f2a9c01d4
  knockoff network export --format html -o cases.html
  knockoff network mark N-3f2a9c01d4 enforced     # new sellers linked to it are raised a level
See docs/networks.md.";

/// `knockoff network ...`
#[derive(Subcommand, Debug)]
pub(super) enum NetworkCmd {
    /// Link recorded sellers into networks and write their case files.
    Build {
        /// JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The networks of the last build, strongest case first.
    List {
        /// JSON Lines (whole case files) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One network's case file.
    Show {
        /// Network id (from `network list`).
        id: String,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write case files as JSON Lines, CSV or one self-contained HTML file.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file (atomically) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Only these networks [default: all].
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Export the recorded identifiers, normalised, with the linking settings, for the identifier
    /// join on Spark (spark/knockoff_links.py; docs/spark.md).
    ExportRecords {
        /// Directory to create (must not exist): identifiers.jsonl and settings.json.
        output: PathBuf,
    },
    /// Mark a network: `enforced` (new sellers linked to it are raised one level) or `open`.
    Mark {
        /// Network id.
        id: String,
        /// The mark.
        #[arg(value_parser = ["enforced", "open"])]
        status: String,
    },
}

/// `knockoff bench networks`
#[derive(Args, Debug)]
pub(super) struct NetworkBenchArgs {
    /// Sellers in the generated marketplace (about 5 listings each).
    #[arg(long, default_value_t = 20_000)]
    sellers: usize,
    /// Share of sellers in planted rings.
    #[arg(long, default_value_t = 0.08)]
    ring_share: f64,
    /// Seed of the draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of the generated photo embeddings.
    #[arg(long, default_value_t = 64)]
    dim: usize,
    /// Directory for the generated record store (must not hold one, unless --rebuild).
    #[arg(long, default_value = "target/bench-networks")]
    out: PathBuf,
    /// Build and score the store generated earlier in --out with the same options, without
    /// generating it again (the planted truth is drawn again from the seed).
    #[arg(long)]
    rebuild: bool,
}

fn open(data: &std::path::Path) -> Result<RecordStore> {
    RecordStore::open(data, false)?.with_context(|| {
        format!("nothing recorded in {} yet: run `knockoff scan` first", data.display())
    })
}

fn cases(store: &RecordStore) -> Result<Vec<Case>> {
    store
        .cases()?
        .iter()
        .map(|b| {
            serde_json::from_str(b)
                .context("a stored case file is unreadable; run `knockoff network build` again")
        })
        .collect()
}

pub(super) fn run(
    data: &std::path::Path,
    config: &Config,
    quiet: bool,
    cmd: &NetworkCmd,
) -> Result<i32> {
    let mut out = super::output::stdout();
    let code = match cmd {
        NetworkCmd::Build { json } => build(data, config, quiet, *json, &mut out),
        NetworkCmd::List { json } => {
            let cases = cases(&open(data)?)?;
            if *json {
                out.write_all(&network::export::jsonl(&cases)?)?;
            } else if cases.is_empty() {
                eprintln!("no networks (run `knockoff network build`)");
            } else {
                write!(out, "{}", case_table(&cases))?;
            }
            Ok(0)
        }
        NetworkCmd::Show { id, json } => {
            let store = open(data)?;
            let Some(body) = store.case(id)? else {
                bail!("no network {id} (see `knockoff network list`)")
            };
            let c: Case = serde_json::from_str(&body)?;
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&c)?)?;
            } else {
                write!(out, "{}", explain(&c))?;
            }
            Ok(0)
        }
        NetworkCmd::Export { format, output, ids } => {
            let what = Export { format: *format, output: output.as_deref(), ids };
            export(data, quiet, &what, &mut out)
        }
        NetworkCmd::ExportRecords { output } => {
            let s = network::export_records::export(
                &open(data)?,
                &network::BuildOptions::from_config(&config.network),
                output,
            )?;
            if !quiet {
                eprintln!(
                    "exported {} identifier(s) of {} listing(s) to {}",
                    s.identifiers,
                    s.listings,
                    output.display()
                );
            }
            Ok(0)
        }
        NetworkCmd::Mark { id, status } => {
            open(data)?.mark(id, status)?;
            if !quiet {
                eprintln!("network {id} marked {status}");
            }
            Ok(0)
        }
    }?;
    out.flush()?;
    Ok(code)
}

/// `network build`: links the recorded sellers, writes the case files, prints the summary.
fn build(
    data: &std::path::Path,
    config: &Config,
    quiet: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<i32> {
    let Some(mut store) = RecordStore::open(data, false)? else {
        eprintln!(
            "nothing to link: no listings recorded in {} (run `knockoff scan` first)",
            data.display()
        );
        return Ok(0);
    };
    if store.count()? == 0 {
        eprintln!("nothing to link: no listings recorded in {}", data.display());
        return Ok(0);
    }
    let (summary, cases) = network::rebuild(&mut store, config)?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(
            out,
            "{} listing(s) of {} seller(s): {} network(s), the largest of {} sellers",
            summary.listings, summary.sellers, summary.networks, summary.largest
        )?;
        for p in &summary.platform {
            writeln!(
                out,
                "  not linking {} {:?}: shared by {} sellers (over network.max_sharing)",
                p.kind.as_str(),
                p.value,
                p.sellers
            )?;
        }
        if !cases.is_empty() {
            write!(out, "{}", case_table(&cases))?;
        }
    }
    if !quiet {
        eprintln!(
            "built in {:.2} s (read {:.2} s, link {:.2} s, save {:.2} s)",
            summary.load_secs + summary.link_secs + summary.save_secs,
            summary.load_secs,
            summary.link_secs,
            summary.save_secs
        );
    }
    Ok(0)
}

/// What `network export` writes: in which format, to which file (else stdout), which networks
/// (all when none is named).
struct Export<'a> {
    format: ExportFormat,
    output: Option<&'a std::path::Path>,
    ids: &'a [String],
}

/// `network export`: the chosen networks in the chosen format.
fn export(data: &std::path::Path, quiet: bool, what: &Export, out: &mut impl Write) -> Result<i32> {
    let (format, output, ids) = (what.format, what.output, what.ids);
    let store = open(data)?;
    let mut cases = cases(&store)?;
    if !ids.is_empty() {
        if let Some(missing) = ids.iter().find(|id| !cases.iter().any(|c| &c.network_id == *id)) {
            bail!("no network {missing} (see `knockoff network list`)");
        }
        cases.retain(|c| ids.contains(&c.network_id));
    }
    let bytes = match format {
        ExportFormat::Jsonl => network::export::jsonl(&cases)?,
        ExportFormat::Csv => network::export::csv(&cases)?,
        ExportFormat::Html => network::export::html(&cases, &store)?,
    };
    match output {
        Some(path) => crate::util::fsutil::write_atomic(path, &bytes)?,
        None => out.write_all(&bytes)?,
    }
    if !quiet {
        eprintln!("exported {} network(s)", cases.len());
    }
    Ok(0)
}

pub(super) fn bench(config: &Config, quiet: bool, args: &NetworkBenchArgs) -> Result<i32> {
    if args.sellers < 10 || !(0.0..=1.0).contains(&args.ring_share) || args.dim == 0 {
        bail!("--sellers must be at least 10, --ring-share between 0 and 1 and --dim at least 1");
    }
    if args.rebuild && !args.out.join(network::record::FILE).exists() {
        bail!(
            "--rebuild: {} holds no record store; generate it first (without --rebuild)",
            args.out.display()
        );
    }
    if !args.rebuild && args.out.join(network::record::FILE).exists() {
        bail!(
            "{} already holds a record store; choose another --out or remove it",
            args.out.display()
        );
    }
    let opts = network::bench::BenchOptions {
        sellers: args.sellers,
        ring_share: args.ring_share,
        seed: args.seed,
        dim: args.dim,
    };
    if !quiet && !args.rebuild {
        eprintln!("generating {} sellers into {} ...", args.sellers, args.out.display());
    }
    let mut config = config.clone();
    config.network.default_country = "CN".into();
    let r = if args.rebuild {
        network::bench::rerun(&args.out, &opts, &config)?
    } else {
        network::bench::run(&args.out, &opts, &config)?
    };
    println!("{}", serde_json::to_string_pretty(&r)?);
    Ok(0)
}

/// The cases as a table, strongest first.
fn case_table(cases: &[Case]) -> String {
    let mut rows = vec![[
        "NETWORK", "STATUS", "SELLERS", "LISTINGS", "FLAG", "REVIEW", "TURNOVER", "REGIONS",
        "LINKS", "RANK",
    ]
    .map(String::from)
    .to_vec()];
    for c in cases {
        let n = |v: &str| c.verdicts.get(v).copied().unwrap_or(0).to_string();
        rows.push(vec![
            c.network_id.clone(),
            c.status.clone(),
            c.sellers.len().to_string(),
            c.listings.len().to_string(),
            n("flag"),
            n("review"),
            format!("{:.2} {}", c.turnover, c.currency),
            c.regions.registered.keys().cloned().collect::<Vec<_>>().join(", "),
            c.links.len().to_string(),
            format!("{:.0}", c.rank),
        ]);
    }
    report::table(&rows)
}

/// One case for people.
fn explain(c: &Case) -> String {
    let mut s = format!("network {} ({})\n", c.network_id, c.status);
    s += &format!(
        "  sellers:   {}\n",
        c.sellers.iter().map(|s| s.seller_id.as_str()).collect::<Vec<_>>().join(", ")
    );
    s += &format!(
        "  listings:  {} ({})\n",
        c.listings.len(),
        c.verdicts.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
    );
    s += &format!(
        "  turnover:  {:.2} {} (flag and review listings, price x sold)\n",
        c.turnover, c.currency
    );
    s += &format!(
        "  brands:    {}\n",
        if c.brands.is_empty() { "-".to_string() } else { c.brands.join(", ") }
    );
    let places = |m: &std::collections::BTreeMap<String, usize>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.iter().map(|(k, n)| format!("{k} ({n})")).collect::<Vec<_>>().join(", ")
        }
    };
    s += &format!(
        "  registered in: {}\n  ships from:    {}\n  contacts in:   {}\n",
        places(&c.regions.registered),
        places(&c.regions.ship_from),
        places(&c.regions.contacts)
    );
    s += &format!(
        "  seen:      {} .. {}\n  rank:      {:.2} (evidence {} x turnover)\n  links:\n",
        c.first_seen.as_deref().unwrap_or("-"),
        c.last_seen.as_deref().unwrap_or("-"),
        c.rank,
        c.evidence
    );
    for l in &c.links {
        s += &format!(
            "    {} -- {}  {} {} {:?}  ({})\n",
            l.a, l.b, l.strength, l.kind, l.value, l.evidence
        );
    }
    s
}
