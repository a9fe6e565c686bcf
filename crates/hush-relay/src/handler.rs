//! One client connection: Noise handshake, authentication, then requests in order, with live
//! delivery running beside them. Nothing a client sends can affect another client beyond what
//! the protocol allows (sending to its mailbox, popping one prekey per allowed fetch).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hush_net::{NetError, NoiseReader, NoiseWriter};
use hush_proto::envelope::{ENVELOPE_VERSION, ENVELOPE_VERSION_PQ};
use hush_proto::pq::PqPrekey;
use hush_proto::relay::{
    auth_message, is_valid_name, register_message, ErrorCode, RelayError, Reply, Request,
    ServerMessage, MAX_PQ_PREKEYS_PER_PUBLISH, MAX_PREKEYS_PER_PUBLISH,
};
use hush_proto::{DecodeError, IdentityPublicKey};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Config;
use crate::limits::{ConnectionCounter, CounterGuard, TokenBucket};
use crate::metrics::Metrics;
use crate::outbound::{Outbound, QueuedFrame};
use crate::presence::{LiveQueue, Presence, QueueBounds};
use crate::store::{IdentityBytes, Store, WriteOp, WriteResult};
use crate::writer::Writer;

mod group;

/// Most queued frames written with one system call.
const WRITE_BATCH: usize = 64;

/// On shutdown, how long a connection's queued replies may take to reach a peer that is not
/// reading, before the connection is dropped (otherwise a stalled peer would hold shutdown
/// for the whole idle timeout).
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything a connection handler shares with the rest of the relay.
pub struct Shared {
    /// Settings.
    pub config: Config,
    /// The relay's static Noise secret.
    pub static_secret: zeroize::Zeroizing<[u8; 32]>,
    /// Durable state (reads).
    pub store: Arc<dyn Store>,
    /// Durable state (writes, group-committed).
    pub writer: Writer,
    /// Subscriptions.
    pub presence: Arc<Presence>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Identities known to be registered (a positive cache; registrations are permanent).
    pub known: Mutex<HashSet<IdentityBytes>>,
    /// Per-user bundle fetch buckets, created only for names that exist (so unknown names
    /// cannot grow this map).
    pub fetches_per_user: Mutex<std::collections::HashMap<String, TokenBucket>>,
    /// Open connections per source address (IPv6: per /64), capped at accept.
    pub sources: ConnectionCounter<IpAddr>,
    /// Open authenticated connections per identity, capped at Hello.
    pub identities: ConnectionCounter<IdentityBytes>,
}

/// Why a connection ended early; counted under its label.
fn close_reason(e: &NetError) -> &'static str {
    match e {
        NetError::FrameTooLarge { .. } => "frame_too_large",
        NetError::Noise(_) => "noise_failure",
        NetError::Truncated => "truncated_frame",
        NetError::Timeout => "timeout",
        NetError::Io(_) => "io_error",
        _ => "protocol_error",
    }
}

