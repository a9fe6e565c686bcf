//! `hush`: the end-to-end encrypted chat client. Every command takes `--profile DIR`; the
//! passphrase comes from `HUSH_PASSPHRASE` or is asked at the terminal.

mod cli;
mod cli_group;
mod demo;
mod output;
mod rpc;
mod sanitize;
mod tui;
mod web;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
