//! Terminal manners (as ripgrep has them): `--color auto|always|never` with `NO_COLOR`, and an
//! input read once when no progress bar is shown (a FIFO can be read only once).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

const ESC: char = '\x1b';

/// `knockoff --data DATA ARGS...` with `NO_COLOR` as given (`None`: unset), output piped.
fn run_env(data: &Path, args: &[&str], no_color: Option<&str>) -> Output {
    let mut c = cmd(data);
    c.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    c.args(args).stdin(Stdio::null()).output().expect("run knockoff")
}

fn stdout_ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// `script` (util-linux) runs a command on a pseudo-terminal; `None` when it is not installed.
fn script() -> Option<&'static str> {
    let found = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: `script` (util-linux) is not installed, no pseudo-terminal to test on");
    }
    found.then_some("script")
}

/// Runs `knockoff --data DATA ARGS...` with stdout and stderr on a pseudo-terminal (through
/// `script`), `NO_COLOR` as given; returns what the terminal showed.
fn on_terminal(script: &str, data: &Path, args: &[&str], no_color: Option<&str>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = vec![quote(env!("CARGO_BIN_EXE_knockoff")), "--data".into()];
    line.push(quote(data.to_str().expect("utf-8 path")));
    line.extend(args.iter().map(|a| quote(a)));
    let line = line.join(" ");
    let mut c = Command::new(script);
    c.current_dir(root()).args(["-qec", &line, "/dev/null"]);
    c.env_remove("KNOCKOFF_CONFIG").env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    // the exit code is knockoff's (3 when some listings had errors): callers check what it wrote
    let out = c.stdin(Stdio::null()).output().expect("run script");
    assert!(out.status.code().is_some(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn color_always_paints_a_table_into_a_pipe_never_and_auto_do_not() {
    let data = catalog_with(None);
    let csv = testdata("listings.csv");
    let scan = |color: &str, no_color: Option<&str>| {
        let args = ["--color", color, "scan", csv.to_str().unwrap(), "--table"];
        stdout_ok(&run_env(data.path(), &args, no_color))
    };
    let always = scan("always", None);
    assert!(always.contains("\x1b[1;31mFLAG"), "a flag in bold red:\n{always:?}");
    assert!(always.contains("\x1b[0m"), "{always:?}");
    assert_eq!(scan("always", Some("1")), always, "--color always wins over NO_COLOR");
    for (color, no_color) in [("never", None), ("auto", None), ("never", Some("1"))] {
        let plain = scan(color, no_color);
        assert!(!plain.contains(ESC), "--color {color} into a pipe:\n{plain:?}");
        assert!(plain.contains("\nFLAG "), "{plain}");
        assert_eq!(plain.lines().count(), always.lines().count(), "same rows");
    }
    // the same decision for `query`'s explanation
    let img = testdata("listings/L004-copy-text-sale.jpg");
    let q = |color: &str| {
        let args = [
            "--color",
            color,
            "query",
            img.to_str().unwrap(),
            "--price",
            "30",
            "--currency",
            "EUR",
        ];
        stdout_ok(&run_env(data.path(), &args, None))
    };
    assert!(q("always").starts_with("verdict: \x1b[1;31mFLAG"), "{:?}", q("always"));
    assert!(q("auto").starts_with("verdict: FLAG"));
    assert!(!q("never").contains(ESC));
}

#[test]
fn auto_colours_a_terminal_unless_no_color_is_set() {
    let Some(script) = script() else { return };
    let data = catalog_with(None);
    let img = testdata("listings/L004-copy-text-sale.jpg");
    let img = img.to_str().unwrap();
    let show = |color: &str, no_color: Option<&str>| {
        let args =
            ["--quiet", "--color", color, "query", img, "--price", "30", "--currency", "EUR"];
        on_terminal(script, data.path(), &args, no_color)
    };
    let auto = show("auto", None);
    assert!(auto.starts_with("verdict: \x1b[1;31mFLAG"), "a terminal is coloured: {auto:?}");
    let no_color = show("auto", Some("1"));
    assert!(no_color.starts_with("verdict: FLAG"), "NO_COLOR is honoured: {no_color:?}");
    assert!(!no_color.contains(ESC), "{no_color:?}");
    assert!(!show("never", None).contains(ESC), "--color never on a terminal");
    assert!(show("always", Some("1")).contains("\x1b[1;31mFLAG"));
}

/// A FIFO in a temporary directory, fed `text` by a thread once a reader opens it.
struct Fifo {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Fifo {
    fn new(name: &str, text: String) -> Fifo {
        let dir = tempdir();
        let path = dir.path().join(name);
        let made = Command::new("mkfifo").arg(&path).status().expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
        let p = path.clone();
        let writer = std::thread::spawn(move || {
            // blocks until the reader opens the FIFO; fails (ignored) when the reader is gone
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                use std::io::Write;
                let _ = f.write_all(text.as_bytes());
            }
        });
        Fifo { _dir: dir, path, writer: Some(writer) }
    }

    /// Waits for the writer; unblocks it first if the program never opened the FIFO.
    fn finish(mut self) {
        let w = self.writer.take().expect("writer");
        if !w.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if !w.is_finished() {
            let _ = std::fs::File::open(&self.path); // a reader, so the writer's open returns
        }
        w.join().expect("writer thread");
    }
}

/// The bundled listings as JSON Lines with absolute photo paths (a FIFO's directory is elsewhere).
fn bundled_jsonl() -> String {
    let text = std::fs::read_to_string(testdata("listings.jsonl")).expect("listings.jsonl");
    let dir = testdata("");
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                out.push_str(line); // the bundled broken lines stay broken
                out.push('\n');
                continue;
            }
        };
        if let Some(images) = v["images"].as_array_mut() {
            for i in images.iter_mut() {
                if let Some(s) = i.as_str().filter(|s| !s.contains("://")) {
                    *i = dir.join(s).to_string_lossy().into_owned().into();
                }
            }
        }
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn a_fifo_is_read_once_and_every_listing_gets_its_verdict() {
    let data = catalog_with(None);
    let text = bundled_jsonl();
    let n = text.lines().count();
    // from a file: the reference
    let file = tempdir();
    let path = file.path().join("listings.jsonl");
    std::fs::write(&path, &text).unwrap();
    let expected = run(data.path(), &["scan", path.to_str().unwrap()]);
    let want = ids(&String::from_utf8_lossy(&expected.stdout));
    assert_eq!(want.len(), n, "one verdict per line");
    // from a FIFO, no progress bar (stderr is a pipe): nothing may read it before the scan does
    let fifo = Fifo::new("listings.jsonl", text.clone());
    let out = run(data.path(), &["scan", fifo.path.to_str().unwrap()]);
    fifo.finish();
    assert_eq!(
        out.status.code(),
        expected.status.code(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ids(&String::from_utf8_lossy(&out.stdout)), want, "every listing, in input order");
    assert_eq!(out.stdout, expected.stdout, "the same verdicts as from a file");
    // with a progress bar (stderr on a terminal) the FIFO is not counted either: a spinner instead
    let Some(script) = script() else { return };
    let fifo = Fifo::new("listings.jsonl", text);
    let dest = file.path().join("verdicts.jsonl");
    let args = ["scan", fifo.path.to_str().unwrap(), "-o", dest.to_str().unwrap()];
    let shown = on_terminal(script, data.path(), &args, Some("1"));
    fifo.finish();
    let got = std::fs::read_to_string(&dest).expect("verdicts written");
    assert_eq!(ids(&got), want, "terminal showed: {shown:?}");
}