fn err(code: ErrorCode, message: impl Into<String>) -> RelayError {
    RelayError {
        code,
        message: message.into(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Run one connection to completion.
pub async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    let result = tokio::select! {
        r = authenticate(stream, &shared) => r,
        () = crate::server::stopping(&mut shutdown) => Err("shutdown"),
    };
    match result {
        Ok((identity, reader, writer, slot)) => {
            metrics.authenticated_total.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, identity = %identity.fingerprint(), "client authenticated");
            serve(identity, reader, writer, &shared, &mut shutdown).await;
            drop(slot);
        }
        Err(reason) => {
            metrics.reject(reason);
            tracing::debug!(%peer, reason, "connection closed before authentication");
        }
    }
    metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// An authenticated channel and its identity's connection slot.
type Authenticated = (
    IdentityPublicKey,
    NoiseReader,
    NoiseWriter,
    CounterGuard<IdentityBytes>,
);

/// Handshake and Hello, within the handshake timeout.
async fn authenticate(stream: TcpStream, shared: &Shared) -> Result<Authenticated, &'static str> {
    let deadline = shared.config.handshake_timeout();
    tokio::time::timeout(deadline, async {
        let hs = hush_net::accept(stream, &shared.static_secret)
            .await
            .map_err(|e| match e {
                NetError::KeyQuery => "key_query",
                _ => "handshake_failed",
            })?;
        let mut reader = hs.reader;
        let mut writer = hs.writer;
        let first = reader
            .recv()
            .await
            .map_err(|e| close_reason(&e))?
            .ok_or("closed")?;
        let (request_id, request) = match Request::decode(&first) {
            Ok(r) => r,
            Err((id, e)) => {
                let reply = decode_error_reply(&e);
                let _ = send(&mut writer, id.unwrap_or(0), Err(reply)).await;
                return Err("malformed_hello");
            }
        };
        let Request::Hello {
            identity_key,
            signature,
        } = request
        else {
            let _ = send(
                &mut writer,
                request_id,
                Err(err(
                    ErrorCode::NotAuthenticated,
                    "the first request must be Hello",
                )),
            )
            .await;
            return Err("not_authenticated");
        };
        // The Noise static key must be this identity's X25519 form, and the identity must
        // sign this very handshake: a replayed Hello from another channel fails.
        let bound = identity_key.x25519().as_bytes() == &hs.remote_static;
        if !bound || !identity_key.verify(&auth_message(&hs.handshake_hash), &signature) {
            let _ = send(
                &mut writer,
                request_id,
                Err(err(
                    ErrorCode::BadSignature,
                    "identity does not match the channel",
                )),
            )
            .await;
            return Err("bad_hello");
        }
        // Identities are free but each connection costs memory: one key holds only so many.
        let Some(slot) = shared.identities.try_acquire(
            *identity_key.as_bytes(),
            shared.config.max_connections_per_identity,
        ) else {
            let _ = send(
                &mut writer,
                request_id,
                Err(err(
                    ErrorCode::TooManyConnections,
                    "this identity has too many connections open",
                )),
            )
            .await;
            return Err("too_many_connections");
        };
        let store = Arc::clone(&shared.store);
        let id_bytes = *identity_key.as_bytes();
        let name = tokio::task::spawn_blocking(move || store.name_of(&id_bytes))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        send(&mut writer, request_id, Ok(Reply::Welcome { name }))
            .await
            .map_err(|e| close_reason(&e))?;
        Ok((identity_key, reader, writer, slot))
    })
    .await
    .map_err(|_| "handshake_timeout")?
}

async fn send(
    writer: &mut NoiseWriter,
    request_id: u64,
    result: Result<Reply, RelayError>,
) -> Result<(), NetError> {
    writer
        .send(&ServerMessage::Response { request_id, result }.encode())
        .await
}

fn decode_error_reply(e: &DecodeError) -> RelayError {
    match e {
        DecodeError::UnsupportedVersion { .. } => err(ErrorCode::UnsupportedVersion, e.to_string()),
        DecodeError::InvalidField {
            what: "relay request type",
            ..
        } => err(ErrorCode::UnknownRequest, e.to_string()),
        _ => err(ErrorCode::Malformed, e.to_string()),
    }
}

struct Session<'a> {
    identity: IdentityPublicKey,
    id_bytes: IdentityBytes,
    shared: &'a Shared,
    outbound: Outbound,
    send_bucket: TokenBucket,
    fetch_bucket: TokenBucket,
    publish_bucket: TokenBucket,
    delivery: Option<(Arc<LiveQueue>, tokio::task::JoinHandle<()>)>,
}

