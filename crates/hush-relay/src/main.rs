//! `hush-relay`: run the relay until SIGINT or SIGTERM, or run an operator command on its data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUSH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
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
    if let Some(Command::FreeName { name }) = &args.command {
        return free_name(&config, name);
    }
    let relay = match hush_relay::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hush-relay: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("hush-relay listening on {}", relay.local_addr);
    println!("relay public key: {}", hex::encode(relay.public_key));
    if let Some(addr) = relay.metrics_addr {
        println!("metrics on http://{addr}/metrics");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let stop = relay.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.trigger();
    });
    relay.wait().await;
    ExitCode::SUCCESS
}

/// `hush-relay free-name NAME`: exit 0 when freed, 1 when the name was not registered, 2 on
/// a storage error.
fn free_name(config: &Config, name: &str) -> ExitCode {
    let path = config.data.join(hush_relay::server::DATABASE_FILE);
    if !path.exists() {
        eprintln!("hush-relay: no relay database at {}", path.display());
        return ExitCode::from(2);
    }
    let freed = SqliteStore::open(&path).and_then(|store| store.free_name(name));
    match freed {
        Ok(Some(identity)) => {
            println!(
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
