//! `slipway healthcheck` against an engine that terminates TLS: one
//! HTTP/1.1 GET over HTTPS, trusting exactly the certificate in `tls.cert`.
//! The check runs next to the engine (the container's HEALTHCHECK, the
//! self-update's readiness check), usually at `127.0.0.1`, a name no
//! certificate carries: so the certificate is pinned instead of its name
//! and issuer checked. It sends no token.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use super::TlsFiles;

/// Why the engine could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The configured certificate cannot be read.
    #[error(transparent)]
    Certificate(#[from] super::TlsError),
    /// The URL has no host.
    #[error("`{0}` is not a URL with a host")]
    Url(String),
    /// No connection, no TLS session, or no HTTP answer.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The answer is not HTTP.
    #[error("not an HTTP answer: {0:?}")]
    Answer(String),
}

/// Trusts one certificate, whatever name it is asked for.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the engine serves a certificate other than the one in `tls.cert` (a changed one is picked up within seconds; one that does not load is kept out: see the engine's log)".into(),
            ))
        }
    }

    // The server must still prove it holds the certificate's key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `GET <path>` from the engine at `url`'s host and port over HTTPS,
/// whatever `url`'s scheme (an engine with `tls` serves nothing else);
/// its HTTP status.
pub fn get_status(
    files: &TlsFiles,
    url: &str,
    path: &str,
    timeout: Duration,
) -> Result<u16, LocalError> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| LocalError::Url(url.into()))?;
    let host = uri.host().ok_or_else(|| LocalError::Url(url.into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let cert = files.load_chain()?.remove(0);
    let provider = super::provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();
    let name = ServerName::try_from(bare.to_owned()).map_err(|_| LocalError::Url(url.into()))?;
    let tls = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let addr = (bare, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| LocalError::Url(url.into()))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let mut stream = StreamOwned::new(tls, tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: slipway-healthcheck\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    // The status line is all the check needs.
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while head.len() < 256 && !head.ends_with(b"\r\n") {
        match stream.read(&mut byte)? {
            0 => break,
            _ => head.push(byte[0]),
        }
    }
    let line = String::from_utf8_lossy(&head).trim_end().to_owned();
    line.strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or(LocalError::Answer(line))
}
