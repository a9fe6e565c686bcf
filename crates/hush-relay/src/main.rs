//! `hush-relay`: run the relay until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hush_relay::Config;

/// The hush relay: authenticated, durable store-and-forward for end-to-end encrypted envelopes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (overrides the config file).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory for the key and database (overrides the config file).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// TOML configuration file (see docs/OPERATIONS.md).
    #[arg(long)]
    config: Option<PathBuf>,
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
        let _ = stop.send(());
    });
    relay.wait().await;
    ExitCode::SUCCESS
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
