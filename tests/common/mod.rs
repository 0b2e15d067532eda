//! Helpers for the integration tests: run the real `knockoff` binary with the real model on the
//! bundled test data.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The repository root (tests run the binary from here so it finds `models/`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a file under `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    root().join("testdata").join(rel)
}

/// Fails with the install command when the model has not been fetched.
pub fn require_models() {
    let m = root().join("models/sscd.onnx");
    assert!(
        m.is_file(),
        "{} is missing: run `bash models/fetch.sh` first (the README's test command does)",
        m.display()
    );
}

/// A `knockoff` command on data directory `data`, run from the repository root.
pub fn cmd(data: &Path) -> Command {
    require_models();
    let mut c = Command::new(env!("CARGO_BIN_EXE_knockoff"));
    c.current_dir(root())
        .arg("--data")
        .arg(data)
        .env_remove("KNOCKOFF_CONFIG")
        .env("NO_COLOR", "1");
    c
}

/// Runs `knockoff --data DATA ARGS...` and returns its output.
pub fn run(data: &Path, args: &[&str]) -> Output {
    cmd(data).args(args).stdin(Stdio::null()).output().expect("run knockoff")
}

/// Runs and asserts the exit code, returning stdout.
pub fn run_ok(data: &Path, args: &[&str], code: i32) -> String {
    let out = run(data, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "knockoff {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Parses JSON Lines output into (listing id or `line N`) → verdict object, checking no duplicates.
pub fn verdicts(jsonl: &str) -> HashMap<String, Value> {
    let mut map = HashMap::new();
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
        let key = v["listing_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("line {}", v["line"]));
        assert!(map.insert(key.clone(), v).is_none(), "duplicate verdict for {key}");
    }
    map
}

/// The listing ids of JSON Lines output, in order.
pub fn ids(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["listing_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// The expected verdicts of the bundled listings (`testdata/expected.json`).
pub fn expected() -> HashMap<String, Value> {
    let text = std::fs::read_to_string(testdata("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A data directory with the bundled catalog added, and an optional config file in it.
pub fn catalog_with(config: Option<&str>) -> tempfile::TempDir {
    let dir = tempdir();
    if let Some(c) = config {
        std::fs::write(dir.path().join("config.toml"), c).expect("write config");
    }
    let csv = testdata("catalog.csv");
    run_ok(dir.path(), &["catalog", "add", csv.to_str().unwrap()], 0);
    dir
}
