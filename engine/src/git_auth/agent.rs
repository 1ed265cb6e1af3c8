//! An SSH agent of one deploy key, for one git call: `ssh` asks it for
//! signatures, so the private key never leaves the engine's memory and is
//! never written to a file.
//!
//! The agent listens on a unix socket in a private directory (mode 0700,
//! the socket 0600), answers only the listing of its one key and signature
//! requests for that key, and refuses everything else (adding, removing,
//! locking, extensions). It runs on a thread of its own with a small tokio
//! runtime (git runs on blocking threads, and from the command line
//! outside any runtime), and stops when dropped: the thread is joined, the
//! socket and its directory removed, and the key dropped (ssh-key zeroizes
//! its private parts on drop).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ssh_agent_lib::agent::{Agent, Session};
use ssh_agent_lib::error::AgentError;
use ssh_agent_lib::proto::{Identity, PublicCredential, Request, Response, SignRequest};
use ssh_key::private::KeypairData;
use ssh_key::{Algorithm, HashAlg, PrivateKey, Signature};

/// Socket paths are limited to 108 bytes: a longer temporary directory
/// gives way to `/tmp`.
const MAX_SOCKET_PATH: usize = 100;

/// A running agent of one key. Dropping it stops the agent and removes
/// its socket.
pub struct KeyAgent {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Removed after the thread has stopped listening.
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for KeyAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAgent")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl KeyAgent {
    /// Serve `key` on a new socket. The key must be decrypted (see
    /// [`signs`]).
    pub fn start(key: PrivateKey) -> std::io::Result<KeyAgent> {
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() + "/slipway-ssh-agent-XXXXXX/agent.sock".len() > MAX_SOCKET_PATH {
            base = PathBuf::from("/tmp");
        }
        let dir = tempfile::Builder::new()
            .prefix("slipway-ssh-agent-")
            .tempdir_in(base)?;
        // tempfile makes it 0700 already; said again, as the socket's only
        // guard against other users.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let owner = std::fs::metadata(dir.path())?.uid();
        let socket = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = OneKey {
            key: Arc::new(key),
            owner,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("slipway-ssh-agent".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::UnixListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::warn!("the SSH agent cannot listen: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        result = ssh_agent_lib::agent::listen(listener, served) => {
                            if let Err(e) = result {
                                tracing::warn!("the SSH agent stopped: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
                // The runtime, its connections and their copies of the key's
                // handle are dropped here, before the thread ends.
            })?;
        Ok(KeyAgent {
            socket,
            stop: Some(stop),
            thread: Some(thread),
            dir: Some(dir),
        })
    }

    /// The socket to give `ssh` as `SSH_AUTH_SOCK`.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for KeyAgent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
        {
            tracing::warn!("cannot remove the SSH agent's socket: {e}");
        }
    }
}

/// Whether the agent can sign with `key`: decrypted, and of a kind
/// signed in software (Ed25519, ECDSA, RSA; not DSA, nor keys held by a
/// security key).
pub fn signs(key: &PrivateKey) -> Result<(), String> {
    match key.key_data() {
        KeypairData::Ed25519(_) | KeypairData::Ecdsa(_) | KeypairData::Rsa(_) => Ok(()),
        KeypairData::Encrypted(_) => Err("the key is encrypted".into()),
        _ => Err(format!(
            "{} keys are not supported (hint: an Ed25519 key: `ssh-keygen -t ed25519`)",
            key.algorithm()
        )),
    }
}

/// The agent and each of its sessions: the one key, and the user allowed
/// to use it (the engine's own, who owns the socket's directory).
struct OneKey {
    key: Arc<PrivateKey>,
    owner: u32,
}

/// One client's session; `key` is `None` for a client of another user,
/// who is refused everything.
struct OneKeySession {
    key: Option<Arc<PrivateKey>>,
}

impl Agent<tokio::net::UnixListener> for OneKey {
    fn new_session(&mut self, socket: &tokio::net::UnixStream) -> impl Session {
        // The directory's mode keeps other users out already; root can
        // reach the socket anyway, and is let through only as the owner.
        let allowed = socket
            .peer_cred()
            .is_ok_and(|peer| peer.uid() == self.owner);
        if !allowed {
            tracing::warn!("the SSH agent refused a client of another user");
        }
        OneKeySession {
            key: allowed.then(|| self.key.clone()),
        }
    }
}

#[ssh_agent_lib::async_trait]
impl Session for OneKeySession {
    /// Only the listing and signatures; every other request gets a plain
    /// failure (answered here: the library's own refusal would be logged
    /// as an error for each `ssh`, which asks for `session-bind`).
    async fn handle(&mut self, message: Request) -> Result<Response, AgentError> {
        let Some(key) = &self.key else {
            return Ok(Response::Failure);
        };
        match message {
            Request::RequestIdentities => Ok(Response::IdentitiesAnswer(vec![Identity {
                credential: PublicCredential::Key(key.public_key().key_data().clone()),
                comment: "slipway deploy key".into(),
            }])),
            Request::SignRequest(request) => match sign(key, &request) {
                Ok(signature) => Ok(Response::SignResponse(signature)),
                Err(why) => {
                    tracing::debug!("the SSH agent refused to sign: {why}");
                    Ok(Response::Failure)
                }
            },
            other => {
                tracing::debug!(
                    "the SSH agent refused request {} (it only lists and signs)",
                    other.message_id()
                );
                Ok(Response::Failure)
            }
        }
    }
}

/// `request.data` signed with `key`, if the request names that key. RSA
/// signs with the SHA-2 hash the flags ask for; SHA-1 (`ssh-rsa`) is
/// refused, as current OpenSSH does.
fn sign(key: &PrivateKey, request: &SignRequest) -> Result<Signature, String> {
    let PublicCredential::Key(asked) = &request.credential else {
        return Err("a certificate was named".into());
    };
    if asked != key.public_key().key_data() {
        return Err("another key was named".into());
    }
    match key.key_data() {
        KeypairData::Rsa(pair) => {
            let flags = request.flags;
            let hash = if flags & ssh_agent_lib::proto::signature::RSA_SHA2_512 != 0 {
                HashAlg::Sha512
            } else if flags & ssh_agent_lib::proto::signature::RSA_SHA2_256 != 0 {
                HashAlg::Sha256
            } else {
                return Err("an RSA signature with SHA-1 was asked for".into());
            };
            let bytes = rsa_sign(pair, hash, &request.data)?;
            Signature::new(Algorithm::Rsa { hash: Some(hash) }, bytes).map_err(|e| e.to_string())
        }
        _ => rsa::signature::Signer::try_sign(key, &request.data).map_err(|e| e.to_string()),
    }
}

/// A PKCS#1 v1.5 signature of `data` with `hash`. The key is put together
/// from its parts here: ssh-key 0.6's own conversion passes the first
/// prime twice, and its signer knows SHA-512 only.
fn rsa_sign(
    pair: &ssh_key::private::RsaKeypair,
    hash: HashAlg,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let number = |n: &ssh_key::Mpint| rsa::BigUint::try_from(n).map_err(|e| e.to_string());
    // Zeroized when dropped (rsa's private key clears itself).
    let private = rsa::RsaPrivateKey::from_components(
        number(&pair.public.n)?,
        number(&pair.public.e)?,
        number(&pair.private.d)?,
        vec![number(&pair.private.p)?, number(&pair.private.q)?],
    )
    .map_err(|e| e.to_string())?;
    let signature = match hash {
        HashAlg::Sha256 => rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(private)
            .try_sign(data)
            .map(|s| s.to_vec()),
        _ => rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha512>::new(private)
            .try_sign(data)
            .map(|s| s.to_vec()),
    };
    signature.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::process::Command;

    use ssh_agent_lib::blocking::Client;
    use ssh_agent_lib::proto::{AddIdentity, PrivateCredential, RemoveIdentity};
    use ssh_key::private::Ed25519Keypair;

    use super::*;

    fn ed25519(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    /// A key made by `ssh-keygen` (openssh-client; scripts/setup.sh
    /// installs it), read back.
    fn keygen(kind: &[&str]) -> PrivateKey {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "test"])
            .args(kind)
            .arg("-f")
            .arg(&path)
            .output()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(out.status.success(), "{out:?}");
        // As the engine reads it (ssh-key alone refuses one ECDSA key in 256).
        crate::git_auth::key::parse("test", &std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// Whether `signature` is `public`'s over `data`.
    fn verifies(public: &ssh_key::PublicKey, data: &[u8], signature: &Signature) -> bool {
        rsa::signature::Verifier::verify(public.key_data(), data, signature).is_ok()
    }

    fn client(agent: &KeyAgent) -> Client<UnixStream> {
        Client::new(UnixStream::connect(agent.socket()).unwrap())
    }

    #[test]
    fn it_lists_its_one_key_signs_with_it_and_refuses_everything_else() {
        let key = ed25519(7);
        let public = key.public_key().clone();
        let agent = KeyAgent::start(key).unwrap();
        let mut client = client(&agent);

        let listed = client.request_identities().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].credential.key_data(), public.key_data());

        let data = b"session identifier and user auth request".to_vec();
        let signature = client
            .sign(SignRequest {
                credential: PublicCredential::Key(public.key_data().clone()),
                data: data.clone(),
                flags: 0,
            })
            .unwrap();
        assert!(verifies(&public, &data, &signature));
        assert!(!verifies(&public, b"other data", &signature));

        // Another key is not signed with, nor added, nor is this one removed.
        let stranger = ed25519(8);
        assert!(
            client
                .sign(SignRequest {
                    credential: PublicCredential::Key(stranger.public_key().key_data().clone()),
                    data: data.clone(),
                    flags: 0,
                })
                .is_err()
        );
        assert!(
            client
                .add_identity(AddIdentity {
                    credential: PrivateCredential::Key {
                        privkey: stranger.key_data().clone(),
                        comment: "added".into(),
                    },
                })
                .is_err()
        );
        assert!(
            client
                .remove_identity(RemoveIdentity {
                    credential: PublicCredential::Key(public.key_data().clone()),
                })
                .is_err()
        );
        assert!(client.remove_all_identities().is_err());
        assert!(client.lock("passphrase".into()).is_err());
        // Still exactly the one key, and the connection still answers.
        let listed = client.request_identities().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].credential.key_data(), public.key_data());
    }

    #[test]
    fn its_socket_is_private_and_gone_when_it_is_dropped() {
        let agent = KeyAgent::start(ed25519(9)).unwrap();
        let socket = agent.socket().to_path_buf();
        let dir = socket.parent().unwrap().to_path_buf();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&socket), 0o600);
        // A client still connected does not keep it alive.
        let mut connected = client(&agent);
        assert_eq!(connected.request_identities().unwrap().len(), 1);
        drop(agent);
        assert!(!socket.exists(), "{}", socket.display());
        assert!(!dir.exists(), "{}", dir.display());
        assert!(connected.request_identities().is_err());
        assert!(UnixStream::connect(&socket).is_err());
    }

    #[test]
    fn ssh_add_sees_the_one_key() {
        let key = keygen(&["-t", "ecdsa", "-b", "256"]);
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let agent = KeyAgent::start(key).unwrap();
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", agent.socket())
            .output()
            .expect("ssh-add (openssh-client) is installed");
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(listing.lines().count(), 1, "{listing}");
        assert!(listing.contains(&fingerprint), "{listing}");
        // ssh-add cannot remove it either.
        let out = Command::new("ssh-add")
            .arg("-D")
            .env("SSH_AUTH_SOCK", agent.socket())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
    }

    #[test]
    fn rsa_and_ecdsa_keys_sign_with_the_hash_asked_for() {
        for key in [
            keygen(&["-t", "rsa", "-b", "2048"]),
            keygen(&["-t", "ecdsa", "-b", "384"]),
        ] {
            let public = key.public_key().clone();
            let agent = KeyAgent::start(key).unwrap();
            let mut client = client(&agent);
            let data = b"to be signed".to_vec();
            let request = |flags| SignRequest {
                credential: PublicCredential::Key(public.key_data().clone()),
                data: data.clone(),
                flags,
            };
            if matches!(public.algorithm(), Algorithm::Rsa { .. }) {
                for (flags, hash) in [
                    (
                        ssh_agent_lib::proto::signature::RSA_SHA2_256,
                        HashAlg::Sha256,
                    ),
                    (
                        ssh_agent_lib::proto::signature::RSA_SHA2_512,
                        HashAlg::Sha512,
                    ),
                ] {
                    let signature = client.sign(request(flags)).unwrap();
                    assert_eq!(signature.algorithm(), Algorithm::Rsa { hash: Some(hash) });
                    assert!(verifies(&public, &data, &signature));
                }
                assert!(client.sign(request(0)).is_err(), "SHA-1 is refused");
            } else {
                let signature = client.sign(request(0)).unwrap();
                assert!(verifies(&public, &data, &signature));
            }
        }
    }
}
