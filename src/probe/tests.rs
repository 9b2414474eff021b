use super::*;
use crate::app::{self, ServiceConfig};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn args(cli: &[&str]) -> ProbeArgs {
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        probe: ProbeArgs,
    }
    let mut argv = vec!["probe"];
    argv.extend_from_slice(cli);
    <P as clap::Parser>::try_parse_from(argv)
        .expect("parses")
        .probe
}

#[test]
fn urls_parse_with_and_without_port_path_and_brackets() {
    let t = parse_url("http://127.0.0.1:8010/tracking/health").unwrap();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.authority.as_str(),
            t.path.as_str()
        ),
        ("127.0.0.1", 8010, "127.0.0.1:8010", "/tracking/health")
    );
    let t = parse_url("http://localhost").unwrap();
    assert_eq!(
        (t.host.as_str(), t.port, t.path.as_str()),
        ("localhost", 80, "/")
    );
    let t = parse_url("http://[::1]:9/x?y=1").unwrap();
    assert_eq!(
        (
            t.host.as_str(),
            t.port,
            t.authority.as_str(),
            t.path.as_str()
        ),
        ("::1", 9, "[::1]:9", "/x?y=1")
    );
    for bad in [
        "https://h/x",
        "h:1/x",
        "http://:80/",
        "http://h:port/",
        "http://[::1/",
        "http://h:99999/",
    ] {
        assert!(
            matches!(parse_url(bad), Err(ProbeError::BadUrl { .. })),
            "{bad}"
        );
    }
}

#[test]
fn the_default_url_follows_the_workers_listener() {
    assert_eq!(url_of(&args(&[])), "http://127.0.0.1:8010/tracking/health");
    assert_eq!(
        url_of(&args(&["--ready", "--listen", "0.0.0.0:9000"])),
        "http://127.0.0.1:9000/tracking/ready"
    );
    assert_eq!(
        url_of(&args(&[
            "--listen",
            "0.0.0.0:9000",
            "--internal-listen",
            "[::]:9100"
        ])),
        "http://[::1]:9100/tracking/health"
    );
    assert_eq!(
        url_of(&args(&["--listen", "10.1.2.3:8010"])),
        "http://10.1.2.3:8010/tracking/health"
    );
    assert_eq!(url_of(&args(&["--url", "http://h:1/x"])), "http://h:1/x");
    assert!(args(&[]).timeout == Duration::from_secs(2));
    // --url names the endpoint itself: --ready with it is a mistake.
    let mut argv = vec!["--url", "http://h:1/x", "--ready"];
    argv.insert(0, "probe");
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        _probe: ProbeArgs,
    }
    assert!(<P as clap::Parser>::try_parse_from(argv).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_service_is_healthy_then_ready() {
    let dir = tempfile::tempdir().unwrap();
    let svc = app::start(ServiceConfig::local(dir.path()))
        .await
        .expect("service starts");
    let base = format!("http://{}", svc.addr);
    let health = probe(&format!("{base}/tracking/health"), Duration::from_secs(5))
        .await
        .expect("liveness answers 2xx as soon as the listener is up");
    assert_eq!(health.status, hyper::StatusCode::OK);
    // Readiness may say 503 while the pipeline starts: poll to a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        match probe(&format!("{base}/tracking/ready"), Duration::from_secs(5)).await {
            Ok(r) => break r,
            Err(ProbeError::Status { status, .. })
                if status == hyper::StatusCode::SERVICE_UNAVAILABLE
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("readiness: {e}"),
        }
    };
    assert_eq!(ready.status, hyper::StatusCode::OK);
    assert!(ready.excerpt.contains("ready"), "{}", ready.excerpt);
    svc.stop().await.expect("stops cleanly");
}

#[tokio::test]
async fn a_closed_port_is_refused_with_its_address() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/tracking/health");
    let e = probe(&url, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(e, ProbeError::Refused { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

/// A server that answers every connection with `answer` (after reading
/// the request head), or never answers when `answer` is `None`.
async fn fake_server(answer: Option<&'static str>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Some(a) => {
                        let _ = s.write_all(a.as_bytes()).await;
                        let _ = s.shutdown().await;
                    }
                    // Hold the connection open without answering.
                    None => std::future::pending::<()>().await,
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_503_fails_with_its_status_and_body_excerpt() {
    let body = "{\"status\": \"draining\",\n \"reason\": \"SIGTERM\"}";
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let addr = fake_server(Some(answer)).await;
    let e = probe(
        &format!("http://{addr}/tracking/ready"),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let ProbeError::Status {
        status, excerpt, ..
    } = &e
    else {
        panic!("expected a status failure, got {e:?}");
    };
    assert_eq!(*status, hyper::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        excerpt,
        "{\"status\": \"draining\", \"reason\": \"SIGTERM\"}"
    );
    let text = e.to_string();
    assert!(text.contains("503 Service Unavailable"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[tokio::test]
async fn a_long_body_is_cut_to_an_excerpt() {
    let body = "x".repeat(10_000);
    let answer: &'static str = Box::leak(
        format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    );
    let addr = fake_server(Some(answer)).await;
    let e = probe(&format!("http://{addr}/"), Duration::from_secs(5))
        .await
        .unwrap_err();
    let ProbeError::Status { excerpt, .. } = e else {
        panic!("expected a status failure, got {e:?}");
    };
    assert!(excerpt.len() <= EXCERPT + 4, "{}", excerpt.len());
    assert!(excerpt.ends_with(" ..."), "{excerpt}");
}

#[tokio::test]
async fn a_worker_that_never_answers_times_out() {
    let addr = fake_server(None).await;
    let started = Instant::now();
    let e = probe(
        &format!("http://{addr}/tracking/health"),
        Duration::from_millis(200),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ProbeError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("no answer within 200ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
