//! Reading input records (catalog products, listings) from JSON Lines or CSV, with a cap on the
//! length of a line and of a record, and typed access to their fields with errors that name the
//! field.
//!
//! Both formats must be UTF-8; a UTF-8 byte-order mark is skipped, and a UTF-16 file is refused as
//! a whole with one message. A CSV record may span lines inside a quoted field (RFC 4180); it is
//! named by its first line. The CSV separator is `,`, or the one the header line is written with
//! (`;` or tab, as spreadsheets in many languages save), or the one an Excel `sep=;` first line
//! names.

use std::collections::VecDeque;
use std::io::{BufRead, Read};

use serde_json::{Map, Value};

use super::fields::{List, Price, Text};

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line; list fields are `|`-separated.
    Csv,
}

impl Format {
    /// Guesses the format from a file name: `.csv` is CSV, anything else JSON Lines.
    pub fn from_path(path: &std::path::Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// One input record: its (first) line number and its fields, or why it could not be read.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// 1-based line number in the input of the record's first line.
    pub line: usize,
    /// The record's fields, or a description of what is wrong with the record.
    pub fields: Result<Map<String, Value>, String>,
}

/// One physical line of the input.
struct Line {
    /// 1-based line number.
    number: usize,
    /// The text without its line end, or why the line is unusable.
    text: Result<String, String>,
    /// Read again after a CSV record that could not be closed: a quoted field it opens is not
    /// followed onto the next lines (so reading stays linear in the input).
    again: bool,
}

/// Where a CSV parser is after some text (the states of RFC 4180 quoting, as the `csv` crate has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// At the start of a field.
    FieldStart,
    /// In a field that did not start with a quote (quotes in it are literal).
    Unquoted,
    /// In a quoted field: separators and line ends are part of it.
    Quoted,
    /// Just after a quote in a quoted field: the field's end, or the first of two quotes.
    QuoteInQuoted,
}

/// Reads records one at a time; a line or record longer than `max_line` bytes is reported and
/// skipped.
pub struct RecordReader<R> {
    reader: R,
    format: Format,
    max_line: usize,
    line: usize,
    header: Option<Vec<String>>,
    delimiter: u8,
    /// A `sep=X` line named the CSV separator.
    delimiter_given: bool,
    /// Lines read ahead and given back (after a CSV record that could not be closed).
    pending: VecDeque<Line>,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader of `format` records from `reader`.
    pub fn new(reader: R, format: Format, max_line: usize) -> Self {
        RecordReader {
            reader,
            format,
            max_line,
            line: 0,
            header: None,
            delimiter: b',',
            delimiter_given: false,
            pending: VecDeque::new(),
        }
    }

    /// Reads the next physical line, `Ok(None)` at the end; a line too long or not UTF-8 is a
    /// `Line` with an error. The first line is checked for its encoding (see `check_encoding`).
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        if let Some(line) = self.pending.pop_front() {
            return Ok(Some(line));
        }
        let mut buf = Vec::new();
        let n = (&mut self.reader).take(self.max_line as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.line == 1 {
            check_encoding(&mut buf)?;
        }
        let number = self.line;
        if buf.last() != Some(&b'\n') && buf.len() > self.max_line {
            // skip the rest of the over-long line
            loop {
                let mut rest = Vec::new();
                let m = (&mut self.reader).take(1 << 20).read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            let e = format!(
                "line is longer than the limit of {} bytes (limits.max_line_bytes)",
                self.max_line
            );
            return Ok(Some(Line { number, text: Err(e), again: false }));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = String::from_utf8(buf).map_err(|_| "line is not valid UTF-8".to_string());
        Ok(Some(Line { number, text, again: false }))
    }

    /// The record that begins with the CSV line `text` (line `number`): `Ok(None)` when the line
    /// was the header or a `sep=` line.
    fn csv_record(
        &mut self,
        number: usize,
        text: String,
        again: bool,
    ) -> std::io::Result<Option<RawRecord>> {
        if self.header.is_none() && !self.delimiter_given {
            if let Some(sep) = excel_separator(&text) {
                (self.delimiter, self.delimiter_given) = (sep, true);
                return Ok(None);
            }
            self.delimiter = detect_delimiter(&text);
        }
        let fields = match self.join_quoted(text, again)? {
            Ok(record) => parse_csv_record(&record, self.delimiter),
            Err(e) => Err(e),
        };
        let cells = match fields {
            Ok(cells) => cells,
            Err(e) => return Ok(Some(RawRecord { line: number, fields: Err(e) })),
        };
        let Some(header) = &self.header else {
            self.header = Some(cells.iter().map(|c| c.trim().to_ascii_lowercase()).collect());
            return Ok(None);
        };
        let fields = if cells.len() != header.len() {
            Err(format!("CSV row has {} fields, the header has {}", cells.len(), header.len()))
        } else {
            Ok(header
                .iter()
                .zip(cells)
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.clone(), Value::String(v)))
                .collect())
        };
        Ok(Some(RawRecord { line: number, fields }))
    }

