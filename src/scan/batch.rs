//! A scan's batch of listings: read in chunks in input order, with what an earlier, interrupted
//! run already wrote to the output (`--resume`) skipped, and listing ids used twice noted.
//!
//! Resume is keyed on the input line and the listing id together: every verdict carries the
//! input line of its record (`line`) and its `listing_id`. An output file is resumed only if its
//! verdicts are, line by line, those of the first records of this input; anything else (an output
//! written for another input, or an input edited since) is refused before anything is written.
//! Two listings with the same id are both scanned and both kept; a warning names their lines.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::input::records::{Format, RecordReader};
use crate::scan::{parse_listing, Parsed};
use crate::util::display::escape;

/// The verdicts an earlier run wrote to an output file, for `--resume`.
#[derive(Debug)]
pub struct Resume {
    /// The output file.
    path: PathBuf,
    /// Input line → the listing id its verdict names (`None` when the record had no readable id).
    done: BTreeMap<usize, Option<String>>,
    /// Bytes of whole lines; anything after them is a torn last line, cut before appending.
    complete: u64,
    /// Bytes of the file.
    len: u64,
}

impl Resume {
    /// Reads the verdicts in `path` (none when it does not exist). Changes nothing: a torn last
    /// line is cut only by `cut_torn_line`, once the input is known to match.
    pub fn read(path: &Path) -> Result<Resume> {
        let mut resume =
            Resume { path: path.to_path_buf(), done: BTreeMap::new(), complete: 0, len: 0 };
        if !path.exists() {
            return Ok(resume);
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        (resume.complete, resume.len) = (complete as u64, bytes.len() as u64);
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = || format!("{}:{}", path.display(), i + 1);
            let v: serde_json::Value = serde_json::from_slice(line).with_context(|| {
                format!("{}: not a verdict line; cannot resume from this file", at())
            })?;
            let Some(input_line) =
                v.get("line").and_then(|x| x.as_u64()).and_then(|l| usize::try_from(l).ok())
            else {
                bail!("{}: verdict line without the input `line` it belongs to; cannot resume from this file", at());
            };
            let id = v.get("listing_id").and_then(|x| x.as_str()).map(str::to_string);
            if resume.done.insert(input_line, id).is_some() {
                bail!("{}: a second verdict for input line {input_line}; cannot resume from this file", at());
            }
        }
        Ok(resume)
    }

    /// How many verdicts the file holds.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    /// Whether the file holds no verdict.
    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Cuts a torn last line (a write the interrupted run did not finish) off the file.
    pub fn cut_torn_line(&mut self) -> Result<()> {
        if self.complete == self.len {
            return Ok(());
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        f.set_len(self.complete)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot cut {}", self.path.display()))?;
        tracing::warn!(
            "{}: removed a torn last line ({} bytes) before resuming",
            escape(&self.path.display().to_string()),
            self.len - self.complete
        );
        self.len = self.complete;
        Ok(())
    }
}

/// A listing id found on more than one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The listing id.
    pub id: String,
    /// Its lines, in input order.
    pub lines: Vec<usize>,
}

/// What a batch needs besides its input.
pub struct BatchOptions {
    /// The input's format.
    pub format: Format,
    /// The directory relative image paths are relative to.
    pub base_dir: PathBuf,
    /// Listings per chunk.
    pub chunk: usize,
    /// The input's name for messages (a path, or `-`).
    pub name: String,
}

/// The listings of a scan in chunks (an iterator); see the module's documentation.
pub struct Batch<R> {
    records: RecordReader<R>,
    options: BatchOptions,
    max_images: usize,
    /// The verdicts of an earlier run not yet matched with their input records, and the output.
    resume: Option<(BTreeMap<usize, Option<String>>, PathBuf)>,
    /// Listing id → the first line it is on.
    first: HashMap<String, usize>,
    /// Listing id used more than once → all the lines it is on.
    again: HashMap<String, Vec<usize>>,
    /// Whether the iterator has ended (after an error, too).
    finished: bool,
}

