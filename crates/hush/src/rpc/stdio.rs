//! The stdio transport of `hush rpc`: one JSON object per line on stdin and stdout.
//!
//! A dedicated thread reads stdin (a blocking read that never holds up runtime shutdown) and
//! hands complete lines over a bounded channel. The owner task alternates: it answers every
//! queued request, then calls [`Client::pump_until`] with the channel as its interrupt: the
//! wait for a delivery (its one cancel-safe part) ends when a line arrives, so a request waits
//! only for a delivery being processed at that moment. A notification counts as emitted once
//! its line is flushed.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use hush_client::Client;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::dispatch::{Caller, Dispatcher, Held};
use super::protocol::too_long;
use super::MAX_LINE;

/// Longest one pump step waits for a delivery (a line on stdin ends it sooner): paces the
/// idle work (keep-alive, retries).
const PUMP_WAIT: Duration = Duration::from_millis(200);
/// Lines read ahead of the owner task.
const INPUT_QUEUE: usize = 64;
/// Prefix of diagnostics on stderr.
const LABEL: &str = "hush rpc";

/// What the stdin thread hands over.
enum Input {
    /// One line, without its terminator.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE`] (its length), already discarded.
    TooLong(usize),
    /// End of input.
    Eof,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Serve JSON-RPC on stdin/stdout until EOF.
pub async fn run(client: &mut Client) -> Result<ExitCode, String> {
    let (tx, mut rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::Builder::new()
        .name("hush-rpc-stdin".into())
        .spawn(move || read_stdin(&tx))
        .map_err(|e| format!("cannot start the stdin reader: {e}"))?;
    eprintln!(
        "hush rpc: serving JSON-RPC 2.0 on stdin/stdout as {}",
        crate::sanitize::line(client.name())
    );
    let mut rpc = Stdio {
        core: Dispatcher::new(client, LABEL)?,
        caller: Caller::default(),
        stdout: tokio::io::stdout(),
    };
    let outcome = rpc.serve(&mut rx).await;
    // Finish pending work: whatever is still queued (receipts, sends that met a relay
    // outage) gets one more chance. It stays committed in the profile either way.
    // Messages it gives up are announced even if it then stops on an error.
    let flushed = rpc.core.client.flush_outbox().await;
    for event in &flushed.events {
        if let Err(e) = rpc.emit(Held::event(event)).await {
            eprintln!("hush rpc: {}", crate::sanitize::line(&e));
            break;
        }
    }
    if let Some(e) = flushed.error {
        eprintln!(
            "hush rpc: could not flush the outbox ({}); it will be sent by the next command that connects",
            crate::sanitize::line(&e.to_string())
        );
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The stdin thread: complete lines, bounded in length, until EOF or the owner goes away.
fn read_stdin(tx: &mpsc::Sender<Input>) {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    loop {
        let input = match read_line(&mut reader, MAX_LINE) {
            Ok(None) => Input::Eof,
            Ok(Some(Ok(line))) => Input::Line(line),
            Ok(Some(Err(len))) => Input::TooLong(len),
            Err(e) => Input::Failed(e),
        };
        let last = matches!(input, Input::Eof | Input::Failed(_));
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    }
}

/// One line without its `\n`: `Ok(None)` at EOF, `Err(len)` for a line over `max` bytes
/// (consumed and discarded). A final line without a terminator counts.
fn read_line(
    reader: &mut impl BufRead,
    max: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut line = Vec::new();
    let mut len = 0usize;
    let mut seen_any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !seen_any {
                return Ok(None);
            }
            break;
        }
        seen_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = match newline {
            Some(i) => buf.get(..i).unwrap_or_default(),
            None => buf,
        };
        len = len.saturating_add(chunk.len());
        if len <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if len > max {
        return Ok(Some(Err(len)));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Ok(line)))
}

/// Whether to keep serving.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The dispatcher with its one caller, writing to stdout.
struct Stdio<'a> {
    core: Dispatcher<'a>,
    caller: Caller,
    stdout: tokio::io::Stdout,
}

impl Stdio<'_> {
    /// Alternate between answering queued requests and one pump step, until EOF.
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Input>) -> Result<(), String> {
        let mut backoff = Backoff::new(LABEL);
        loop {
            // At most one queue's worth per round, so a flood of requests cannot starve the
            // relay.
            for _ in 0..INPUT_QUEUE {
                match rx.try_recv() {
                    Ok(input) => {
                        if self.input(input).await? == Flow::Stop {
                            return Ok(());
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if backoff.due() {
                // A line on stdin ends the wait for a delivery at once.
                let mut interrupted = None;
                match self.core.client.pump_until(PUMP_WAIT, rx.recv()).await {
                    Ok((events, input)) => {
                        backoff.succeeded();
                        for event in &events {
                            self.notify(Held::event(event)).await?;
                        }
                        interrupted = input;
                    }
                    Err(e) => backoff.failed(&e),
                }
                self.status().await?;
                if let Some(input) = interrupted {
                    let Some(input) = input else { return Ok(()) };
                    if self.input(input).await? == Flow::Stop {
                        return Ok(());
                    }
                }
            } else {
                // Relay is backing off: wait for a request or the next attempt. Both are
                // cancel-safe.
                tokio::select! {
                    input = rx.recv() => match input {
                        Some(input) => {
                            if self.input(input).await? == Flow::Stop {
                                return Ok(());
                            }
                        }
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep_until(backoff.next_at) => {}
                }
            }
        }
    }

    async fn input(&mut self, input: Input) -> Result<Flow, String> {
        match input {
            Input::Line(line) => {
                self.line(&line).await?;
                Ok(Flow::Continue)
            }
            Input::TooLong(len) => {
                self.write(&too_long(len, MAX_LINE)).await?;
                Ok(Flow::Continue)
            }
            Input::Eof => Ok(Flow::Stop),
            Input::Failed(e) => {
                eprintln!("hush rpc: cannot read stdin: {e}");
                Ok(Flow::Stop)
            }
        }
    }

    /// One request line: answer it (unless it is a notification), then release held
    /// notifications if it subscribed.
    async fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if let Some(response) = self.core.handle(&mut self.caller, line).await {
            self.write(&response).await?;
        }
        if self.caller.subscribed {
            while let Some(held) = self.core.next_held() {
                self.emit(held).await?;
            }
        }
        self.status().await
    }

    /// A `status` notification if the relay state changed and the consumer asked for them
    /// (only then is the outbox read: consumers that never call `status` cost nothing more).
    async fn status(&mut self) -> Result<(), String> {
        if !self.caller.gets_status() {
            return Ok(());
        }
        let Some(now) = self.core.status_now() else {
            return Ok(());
        };
        match self.core.status_update(&mut self.caller, now) {
            Some(notification) => self.write(&notification).await,
            None => Ok(()),
        }
    }

    /// Send a notification now, or hold it until `subscribe`.
    async fn notify(&mut self, held: Held) -> Result<(), String> {
        if self.caller.subscribed {
            return self.emit(held).await;
        }
        self.core.hold(held);
        Ok(())
    }

    /// Write a notification; a message in it counts as emitted once the line is flushed.
    async fn emit(&mut self, held: Held) -> Result<(), String> {
        self.write(&held.notification).await?;
        self.core.emitted(&held);
        Ok(())
    }

    /// One JSON line on stdout, flushed.
    async fn write(&mut self, value: &Value) -> Result<(), String> {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        let written = async {
            self.stdout.write_all(&line).await?;
            self.stdout.flush().await
        }
        .await;
        written.map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // The consumer went away: end quietly, as the other commands do.
                crate::output::note_closed();
                "stdout was closed".to_owned()
            } else {
                format!("cannot write to stdout: {e}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, usize>> {
        let mut reader = std::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn lines_are_split_bounded_and_cr_trimmed() {
        let got = lines(b"ab\r\n\nlonger than eight\nlast", 8);
        assert_eq!(
            got,
            vec![
                Ok(b"ab".to_vec()),
                Ok(Vec::new()),
                Err(17),
                Ok(b"last".to_vec())
            ]
        );
        assert!(lines(b"", 8).is_empty());
    }
}
