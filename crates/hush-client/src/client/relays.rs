//! Several addresses of one relay deployment: fail over between them, stick to the one that
//! answered, and let the user change the list.
//!
//! Every address must present the one pinned relay key: the nodes of a deployment share their
//! static key (docs/OPERATIONS.md), so a failover never needs a new pin and never widens whom
//! the client trusts. A connection is used only after its Noise handshake proved the pinned
//! key, whichever address it came from.
//!
//! A node that presents another key is never used. The client still goes on to the next
//! address: it cannot tell a relay with another key from a node that hangs up during the
//! handshake (both end the handshake the same way, see `hush_net::noise::client_handshake`),
//! and a crashing node must not stop the failover. When no address gives a connection and
//! any of them failed that way, the error is [`ClientError::RelayKeyChanged`], as with one
//! address.

use super::*;

/// Most addresses in one profile's list: a deployment has a handful of nodes, and each dead
/// one can cost a [`CONNECT_TIMEOUT`] before the next is tried.
pub const MAX_RELAY_ADDRESSES: usize = 16;

/// Most bytes in one address (`host:port`; a DNS name is at most 253).
const MAX_ADDRESS_LEN: usize = 300;

/// Parse a relay list as the user writes it: `host:port` addresses separated by commas, the
/// first tried first. Refuses an empty list, an empty or malformed entry and a repeated one.
pub fn parse_relay_list(list: &str) -> Result<Vec<String>, ClientError> {
    let mut relays: Vec<String> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let well_formed = !entry.is_empty()
            && entry.len() <= MAX_ADDRESS_LEN
            && !entry.chars().any(|c| c.is_whitespace() || c.is_control())
            && entry
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !well_formed {
            return Err(ClientError::Invalid(format!(
                "invalid relay address {entry:?}: give HOST:PORT, several separated by commas"
            )));
        }
        if relays.iter().any(|r| r == entry) {
            return Err(ClientError::Invalid(format!(
                "relay address {entry} is listed twice"
            )));
        }
        relays.push(entry.to_owned());
    }
    if relays.len() > MAX_RELAY_ADDRESSES {
        return Err(ClientError::Invalid(format!(
            "{} relay addresses given; at most {MAX_RELAY_ADDRESSES}",
            relays.len()
        )));
    }
    Ok(relays)
}

impl ProfileConfig {
    /// A new profile's relays: `relays` in the user's order, `current` the one to try first.
    pub(super) fn new(name: &str, relays: Vec<String>, current: String, key: [u8; 32]) -> Self {
        Self {
            name: name.to_owned(),
            relay: current,
            relays,
            relay_key: hex::encode(key),
        }
    }

    /// Every address of the relay, in the user's order (a profile made before failover has
    /// only its one `relay`).
    pub fn relay_list(&self) -> Vec<String> {
        if self.relays.is_empty() {
            vec![self.relay.clone()]
        } else {
            self.relays.clone()
        }
    }

    /// The order to try: the address that answered last, then the rest in the user's order.
    fn try_order(&self) -> Vec<String> {
        let mut order = vec![self.relay.clone()];
        order.extend(self.relay_list().into_iter().filter(|r| *r != self.relay));
        order
    }
}

/// Try `addresses` in order until one gives a connection; `Ok` carries the address used.
pub(super) async fn connect_first(
    addresses: &[String],
    key: &[u8; 32],
    identity: &IdentityKeyPair,
) -> Result<(Connection, String), ClientError> {
    let mut last = NetError::Closed;
    let mut key_refused = false;
    for address in addresses {
        match hush_net::connect(address.as_str(), key, identity, CONNECT_TIMEOUT).await {
            Ok(conn) => return Ok((conn, address.clone())),
            Err(NetError::KeyMismatch) => key_refused = true,
            Err(e) => last = e,
        }
    }
    if key_refused {
        return Err(ClientError::RelayKeyChanged);
    }
    Err(last.into())
}

