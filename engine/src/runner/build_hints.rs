//! Why an image build failed, in terms of what the user can change: a base
//! image that is not on the host and cannot be pulled, a registry that could
//! not be reached, or TLS that failed verification (an inspecting proxy).
//!
//! The build's output is read line by line as it streams; the first line of
//! each kind is kept, with the host it names. Nothing here talks to Docker:
//! the caller says which base images are missing.

use std::sync::LazyLock;

use regex::Regex;

/// Lines that say TLS verification failed (OpenSSL, Python, Node, Go,
/// rustls, curl, Ruby).
const TLS_SIGNS: &[&str] = &[
    "certificate verify failed",
    "CERTIFICATE_VERIFY_FAILED",
    "SSL certificate problem",
    "unable to get local issuer certificate",
    "self signed certificate in certificate chain",
    "self-signed certificate in certificate chain",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "certificate signed by unknown authority",
    "invalid peer certificate",
    "UnknownIssuer",
];

/// Lines that say a host could not be reached.
const UNREACHABLE_SIGNS: &[&str] = &[
    "Could not resolve host",
    "Couldn't resolve host",
    "Temporary failure in name resolution",
    "Name or service not known",
    "getaddrinfo",
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ETIMEDOUT",
    "Network is unreachable",
    "Could not fetch specs from",
    "Could not reach host",
    "Failed to connect to",
    "failed to establish a new connection",
    "NewConnectionError",
    "Connection refused",
    "connection timed out",
    "dial tcp",
    "spurious network error",
];

/// A host in a line: a URL's, urllib3's `host='…'`, or the name after
/// `ENOTFOUND`, `lookup`, `resolve host`.
static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?x)
        [a-z][a-z0-9+.-]*://(?:[^@/\s]+@)?(?P<url>[A-Za-z0-9.-]+\.[A-Za-z]{2,})
        | host='(?P<py>[A-Za-z0-9.-]+)'
        | (?:ENOTFOUND|EAI_AGAIN|lookup|resolve\ host:?|reach\ host)\ +(?P<name>[A-Za-z0-9.-]+\.[A-Za-z]{2,})
        "#,
    )
    .expect("a valid pattern")
});

fn host_in(line: &str) -> Option<String> {
    let c = HOST.captures(line)?;
    ["url", "py", "name"]
        .iter()
        .find_map(|n| c.name(n))
        .map(|m| m.as_str().trim_end_matches('.').to_owned())
}

/// What the build's output said, as far as a hint needs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildSigns {
    /// The first TLS failure: its host if named, and the line.
    tls: Option<(Option<String>, String)>,
    /// The first unreachable host: its host if named, and the line.
    unreachable: Option<(Option<String>, String)>,
    /// A host named anywhere in the output, for lines that name none.
    last_host: Option<String>,
}

impl BuildSigns {
    /// Read one line of the build's output.
    pub fn read(&mut self, line: &str) {
        let host = host_in(line);
        if self.tls.is_none() && TLS_SIGNS.iter().any(|s| line.contains(s)) {
            self.tls = Some((host.clone().or(self.last_host.clone()), line.to_owned()));
        } else if UNREACHABLE_SIGNS
            .iter()
            .any(|s| line.to_lowercase().contains(&s.to_lowercase()))
        {
            match &mut self.unreachable {
                None => {
                    self.unreachable =
                        Some((host.clone().or(self.last_host.clone()), line.to_owned()));
                }
                // A later line of the same failure may name the host.
                Some((found @ None, _)) => found.clone_from(&host),
                Some(_) => {}
            }
        }
        if host.is_some() {
            self.last_host = host;
        }
    }

    /// The hint for a failed build. `missing_bases`: the `FROM` images
    /// that are not on the host (the caller checked); `ca_bundle`: whether
    /// one is configured; `network`: the builds' network.
    pub fn hint(&self, missing_bases: &[String], ca_bundle: bool, network: &str) -> Option<String> {
        if let Some(image) = missing_bases.first() {
            return Some(format!(
                "the base image `{image}` is not on this host and could not be pulled: build it \
                 locally (scripts/images.sh builds stand-ins of the official images, `--all` \
                 adds node, ruby, golang and rust), or map it to a registry you can reach with \
                 `base_images` in slipway.toml"
            ));
        }
        let named = |host: &Option<String>| match host {
            Some(h) => format!("`{h}`"),
            None => "a package registry".to_owned(),
        };
        if let Some((host, _)) = &self.tls {
            return Some(if ca_bundle {
                format!(
                    "TLS verification failed talking to {}: the configured `ca_bundle` does not \
                     hold the CA that signed its certificate (a TLS-inspecting proxy's?); add it \
                     to the bundle",
                    named(host)
                )
            } else {
                format!(
                    "TLS verification failed talking to {}: if a proxy inspects TLS on this \
                     network, set `ca_bundle` (SLIPWAY_CA_BUNDLE) to a PEM bundle with its CA",
                    named(host)
                )
            });
        }
        if let Some((host, _)) = &self.unreachable {
            return Some(format!(
                "the build could not reach {}: image builds use the `{network}` network \
                 (`runner.build_network`); let it reach that host, point the package manager at \
                 a mirror it can reach, or vendor the dependencies in the repository{}",
                named(host),
                if ca_bundle {
                    ""
                } else {
                    "; behind a TLS-inspecting proxy, also set `ca_bundle`"
                }
            ));
        }
        None
    }
}

