//! Standard output, written one way by every command: through [`Stdout`], which ends the program
//! quietly with exit code 0 when the reader of a pipe has gone away (`knockoff scan … | head -1`).
//! A closed pipe is not an error: the reader has what it wanted (ripgrep does the same).
//!
//! Every other write error (a full disk behind a redirection) is returned as usual.

use std::io::{self, Write};

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
