//! The record readers under hostile input: property tests (arbitrary bytes, mutated records, valid
//! records among garbage lines) and the corpus of inputs that found bugs (`tests/corpus/records/`).
//! Bounded: every property runs a fixed number of small cases (a few seconds in all).

use std::path::Path;

use knockoff::{Format, RawRecord, RecordReader};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Reads every record of `bytes`; `Err` with the message of a fatal error (which ends the input).
fn read_all(bytes: &[u8], format: Format, max_line: usize) -> (Vec<RawRecord>, Option<String>) {
    let mut out = Vec::new();
    for r in RecordReader::new(bytes, format, max_line) {
        match r {
            Ok(rec) => out.push(rec),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    (out, None)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_time: 10_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/corpus/records/proptest-regressions.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Records come out with increasing line numbers, each within the input's lines.
fn lines_in_order(records: &[RawRecord], bytes: &[u8]) -> Result<(), TestCaseError> {
    let physical = bytes.split(|&b| b == b'\n').count();
    let mut last = 0;
    for r in records {
        prop_assert!(
            r.line > last && r.line <= physical,
            "line {} after {last} of {physical}",
            r.line
        );
        last = r.line;
    }
    Ok(())
}

/// A CSV cell written with RFC 4180 quoting when it needs it.
fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) || text.starts_with(' ') {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Valid text of a cell: printable text with commas, quotes and line breaks, not blank.
fn cell_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,\"|.;\\n\\u{e9}\\u{4e2d}-]{0,12}x".prop_map(|s| s.to_string())
}

/// A line that is not a valid record and opens no quoted field: random bytes (no line end or
/// quote), invalid UTF-8, a row of the wrong width, blanks.
fn garbage_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(
            any::<u8>().prop_filter("no line end or quote", |b| !matches!(b, b'\n' | b'"' | b'\r')),
            0..60
        ),
        Just(b"\xff\xfe broken \xc3\x28 utf-8".to_vec()),
        Just(b"only,two".to_vec()),
        Just(b"a,\"b,c\",d,e,f,g".to_vec()),
        Just(b"   ".to_vec()),
        Just(b"{\"not\": \"a listing\"".to_vec()),
        Just(b"[1,2,3]".to_vec()),
    ]
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), max in 8usize..200) {
        for format in [Format::Jsonl, Format::Csv] {
            let (records, _) = read_all(&bytes, format, max);
            lines_in_order(&records, &bytes)?;
        }
    }

    #[test]
    fn mutated_records_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        csv in any::<bool>(),
    ) {
        let valid: &[u8] = if csv {
            b"listing_id,seller_id,price,currency,images,title\nL1,s1,12.5,EUR,a.jpg|b.jpg,\"two\nlines, \"\"quoted\"\"\"\nL2,s2,3,USD,c.jpg,plain\n"
        } else {
            b"{\"listing_id\":\"L1\",\"seller_id\":\"s\",\"price\":1,\"currency\":\"EUR\",\"images\":[\"a.jpg\"]}\n{\"listing_id\":\"L2\",\"images\":[\"b.jpg\"],\"title\":\"caf\xc3\xa9\"}\n"
        };
        let mut bytes = valid.to_vec();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => { bytes.remove(i); }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        for max in [16, 4096] {
            let (records, _) = read_all(&bytes, if csv { Format::Csv } else { Format::Jsonl }, max);
            lines_in_order(&records, &bytes)?;
        }
    }

    #[test]
    fn every_valid_jsonl_record_among_garbage_is_read_at_its_line(
        entries in proptest::collection::vec(prop_oneof![cell_text().prop_map(Ok), garbage_line().prop_map(Err)], 1..30),
        crlf in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e {
                Ok(title) => {
                    let rec = serde_json::json!({"listing_id": format!("id{i}"), "title": title});
                    want.push((i + 1, format!("id{i}"), title.clone()));
                    bytes.extend_from_slice(rec.to_string().as_bytes());
                }
                Err(g) => bytes.extend_from_slice(g),
            }
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let (records, fatal) = read_all(&bytes, Format::Jsonl, 4096);
        prop_assert!(fatal.is_none() || entries[0].is_err(), "{fatal:?}");
        if fatal.is_none() {
            for (line, id, title) in &want {
                let r = records.iter().find(|r| r.line == *line);
                let f = r.and_then(|r| r.fields.as_ref().ok());
                prop_assert!(f.is_some_and(|f| f["listing_id"] == id.as_str() && f["title"] == title.as_str()), "line {line}: {r:?}");
            }
        }
    }

    #[test]
    fn every_valid_csv_record_among_garbage_is_read_at_its_first_line(
        entries in proptest::collection::vec(prop_oneof![(cell_text(), cell_text()).prop_map(Ok), garbage_line().prop_map(Err)], 1..30),
        crlf in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let mut bytes = if bom { b"\xef\xbb\xbf".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(b"listing_id,title,seller_id");
        bytes.extend_from_slice(end);
        let mut line = 2;
        let mut want = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let text = match e {
                Ok((title, seller)) => {
                    want.push((line, format!("id{i}"), title.clone(), seller.clone()));
                    format!("id{i},{},{}", csv_cell(title), csv_cell(seller)).into_bytes()
                }
                Err(g) => g.clone(),
            };
            line += text.iter().filter(|&&b| b == b'\n').count() + 1;
            bytes.extend_from_slice(&text);
            bytes.extend_from_slice(end);
        }
        let (records, fatal) = read_all(&bytes, Format::Csv, 4096);
        prop_assert!(fatal.is_none(), "{fatal:?}");
        for (line, id, title, seller) in &want {
            let r = records.iter().find(|r| r.line == *line);
            let f = r.and_then(|r| r.fields.as_ref().ok());
            prop_assert!(
                f.is_some_and(|f| f["listing_id"] == id.as_str() && f["title"] == title.as_str() && f["seller_id"] == seller.as_str()),
                "line {line}: {r:?}"
            );
        }
    }

    #[test]
    fn an_unclosed_quote_loses_only_its_own_record(
        before in 0usize..5, after in 1usize..8, max in prop_oneof![Just(64usize), Just(4096)],
    ) {
        let mut text = String::from("listing_id,title\n");
        for i in 0..before {
            text.push_str(&format!("b{i},ok\n"));
        }
        text.push_str("bad,\"never closed\n");
        for i in 0..after {
            text.push_str(&format!("a{i},fine\n"));
        }
        let (records, fatal) = read_all(text.as_bytes(), Format::Csv, max);
        prop_assert!(fatal.is_none());
        prop_assert_eq!(records.len(), before + after + 1);
        let bad = &records[before];
        prop_assert_eq!(bad.line, before + 2);
        prop_assert!(bad.fields.as_ref().is_err_and(|e| e.contains("not closed")), "{:?}", bad);
        for (k, r) in records[before + 1..].iter().enumerate() {
            prop_assert_eq!(r.line, before + 3 + k);
            prop_assert!(r.fields.as_ref().is_ok_and(|f| f["listing_id"] == format!("a{k}").as_str()), "{:?}", r);
        }
    }
}

