//! The accept loop, background jobs (expiry), and graceful shutdown: stop accepting, let every
//! handler finish its current request, let the group-commit writer finish in-flight commits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::config::{redacted_url, Config, StoreKind};
use crate::doorbell::{self, Doorbell};
use crate::handler::{handle, Shared};
use crate::keyfile;
use crate::limits::source_key;
use crate::metrics::{self, Metrics};
use crate::presence::Presence;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, WriteOp};
use crate::writer::Writer;

/// Database file name inside the data directory.
pub const DATABASE_FILE: &str = "relay.sqlite3";
/// How long shutdown waits for connections to finish their current request and flush replies
/// before closing them. Public so that a service manager's stop timeout can be checked
/// against it (contrib/systemd/hush-relay.service).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Key file or socket problem.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Database problem.
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    /// A setting that cannot be used (never quotes a URL).
    #[error("{0}")]
    Config(String),
}

/// Open the store `config` selects: SQLite in the data directory, or PostgreSQL (connected on
/// a blocking thread: the synchronous driver runs its own runtime). Logs which one, never the
/// URL itself.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match config.store_kind().map_err(StartError::Config)? {
        StoreKind::Sqlite => {
            let path = config.data.join(DATABASE_FILE);
            tracing::info!(path = %path.display(), "store=sqlite");
            Ok(Arc::new(SqliteStore::open(&path)?))
        }
        StoreKind::Postgres(url) => {
            tracing::info!("store=postgres {}", redacted_url(&url));
            let store = tokio::task::spawn_blocking(move || PostgresStore::connect(&url))
                .await
                .map_err(|e| StartError::Config(format!("store connect task failed: {e}")))??;
            Ok(Arc::new(store))
        }
    }
}

/// Drop a store on a blocking thread: the PostgreSQL driver's connections block (and own a
/// runtime) when closed, which must not happen on an async worker.
pub async fn close_store(store: Arc<dyn Store>) {
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
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
    shutdown: ShutdownHandle,
    finished: tokio::task::JoinHandle<()>,
}

/// Starts a relay's graceful shutdown. A `watch` rather than a broadcast: a connection accepted
/// while shutdown is being signalled subscribes after the signal, and must still see it (with a
/// broadcast it missed it, kept its connection open and held shutdown forever).
#[derive(Clone, Debug)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// Begin shutdown (idempotent).
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Resolves once shutdown has been triggered, however late the receiver was made (or if every
/// handle is gone). Cancel-safe.
pub async fn stopping(receiver: &mut watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

impl RunningRelay {
    /// Stop accepting, finish in-flight work, and return when everything is committed.
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        let _ = self.finished.await;
    }

    /// Wait until the relay stops (after [`RunningRelay::shutdown`] from elsewhere, never
    /// otherwise).
    pub async fn wait(self) {
        let _ = self.finished.await;
    }

    /// A sender that triggers shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }
}

/// Open the store, bind the sockets and start serving.
pub async fn start(config: Config) -> Result<RunningRelay, StartError> {
    let (secret, public_key) = keyfile::load_or_create(&config.data)?;
    let shared_store = matches!(config.store_kind(), Ok(StoreKind::Postgres(_)));
    // Sockets first: a failure after the store is open would drop it on this async thread.
    let listener = TcpListener::bind(config.listen).await?;
    let local_addr = listener.local_addr()?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let store = open_store(&config).await?;
    let metrics = Arc::new(Metrics::default());
    metrics.storage_max_bytes.store(
        config.storage_max_bytes,
        std::sync::atomic::Ordering::Relaxed,
    );
    let presence = Arc::new(Presence::with_shared_store(
        Arc::clone(&metrics),
        shared_store,
    ));
    let (ringer, doorbell) = match &config.nats {
        Some(url) => {
            tracing::info!(
                "doorbell: nats {} subject={}",
                redacted_url(url),
                doorbell::subject(&config.nats_prefix)
            );
            match doorbell::start(
                url,
                &config.nats_prefix,
                Arc::clone(&presence),
                Arc::clone(&metrics),
            )
            .await
            {
                Ok((ringer, doorbell)) => (Some(ringer), Some(doorbell)),
                Err(e) => {
                    close_store(store).await;
                    return Err(StartError::Config(e));
                }
            }
        }
        None => (None, None),
    };
    let writer = Writer::start(
        Arc::clone(&store),
        Arc::clone(&presence),
        Arc::clone(&metrics),
        config.max_batch,
        ringer,
    );
    let (writer, writer_thread) = match writer {
        Ok(w) => w,
        Err(e) => {
            if let Some(doorbell) = doorbell {
                doorbell.stop();
            }
            close_store(store).await;
            return Err(e.into());
        }
    };
    let shutdown = ShutdownHandle(watch::channel(false).0);
    let (metrics_addr, metrics_task) = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().ok();
            let task = tokio::spawn(metrics::serve(
                listener,
                Arc::clone(&metrics),
                Arc::clone(&store),
                metrics::Health {
                    stopping: shutdown.subscribe(),
                    nats_configured: config.nats.is_some(),
                },
                config.metrics_max_connections,
                config.metrics_timeout(),
            ));
            (addr, Some(task))
        }
        None => (None, None),
    };
    let last_store = Arc::clone(&store);
    let shared = Arc::new(Shared {
        config,
        static_secret: secret,
        store,
        writer,
        presence,
        metrics: Arc::clone(&metrics),
        known: Default::default(),
        fetches_per_user: Default::default(),
        sources: Default::default(),
        identities: Default::default(),
    });
    let expiry_task = tokio::spawn(expire_periodically(Arc::clone(&shared)));
    let finished = tokio::spawn(accept_loop(
        listener,
        shared,
        shutdown.clone(),
        writer_thread,
        Background {
            tasks: vec![Some(expiry_task), metrics_task]
                .into_iter()
                .flatten()
                .collect(),
            doorbell,
            store: last_store,
        },
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

/// What the accept loop stops after the connections: background tasks, the doorbell, and the
/// last handle on the store (closed on a blocking thread).
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    doorbell: Option<Doorbell>,
    store: Arc<dyn Store>,
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: ShutdownHandle,
    writer_thread: std::thread::JoinHandle<()>,
    background: Background,
) {
    let limit = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut stop = shutdown.subscribe();
    loop {
        // Reap finished connections, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = stopping(&mut stop) => break,
            permit = Arc::clone(&limit).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stopping(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One host (or IPv6 /64) cannot hold every slot: over its cap, close before the
        // handshake costs anything.
        let Some(source) = shared
            .sources
            .try_acquire(source_key(peer.ip()), shared.config.max_connections_per_ip)
        else {
            shared.metrics.reject("per_ip_limit");
            tracing::debug!(%peer, "per-address connection cap reached");
            drop(stream);
            continue;
        };
        let shared = Arc::clone(&shared);
        let handler_shutdown = shutdown.subscribe();
        connections.spawn(async move {
            handle(stream, peer, shared, handler_shutdown).await;
            drop(source);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutting down: waiting for connections to finish"
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Whatever a connection was doing, its writes are already queued for the commit
        // thread; a client that got no reply retries, and its message id makes that harmless.
        tracing::warn!(
            open = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.shutdown().await;
    }
    for task in background.tasks {
        task.abort();
    }
    // Dropping the last writer handle lets the group-commit thread drain and exit. Every
    // connection task (each holding a handle) has ended by now, so this cannot hang.
    drop(shared);
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    if let Some(doorbell) = background.doorbell {
        doorbell.stop();
    }
    close_store(background.store).await;
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