    /// The CSV record beginning with `text`: the line itself, or, when a quoted field is still open
    /// at its end, the line joined to those that follow until the field closes. A field not
    /// closed by the end of the input or within `max_line` bytes is an error; the lines read
    /// after the first are then read again as records of their own.
    fn join_quoted(
        &mut self,
        text: String,
        again: bool,
    ) -> std::io::Result<Result<String, String>> {
        if quoting_after(&text, self.delimiter, Quoting::FieldStart) != Quoting::Quoted {
            return Ok(Ok(text));
        }
        let unclosed =
            |why: &str| format!("a quoted field opened on this line is not closed {why}");
        if again {
            return Ok(Err(unclosed("on it")));
        }
        let mut record = text;
        let mut taken: Vec<Line> = Vec::new();
        let why = loop {
            let Some(line) = self.next_line()? else {
                break unclosed("by the end of the input");
            };
            let next = match &line.text {
                Ok(t) => t.clone(),
                Err(e) => {
                    let e = format!("line {} (in a quoted field of this record): {e}", line.number);
                    return Ok(Err(e));
                }
            };
            record.push('\n');
            record.push_str(&next);
            taken.push(line);
            if record.len() > self.max_line {
                break unclosed(&format!(
                    "within the limit of {} bytes (limits.max_line_bytes)",
                    self.max_line
                ));
            }
            if quoting_after(&next, self.delimiter, Quoting::Quoted) != Quoting::Quoted {
                return Ok(Ok(record));
            }
        };
        self.pending.extend(taken.into_iter().map(|l| Line { again: true, ..l }));
        Ok(Err(why))
    }
}

/// Checks the first line's bytes: skips a UTF-8 byte-order mark, refuses UTF-16 (with or without
/// its byte-order mark) as a whole.
fn check_encoding(first: &mut Vec<u8>) -> std::io::Result<()> {
    if first.starts_with(b"\xef\xbb\xbf") {
        first.drain(..3);
        return Ok(());
    }
    let utf16 = first.starts_with(b"\xff\xfe")
        || first.starts_with(b"\xfe\xff")
        || matches!(first.as_slice(), [a, 0, ..] | [0, a, ..] if *a != 0 && a.is_ascii());
    if utf16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is UTF-16 text; save it as UTF-8 (in a spreadsheet: CSV UTF-8) and try again",
        ));
    }
    Ok(())
}

/// The separator an Excel `sep=X` line names.
fn excel_separator(line: &str) -> Option<u8> {
    match line.trim_end().as_bytes() {
        [b's' | b'S', b'e' | b'E', b'p' | b'P', b'=', sep]
            if !sep.is_ascii_alphanumeric() && *sep != b'"' =>
        {
            Some(*sep)
        }
        _ => None,
    }
}

/// The separator a CSV header line is written with: `,` if it has any outside quotes, else `;` or
/// tab, whichever it has more of.
fn detect_delimiter(header: &str) -> u8 {
    let count = |d: u8| {
        let mut q = Quoting::FieldStart;
        let mut n = 0usize;
        for &b in header.as_bytes() {
            q = step(q, b, d);
            n += usize::from(q == Quoting::FieldStart);
        }
        n
    };
    match (count(b','), count(b';'), count(b'\t')) {
        (0, s, t) if s > 0 && s >= t => b';',
        (0, _, t) if t > 0 => b'\t',
        _ => b',',
    }
}

/// Where CSV quoting is after `text`, starting in state `q`.
fn quoting_after(text: &str, delimiter: u8, q: Quoting) -> Quoting {
    text.as_bytes().iter().fold(q, |q, &b| step(q, b, delimiter))
}

