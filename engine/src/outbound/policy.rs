//! The `[outbound]` configuration section and the checks made with it.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;

use super::address::{classify, embedded_ipv4, in_net};
use super::error::{OutboundError, PatternError, Purpose};
use super::parse::{self, GitSource, Target};

/// Where outbound requests may go (config section `[outbound]`).
///
/// By default every address a target resolves to is checked, and loopback,
/// private, link-local, shared (CGNAT), unique-local, multicast, broadcast,
/// documentation, benchmarking, reserved and cloud-metadata addresses are
/// refused, including IPv4 ones carried in IPv6 (IPv4-mapped, NAT64, 6to4).
/// See [`classify`](super::classify) for the list.
///
/// Host patterns (both lists) are one of:
/// - an exact name, `git.internal.example` (case-insensitive, a trailing dot
///   ignored);
/// - a glob, `*.internal.example`: `*` matches any characters, dots
///   included, so it matches `a.internal.example` and
///   `a.b.internal.example` but not `internal.example` itself;
/// - an IP address, `10.1.2.3` or `::1` (brackets allowed);
/// - a CIDR range, `10.1.0.0/16` or `fd00:1::/32`.
///
/// Names match the host as written in the URL; addresses and ranges match
/// every address the host resolves to (and the IPv4 address carried by an
/// IPv4-mapped, NAT64 or 6to4 one). Ports are not part of a pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundPolicy {
    /// Hosts always allowed, whatever they resolve to: a name or glob
    /// matching the URL's host skips the address check; an address or
    /// range allows the addresses in it.
    pub allow_hosts: Vec<String>,
    /// Allow loopback, private, link-local, shared (CGNAT) and unique-local
    /// addresses (for development). Unspecified, multicast, broadcast,
    /// documentation, reserved and cloud-metadata addresses stay refused.
    pub allow_private: bool,
    /// Hosts refused even when public; wins over `allow_hosts`.
    pub deny_hosts: Vec<String>,
}

/// A target that passed the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The host as written in the URL (IPv6 without brackets).
    pub host: String,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// Every address the host resolved to, all allowed.
    pub addrs: Vec<SocketAddr>,
}

/// One compiled `allow_hosts` / `deny_hosts` entry.
#[derive(Debug, Clone)]
enum HostPattern {
    /// An exact host name, normalised.
    Name(String),
    /// A glob over host names.
    Glob(GlobMatcher),
    /// An address (full-length prefix) or a range.
    Net(IpAddr, u8),
}

