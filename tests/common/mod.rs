//! Helpers of the black-box tests: a minimal HTTP/1.1 client (no extra
//! dependency), polling with a deadline, and starting the real binary.

#![allow(dead_code)]

pub mod faulty;
pub mod http;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A response: status, headers (names lower case) and body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(&encode(&addr.to_string(), method, path, headers, body))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

/// A request's bytes: `Connection: close`, with a `Content-Length`.
pub fn encode(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it (or `timeout`): the response, if any (`None`: closed without one).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Option<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    // The server may answer (and close) before everything is written.
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw).ok()
}

fn parse(raw: &[u8]) -> std::io::Result<Resp> {
    let text = String::from_utf8_lossy(raw);
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {text:?}"),
        )
    };
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<Resp> {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
}

/// Polls the async `f` until it returns `Some`, or panics after
/// `timeout`: the one way tests wait for something to happen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for blocking code (a thread of its own, or
/// `spawn_blocking`).
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A canonical command as JSON.
pub fn command(id: Option<&str>, user: &str, ty: &str, campaign: &str, occurred: &str) -> String {
    let mut v = serde_json::json!({
        "user_id": user,
        "interaction_type": ty,
        "target": {"id": format!("post-{}", user.len()), "type": "post"},
        "campaign_id": campaign,
        "affiliate_id": "a-7",
        "occurred_at": occurred,
    });
    if let Some(id) = id {
        v["interaction_id"] = serde_json::Value::String(id.to_string());
    }
    v.to_string()
}

/// The real `tracking` binary running on a data dir.
pub struct Worker {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tracking")
}

impl Worker {
    /// Starts `tracking run` on port 0 and waits until it is ready.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Worker {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let stderr = data_dir.with_extension(format!("stderr.{n}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr file");
        let child = Command::new(binary())
            .arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("PULSAR_URL")
            .env_remove("SCYLLA_NODES")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the tracking binary");
        let addr = wait_for("the worker to listen", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&stderr).ok()?;
            let line = text
                .lines()
                .rev()
                .find(|l| l.contains("listening on http://"))?;
            let addr = line
                .split("listening on http://")
                .nth(1)?
                .split_whitespace()
                .next()?;
            addr.parse().ok()
        });
        let w = Worker {
            child,
            addr,
            stderr,
        };
        wait_for("readiness", Duration::from_secs(60), || {
            request(w.addr, "GET", "/tracking/ready", &[], b"")
                .ok()
                .filter(|r| r.status == 200)
        });
        w
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (at most `timeout`) for the exit status code.
    pub fn term(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tracking <args>` to completion: (exit code, stdout, stderr).
pub fn tracking(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("PULSAR_URL")
        .env_remove("SCYLLA_NODES")
        .output()
        .expect("run tracking");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Posts `(worker, command)` pairs from `clients` threads; returns the ids
/// answered 202 (in no particular order) and the number of failed posts.
pub fn post_all(jobs: Vec<(SocketAddr, String)>, clients: usize) -> (Vec<String>, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (jobs, next, accepted, failed) =
                (jobs.clone(), next.clone(), accepted.clone(), failed.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((addr, body)) = jobs.get(i) else {
                    return;
                };
                match post_json(*addr, "/tracking/interactions", body) {
                    Ok(r) if r.status == 202 => {
                        let id = r.json()["interaction_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        accepted.lock().unwrap().push(id);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ids = accepted.lock().unwrap().clone();
    (ids, failed.load(Ordering::SeqCst))
}

/// A user's events as a worker serves them: (interaction id, seq), paged.
pub fn user_events(addr: SocketAddr, user: &str) -> Vec<(String, u64)> {
    let (mut out, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = get(
            addr,
            &format!("/tracking/users/{user}/interactions?limit=1000{cursor}"),
        )
        .json();
        for item in page["items"].as_array().unwrap() {
            out.push((
                item["interaction_id"].as_str().unwrap().to_owned(),
                item["seq"].as_u64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// An in-process service's configuration: embedded default, port 0.
pub fn service_config(dir: &Path) -> alpes_tracking::app::ServiceConfig {
    alpes_tracking::app::ServiceConfig::local(dir)
}
