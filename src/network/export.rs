//! Case files out: JSON Lines (one network per line), CSV (one row per network) and one
//! self-contained HTML file (minijinja, HTML-escaped) with photo thumbnails beside the reference
//! photos they copy, the network drawn as an SVG graph, the regions table and a timeline; it
//! prints cleanly.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use super::case::Case;
use super::record::RecordStore;

/// Output format of `network export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per network.
    Jsonl,
    /// One row per network.
    Csv,
    /// One self-contained HTML file with every case.
    Html,
}

/// One JSON line per case.
pub fn jsonl(cases: &[Case]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in cases {
        serde_json::to_writer(&mut out, c)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// One CSV row per case: id, status, rank, counts, turnover, regions, brands.
pub fn csv(cases: &[Case]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "network_id",
        "status",
        "rank",
        "evidence",
        "sellers",
        "listings",
        "flag",
        "review",
        "turnover",
        "currency",
        "registered",
        "ship_from",
        "contacts_in",
        "brands",
        "links",
        "first_seen",
        "last_seen",
    ])?;
    let counts = |m: &BTreeMap<String, usize>| {
        m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("|")
    };
    for c in cases {
        let n = |v: &str| c.verdicts.get(v).copied().unwrap_or(0).to_string();
        w.write_record([
            c.network_id.clone(),
            c.status.clone(),
            c.rank.to_string(),
            c.evidence.to_string(),
            c.sellers.iter().map(|s| s.seller_id.as_str()).collect::<Vec<_>>().join("|"),
            c.listings.len().to_string(),
            n("flag"),
            n("review"),
            format!("{:.2}", c.turnover),
            c.currency.clone(),
            counts(&c.regions.registered),
            counts(&c.regions.ship_from),
            counts(&c.regions.contacts),
            c.brands.join("|"),
            c.links.len().to_string(),
            c.first_seen.clone().unwrap_or_default(),
            c.last_seen.clone().unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("cannot write CSV: {e}"))
}

/// Longest side of a thumbnail, in pixels.
const THUMB_SIDE: u32 = 160;

/// Most listings shown with thumbnails per case.
const MAX_THUMB_LISTINGS: usize = 40;

#[derive(Serialize)]
struct Thumb {
    listing_id: String,
    seller_id: String,
    verdict: String,
    product: String,
    photo: String,
    photo_src: Option<String>,
    reference: String,
    reference_src: Option<String>,
}

#[derive(Serialize)]
struct Node {
    id: String,
    x: f64,
    y: f64,
    lx: f64,
    anchor: &'static str,
    regions: String,
}

#[derive(Serialize)]
struct Edge {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
    colour: &'static str,
    dash: bool,
    label: String,
    lx: f64,
    ly: f64,
    /// `start`, `middle` or `end`: labels lean away from the circle's centre, so the labels of
    /// links that meet at a seller do not run into each other.
    anchor: &'static str,
}

#[derive(Serialize)]
struct CaseView<'a> {
    case: &'a Case,
    thumbs: Vec<Thumb>,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    legend: Vec<(&'static str, &'static str)>,
    timeline: Vec<Row<'a>>,
    turnover: String,
}

/// A timeline row, numbers formatted.
#[derive(Serialize)]
struct Row<'a> {
    l: &'a super::case::CaseListing,
    price: String,
    sold: String,
    turnover: String,
}

/// Colour of a link kind in the graph.
fn colour(kind: &str) -> &'static str {
    match kind {
        "payment_account" | "business_registration" => "#b2182b",
        "phone" | "whatsapp" | "email" | "wechat" | "qq" | "telegram" | "url" | "other" => {
            "#2166ac"
        }
        "warehouse" => "#1b7837",
        "photo" => "#762a83",
        _ => "#888888",
    }
}

const LEGEND: [(&str, &str); 5] = [
    ("payment / registration", "#b2182b"),
    ("contact", "#2166ac"),
    ("warehouse", "#1b7837"),
    ("photo", "#762a83"),
    ("weak (name, URL, title)", "#888888"),
];

