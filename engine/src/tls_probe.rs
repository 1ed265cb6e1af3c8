//! Is outbound TLS intercepted? A TLS handshake with a package registry,
//! verified against the public web's roots (Mozilla's, as the stand-in and
//! official images trust them): a chain that does not verify there comes
//! from a TLS-inspecting proxy, and image builds that fetch dependencies
//! fail until `ca_bundle` holds its CA. `slipway doctor` reports it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Registries the first-party plugins' generated images fetch from.
pub const DEFAULT_REGISTRIES: &[&str] = &[
    "pypi.org",
    "registry.npmjs.org",
    "index.crates.io",
    "rubygems.org",
    "proxy.golang.org",
];

/// What a handshake with one registry showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its certificate chain verifies against the public roots.
    Public,
    /// It does not, but the configured CA bundle covers it.
    CoveredByBundle {
        /// Why the public roots rejected the chain.
        reason: String,
    },
    /// It does not, and nothing configured covers it.
    Intercepted {
        /// Why the public roots rejected the chain.
        reason: String,
    },
    /// No TLS session at all (DNS, connect, timeout): not a TLS verdict.
    Unreachable {
        /// What failed: name resolution, the connection, or the TLS protocol.
        reason: String,
    },
}

/// Why a probe could not be made at all (as opposed to a [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The target has no host part (e.g. `:443`).
    #[error("`{0}` is not a host name or address")]
    BadHost(String),
    /// The configured `ca_bundle` cannot be read, or holds no usable certificate.
    #[error("the CA bundle {path}: {message}")]
    Bundle {
        /// The bundle's path, as configured.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

/// `host` or `host:port` (443 by default).
fn split_target(target: &str) -> (String, u16) {
    match target.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_owned(), port),
            Err(_) => (target.to_owned(), 443),
        },
        _ => (target.to_owned(), 443),
    }
}

fn public_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn bundle_roots(path: &Path) -> Result<RootCertStore, ProbeError> {
    let bundle_error = |message: String| ProbeError::Bundle {
        path: path.display().to_string(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bundle_error(e.to_string()))? {
        let cert = cert.map_err(|e| bundle_error(e.to_string()))?;
        // A bundle may hold certificates webpki cannot use as anchors;
        // the others still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(bundle_error("no usable certificate in it".into()));
    }
    Ok(roots)
}

enum Handshake {
    Verified,
    /// The handshake failed on the peer's certificate.
    Rejected(String),
    /// Anything before or beside the certificate (DNS, TCP, protocol).
    Failed(String),
}

fn handshake(host: &str, port: u16, roots: RootCertStore, timeout: Duration) -> Handshake {
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return Handshake::Failed(format!("`{host}` is not a valid server name"));
    };
    let addr = match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => return Handshake::Failed(format!("{host} has no address")),
        Err(e) => return Handshake::Failed(format!("resolving {host}: {e}")),
    };
    let tcp = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return Handshake::Failed(format!("connecting to {addr}: {e}")),
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
            Err(e) => return Handshake::Failed(e.to_string()),
        };
    let conn = match ClientConnection::new(Arc::new(config), name) {
        Ok(c) => c,
        Err(e) => return Handshake::Failed(e.to_string()),
    };
    let mut tls = StreamOwned::new(conn, tcp);
    // A request makes the handshake complete (or fail) here.
    let request = format!("HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let result = tls
        .write_all(request.as_bytes())
        .and_then(|()| tls.read(&mut [0u8; 1]).map(|_| ()));
    match result {
        Ok(()) => Handshake::Verified,
        Err(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(c)) => {
                Handshake::Rejected(format!("invalid peer certificate: {c:?}"))
            }
            _ if tls.conn.peer_certificates().is_some() => Handshake::Verified,
            _ => Handshake::Failed(e.to_string()),
        },
    }
}

/// Probe `target` (`host[:port]`); `bundle`: the configured `ca_bundle`.
pub fn probe(
    target: &str,
    bundle: Option<&Path>,
    timeout: Duration,
) -> Result<Verdict, ProbeError> {
    let (host, port) = split_target(target);
    if host.is_empty() {
        return Err(ProbeError::BadHost(target.to_owned()));
    }
    match handshake(&host, port, public_roots(), timeout) {
        Handshake::Verified => Ok(Verdict::Public),
        Handshake::Failed(reason) => Ok(Verdict::Unreachable { reason }),
        Handshake::Rejected(reason) => match bundle {
            None => Ok(Verdict::Intercepted { reason }),
            Some(path) => match handshake(&host, port, bundle_roots(path)?, timeout) {
                Handshake::Verified => Ok(Verdict::CoveredByBundle { reason }),
                Handshake::Rejected(_) | Handshake::Failed(_) => {
                    Ok(Verdict::Intercepted { reason })
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_port_443() {
        assert_eq!(split_target("pypi.org"), ("pypi.org".into(), 443));
        assert_eq!(split_target("127.0.0.1:8443"), ("127.0.0.1".into(), 8443));
        assert_eq!(split_target("[::1]"), ("[::1]".into(), 443));
    }

    #[test]
    fn a_closed_port_is_unreachable_not_intercepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let v = probe(&format!("127.0.0.1:{port}"), None, Duration::from_secs(2)).unwrap();
        assert!(matches!(v, Verdict::Unreachable { .. }), "{v:?}");
    }

    #[test]
    fn a_bundle_without_certificates_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let e = bundle_roots(file.path()).unwrap_err();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
    }
}
