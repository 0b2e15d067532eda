//! Image references in catalogs and listings: local paths (absolute, or relative to the file that
//! names them) and http(s) URLs, read with size limits, timeouts, a time budget per record and a
//! bounded number in flight. Downloads and their redirects are checked in `http`.

pub mod http;

use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::input::limits::LimitsConfig;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A file on this machine.
    Path(PathBuf),
    /// An http or https URL.
    Url(String),
}

impl ImageRef {
    /// Interprets `text` from an input file in `base_dir`: URLs stay URLs (an http(s) URL with a
    /// host, else an error), relative paths are taken relative to `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<ImageRef, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            http::check_url(t).map_err(|e| {
                format!("bad image address {:?}: {e}", t.chars().take(200).collect::<String>())
            })?;
            return Ok(ImageRef::Url(t.to_string()));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            return Err(format!("unsupported image address scheme {scheme:?} in {t:?} (use a path or an http(s) URL)"));
        }
        let p = Path::new(t);
        Ok(ImageRef::Path(if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) }))
    }

    /// The reference as shown in reports (the path or URL).
    pub fn display(&self) -> String {
        match self {
            ImageRef::Path(p) => p.display().to_string(),
            ImageRef::Url(u) => u.clone(),
        }
    }
}

/// Reads image bytes from paths and URLs under the configured limits.
pub struct Fetcher {
    http: http::Http,
    max_bytes: u64,
    /// Time the photos of one record (a listing or a product) may take together.
    budget: Duration,
    pool: rayon::ThreadPool,
}

impl Fetcher {
    /// A fetcher with the limits' timeouts, size cap, time budget per record and in-flight bound.
    pub fn new(limits: &LimitsConfig) -> anyhow::Result<Fetcher> {
        Fetcher::build(limits, None)
    }

    /// A fetcher whose downloads (each redirect too) reach only addresses `guard` allows.
    pub(crate) fn guarded(
        limits: &LimitsConfig,
        guard: crate::vision::netguard::Guard,
    ) -> anyhow::Result<Fetcher> {
        Fetcher::build(limits, Some(guard))
    }

    fn build(
        limits: &LimitsConfig,
        guard: Option<crate::vision::netguard::Guard>,
    ) -> anyhow::Result<Fetcher> {
        let http = http::Http::new(&http::HttpLimits {
            connect_timeout: Duration::from_secs(limits.http_connect_timeout_secs),
            timeout: Duration::from_secs(limits.http_timeout_secs),
            max_bytes: limits.max_image_bytes,
            guard,
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(limits.http_max_in_flight.max(1))
            .thread_name(|i| format!("knockoff-fetch-{i}"))
            .build()?;
        Ok(Fetcher {
            http,
            max_bytes: limits.max_image_bytes,
            budget: Duration::from_secs(limits.listing_fetch_secs),
            pool,
        })
    }

    /// Reads many references in parallel (at most `http_max_in_flight` at once), keeping order.
    /// `owners[i]` numbers the record that names `refs[i]`: the photos of one record share one time
    /// budget (`limits.listing_fetch_secs`), counted from the start of its first photo's fetch.
    pub fn fetch_all(&self, refs: &[&ImageRef], owners: &[usize]) -> Vec<Result<Vec<u8>, String>> {
        use rayon::prelude::*;
        let starts: Vec<OnceLock<Instant>> =
            (0..owners.iter().max().map_or(0, |m| m + 1)).map(|_| OnceLock::new()).collect();
        self.pool.install(|| {
            refs.par_iter()
                .enumerate()
                .map(|(i, r)| {
                    let deadline = owners
                        .get(i)
                        .and_then(|&o| starts.get(o))
                        .map(|s| *s.get_or_init(Instant::now) + self.budget);
                    guard("fetching the photo", || self.fetch_by(r, deadline))
                })
                .collect()
        })
    }

    /// Reads one reference; errors say what went wrong in plain words.
    pub fn fetch(&self, r: &ImageRef) -> Result<Vec<u8>, String> {
        guard("fetching the photo", || self.fetch_by(r, None))
    }

    /// Reads one reference by `deadline`, the end of its record's time budget.
    fn fetch_by(&self, r: &ImageRef, deadline: Option<Instant>) -> Result<Vec<u8>, String> {
        let spent = || deadline.is_some_and(|d| Instant::now() >= d);
        if spent() {
            return Err(format!("not fetched: {}", self.budget_spent()));
        }
        let got = match r {
            ImageRef::Path(p) => self.read_file(p),
            ImageRef::Url(u) => self.http.get(u, deadline),
        };
        got.map_err(|e| if spent() { format!("{e}; {}", self.budget_spent()) } else { e })
    }

    fn budget_spent(&self) -> String {
        format!(
            "the record's photos took longer than {} s together (limits.listing_fetch_secs)",
            self.budget.as_secs()
        )
    }

    fn read_file(&self, p: &Path) -> Result<Vec<u8>, String> {
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "file not found".to_string(),
            _ => format!("cannot read file: {e}"),
        })?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.len() > self.max_bytes {
            return Err(format!(
                "file is {} bytes, over the limit of {} (limits.max_image_bytes)",
                meta.len(),
                self.max_bytes
            ));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(p)
            .and_then(|f| f.take(self.max_bytes + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read file: {e}"))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(format!(
                "file is over the limit of {} bytes (limits.max_image_bytes)",
                self.max_bytes
            ));
        }
        Ok(bytes)
    }
}

/// Runs `work`; a panic inside it (a bug in a decoder or client, never expected) becomes an error
/// of this one photo instead of ending the batch.
pub fn guard<T>(what: &str, work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("internal error while {what} ({msg}); please report it"))
    })
}

/// Hex sha256 of image bytes: the content hash that detects the same image added twice.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// File extensions taken as images when a directory is listed (any case).
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Image files (by extension) directly in `dir`, sorted.
pub fn image_files_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            p.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str())
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Image files (by extension) under `dir` at any depth, sorted.
pub fn image_files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = image_files_in(dir)?;
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        out.extend(image_files_under(&d)?);
    }
    Ok(out)
}
