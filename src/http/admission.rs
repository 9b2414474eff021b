//! Admission of connections, so that no client can starve the others or
//! the probes.
//!
//! - The cap ([`super::MAX_CONNECTIONS`]) is shared, but one client address
//!   holds at most [`MAX_PER_CLIENT`] of it: the rest stays for others.
//! - The listener never stops accepting. With the cap full, a connection
//!   takes one of [`SPARE_CONNECTIONS`]: it is served one request with a
//!   short head timeout, and only health, readiness and metrics are
//!   answered (everything else gets a 503), so a probe still gets its
//!   answer behind a flood.
//! - A connection that can be given neither gets a canned 503 (JSON body,
//!   `Retry-After`) and is closed.
//!
//! Idle connections are closed by hyper's head timeout
//! ([`super::HEADER_TIMEOUT`]), before the first request and between
//! requests alike.

use super::MAX_CONNECTIONS;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections one client address may hold: half the cap, so one client
/// (a flood, or a proxy that funnels many clients) never takes it all.
pub const MAX_PER_CLIENT: usize = MAX_CONNECTIONS / 2;
/// Connections beyond the cap that answer only health, readiness and
/// metrics, one request each.
pub const SPARE_CONNECTIONS: usize = 32;
/// Time a spare connection has to send its request head.
pub const SPARE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What an accepted connection may do.
pub enum Admission {
    /// Served in full; holds a place under the cap until it ends.
    Full(Ticket),
    /// Served one request, probes only; holds a spare place.
    Spare(Ticket),
    /// Answered 503 and closed, for this reason.
    Refused(&'static str),
}

/// A place under the cap (or a spare one) and the client's share, both
/// given back when the connection ends.
pub struct Ticket {
    _permit: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// The admission state of one listener.
pub struct Admitter {
    places: Arc<Semaphore>,
    spare: Arc<Semaphore>,
    clients: Arc<Clients>,
}

impl Default for Admitter {
    fn default() -> Self {
        Self::new(MAX_CONNECTIONS, SPARE_CONNECTIONS, MAX_PER_CLIENT)
    }
}

impl Admitter {
    pub fn new(cap: usize, spare: usize, per_client: usize) -> Self {
        Self {
            places: Arc::new(Semaphore::new(cap)),
            spare: Arc::new(Semaphore::new(spare)),
            clients: Arc::new(Clients {
                limit: per_client,
                counts: Mutex::default(),
            }),
        }
    }

    /// Decides for a connection from `client`, without waiting.
    pub fn admit(&self, client: IpAddr) -> Admission {
        let Some(slot) = self.clients.enter(client) else {
            return Admission::Refused("too many connections from this address");
        };
        if let Ok(permit) = self.places.clone().try_acquire_owned() {
            return Admission::Full(Ticket {
                _permit: permit,
                _client: slot,
            });
        }
        match self.spare.clone().try_acquire_owned() {
            Ok(permit) => Admission::Spare(Ticket {
                _permit: permit,
                _client: slot,
            }),
            Err(_) => Admission::Refused("the server is at its connection limit"),
        }
    }
}

/// Connections held per client address.
struct Clients {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl Clients {
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

/// One connection of a client; counted until dropped.
struct ClientSlot {
    clients: Arc<Clients>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self
            .clients
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Answers a refused connection with a 503 and closes it (without reading
/// the request; a client that does not read its answer is dropped after a
/// second).
pub async fn refuse(stream: TcpStream, why: &'static str) {
    let body = serde_json::json!({"error": {"code": "busy", "message": why}}).to_string();
    let head = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1";
    canned(stream, head, &body).await;
}

/// Answers an HTTP/2 connection preface: this server speaks HTTP/1.1.
pub async fn refuse_http2(stream: TcpStream) {
    let body = serde_json::json!({"error": {
        "code": "http_version_not_supported",
        "message": "this endpoint speaks HTTP/1.1 only"
    }})
    .to_string();
    canned(stream, "HTTP/1.1 505 HTTP Version Not Supported", &body).await;
}

/// Writes `head` (status line and extra headers) with a JSON `body`, then
/// closes the connection, reading what the client sent meanwhile (closing
/// with unread bytes would reset the connection before it reads the
/// answer).
async fn canned(mut stream: TcpStream, head: &str, body: &str) {
    let response = format!(
        "{head}\r\ncontent-type: application/json\r\nconnection: close\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let send = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), send).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn one_client_gets_its_share_and_the_cap_keeps_spares_for_probes() {
        // Given a cap of 4, 1 spare and 2 per client
        let a = Admitter::new(4, 1, 2);
        // When one client opens three connections
        let first: Vec<_> = (0..3).map(|_| a.admit(ip(1))).collect();
        // Then it gets two, and the third is refused
        assert!(matches!(first[0], Admission::Full(_)));
        assert!(matches!(first[1], Admission::Full(_)));
        assert!(matches!(first[2], Admission::Refused(_)));
        // And others fill the cap, then the spare, then are refused
        let b = [a.admit(ip(2)), a.admit(ip(3))];
        assert!(b.iter().all(|x| matches!(x, Admission::Full(_))));
        let spare = a.admit(ip(4));
        assert!(matches!(spare, Admission::Spare(_)));
        assert!(matches!(a.admit(ip(5)), Admission::Refused(_)));
        // And a connection that ends gives its places back
        drop(first);
        assert!(matches!(a.admit(ip(1)), Admission::Full(_)));
        drop(spare);
        assert_eq!(a.clients.counts.lock().unwrap().get(&ip(4)), None);
    }
}
