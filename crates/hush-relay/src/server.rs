//! The accept loop, background jobs (expiry), and graceful shutdown: stop accepting, let every
//! handler finish its current request, let the group-commit writer finish in-flight commits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, Semaphore};

use crate::config::Config;
use crate::handler::{handle, Shared};
use crate::keyfile;
use crate::metrics::{self, Metrics};
use crate::presence::Presence;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, WriteOp};
use crate::writer::Writer;

/// Database file name inside the data directory.
pub const DATABASE_FILE: &str = "relay.sqlite3";

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Key file or socket problem.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Database problem.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// A running relay.
pub struct RunningRelay {
    /// Where clients connect.
    pub local_addr: SocketAddr,
    /// Where metrics are served, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The static public key clients pin.
    pub public_key: [u8; 32],
    /// Live counters.
    pub metrics: Arc<Metrics>,
    shutdown: broadcast::Sender<()>,
    finished: tokio::task::JoinHandle<()>,
}

impl RunningRelay {
    /// Stop accepting, finish in-flight work, and return when everything is committed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.finished.await;
    }

    /// Wait until the relay stops (after [`RunningRelay::shutdown`] from elsewhere, never
    /// otherwise).
    pub async fn wait(self) {
        let _ = self.finished.await;
    }

    /// A sender that triggers shutdown.
    pub fn shutdown_handle(&self) -> broadcast::Sender<()> {
        self.shutdown.clone()
    }
}

/// Open the store, bind the sockets and start serving.
pub async fn start(config: Config) -> Result<RunningRelay, StartError> {
    let (secret, public_key) = keyfile::load_or_create(&config.data)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data.join(DATABASE_FILE))?);
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::default());
    let presence = Arc::new(Presence::default());
    let (writer, writer_thread) = Writer::start(
        Arc::clone(&store),
        Arc::clone(&presence),
        Arc::clone(&metrics),
        config.max_batch,
    )?;
    let (metrics_addr, metrics_task) = match config.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            let addr = listener.local_addr()?;
            let task = tokio::spawn(metrics::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&store),
            ));
            (Some(addr), Some(task))
        }
        None => (None, None),
    };
    let (shutdown, _) = broadcast::channel(1);
    let shared = Arc::new(Shared {
        config,
        static_secret: secret,
        store,
        writer,
        presence,
        metrics: Arc::clone(&metrics),
        known: Default::default(),
        fetches_per_user: Default::default(),
    });
    let expiry_task = tokio::spawn(expire_periodically(Arc::clone(&shared)));
    let finished = tokio::spawn(accept_loop(
        listener,
        shared,
        shutdown.clone(),
        writer_thread,
        vec![Some(expiry_task), metrics_task]
            .into_iter()
            .flatten()
            .collect(),
    ));
    Ok(RunningRelay {
        local_addr,
        metrics_addr,
        public_key,
        metrics,
        shutdown,
        finished,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: broadcast::Sender<()>,
    writer_thread: std::thread::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
) {
    let limit = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut stop = shutdown.subscribe();
    loop {
        let permit = tokio::select! {
            _ = stop.recv() => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let handler_shutdown = shutdown.subscribe();
        let done = done_tx.clone();
        tokio::spawn(async move {
            handle(stream, peer, shared, handler_shutdown).await;
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    tracing::info!("shutting down: waiting for connections to finish");
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(10), done_rx.recv()).await;
    for task in background {
        task.abort();
    }
    // Dropping the last writer handle lets the group-commit thread drain and exit.
    drop(shared);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    tracing::info!("shutdown complete");
}

async fn expire_periodically(shared: Arc<Shared>) {
    let interval = Duration::from_secs(shared.config.expiry_interval_secs.max(1));
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let before_ms = now.saturating_sub(shared.config.ttl_ms());
        if let Err(e) = shared.writer.write(WriteOp::Expire { before_ms }).await {
            tracing::error!(error = %e, "expiry sweep failed");
        }
        tokio::time::sleep(interval).await;
    }
}
