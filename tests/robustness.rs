//! Hostile and careless input through the real binary (issue 21): an output that is the input,
//! text that would forge the terminal, closed pipes, `--quiet`, a reference price of 0, commands
//! that must not create a catalog, files in the wrong encoding or separator.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

/// Text a counterfeiter would put in a listing or catalog to forge the screen and the logs: an
/// escape sequence that sets the terminal's title, one that clears it, a newline that starts a
/// fake log line, a carriage return, a bidirectional override.
const HOSTILE: &str = "x\x1b]0;pwned\x07\x1b[2J\nknockoff: all clear\r\u{202e}gpj";
/// How `HOSTILE` is shown.
const SHOWN: &str = "x\\x1b]0;pwned\\x07\\x1b[2J\\nknockoff: all clear\\r\\u{202e}gpj";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Nothing in `text` that a terminal would act on: no escape, no carriage return, no override,
/// and no line that begins with the forged log line.
fn assert_inert(text: &str, what: &str) {
    assert!(
        !text.contains(['\x1b', '\r', '\x07', '\u{202e}']),
        "{what} has raw control characters: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("knockoff: all clear")),
        "{what} has a forged line: {text:?}"
    );
}

fn jsonl(path: &Path, records: &[serde_json::Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn listing(id: &str, seller: &str, image: &Path) -> serde_json::Value {
    serde_json::json!({"listing_id": id, "seller_id": seller, "price": 10, "currency": "EUR", "images": [image], "title": id})
}

#[test]
fn scan_refuses_to_write_its_verdicts_over_its_input() {
    let dir = tempdir();
    let input = dir.path().join("listings.jsonl");
    let l1 = listing("L1", "s", &testdata("listings/L001-copy-crop.jpg"));
    jsonl(&input, &[l1.clone(), listing("L2", "s", &testdata("listings/L002-copy-crop-hard.jpg"))]);
    let before = std::fs::read(&input).unwrap();
    let symlink = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&input, &symlink).unwrap();
    let hardlink = dir.path().join("hard.jsonl");
    std::fs::hard_link(&input, &hardlink).unwrap();
    let data = dir.path().join("no-catalog-needed");
    let inp = input.to_str().unwrap();
    for (out, resume) in [
        (inp, false),
        (symlink.to_str().unwrap(), false),
        (symlink.to_str().unwrap(), true),
        (hardlink.to_str().unwrap(), true),
    ] {
        let mut args = vec!["scan", inp, "-o", out];
        if resume {
            args.push("--resume");
        }
        let o = run(&data, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("is the input")
                && stderr(&o).contains("write the verdicts to another file"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read(&input).unwrap(), before, "{args:?} left the input as it was");
    }
    // standard input redirected from the output file
    let o = cmd(&data)
        .args(["scan", "-", "-o", inp])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("is the input read from standard input"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&input).unwrap(), before);
    assert!(!data.exists(), "nothing created");
}

#[test]
fn hostile_text_is_shown_escaped_in_every_table_and_message_and_exact_in_json() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let img = testdata("catalog/acme/acme-diver_1.jpg");
    let catalog = dir.path().join("catalog.jsonl");
    let missing = dir.path().join(format!("missing{HOSTILE}.jpg"));
    jsonl(
        &catalog,
        &[
            serde_json::json!({"brand": format!("Acme{HOSTILE}"), "product_id": format!("diver{HOSTILE}"), "title": format!("Diver{HOSTILE}"),
                "price": 300, "currency": "EUR", "images": [img], "authorized_sellers": [HOSTILE]}),
            serde_json::json!({"brand": "Acme", "product_id": "other", "title": "t", "price": 3, "currency": "EUR", "images": [missing]}),
        ],
    );
    let add = run(&data, &["catalog", "add", catalog.to_str().unwrap()]);
    assert_eq!(add.status.code(), Some(3), "{}", stderr(&add));
    assert_inert(&stderr(&add), "catalog add's messages");
    assert!(stderr(&add).contains(&format!("missing{SHOWN}.jpg")), "{}", stderr(&add));

    let list = run_ok(&data, &["catalog", "list"], 0);
    assert_inert(&list, "catalog list");
    assert!(
        list.contains(&format!("Acme{SHOWN}")) && list.contains(&format!("Diver{SHOWN}")),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(run_ok(&data, &["catalog", "list", "--json"], 0).trim()).unwrap();
    assert_eq!(json["title"], format!("Diver{HOSTILE}"), "JSON keeps the text exact");

    let query =
        run_ok(&data, &["query", img.to_str().unwrap(), "--price", "10", "--currency", "EUR"], 0);
    assert_inert(&query, "query's explanation");
    assert!(query.contains(&format!("diver{SHOWN}")), "{query}");

    let listings = dir.path().join("listings.jsonl");
    jsonl(
        &listings,
        &[
            listing(&format!("L1{HOSTILE}"), &format!("seller{HOSTILE}"), &img),
            listing(&format!("L2{HOSTILE}"), "s", &missing),
        ],
    );
    let table = run(&data, &["scan", listings.to_str().unwrap(), "--table"]);
    let out = String::from_utf8_lossy(&table.stdout);
    assert_inert(&out, "scan --table");
    assert!(
        out.contains(&format!("L1{SHOWN}")) && out.contains(&format!("seller{SHOWN}")),
        "{out}"
    );
    assert_inert(&stderr(&table), "scan's per-record errors");
    assert!(stderr(&table).contains(&format!("listing L2{SHOWN}")), "{}", stderr(&table));
    let scanned = run(&data, &["scan", listings.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&scanned.stdout).lines().next().unwrap())
            .unwrap();
    assert_eq!(v["listing_id"], format!("L1{HOSTILE}"), "JSON keeps the text exact");
    assert_eq!(v["seller"]["seller_id"], format!("seller{HOSTILE}"));

    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, format!("listing_id,label\n\"L{HOSTILE}\",counterfeit\n")).unwrap();
    let cal = run(&data, &["calibrate", labels.to_str().unwrap()]);
    assert_inert(&stderr(&cal), "calibrate's messages");
    assert!(stderr(&cal).contains(&format!("listing L{SHOWN} has no `image`")), "{}", stderr(&cal));

    let fatal = run(&data, &["scan", &format!("no-such{HOSTILE}.jsonl")]);
    assert_eq!(fatal.status.code(), Some(1));
    assert_inert(&stderr(&fatal), "a fatal error");
    assert!(stderr(&fatal).contains(&format!("no-such{SHOWN}.jsonl")), "{}", stderr(&fatal));
}

