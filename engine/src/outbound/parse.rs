//! A deliberately strict parse of the URLs and git sources the engine
//! contacts: where a URL could be read two ways (two `@`, a backslash,
//! unusual characters in the host), it is refused rather than guessed, so
//! the host checked is the host connected to.

use std::net::{IpAddr, Ipv6Addr};

use super::error::{OutboundError, Purpose};

/// Where a network request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The host as the client resolves it (IPv6 without brackets).
    pub host: String,
    /// The port, the scheme's default when the URL has none.
    pub port: u16,
}

/// What a git source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GitSource {
    /// A local path or `file://` URL: not a network request.
    Local,
    /// A repository on the network.
    Remote(Target),
}

/// The git transports that are accepted, for messages.
pub(crate) const GIT_TRANSPORTS: &str = "use https://, http://, ssh://, git:// or user@host:path";
/// The HTTP schemes that are accepted, for messages.
pub(crate) const HTTP_SCHEMES: &str = "use an https:// or http:// URL";

/// `url` for a message: its password (or a user name standing alone, which
/// may be a token) and its query are elided, its fragment dropped.
pub(crate) fn redact(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let (url, had_query) = match url.split_once('?') {
        Some((before, _)) => (before, true),
        None => (url, false),
    };
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let authority = match authority.rsplit_once('@') {
                // A user name alone may be a token (`https://TOKEN@host`).
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:***@{host}"),
                    None => format!("***@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => url.to_owned(),
    };
    if had_query {
        out.push_str("?…");
    }
    out
}

fn bad(purpose: Purpose, url: &str, reason: impl Into<String>) -> OutboundError {
    OutboundError::BadUrl {
        purpose,
        url: redact(url),
        reason: reason.into(),
    }
}

/// Whether `c` may appear in a host name: letters, digits, `-`, `.`, `_`.
fn host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// Checks a host (IPv6 in brackets) and returns it as resolved.
pub(crate) fn host(raw: &str) -> Result<String, String> {
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or("an IPv6 address lacks its closing `]`")?;
        return inner
            .parse::<Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("`[{inner}]` is not an IPv6 address"));
    }
    if raw.is_empty() {
        return Err("the host is empty".into());
    }
    if raw.starts_with('-') {
        return Err(format!("the host `{raw}` begins with `-`"));
    }
    if !raw.chars().all(host_char) {
        return Err(format!(
            "the host `{raw}` has characters other than letters, digits, `-`, `.` and `_` (write international names in punycode)"
        ));
    }
    Ok(raw.to_owned())
}

/// The host normalised for matching against patterns: lower case, without
/// brackets or a trailing dot.
pub(crate) fn normalise(host: &str) -> String {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Splits `[user@]host[:port]`; `user` is returned as written.
fn authority(authority: &str, default_port: u16) -> Result<(Option<&str>, Target), String> {
    let (user, host_port) = match authority.split_once('@') {
        Some((user, rest)) => {
            if rest.contains('@') {
                return Err("the authority has more than one `@`".into());
            }
            (Some(user), rest)
        }
        None => (None, authority),
    };
    let (raw_host, port) = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => {
                let (h, rest) = host_port.split_at(end + 1);
                match rest {
                    "" => (h, None),
                    _ => match rest.strip_prefix(':') {
                        Some(p) => (h, Some(p)),
                        None => return Err(format!("unexpected `{rest}` after the host")),
                    },
                }
            }
            None => return Err("an IPv6 address lacks its closing `]`".into()),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("`{p}` is not a port")),
        },
    };
    let host = host(raw_host)?;
    Ok((user, Target { host, port }))
}

/// Characters that make a URL ambiguous between parsers.
fn check_chars(url: &str) -> Result<(), String> {
    match url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '\\')
    {
        Some(c) => Err(format!("it contains {c:?}")),
        None => Ok(()),
    }
}

/// Splits a `scheme://rest` URL into its lower-cased scheme and the rest.
fn scheme(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then(|| (scheme.to_ascii_lowercase(), rest))
}

