//! Credentials for private repositories, by reference: the configuration
//! maps a host to a secret reference (`git_credentials`, e.g.
//! `"github.com" = "env:GITHUB_TOKEN"`), resolved each time git talks to
//! that host and handed to git through its environment (`GIT_CONFIG_*`: an
//! `Authorization` header scoped to the host's URL), so the value is never
//! stored, never on a command line, never sent to another host, and never
//! in a job's log.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::secrets::{SecretError, check_reference};

/// The user name sent with a bare token (what GitHub expects; GitLab and
/// Gitea accept any name with a personal access token).
pub const TOKEN_USER: &str = "x-access-token";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GitAuthError {
    #[error("git_credentials.\"{host}\": {source}")]
    Reference { host: String, source: SecretError },
    #[error(
        "git_credentials.\"{host}\": `{host}` is not a host name (hint: `github.com`, `git.example.com:8443`)"
    )]
    BadHost { host: String },
    #[error("git_credentials.\"{host}\": the credential is empty")]
    Empty { host: String },
    #[error(
        "git_credentials.\"{host}\" holds an HTTPS token, and {url} is an SSH URL (hint: give the repository as https://{host}/...)"
    )]
    SshUrl { host: String, url: String },
}

/// Host (`name` or `name:port`) → secret reference.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    by_host: BTreeMap<String, String>,
}

/// What git needs for one URL: environment variables, and the values a
/// log must never show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitAuth {
    pub env: Vec<(String, String)>,
    pub secrets: Vec<String>,
}

impl GitCredentials {
    /// Checked when the configuration is loaded: hosts and reference forms.
    pub fn new(by_host: BTreeMap<String, String>) -> Result<GitCredentials, GitAuthError> {
        for (host, reference) in &by_host {
            let valid_host = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !valid_host {
                return Err(GitAuthError::BadHost { host: host.clone() });
            }
            check_reference(host, reference).map_err(|source| GitAuthError::Reference {
                host: host.clone(),
                source,
            })?;
        }
        Ok(GitCredentials { by_host })
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// The credential for `url` (`http(s)://[user@]host[:port]/...`),
    /// resolved now; nothing for other hosts, other schemes, local paths.
    pub fn for_url(&self, url: &str) -> Result<GitAuth, GitAuthError> {
        if let Some(host) = ssh_host(url)
            && self.by_host.contains_key(host)
        {
            return Err(GitAuthError::SshUrl {
                host: host.to_owned(),
                url: url.to_owned(),
            });
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
        let secret =
            crate::secrets::resolve(&BTreeMap::from([(matched.clone(), reference.clone())]))
                .map_err(|source| GitAuthError::Reference {
                    host: matched.clone(),
                    source,
                })?
                .pop()
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_default();
        if secret.is_empty() {
            return Err(GitAuthError::Empty {
                host: matched.clone(),
            });
        }
        let (user, token) = match secret.split_once(':') {
            Some((user, token)) => (user.to_owned(), token.to_owned()),
            None => (TOKEN_USER.to_owned(), secret.clone()),
        };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        // `http.<url>.extraHeader` applies to that URL prefix only: a
        // redirect to another host does not carry it.
        let env = vec![
            ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
            (
                "GIT_CONFIG_KEY_0".to_owned(),
                format!("http.{scheme}://{host_port}/.extraHeader"),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_owned(),
                format!("Authorization: Basic {basic}"),
            ),
        ];
        Ok(GitAuth {
            env,
            secrets: vec![token, basic],
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
            auth.env[1].1,
            "http.https://git.example.com:8443/.extraHeader"
        );
        assert_eq!(auth.env[2].1, format!("Authorization: Basic {basic}"));
        assert_eq!(auth.secrets, vec!["tok3n".to_owned(), basic]);
        for other in [
            "https://github.com/acme/app.git",
            "git@github.com:acme/app.git",
            "/srv/repos/app",
            "file:///srv/repos/app",
        ] {
            assert_eq!(c.for_url(other).unwrap(), GitAuth::default(), "{other}");
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
}
