//! Credentials for private repositories, by reference: the configuration
//! maps a host to a secret reference, resolved each time git talks to that
//! host, so a value is never stored by the engine, never on a command line,
//! never sent to another host, and never in a job's log.
//!
//! - HTTPS (`git_credentials`, e.g. `"github.com" = "env:GITHUB_TOKEN"`):
//!   a token handed to git through its environment (`GIT_CONFIG_*`: an
//!   `Authorization` header scoped to the host's URL).
//! - SSH (`git_ssh_keys`, e.g. `"github.com" = "file:/run/secrets/deploy_key"`):
//!   a private key served to `ssh` for the one git call by an SSH agent of
//!   the engine's ([`agent`]), never written to a file; `GIT_SSH_COMMAND`
//!   has `ssh` use that agent only, with the host keys of
//!   `git_known_hosts` checked strictly.
//!
//! Resolved values are held in [`Zeroizing`] strings, zeroed when the
//! [`GitAuth`] that carries them is dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::secrets::{SecretError, check_reference};

pub mod agent;
mod key;

/// The user name sent with a bare token (what GitHub expects; GitLab and
/// Gitea accept any name with a personal access token).
pub const TOKEN_USER: &str = "x-access-token";

/// A git credential setting that is invalid, or a credential that cannot be used
/// for a URL. `key` is the configuration key (`git_credentials` or `git_ssh_keys`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GitAuthError {
    /// A host's secret reference is malformed, or could not be resolved.
    #[error("{key}.\"{host}\": {source}")]
    Reference {
        /// Configuration key the host is under.
        key: &'static str,
        /// Host whose reference failed.
        host: String,
        /// Why the reference was refused or could not be read.
        source: SecretError,
    },
    /// A configured host is not a host name (letters, digits, `.`, `-`, `:port`).
    #[error(
        "{key}.\"{host}\": `{host}` is not a host name (hint: `github.com`, `git.example.com:8443`)"
    )]
    BadHost {
        /// Configuration key the host is under.
        key: &'static str,
        /// The host as configured.
        host: String,
    },
    /// A host's secret resolved to an empty (or all-whitespace) value.
    #[error("{key}.\"{host}\": the credential is empty")]
    Empty {
        /// Configuration key the host is under.
        key: &'static str,
        /// Host whose secret is empty.
        host: String,
    },
    /// The host has only an HTTPS token, and the repository was given as an SSH URL.
    #[error(
        "git_credentials.\"{host}\" holds an HTTPS token, and {url} is an SSH URL (hint: give the repository as https://{host}/..., or map the host to a deploy key under `git_ssh_keys`)"
    )]
    SshUrl {
        /// Host that has a token under `git_credentials`.
        host: String,
        /// The repository URL, as given.
        url: String,
    },
    /// The host's `git_ssh_keys` secret does not look like a PEM/OpenSSH private key.
    #[error(
        "git_ssh_keys.\"{host}\": the secret is not an SSH private key (it should begin with `-----BEGIN OPENSSH PRIVATE KEY-----`)"
    )]
    NotAKey {
        /// Host whose secret is not a key.
        host: String,
    },
    /// SSH keys are configured without `git_known_hosts`, the host keys SSH must check.
    #[error(
        "git_ssh_keys needs git_known_hosts: the file of host keys SSH checks the server against (hint: `ssh-keyscan github.com > /etc/slipway/known_hosts`)"
    )]
    NoKnownHosts,
    /// The `git_known_hosts` file cannot be read when the configuration is loaded.
    #[error("cannot read {path}: {message}")]
    KnownHosts {
        /// Path of the known hosts file, as configured.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The outbound policy refuses the repository's address.
    #[error("{0}")]
    Outbound(String),
    /// The host's key is protected by a passphrase, which the engine has
    /// no way to ask for.
    #[error(
        "git_ssh_keys.\"{host}\": the key is encrypted with a passphrase, and the engine cannot ask for one (hint: a deploy key without a passphrase, kept readable by the engine only: `ssh-keygen -p -N '' -f FILE` removes it)"
    )]
    EncryptedKey {
        /// Host whose key it is.
        host: String,
    },
    /// The host's key cannot be read, or is of a kind the agent cannot sign with.
    #[error("git_ssh_keys.\"{host}\": unusable SSH key: {reason}")]
    UnusableKey {
        /// Host whose key it is.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The SSH agent that serves the key to git could not be started.
    #[error("git_ssh_keys.\"{host}\": cannot start the SSH agent for git: {message}")]
    Agent {
        /// Host whose key it is.
        host: String,
        /// The I/O error.
        message: String,
    },
}