/// Where CSV quoting is after byte `b` in state `q` (a separator always leads to `FieldStart`).
fn step(q: Quoting, b: u8, delimiter: u8) -> Quoting {
    match q {
        Quoting::FieldStart if b == b'"' => Quoting::Quoted,
        Quoting::FieldStart | Quoting::Unquoted if b == delimiter => Quoting::FieldStart,
        Quoting::FieldStart | Quoting::Unquoted => Quoting::Unquoted,
        Quoting::Quoted if b == b'"' => Quoting::QuoteInQuoted,
        Quoting::Quoted => Quoting::Quoted,
        Quoting::QuoteInQuoted if b == b'"' => Quoting::Quoted,
        Quoting::QuoteInQuoted if b == delimiter => Quoting::FieldStart,
        Quoting::QuoteInQuoted => Quoting::Unquoted,
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = std::io::Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let Line { number, text, again } = match self.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let text = match text {
                Ok(t) => t,
                Err(e) => return Some(Ok(RawRecord { line: number, fields: Err(e) })),
            };
            if text.trim().is_empty() {
                continue;
            }
            match self.format {
                Format::Jsonl => {
                    // a byte-order mark at the start of a line: files joined with `cat`
                    let trimmed = text.strip_prefix('\u{feff}').unwrap_or(&text).trim();
                    if trimmed.is_empty() || trimmed.starts_with("//") {
                        continue;
                    }
                    let fields = match serde_json::from_str::<Value>(trimmed) {
                        Ok(Value::Object(map)) => Ok(map),
                        Ok(_) => Err("line is not a JSON object".to_string()),
                        Err(e) => Err(format!("invalid JSON: {e}")),
                    };
                    return Some(Ok(RawRecord { line: number, fields }));
                }
                Format::Csv => match self.csv_record(number, text, again) {
                    Ok(Some(record)) => return Some(Ok(record)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(e)),
                },
            }
        }
    }
}

/// Splits one CSV record (RFC 4180 quoting) into fields.
fn parse_csv_record(text: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut records = rdr.records();
    let cells = match records.next() {
        Some(Ok(rec)) => rec.iter().map(str::to_string).collect(),
        Some(Err(e)) => return Err(format!("invalid CSV: {e}")),
        None => Vec::new(),
    };
    if records.next().is_some() {
        return Err("invalid CSV: a carriage return outside quotes splits the record".to_string());
    }
    Ok(cells)
}

/// A required text field (numbers are accepted and written as text).
pub fn text(fields: &Map<String, Value>, key: &str) -> Result<String, String> {
    Text::of(fields.get(key)).required(key)
}

/// An optional text field; empty strings count as missing.
pub fn opt_text(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    Text::of(fields.get(key)).named(key)
}

/// A price: a finite, non-negative number (JSON number or numeric text).
pub fn price(fields: &Map<String, Value>, key: &str) -> Result<f64, String> {
    Price::of(fields.get(key)).required(key)
}