/// The network as a graph: sellers on a circle, one line per linked pair labelled with the kinds.
fn graph(c: &Case) -> (Vec<Node>, Vec<Edge>) {
    let n = c.sellers.len().max(1) as f64;
    let (cx, cy, r) = (360.0, 230.0, 150.0);
    let pos: BTreeMap<&str, (f64, f64)> = c
        .sellers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
            (s.seller_id.as_str(), (cx + r * a.cos(), cy + r * a.sin()))
        })
        .collect();
    let nodes = c
        .sellers
        .iter()
        .map(|s| {
            let (x, y) = pos[s.seller_id.as_str()];
            let right = x >= cx;
            Node {
                id: s.seller_id.clone(),
                x,
                y,
                lx: if right { x + 12.0 } else { x - 12.0 },
                anchor: if right { "start" } else { "end" },
                regions: s.regions.join(", "),
            }
        })
        .collect();
    let mut pairs: BTreeMap<(&str, &str), Vec<&super::case::CaseLink>> = BTreeMap::new();
    for l in &c.links {
        let key =
            if l.a <= l.b { (l.a.as_str(), l.b.as_str()) } else { (l.b.as_str(), l.a.as_str()) };
        pairs.entry(key).or_default().push(l);
    }
    let edges = pairs
        .into_iter()
        .filter_map(|((a, b), links)| {
            let (&(x1, y1), &(x2, y2)) = (pos.get(a)?, pos.get(b)?);
            let strongest = links.iter().find(|l| l.strength == "strong").unwrap_or(&links[0]);
            let mut kinds: Vec<&str> = links.iter().map(|l| l.kind.as_str()).collect();
            kinds.dedup();
            Some(Edge {
                x1,
                y1,
                x2,
                y2,
                colour: if strongest.strength == "strong" {
                    colour(&strongest.kind)
                } else {
                    colour("")
                },
                dash: strongest.strength != "strong",
                label: kinds.join(", "),
                lx: match label_side((x1 + x2) / 2.0 - cx) {
                    "start" => (x1 + x2) / 2.0 + 6.0,
                    "end" => (x1 + x2) / 2.0 - 6.0,
                    _ => (x1 + x2) / 2.0,
                },
                ly: (y1 + y2) / 2.0 - 4.0,
                anchor: label_side((x1 + x2) / 2.0 - cx),
            })
        })
        .collect();
    (nodes, edges)
}

/// Which way a link's label runs from its midpoint, `dx` right of the circle's centre.
fn label_side(dx: f64) -> &'static str {
    if dx > 1.0 {
        "start"
    } else if dx < -1.0 {
        "end"
    } else {
        "middle"
    }
}

