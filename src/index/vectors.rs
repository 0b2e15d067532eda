//! The embedding store: one flat file of rows, row number = vector id.
//!
//! Format, little endian. Header (16 bytes): 8-byte magic, `u32` dimension, `u32` storage kind.
//! - Version 2, magic `KNKVEC02`: kind 0 = float32 rows (`dim` × f32), kind 1 = int8 rows (an f32
//!   scale, then `dim` × i8; value = scale × int, the scale maps the row's largest magnitude to 127).
//! - Version 1, magic `KNKVEC01` (still read): float32 rows; the kind field is reserved (0).
//!
//! The file may hold rows past the committed count after a crash; the catalog database records how
//! many rows are committed, and writers cut the file back to that before appending, so a crash never
//! exposes half-written rows. Readers memory-map the file (`map`), so opening a large catalog costs
//! no reading up front and the page cache is shared between processes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

const MAGIC_V1: &[u8; 8] = b"KNKVEC01";
const MAGIC_V2: &[u8; 8] = b"KNKVEC02";
const HEADER: u64 = 16;

/// How reference vectors are stored (config key `index.storage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// 4 bytes per value: exact.
    F32,
    /// 1 byte per value plus a 4-byte scale per row: a quarter of the memory, similarities within
    /// about 0.002 of float32 (BENCHMARKS-search.md).
    #[default]
    Int8,
}

impl Storage {
    /// Bytes of one row of `dim` values.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Storage::F32 => dim * 4,
            Storage::Int8 => dim + 4,
        }
    }

    fn code(self) -> u32 {
        match self {
            Storage::F32 => 0,
            Storage::Int8 => 1,
        }
    }
}

/// Handle on the embedding file of a data directory.
#[derive(Debug, Clone)]
pub struct VectorFile {
    path: PathBuf,
    dim: usize,
    storage: Storage,
}

impl VectorFile {
    /// Opens the file at `path` for vectors of `dim` values; a missing file is created with `storage`
    /// (an existing file keeps the storage it was written with).
    pub fn open(path: &Path, dim: usize, storage: Storage) -> Result<VectorFile> {
        if !path.exists() {
            write_atomic_rows(path, dim, storage, &[])?;
        }
        let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut header = [0u8; HEADER as usize];
        f.read_exact(&mut header).with_context(|| format!("{} is truncated", path.display()))?;
        let file_dim = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let kind = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let storage = if &header[..8] == MAGIC_V1 {
            Storage::F32
        } else if &header[..8] == MAGIC_V2 {
            match kind {
                0 => Storage::F32,
                1 => Storage::Int8,
                k => bail!(
                    "{} has an unknown storage kind {k} (written by a newer knockoff?)",
                    path.display()
                ),
            }
        } else {
            bail!("{} is not a knockoff vector file (bad magic)", path.display());
        };
        if file_dim != dim {
            bail!("{} holds {file_dim}-d vectors but the model gives {dim}-d", path.display());
        }
        Ok(VectorFile { path: path.to_path_buf(), dim, storage })
    }

    /// How the rows are stored.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// Reads the first `count` rows as float32 values (int8 rows are scaled back).
    pub fn read(&self, count: usize) -> Result<Vec<f32>> {
        let mut f = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        f.seek(SeekFrom::Start(HEADER))?;
        let mut bytes = vec![0u8; count * self.storage.row_bytes(self.dim)];
        f.read_exact(&mut bytes).with_context(|| {
            format!("{} holds fewer than the {count} committed vectors", self.path.display())
        })?;
        Ok(Rows::from_bytes(self.dim, self.storage, count, bytes).to_f32())
    }

    /// Memory-maps the first `count` rows (a file that is too short is an error).
    pub fn map(&self, count: usize) -> Result<Rows> {
        let f = File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        let need = HEADER as usize + count * self.storage.row_bytes(self.dim);
        let len = f.metadata()?.len() as usize;
        if len < need {
            bail!("{} holds fewer than the {count} committed vectors", self.path.display());
        }
        if count == 0 || cfg!(target_endian = "big") {
            return self.read(count).map(|v| Rows::from_f32(self.dim, v));
        }
        // SAFETY: the catalog never rewrites committed rows in place: appends go past them, and
        // compaction writes a new file and renames it. A file cut shorter by another process would
        // be a bug elsewhere (and would raise SIGBUS, not corrupt memory).
        let map = unsafe {
            memmap2::MmapOptions::new().offset(HEADER).len(need - HEADER as usize).map(&f)
        }
        .with_context(|| format!("cannot map {}", self.path.display()))?;
        Ok(Rows { dim: self.dim, count, storage: self.storage, data: Backing::Mapped(map) })
    }

