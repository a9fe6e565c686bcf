//! Writing to stdout without panicking. `println!` panics when stdout is a pipe whose reader
//! has gone (`hush history bob --json | head -1`); here a closed stdout is an error that ends
//! the command through its normal path (every commit it made stays made, and nothing is
//! recorded as shown that was not written), after which `main` exits quietly with
//! [`CLOSED_STATUS`], as a Unix tool stopped by SIGPIPE would.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status after stdout was closed by its reader: 128 + SIGPIPE, what shells report for
/// a tool killed by a closed pipe.
pub const CLOSED_STATUS: u8 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write found stdout closed by its reader.
pub fn stdout_closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Remember that a write (by a writer of its own, such as `hush rpc`'s) found stdout closed by
/// its reader, so that `main` exits quietly.
pub fn note_closed() {
    CLOSED.store(true, Ordering::Relaxed);
}

/// Write `bytes` to stdout and flush: an error (a closed pipe is remembered for `main`)
/// instead of a panic.
pub fn bytes(bytes: &[u8]) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CLOSED.store(true, Ordering::Relaxed);
                "stdout was closed".to_owned()
            } else {
                format!("cannot write to stdout: {e}")
            }
        })
}

/// Write one line to stdout (see [`bytes`]).
pub fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), String> {
    let mut text = args.to_string();
    text.push('\n');
    bytes(text.as_bytes())
}

/// Write one line to stdout; a failure is remembered (see [`stdout_closed`]), not returned.
pub fn show_line(args: std::fmt::Arguments<'_>) {
    // A closed pipe is in CLOSED for `main`; another failure has nowhere to be shown.
    let _ = write_line(args);
}

/// Write one line to stderr; a closed stderr is ignored (there is nowhere left to report).
pub fn write_err_line(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// `out!("...", args)?`: [`write_line`] with `format!` arguments.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))
    };
}

/// `eout!("...", args)`: [`write_err_line`] with `format!` arguments.
macro_rules! eout {
    ($($arg:tt)*) => {
        $crate::output::write_err_line(format_args!($($arg)*))
    };
}

/// `show!("...", args)`: a line of progress for work that must run to its end (the demo
/// removes its temporary files): a closed stdout is remembered for `main`, not returned.
macro_rules! show {
    ($($arg:tt)*) => {
        $crate::output::show_line(format_args!($($arg)*))
    };
}

pub(crate) use {eout, out, show};

/// The shell completion script for `command`, written to stdout.
pub fn completions(mut command: clap::Command, shell: clap_complete::Shell) -> Result<(), String> {
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    // Into memory: the generators panic on a failed write.
    clap_complete::generate(shell, &mut command, name, &mut script);
    bytes(&script)
}

/// The man page (roff) for `command`, written to stdout.
pub fn man(command: clap::Command) -> Result<(), String> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|e| format!("cannot render the man page: {e}"))?;
    bytes(&page)
}
