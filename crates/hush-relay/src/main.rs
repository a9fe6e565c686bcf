//! `hush-relay`: run the relay until SIGINT or SIGTERM, or run an operator command on its data.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use hush_relay::config::{LogFormat, StoreKind};
use hush_relay::store::postgres::PostgresStore;
use hush_relay::store::sqlite::SqliteStore;
use hush_relay::Config;

/// The hush relay: authenticated, durable store-and-forward for end-to-end encrypted envelopes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Operator command; without one, run the relay.
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on (overrides the config file).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the key and database (overrides the config file).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// TOML configuration file (see docs/OPERATIONS.md).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Store: `sqlite` (default, in the data directory) or a `postgres://` URL shared by
    /// several relay nodes (overrides the config file). Global, so `free-name` uses it too.
    #[arg(long, global = true)]
    store: Option<String>,
    /// NATS URL for the doorbell between relay nodes (overrides the config file).
    #[arg(long)]
    nats: Option<String>,
    /// Log line format on stderr (overrides the config file; default text).
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Free a registered name so that a new identity can register it.
    ///
    /// For a user who lost their keys. Deletes the registration and the old identity's
    /// prekeys; the user's contacts will see a key change. Works while the relay runs.
    FreeName {
        /// The name to free.
        name: String,
    },
    /// Print the shell completion script, e.g.
    /// `hush-relay completions bash > ~/.local/share/bash-completion/completions/hush-relay`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `hush-relay man > ~/.local/share/man/man1/hush-relay.1`.
    Man,
}

/// `--version`: the release and the protocol profiles this build speaks.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (protocol profiles: {})",
        env!("CARGO_PKG_VERSION"),
        hush_proto::PROFILE
    )
});

/// The clap definition as the operator sees it (also the source of completions and man page).
fn command() -> clap::Command {
    Args::command().version(VERSION.as_str())
}

/// Exit status after stdout was closed by its reader (128 + SIGPIPE, as shells report it).
const CLOSED_STDOUT: u8 = 141;

/// Write generated text (completions, man page) to stdout: a closed pipe is a quiet exit, not
/// a panic.
fn print_generated(text: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(CLOSED_STDOUT),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hush-relay: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// `completions` and `man`, generated from the clap definitions; `None` for other commands.
fn generate(command: Option<&Command>) -> Option<ExitCode> {
    let mut text = Vec::new();
    match command? {
        Command::Completions { shell } => {
            let mut cmd = self::command();
            // Into memory: the generators panic on a failed write.
            clap_complete::generate(*shell, &mut cmd, "hush-relay", &mut text);
        }
        Command::Man => {
            if let Err(e) = clap_mangen::Man::new(self::command()).render(&mut text) {
                let _ = writeln!(std::io::stderr(), "hush-relay: {e}");
                return Some(ExitCode::from(1));
            }
        }
        Command::FreeName { .. } => return None,
    }
    Some(print_generated(&text))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::from_arg_matches(&command().get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    if let Some(code) = generate(args.command.as_ref()) {
        return code;
    }
    let mut config = match &args.config {
        Some(path) => match Config::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("hush-relay: {e}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(data) = args.data {
        config.data = data;
    }
    if args.metrics.is_some() {
        config.metrics = args.metrics;
    }
    if let Some(store) = args.store {
        config.store = store;
    }
    if args.nats.is_some() {
        config.nats = args.nats;
    }
    if let Some(format) = args.log_format {
        config.log_format = format;
    }
    // After the config is read, since it may choose the format; nothing is logged before.
    init_logging(config.log_format);
    if let Some(Command::FreeName { name }) = &args.command {
        let (config, name) = (config.clone(), name.clone());
        // On a blocking thread: the PostgreSQL driver runs its own runtime.
        return tokio::task::spawn_blocking(move || free_name(&config, &name))
            .await
            .unwrap_or(ExitCode::from(2));
    }
    let relay = match hush_relay::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hush-relay: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    // A closed stdout must not stop the relay (the key is also in DATA/relay.pub).
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "hush-relay listening on {}", relay.local_addr);
    let _ = writeln!(out, "relay public key: {}", hex::encode(relay.public_key));
    if let Some(addr) = relay.metrics_addr {
        let _ = writeln!(out, "metrics on http://{addr}/metrics");
    }
    let _ = out.flush();
    drop(out);

    let stop = relay.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.trigger();
    });
    relay.wait().await;
    ExitCode::SUCCESS
}

/// Send `tracing` events to stderr, filtered by `HUSH_LOG` (default `info`).
///
/// Colour codes only when stderr is a terminal (and `NO_COLOR` is unset): under systemd,
/// `2>relay.log` or a container runtime, escapes would end up in the log files and break
/// `grep` and log parsers.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HUSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(std::io::stderr().is_terminal() && !no_color)
                .init();
        }
        // JSON has no colour; one object per line, as log collectors expect.
        LogFormat::Json => builder.json().init(),
    }
}

/// `hush-relay free-name NAME`: exit 0 when freed, 1 when the name was not registered, 2 on
/// a storage error. On the configured store (`--store` / `store`): SQLite in the data
/// directory, or the PostgreSQL database all nodes share.
fn free_name(config: &Config, name: &str) -> ExitCode {
    let freed = match config.store_kind() {
        Err(e) => {
            eprintln!("hush-relay: {e}");
            return ExitCode::from(2);
        }
        Ok(StoreKind::Sqlite) => {
            let path = config.data.join(hush_relay::server::DATABASE_FILE);
            if !path.exists() {
                eprintln!("hush-relay: no relay database at {}", path.display());
                return ExitCode::from(2);
            }
            SqliteStore::open(&path).and_then(|store| store.free_name(name))
        }
        Ok(StoreKind::Postgres(url)) => {
            PostgresStore::connect(&url).and_then(|store| store.free_name(name))
        }
    };
    match freed {
        Ok(Some(identity)) => {
            // Freed whether or not stdout can still say so.
            let _ = writeln!(
                std::io::stdout(),
                "freed name {name:?} (was identity {}); it can be registered again",
                hex::encode(identity)
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("hush-relay: no user is registered as {name:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hush-relay: {e}");
            ExitCode::from(2)
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