    /// Cuts the file back to `committed` rows and appends `rows` (a multiple of `dim` float values,
    /// stored as the file stores them), synced to disk; the caller then commits the new count.
    pub fn append(&self, committed: usize, rows: &[f32]) -> Result<()> {
        if !rows.len().is_multiple_of(self.dim) {
            bail!("internal error: appending a partial vector");
        }
        let mut f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {} for writing", self.path.display()))?;
        let end = HEADER + (committed * self.storage.row_bytes(self.dim)) as u64;
        f.set_len(end)?;
        f.seek(SeekFrom::Start(end))?;
        f.write_all(&encode(self.dim, self.storage, rows))?;
        f.sync_all().with_context(|| format!("cannot sync {}", self.path.display()))?;
        Ok(())
    }
}

/// Encodes float rows as `storage` stores them.
fn encode(dim: usize, storage: Storage, rows: &[f32]) -> Vec<u8> {
    match storage {
        Storage::F32 => rows.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Storage::Int8 => {
            let mut out = Vec::with_capacity(rows.len() / dim.max(1) * (dim + 4));
            for row in rows.chunks_exact(dim.max(1)) {
                let (scale, ints) = quantize(row);
                out.extend_from_slice(&scale.to_le_bytes());
                out.extend(ints.iter().map(|&i| i as u8));
            }
            out
        }
    }
}

