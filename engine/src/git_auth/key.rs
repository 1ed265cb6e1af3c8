//! Reading a deploy key: the OpenSSH private key format, decrypted, of a
//! kind the agent signs with; a clear error naming the host otherwise.

use base64::Engine as _;
use ssh_key::PrivateKey;
use zeroize::Zeroizing;

use super::{GitAuthError, agent};

/// The private key in `text`, ready to sign with.
pub(super) fn parse(host: &str, text: &str) -> Result<PrivateKey, GitAuthError> {
    if !(text.starts_with("-----BEGIN ") && text.contains("PRIVATE KEY-----")) {
        return Err(GitAuthError::NotAKey {
            host: host.to_owned(),
        });
    }
    let unusable = |reason: String| GitAuthError::UnusableKey {
        host: host.to_owned(),
        reason,
    };
    if !text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Err(unusable(
            "it is a PEM key, not in the OpenSSH format (hint: `ssh-keygen -p -f FILE` rewrites it in the OpenSSH format)".into(),
        ));
    }
    let key = match PrivateKey::from_openssh(text) {
        Ok(key) => key,
        Err(e) => padded_ecdsa_scalar(text)
            .and_then(|bytes| PrivateKey::from_bytes(&bytes).ok())
            .ok_or_else(|| unusable(format!("it cannot be read ({e})")))?,
    };
    if key.is_encrypted() {
        return Err(GitAuthError::EncryptedKey {
            host: host.to_owned(),
        });
    }
    agent::signs(&key).map_err(unusable)?;
    Ok(key)
}

/// The binary form of an unencrypted OpenSSH ECDSA key whose private
/// scalar is shorter than its curve's size, with the scalar padded.
///
/// OpenSSH writes the scalar as an mpint, without leading zero bytes;
/// ssh-key 0.6 reads it only at full size, so one P-256 or P-384 key in
/// 256 (and half the P-521 keys) would be refused. `None` when there is
/// nothing to pad, or the text is not such a key.
fn padded_ecdsa_scalar(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let body = Zeroizing::new(
        text.lines()
            .filter(|line| !line.starts_with("-----"))
            .map(str::trim)
            .collect::<String>(),
    );
    let blob = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .ok()?,
    );
    let mut outer = Fields(&blob);
    let magic = outer.take(15).filter(|m| *m == b"openssh-key-v1\0")?;
    let cipher = outer.string().filter(|c| *c == b"none")?;
    let (kdf, kdf_options) = (outer.string()?, outer.string()?);
    let count = outer.take(4).filter(|n| *n == 1u32.to_be_bytes())?;
    let (public, private) = (outer.string()?, outer.string()?);
    let mut inner = Fields(private);
    let checks = inner.take(8)?;
    let kind = inner.string()?;
    let size = match kind {
        b"ecdsa-sha2-nistp256" => 32,
        b"ecdsa-sha2-nistp384" => 48,
        b"ecdsa-sha2-nistp521" => 66,
        _ => return None,
    };
    let (curve, point, scalar, comment) = (
        inner.string()?,
        inner.string()?,
        inner.string()?,
        inner.string()?,
    );
    if scalar.len() >= size {
        return None;
    }
    // Sized up front: a vector that grows leaves copies behind, uncleared.
    let mut section = Zeroizing::new(Vec::with_capacity(private.len() + 2 * size));
    section.extend_from_slice(checks);
    for field in [kind, curve, point] {
        put_string(&mut section, field);
    }
    put_length(&mut section, size);
    let padded = section.len() + size - scalar.len();
    section.resize(padded, 0);
    section.extend_from_slice(scalar);
    put_string(&mut section, comment);
    // Padding 1, 2, 3... to the "none" cipher's block of 8 bytes.
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(blob.len() + section.len()));
    bytes.extend_from_slice(magic);
    for field in [cipher, kdf, kdf_options] {
        put_string(&mut bytes, field);
    }
    bytes.extend_from_slice(count);
    put_string(&mut bytes, public);
    put_string(&mut bytes, &section);
    Some(bytes)
}

/// The SSH wire format's fields, read in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (field, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(field)
    }

    /// A `string`: a 32-bit length, then that many bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        let length = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        self.take(usize::try_from(length).ok()?)
    }
}

fn put_length(out: &mut Vec<u8>, length: usize) {
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_string(out: &mut Vec<u8>, field: &[u8]) {
    put_length(out, field.len());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One run of `ssh-keygen` (openssh-client; scripts/setup.sh installs it).
    fn keygen(kind: &[&str], path: &std::path::Path) -> String {
        let _ = std::fs::remove_file(path);
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "test"])
            .args(kind)
            .arg("-f")
            .arg(path)
            .output()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(out.status.success(), "{out:?}");
        std::fs::read_to_string(path).unwrap()
    }

    /// ECDSA keys whose private scalar begins with a zero byte are read
    /// too. P-521 keys are made until one has such a scalar (about one in
    /// two does; one P-256 or P-384 key in 256, by the same path), which
    /// is read with its public key intact and signs.
    #[test]
    fn ecdsa_keys_with_a_short_scalar_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let short = (0..60).find_map(|_| {
            let text = keygen(&["-t", "ecdsa", "-b", "521"], &path);
            PrivateKey::from_openssh(&text).is_err().then_some(text)
        });
        let text = short.expect("a P-521 key with a short scalar in 60 tries");
        let key = parse("git.example.com", &text).unwrap();
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        let public = ssh_key::PublicKey::from_openssh(&public).unwrap();
        assert_eq!(key.public_key().key_data(), public.key_data());
        assert!(agent::signs(&key).is_ok());
        let data = b"signed";
        let signature = rsa::signature::Signer::try_sign(&key, data).unwrap();
        assert!(rsa::signature::Verifier::verify(public.key_data(), data, &signature).is_ok());
        // A key ssh-key reads as it is is left alone.
        let text = keygen(&["-t", "ecdsa", "-b", "384"], &path);
        if PrivateKey::from_openssh(&text).is_ok() {
            assert!(padded_ecdsa_scalar(&text).is_none());
        }
    }
}
