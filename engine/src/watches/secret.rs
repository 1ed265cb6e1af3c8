//! Webhook secrets. A forge signs with the secret itself (an HMAC key), so
//! the engine must be able to read it back: it is sealed at rest with
//! ChaCha20-Poly1305 under a key of the engine's own, kept in the state
//! directory (`keys/watches.key`, mode 0600, made on first use). A copy of
//! the store alone reveals no secret.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The length of a sealing nonce.
const NONCE_LEN: usize = 12;

/// The key webhook secrets are sealed with.
#[derive(Clone)]
pub struct SealingKey(Key);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

/// Why a secret could not be made, sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file cannot be read, made or used.
    #[error("the webhook sealing key {path}: {reason}")]
    Key {
        /// `<state>/keys/watches.key`.
        path: String,
        /// What is wrong with it, and what to do.
        reason: String,
    },
    /// `/dev/urandom` could not be read.
    #[error("no randomness from the kernel: {0}")]
    Random(std::io::Error),
    /// A sealed secret does not open with this key.
    #[error(
        "a stored webhook secret does not open with this engine's key (was keys/watches.key replaced?): rotate the watch's secret"
    )]
    Unseal,
}

/// `N` bytes from the kernel's random source.
pub(crate) fn random<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(SecretError::Random)?;
    Ok(bytes)
}

impl SealingKey {
    /// The key in `<state_dir>/keys/watches.key`, made on first use.
    pub fn load_or_create(state_dir: &Path) -> Result<SealingKey, SecretError> {
        let dir = state_dir.join("keys");
        let path = dir.join("watches.key");
        let fail = |reason: String| SecretError::Key {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(SealingKey(*Key::from_slice(&bytes))),
            Ok(bytes) => Err(fail(format!(
                "is {} bytes, not 32: restore it, or remove it and rotate every watch's secret",
                bytes.len()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| fail(e.to_string()))?;
                let key: [u8; 32] = random()?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| fail(e.to_string()))?;
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| fail(e.to_string()))?;
                Ok(SealingKey(*Key::from_slice(&key)))
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Seal `secret`: a fresh nonce, then the ciphertext.
    pub fn seal(&self, secret: &str) -> Result<Vec<u8>, SecretError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&nonce), secret.as_bytes())
            .map_err(|_| SecretError::Unseal)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    /// The secret `sealed` holds.
    pub fn open(&self, sealed: &[u8]) -> Result<String, SecretError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretError::Unseal);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Unseal)?;
        String::from_utf8(plain).map_err(|_| SecretError::Unseal)
    }
}

/// A new webhook secret, `whsec_` and 32 random bytes in base64: usable as
/// typed by every forge, and as a Standard Webhooks key.
pub fn generate() -> Result<String, SecretError> {
    let bytes: [u8; 32] = random()?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_seal_and_open_only_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = SealingKey::load_or_create(dir.path()).unwrap();
        let secret = generate().unwrap();
        assert!(secret.starts_with("whsec_") && secret.len() > 40);
        let sealed = key.seal(&secret).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains(&secret[6..]));
        // The same key read back from disk opens it; another key does not.
        let again = SealingKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), secret);
        let other = SealingKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(matches!(other.open(&sealed), Err(SecretError::Unseal)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("keys/watches.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
