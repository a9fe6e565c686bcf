//! Relay settings: command-line flags, an optional TOML file, and the documented defaults of
//! every limit (see docs/OPERATIONS.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Every tunable of the relay. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on for clients.
    pub listen: SocketAddr,
    /// Directory for the static key and the database.
    pub data: PathBuf,
    /// Address for the Prometheus text endpoint (off when unset).
    pub metrics: Option<SocketAddr>,
    /// Most simultaneous client connections; further clients wait in the kernel backlog.
    pub max_connections: usize,
    /// Most simultaneous connections from one source IP address, counted from accept (before
    /// the handshake), so one host cannot hold every slot. Generous, because NAT puts many
    /// users behind one address; hush-loadgen raises it for its 10k connections from loopback.
    pub max_connections_per_ip: usize,
    /// Most simultaneous authenticated connections of one identity: identities are free, but
    /// each connection of one still costs memory, so one key cannot hold many.
    pub max_connections_per_identity: usize,
    /// Seconds a client has to finish the Noise handshake and its Hello.
    pub handshake_timeout_secs: u64,
    /// Seconds without a complete frame before a connection is closed (clients ping).
    pub idle_timeout_secs: u64,
    /// Sends per second per connection (token bucket refill rate).
    pub send_rate: f64,
    /// Send burst per connection (token bucket size).
    pub send_burst: f64,
    /// Bundle fetches per second per connection; low, since each pops a one-time prekey.
    pub fetch_rate: f64,
    /// Bundle fetch burst per connection.
    pub fetch_burst: f64,
    /// PublishPrekeys per second per connection: each one is a write transaction.
    pub publish_rate: f64,
    /// PublishPrekeys burst per connection.
    pub publish_burst: f64,
    /// Fetches per second of any one user's bundle, from all connections together: bounds how
    /// fast anyone (with however many identities) can drain that user's one-time prekeys.
    pub per_user_fetch_rate: f64,
    /// Burst of fetches of one user's bundle.
    pub per_user_fetch_burst: f64,
    /// Messages a mailbox may hold.
    pub mailbox_max_messages: u32,
    /// Envelope bytes a mailbox may hold.
    pub mailbox_max_bytes: u64,
    /// Envelope bytes all mailboxes together may hold: names are free, so per-mailbox quotas
    /// alone do not bound the disk. Senders get StorageFull beyond it.
    pub storage_max_bytes: u64,
    /// Envelope bytes stored from one sender identity, not yet acked or expired: one sender
    /// (with however many free names to write to) cannot fill `storage_max_bytes` and so
    /// silence everyone. Once all mailboxes hold more than 90 % of `storage_max_bytes`, a
    /// sender may hold only a quarter of this, so light senders keep the last 10 %.
    /// Senders get StorageFull beyond it.
    pub sender_max_bytes: u64,
    /// Seconds a message is kept before it expires undelivered (default 30 days).
    pub message_ttl_secs: u64,
    /// Seconds between expiry sweeps.
    pub expiry_interval_secs: u64,
    /// One-time prekeys kept per identity.
    pub max_one_time_prekeys: u32,
    /// One-time PQ prekeys (`hush-v2`, 1 252 bytes each on the wire) kept per identity. Fewer
    /// than the classical ones because each is 39 times larger: 200 take about 284 KB per user
    /// in the database.
    /// When they run out, bundles carry the identity's last-resort PQ prekey instead.
    pub max_one_time_pq_prekeys: u32,
    /// One-time MLS KeyPackages kept per identity (about 300 bytes each); a publish beyond it
    /// is refused. When they run out, fetches get the identity's last-resort KeyPackage.
    pub max_one_time_key_packages: u32,
    /// Most members a group may have on the relay: a commit growing it further is refused.
    /// Bounds the work of one fan-out (one mailbox row per member).
    pub max_group_members: u32,
    /// Commits kept per group for `GroupSync` (besides the message TTL): a member offline for
    /// more commits than this re-joins instead of catching up.
    pub group_log_max_commits: u32,
    /// Frames queued for one connection's socket; a slow reader stops being fed and its
    /// messages wait in the mailbox.
    pub outbound_queue: usize,
    /// Bytes of frames queued per connection's socket (a frame larger than this still goes,
    /// alone), so 128 maximum-size frames cannot pin 8 MiB per connection.
    pub outbound_queue_bytes: usize,
    /// Messages held in memory per connection for fast live delivery before falling back to
    /// reading the mailbox.
    pub live_queue: usize,
    /// Envelope bytes held in memory per subscribed connection, in its live queue and in its
    /// current catch-up page each; beyond it, live delivery falls back to reading the mailbox
    /// (as when `live_queue` is reached), and a catch-up page ends early.
    pub live_queue_bytes: usize,
    /// Most simultaneous connections to the metrics endpoint; more wait in the kernel backlog.
    pub metrics_max_connections: usize,
    /// Seconds a metrics client has to send its request and read the reply.
    pub metrics_timeout_secs: u64,
    /// Most writes committed in one transaction (group commit).
    pub max_batch: usize,
    /// How log lines on stderr are written (`--log-format` wins over the file).
    pub log_format: LogFormat,
    /// Where durable state lives: `sqlite` (the default: `<data>/relay.sqlite3`, one node) or
    /// a `postgres://` / `postgresql://` URL (shared by any number of relay nodes). The static
    /// key stays in `data` either way; every node of one relay needs the same key file.
    pub store: String,
    /// NATS server URL for the doorbell between relay nodes sharing a PostgreSQL store
    /// (optional; without it, other nodes' mail is found by `mailbox_recheck_ms`).
    pub nats: Option<String>,
    /// Subject prefix on NATS: the doorbell is published on `<nats_prefix>.bell`. Nodes of one
    /// relay share it; relays sharing one NATS server need different prefixes.
    pub nats_prefix: String,
    /// Milliseconds between re-reads of a connected subscriber's mailbox, bounding how late a
    /// message stored by another node arrives if its doorbell is lost (NATS down, no NATS).
    /// `0` disables. Unset: 2000 with a PostgreSQL store, off with SQLite (one node only).
    pub mailbox_recheck_ms: Option<u64>,
}