impl<R: BufRead> Batch<R> {
    /// A batch read from `reader`, skipping what `resume` holds.
    pub fn new(reader: R, options: BatchOptions, config: &Config, resume: Option<&Resume>) -> Self {
        Batch {
            records: RecordReader::new(reader, options.format, config.limits.max_line_bytes),
            options,
            max_images: config.limits.max_images_per_record,
            resume: resume.filter(|r| !r.is_empty()).map(|r| (r.done.clone(), r.path.clone())),
            first: HashMap::new(),
            again: HashMap::new(),
            finished: false,
        }
    }

    /// Listing ids found on more than one line so far, in the order of their first line.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut d: Vec<Duplicate> = self
            .again
            .iter()
            .map(|(id, lines)| Duplicate { id: id.clone(), lines: lines.clone() })
            .collect();
        d.sort_by_key(|d| d.lines[0]);
        d
    }

    /// Notes that listing id `id` is on `line`.
    fn note_id(&mut self, id: &str, line: usize) {
        match self.first.get(id) {
            None => {
                self.first.insert(id.to_string(), line);
            }
            Some(&first) => {
                self.again.entry(id.to_string()).or_insert_with(|| vec![first]).push(line)
            }
        }
    }

    /// Whether the record on `line` with listing id `id` already has its verdict in the output;
    /// an error when the output's verdicts are not those of this input's first records.
    fn already_done(&mut self, line: usize, id: Option<&str>) -> Result<bool> {
        let Some((done, out)) = &mut self.resume else { return Ok(false) };
        let input = &self.options.name;
        let hint = "scan to another output file, or without --resume to start again";
        let name = |id: Option<&str>| {
            id.map_or("a record without a listing id".to_string(), |id| format!("listing \"{id}\""))
        };
        let result = match done.remove(&line) {
            Some(was) if was.as_deref() == id => true,
            Some(was) => bail!(
                "cannot resume: {} was not written for {input}: its verdict for input line {line} is for {}, but line {line} of {input} is {} ({hint})",
                out.display(),
                name(was.as_deref()),
                name(id)
            ),
            None => bail!(
                "cannot resume: {} was not written for {input}: it has verdicts for lines after line {line} but none for line {line} ({hint})",
                out.display()
            ),
        };
        if done.is_empty() {
            self.resume = None;
        }
        Ok(result)
    }

    /// At the end of the input: an error when the output has verdicts for lines the input lacks.
    fn check_end(&mut self) -> Result<()> {
        if let Some((done, out)) = &self.resume {
            if let Some((line, id)) = done.iter().next() {
                let id = id.as_deref().map_or(String::new(), |id| format!(" (listing \"{id}\")"));
                bail!(
                    "cannot resume: {} was not written for {}: it has a verdict for input line {line}{id}, which the input does not have (scan to another output file, or without --resume to start again)",
                    out.display(),
                    self.options.name
                );
            }
        }
        Ok(())
    }

    /// The next chunk of listings still to scan.
    fn next_chunk(&mut self) -> Result<Option<Vec<Parsed>>> {
        let mut out = Vec::with_capacity(self.options.chunk);
        while out.len() < self.options.chunk {
            let Some(raw) = self.records.next() else {
                self.check_end()?;
                break;
            };
            let raw = raw.with_context(|| format!("cannot read {}", self.options.name))?;
            let parsed = parse_listing(&raw, &self.options.base_dir, self.max_images)
                .map_err(|(id, why)| (raw.line, id, why));
            let id = match &parsed {
                Ok(l) => Some(l.listing_id.as_str()),
                Err((_, id, _)) => id.as_deref(),
            };
            if let Some(id) = id {
                self.note_id(id, raw.line);
            }
            if !self.already_done(raw.line, id)? {
                out.push(parsed);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }
}

impl<R: BufRead> Iterator for Batch<R> {
    type Item = Result<Vec<Parsed>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let next = self.next_chunk().transpose();
        self.finished = !matches!(next, Some(Ok(_)));
        next
    }
}