/// Int8 form of a row: the scale and the integers (the largest magnitude becomes ±127).
pub fn quantize(row: &[f32]) -> (f32, Vec<i8>) {
    let max = row.iter().fold(0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
    if max == 0.0 {
        return (0.0, vec![0; row.len()]);
    }
    let mult = 127.0 / max;
    let ints = row.iter().map(|v| (v * mult).round().clamp(-127.0, 127.0) as i8).collect();
    (max / 127.0, ints)
}

/// Writes a complete vector file (version 2 header) aside and renames it over `path`.
pub fn write_atomic_rows(path: &Path, dim: usize, storage: Storage, rows: &[f32]) -> Result<()> {
    let mut bytes =
        Vec::with_capacity(HEADER as usize + rows.len() / dim.max(1) * storage.row_bytes(dim));
    bytes.extend_from_slice(MAGIC_V2);
    bytes.extend_from_slice(&(dim as u32).to_le_bytes());
    bytes.extend_from_slice(&storage.code().to_le_bytes());
    bytes.extend_from_slice(&encode(dim, storage, rows));
    crate::util::fsutil::write_atomic(path, &bytes)
}

enum Backing {
    F32(Vec<f32>),
    Bytes(Vec<u8>),
    Mapped(memmap2::Mmap),
}

/// Rows of reference vectors in memory or memory-mapped: float32 or int8 with a per-row scale.
pub struct Rows {
    dim: usize,
    count: usize,
    storage: Storage,
    data: Backing,
}

/// One row as stored.
pub enum Row<'a> {
    /// Float values.
    F32(&'a [f32]),
    /// Scale and integers.
    Int8(f32, &'a [i8]),
}

impl Rows {
    /// Float rows held in memory (`values.len()` a multiple of `dim`).
    pub fn from_f32(dim: usize, values: Vec<f32>) -> Rows {
        let dim = dim.max(1);
        Rows { dim, count: values.len() / dim, storage: Storage::F32, data: Backing::F32(values) }
    }

    /// Rows stored as `storage`, held in memory (quantised when `storage` is int8).
    pub fn new(dim: usize, storage: Storage, values: Vec<f32>) -> Rows {
        match storage {
            Storage::F32 => Rows::from_f32(dim, values),
            Storage::Int8 => {
                let dim = dim.max(1);
                let count = values.len() / dim;
                Rows { dim, count, storage, data: Backing::Bytes(encode(dim, storage, &values)) }
            }
        }
    }

    fn from_bytes(dim: usize, storage: Storage, count: usize, bytes: Vec<u8>) -> Rows {
        match storage {
            Storage::F32 => {
                let v = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Rows::from_f32(dim, v)
            }
            Storage::Int8 => Rows { dim, count, storage, data: Backing::Bytes(bytes) },
        }
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How the rows are stored.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// Bytes the rows take (in memory or in the mapped file).
    pub fn bytes(&self) -> usize {
        self.count * self.storage.row_bytes(self.dim)
    }

    fn raw(&self) -> &[u8] {
        match &self.data {
            Backing::F32(_) => &[],
            Backing::Bytes(b) => b,
            Backing::Mapped(m) => m,
        }
    }

    /// All float rows as one slice (float storage only; `None` for int8).
    pub fn as_f32(&self) -> Option<&[f32]> {
        match (&self.data, self.storage) {
            (Backing::F32(v), _) => Some(v),
            (_, Storage::F32) => {
                let raw = &self.raw()[..self.count * self.dim * 4];
                // SAFETY: any bit pattern is a valid f32; `align_to` only yields the aligned middle,
                // and the file is little endian like this target (big endian targets decode in `map`).
                let (pre, mid, post) = unsafe { raw.align_to::<f32>() };
                (pre.is_empty() && post.is_empty()).then_some(mid)
            }
            _ => None,
        }
    }

    /// All int8 rows as one byte slice, `dim + 4` bytes per row (an f32 scale, then the integers);
    /// `None` for float storage.
    pub fn as_int8_bytes(&self) -> Option<&[u8]> {
        match self.storage {
            Storage::Int8 => Some(&self.raw()[..self.count * (self.dim + 4)]),
            Storage::F32 => None,
        }
    }

    /// Row `i` as stored (`i < len()`).
    pub fn row(&self, i: usize) -> Row<'_> {
        match self.storage {
            Storage::F32 => match self.as_f32() {
                Some(all) => Row::F32(&all[i * self.dim..(i + 1) * self.dim]),
                None => Row::F32(&[]),
            },
            Storage::Int8 => {
                let rb = self.dim + 4;
                let r = &self.raw()[i * rb..(i + 1) * rb];
                let scale = f32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                // SAFETY: i8 and u8 have the same size and alignment.
                let ints =
                    unsafe { std::slice::from_raw_parts(r[4..].as_ptr() as *const i8, self.dim) };
                Row::Int8(scale, ints)
            }
        }
    }

    /// Row `i` as float values.
    pub fn row_f32(&self, i: usize) -> Vec<f32> {
        match self.row(i) {
            Row::F32(v) => v.to_vec(),
            Row::Int8(s, ints) => ints.iter().map(|&x| x as f32 * s).collect(),
        }
    }

    /// All rows as float values.
    pub fn to_f32(&self) -> Vec<f32> {
        if let Some(v) = self.as_f32() {
            return v.to_vec();
        }
        let mut out = Vec::with_capacity(self.count * self.dim);
        for i in 0..self.count {
            out.extend(self.row_f32(i));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_1_and_round_trips_both_storages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows: Vec<f32> = (0..3 * 8).map(|i| ((i * 37 % 11) as f32 - 5.0) / 10.0).collect();
        // a version 1 file, as written before
        let v1 = dir.path().join("v1.f32");
        let mut bytes = b"KNKVEC01".to_vec();
        bytes.extend_from_slice(&8u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend(rows.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(&v1, bytes).expect("write");
        let f = VectorFile::open(&v1, 8, Storage::Int8).expect("open v1");
        assert_eq!(f.storage(), Storage::F32);
        assert_eq!(f.read(3).expect("read"), rows);
        assert_eq!(f.map(3).expect("map").to_f32(), rows);
        assert!(f.map(4).is_err());
        for storage in [Storage::F32, Storage::Int8] {
            let p = dir.path().join(format!("{storage:?}.f32"));
            let f = VectorFile::open(&p, 8, storage).expect("create");
            f.append(0, &rows[..8]).expect("append");
            f.append(1, &rows[8..]).expect("append");
            let back = VectorFile::open(&p, 8, Storage::F32)
                .expect("reopen")
                .map(3)
                .expect("map")
                .to_f32();
            for (a, b) in back.iter().zip(&rows) {
                assert!((a - b).abs() <= 0.5 / 127.0 + 1e-6, "{storage:?}: {a} vs {b}");
            }
        }
    }
}