/// The shape of the relay's log lines on stderr.
///
/// Text is for people reading a terminal or `journalctl`; JSON is for log collectors (Loki,
/// Elasticsearch, Vector), which otherwise have to guess where a message ends and its fields
/// begin. Either way a line never carries an envelope, a key or a message body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data: PathBuf::from("hush-relay-data"),
            metrics: None,
            max_connections: 20_000,
            max_connections_per_ip: 1_000,
            max_connections_per_identity: 16,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 300,
            send_rate: 200.0,
            send_burst: 1000.0,
            fetch_rate: 5.0,
            fetch_burst: 20.0,
            publish_rate: 0.2,
            publish_burst: 10.0,
            per_user_fetch_rate: 0.5,
            per_user_fetch_burst: 20.0,
            mailbox_max_messages: 10_000,
            mailbox_max_bytes: 64 * 1024 * 1024,
            storage_max_bytes: 16 * 1024 * 1024 * 1024,
            sender_max_bytes: 256 * 1024 * 1024,
            message_ttl_secs: 30 * 24 * 3600,
            expiry_interval_secs: 600,
            max_one_time_prekeys: 500,
            max_one_time_pq_prekeys: 200,
            max_one_time_key_packages: 100,
            max_group_members: 1000,
            group_log_max_commits: 256,
            outbound_queue: 128,
            outbound_queue_bytes: 1024 * 1024,
            live_queue: 256,
            live_queue_bytes: 1024 * 1024,
            metrics_max_connections: 16,
            metrics_timeout_secs: 5,
            max_batch: 4096,
            log_format: LogFormat::Text,
            store: "sqlite".into(),
            nats: None,
            nats_prefix: "hush".into(),
            mailbox_recheck_ms: None,
        }
    }
}

