//! `tracking probe` as the container runtime runs it: the exit status and
//! the one line it prints, against the real worker, a closed port and a
//! server answering 503.

mod common;

use common::{binary, Worker};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn probe(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("probe")
        .args(args)
        .env_remove("TRACKING_LISTEN")
        .env_remove("TRACKING_INTERNAL_LISTEN")
        .output()
        .expect("run tracking probe")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_real_worker_is_healthy_and_ready_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Worker::start(&dir.path().join("data"), &[]);
    let health = probe(&["--listen", &w.addr.to_string()]);
    assert_eq!(health.status.code(), Some(0), "{}", text(&health.stderr));
    assert!(
        text(&health.stdout).contains("/tracking/health: 200 OK"),
        "{}",
        text(&health.stdout)
    );
    // Worker::start waited for readiness; the listen address also comes
    // from the variable `run` reads.
    let ready = Command::new(binary())
        .args(["probe", "--ready"])
        .env("TRACKING_LISTEN", w.addr.to_string())
        .env_remove("TRACKING_INTERNAL_LISTEN")
        .output()
        .unwrap();
    assert_eq!(ready.status.code(), Some(0), "{}", text(&ready.stderr));
    assert!(text(&ready.stdout).contains("/tracking/ready: 200 OK"));
    assert_eq!(w.term(std::time::Duration::from_secs(40)), Some(0));
}

#[test]
fn a_closed_port_exits_1_with_one_line_saying_so() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = probe(&["--url", &format!("http://127.0.0.1:{port}/tracking/health")]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_503_exits_1_with_the_status_and_the_body() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the probe closed before its request head");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"status":"not_ready"}"#;
        write!(
            s,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        text(&head)
    });
    let out = probe(&["--url", &format!("http://{addr}/tracking/ready")]);
    let head = server.join().unwrap();
    assert!(
        head.starts_with("GET /tracking/ready HTTP/1.1\r\n"),
        "{head}"
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("503 Service Unavailable"), "{err}");
    assert!(err.contains(r#"{"status":"not_ready"}"#), "{err}");
}
