//! TLS client settings shared by the clients that dial out with rustls
//! (the ScyllaDB driver, the Pulsar admin API): the roots to trust, from a
//! PEM file of CAs or, without one, the webpki roots; certificates are
//! always verified.
//!
//! Two rustls crypto providers are compiled in (ring, which our clients
//! choose, and aws-lc-rs, which the ScyllaDB driver's rustls feature turns
//! on). A library that builds its TLS settings with rustls' process default
//! (the Pulsar crate does) panics when it finds two and none chosen:
//! [`install_process_provider`] chooses ring before any of them dials.

use std::path::Path;
use std::sync::Arc;

/// A rustls client configuration trusting `ca_file`'s certificates (an
/// error if it holds none) or, when `None`, the webpki roots. The error is
/// a sentence for the caller's own error type.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            if roots.is_empty() {
                return Err("no certificate in the file".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Makes ring the process-wide rustls provider, unless one is already
/// chosen. Idempotent; call before a library builds TLS settings from the
/// process default.
pub fn install_process_provider() {
    // An error only says that a provider is already installed: keep it.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_and_no_file_trusts_webpki() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(client_config(Some(&empty)).is_err());
        assert!(client_config(Some(&dir.path().join("missing.pem"))).is_err());
        assert!(client_config(None).is_ok());
    }
}
