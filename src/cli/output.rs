//! Standard output, written one way by every command: through [`Stdout`], which ends the program
//! quietly with exit code 0 when the reader of a pipe has gone away (`knockoff scan … | head -1`).
//! A closed pipe is not an error: the reader has what it wanted (ripgrep does the same).
//!
//! Every other write error (a full disk behind a redirection) is returned as usual.
//!
//! Colour is decided here too, once, from `--color` ([`Color`]): every table or message that
//! colours asks [`Color::enabled`] about the stream it writes to.

use std::io::{self, IsTerminal, Write};

/// When to colour output (`--color`), as ripgrep does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// Colour only when writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always colour, even into a pipe or a file, and whatever `NO_COLOR` says.
    Always,
    /// Never colour.
    Never,
}

impl Color {
    /// Whether to colour a stream that is a terminal (`terminal`) or not: the one decision every
    /// coloured table and message takes.
    pub fn enabled(self, terminal: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Whether to colour what is written to standard output.
    pub fn stdout(self) -> bool {
        self.enabled(io::stdout().is_terminal())
    }
}

/// Standard output (locked); a write or flush that finds the pipe closed exits the process with 0.
pub struct Stdout {
    inner: io::StdoutLock<'static>,
}

/// Standard output for a command's data.
pub fn stdout() -> Stdout {
    Stdout { inner: io::stdout().lock() }
}

impl Stdout {
    fn check<T>(result: io::Result<T>) -> io::Result<T> {
        match result {
            Err(e) if is_closed_pipe(&e) => std::process::exit(0),
            other => other,
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::check(self.inner.write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        Self::check(self.inner.write_all(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::check(self.inner.flush())
    }
}

/// Whether `e` says the reader of the pipe has gone away.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn always_and_never_ignore_the_terminal_and_auto_needs_one() {
        for terminal in [false, true] {
            assert!(Color::Always.enabled(terminal));
            assert!(!Color::Never.enabled(terminal));
        }
        assert!(!Color::Auto.enabled(false), "auto never colours a pipe or a file");
        // NO_COLOR is read from the environment: the CLI tests (tests/terminal.rs) set it
    }
}