/// The authenticated part: requests until close, idle timeout or shutdown.
async fn serve(
    identity: IdentityPublicKey,
    mut reader: NoiseReader,
    mut writer: NoiseWriter,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
) {
    let (outbound, mut outbound_rx) = Outbound::channel(
        shared.config.outbound_queue,
        shared.config.outbound_queue_bytes,
        Arc::clone(&shared.metrics),
    );
    let metrics = Arc::clone(&shared.metrics);
    let stall = shared.config.idle_timeout();
    let writer_task = tokio::spawn(async move {
        while let Some(first) = outbound_rx.recv().await {
            // Everything already queued goes out in one write.
            let mut queued: Vec<QueuedFrame> = vec![first];
            while queued.len() < WRITE_BATCH {
                match outbound_rx.try_recv() {
                    Ok(frame) => queued.push(frame),
                    Err(_) => break,
                }
            }
            // The frames keep their byte budget until the socket has taken them.
            let (batch, _budgets): (Vec<Vec<u8>>, Vec<_>) =
                queued.into_iter().map(|f| (f.bytes, f.budget)).unzip();
            // A peer that stops reading for the whole idle timeout is disconnected; what it
            // did not get stays in its mailbox.
            match tokio::time::timeout(stall, writer.send_many(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    metrics.reject(close_reason(&e));
                    break;
                }
                Err(_) => {
                    metrics.reject("write_stalled");
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let now = Instant::now();
    let mut session = Session {
        identity,
        id_bytes: *identity.as_bytes(),
        shared,
        outbound,
        send_bucket: TokenBucket::new(shared.config.send_rate, shared.config.send_burst, now),
        fetch_bucket: TokenBucket::new(shared.config.fetch_rate, shared.config.fetch_burst, now),
        publish_bucket: TokenBucket::new(
            shared.config.publish_rate,
            shared.config.publish_burst,
            now,
        ),
        delivery: None,
    };
    let idle = shared.config.idle_timeout();
    // Shutdown or a replaced subscription: give queued replies only a short time to drain.
    let mut stopping = false;
    loop {
        let frame = tokio::select! {
            () = crate::server::stopping(shutdown) => {
                stopping = true;
                break;
            }
            () = replaced(&session.delivery) => {
                // A newer connection of this identity subscribed: this one would receive
                // nothing more, so it is closed (the client reconnects if it still runs), and
                // promptly even if its peer stopped reading.
                shared.metrics.reject("subscription_replaced");
                stopping = true;
                break;
            }
            r = tokio::time::timeout(idle, reader.recv()) => r,
        };
        let bytes = match frame {
            Err(_) => {
                shared.metrics.reject("idle_timeout");
                break;
            }
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                shared.metrics.reject(close_reason(&e));
                break;
            }
        };
        let (request_id, result) = match Request::decode(&bytes) {
            Ok((id, request)) => (id, session.handle(request).await),
            Err((id, e)) => (id.unwrap_or(0), Err(decode_error_reply(&e))),
        };
        if let Err(e) = &result {
            shared.metrics.reject(e.code.label());
        }
        let message = ServerMessage::Response { request_id, result }.encode();
        // A peer that sends requests without reading replies fills the outbound queue; do not
        // wait for it past shutdown.
        let queued = tokio::select! {
            r = session.outbound.send(message) => r.is_ok(),
            () = crate::server::stopping(shutdown) => {
                stopping = true;
                false
            }
        };
        if !queued {
            break;
        }
    }
    if let Some((queue, task)) = session.delivery.take() {
        task.abort();
        shared.presence.unsubscribe(&session.id_bytes, &queue);
    }
    drop(session);
    let mut writer_task = writer_task;
    if stopping {
        if tokio::time::timeout(SHUTDOWN_FLUSH, &mut writer_task)
            .await
            .is_err()
        {
            writer_task.abort();
        }
    } else {
        let _ = writer_task.await;
    }
}

/// Resolves when this connection's subscription was replaced by a newer one; never if it has
/// none.
async fn replaced(delivery: &Option<(Arc<LiveQueue>, tokio::task::JoinHandle<()>)>) {
    match delivery {
        Some((queue, _)) => queue.ended().await,
        None => std::future::pending().await,
    }
}

impl Session<'_> {
    async fn write(&self, op: WriteOp) -> Result<WriteResult, RelayError> {
        self.shared.writer.write(op).await.map_err(|e| {
            tracing::error!(error = %e, "storage failure");
            err(ErrorCode::Internal, "storage unavailable; retry later")
        })
    }

    async fn handle(&mut self, request: Request) -> Result<Reply, RelayError> {
        match request {
            Request::Hello { .. } => Err(err(ErrorCode::NotAuthenticated, "already authenticated")),
            Request::Ping => Ok(Reply::Pong),
            Request::PublishPqPrekeys {
                last_resort,
                one_time,
            } => self.publish_pq_prekeys(last_resort, one_time).await,
            Request::WhoIs { identity } => {
                let store = Arc::clone(&self.shared.store);
                let name = tokio::task::spawn_blocking(move || store.name_of(&identity))
                    .await
                    .map_err(|_| err(ErrorCode::Internal, "lookup failed"))?
                    .map_err(|_| err(ErrorCode::Internal, "lookup failed"))?;
                match name {
                    Some(name) => Ok(Reply::Name { name }),
                    None => Err(err(
                        ErrorCode::UnknownUser,
                        "no name registered for that identity",
                    )),
                }
            }
            Request::Register { name, signature } => {
                if !is_valid_name(&name) {
                    return Err(err(
                        ErrorCode::InvalidName,
                        "names are 1-32 of a-z 0-9 _ - . starting with a letter or digit",
                    ));
                }
                if !self.identity.verify(&register_message(&name), &signature) {
                    return Err(err(
                        ErrorCode::BadSignature,
                        "registration signature invalid",
                    ));
                }
                match self
                    .write(WriteOp::Register {
                        name,
                        identity: self.id_bytes,
                        signature: signature.to_vec(),
                    })
                    .await?
                {
                    WriteResult::Registered => {
                        if let Ok(mut known) = self.shared.known.lock() {
                            known.insert(self.id_bytes);
                        }
                        Ok(Reply::Registered)
                    }
                    WriteResult::NameTaken => Err(err(ErrorCode::NameTaken, "name is taken")),
                    WriteResult::AlreadyRegistered { name } => Err(err(
                        ErrorCode::AlreadyRegistered,
                        format!("this identity is already registered as {name}"),
                    )),
                    _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
                }
            }
            Request::PublishPrekeys {
                signed_prekey,
                one_time,
            } => {
                if !self.publish_bucket.try_take(Instant::now()) {
                    return Err(err(ErrorCode::RateLimited, "publishing prekeys too often"));
                }
                if one_time.len() > MAX_PREKEYS_PER_PUBLISH {
                    return Err(err(
                        ErrorCode::TooManyPrekeys,
                        "too many prekeys in one request",
                    ));
                }
                if !self.identity.verify(
                    signed_prekey.public_key.as_bytes(),
                    &signed_prekey.signature,
                ) {
                    return Err(err(
                        ErrorCode::BadSignature,
                        "signed prekey signature invalid",
                    ));
                }
                match self
                    .write(WriteOp::PublishPrekeys {
                        identity: self.id_bytes,
                        signed_prekey,
                        one_time,
                        max_stock: self.shared.config.max_one_time_prekeys,
                    })
                    .await?
                {
                    WriteResult::PrekeysStored { one_time_remaining } => {
                        Ok(Reply::PrekeysStored { one_time_remaining })
                    }
                    WriteResult::TooManyPrekeys => Err(err(
                        ErrorCode::TooManyPrekeys,
                        format!(
                            "at most {} one-time prekeys may be stored",
                            self.shared.config.max_one_time_prekeys
                        ),
                    )),
                    WriteResult::NotRegistered => Err(err(
                        ErrorCode::NotRegistered,
                        "register a name before publishing prekeys",
                    )),
                    _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
                }
            }
            Request::FetchBundle { name } => {
                if !self.fetch_bucket.try_take(Instant::now()) {
                    return Err(err(ErrorCode::RateLimited, "too many bundle fetches"));
                }
                if !is_valid_name(&name) {
                    return Err(err(ErrorCode::InvalidName, "invalid name"));
                }
                let now = Instant::now();
                let limited = self.fetch_budget_spent(&name, now);
                // A spent per-user budget protects the one-time prekeys, not the user: the
                // bundle is still served, with the signed prekey only, so a flood of fetches
                // cannot stop anyone from starting a session.
                match self
                    .write(WriteOp::FetchBundle {
                        name: name.clone(),
                        pop_one_time: !limited,
                    })
                    .await?
                {
                    WriteResult::Bundle(bundle) => {
                        if limited {
                            self.shared
                                .metrics
                                .bundles_without_one_time
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        self.note_fetched(name, now);
                        Ok(Reply::Bundle(bundle))
                    }
                    WriteResult::UnknownUser => Err(err(ErrorCode::UnknownUser, "no such user")),
                    _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
                }
            }
            Request::Send {
                recipient,
                envelope,
            } => {
                if !self.send_bucket.try_take(Instant::now()) {
                    return Err(err(ErrorCode::RateLimited, "sending too fast"));
                }
                // Opaque to the relay beyond its version byte: 1 for hush-v1 envelopes and
                // for every ordinary message, 2 for a hush-v2 first message.
                if !matches!(
                    envelope.first(),
                    Some(&ENVELOPE_VERSION | &ENVELOPE_VERSION_PQ)
                ) {
                    return Err(err(ErrorCode::Malformed, "not a hush envelope"));
                }
                // Group mail goes only through GroupCommit / GroupSend: a commit or proposal
                // sent 1:1 would skip the per-group epoch order and let a member fork the
                // group (or hand a proposal to some members only).
                if hush_proto::GroupEnvelope::is_group(&envelope) {
                    return Err(err(
                        ErrorCode::Malformed,
                        "group envelopes go through GroupSend or GroupCommit",
                    ));
                }
                if !self.is_registered(recipient).await? {
                    return Err(err(ErrorCode::UnknownUser, "no such recipient"));
                }
                let config = &self.shared.config;
                match self
                    .write(WriteOp::Enqueue {
                        recipient,
                        sender: self.id_bytes,
                        envelope,
                        received_at_ms: now_ms(),
                        max_messages: config.mailbox_max_messages,
                        max_bytes: config.mailbox_max_bytes,
                        max_total_bytes: config.storage_max_bytes,
                        max_sender_bytes: config.sender_max_bytes,
                    })
                    .await?
                {
                    WriteResult::Stored(id) => Ok(Reply::Stored { id }),
                    WriteResult::MailboxFull => Err(err(
                        ErrorCode::MailboxFull,
                        "the recipient's mailbox is full; retry later",
                    )),
                    WriteResult::StorageFull => Err(err(
                        ErrorCode::StorageFull,
                        "the relay's storage is full; retry later",
                    )),
                    // The same code as a full relay: to the sender both mean "wait until
                    // stored mail is fetched", and clients already park and retry on it.
                    WriteResult::SenderQuota => Err(err(
                        ErrorCode::StorageFull,
                        "your share of the relay's storage is used up; retry when your \
                         messages have been fetched",
                    )),
                    _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
                }
            }
            Request::Subscribe => {
                if self.delivery.is_none() {
                    let config = &self.shared.config;
                    let queue = self.shared.presence.subscribe(
                        self.id_bytes,
                        QueueBounds {
                            messages: config.live_queue,
                            bytes: config.live_queue_bytes,
                        },
                    );
                    let task = tokio::spawn(crate::delivery::deliver(
                        self.id_bytes,
                        config.live_queue_bytes,
                        config.mailbox_recheck(),
                        Arc::clone(&queue),
                        Arc::clone(&self.shared.store),
                        self.outbound.clone(),
                        Arc::clone(&self.shared.metrics),
                    ));
                    self.delivery = Some((queue, task));
                }
                Ok(Reply::Subscribed)
            }
            Request::PublishKeyPackages {
                last_resort,
                one_time,
            } => self.publish_key_packages(last_resort, one_time).await,
            Request::FetchKeyPackage { name } => self.fetch_key_package(name).await,
            Request::GroupCommit(commit) => self.group_commit(commit).await,
            Request::GroupSend { group_id, envelope } => self.group_send(group_id, envelope).await,
            Request::GroupSync {
                group_id,
                after_epoch,
            } => self.group_sync(group_id, after_epoch).await,
            Request::GroupLeave { group_id } => self.group_leave(group_id).await,
            Request::Ack { ids } => match self
                .write(WriteOp::Ack {
                    recipient: self.id_bytes,
                    ids,
                })
                .await?
            {
                WriteResult::Acked(removed) => Ok(Reply::Acked { removed }),
                _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
            },
        }
    }

    /// Store `hush-v2` PQ prekeys for the connected identity. Everything is checked before
    /// anything is stored, and one bad key refuses the whole request: the caller's name, the
    /// last-resort id bit (set on the last-resort key, clear on one-time keys), and each key's
    /// signature by the connected identity together with its ML-KEM-768 encapsulation key
    /// (FIPS 203 modulus check), so the relay never serves a key that no initiator could use.
    /// Shares the publish rate limit with `PublishPrekeys`: a full request costs the relay 41
    /// signature checks.
    async fn publish_pq_prekeys(
        &mut self,
        last_resort: Option<PqPrekey>,
        one_time: Vec<PqPrekey>,
    ) -> Result<Reply, RelayError> {
        if !self.publish_bucket.try_take(Instant::now()) {
            return Err(err(ErrorCode::RateLimited, "publishing prekeys too often"));
        }
        // The decoder already refuses longer lists; checked again so the bound on the work
        // below does not rest on another module.
        if one_time.len() > MAX_PQ_PREKEYS_PER_PUBLISH {
            return Err(err(
                ErrorCode::TooManyPrekeys,
                "too many PQ prekeys in one request",
            ));
        }
        if !self.is_registered(self.id_bytes).await? {
            return Err(err(
                ErrorCode::NotRegistered,
                "register a name before publishing prekeys",
            ));
        }
        if last_resort
            .as_ref()
            .is_some_and(|key| !key.is_last_resort())
        {
            return Err(err(
                ErrorCode::Malformed,
                "a last-resort PQ prekey id must have the last-resort bit set",
            ));
        }
        if one_time.iter().any(PqPrekey::is_last_resort) {
            return Err(err(
                ErrorCode::Malformed,
                "a one-time PQ prekey id must not have the last-resort bit set",
            ));
        }
        // Up to 41 signature and key checks: off the async workers.
        let identity = self.identity;
        let (last_resort, one_time, valid) = tokio::task::spawn_blocking(move || {
            let valid = last_resort
                .iter()
                .chain(one_time.iter())
                .all(|key| key.verify(&identity));
            (last_resort, one_time, valid)
        })
        .await
        .map_err(|_| err(ErrorCode::Internal, "signature check failed"))?;
        if !valid {
            return Err(err(
                ErrorCode::BadSignature,
                "a PQ prekey is not signed by this identity or is not a valid ML-KEM-768 key",
            ));
        }
        let max_stock = self.shared.config.max_one_time_pq_prekeys;
        match self
            .write(WriteOp::PublishPqPrekeys {
                identity: self.id_bytes,
                last_resort,
                one_time,
                max_stock,
            })
            .await?
        {
            WriteResult::PqPrekeysStored { one_time_remaining } => {
                Ok(Reply::PqPrekeysStored { one_time_remaining })
            }
            WriteResult::TooManyPrekeys => Err(err(
                ErrorCode::TooManyPrekeys,
                format!("at most {max_stock} one-time PQ prekeys may be stored"),
            )),
            WriteResult::NotRegistered => Err(err(
                ErrorCode::NotRegistered,
                "register a name before publishing prekeys",
            )),
            _ => Err(err(ErrorCode::Internal, "unexpected storage result")),
        }
    }

    /// Whether the per-user fetch budget of `name` (bundles and KeyPackages together) is spent.
    fn fetch_budget_spent(&self, name: &str, now: Instant) -> bool {
        self.shared
            .fetches_per_user
            .lock()
            .map(|mut buckets| buckets.get_mut(name).is_some_and(|b| !b.try_take(now)))
            .unwrap_or(false)
    }

    /// Start the fetch budget of `name` after a successful fetch (only names that exist get
    /// a bucket, so unknown names cannot grow the map).
    fn note_fetched(&self, name: String, now: Instant) {
        if let Ok(mut buckets) = self.shared.fetches_per_user.lock() {
            let config = &self.shared.config;
            buckets.entry(name).or_insert_with(|| {
                let mut bucket =
                    TokenBucket::new(config.per_user_fetch_rate, config.per_user_fetch_burst, now);
                bucket.try_take(now);
                bucket
            });
        }
    }

    /// Whether `identity` has a name. A failed lookup is `Internal`, never "not registered":
    /// clients take `UnknownUser` as the recipient being gone and give the message up.
    async fn is_registered(&self, identity: IdentityBytes) -> Result<bool, RelayError> {
        if self
            .shared
            .known
            .lock()
            .map(|k| k.contains(&identity))
            .unwrap_or(false)
        {
            return Ok(true);
        }
        let store = Arc::clone(&self.shared.store);
        let lookup_failed = |what: &str| {
            tracing::error!(error = %what, "recipient lookup failed");
            err(ErrorCode::Internal, "storage unavailable; retry later")
        };
        let found = tokio::task::spawn_blocking(move || store.name_of(&identity))
            .await
            .map_err(|e| lookup_failed(&e.to_string()))?
            .map_err(|e| lookup_failed(&e.to_string()))?
            .is_some();
        if found {
            if let Ok(mut known) = self.shared.known.lock() {
                known.insert(identity);
            }
        }
        Ok(found)
    }
}
