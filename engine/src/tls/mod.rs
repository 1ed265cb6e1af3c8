//! TLS terminated by `serve` itself (`[tls] cert`, `key`), for hosts
//! without a reverse proxy: the certificate pair and its checks (here), the
//! resolver that swaps a renewed pair in without a restart ([`reload`]),
//! the listener that does the handshakes ([`listener`]) and the client that
//! `slipway healthcheck` asks the engine with ([`local`]).
//!
//! It also holds what Slipway's own outbound TLS trusts ([`trust_roots`]):
//! replicas forwarding to each other, and PostgreSQL. (Probing the package
//! registries' TLS is [`crate::tls_probe`].)

pub mod listener;
pub mod local;
pub mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;

pub use listener::TlsListener;
pub use reload::{CertResolver, RELOAD_EVERY};

/// The authorities Slipway's own outbound TLS trusts (replicas forwarding
/// to each other, PostgreSQL): the public roots (`webpki-roots`) and every
/// usable certificate of the PEM bundle `extra` (a private CA). An `extra`
/// that cannot be read or holds no usable certificate is an error, in
/// words for the caller to place.
pub fn trust_roots(extra: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra {
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())? {
            // A bundle may hold certificates webpki cannot use as anchors;
            // the others still count.
            if roots.add(cert.map_err(|e| e.to_string())?).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err("no usable certificate in it".into());
        }
    }
    Ok(roots)
}

/// A rustls client configuration trusting `roots` (the ring provider).
pub fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The certificate chain and private key files `serve` terminates TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first (a `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Why a certificate pair cannot be used; each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error(
        "cannot read the TLS {what} file {path}: {source} (check `tls.{what_key}` and that the engine's user may read it)"
    )]
    Read {
        /// `certificate` or `private key`.
        what: &'static str,
        /// `cert` or `key`.
        what_key: &'static str,
        /// The file.
        path: PathBuf,
        /// The error reading it.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or a malformed one.
    #[error(
        "{path} holds no usable PEM certificate ({reason}): `tls.cert` must be the PEM certificate chain, the server's certificate first"
    )]
    Certificate {
        /// The certificate file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds no PEM private key.
    #[error(
        "{path} holds no PEM private key ({reason}): `tls.key` must be the certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM)"
    )]
    NoKey {
        /// The key file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The key parsed but is of a kind TLS cannot sign with here.
    #[error(
        "the private key in {path} is not supported ({reason}): use an RSA (2048 bits or more), ECDSA P-256/P-384 or Ed25519 key"
    )]
    UnsupportedKey {
        /// The key file.
        path: PathBuf,
        /// Why the crypto provider refused it.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error(
        "the private key in {key} does not belong to the certificate in {cert}: give the key the certificate was issued for (a renewal replaces both files)"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
}

/// The crypto provider of every TLS session the engine serves.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsFiles {
    /// Read both files and check the pair: at least one certificate, a
    /// supported private key, and that key belonging to the first certificate.
    pub fn load(&self) -> Result<CertifiedKey, TlsError> {
        let (cert, key) = self.read()?;
        self.parse(&cert, &key)
    }

    /// The two files' bytes.
    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        Ok((
            read_file(&self.cert, "certificate", "cert")?,
            read_file(&self.key, "private key", "key")?,
        ))
    }

    /// The certificate chain alone (never empty).
    pub fn load_chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        self.parse_chain(&read_file(&self.cert, "certificate", "cert")?)
    }

    fn bad_cert(&self, reason: String) -> TlsError {
        TlsError::Certificate {
            path: self.cert.clone(),
            reason,
        }
    }

    fn parse_chain(&self, cert: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad_cert(e.to_string()))?;
        if chain.is_empty() {
            return Err(self.bad_cert("no `-----BEGIN CERTIFICATE-----` block".into()));
        }
        Ok(chain)
    }

    /// Check a pair read from these files.
    fn parse(&self, cert: &[u8], key: &[u8]) -> Result<CertifiedKey, TlsError> {
        let chain = self.parse_chain(cert)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::NoKey {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let signing = provider().key_provider.load_private_key(key).map_err(|e| {
            TlsError::UnsupportedKey {
                path: self.key.clone(),
                reason: e.to_string(),
            }
        })?;
        let pair = CertifiedKey::new(chain, signing);
        match pair.keys_match() {
            Ok(()) => Ok(pair),
            Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
            }),
            // The first certificate does not parse as X.509.
            Err(e) => Err(self.bad_cert(e.to_string())),
        }
    }
}

fn read_file(path: &Path, what: &'static str, what_key: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        what_key,
        path: path.to_path_buf(),
        source,
    })
}

/// The server side of every session: TLS 1.2 and 1.3, no client
/// certificates, HTTP/1.1 over ALPN, the certificate from `resolver`.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The API is served over HTTP/1.1 only (axum's HTTP/2 is not built in).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests;