/// Host (`name` or `name:port`) → secret reference, for HTTPS tokens and
/// SSH keys.
///
/// It also carries the outbound policy: every git call that reaches a
/// remote asks [`GitCredentials::for_url`] first, so a repository URL
/// that resolves to a refused address is refused there, before git runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    by_host: BTreeMap<String, String>,
    ssh_keys: BTreeMap<String, String>,
    known_hosts: Option<PathBuf>,
    outbound: Arc<crate::outbound::OutboundPolicy>,
}

/// What git needs for one URL: environment variables, and the values a
/// log must never show. Holds the SSH agent that serves the host's key, if
/// any: keep it until git has finished (dropping the last clone stops the
/// agent and removes its socket). Its `Debug` names the variables and
/// counts the secrets, never showing a value.
#[derive(Clone, Default)]
pub struct GitAuth {
    /// Variables to set on the git process (`GIT_CONFIG_*`, or
    /// `GIT_SSH_COMMAND` and `SSH_AUTH_SOCK`); empty when no credential
    /// applies. The values are zeroed on drop: a header value is a secret.
    pub env: Vec<(String, Zeroizing<String>)>,
    /// Token, encoded header, or key text to redact from the job's log.
    pub secrets: Vec<Zeroizing<String>>,
    agent: Option<Arc<agent::KeyAgent>>,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("secrets", &self.secrets.len())
            .field("agent", &self.agent)
            .finish()
    }
}

impl GitAuth {
    /// No credential: git runs as is.
    pub fn is_none(&self) -> bool {
        self.env.is_empty() && self.agent.is_none()
    }
}

