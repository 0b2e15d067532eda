//! The handlers, small layers over the library: `products` (the catalog), `scan` (listings and
//! single photos to verdicts), `verdicts` (stored verdicts and decisions), `jobs` (large batches),
//! `networks` (seller networks' case files).

pub mod jobs;
pub mod networks;
pub mod products;
pub mod scan;
pub mod verdicts;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::vision::source::ImageRef;

/// Checks a photo reference a client sent: only http(s) URLs are accepted, never a path on the
/// server's disk (`/etc/passwd`, `../x`, `file://...`).
pub fn url_only(text: &str) -> Result<(), String> {
    match ImageRef::parse(text, Path::new("/nonexistent")) {
        Ok(ImageRef::Url(_)) => Ok(()),
        _ => Err(format!("image {text:?} refused: give an http(s) URL or upload the photo (paths on the server are not accepted)")),
    }
}

/// Keeps an uploaded photo as `DATA/uploads/SHA256` (atomically; the same photo once) and
/// returns its path.
pub async fn save_upload(state: &Arc<AppState>, bytes: Vec<u8>) -> Result<PathBuf, ApiError> {
    let max = state.config.limits.max_image_bytes;
    if bytes.len() as u64 > max {
        let msg = format!(
            "the photo is {} bytes, over the limit of {max} (limits.max_image_bytes)",
            bytes.len()
        );
        return Err(ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", msg));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("bad_request", "an uploaded photo is empty"));
    }
    let path = state.uploads.join(crate::vision::source::content_hash(&bytes));
    let target = path.clone();
    tokio::task::spawn_blocking(move || {
        if target.is_file() {
            Ok(())
        } else {
            write_unique(&target, &bytes)
        }
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("upload task failed: {e}")))??;
    Ok(path)
}

/// Writes `bytes` to a temporary file of its own beside `path`, syncs it and renames it over
/// `path`: requests uploading the same photo at once each write their own file, and the last
/// rename leaves the same content.
fn write_unique(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".upload-{}-{n}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(
            anyhow::Error::new(e).context(format!("cannot store the upload {}", path.display()))
        );
    }
    crate::util::fsutil::sync_dir(path.parent());
    Ok(())
}

/// Replaces the server's upload directory in every text of `v` by `upload:` (a client learns the
/// photo's content hash, never a path on the server).
pub fn hide_paths(v: &mut Value, uploads: &Path) {
    let prefix = format!("{}/", uploads.display());
    match v {
        // anywhere in a text: reasons name the photo too ("photo /d/uploads/abc matches ...")
        Value::String(s) if s.contains(&prefix) => *s = s.replace(&prefix, "upload:"),
        Value::Array(items) => items.iter_mut().for_each(|i| hide_paths(i, uploads)),
        Value::Object(m) => m.values_mut().for_each(|i| hide_paths(i, uploads)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_pass() {
        assert!(url_only("https://example.com/a.jpg").is_ok());
        assert!(url_only("HTTP://example.com/a.jpg").is_ok());
        for bad in [
            "/etc/passwd",
            "../../etc/passwd",
            "photo.jpg",
            "file:///etc/passwd",
            "ftp://x/y.jpg",
            "",
        ] {
            assert!(url_only(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn upload_paths_are_hidden() {
        let mut v = serde_json::json!({"matches": [{"image": "/d/uploads/abc", "listing_image": "https://x/y"}],
            "reasons": ["photo /d/uploads/abc matches A / b"]});
        hide_paths(&mut v, Path::new("/d/uploads"));
        assert_eq!(v["matches"][0]["image"], "upload:abc");
        assert_eq!(v["reasons"][0], "photo upload:abc matches A / b");
        assert_eq!(v["matches"][0]["listing_image"], "https://x/y");
    }
}