/// A local photo as a small JPEG `data:` URI; `None` for a URL or a file that cannot be read.
fn thumbnail(image: &str) -> Option<String> {
    use base64::Engine as _;
    if image.starts_with("http://") || image.starts_with("https://") {
        return None;
    }
    let bytes = std::fs::read(image).ok()?;
    let limits = crate::vision::decode::Limits {
        max_file_bytes: 50 << 20,
        max_width: 20_000,
        max_height: 20_000,
        max_pixels: 100_000_000,
    };
    let img = crate::vision::decode::decode(&bytes, &limits, THUMB_SIDE).ok()?;
    let small = crate::vision::decode::fit_long_side(&img, THUMB_SIDE).ok()?;
    let buf = image::RgbImage::from_raw(small.width, small.height, small.data.clone())?;
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(&buf).ok()?;
    Some(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

/// Thumbnails of the flagged and reviewed listings' photos beside the reference photos they copy.
fn thumbs(c: &Case, store: &RecordStore) -> Result<Vec<Thumb>> {
    let mut out = Vec::new();
    for l in c
        .listings
        .iter()
        .filter(|l| l.verdict == "flag" || l.verdict == "review")
        .take(MAX_THUMB_LISTINGS)
    {
        for p in store.photos_of(&l.listing_id)? {
            let Some(reference) = p.reference else { continue };
            out.push(Thumb {
                listing_id: l.listing_id.clone(),
                seller_id: l.seller_id.clone(),
                verdict: l.verdict.clone(),
                product: format!(
                    "{}/{}",
                    l.brand.as_deref().unwrap_or("-"),
                    l.product_id.as_deref().unwrap_or("-")
                ),
                photo_src: thumbnail(&p.image),
                photo: p.image,
                reference_src: thumbnail(&reference),
                reference,
            });
        }
    }
    Ok(out)
}

/// The HTML file of `cases` (self-contained: styles, SVG and thumbnails inline).
pub fn html(cases: &[Case], store: &RecordStore) -> Result<Vec<u8>> {
    let mut env = minijinja::Environment::new();
    env.add_template("case.html", TEMPLATE).context("internal error: case template")?;
    let mut views = Vec::with_capacity(cases.len());
    for c in cases {
        let (nodes, edges) = graph(c);
        let mut sorted: Vec<&super::case::CaseListing> = c.listings.iter().collect();
        sorted.sort_by(|a, b| a.seen.cmp(&b.seen).then_with(|| a.listing_id.cmp(&b.listing_id)));
        let money = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_default();
        let timeline = sorted
            .into_iter()
            .map(|l| Row {
                l,
                price: money(l.price_base),
                sold: l.sold_count.map(|n| n.to_string()).unwrap_or_default(),
                turnover: money(l.turnover),
            })
            .collect();
        let turnover = format!("{:.2}", c.turnover);
        views.push(CaseView {
            case: c,
            thumbs: thumbs(c, store)?,
            nodes,
            edges,
            legend: LEGEND.to_vec(),
            timeline,
            turnover,
        });
    }
    let t = env.get_template("case.html")?;
    let text = t.render(minijinja::context! { cases => views, generated => super::case::rfc3339(super::record::now()) }).context("cannot render the case file")?;
    Ok(text.into_bytes())
}

const TEMPLATE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>knockoff case file{% if cases|length == 1 %} {{ cases[0].case.network_id }}{% endif %}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{border-bottom:2px solid #333;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}td.wrap{overflow-wrap:anywhere}
th{background:#eee}.num{text-align:right}.flag{color:#b2182b;font-weight:bold}.review{color:#b35806}
.pair{display:inline-block;border:1px solid #ccc;margin:4px;padding:4px;width:350px;vertical-align:top;font-size:12px}
.pair img{width:160px;height:160px;object-fit:contain;background:#f4f4f4}.pair figure{display:inline-block;margin:2px}
.pair figcaption{font-size:11px;color:#555;max-width:160px;overflow-wrap:anywhere}
.summary td:first-child{font-weight:bold}.muted{color:#666}
section.case{page-break-before:always}section.case:first-of-type{page-break-before:auto}
@media print{body{margin:1cm;font-size:11px}.pair{page-break-inside:avoid}table,svg{page-break-inside:avoid}a{color:#000}}
</style></head><body>
<h1>knockoff seller-network case file</h1>
<p class="muted">Generated {{ generated }}. {{ cases|length }} network(s). Every link lists the value the sellers share; strong links (contacts, payment accounts, registrations, warehouses, reused photos) joined the network, weak ones (names, shop URLs, title templates) only support it.</p>
{% for v in cases %}{% set c = v.case %}
<section class="case" id="{{ c.network_id }}">
<h2>Network {{ c.network_id }} <span class="muted">({{ c.status }})</span></h2>
<table class="summary">
<tr><td>Sellers</td><td>{{ c.sellers|length }}: {% for s in c.sellers %}{{ s.seller_id }}{% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><td>Listings</td><td>{{ c.listings|length }} ({% for k, n in c.verdicts|items %}{{ n }} {{ k }}{% if not loop.last %}, {% endif %}{% endfor %})</td></tr>
<tr><td>Estimated counterfeit turnover</td><td>{{ v.turnover }} {{ c.currency }}{% if c.turnover_unknown %} (+ {{ c.turnover_unknown }} listing(s) in a currency without a rate){% endif %}</td></tr>
<tr><td>Brands</td><td>{{ c.brands|join(", ") or "-" }}</td></tr>
<tr><td>Products</td><td>{{ c.products|join(", ") or "-" }}</td></tr>
<tr><td>First / last seen</td><td>{{ c.first_seen or "-" }} / {{ c.last_seen or "-" }}</td></tr>
<tr><td>Rank</td><td>{{ c.rank }} (evidence {{ c.evidence }} &times; turnover)</td></tr>
</table>
<h3>Network</h3>
<svg xmlns="http://www.w3.org/2000/svg" width="720" height="470" viewBox="0 0 720 470" role="img" aria-label="network graph">
{% for e in v.edges %}<line x1="{{ e.x1 }}" y1="{{ e.y1 }}" x2="{{ e.x2 }}" y2="{{ e.y2 }}" stroke="{{ e.colour }}" stroke-width="{% if e.dash %}1.5{% else %}3{% endif %}"{% if e.dash %} stroke-dasharray="6 4"{% endif %}/>
<text x="{{ e.lx }}" y="{{ e.ly }}" font-size="11" text-anchor="{{ e.anchor }}" fill="{{ e.colour }}">{{ e.label }}</text>
{% endfor %}{% for n in v.nodes %}<circle cx="{{ n.x }}" cy="{{ n.y }}" r="9" fill="#fff" stroke="#222" stroke-width="2"/>
<text x="{{ n.lx }}" y="{{ n.y + 4 }}" font-size="13" text-anchor="{{ n.anchor }}">{{ n.id }}{% if n.regions %} ({{ n.regions }}){% endif %}</text>
{% endfor %}{% for name, col in v.legend %}<rect x="10" y="{{ 395 + loop.index0 * 14 }}" width="12" height="4" fill="{{ col }}"/><text x="28" y="{{ 400 + loop.index0 * 14 }}" font-size="11">{{ name }}</text>
{% endfor %}</svg>
<h3>Regions</h3>
<table><tr><th>Shops registered in</th><th>Goods ship from</th><th>Phone contacts point to</th></tr>
<tr><td>{% for k, n in c.regions.registered|items %}{{ k }}: {{ n }} seller(s)<br>{% else %}-{% endfor %}</td>
<td>{% for k, n in c.regions.ship_from|items %}{{ k }}: {{ n }} listing(s)<br>{% else %}-{% endfor %}</td>
<td>{% for k, n in c.regions.contacts|items %}{{ k }}: {{ n }} number(s)<br>{% else %}-{% endfor %}</td></tr></table>
<h3>Links and evidence</h3>
<table><tr><th>Seller</th><th>Seller</th><th>Kind</th><th>Shared value</th><th>Strength</th><th>Evidence</th></tr>
{% for l in c.links %}<tr><td>{{ l.a }}</td><td>{{ l.b }}</td><td>{{ l.kind }}</td><td class="wrap">{{ l.value }}</td><td>{{ l.strength }}</td><td class="wrap">{{ l.evidence }}</td></tr>
{% endfor %}</table>
<h3>Copied photos</h3>
{% for t in v.thumbs %}<div class="pair"><div><span class="{{ t.verdict }}">{{ t.verdict }}</span> {{ t.listing_id }} by {{ t.seller_id }} &mdash; {{ t.product }}</div>
<figure>{% if t.photo_src %}<img src="{{ t.photo_src }}" alt="listing photo">{% else %}<div class="muted">(not embedded)</div>{% endif %}<figcaption>listing: {{ t.photo }}</figcaption></figure>
<figure>{% if t.reference_src %}<img src="{{ t.reference_src }}" alt="reference photo">{% else %}<div class="muted">(not embedded)</div>{% endif %}<figcaption>genuine: {{ t.reference }}</figcaption></figure></div>
{% else %}<p class="muted">No flagged listing photo with a matched reference photo.</p>{% endfor %}
<h3>Timeline</h3>
<table><tr><th>Seen</th><th>Seller</th><th>Listing</th><th>Verdict</th><th>Product</th><th class="num">Price</th><th class="num">Sold</th><th class="num">Turnover</th></tr>
{% for r in v.timeline %}{% set l = r.l %}<tr><td>{{ l.seen }}</td><td>{{ l.seller_id }}</td><td>{{ l.listing_id }}{% if l.title %}<br><span class="muted">{{ l.title }}</span>{% endif %}</td><td class="{{ l.verdict }}">{{ l.verdict }}</td><td>{{ l.brand or "" }}{% if l.product_id %}/{{ l.product_id }}{% endif %}</td><td class="num">{{ r.price }}</td><td class="num">{{ r.sold }}</td><td class="num">{{ r.turnover }}</td></tr>
{% endfor %}</table>
</section>
{% endfor %}
</body></html>
"##;
