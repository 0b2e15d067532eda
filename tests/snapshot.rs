//! Catalog snapshots: `knockoff catalog snapshot OUT` and scans with `--data OUT`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Every file below `dir` (relative name → bytes), and its directories.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read snapshot dir") {
        let path = e.expect("entry").path();
        let rel = path.strip_prefix(dir).expect("below").to_path_buf();
        if path.is_dir() {
            out.insert(rel.join(""), Vec::new());
            for (k, v) in contents(&path) {
                out.insert(rel.join(k), v);
            }
        } else {
            out.insert(rel, std::fs::read(&path).expect("read file"));
        }
    }
    out
}

/// A writable copy of a snapshot (to damage it).
fn copy_of(snapshot: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for (name, bytes) in contents(snapshot) {
        std::fs::write(to.join(name), bytes).expect("copy");
    }
}

fn stderr_of(data: &Path, args: &[&str], code: i32) -> String {
    let out = run(data, args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "knockoff {args:?}: {err}");
    err
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn a_snapshot_scans_like_its_catalog_and_is_never_written() {
    let data = catalog_with(Some("[index]\nhnsw_min_images = 1\n"));
    let tmp = tempdir();
    let snap = tmp.path().join("snap");
    let snap_s = snap.to_str().unwrap();
    let err = stderr_of(data.path(), &["catalog", "snapshot", snap_s], 0);
    assert!(err.contains("snapshot of") && err.contains("model sscd_distilled"), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(snap.join("snapshot.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "knockoff-catalog-snapshot");
    assert_eq!(manifest["version"], 1);
    assert_eq!(manifest["model"]["name"], "sscd_distilled");
    let names: Vec<&str> =
        manifest["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"catalog.sqlite") && names.contains(&"config.toml"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("vectors-"))
            && names.iter().any(|n| n.starts_with("graph-")),
        "{names:?}"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&snap), 0o555, "the snapshot directory is read-only");
        for n in names.iter().chain(["snapshot.json"].iter()) {
            assert_eq!(mode(&snap.join(n)), 0o444, "{n} is read-only");
        }
    }
    let before = contents(&snap);
    let listings = testdata("listings.jsonl");
    let listings = listings.to_str().unwrap();
    for extra in [&[][..], &["--verify"][..]] {
        let args: Vec<&str> =
            ["scan", listings, "--json"].iter().copied().chain(extra.iter().copied()).collect();
        let from_data = run_ok(data.path(), &args, 3);
        let from_snap = run_ok(&snap, &args, 3);
        assert_eq!(
            from_data, from_snap,
            "a snapshot gives the verdicts of its catalog ({extra:?})"
        );
    }
    let stats = run_ok(&snap, &["catalog", "stats", "--json"], 0);
    assert!(stats.contains("\"products\""), "{stats}");
    assert_eq!(
        contents(&snap),
        before,
        "a scan on a snapshot changes nothing in it (no file written, none created)"
    );
    // writes are refused, and so is overwriting a snapshot
    let err = stderr_of(&snap, &["catalog", "add", testdata("catalog.csv").to_str().unwrap()], 1);
    assert!(err.contains("is a catalog snapshot, which is read-only"), "{err}");
    let err = stderr_of(data.path(), &["catalog", "snapshot", snap_s], 1);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(contents(&snap), before);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o755))
            .expect("let the temporary directory be removed");
    }
}

#[test]
fn a_snapshot_refuses_another_model_and_damaged_files() {
    let data = catalog_with(None);
    let tmp = tempdir();
    let snap = tmp.path().join("snap");
    run_ok(data.path(), &["catalog", "snapshot", snap.to_str().unwrap()], 0);
    let listings = testdata("listings.jsonl");
    let listings = listings.to_str().unwrap();
    // another model by name
    let err = stderr_of(&snap, &["--model", "sscd", "scan", listings], 1);
    assert!(
        err.contains("was built with model \"sscd_distilled\"") && err.contains("sscd"),
        "{err}"
    );
    // the same manifest with another model file (a shipped file that differs)
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(root().join("models/sscd_distilled.toml"), models.join("sscd_distilled.toml"))
        .unwrap();
    std::fs::copy(root().join("models/sscd.onnx"), models.join("sscd_distilled.onnx")).unwrap();
    for e in std::fs::read_dir(root().join("models")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("libonnxruntime") {
            std::fs::copy(&p, models.join(p.file_name().unwrap())).unwrap();
        }
    }
    let err = stderr_of(&snap, &["--models-dir", models.to_str().unwrap(), "scan", listings], 1);
    assert!(err.contains("ship the model file the snapshot was made with"), "{err}");
    // a changed byte, a missing file
    let damaged = tmp.path().join("damaged");
    copy_of(&snap, &damaged);
    let vectors = std::fs::read_dir(&damaged)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".f32"))
        .unwrap();
    let mut bytes = std::fs::read(&vectors).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&vectors, &bytes).unwrap();
    let err = stderr_of(&damaged, &["scan", listings], 1);
    assert!(err.contains("is damaged") && err.contains("checksum mismatch"), "{err}");
    std::fs::remove_file(&vectors).unwrap();
    let err = stderr_of(&damaged, &["scan", listings], 1);
    assert!(err.contains("is incomplete") && err.contains("is missing"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o755))
            .expect("let the temporary directory be removed");
    }
}