/// `mailbox_recheck_ms` when unset and the store is shared (PostgreSQL).
pub const DEFAULT_MAILBOX_RECHECK_MS: u64 = 2000;

/// Which store backs the relay.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite in the data directory (one node).
    Sqlite,
    /// PostgreSQL at this URL (shared by nodes). Not `Debug`: the URL may hold a password.
    Postgres(String),
}

/// Parse a `store` value: `sqlite`, or a `postgres://` / `postgresql://` URL.
pub fn store_kind(value: &str) -> Result<StoreKind, String> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("sqlite") || value.is_empty() {
        Ok(StoreKind::Sqlite)
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(StoreKind::Postgres(value.to_owned()))
    } else {
        Err("store must be \"sqlite\" or a postgres:// or postgresql:// URL".into())
    }
}

/// What of a URL may be logged: `host=<host> db=<path>`, never the user or password. A list
/// of URLs (`nats://a:4222,nats://b:4222`) gives `host=a:4222,b:4222`.
pub fn redacted_url(url: &str) -> String {
    fn host_and_path(url: &str) -> (&str, &str) {
        let rest = url.trim().split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        (host, path.split(['?', '#']).next().unwrap_or(""))
    }
    if url.contains(',') {
        let hosts: Vec<&str> = url.split(',').map(|u| host_and_path(u).0).collect();
        return format!("host={}", hosts.join(","));
    }
    match host_and_path(url) {
        (host, "") => format!("host={host}"),
        (host, db) => format!("host={host} db={db}"),
    }
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
}

impl Config {
    /// Load a TOML file; keys not given keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Handshake timeout as a duration.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// Metrics request timeout as a duration.
    pub fn metrics_timeout(&self) -> Duration {
        Duration::from_secs(self.metrics_timeout_secs.max(1))
    }

    /// The store this configuration selects; an error names the bad value (never a URL).
    pub fn store_kind(&self) -> Result<StoreKind, String> {
        store_kind(&self.store)
    }

    /// How often a subscriber's mailbox is re-read without a wake-up (`None`: never).
    pub fn mailbox_recheck(&self) -> Option<Duration> {
        let shared = matches!(self.store_kind(), Ok(StoreKind::Postgres(_)));
        match self.mailbox_recheck_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None if shared => Some(Duration::from_millis(DEFAULT_MAILBOX_RECHECK_MS)),
            None => None,
        }
    }

    /// Message time-to-live in milliseconds.
    pub fn ttl_ms(&self) -> u64 {
        self.message_ttl_secs.saturating_mul(1000)
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;

    #[test]
    fn store_values_and_redaction() {
        assert!(matches!(store_kind("sqlite"), Ok(StoreKind::Sqlite)));
        assert!(matches!(
            store_kind("postgresql://u:p@db:5432/hush"),
            Ok(StoreKind::Postgres(_))
        ));
        let refused = store_kind("mysql://u:secret@db/hush")
            .err()
            .unwrap_or_default();
        assert!(!refused.contains("secret"), "{refused}");
        let shown = redacted_url("postgres://hush:s3cret@db.example:5432/hush?sslmode=require");
        assert_eq!(shown, "host=db.example:5432 db=hush");
        assert_eq!(
            redacted_url("nats://user:pw@127.0.0.1:4222"),
            "host=127.0.0.1:4222"
        );
    }

    #[test]
    fn recheck_defaults_follow_the_store() {
        let mut config = Config::default();
        assert_eq!(
            config.mailbox_recheck(),
            None,
            "SQLite: one node, no re-check"
        );
        config.store = "postgres://db/hush".into();
        assert_eq!(
            config.mailbox_recheck(),
            Some(Duration::from_millis(DEFAULT_MAILBOX_RECHECK_MS))
        );
        config.mailbox_recheck_ms = Some(0);
        assert_eq!(config.mailbox_recheck(), None);
        config.store = "sqlite".into();
        config.mailbox_recheck_ms = Some(500);
        assert_eq!(config.mailbox_recheck(), Some(Duration::from_millis(500)));
    }
}
