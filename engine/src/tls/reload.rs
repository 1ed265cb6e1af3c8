//! A renewed certificate without a restart. The files are polled rather
//! than watched with inotify: a poll sees every way they get replaced
//! (cert-manager's and Kubernetes' atomic renames of a `..data` link,
//! certbot's retargeted symlinks, an editor's in-place write) and works on
//! every filesystem. A changed pair that loads is used by the next
//! handshake; sessions already open keep theirs.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::TlsFiles;

/// How often `serve` looks at the certificate and key files.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Hands every handshake the pair in use; [`CertResolver::watch`] swaps it.
#[derive(Debug)]
pub struct CertResolver {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// What the files held when the first pair was loaded.
    loaded_from: Seen,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the files held at one look: a digest of their bytes, or of why
/// one could not be read (so a missing file is a state that can change too).
type Seen = [u8; 32];

/// The certificate file's and the key file's bytes.
type Read = Result<(Vec<u8>, Vec<u8>), super::TlsError>;

fn look(files: &TlsFiles) -> (Seen, Read) {
    let read = files.read();
    let mut digest = Sha256::new();
    match &read {
        Ok((cert, key)) => {
            digest.update(b"ok");
            digest.update((cert.len() as u64).to_le_bytes());
            digest.update(cert);
            digest.update(key);
        }
        Err(e) => {
            digest.update(b"error");
            digest.update(e.to_string());
        }
    }
    (digest.finalize().into(), read)
}

impl CertResolver {
    /// Load the pair (errors name the file and the fix): `serve` refuses
    /// to start without a usable one.
    pub fn load(files: TlsFiles) -> Result<Arc<CertResolver>, super::TlsError> {
        let (loaded_from, read) = look(&files);
        let (cert, key) = read?;
        let pair = files.parse(&cert, &key)?;
        Ok(Arc::new(CertResolver {
            files,
            current: RwLock::new(Arc::new(pair)),
            loaded_from,
        }))
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Every `period` until `shutdown`, load the files again when their
    /// bytes changed and swap a pair that loads in. A pair that does not
    /// load is logged once and the one in use is kept; it is only reported
    /// when it stayed bad for a whole period, since certbot and `cp` write
    /// the two files one after the other.
    pub async fn watch(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        let mut settled = self.loaded_from;
        let mut pending: Option<Seen> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.cancelled() => return,
            }
            let files = self.files.clone();
            let Ok((seen, loaded)) = tokio::task::spawn_blocking(move || {
                let (seen, read) = look(&files);
                // Unchanged bytes are not parsed again.
                let loaded = (seen != settled)
                    .then(|| read.and_then(|(cert, key)| files.parse(&cert, &key)));
                (seen, loaded)
            })
            .await
            else {
                continue;
            };
            let Some(loaded) = loaded else {
                pending = None;
                continue;
            };
            match loaded {
                Ok(pair) => {
                    *self
                        .current
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(pair);
                    tracing::info!(
                        cert = %self.files.cert.display(),
                        "TLS certificate reloaded: new connections get the new one"
                    );
                    settled = seen;
                    pending = None;
                }
                Err(e) if pending == Some(seen) => {
                    tracing::warn!(
                        error = %e,
                        "TLS certificate not reloaded: the changed files do not load; still serving the previous certificate"
                    );
                    settled = seen;
                    pending = None;
                }
                // Maybe half-written: look again next period before reporting.
                Err(_) => pending = Some(seen),
            }
        }
    }
}