/// One warning per listing id used on more than one line (at most `limit` ids, then a count of
/// the others), each naming the lines (at most ten, then a count).
pub fn duplicate_warnings(input: &str, duplicates: &[Duplicate], limit: usize) -> Vec<String> {
    let mut out: Vec<String> = duplicates
        .iter()
        .take(limit)
        .map(|d| {
            let mut lines =
                d.lines.iter().take(10).map(usize::to_string).collect::<Vec<_>>().join(", ");
            if d.lines.len() > 10 {
                lines.push_str(&format!(" and {} more", d.lines.len() - 10));
            }
            format!(
                "{input}: listing id \"{}\" is used on lines {lines}; each got its own verdict",
                d.id
            )
        })
        .collect();
    if duplicates.len() > limit {
        out.push(format!(
            "{input}: {} more listing ids are used on more than one line",
            duplicates.len() - limit
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch<'a>(input: &'a str, resume: Option<&Resume>) -> Batch<&'a [u8]> {
        let options = BatchOptions {
            format: Format::Jsonl,
            base_dir: PathBuf::from("."),
            chunk: 2,
            name: "in.jsonl".into(),
        };
        Batch::new(input.as_bytes(), options, &Config::default(), resume)
    }

    fn listing(id: &str) -> String {
        format!("{{\"listing_id\":\"{id}\",\"seller_id\":\"s\",\"images\":[\"a.jpg\"]}}\n")
    }

    fn resume_of(verdicts: &[(usize, Option<&str>)]) -> Resume {
        let done = verdicts.iter().map(|(l, id)| (*l, id.map(str::to_string))).collect();
        Resume { path: PathBuf::from("out.jsonl"), done, complete: 0, len: 0 }
    }

    fn lines(b: &mut Batch<&[u8]>) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        for chunk in b {
            out.extend(chunk?.iter().map(|p| match p {
                Ok(l) => l.line,
                Err((line, _, _)) => *line,
            }));
        }
        Ok(out)
    }

    #[test]
    fn duplicate_ids_are_all_kept_and_resume_skips_by_line() {
        let input =
            format!("{}{}not json\n{}{}", listing("a"), listing("a"), listing("a"), listing("b"));
        let mut b = batch(&input, None);
        assert_eq!(lines(&mut b).unwrap(), [1, 2, 3, 4, 5]);
        assert_eq!(b.duplicates(), [Duplicate { id: "a".into(), lines: vec![1, 2, 4] }]);
        let r = resume_of(&[(1, Some("a")), (2, Some("a")), (3, None)]);
        let mut b = batch(&input, Some(&r));
        assert_eq!(lines(&mut b).unwrap(), [4, 5], "only the first three records were done");
        assert_eq!(
            b.duplicates()[0].lines,
            [1, 2, 4],
            "duplicates across the resume are noted too"
        );
    }

    #[test]
    fn an_output_of_another_input_is_refused_before_any_listing() {
        let input = format!("{}{}{}", listing("a"), listing("b"), listing("c"));
        for (verdicts, says) in [
            (
                vec![(1, Some("a")), (2, Some("x"))],
                "input line 2 is for listing \"x\", but line 2 of in.jsonl is listing \"b\"",
            ),
            (
                vec![(1, Some("a")), (3, Some("c"))],
                "verdicts for lines after line 2 but none for line 2",
            ),
            (
                vec![(1, Some("a")), (2, Some("b")), (3, Some("c")), (4, Some("d"))],
                "a verdict for input line 4 (listing \"d\"), which the input does not have",
            ),
            (
                vec![(1, None)],
                "is for a record without a listing id, but line 1 of in.jsonl is listing \"a\"",
            ),
        ] {
            let r = resume_of(&verdicts);
            let mut b = batch(&input, Some(&r));
            let first = b.next().expect("an item");
            let e = first.expect_err("refused").to_string();
            assert!(
                e.contains("cannot resume: out.jsonl was not written for in.jsonl")
                    && e.contains(says),
                "{e}"
            );
            assert!(b.next().is_none(), "nothing after the refusal");
        }
    }

    #[test]
    fn warnings_name_the_lines_and_stop_at_a_limit() {
        let d: Vec<Duplicate> = (0..5)
            .map(|i| Duplicate {
                id: format!("id{i}\x1b[2J"),
                lines: (1..=12).map(|l| l * 10 + i).collect(),
            })
            .collect();
        let w = duplicate_warnings("in.jsonl", &d, 3);
        assert_eq!(w.len(), 4);
        assert!(
            w[0].starts_with("in.jsonl: listing id \"id0\x1b[2J\" is used on lines 10, 20, 30"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("100 and 2 more"), "{}", w[0]);
        assert_eq!(w[3], "in.jsonl: 2 more listing ids are used on more than one line");
    }
}
