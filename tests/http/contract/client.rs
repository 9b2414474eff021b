//! The contract tests' client: the black-box tests' raw HTTP/1.1 client
//! (`tests/common`), whose answers keep the headers the contract checks.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

pub use common::http::{get, get_until, post};
pub use common::Resp as Answer;

/// A request, `Connection: close`, with a `Content-Length`.
pub fn raw(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    common::encode("t", method, path, headers, body)
}

/// Sends `bytes` on a fresh connection and reads the answer until close
/// (the server may answer, and close, before everything is written).
pub async fn exchange(addr: SocketAddr, bytes: Vec<u8>) -> Answer {
    tokio::task::spawn_blocking(move || {
        common::raw_exchange(addr, &bytes, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("no answer to {:?}", String::from_utf8_lossy(&bytes)))
    })
    .await
    .expect("client thread")
}
