//! Small file-system helpers: atomic replacement of files, and whether two paths are one file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`, so a
/// crash leaves either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    {
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    sync_dir(path.parent());
    Ok(())
}

/// A name beside `path` for writing aside: `NAME.tmp-PID`.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Syncs a directory so a rename in it is durable (best effort: not every platform allows it).
pub fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(f) = File::open(dir) {
            let _ = f.sync_all();
        }
    }
}

/// Whether `a` and `b` are the same file once links are followed: the same device and inode (a
/// symbolic or hard link to the file counts), or on other platforms the same canonical path.
/// False when either does not exist.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => same_identity(&ma, &mb, a, b),
        _ => false,
    }
}

/// Whether standard input reads the file `path` (`knockoff scan - -o FILE < FILE`).
pub fn stdin_is(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else { return false };
        match (File::from(fd).metadata(), std::fs::metadata(path)) {
            (Ok(ms), Ok(mp)) => ms.is_file() && same_identity(&ms, &mp, path, path),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(unix)]
fn same_identity(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_identity(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