/// The authority of `rest` (what follows `scheme://`).
fn authority_of(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Parses an `http://` or `https://` URL.
pub(crate) fn http_url(url: &str, purpose: Purpose) -> Result<Target, OutboundError> {
    check_chars(url).map_err(|r| bad(purpose, url, r))?;
    let Some((scheme, rest)) = scheme(url) else {
        return Err(bad(purpose, url, "it has no `scheme://`"));
    };
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => {
            return Err(OutboundError::UnsupportedTransport {
                purpose,
                url: redact(url),
                transport: scheme,
                allowed: HTTP_SCHEMES,
            });
        }
    };
    authority(authority_of(rest), default_port)
        .map(|(_, target)| target)
        .map_err(|r| bad(purpose, url, r))
}

/// Parses a git source the way git tells its forms apart.
pub(crate) fn git_source(source: &str) -> Result<GitSource, OutboundError> {
    let purpose = Purpose::Git;
    let s = source.trim();
    if s.is_empty() {
        return Err(bad(purpose, source, "it is empty"));
    }
    // git runs `git-remote-<transport>` for `<transport>::<address>` (e.g.
    // `ext::sh -c ...`, which runs a command): refused outright.
    let name_len = s
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
            }
        })
        .count();
    if s[name_len..].starts_with("::") {
        return Err(OutboundError::UnsupportedTransport {
            purpose,
            url: redact(s),
            transport: format!("{}::", &s[..name_len]),
            allowed: GIT_TRANSPORTS,
        });
    }
    if let Some((scheme, rest)) = scheme(s) {
        let default_port = match scheme.as_str() {
            // Local, whatever follows: the caller's local-path rule decides.
            "file" => return Ok(GitSource::Local),
            "https" => 443,
            "http" => 80,
            "ssh" | "git+ssh" | "ssh+git" => 22,
            "git" => 9418,
            // ftp, ftps, and any other scheme git would hand to a
            // `git-remote-<scheme>` helper.
            _ => {
                return Err(OutboundError::UnsupportedTransport {
                    purpose,
                    url: redact(s),
                    transport: scheme,
                    allowed: GIT_TRANSPORTS,
                });
            }
        };
        check_chars(s).map_err(|r| bad(purpose, s, r))?;
        let (user, target) =
            authority(authority_of(rest), default_port).map_err(|r| bad(purpose, s, r))?;
        if let Some(user) = user
            && user.starts_with('-')
        {
            return Err(bad(
                purpose,
                s,
                format!("the user `{user}` begins with `-`"),
            ));
        }
        return Ok(GitSource::Remote(target));
    }
    // Like git: no `:` before the first `/` means a local path.
    let Some(colon) = s.find(':') else {
        return Ok(GitSource::Local);
    };
    if s.find('/').is_some_and(|slash| slash < colon) {
        return Ok(GitSource::Local);
    }
    // scp-like `[user@]host:path`, `[user@][host]:path` or
    // `[user@host:port]:path`.
    check_chars(s).map_err(|r| bad(purpose, s, r))?;
    let (user_host, _path) = scp_split(s).map_err(|r| bad(purpose, s, r))?;
    if user_host.starts_with('-') {
        return Err(bad(
            purpose,
            s,
            format!("`{user_host}` begins with `-` (ssh would read it as an option)"),
        ));
    }
    // `[user@host:port]` carries a port; `[::1]` is just an address.
    let auth = match user_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
    {
        Some(inner) if inner.parse::<Ipv6Addr>().is_err() => inner,
        _ => user_host,
    };
    let (user, target) = authority(auth, 22).map_err(|r| bad(purpose, s, r))?;
    if let Some(user) = user
        && (user.is_empty() || user.starts_with('-'))
    {
        return Err(bad(
            purpose,
            s,
            format!("the user `{user}` is empty or begins with `-`"),
        ));
    }
    Ok(GitSource::Remote(target))
}

/// Splits an scp-like source at the `:` that ends its host part, past any
/// `[...]`.
fn scp_split(s: &str) -> Result<(&str, &str), String> {
    let search_from = match s.find('[') {
        Some(open) if s[..open].chars().all(|c| c != ':') => match s[open..].find(']') {
            Some(close) => open + close,
            None => return Err("a `[` lacks its closing `]`".into()),
        },
        _ => 0,
    };
    match s[search_from..].find(':') {
        Some(i) => Ok((&s[..search_from + i], &s[search_from + i + 1..])),
        None => Err("it has no `:` after the host".into()),
    }
}

/// Whether `host` is an IP literal; its address when it is.
pub(crate) fn literal(host: &str) -> Option<IpAddr> {
    normalise(host).parse().ok()
}
