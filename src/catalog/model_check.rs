//! Which model a catalog's embeddings were made with, checked against the model a command loads
//! (its manifest, and for a snapshot the model file's bytes).

use anyhow::{bail, Result};

use super::snapshot::{self, SnapshotManifest};
use super::store::{ModelStamp, Store};
use crate::model::Manifest;

impl ModelStamp {
    /// The stamp of the model `manifest` describes.
    pub fn of(manifest: &Manifest) -> ModelStamp {
        ModelStamp {
            name: manifest.name.clone(),
            sha256: manifest.sha256.clone(),
            preprocessing: manifest.preprocessing(),
            dim: manifest.dim,
        }
    }
}

impl Store {
    /// Fails when the catalog was built with a different model than `manifest`, or, for a
    /// snapshot, when the model file is not the one it was made with.
    pub fn check_model(&self, manifest: &Manifest) -> Result<()> {
        self.check_stamp(&ModelStamp::of(manifest))?;
        if let Some(m) = self.snapshot() {
            check_snapshot_model(self.dir(), m, manifest)?;
        }
        Ok(())
    }
}

/// Checks the model file a scan loads against the model a snapshot was made with: same name and
/// the ONNX file's bytes have the recorded sha256 (a shipped model file that differs is refused).
fn check_snapshot_model(
    dir: &std::path::Path,
    m: &SnapshotManifest,
    model: &Manifest,
) -> Result<()> {
    let Some(rec) = &m.model else { return Ok(()) };
    if rec.name != model.name || rec.sha256 != model.sha256 {
        bail!(
            "the catalog snapshot {} was made with model {:?} (ONNX sha256 {}); this scan loads {:?} (sha256 {}). Use --model {} with its model file, or take a snapshot of a catalog built with {:?}",
            dir.display(),
            rec.name,
            rec.sha256,
            model.name,
            model.sha256,
            rec.name,
            model.name
        );
    }
    let path = model.model_path();
    let sha = snapshot::hash_file(&path)?;
    if sha != rec.sha256 {
        bail!(
            "the model file {} has sha256 {sha}, but the catalog snapshot {} was made with model {:?} whose file has sha256 {}: ship the model file the snapshot was made with",
            path.display(),
            dir.display(),
            rec.name,
            rec.sha256
        );
    }
    Ok(())
}
