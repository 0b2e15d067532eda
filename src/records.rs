//! Reading input records (catalog products, listings) from JSON Lines or CSV, one record per line,
//! with a cap on line length, and typed access to their fields with errors that name the field.

use std::io::{BufRead, Read};

use serde_json::{Map, Value};

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

/// One input record: its line number and its fields, or why the line could not be read.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// 1-based line number in the input.
    pub line: usize,
    /// The record's fields, or a description of what is wrong with the line.
    pub fields: Result<Map<String, Value>, String>,
}

/// Reads records one line at a time; a line longer than `max_line` is reported and skipped.
pub struct RecordReader<R> {
    reader: R,
    format: Format,
    max_line: usize,
    line: usize,
    header: Option<Vec<String>>,
}

impl<R: BufRead> RecordReader<R> {
    /// A reader of `format` records from `reader`.
    pub fn new(reader: R, format: Format, max_line: usize) -> Self {
        RecordReader { reader, format, max_line, line: 0, header: None }
    }

    /// Reads the next line (without its end), `Ok(None)` at the end, or `Err` with the line too long.
    fn next_line(&mut self) -> std::io::Result<Option<Result<String, String>>> {
        let mut buf = Vec::new();
        let n = (&mut self.reader).take(self.max_line as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        if buf.last() != Some(&b'\n') && buf.len() > self.max_line {
            // skip the rest of the over-long line
            loop {
                let mut rest = Vec::new();
                let m = (&mut self.reader).take(1 << 20).read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            return Ok(Some(Err(format!("line is longer than the limit of {} bytes (limits.max_line_bytes)", self.max_line))));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(Some(String::from_utf8(buf).map_err(|_| "line is not valid UTF-8".to_string())))
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = std::io::Result<RawRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = match self.next_line() {
                Ok(Some(t)) => t,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            let line = self.line;
            let text = match text {
                Ok(t) => t,
                Err(e) => return Some(Ok(RawRecord { line, fields: Err(e) })),
            };
            let trimmed = text.trim();
            if trimmed.is_empty() || (self.format == Format::Jsonl && trimmed.starts_with("//")) {
                continue;
            }
            let fields = match self.format {
                Format::Jsonl => match serde_json::from_str::<Value>(trimmed) {
                    Ok(Value::Object(map)) => Ok(map),
                    Ok(_) => Err("line is not a JSON object".to_string()),
                    Err(e) => Err(format!("invalid JSON: {e}")),
                },
                Format::Csv => {
                    let cells = match parse_csv_line(&text) {
                        Ok(c) => c,
                        Err(e) => return Some(Ok(RawRecord { line, fields: Err(e) })),
                    };
                    match &self.header {
                        None => {
                            self.header = Some(cells.iter().map(|c| c.trim().to_ascii_lowercase()).collect());
                            continue;
                        }
                        Some(header) => {
                            if cells.len() != header.len() {
                                Err(format!("CSV row has {} fields, the header has {}", cells.len(), header.len()))
                            } else {
                                Ok(header
                                    .iter()
                                    .zip(cells)
                                    .filter(|(_, v)| !v.trim().is_empty())
                                    .map(|(k, v)| (k.clone(), Value::String(v)))
                                    .collect())
                            }
                        }
                    }
                }
            };
            return Some(Ok(RawRecord { line, fields }));
        }
    }
}

/// Splits one CSV line into fields (RFC 4180 quoting; a record must fit on one line).
fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line.as_bytes());
    match rdr.records().next() {
        Some(Ok(rec)) => Ok(rec.iter().map(str::to_string).collect()),
        Some(Err(e)) => Err(format!("invalid CSV: {e}")),
        None => Ok(Vec::new()),
    }
}

/// A required text field (numbers are accepted and written as text).
pub fn text(fields: &Map<String, Value>, key: &str) -> Result<String, String> {
    opt_text(fields, key)?.ok_or_else(|| format!("missing field `{key}`"))
}

/// An optional text field; empty strings count as missing.
pub fn opt_text(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("field `{key}` must be text, got {}", kind(other))),
    }
}

/// A price: a finite, non-negative number (JSON number or numeric text).
pub fn price(fields: &Map<String, Value>, key: &str) -> Result<f64, String> {
    let v = match fields.get(key) {
        None | Some(Value::Null) => return Err(format!("missing field `{key}`")),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| format!("field `{key}` is not a usable number"))?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("field `{key}` is not a number: {s:?}"))?,
        Some(other) => return Err(format!("field `{key}` must be a number, got {}", kind(other))),
    };
    if !v.is_finite() || v < 0.0 {
        return Err(format!("field `{key}` must be a non-negative number, got {v}"));
    }
    Ok(v)
}

/// An optional whole number.
pub fn opt_count(fields: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| format!("field `{key}` must be a whole number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| format!("field `{key}` must be a whole number, got {s:?}")),
        Some(other) => Err(format!("field `{key}` must be a whole number, got {}", kind(other))),
    }
}

/// A list of text: a JSON array of strings, or text split on `|` (CSV).
pub fn list(fields: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split('|').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("field `{key}` item {} must be non-empty text, got {}", i + 1, kind(other))),
            })
            .collect(),
        Some(other) => Err(format!("field `{key}` must be a list or `|`-separated text, got {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
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
    fn field_errors_name_the_field() {
        let f: Map<String, Value> = serde_json::from_str(r#"{"price":"abc","n":-1,"images":[1,{}]}"#).unwrap();
        assert!(price(&f, "price").unwrap_err().contains("`price`"));
        assert!(price(&f, "n").unwrap_err().contains("non-negative"));
        assert!(text(&f, "title").unwrap_err().contains("missing field `title`"));
        assert!(list(&f, "images").unwrap_err().contains("item 2"));
    }
}