impl HostPattern {
    fn parse(setting: &'static str, raw: &str) -> Result<HostPattern, PatternError> {
        let fail = |reason: String| PatternError {
            setting,
            pattern: raw.to_owned(),
            reason,
        };
        let p = raw.trim();
        if p.is_empty() {
            return Err(fail("it is empty".into()));
        }
        let not_a_host = || {
            fail(
                "give a host name, a glob, an IP address or a CIDR range; not a URL, user or port"
                    .into(),
            )
        };
        if p.contains("://") || p.contains('@') {
            return Err(not_a_host());
        }
        let unbracketed = p
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(p);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostPattern::Net(ip, max_len(ip)));
        }
        if let Some((net, len)) = p.split_once('/') {
            let net = net
                .strip_prefix('[')
                .and_then(|n| n.strip_suffix(']'))
                .unwrap_or(net);
            let net: IpAddr = net.parse().map_err(|_| {
                fail(format!(
                    "`{net}` is not an IP address (a range is written like 10.1.0.0/16)"
                ))
            })?;
            let len: u8 = len
                .parse()
                .ok()
                .filter(|l| *l <= max_len(net))
                .ok_or_else(|| {
                    fail(format!(
                        "`{len}` is not a prefix length (0 to {})",
                        max_len(net)
                    ))
                })?;
            let masked = mask(net, len);
            if masked != net {
                return Err(fail(format!(
                    "the address has bits set past the prefix; did you mean {masked}/{len}?"
                )));
            }
            return Ok(HostPattern::Net(net, len));
        }
        if p.contains(':') {
            return Err(not_a_host());
        }
        let name = parse::normalise(p);
        let glob_char = |c: char| "*?[]{},!".contains(c);
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c) || glob_char(c))
        {
            return Err(fail(
                "a host name has only letters, digits, `-`, `.` and `_` (write international names in punycode)"
                    .into(),
            ));
        }
        if name.contains(glob_char) {
            let glob = GlobBuilder::new(&name)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| fail(e.kind().to_string()))?;
            return Ok(HostPattern::Glob(glob.compile_matcher()));
        }
        Ok(HostPattern::Name(name))
    }

    /// Whether the pattern matches the (normalised) host name.
    fn matches_name(&self, host: &str) -> bool {
        match self {
            HostPattern::Name(name) => name == host,
            HostPattern::Glob(glob) => glob.is_match(host),
            HostPattern::Net(..) => false,
        }
    }

    /// Whether the pattern matches the address or the IPv4 address it
    /// carries.
    fn matches_addr(&self, addr: IpAddr) -> bool {
        let HostPattern::Net(net, len) = self else {
            return false;
        };
        let carried = match addr {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        in_net(addr, *net, *len) || carried.is_some_and(|v4| in_net(v4, *net, *len))
    }

    fn matches(&self, host: &str, addr: IpAddr) -> bool {
        self.matches_name(host) || self.matches_addr(addr)
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// A name-level decision, made before any address is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ByName {
    /// An `allow_hosts` name or glob matches: every address is allowed.
    Allowed,
    /// A `deny_hosts` name or glob matches (the entry as written).
    Denied(String),
    /// The addresses decide.
    Undecided,
}

/// The policy compiled: patterns parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    allow: Vec<(String, HostPattern)>,
    deny: Vec<(String, HostPattern)>,
    allow_private: bool,
}

impl Rules {
    pub(crate) fn new(policy: &OutboundPolicy) -> Result<Rules, PatternError> {
        let compile = |setting: &'static str, list: &[String]| {
            list.iter()
                .map(|raw| Ok((raw.clone(), HostPattern::parse(setting, raw)?)))
                .collect::<Result<Vec<_>, PatternError>>()
        };
        Ok(Rules {
            allow: compile("outbound.allow_hosts", &policy.allow_hosts)?,
            deny: compile("outbound.deny_hosts", &policy.deny_hosts)?,
            allow_private: policy.allow_private,
        })
    }

    /// Whether some `deny_hosts` entry is an address or range.
    pub(crate) fn denies_addresses(&self) -> bool {
        self.deny
            .iter()
            .any(|(_, p)| matches!(p, HostPattern::Net(..)))
    }

    /// The decision the host name alone makes (`host` as in the URL).
    pub(crate) fn by_name(&self, host: &str) -> ByName {
        let host = parse::normalise(host);
        if let Some((raw, _)) = self.deny.iter().find(|(_, p)| p.matches_name(&host)) {
            return ByName::Denied(raw.clone());
        }
        if self.allow.iter().any(|(_, p)| p.matches_name(&host)) {
            return ByName::Allowed;
        }
        ByName::Undecided
    }

    /// Checks that `host` may be reached at `addr`; `target` names the
    /// request in the error.
    pub(crate) fn check(
        &self,
        purpose: Purpose,
        target: &str,
        host: &str,
        addr: IpAddr,
    ) -> Result<(), OutboundError> {
        let host = parse::normalise(host);
        if let Some((raw, _)) = self.deny.iter().find(|(_, p)| p.matches(&host, addr)) {
            return Err(OutboundError::Denied {
                purpose,
                target: target.to_owned(),
                host,
                addr,
                pattern: raw.clone(),
            });
        }
        if self.allow.iter().any(|(_, p)| p.matches(&host, addr)) {
            return Ok(());
        }
        match classify(addr) {
            None => Ok(()),
            Some(refusal) if refusal.is_private() && self.allow_private => Ok(()),
            Some(refusal) => Err(OutboundError::Refused {
                purpose,
                target: target.to_owned(),
                host,
                addr,
                refusal,
            }),
        }
    }

    /// Resolves `target` (blocking) and checks every address; any refused
    /// address refuses the whole target.
    fn resolve_and_check(
        &self,
        purpose: Purpose,
        shown: &str,
        target: &Target,
    ) -> Result<Vec<SocketAddr>, OutboundError> {
        if let ByName::Denied(pattern) = self.by_name(&target.host) {
            return Err(OutboundError::DeniedName {
                purpose,
                target: shown.to_owned(),
                host: parse::normalise(&target.host),
                pattern,
            });
        }
        let resolve_error = |source: io::Error| OutboundError::Resolve {
            purpose,
            target: shown.to_owned(),
            host: target.host.clone(),
            source,
        };
        let addrs: Vec<SocketAddr> = match parse::literal(&target.host) {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => (target.host.as_str(), target.port)
                .to_socket_addrs()
                .map_err(resolve_error)?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses",
            )));
        }
        for addr in &addrs {
            self.check(purpose, shown, &target.host, addr.ip())?;
        }
        Ok(addrs)
    }
}

