//! The HTTP endpoint on threads of its own.
//!
//! Reads must answer in milliseconds while the pipeline keeps the main
//! runtime's workers busy. On one shared runtime a request that became
//! readable waits in a worker's run queue behind actor messages (thousands
//! per second under load); on its own runtime it waits only behind other
//! requests, and the OS scheduler favours its mostly idle threads. The
//! listeners move to that runtime (a tokio socket is driven by the runtime
//! that registered it).

use super::{serve, AppState, Listener};
use std::io;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

/// The running HTTP threads.
pub struct HttpThreads {
    done: oneshot::Receiver<()>,
}

impl HttpThreads {
    /// Moves the listeners to a runtime of `threads` worker threads on a
    /// thread of its own and serves them until `shutdown` turns true.
    pub fn spawn(
        listeners: Vec<(TcpListener, Listener)>,
        state: AppState,
        shutdown: watch::Receiver<bool>,
        threads: usize,
    ) -> io::Result<HttpThreads> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("http")
            .enable_all()
            .build()?;
        let listeners = listeners
            .into_iter()
            .map(|(l, role)| Ok((l.into_std()?, role)))
            .collect::<io::Result<Vec<_>>>()?;
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new()
            .name("http-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut tasks = Vec::new();
                    for (l, role) in listeners {
                        match TcpListener::from_std(l) {
                            Ok(l) => tasks.push(tokio::spawn(serve(
                                l,
                                role,
                                state.clone(),
                                shutdown.clone(),
                            ))),
                            Err(e) => tracing::error!(error = %e, "cannot serve a listener"),
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                // Connections still open end with the runtime.
                runtime.shutdown_background();
                let _ = done_tx.send(());
            })?;
        Ok(HttpThreads { done })
    }

    /// Completes once the listeners stopped accepting (after `shutdown`).
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}