/// Runs `knockoff ARGS` with standard output a pipe whose reader has already gone away.
fn with_closed_stdout(data: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_pipe_ends_every_command_quietly() {
    let data = catalog_with(None);
    let d = data.path();
    let listings = testdata("listings.jsonl");
    let img = testdata("listings/L001-copy-crop.jpg");
    for args in [
        vec!["config"],
        vec!["catalog", "stats"],
        vec!["catalog", "stats", "--json"],
        vec!["catalog", "list"],
        vec!["catalog", "list", "--json"],
        vec!["query", img.to_str().unwrap()],
        vec!["query", img.to_str().unwrap(), "--json"],
        vec!["scan", listings.to_str().unwrap()],
        vec!["scan", listings.to_str().unwrap(), "--table"],
    ] {
        let o = with_closed_stdout(d, &args);
        assert_eq!(o.status.code(), Some(0), "knockoff {args:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("panicked") && !stderr(&o).contains("Broken pipe"),
            "knockoff {args:?}: {}",
            stderr(&o)
        );
    }
    // `| head -1`: the reader takes one line and goes
    let mut child = cmd(d)
        .args(["scan", listings.to_str().unwrap(), "--chunk", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(first.contains("L001-copy-crop"), "{first}");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Broken pipe"), "{}", stderr(&o));
}

#[test]
fn catalog_add_quiet_price_0_and_commands_that_must_not_create_a_catalog() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // maintenance and read commands on a data directory that does not exist
    for args in [
        vec!["catalog", "compact"],
        vec!["catalog", "remove", "Acme"],
        vec!["catalog", "background", "clear"],
        vec!["catalog", "list"],
        vec!["catalog", "stats"],
    ] {
        let o = run(&data, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no catalog in"), "{args:?}: {}", stderr(&o));
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    let catalog = dir.path().join("catalog.jsonl");
    let img = testdata("catalog/acme/acme-diver_1.jpg");
    jsonl(
        &catalog,
        &[
            serde_json::json!({"brand": "Acme", "product_id": "free", "title": "t", "price": 0, "currency": "EUR", "images": [img]}),
            serde_json::json!({"brand": "Acme", "product_id": "diver", "title": "t", "price": 300, "currency": "EUR", "images": [img]}),
            serde_json::json!({"brand": "Acme", "product_id": "bad", "title": "t", "price": 3, "currency": "EUR", "images": ["missing.jpg"]}),
        ],
    );
    let quiet = run(&data, &["-q", "catalog", "add", catalog.to_str().unwrap()]);
    assert_eq!(quiet.status.code(), Some(3));
    assert_eq!(stderr(&quiet), "", "--quiet: nothing on stderr but fatal errors");
    let loud = run(&data, &["catalog", "add", catalog.to_str().unwrap()]);
    assert_eq!(loud.status.code(), Some(3));
    assert!(
        stderr(&loud).contains("catalog.jsonl:1: field `price` must be above 0"),
        "{}",
        stderr(&loud)
    );
    let listed = run_ok(&data, &["catalog", "list", "--json"], 0);
    assert!(!listed.contains("\"free\"") && listed.contains("\"diver\""), "{listed}");
    let compact = run(&data, &["-q", "catalog", "compact"]);
    assert_eq!(
        (compact.status.code(), stderr(&compact).as_str()),
        (Some(0), ""),
        "compact is quiet with -q"
    );
}

/// A kill during the very first `catalog add` can leave `catalog.sqlite` with nothing committed
/// (SQLite has created the file, the schema was not committed yet): that is no catalog, said
/// plainly by the commands that read or change one, and the next `catalog add` starts it again.
#[test]
fn a_catalog_file_never_committed_to_is_no_catalog() {
    let dir = tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("catalog.sqlite"), b"").unwrap();
    for args in [
        vec!["catalog", "stats"],
        vec!["catalog", "list"],
        vec!["catalog", "compact"],
        vec!["catalog", "remove", "Acme"],
    ] {
        let o = run(&data, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.starts_with("knockoff: error: no catalog in") && err.contains("run it again"),
            "{args:?}: {err}"
        );
    }
    require_models();
    let catalog = testdata("catalog.csv");
    run_ok(&data, &["-q", "catalog", "add", catalog.to_str().unwrap()], 0);
    let stats = run_ok(&data, &["catalog", "stats"], 0);
    assert!(stats.contains("products:         9 live"), "{stats}");
}

#[test]
fn listings_in_utf16_or_with_a_byte_order_mark_or_semicolons() {
    let data = catalog_with(None);
    let dir = tempdir();
    let img = testdata("listings/L001-copy-crop.jpg");
    let line = listing("L1", "shady", &img).to_string();
    let bom = dir.path().join("bom.jsonl");
    std::fs::write(&bom, format!("\u{feff}{line}\n")).unwrap();
    let out = run_ok(data.path(), &["scan", bom.to_str().unwrap()], 0);
    assert_eq!(verdicts(&out)["L1"]["verdict"], "flag", "the first record is read");

    let utf16 = dir.path().join("utf16.jsonl");
    let mut bytes = vec![0xff, 0xfe];
    for u in format!("{line}\n{line}\n{line}\n").encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).unwrap();
    let o = run(data.path(), &["scan", utf16.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).trim().lines().count(), 1, "one message: {}", stderr(&o));
    assert!(
        stderr(&o).contains("UTF-16") && stderr(&o).contains("save it as UTF-8"),
        "{}",
        stderr(&o)
    );

    let csv = dir.path().join("excel.csv");
    let text = format!(
        "listing_id;seller_id;price;currency;images;title\r\nL1;shady;10;EUR;{};\"Runner\r\nPro; new\"\r\nL2;shady;10;EUR;{};plain\r\n",
        img.display(),
        img.display()
    );
    std::fs::write(&csv, text).unwrap();
    let out = run_ok(data.path(), &["scan", csv.to_str().unwrap()], 0);
    let got = verdicts(&out);
    assert_eq!((got["L1"]["line"].as_u64(), got["L2"]["line"].as_u64()), (Some(2), Some(4)));
    assert_eq!(got["L1"]["title"], "Runner\nPro; new");
    assert_eq!(got["L2"]["verdict"], "flag");
}