/// The images a Dockerfile's `FROM` lines name, less earlier stages.
pub fn base_images(dockerfile: &str) -> Vec<String> {
    let mut stages = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let rest: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let Some(image) = rest.first() else { continue };
        if !stages
            .iter()
            .any(|s: &String| s.eq_ignore_ascii_case(image))
            && !image.eq_ignore_ascii_case("scratch")
            && !image.contains('$')
        {
            images.push((*image).to_owned());
        }
        if rest.len() >= 3 && rest[1].eq_ignore_ascii_case("AS") {
            stages.push(rest[2].to_owned());
        }
    }
    images.dedup();
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signs(lines: &[&str]) -> BuildSigns {
        let mut s = BuildSigns::default();
        for l in lines {
            s.read(l);
        }
        s
    }

    #[test]
    fn an_unreachable_registry_is_named_with_what_would_help() {
        let s = signs(&[
            "Step 5/9 : RUN bundle install",
            "Fetching source index from https://rubygems.org/",
            "Could not fetch specs from https://rubygems.org/ due to underlying error <getaddrinfo: Temporary failure in name resolution>",
        ]);
        let hint = s.hint(&[], false, "host").unwrap();
        assert!(hint.contains("could not reach `rubygems.org`"), "{hint}");
        assert!(hint.contains("`runner.build_network`"), "{hint}");
        assert!(hint.contains("mirror"), "{hint}");
        assert!(hint.contains("`ca_bundle`"), "{hint}");
        let pip = signs(&[
            "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/pytest/",
            "ERROR: Could not find a version that satisfies the requirement pytest",
        ]);
        // No host on the line: the hint still says what happened.
        assert!(
            pip.hint(&[], true, "none")
                .unwrap()
                .starts_with("the build could not reach a package registry")
        );
        let npm = signs(&[
            "npm ERR! code EAI_AGAIN",
            "npm ERR! syscall getaddrinfo",
            "npm ERR! request to https://registry.npmjs.org/x failed, reason: getaddrinfo EAI_AGAIN registry.npmjs.org",
        ]);
        assert!(
            npm.hint(&[], false, "host")
                .unwrap()
                .contains("`registry.npmjs.org`")
        );
    }

    #[test]
    fn a_tls_failure_names_ca_bundle() {
        let s = signs(&[
            "Could not fetch URL https://pypi.org/simple/pytest/: There was a problem confirming the ssl certificate: HTTPSConnectionPool(host='pypi.org', port=443): Max retries exceeded with url: /simple/pytest/ (Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate in certificate chain (_ssl.c:1006)')))",
        ]);
        let hint = s.hint(&[], false, "host").unwrap();
        assert!(
            hint.starts_with("TLS verification failed talking to `pypi.org`"),
            "{hint}"
        );
        assert!(hint.contains("SLIPWAY_CA_BUNDLE"), "{hint}");
        let cargo = signs(&[
            "    Updating crates.io index",
            "error: failed to get `itoa` as a dependency of package `x`",
            "  [60] SSL peer certificate or SSH remote key was not OK (SSL certificate problem: unable to get local issuer certificate)",
        ]);
        assert!(
            cargo
                .hint(&[], true, "host")
                .unwrap()
                .contains("the configured `ca_bundle` does not hold")
        );
        assert_eq!(
            signs(&["Step 1/2 : RUN make", "ok"]).hint(&[], false, "host"),
            None
        );
    }

    #[test]
    fn a_missing_base_image_comes_first() {
        let s = signs(&["dial tcp: lookup registry-1.docker.io: no such host"]);
        let hint = s.hint(&["node:18-slim".into()], false, "host").unwrap();
        assert!(
            hint.contains("`node:18-slim` is not on this host"),
            "{hint}"
        );
        assert!(hint.contains("scripts/images.sh"), "{hint}");
        assert!(hint.contains("`base_images`"), "{hint}");
    }

    #[test]
    fn base_images_leave_out_stages_and_scratch() {
        let text = "FROM --platform=linux/amd64 rust:1.95-slim AS build\nRUN x\nFROM build AS test\nFROM scratch\nfrom debian:bookworm-slim\n";
        assert_eq!(
            base_images(text),
            vec![
                "rust:1.95-slim".to_owned(),
                "debian:bookworm-slim".to_owned()
            ]
        );
    }
}