/// A list of text: a JSON array of strings, or text split on `|` (CSV).
pub fn list(fields: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    List::of(fields.get(key)).named(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &str, format: Format, max: usize) -> Vec<RawRecord> {
        RecordReader::new(input.as_bytes(), format, max).map(|r| r.unwrap()).collect()
    }

    #[test]
    fn jsonl_lines_numbered_and_errors_kept() {
        let recs = read("{\"a\":1}\n\nnot json\n[1]\n{\"b\":\"x\"}", Format::Jsonl, 100);
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].line, 1);
        assert!(recs[1].fields.as_ref().unwrap_err().contains("invalid JSON"));
        assert_eq!(recs[1].line, 3);
        assert!(recs[2].fields.as_ref().unwrap_err().contains("not a JSON object"));
        assert_eq!(recs[3].line, 5);
    }

    #[test]
    fn overlong_line_is_skipped_and_reported() {
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(500));
        let input = format!("{{\"a\":1}}\n{long}\n{{\"a\":2}}\n");
        let recs = read(&input, Format::Jsonl, 64);
        assert_eq!(recs.len(), 3);
        assert!(recs[1].fields.as_ref().unwrap_err().contains("longer than the limit"));
        assert_eq!(recs[2].line, 3);
        assert_eq!(recs[2].fields.as_ref().unwrap()["a"], 2);
    }

    #[test]
    fn csv_header_and_lists() {
        let recs = read("Id,Images,Price\nx,\"a.jpg| b.jpg\",12.5\ny,c.jpg\n", Format::Csv, 1000);
        assert_eq!(recs.len(), 2);
        let f = recs[0].fields.as_ref().unwrap();
        assert_eq!(list(f, "images").unwrap(), vec!["a.jpg", "b.jpg"]);
        assert_eq!(price(f, "price").unwrap(), 12.5);
        assert!(recs[1].fields.as_ref().unwrap_err().contains("2 fields"));
    }

    #[test]
    fn a_utf8_byte_order_mark_is_skipped_in_both_formats() {
        let recs = read("\u{feff}{\"a\":1}\n{\"a\":2}\n\u{feff}{\"a\":3}\n", Format::Jsonl, 100);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert_eq!(recs[0].fields.as_ref().unwrap()["a"], 1);
        assert_eq!(
            recs[2].fields.as_ref().unwrap()["a"],
            3,
            "a mark at the start of a later line (joined files)"
        );
        let recs = read("\u{feff}listing_id,price\nx,1\n", Format::Csv, 100);
        assert_eq!(recs[0].fields.as_ref().unwrap()["listing_id"], "x");
    }

    #[test]
    fn utf16_is_refused_as_a_whole() {
        let utf16 = |text: &str, bom: &[u8], le: bool| -> Vec<u8> {
            let mut b = bom.to_vec();
            for u in text.encode_utf16() {
                b.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
            }
            b
        };
        let text = "{\"a\":1}\n{\"a\":2}\n";
        for bytes in [
            utf16(text, b"\xff\xfe", true),
            utf16(text, b"\xfe\xff", false),
            utf16(text, b"", true),
            utf16(text, b"", false),
        ] {
            let mut r = RecordReader::new(bytes.as_slice(), Format::Jsonl, 100);
            let e = r.next().unwrap().unwrap_err();
            assert!(
                e.to_string().contains("UTF-16") && e.to_string().contains("save it as UTF-8"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_quoted_newline_keeps_a_csv_record_whole_named_by_its_first_line() {
        let input = "id,title,price\r\na,\"two\r\nlines, \"\"quoted\"\"\",1\r\nb,\"x\n\ny\n\",2\nc,plain,3\n";
        let recs = read(input, Format::Csv, 1000);
        assert_eq!(recs.iter().map(|r| r.line).collect::<Vec<_>>(), [2, 4, 8]);
        assert_eq!(recs[0].fields.as_ref().unwrap()["title"], "two\nlines, \"quoted\"");
        assert_eq!(recs[1].fields.as_ref().unwrap()["title"], "x\n\ny\n");
        assert_eq!(recs[2].fields.as_ref().unwrap()["price"], "3");
    }

    #[test]
    fn an_unclosed_quote_is_one_error_and_the_lines_after_it_are_read() {
        let input = "id,title\na,\"never closed\nb,ok\nc,fine\n";
        let recs = read(input, Format::Csv, 1000);
        assert_eq!(recs.len(), 3, "{recs:?}");
        assert_eq!(recs[0].line, 2);
        assert!(recs[0]
            .fields
            .as_ref()
            .unwrap_err()
            .contains("not closed by the end of the input"));
        assert_eq!((recs[1].line, recs[2].line), (3, 4));
        assert_eq!(recs[2].fields.as_ref().unwrap()["title"], "fine");
        // within the record limit
        let input = format!("id,title\na,\"open\n{}b,ok\n", "filler line\n".repeat(20));
        let recs = read(&input, Format::Csv, 100);
        assert!(
            recs[0].fields.as_ref().unwrap_err().contains("within the limit of 100 bytes"),
            "{recs:?}"
        );
        assert_eq!(recs.last().unwrap().line, 23);
        assert_eq!(recs.last().unwrap().fields.as_ref().unwrap()["id"], "b");
        // a quote inside an unquoted field is literal, as the csv crate reads it
        let recs = read("id,size\na,5\" screen\nb,6\n", Format::Csv, 100);
        assert_eq!(recs[0].fields.as_ref().unwrap()["size"], "5\" screen");
        assert_eq!(recs[1].line, 3);
    }

    #[test]
    fn semicolon_and_tab_separated_csv_are_read() {
        for (input, what) in [
            ("listing_id;title;price\nx;\"a;b\";12,50\n", "semicolon"),
            ("listing_id\ttitle\tprice\nx\ta;b\t12,50\n", "tab"),
            ("sep=;\nlisting_id;title;price\nx;\"a;b\";12,50\n", "sep= line"),
        ] {
            let recs = read(input, Format::Csv, 100);
            assert_eq!(recs.len(), 1, "{what}: {recs:?}");
            let f = recs[0].fields.as_ref().unwrap();
            assert_eq!(
                (f["listing_id"].as_str(), f["title"].as_str(), f["price"].as_str()),
                (Some("x"), Some("a;b"), Some("12,50")),
                "{what}"
            );
        }
        // a comma anywhere in the header keeps the comma
        let recs = read("listing_id,title\nx,a;b\n", Format::Csv, 100);
        assert_eq!(recs[0].fields.as_ref().unwrap()["title"], "a;b");
    }

    #[test]
    fn field_errors_name_the_field() {
        let f: Map<String, Value> =
            serde_json::from_str(r#"{"price":"abc","n":-1,"images":[1,{}]}"#).unwrap();
        assert!(price(&f, "price").unwrap_err().contains("`price`"));
        assert!(price(&f, "n").unwrap_err().contains("non-negative"));
        assert!(text(&f, "title").unwrap_err().contains("missing field `title`"));
        assert!(list(&f, "images").unwrap_err().contains("item 2"));
    }
}