/// One expectation of a corpus file: `LINE ok ID`, `LINE error TEXT` or `fatal TEXT`.
fn check_corpus_file(input: &Path, expect: &str) {
    let bytes = std::fs::read(input).unwrap();
    let format = Format::from_path(input);
    let (records, fatal) = read_all(&bytes, format, 4096);
    let mut got = Vec::new();
    for r in &records {
        match &r.fields {
            Ok(f) => got.push(format!(
                "{} ok {}",
                r.line,
                f.get("listing_id").and_then(|v| v.as_str()).unwrap_or("-")
            )),
            Err(e) => got.push(format!("{} error {e}", r.line)),
        }
    }
    if let Some(e) = fatal {
        got.push(format!("fatal {e}"));
    }
    let want: Vec<&str> =
        expect.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{}: got\n{}\nwant\n{}",
        input.display(),
        got.join("\n"),
        want.join("\n")
    );
    for (g, w) in got.iter().zip(&want) {
        let ok = match w
            .split_once(" error ")
            .or_else(|| w.strip_prefix("fatal ").map(|t| ("fatal", t)))
        {
            Some((head, text)) => {
                g.starts_with(
                    if head == "fatal" { "fatal ".to_string() } else { format!("{head} error ") }
                        .as_str(),
                ) && g.contains(text)
            }
            None => g == w.trim_end(),
        };
        assert!(ok, "{}: got {g:?}, want {w:?}", input.display());
    }
}

#[test]
fn the_corpus_of_inputs_that_found_bugs_reads_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/records");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "expect") {
            let input = path.with_extension("");
            assert!(input.is_file(), "{} has no input {}", path.display(), input.display());
            check_corpus_file(&input, &std::fs::read_to_string(&path).unwrap());
            n += 1;
        }
    }
    assert!(n >= 6, "only {n} corpus files in {}", dir.display());
}