/// Hosts are names, optionally with a port.
fn check_hosts(key: &'static str, map: &BTreeMap<String, String>) -> Result<(), GitAuthError> {
    for (host, reference) in map {
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid_host {
            return Err(GitAuthError::BadHost {
                key,
                host: host.clone(),
            });
        }
        check_reference(host, reference).map_err(|source| GitAuthError::Reference {
            key,
            host: host.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The secret `reference` of `host` under `key`, resolved now and trimmed.
fn resolve(
    key: &'static str,
    host: &str,
    reference: &str,
) -> Result<Zeroizing<String>, GitAuthError> {
    let value = crate::secrets::resolve_value(host, reference).map_err(|source| {
        GitAuthError::Reference {
            key,
            host: host.to_owned(),
            source,
        }
    })?;
    let secret = Zeroizing::new(value.trim().to_owned());
    if secret.is_empty() {
        return Err(GitAuthError::Empty {
            key,
            host: host.to_owned(),
        });
    }
    Ok(secret)
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl GitCredentials {
    /// Checked when the configuration is loaded: hosts, reference forms,
    /// and the known hosts file SSH keys need.
    pub fn new(by_host: BTreeMap<String, String>) -> Result<GitCredentials, GitAuthError> {
        check_hosts("git_credentials", &by_host)?;
        Ok(GitCredentials {
            by_host,
            ..GitCredentials::default()
        })
    }

    /// SSH deploy keys by host, checked against `known_hosts`.
    pub fn with_ssh_keys(
        mut self,
        ssh_keys: BTreeMap<String, String>,
        known_hosts: Option<PathBuf>,
    ) -> Result<GitCredentials, GitAuthError> {
        check_hosts("git_ssh_keys", &ssh_keys)?;
        if let Some(path) = &known_hosts
            && let Err(e) = std::fs::read_to_string(path)
        {
            return Err(GitAuthError::KnownHosts {
                path: path.display().to_string(),
                message: e.to_string(),
            });
        }
        if !ssh_keys.is_empty() && known_hosts.is_none() {
            return Err(GitAuthError::NoKnownHosts);
        }
        self.ssh_keys = ssh_keys;
        self.known_hosts = known_hosts;
        Ok(self)
    }

    /// Check every remote URL against `policy` before git is given it.
    pub fn with_outbound(mut self, policy: Arc<crate::outbound::OutboundPolicy>) -> GitCredentials {
        self.outbound = policy;
        self
    }

    /// Whether the outbound policy lets git reach `url` (a local path
    /// always may: `allow_local_paths` decides those). Resolves the host:
    /// blocking. A name that does not resolve is not a refusal: git then
    /// fails on its own, with its own words.
    pub fn check_reachable(&self, url: &str) -> Result<(), GitAuthError> {
        match self.outbound.check_git_url(url) {
            Err(crate::outbound::OutboundError::Resolve { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(GitAuthError::Outbound(e.to_string())),
        }
    }

    /// No host has a token or an SSH key configured.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.ssh_keys.is_empty()
    }

    /// The credential for `url` (`http(s)://[user@]host[:port]/...`),
    /// resolved now; nothing for other hosts, other schemes, local paths.
    pub fn for_url(&self, url: &str) -> Result<GitAuth, GitAuthError> {
        self.check_reachable(url)?;
        if let Some(host) = ssh_host(url) {
            if let Some((matched, reference)) = self.ssh_keys.get_key_value(host) {
                return self.ssh_auth(matched, reference);
            }
            if self.by_host.contains_key(host) {
                return Err(GitAuthError::SshUrl {
                    host: host.to_owned(),
                    url: url.to_owned(),
                });
            }
            return Ok(GitAuth::default());
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(GitAuth::default());
        };
        if scheme != "https" && scheme != "http" {
            return Ok(GitAuth::default());
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let host = host_port.split(':').next().unwrap_or_default();
        let Some((matched, reference)) = self
            .by_host
            .get_key_value(host_port)
            .or_else(|| self.by_host.get_key_value(host))
        else {
            return Ok(GitAuth::default());
        };
        let secret = resolve("git_credentials", matched, reference)?;
        let (user, token) = match secret.split_once(':') {
            Some((user, token)) => (user, Zeroizing::new(token.to_owned())),
            None => (TOKEN_USER, secret.clone()),
        };
        let basic = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .encode(Zeroizing::new(format!("{user}:{}", *token)).as_bytes()),
        );
        // `http.<url>.extraHeader` applies to that URL prefix only: a
        // redirect to another host does not carry it.
        let env = vec![
            (
                "GIT_CONFIG_COUNT".to_owned(),
                Zeroizing::new("1".to_owned()),
            ),
            (
                "GIT_CONFIG_KEY_0".to_owned(),
                Zeroizing::new(format!("http.{scheme}://{host_port}/.extraHeader")),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_owned(),
                Zeroizing::new(format!("Authorization: Basic {}", *basic)),
            ),
        ];
        Ok(GitAuth {
            env,
            secrets: vec![token, basic],
            agent: None,
        })
    }

    /// An SSH agent serving the key of `host`, and the `ssh` command git
    /// runs with it: that agent's key only (no key file, no user
    /// configuration or keys), no prompt, the server's host key checked
    /// strictly.
    fn ssh_auth(&self, host: &str, reference: &str) -> Result<GitAuth, GitAuthError> {
        let text = resolve("git_ssh_keys", host, reference)?;
        let key = key::parse(host, &text)?;
        let known_hosts = self
            .known_hosts
            .as_ref()
            .ok_or(GitAuthError::NoKnownHosts)?;
        let agent = agent::KeyAgent::start(key).map_err(|e| GitAuthError::Agent {
            host: host.to_owned(),
            message: e.to_string(),
        })?;
        // `IdentityFile=none`: none of the user's own keys (~/.ssh/id_*) is
        // offered; `IdentityAgent=SSH_AUTH_SOCK`: the agent named by the
        // variable below, whatever the user's configuration says.
        let command = format!(
            "ssh -F /dev/null -o IdentityFile=none -o IdentitiesOnly=no -o IdentityAgent=SSH_AUTH_SOCK -o ForwardAgent=no -o AddKeysToAgent=no -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
            shell_quote(&known_hosts.to_string_lossy()),
        );
        // Nothing should print the key now, but a job's log still redacts
        // it: each line of its body is long enough to redact on its own.
        let mut secrets: Vec<Zeroizing<String>> = text
            .lines()
            .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
            .map(|l| Zeroizing::new(l.to_owned()))
            .collect();
        secrets.push(text);
        let socket = agent.socket().to_string_lossy().into_owned();
        Ok(GitAuth {
            env: vec![
                ("GIT_SSH_COMMAND".to_owned(), Zeroizing::new(command)),
                (
                    "GIT_SSH_VARIANT".to_owned(),
                    Zeroizing::new("ssh".to_owned()),
                ),
                ("SSH_AUTH_SOCK".to_owned(), Zeroizing::new(socket)),
            ],
            secrets,
            agent: Some(Arc::new(agent)),
        })
    }
}

/// The host of an SSH URL: `ssh://[user@]host[:port]/path` or scp-like
/// `[user@]host:path`.
fn ssh_host(url: &str) -> Option<&str> {
    let authority = match url.split_once("://") {
        Some(("ssh" | "git+ssh", rest)) => rest.split('/').next()?,
        Some(_) => return None,
        None => {
            let (authority, _) = url.split_once(':')?;
            if authority.contains('/') || url.starts_with('/') {
                return None;
            }
            authority
        }
    };
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(host: &str, reference: &str) -> GitCredentials {
        GitCredentials::new(BTreeMap::from([(host.to_owned(), reference.to_owned())])).unwrap()
    }

    #[test]
    fn a_host_gets_its_header_and_no_other_does() {
        // SAFETY: tests in this module are the only readers of this name.
        unsafe { std::env::set_var("SLIPWAY_TEST_GIT_TOKEN", "tok3n\n") };
        let c = credentials("git.example.com:8443", "env:SLIPWAY_TEST_GIT_TOKEN");
        let auth = c
            .for_url("https://ci@git.example.com:8443/acme/app.git")
            .unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("x-access-token:tok3n");
        assert_eq!(
            *auth.env[1].1,
            "http.https://git.example.com:8443/.extraHeader"
        );
        assert_eq!(*auth.env[2].1, format!("Authorization: Basic {basic}"));
        let secrets: Vec<&str> = auth.secrets.iter().map(|s| s.as_str()).collect();
        assert_eq!(secrets, ["tok3n", basic.as_str()]);
        // Its Debug names the variables, and shows no value.
        let debug = format!("{auth:?}");
        assert!(debug.contains("GIT_CONFIG_VALUE_0"), "{debug}");
        assert!(
            !debug.contains("tok3n") && !debug.contains(&basic),
            "{debug}"
        );
        for other in [
            "https://github.com/acme/app.git",
            "git@github.com:acme/app.git",
            "/srv/repos/app",
            "file:///srv/repos/app",
        ] {
            assert!(c.for_url(other).unwrap().is_none(), "{other}");
        }
    }

    #[test]
    fn user_and_token_and_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cred");
        std::fs::write(&file, "oauth2:glpat-123").unwrap();
        let c = credentials("gitlab.example.com", &format!("file:{}", file.display()));
        let auth = c.for_url("https://gitlab.example.com/g/p.git").unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode("oauth2:glpat-123");
        assert!(auth.env[2].1.ends_with(&basic));
        let bad = |host: &str, reference: &str| {
            GitCredentials::new(BTreeMap::from([(host.to_owned(), reference.to_owned())]))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("github.com", "GITHUB_TOKEN").contains("is not a reference"));
        assert!(bad("https://github.com", "env:X").contains("is not a host name"));
        let ssh = credentials("github.com", "env:SLIPWAY_TEST_UNSET_VARIABLE");
        for url in [
            "git@github.com:acme/app.git",
            "ssh://git@github.com/acme/app.git",
        ] {
            assert!(
                ssh.for_url(url)
                    .unwrap_err()
                    .to_string()
                    .contains("give the repository as https://github.com/"),
                "{url}"
            );
        }
        let missing = credentials("github.com", "env:SLIPWAY_TEST_UNSET_VARIABLE");
        assert!(
            missing
                .for_url("https://github.com/a/b")
                .unwrap_err()
                .to_string()
                .contains("has no `SLIPWAY_TEST_UNSET_VARIABLE`")
        );
    }

    /// A deploy key in OpenSSH form, made from a fixed seed.
    fn deploy_key() -> (Zeroizing<String>, ssh_key::PublicKey) {
        let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]));
        let text = key.to_openssh(ssh_key::LineEnding::LF).unwrap();
        (text, key.public_key().clone())
    }

    #[test]
    fn ssh_keys_need_known_hosts_and_a_real_key_and_are_served_as_long_as_the_auth() {
        use ssh_agent_lib::blocking::Client;
        let dir = tempfile::tempdir().unwrap();
        let (key, known) = (dir.path().join("key"), dir.path().join("known_hosts"));
        let (text, public) = deploy_key();
        std::fs::write(&key, text.as_bytes()).unwrap();
        std::fs::write(&known, "github.com ssh-ed25519 AAAA\n").unwrap();
        let keys = |reference: String| BTreeMap::from([("github.com".to_owned(), reference)]);
        let reference = format!("file:{}", key.display());
        let no_known = GitCredentials::default()
            .with_ssh_keys(keys(reference.clone()), None)
            .unwrap_err();
        assert_eq!(no_known, GitAuthError::NoKnownHosts);
        let unreadable = GitCredentials::default()
            .with_ssh_keys(keys(reference.clone()), Some(dir.path().join("nope")))
            .unwrap_err();
        assert!(
            matches!(unreadable, GitAuthError::KnownHosts { .. }),
            "{unreadable}"
        );

        let c = GitCredentials::default()
            .with_ssh_keys(keys(reference), Some(known.clone()))
            .unwrap();
        let auth = c.for_url("git@github.com:acme/app.git").unwrap();
        let env: BTreeMap<&str, &str> = auth
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let command = env["GIT_SSH_COMMAND"];
        for option in [
            "-F /dev/null",
            "IdentityFile=none",
            "IdentityAgent=SSH_AUTH_SOCK",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            &format!("UserKnownHostsFile='{}'", known.display()),
        ] {
            assert!(command.contains(option), "{option}: {command}");
        }
        assert!(!command.contains(" -i "), "no key file: {command}");
        // The agent behind SSH_AUTH_SOCK holds the key, and only it.
        let socket = std::path::PathBuf::from(env["SSH_AUTH_SOCK"]);
        let listed = Client::new(std::os::unix::net::UnixStream::connect(&socket).unwrap())
            .request_identities()
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].credential.key_data(), public.key_data());
        assert!(
            auth.secrets
                .iter()
                .any(|s| s.starts_with("b3BlbnNzaC1rZXkt"))
        );
        assert!(!format!("{auth:?}").contains("b3BlbnNzaC1rZXkt"));
        let copy = auth.clone();
        drop(auth);
        assert!(socket.exists(), "a clone keeps the agent");
        drop(copy);
        assert!(!socket.exists(), "stopped with the last auth");
        // HTTPS URLs of the host get nothing from an SSH key.
        assert!(
            c.for_url("https://github.com/acme/app.git")
                .unwrap()
                .is_none()
        );

        let refused = |text: &str| {
            std::fs::write(&key, text).unwrap();
            c.for_url("ssh://git@github.com/acme/app.git").unwrap_err()
        };
        assert_eq!(
            refused("ghp_not_a_key"),
            GitAuthError::NotAKey {
                host: "github.com".into()
            }
        );
        let pem = refused(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
        );
        assert!(
            matches!(&pem, GitAuthError::UnusableKey { host, .. } if host == "github.com")
                && pem.to_string().contains("ssh-keygen -p -f"),
            "{pem}"
        );
        let garbled = refused(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n",
        );
        assert!(
            garbled
                .to_string()
                .starts_with("git_ssh_keys.\"github.com\": unusable SSH key: it cannot be read"),
            "{garbled}"
        );
    }

    #[test]
    fn an_encrypted_key_is_refused_naming_the_setting_and_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(out.status.success(), "{out:?}");
        let known = dir.path().join("known_hosts");
        std::fs::write(&known, "git.example.com ssh-ed25519 AAAA\n").unwrap();
        let c = GitCredentials::default()
            .with_ssh_keys(
                BTreeMap::from([(
                    "git.example.com".to_owned(),
                    format!("file:{}", key.display()),
                )]),
                Some(known),
            )
            .unwrap();
        let err = c.for_url("git@git.example.com:acme/app.git").unwrap_err();
        assert_eq!(
            err,
            GitAuthError::EncryptedKey {
                host: "git.example.com".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("git_ssh_keys.\"git.example.com\": the key is encrypted"),
            "{err}"
        );
    }
}
