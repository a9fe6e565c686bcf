//! `hush chat`: the terminal UI. One event loop selects over terminal input, events from the
//! network task ([`net`]) and a tick; each event updates the [`app::App`] state, then the
//! screen is drawn once ([`ui::draw`]). The UI never waits for the network. The terminal is
//! restored on exit and on panic.

mod app;
mod groups;
mod keys;
mod net;
mod ui;

use std::io::{self, Stdout};
use std::process::ExitCode;
use std::time::Duration;

use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, EventStream};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use futures_util::StreamExt;
use hush_client::Client;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use app::App;

/// Screen refresh when nothing happens (notices expire, clock).
const TICK: Duration = Duration::from_millis(500);
/// How long to let the network task finish what it is doing on exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Put the terminal back: raw mode off, main screen, bracketed paste off, cursor shown.
/// Safe to call more than once.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        io::stdout(),
        LeaveAlternateScreen,
        DisableBracketedPaste,
        crossterm::cursor::Show
    );
}

/// Restore the terminal before any panic message is printed, then run the previous hook.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

fn setup_terminal() -> io::Result<Term> {
    install_panic_hook();
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = crossterm::execute!(stdout, EnterAlternateScreen, EnableBracketedPaste) {
        restore_terminal();
        return Err(e);
    }
    Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore_terminal())
}

/// Run the chat UI on an open profile; `name` selects (or adds) that contact.
pub async fn run(client: Client, name: Option<String>) -> Result<ExitCode, String> {
    let mut app = App::new(client.name(), name);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let mut terminal = setup_terminal().map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let net = tokio::spawn(net::run(client, command_rx, event_tx));
    if let Ok(size) = terminal.size() {
        app.size = (size.width, size.height);
    }
    let result = event_loop(&mut terminal, &mut app, &commands, &mut events).await;
    restore_terminal();
    // Dropping the sender stops the network task after its current step; a delivery being
    // processed is committed first.
    drop(commands);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, net).await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn event_loop(
    terminal: &mut Term,
    app: &mut App,
    commands: &mpsc::UnboundedSender<net::NetCommand>,
    events: &mut mpsc::UnboundedReceiver<net::NetEvent>,
) -> Result<(), String> {
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        terminal
            .draw(|frame| ui::draw(app, frame))
            .map_err(|e| format!("cannot draw: {e}"))?;
        if app.quit {
            return Ok(());
        }
        let out = tokio::select! {
            event = input.next() => match event {
                Some(Ok(event)) => app.on_terminal_event(event),
                Some(Err(e)) => return Err(format!("cannot read the terminal: {e}")),
                None => return Ok(()),
            },
            event = events.recv() => match event {
                Some(event) => app.on_net_event(event),
                None => return Err(keys::NET_STOPPED.to_owned()),
            },
            _ = tick.tick() => {
                app.on_tick(std::time::Instant::now());
                Vec::new()
            }
        };
        for command in out {
            if commands.send(command).is_err() {
                return Err(keys::NET_STOPPED.to_owned());
            }
        }
    }
}

/// Fixtures shared by the TUI's unit tests.
#[cfg(test)]
mod test_support {
    use hush_client::Contact;

    /// An unverified contact with a dummy key and `unread` unread messages.
    pub(crate) fn contact(name: &str, unread: u32) -> Contact {
        Contact {
            name: name.to_owned(),
            identity_key: "00".repeat(32),
            verified: false,
            changed_key: None,
            unread,
            required: hush_proto::Profile::V2,
        }
    }
}
