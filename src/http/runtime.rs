//! The HTTP endpoint on threads of its own, reads apart from ingest.
//!
//! Reads must answer in milliseconds while the pipeline keeps the main
//! runtime's workers busy. On one shared runtime a request that became
//! readable waits in a worker's run queue behind actor messages (thousands
//! per second under load); on its own runtime it waits only behind other
//! requests, and the OS scheduler favours its mostly idle threads.
//!
//! Ingest is the other half of that wait: under 10,000 `POST`s per second
//! the HTTP threads are busy too, and a `GET` that lands on one waits
//! behind the posts queued there. So there are two runtimes:
//! - the **front** (one thread): accepts every connection and serves the
//!   ones whose first request is not a `POST` (reads, health, readiness,
//!   metrics). It is idle most of the time and asks the kernel for a short
//!   time slice ([`FRONT_SLICE`]), so it runs as soon as a request arrives,
//!   without a larger share of the CPU;
//! - the **ingest** runtime (`--http-threads` threads): a connection whose
//!   first byte is `P` (`POST`) is handed to it after the accept.
//!
//! A connection stays where its first request put it (HTTP/1.1 keep-alive
//! requests of either kind are all served, only the thread differs). The
//! listeners move to the front runtime (a tokio socket is driven by the
//! runtime that registered it; a handed-over connection is re-registered
//! with the ingest runtime).

use super::{serve, AppState, Listener};
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::{oneshot, watch};

/// The running HTTP threads.
pub struct HttpThreads {
    done: oneshot::Receiver<()>,
}

/// The front threads' time slice (the kernel's default is 3 ms, scaled
/// up with the cores). A thread with a shorter slice gets an earlier
/// deadline, so when a request wakes the front it runs ahead of busy
/// threads instead of waiting for their slice to end (a lower read tail in
/// paired runs at 1,000 reads/s under 10,000/s of ingest).
pub const FRONT_SLICE: Duration = Duration::from_micros(300);

fn runtime(threads: usize, name: &str, slice: Option<Duration>) -> io::Result<Runtime> {
    let mut b = Builder::new_multi_thread();
    b.worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all();
    if let Some(slice) = slice {
        b.on_thread_start(move || crate::process::request_short_slice(slice));
    }
    b.build()
}

impl HttpThreads {
    /// Moves the listeners to the front runtime (one thread), starts the
    /// ingest runtime (`ingest_threads`) and serves until `shutdown` turns
    /// true.
    pub fn spawn(
        listeners: Vec<(TcpListener, Listener)>,
        state: AppState,
        shutdown: watch::Receiver<bool>,
        ingest_threads: usize,
    ) -> io::Result<HttpThreads> {
        let front = runtime(1, "http-front", Some(FRONT_SLICE))?;
        let ingest = runtime(ingest_threads, "http-ingest", None)?;
        let listeners = listeners
            .into_iter()
            .map(|(l, role)| Ok((l.into_std()?, role)))
            .collect::<io::Result<Vec<_>>>()?;
        let (done_tx, done) = oneshot::channel();
        let ingest_handle = ingest.handle().clone();
        std::thread::Builder::new()
            .name("http-main".into())
            .spawn(move || {
                front.block_on(async move {
                    let mut tasks = Vec::new();
                    for (l, role) in listeners {
                        match TcpListener::from_std(l) {
                            Ok(l) => tasks.push(tokio::spawn(serve(
                                l,
                                role,
                                state.clone(),
                                shutdown.clone(),
                                Some(ingest_handle.clone()),
                            ))),
                            Err(e) => tracing::error!(error = %e, "cannot serve a listener"),
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // Connections still open end with the runtimes.
                front.shutdown_background();
                ingest.shutdown_background();
                let _ = done_tx.send(());
            })?;
        Ok(HttpThreads { done })
    }

    /// Completes once the listeners stopped accepting (after `shutdown`).
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}
