//! The embedding store: one flat file of float32 rows, row number = vector id.
//!
//! Format (version 1, little endian): 8-byte magic `KNKVEC01`, `u32` dimension, `u32` reserved (0),
//! then rows of `dim` float32 values. The file may hold rows past the committed count after a crash;
//! the catalog database records how many rows are committed, and writers cut the file back to that
//! before appending, so a crash never exposes half-written rows.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

const MAGIC: &[u8; 8] = b"KNKVEC01";
const HEADER: u64 = 16;

/// Handle on the embedding file of a data directory.
#[derive(Debug, Clone)]
pub struct VectorFile {
    path: PathBuf,
    dim: usize,
}

impl VectorFile {
    /// Opens (creating if missing) the file at `path` for vectors of `dim` values.
    pub fn open(path: &Path, dim: usize) -> Result<VectorFile> {
        if !path.exists() {
            write_atomic_rows(path, dim, &[])?;
        }
        let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut header = [0u8; HEADER as usize];
        f.read_exact(&mut header).with_context(|| format!("{} is truncated", path.display()))?;
        if &header[..8] != MAGIC {
            bail!("{} is not a knockoff vector file (bad magic)", path.display());
        }
        let file_dim = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        if file_dim != dim {
            bail!("{} holds {file_dim}-d vectors but the model gives {dim}-d", path.display());
        }
        Ok(VectorFile { path: path.to_path_buf(), dim })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Reads the first `count` rows into one contiguous buffer.
    pub fn read(&self, count: usize) -> Result<Vec<f32>> {
        let mut f = File::open(&self.path).with_context(|| format!("cannot open {}", self.path.display()))?;
        f.seek(SeekFrom::Start(HEADER))?;
        let mut bytes = vec![0u8; count * self.dim * 4];
        f.read_exact(&mut bytes)
            .with_context(|| format!("{} holds fewer than the {count} committed vectors", self.path.display()))?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Cuts the file back to `committed` rows and appends `rows` (a multiple of `dim` values), synced
    /// to disk; the caller then commits the new count in the database.
    pub fn append(&self, committed: usize, rows: &[f32]) -> Result<()> {
        if rows.len() % self.dim != 0 {
            bail!("internal error: appending a partial vector");
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {} for writing", self.path.display()))?;
        let end = HEADER + (committed * self.dim * 4) as u64;
        f.set_len(end)?;
        f.seek(SeekFrom::Start(end))?;
        f.write_all(&encode(rows))?;
        f.sync_all().with_context(|| format!("cannot sync {}", self.path.display()))?;
        Ok(())
    }
}

fn encode(rows: &[f32]) -> Vec<u8> {
    rows.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes a complete vector file aside and renames it over `path` (used by compaction).
pub fn write_atomic_rows(path: &Path, dim: usize, rows: &[f32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(HEADER as usize + rows.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(dim as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&encode(rows));
    crate::fsutil::write_atomic(path, &bytes)
}