impl OutboundPolicy {
    /// Checks every `allow_hosts` and `deny_hosts` entry; call at startup so
    /// a typo stops the engine instead of refusing every request.
    pub fn validate(&self) -> Result<(), OutboundError> {
        Rules::new(self)?;
        Ok(())
    }

    /// Whether `host` (as written in a URL) may be reached at `addr`: the
    /// pure check everything else is made of. `deny_hosts` is consulted
    /// first, then `allow_hosts`, then the default ranges and
    /// `allow_private`.
    pub fn check_addr(&self, host: &str, addr: IpAddr) -> Result<(), OutboundError> {
        Rules::new(self)?.check(Purpose::Other, &parse::normalise(host), host, addr)
    }

    /// Checks an `http://` or `https://` URL: parses its host and port,
    /// resolves the host (blocking: call it off the async runtime) and
    /// checks every address; returns them, all allowed.
    ///
    /// A client that resolves the name again may get other addresses (DNS
    /// rebinding): for HTTP, send through [`OutboundPolicy::agent`], which
    /// checks at connect time on every hop.
    pub fn check_url(&self, url: &str, purpose: Purpose) -> Result<Checked, OutboundError> {
        let rules = Rules::new(self)?;
        let target = parse::http_url(url, purpose)?;
        let addrs = rules.resolve_and_check(purpose, &parse::redact(url), &target)?;
        Ok(Checked {
            host: target.host,
            port: target.port,
            addrs,
        })
    }

    /// Checks a git source before `git ls-remote` / `git fetch` is run on
    /// it.
    ///
    /// Accepted network forms: `https://`, `http://`, `ssh://[user@]host[:port]/path`
    /// (also `git+ssh://`), `git://host[:port]/path` and scp-like
    /// `[user@]host:path`; the host is resolved (blocking) and every address
    /// checked, except for a host an `allow_hosts` name or glob matches,
    /// which is allowed without resolving.
    ///
    /// Local sources (`file://...` and paths: no `:` before the first `/`)
    /// are not network requests and return `Ok(())`: the caller's
    /// `allow_local_paths` rule decides about them.
    ///
    /// Refused: transport helpers (`<transport>::<address>`, e.g. `ext::`,
    /// which runs a command), other schemes (`ftp://`, `fd://`...), and a
    /// user or host beginning with `-` (an ssh option).
    ///
    /// git resolves the name again itself, and follows HTTP redirects on
    /// its first request; run it with `-c http.followRedirects=false` and
    /// `-c protocol.ext.allow=never` so the check made here is the one that
    /// holds.
    pub fn check_git_url(&self, source: &str) -> Result<(), OutboundError> {
        let rules = Rules::new(self)?;
        let target = match parse::git_source(source)? {
            GitSource::Local => return Ok(()),
            GitSource::Remote(target) => target,
        };
        // A name allowed by `allow_hosts` needs no address, unless a
        // `deny_hosts` address or range could still refuse it.
        if rules.by_name(&target.host) == ByName::Allowed && !rules.denies_addresses() {
            return Ok(());
        }
        rules.resolve_and_check(Purpose::Git, &parse::redact(source.trim()), &target)?;
        Ok(())
    }
}
