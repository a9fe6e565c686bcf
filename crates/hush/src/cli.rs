//! Command-line parsing and the one-shot commands (`init`, `whoami`, `add`, `send`, `recv`,
//! `contacts`, `history`, `verify`, `trust`). Output formats here are relied on by scripts and
//! tests: change them only together with those.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hush_client::store::{Passphrase, StoreError};
use hush_client::{
    default_profile_dir, Client, ClientError, DeliveryState, EmitError, Event, HistoryEntry,
};
use zeroize::Zeroizing;

use crate::output::{self, eout, out};
use crate::sanitize;

/// `--version`: the release and the protocol profiles this build speaks.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (protocol profiles: {} for new sessions; {} sessions made before it still work)",
        env!("CARGO_PKG_VERSION"),
        hush_proto::PROFILE,
        hush_proto::Profile::V1
    )
});

/// The clap definition as the user sees it (also the source of completions and man page).
fn command() -> clap::Command {
    Cli::command().version(VERSION.as_str())
}

/// hush: end-to-end encrypted chat over an untrusted relay.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// Profile directory (default: $XDG_DATA_HOME/hush).
    #[arg(long, global = true)]
    pub profile: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an identity, register NAME on the relay, publish prekeys.
    Init {
        /// Username to register (1-32 of a-z 0-9 _ - .).
        #[arg(long)]
        name: String,
        /// Relay address HOST:PORT; several nodes of one deployment (one relay key) separated
        /// by commas, tried in order when one is down.
        #[arg(long)]
        relay: String,
        /// The relay's public key (hex); without it the key is pinned on first use.
        #[arg(long)]
        relay_key: Option<String>,
        /// Accept an empty passphrase: the profile's secrets are then protected only by file
        /// permissions. Also HUSH_ALLOW_EMPTY_PASSPHRASE=1.
        #[arg(long)]
        allow_empty_passphrase: bool,
    },
    /// Show name, relay addresses, identity fingerprint and the pinned relay key.
    Whoami,
    /// Show the relay addresses, marking the one tried first (it answered last); `relays set`
    /// replaces them.
    Relays {
        /// What to do (without: show).
        #[command(subcommand)]
        command: Option<RelaysCommand>,
    },
    /// Fetch NAME's prekey bundle and start a session (trust on first use).
    Add {
        /// Contact name.
        name: String,
    },
    /// Send TEXT to NAME (or to a group: '#NAME'); exits 0 once the relay has stored it, 3 while it is queued (relay
    /// unreachable or not the pinned one, or refused and retried later: do not resend), 1 when
    /// it can never be delivered or was never queued (an error before it was committed).
    Send {
        /// Contact name, or '#' and a group name.
        name: String,
        /// Message text.
        text: String,
    },
    /// Fetch and show pending messages, then keep receiving for SECS seconds.
    Recv {
        /// Seconds to keep receiving after pending messages.
        #[arg(long, default_value_t = 0)]
        wait: u64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List contacts.
    Contacts {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show the conversation with NAME (or a group's: '#NAME').
    History {
        /// Contact name, or '#' and a group name.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number with NAME (and as a QR code); --confirm marks NAME verified.
    Verify {
        /// Contact name.
        name: String,
        /// Mark verified after comparing.
        #[arg(long)]
        confirm: bool,
    },
    /// Accept NAME's changed identity key.
    Trust {
        /// Contact name.
        name: String,
    },
    /// Group chats (MLS): create, add, remove, leave, list, members. Send with
    /// `hush send '#NAME' TEXT`.
    Group {
        /// What to do.
        #[command(subcommand)]
        command: crate::cli_group::GroupCommand,
    },
    /// Open the terminal chat UI (optionally with NAME selected; NAME is added if new, and
    /// '#NAME' opens a group).
    Chat {
        /// Contact (or '#' and a group name) to open.
        name: Option<String>,
    },
    /// Serve JSON-RPC 2.0 on stdin/stdout, one JSON object per line (for bots and scripts).
    Rpc,
    /// Open the local web UI: serve it on loopback, print its URL (with a one-time token) on
    /// stdout, and open the browser. This process keeps every key; the browser only shows.
    Web {
        /// Listen on ADDR (HOST:PORT) instead of 127.0.0.1 on a free port. A non-loopback
        /// address exposes the profile to the network (plain HTTP): a warning is printed. An
        /// every-interface address (0.0.0.0, [::]) is refused: give one interface's address.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Do not open the browser; only print the URL.
        #[arg(long)]
        no_open: bool,
    },
    /// Show every security property with evidence: embedded relay and temporary profiles on
    /// loopback, a PASS/FAIL table, non-zero exit if any fails (needs no profile or passphrase).
    Demo,
    /// Print the shell completion script, e.g.
    /// `hush completions bash > ~/.local/share/bash-completion/completions/hush`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `hush man > ~/.local/share/man/man1/hush.1`.
    Man,
}

/// `hush relays` subcommands.
#[derive(Subcommand, Debug)]
pub enum RelaysCommand {
    /// Replace the relay addresses: HOST:PORT nodes of the same deployment (they must present
    /// the pinned relay key), separated by commas; the first is tried first.
    Set {
        /// The addresses, e.g. relay1.example:7443,relay2.example:7443.
        list: String,
    },
}

fn passphrase() -> Result<Zeroizing<String>, String> {
    if let Ok(p) = std::env::var("HUSH_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    rpassword::prompt_password("hush passphrase: ")
        .map(Zeroizing::new)
        .map_err(|e| format!("cannot read passphrase (set HUSH_PASSPHRASE for scripts): {e}"))
}

/// Entry point: run the command, print errors plainly, exit non-zero on failure.
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eout!("hush: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    if output::stdout_closed() {
        // The reader went away (`| head`): nothing to report, as with any Unix tool.
        return ExitCode::from(output::CLOSED_STATUS);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            // Error texts embed names and the relay's own words: attacker-controlled.
            eout!("hush: {}", sanitize::line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let dir = cli.profile.clone().unwrap_or_else(default_profile_dir);
    let err = |e: ClientError| e.to_string();
    match cli.command {
        Command::Demo => crate::demo::run().await,
        Command::Completions { shell } => {
            output::completions(command(), shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            output::man(command())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init {
            name,
            relay,
            relay_key,
            allow_empty_passphrase,
        } => {
            let trusted_on_first_use = relay_key.is_none();
            let key = match relay_key {
                Some(hex_key) => Some(
                    hex::decode(hex_key.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or("--relay-key must be 64 hex digits")?,
                ),
                None => None,
            };
            let pass = passphrase()?;
            let allow_empty = allow_empty_passphrase
                || std::env::var("HUSH_ALLOW_EMPTY_PASSPHRASE").is_ok_and(|v| v == "1");
            let pass_arg = if allow_empty {
                Passphrase::allow_empty(pass.as_bytes())
            } else if pass.is_empty() {
                return Err(StoreError::EmptyPassphrase.to_string());
            } else {
                Passphrase::from(pass.as_bytes())
            };
            let client = Client::init(&dir, pass_arg, &name, &relay, key)
                .await
                .map_err(err)?;
            out!(
                "registered {} on {}",
                sanitize::line(client.name()),
                sanitize::line(client.relay())
            )?;
            out!("fingerprint {}", client.identity_key().fingerprint())?;
            let relay_key = hex::encode(client.relay_key().map_err(err)?);
            if trusted_on_first_use {
                // As ssh does on first contact: say what was trusted, and how to check it.
                out!("relay public key: {relay_key}")?;
                out!(
                    "  trusted on first use: nothing vouched that this is your operator's relay."
                )?;
                out!("  Compare it with the key the operator has (hush-relay prints it at start,")?;
                out!("  and it is in DATA/relay.pub on the relay). If they differ, delete this")?;
                out!("  profile and run init again with --relay-key and the operator's key.")?;
            } else {
                out!("relay public key: {relay_key} (as given with --relay-key)")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Chat { name } => {
            let pass = passphrase()?;
            let client = Client::open(&dir, pass.as_bytes()).map_err(err)?;
            drop(pass);
            crate::tui::run(client, name).await
        }
        Command::Web { listen, no_open } => {
            let pass = passphrase()?;
            let mut client = Client::open(&dir, pass.as_bytes()).map_err(err)?;
            drop(pass);
            let options = crate::web::Options {
                listen,
                open: !no_open,
            };
            crate::web::run(&mut client, &dir, options).await
        }
        command => {
            let pass = passphrase()?;
            let mut client = Client::open(&dir, pass.as_bytes()).map_err(err)?;
            drop(pass);
            run_open(&mut client, command).await
        }
    }
}

async fn run_open(client: &mut Client, command: Command) -> Result<ExitCode, String> {
    let err = |e: ClientError| e.to_string();
    match command {
        Command::Init { .. } => Err("profile already exists".into()),
        Command::Chat { .. } => Err("chat needs the profile to itself".into()),
        Command::Web { .. } => Err("web needs the profile to itself".into()),
        Command::Demo => Err("the demo uses its own temporary profiles".into()),
        Command::Completions { .. } | Command::Man => Err("needs no profile".into()),
        Command::Whoami => {
            out!("name {}", sanitize::line(client.name()))?;
            out!("relay {}", sanitize::line(client.relay()))?;
            out!("relays {}", sanitize::line(&client.relays().join(",")))?;
            out!("fingerprint {}", client.identity_key().fingerprint())?;
            out!(
                "relay public key: {}",
                hex::encode(client.relay_key().map_err(err)?)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Relays { command } => {
            if let Some(RelaysCommand::Set { list }) = command {
                client.set_relays(&list).map_err(err)?;
            }
            for relay in client.relays() {
                let first = if relay == client.relay() {
                    "\t(tried first)"
                } else {
                    ""
                };
                out!("{}{first}", sanitize::line(&relay))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Add { name } => {
            let contact = client.add_contact(&name).await.map_err(err)?;
            let name = sanitize::line(&contact.name);
            out!(
                "added {name} (fingerprint {})",
                sanitize::line(short(&contact.identity_key))
            )?;
            out!("compare safety numbers with `hush verify {name}`")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { name, text } => {
            let sent = client
                .send_text_reporting(&name, &text)
                .await
                .map_err(err)?;
            let entry = sent.entry;
            // Other queued messages this send found undeliverable.
            for event in sent.events.iter().filter(|e| !is_failure_of(e, &entry.id)) {
                print_event(event, false)?;
            }
            match entry.state {
                // Committed and queued: exit 3 whatever stopped the flush (1 would invite a
                // resend, and so a duplicate).
                DeliveryState::Queued if sent.error.is_some() => {
                    let why = sent.error.map(|e| e.to_string()).unwrap_or_default();
                    out!(
                        "queued {} ({}; it will be sent by the next command that connects)",
                        entry.id,
                        sanitize::line(&why)
                    )?;
                    Ok(ExitCode::from(3))
                }
                DeliveryState::Queued => match &entry.failure {
                    Some(why) => {
                        out!("queued {} (refused by the relay: {}; it is retried with backoff by later commands)", entry.id, sanitize::line(why))?;
                        Ok(ExitCode::from(3))
                    }
                    None => {
                        out!("queued {} (relay unreachable; it will be sent by the next command that connects)", entry.id)?;
                        Ok(ExitCode::from(3))
                    }
                },
                DeliveryState::Failed => {
                    out!(
                        "failed {}: {}",
                        entry.id,
                        sanitize::line(entry.failure.as_deref().unwrap_or("undeliverable"))
                    )?;
                    Ok(ExitCode::FAILURE)
                }
                _ => {
                    out!("sent {}", entry.id)?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Recv { wait, json } => {
            // At least once: a message counts as shown only once its line is flushed; one a
            // killed run committed but never printed comes first next time.
            let result = client
                .receive_emitting(Duration::from_secs(wait), |event| {
                    print_event(event, json)?;
                    std::io::Write::flush(&mut std::io::stdout())
                        .map_err(|e| format!("cannot write to stdout: {e}"))
                })
                .await;
            match result {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(EmitError::Client(e)) => Err(e.to_string()),
                Err(EmitError::Emit(e)) => Err(e),
            }
        }
        Command::Contacts { json } => {
            for c in client.contacts().map_err(err)? {
                let session = client.session_profile(&c.name).map_err(err)?;
                if json {
                    out!("{}", crate::rpc::contact_json(&c, session))?;
                } else {
                    let mark = if c.changed_key.is_some() {
                        "KEY CHANGED"
                    } else if c.verified {
                        "verified"
                    } else {
                        "unverified"
                    };
                    out!(
                        "{}\t{}\t{} unread\t{}",
                        sanitize::line(&c.name),
                        mark,
                        c.unread,
                        session.map_or("no session", hush_proto::Profile::name)
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { name, json } => {
            for m in client.history(&name).map_err(err)? {
                if json {
                    out!("{}", entry_json(&m))?;
                } else {
                    let who = if m.outgoing { "me" } else { m.contact.as_str() };
                    let header = format!("[{}] {}: ", timestamp(m.sent_at), sanitize::line(who));
                    out!(
                        "{header}{} ({})",
                        terminal_text(&m.text, &header),
                        match (&m.failure, m.state) {
                            (Some(why), DeliveryState::Failed) => {
                                format!("failed: {}", sanitize::line(why))
                            }
                            (Some(why), DeliveryState::Queued) => {
                                format!("queued: {}", sanitize::line(why))
                            }
                            _ => state_label(m.state).to_owned(),
                        }
                    )?;
                }
            }
            client.mark_read(&name).map_err(err)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { name, confirm } => {
            let number = client.safety_number(&name).map_err(err)?;
            let contact = client.contact(&name).map_err(err)?;
            let name = sanitize::line(&name);
            if contact.as_ref().is_some_and(|c| c.changed_key.is_some()) {
                out!("WARNING: {name}'s identity key has CHANGED. This is the number for the NEW key.")?;
            }
            out!("safety number with {name}:\n{}", number.grouped())?;
            if let Some(stored_name) = contact.as_ref().map(|c| c.name.clone()) {
                let session = client.session_profile(&stored_name).map_err(err)?;
                out!(
                    "session: {}",
                    session.map_or("none yet", hush_proto::Profile::name)
                )?;
            }
            match qrcode::QrCode::new(number.qr_payload()) {
                Ok(code) => out!(
                    "{}",
                    code.render::<qrcode::render::unicode::Dense1x2>()
                        .quiet_zone(true)
                        .build()
                )?,
                Err(e) => out!("(cannot draw QR code: {e})")?,
            }
            if confirm {
                client.confirm_verified(&name).map_err(err)?;
                out!("{name} marked verified")?;
            } else {
                out!("if the numbers match on both devices, run `hush verify {name} --confirm`")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trust { name } => {
            client.trust(&name).map_err(err)?;
            let name = sanitize::line(&name);
            out!("accepted the new identity key for {name}; verify it with `hush verify {name}`")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Group { command } => crate::cli_group::run(client, command).await,
        Command::Rpc => crate::rpc::run(client).await,
    }
}

/// Peer text to print after `header`: sanitised, and on a terminal broken at its width so
/// that no wrapped screen line can start like a header (see [`sanitize::text_for_width`]).
fn terminal_text(text: &str, header: &str) -> String {
    use std::io::IsTerminal;
    let width = std::io::stdout()
        .is_terminal()
        .then(crossterm::terminal::size)
        .and_then(Result::ok)
        .map(|(columns, _)| usize::from(columns));
    match width {
        Some(width) => {
            let used = header
                .chars()
                .map(|c| unicode_width::UnicodeWidthChar::width(c).unwrap_or(1))
                .sum();
            sanitize::text_for_width(text, used, width)
        }
        None => sanitize::text(text),
    }
}

/// A UTC timestamp for humans, from milliseconds since the Unix epoch.
pub fn timestamp(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

fn short(key_hex: &str) -> &str {
    key_hex.get(..16).unwrap_or(key_hex)
}

fn state_label(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Queued => "queued",
        DeliveryState::OnRelay => "on relay",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Received => "received",
        DeliveryState::Failed => "failed",
    }
}

/// The JSON shape of a message, shared by `recv --json`, `history --json` and `hush rpc`.
pub fn entry_json(m: &HistoryEntry) -> serde_json::Value {
    serde_json::json!({
        "from": if m.outgoing { None } else { Some(m.contact.clone()) },
        "to": if m.outgoing { Some(m.contact.clone()) } else { None },
        "contact": m.contact,
        "text": m.text,
        "id": m.id,
        "sent_at": m.sent_at,
        "received_at": m.received_at,
        "state": state_label(m.state),
        "verified": m.verified,
        "key_changed": m.key_changed,
        "failure": m.failure,
        "group": m.group,
    })
}

/// Whether `event` is the failure of message `id` (reported by `send` as its own result).
fn is_failure_of(event: &Event, id: &str) -> bool {
    matches!(event, Event::Failed { id: failed, .. } if failed == id)
}

pub(crate) fn print_event(event: &Event, json: bool) -> Result<(), String> {
    match event {
        Event::Message(m) => {
            if json {
                out!("{}", entry_json(m))?;
            } else {
                let flag = if m.key_changed {
                    " [KEY CHANGED - not the trusted key]"
                } else if m.verified {
                    ""
                } else {
                    " [unverified]"
                };
                let who = sanitize::line(&m.contact);
                let header = match &m.group {
                    Some(group) => format!("#{} {who}: ", sanitize::line(group)),
                    None => format!("{who}: "),
                };
                out!("{header}{}{flag}", terminal_text(&m.text, &header))?;
            }
        }
        Event::KeyChanged { contact } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"event": "key_changed", "contact": contact})
                )?;
            } else {
                let contact = sanitize::line(contact);
                eout!("WARNING: {contact}'s identity key has CHANGED. Sending to {contact} is blocked until you run `hush verify {contact}` and `hush trust {contact}`.");
            }
        }
        Event::Delivered { contact, ids } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"event": "delivered", "contact": contact, "ids": ids})
                )?;
            }
        }
        Event::Failed {
            contact,
            id,
            reason,
        } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"event": "failed", "contact": contact, "id": id, "reason": reason})
                )?;
            } else {
                eout!(
                    "a message to {} failed ({id}): {}",
                    sanitize::line(contact),
                    sanitize::line(reason)
                );
            }
        }
        Event::Group { group, change } => {
            if json {
                let mut value = crate::cli_group::change_json(group, change);
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("event".into(), "group".into());
                }
                out!("{value}")?;
            } else {
                out!("{}", crate::cli_group::change_text(group, change))?;
            }
        }
        Event::Rejected { contact, reason } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"event": "rejected", "contact": contact, "reason": reason})
                )?;
            } else {
                eout!(
                    "rejected a message{}: {}",
                    contact
                        .as_ref()
                        .map(|c| format!(" from {}", sanitize::line(c)))
                        .unwrap_or_default(),
                    sanitize::line(reason)
                );
            }
        }
    }
    Ok(())
}
