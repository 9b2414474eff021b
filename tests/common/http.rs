//! Async helpers of the in-process HTTP tests: start the service on port 0
//! and call it from a blocking client thread.

use super::{request, wait_for, Resp};
use alpes_tracking::app::{self, Running};
use std::net::SocketAddr;
use std::time::Duration;

pub async fn start(dir: &std::path::Path) -> Running {
    app::start(super::service_config(dir))
        .await
        .expect("service starts")
}

pub async fn call(
    addr: SocketAddr,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> Resp {
    tokio::task::spawn_blocking(move || {
        request(addr, method, &path, &headers, &body).expect("request")
    })
    .await
    .expect("client thread")
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    call(addr, "GET", path.to_string(), vec![], vec![]).await
}

pub async fn post(addr: SocketAddr, body: &str) -> Resp {
    call(
        addr,
        "POST",
        "/tracking/interactions".into(),
        vec![("Content-Type", "application/json")],
        body.as_bytes().to_vec(),
    )
    .await
}

/// GETs `path` until `ok` holds for the answer (20 s at most).
pub async fn get_until(
    addr: SocketAddr,
    path: &str,
    ok: impl Fn(&Resp) -> bool + Send + 'static,
) -> Resp {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        wait_for(&path.clone(), Duration::from_secs(20), || {
            let r = request(addr, "GET", &path, &[], b"").ok()?;
            ok(&r).then_some(r)
        })
    })
    .await
    .expect("poller")
}

pub fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.body);
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}
