//! Image references in catalogs and listings: local paths (absolute, or relative to the file that
//! names them) and http(s) URLs, read with size limits, timeouts and a bounded number in flight.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::LimitsConfig;

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A file on this machine.
    Path(PathBuf),
    /// An http or https URL.
    Url(String),
}

impl ImageRef {
    /// Interprets `text` from an input file in `base_dir`: URLs stay URLs, relative paths are taken
    /// relative to `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<ImageRef, String> {
        let t = text.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
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
    agent: ureq::Agent,
    max_bytes: u64,
    pool: rayon::ThreadPool,
}

impl Fetcher {
    /// A fetcher with the limits' timeouts, size cap and in-flight bound.
    pub fn new(limits: &LimitsConfig) -> anyhow::Result<Fetcher> {
        Fetcher::build(limits, None)
    }

    /// A fetcher whose downloads (each redirect too) reach only addresses `guard` allows.
    pub fn guarded(limits: &LimitsConfig, guard: crate::netguard::Guard) -> anyhow::Result<Fetcher> {
        Fetcher::build(limits, Some(guard))
    }

    fn build(limits: &LimitsConfig, guard: Option<crate::netguard::Guard>) -> anyhow::Result<Fetcher> {
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(limits.http_connect_timeout_secs))
            .timeout(Duration::from_secs(limits.http_timeout_secs))
            .redirects(5)
            .user_agent(concat!("knockoff/", env!("CARGO_PKG_VERSION")));
        if let Some(guard) = guard {
            builder = builder.resolver(move |netloc: &str| guard.resolve(netloc));
        }
        let agent = builder.build();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(limits.http_max_in_flight.max(1))
            .thread_name(|i| format!("knockoff-fetch-{i}"))
            .build()?;
        Ok(Fetcher { agent, max_bytes: limits.max_image_bytes, pool })
    }

    /// Reads many references in parallel (at most `http_max_in_flight` at once), keeping order.
    pub fn fetch_all(&self, refs: &[&ImageRef]) -> Vec<Result<Vec<u8>, String>> {
        use rayon::prelude::*;
        self.pool.install(|| refs.par_iter().map(|r| self.fetch(r)).collect())
    }

    /// Reads one reference; errors say what went wrong in plain words.
    pub fn fetch(&self, r: &ImageRef) -> Result<Vec<u8>, String> {
        match r {
            ImageRef::Path(p) => self.read_file(p),
            ImageRef::Url(u) => self.download(u),
        }
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
            return Err(format!("file is {} bytes, over the limit of {} (limits.max_image_bytes)", meta.len(), self.max_bytes));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        std::fs::File::open(p)
            .and_then(|f| f.take(self.max_bytes + 1).read_to_end(&mut bytes))
            .map_err(|e| format!("cannot read file: {e}"))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(format!("file is over the limit of {} bytes (limits.max_image_bytes)", self.max_bytes));
        }
        Ok(bytes)
    }

    fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = match self.agent.get(url).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => return Err(format!("HTTP {code} {}", r.status_text())),
            Err(e) => return Err(format!("download failed: {e}")),
        };
        if let Some(len) = resp.header("content-length").and_then(|v| v.parse::<u64>().ok()) {
            if len > self.max_bytes {
                return Err(format!("download is {len} bytes, over the limit of {} (limits.max_image_bytes)", self.max_bytes));
            }
        }
        let mut bytes = Vec::new();
        resp.into_reader()
            .take(self.max_bytes + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("download failed: {e}"))?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(format!("download is over the limit of {} bytes (limits.max_image_bytes)", self.max_bytes));
        }
        Ok(bytes)
    }
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
