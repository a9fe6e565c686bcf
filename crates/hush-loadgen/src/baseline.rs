//! The baseline: a bare tokio TCP forwarder in this process, with no Noise, no storage and no
//! authentication. It speaks the relay's plaintext request encoding over length-prefixed
//! frames so the very same client engine drives it: the first frame of a connection is the
//! client's index (u32be); a `Send`'s recipient field carries the recipient's index in its
//! first four bytes. Each send is answered `Stored` (a counter) and pushed to the recipient as
//! a `Deliver`; acks are answered `Acked` without doing anything. This bounds what any relay
//! could reach on this machine with this client: the ratio relay/baseline is the cost of
//! Noise, SQLite durability and the relay's own logic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hush_net::frame::{write_frame, FrameReader};
use hush_proto::relay::{Delivery, Reply, Request, ServerMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::util::Result;

/// Frames queued per connection before the forwarder waits (backpressure).
const QUEUE: usize = 1024;

/// The recipient key standing for client `index`.
pub fn key_of(index: u32) -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Some(head) = key.get_mut(..4) {
        head.copy_from_slice(&index.to_be_bytes());
    }
    key
}

fn index_of(key: &[u8; 32]) -> u32 {
    let [a, b, c, d, ..] = *key;
    u32::from_be_bytes([a, b, c, d])
}

type Routes = Arc<Mutex<HashMap<u32, mpsc::Sender<Vec<u8>>>>>;

/// A running forwarder; dropping it stops accepting (connections end when clients close).
pub struct Forwarder {
    /// Where clients connect.
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Start the forwarder on a loopback port.
pub async fn start() -> Result<Forwarder> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let routes: Routes = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    let accept = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, Arc::clone(&routes), Arc::clone(&ids)));
        }
    });
    Ok(Forwarder { addr, accept })
}

async fn serve(stream: TcpStream, routes: Routes, ids: Arc<AtomicU64>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut frames = FrameReader::new(read);
    let Ok(Some(first)) = frames.read_frame().await else {
        return;
    };
    let Ok(index_bytes) = <[u8; 4]>::try_from(first.as_slice()) else {
        return;
    };
    let me = u32::from_be_bytes(index_bytes);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    if let Ok(mut r) = routes.lock() {
        r.insert(me, out_tx.clone());
    }
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if write_frame(&mut write, &frame).await.is_err() {
                break;
            }
        }
    });
    let mut cache: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    while let Ok(Some(frame)) = frames.read_frame().await {
        let Ok((request_id, request)) = Request::decode(&frame) else {
            break;
        };
        let reply = match request {
            Request::Send {
                recipient,
                envelope,
            } => {
                let to = index_of(&recipient);
                let route = match cache.get(&to) {
                    Some(r) => Some(r.clone()),
                    None => {
                        let found = routes.lock().ok().and_then(|r| r.get(&to).cloned());
                        if let Some(r) = &found {
                            cache.insert(to, r.clone());
                        }
                        found
                    }
                };
                let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(route) = route {
                    let deliver = ServerMessage::Deliver(Delivery {
                        id,
                        sender: key_of(me),
                        received_at_ms: 0,
                        envelope,
                    });
                    if route.send(deliver.encode()).await.is_err() {
                        cache.remove(&to);
                    }
                }
                Reply::Stored { id }
            }
            Request::Ack { ids } => Reply::Acked {
                removed: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            },
            Request::Subscribe => Reply::Subscribed,
            _ => Reply::Pong,
        };
        let response = ServerMessage::Response {
            request_id,
            result: Ok(reply),
        };
        if out_tx.send(response.encode()).await.is_err() {
            break;
        }
    }
    if let Ok(mut r) = routes.lock() {
        r.remove(&me);
    }
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::connect_plain;
    use crate::engine::{run, Client, Expect, Plan, Target};
    use crate::relay::Probe;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn engine_through_the_forwarder_loses_and_duplicates_nothing() {
        let forwarder = start().await.unwrap();
        let mut clients = Vec::new();
        for i in 0..4u32 {
            let (rx, tx) = connect_plain(forwarder.addr, i).await.unwrap();
            clients.push(Client {
                index: i,
                send_to: Some(Target::Direct(key_of(i ^ 1))),
                subscribe: true,
                rx,
                tx,
                redial: None,
            });
        }
        let plan = Plan {
            size: 64,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
            rate_per_sender: 200.0,
            window: 4,
            ack_batch: 10,
            ack_interval: Duration::from_millis(20),
            drain: Duration::from_secs(5),
            expect: Expect::Stored,
            group: false,
        };
        let report = run(clients, plan, &|i| Some(i ^ 1), &Probe::default())
            .await
            .unwrap();
        assert!(report.drained);
        assert!(report.sent >= 300, "sent {}", report.sent);
        assert_eq!(report.stored, report.sent);
        assert_eq!(report.delivered_unique, report.sent);
        assert_eq!(report.duplicates, 0);
        assert_eq!(report.misrouted, 0);
        assert_eq!(report.acked, report.sent);
        assert_eq!(report.losses_against(&report.received_sets), (0, 0));
        assert!(report.latency.count > 0);
    }
}
