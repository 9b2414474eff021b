//! A `pulsar+ssl://` URL reaches a TLS handshake and fails with an error
//! when the broker is not there, never with a panic: the process holds two
//! rustls crypto providers and the Pulsar crate builds its TLS settings
//! from the process default. Its own test binary, so that no other test
//! has chosen a provider before it runs.

use alpes_tracking::log::pulsar::{build_client, PulsarOptions};

#[tokio::test]
async fn a_tls_url_fails_with_an_error_not_a_panic() {
    // A "broker" that accepts and hangs up: the handshake fails.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    let options = PulsarOptions::new(format!("pulsar+ssl://127.0.0.1:{port}"));
    let outcome = tokio::spawn(async move { build_client(&options).await.map(|_| ()) }).await;
    let result = outcome.expect("connecting over TLS panicked");
    assert!(
        result.is_err(),
        "a broker that hangs up cannot be connected to"
    );
}
