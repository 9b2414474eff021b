//! Why a connection to the broker was refused, when the client crate cannot
//! say: it reduces every failure it does not retry (an untrusted
//! certificate, a refused token) to "fatal error when connecting to the
//! Pulsar server" and only logs the cause. [`probe`] takes the first steps
//! again itself, against the first host of the service URL, with the same
//! trust (the webpki roots and the CA file, as the crate has it) and the
//! same token: the TCP connection, the TLS handshake, then the CONNECT
//! command, and names the step that failed. Never shows the token.

use super::client::PulsarOptions;
use prost::Message as _;
use pulsar::proto::{base_command, BaseCommand, CommandConnect, ServerError};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest wait for the whole probe.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer to CONNECT read (a CONNECTED or an ERROR is tiny).
const MAX_FRAME: usize = 64 * 1024;
/// The Pulsar protocol version announced (the crate's own).
const PROTOCOL_VERSION: i32 = 12;

/// The step that fails when the options are used against the broker, as a
/// sentence; `None` when every step succeeds (the cause is elsewhere) or
/// the probe timed out.
pub async fn probe(o: &PulsarOptions) -> Option<String> {
    tokio::time::timeout(TIMEOUT, run(o)).await.ok().flatten()
}

/// `host` and `port` of the first broker of a service URL.
fn first_broker(url: &str) -> Option<(String, u16, bool)> {
    let (tls, rest) = match url.strip_prefix("pulsar+ssl://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("pulsar://")?),
    };
    let authority = rest.split([',', '/']).next()?;
    let default_port = if tls { 6651 } else { 6650 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port, tls))
}

async fn run(o: &PulsarOptions) -> Option<String> {
    let (host, port, tls) = first_broker(&o.url)?;
    let tcp = match tokio::net::TcpStream::connect((host.as_str(), port)).await {
        Ok(tcp) => tcp,
        Err(e) => return Some(format!("cannot reach {host}:{port}: {e}")),
    };
    if !tls {
        return connect(tcp, o).await;
    }
    let config = match tls_config(o) {
        Ok(c) => c,
        Err(e) => return Some(format!("TLS settings: {e}")),
    };
    let name = rustls::pki_types::ServerName::try_from(host.clone()).ok()?;
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(stream) => connect(stream, o).await,
        Err(e) => Some(format!(
            "TLS handshake with {host}:{port} failed: {e} (is the broker's certificate \
             signed by a CA of --pulsar-tls-ca-file?)"
        )),
    }
}

/// The crate's trust: the webpki roots plus the CA file's certificates.
fn tls_config(o: &PulsarOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &o.tls_ca_file {
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sends CONNECT (with the token) and reads the answer: the broker's
/// refusal, or `None` when it answers CONNECTED.
async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    o: &PulsarOptions,
) -> Option<String> {
    let command = BaseCommand {
        r#type: base_command::Type::Connect as i32,
        connect: Some(CommandConnect {
            client_version: concat!("alpes-tracking-", env!("CARGO_PKG_VERSION")).into(),
            auth_method_name: o.token.as_ref().map(|_| "token".into()),
            auth_data: o.token.as_ref().map(|t| t.expose().as_bytes().to_vec()),
            protocol_version: Some(PROTOCOL_VERSION),
            ..Default::default()
        }),
        ..Default::default()
    };
    // A simple command frame: total size, command size, command.
    let body = command.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    if let Err(e) = stream.write_all(&frame).await {
        return Some(format!("sending CONNECT: {e}"));
    }
    let answer = match read_command(&mut stream).await {
        Ok(answer) => answer,
        Err(e) => {
            return Some(format!(
                "the broker closed the connection after CONNECT: {e}"
            ))
        }
    };
    let error = answer.error?;
    let kind = ServerError::try_from(error.error)
        .map(|k| format!("{k:?}"))
        .unwrap_or_else(|_| format!("error {}", error.error));
    let what = if error.error == ServerError::AuthenticationError as i32 {
        "authentication failed (check --pulsar-token / --pulsar-token-file)"
    } else {
        "the broker refused the connection"
    };
    Some(format!("{what}: {kind}: {}", error.message))
}

async fn read_command<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<BaseCommand> {
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let total = stream.read_u32().await? as usize;
    if !(4..=MAX_FRAME).contains(&total) {
        return Err(invalid(format!("a frame of {total} bytes")));
    }
    let mut buf = vec![0u8; total];
    stream.read_exact(&mut buf).await?;
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let command = buf
        .get(4..4 + size)
        .ok_or_else(|| invalid(format!("a command of {size} bytes in {total}")))?;
    BaseCommand::decode(command).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::pulsar::Secret;

    #[test]
    fn the_first_broker_of_a_url() {
        assert_eq!(
            first_broker("pulsar+ssl://b1:7651,b2:7651/"),
            Some(("b1".into(), 7651, true))
        );
        assert_eq!(
            first_broker("pulsar://broker"),
            Some(("broker".into(), 6650, false))
        );
        assert_eq!(first_broker("http://x:1"), None);
        assert_eq!(first_broker("pulsar://:6650"), None);
    }

    /// A broker that refuses the token: the probe names the step and the
    /// broker's reason, and the CONNECT it sent carried the token.
    #[tokio::test]
    async fn a_refused_token_is_named_as_an_authentication_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let connect = read_command(&mut s).await.unwrap();
            let error = BaseCommand {
                r#type: base_command::Type::Error as i32,
                error: Some(pulsar::proto::CommandError {
                    request_id: 0,
                    error: ServerError::AuthenticationError as i32,
                    message: "Failed to authenticate".into(),
                }),
                ..Default::default()
            }
            .encode_to_vec();
            let mut frame = (error.len() as u32 + 4).to_be_bytes().to_vec();
            frame.extend_from_slice(&(error.len() as u32).to_be_bytes());
            frame.extend_from_slice(&error);
            s.write_all(&frame).await.unwrap();
            connect
        });
        let mut o = PulsarOptions::new(format!("pulsar://127.0.0.1:{port}"));
        o.token = Some(Secret::new("tok-123"));
        let why = probe(&o).await.unwrap();
        assert!(
            why.starts_with("authentication failed")
                && why.contains("AuthenticationError: Failed to authenticate"),
            "{why}"
        );
        assert!(!why.contains("tok-123"), "{why}");
        let connect = broker.await.unwrap().connect.unwrap();
        assert_eq!(connect.auth_data.as_deref(), Some(&b"tok-123"[..]));
        assert_eq!(connect.auth_method_name.as_deref(), Some("token"));
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named() {
        let why = probe(&PulsarOptions::new("pulsar://127.0.0.1:9"))
            .await
            .unwrap();
        assert!(why.starts_with("cannot reach 127.0.0.1:9"), "{why}");
    }
}
