//! A flood of idle connections from one client takes at most its share of
//! the connection cap; other clients are still served, and with the cap
//! full the probes still answer (spare connections) while everything else
//! gets a 503 with the error JSON. Clients are told apart by their loopback
//! source address (127.0.0.x).

use crate::common;

use alpes_tracking::app;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `127.0.0.<client>`.
async fn connect(addr: SocketAddr, client: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, client], 0)))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends a GET with `Connection: close` and returns the status and body.
async fn get_from(addr: SocketAddr, client: u8, path: &str) -> (u16, String) {
    let mut s = connect(addr, client).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    answer(&mut s).await
}

/// Reads a whole answer (the server closes): status and body.
async fn answer(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_starve_the_others_or_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    let svc = app::start(common::service_config(dir.path()))
        .await
        .expect("service starts");
    let addr = svc.addr;
    // Given one client holding as many idle connections as it may
    let mut idle = Vec::new();
    for _ in 0..512 {
        idle.push(connect(addr, 1).await);
    }
    // When it opens one more, that one is answered 503 and closed
    let mut extra = connect(addr, 1).await;
    let (status, body) = answer(&mut extra).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("too many connections from this address"),
        "{body}"
    );
    // Then another client is served as usual
    assert_eq!(get_from(addr, 2, "/tracking/health").await.0, 200);
    assert_eq!(get_from(addr, 2, "/tracking/interactions").await.0, 200);
    // Given the whole cap held (another client takes the other half)
    for _ in 0..512 {
        idle.push(connect(addr, 3).await);
    }
    // Then the probes still answer, and everything else is refused clearly
    assert_eq!(get_from(addr, 4, "/tracking/health").await.0, 200);
    let (status, _) = get_from(addr, 4, "/tracking/ready").await;
    assert!(
        status == 200 || status == 503,
        "readiness answered {status}"
    );
    let (status, body) = get_from(addr, 4, "/tracking/interactions").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "busy");
    // And once the flood goes, everything is served again
    drop(idle);
    common::wait_for("the cap to free up", Duration::from_secs(10), || {
        let (status, _) = futures_block(get_from(addr, 5, "/tracking/interactions"));
        (status == 200).then_some(())
    });
    svc.stop().await.expect("clean stop");
}

/// Runs a future to completion from the synchronous poll of `wait_for`.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