/// Ask `addresses` in order for the relay's key (trust on first use at `init`); the first
/// answer wins, with the address that gave it.
pub(super) async fn fetch_key_first(
    addresses: &[String],
) -> Result<([u8; 32], String), ClientError> {
    let mut last = NetError::Closed;
    for address in addresses {
        let fetched = async {
            let stream = tokio::net::TcpStream::connect(address.as_str()).await?;
            hush_net::noise::fetch_relay_key(stream).await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, fetched).await {
            Ok(Ok(key)) => return Ok((key, address.clone())),
            Ok(Err(e)) => last = e,
            Err(_) => last = NetError::Timeout,
        }
    }
    Err(ClientError::Network(last))
}

impl Client {
    /// Every relay address of the profile, in the user's order.
    pub fn relays(&self) -> Vec<String> {
        self.config.relay_list()
    }

    /// Replace the relay addresses (comma-separated, as for `init`): the first is tried
    /// first from the next connection on. The pinned key stays: every address must be a
    /// node of the same deployment. Nothing is sent; the current connection is closed.
    pub fn set_relays(&mut self, list: &str) -> Result<(), ClientError> {
        let relays = parse_relay_list(list)?;
        let first = relays
            .first()
            .cloned()
            .ok_or_else(|| ClientError::Invalid("no relay address given".into()))?;
        let mut config = self.config.clone();
        config.relays = relays;
        config.relay = first;
        let tx = self.store.tx()?;
        tx.put(NS_CONFIG, KEY_SELF, &config)?;
        tx.commit()?;
        self.config = config;
        self.conn = None;
        self.subscribed = false;
        Ok(())
    }

    /// Open a connection to the first address that answers with the pinned key, starting
    /// with the one that answered last, and remember it in the profile so that the next run
    /// starts there instead of waiting on a dead node again.
    pub(super) async fn connect_relay(&mut self) -> Result<Connection, ClientError> {
        let key = self.relay_key()?;
        let (conn, address) = connect_first(&self.config.try_order(), &key, &self.identity).await?;
        if address != self.config.relay {
            let mut config = self.config.clone();
            config.relay = address;
            let tx = self.store.tx()?;
            tx.put(NS_CONFIG, KEY_SELF, &config)?;
            tx.commit()?;
            self.config = config;
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_relay_list_is_comma_separated_host_port_pairs_in_order() {
        assert_eq!(
            parse_relay_list("a.example:7443, 10.0.0.2:7443,[::1]:7443").unwrap(),
            ["a.example:7443", "10.0.0.2:7443", "[::1]:7443"]
        );
        for bad in [
            "", "a:1,", "a:1,,b:2", "a", "a:port", ":1", "a b:1", "a:1,a:1",
        ] {
            assert!(parse_relay_list(bad).is_err(), "{bad:?} accepted");
        }
        let many = (0..=MAX_RELAY_ADDRESSES)
            .map(|i| format!("h{i}:1"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(parse_relay_list(&many).is_err());
    }

    #[test]
    fn a_profile_config_from_before_failover_reads_as_a_list_of_its_one_relay() {
        let old = r#"{"name":"alice","relay":"127.0.0.1:7443","relay_key":"00"}"#;
        let config: ProfileConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.relay_list(), ["127.0.0.1:7443"]);
        assert_eq!(config.try_order(), ["127.0.0.1:7443"]);
    }

    #[test]
    fn the_address_that_answered_last_is_tried_first_then_the_list_in_order() {
        let list = vec!["a:1".to_owned(), "b:1".to_owned(), "c:1".to_owned()];
        let config = ProfileConfig::new("alice", list, "b:1".into(), [0; 32]);
        assert_eq!(config.try_order(), ["b:1", "a:1", "c:1"]);
        assert_eq!(config.relay_list(), ["a:1", "b:1", "c:1"]);
    }
}
