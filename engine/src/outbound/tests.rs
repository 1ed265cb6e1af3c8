//! Tests of the outbound policy. Nothing here leaves the machine: checks
//! are pure or use IP literals and `localhost` (from `/etc/hosts`), and
//! the end-to-end tests talk to servers on 127.0.0.1 only.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ureq::config::{Config, IpFamily};

use super::policy::Rules;
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn policy(allow: &[&str], deny: &[&str], allow_private: bool) -> OutboundPolicy {
    OutboundPolicy {
        allow_hosts: allow.iter().map(|s| s.to_string()).collect(),
        deny_hosts: deny.iter().map(|s| s.to_string()).collect(),
        allow_private,
    }
}

// ---------------------------------------------------------------------------
// Classification: pure, no DNS, no traffic.

#[test]
fn classification_table() {
    // (address, the range it is refused for, or None when public)
    let table: &[(&str, Option<&str>)] = &[
        // IPv4 refused
        ("127.0.0.1", Some("loopback")),
        ("127.255.255.254", Some("loopback")),
        ("0.0.0.0", Some("unspecified (this network)")),
        ("0.1.2.3", Some("unspecified (this network)")),
        ("10.0.0.1", Some("private")),
        ("10.255.255.255", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.255", Some("private")),
        ("192.168.1.1", Some("private")),
        ("169.254.169.254", Some("cloud metadata")),
        ("169.254.170.2", Some("cloud metadata")),
        ("169.254.1.1", Some("link-local")),
        ("100.64.0.1", Some("shared address space (CGNAT)")),
        ("100.127.255.255", Some("shared address space (CGNAT)")),
        ("100.100.100.200", Some("cloud metadata")),
        ("224.0.0.1", Some("multicast")),
        ("239.255.255.250", Some("multicast")),
        ("255.255.255.255", Some("broadcast")),
        ("240.0.0.1", Some("reserved")),
        ("192.0.0.8", Some("IETF protocol assignments")),
        ("192.0.2.1", Some("documentation (TEST-NET-1)")),
        ("198.51.100.7", Some("documentation (TEST-NET-2)")),
        ("203.0.113.9", Some("documentation (TEST-NET-3)")),
        ("198.18.0.1", Some("benchmarking")),
        ("198.19.255.255", Some("benchmarking")),
        ("192.88.99.1", Some("6to4 relay anycast")),
        // IPv4 public, including neighbours of refused ranges
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("11.0.0.1", None),
        ("126.255.255.255", None),
        ("128.0.0.1", None),
        ("172.15.255.255", None),
        ("172.32.0.1", None),
        ("100.63.255.255", None),
        ("100.128.0.1", None),
        ("169.253.255.255", None),
        ("192.167.255.255", None),
        ("192.169.0.1", None),
        ("198.17.255.255", None),
        ("198.20.0.1", None),
        ("223.255.255.255", None),
        // IPv6 refused
        ("::", Some("unspecified")),
        ("::1", Some("loopback")),
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:10.0.0.1", Some("private")),
        ("::ffff:169.254.169.254", Some("cloud metadata")),
        ("::ffff:0.0.0.0", Some("unspecified (this network)")),
        ("::127.0.0.1", Some("loopback")),
        ("64:ff9b::7f00:1", Some("loopback")),
        ("64:ff9b::a9fe:a9fe", Some("cloud metadata")),
        ("64:ff9b::c0a8:101", Some("private")),
        ("64:ff9b:1::1", Some("local-use NAT64")),
        ("2002:7f00:1::", Some("loopback")),
        ("2002:a00:1::1", Some("private")),
        ("2002:a9fe:a9fe::", Some("cloud metadata")),
        ("fc00::1", Some("unique-local (private)")),
        ("fd12:3456::1", Some("unique-local (private)")),
        ("fd00:ec2::254", Some("cloud metadata")),
        ("fe80::1", Some("link-local")),
        ("febf::1", Some("link-local")),
        ("fec0::1", Some("site-local (private)")),
        ("ff02::1", Some("multicast")),
        ("ff0e::1", Some("multicast")),
        ("2001:db8::1", Some("documentation")),
        ("3fff::1", Some("documentation")),
        ("2001::1", Some("Teredo tunnelling")),
        ("2001:2::1", Some("benchmarking")),
        ("2001:10::1", Some("ORCHID")),
        ("2001:20::1", Some("ORCHIDv2")),
        ("100::1", Some("discard-only")),
        ("::ffff:0:7f00:1", Some("reserved (outside global unicast)")),
        ("4000::1", Some("reserved (outside global unicast)")),
        ("1::1", Some("reserved (outside global unicast)")),
        // IPv6 public, including public IPv4 carried in IPv6
        ("2606:4700::1111", None),
        ("2001:4860:4860::8888", None),
        ("2a00:1450:4001::1", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
    ];
    let mut wrong = Vec::new();
    for (addr, expected) in table {
        let got = classify(ip(addr)).map(|r| r.range.name);
        if got != *expected {
            wrong.push(format!("{addr}: expected {expected:?}, got {got:?}"));
        }
        // The default policy agrees with the classification.
        let default = OutboundPolicy::default().check_addr(addr, ip(addr));
        if default.is_ok() != expected.is_none() {
            wrong.push(format!("{addr}: default policy said {default:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn embedded_ipv4_is_named_in_the_refusal() {
    let refusal = classify(ip("::ffff:127.0.0.1")).expect("refused");
    assert_eq!(
        refusal.to_string(),
        "loopback range 127.0.0.0/8, as 127.0.0.1 embedded in IPv4-mapped IPv6 ::ffff:0:0/96"
    );
    let refusal = classify(ip("2002:a00:1::1")).expect("refused");
    assert_eq!(
        refusal.to_string(),
        "private range 10.0.0.0/8, as 10.0.0.1 embedded in 6to4 2002::/16"
    );
    assert_eq!(
        embedded_ipv4("64:ff9b::a9fe:a9fe".parse().expect("v6")),
        Some("169.254.169.254".parse().expect("v4"))
    );
    assert_eq!(embedded_ipv4("2606:4700::1".parse().expect("v6")), None);
}

#[test]
fn allow_private_opens_internal_ranges_only() {
    let p = policy(&[], &[], true);
    for addr in [
        "127.0.0.1",
        "10.0.0.1",
        "172.20.0.1",
        "192.168.0.1",
        "169.254.1.1",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
    ] {
        assert!(p.check_addr(addr, ip(addr)).is_ok(), "{addr} allowed");
    }
    for addr in [
        "169.254.169.254",
        "fd00:ec2::254",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "240.0.0.1",
    ] {
        let err = p.check_addr(addr, ip(addr)).expect_err(addr);
        assert!(err.is_refusal(), "{addr}: {err}");
        assert!(
            err.to_string()
                .contains("outbound.allow_private does not open"),
            "{err}"
        );
    }
}

#[test]
fn allow_hosts_by_name_glob_address_and_range() {
    let p = policy(
        &[
            "git.internal.example",
            "*.corp.example",
            "10.1.0.0/16",
            "[::1]",
            "169.254.169.254",
        ],
        &[],
        false,
    );
    let ok = |host: &str, addr: &str| p.check_addr(host, ip(addr));
    assert!(ok("git.internal.example", "10.0.0.1").is_ok());
    assert!(
        ok("GIT.Internal.Example.", "10.0.0.1").is_ok(),
        "normalised"
    );
    assert!(ok("a.corp.example", "192.168.0.1").is_ok());
    assert!(ok("a.b.corp.example", "127.0.0.1").is_ok());
    assert!(
        ok("corp.example", "192.168.0.1").is_err(),
        "glob needs a label"
    );
    assert!(
        ok("other.example", "10.1.2.3").is_ok(),
        "range matches address"
    );
    assert!(ok("other.example", "::ffff:10.1.2.3").is_ok(), "mapped");
    assert!(ok("other.example", "64:ff9b::a01:203").is_ok(), "NAT64");
    assert!(ok("other.example", "10.2.0.1").is_err());
    assert!(ok("::1", "::1").is_ok());
    assert!(
        ok("169.254.169.254", "169.254.169.254").is_ok(),
        "explicitly"
    );
    assert!(ok("git.internal.example.evil", "10.0.0.1").is_err());
}

#[test]
fn deny_hosts_wins_and_matches_carried_ipv4() {
    let p = policy(
        &["8.8.8.8", "*.example"],
        &["8.8.8.0/24", "*.evil.example"],
        false,
    );
    for addr in [
        "8.8.8.8",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
        "64:ff9b::808:808",
    ] {
        let err = p.check_addr("dns.example", ip(addr)).expect_err(addr);
        assert!(
            matches!(&err, OutboundError::Denied { pattern, .. } if pattern == "8.8.8.0/24"),
            "{addr}: {err}"
        );
    }
    let err = p
        .check_addr("a.evil.example", ip("1.1.1.1"))
        .expect_err("name denied");
    assert!(
        err.to_string()
            .contains("outbound.deny_hosts entry `*.evil.example`")
    );
    assert!(p.check_addr("evil.example", ip("1.1.1.1")).is_ok());
}

#[test]
fn invalid_patterns_are_reported_and_fail_closed() {
    for (allow, reason) in [
        ("", "empty"),
        ("10.0.0.0/33", "prefix length"),
        ("10.1.2.0/16", "did you mean 10.1.0.0/16"),
        ("nope/8", "not an IP address"),
        ("git.example:443", "not a URL, user or port"),
        ("https://git.example", "not a URL, user or port"),
        ("bad host", "letters, digits"),
        ("* .example", "letters, digits"),
        ("[*", ""),
    ] {
        let p = policy(&[allow], &[], false);
        let err = p.validate().expect_err(allow);
        let text = err.to_string();
        assert!(
            text.starts_with("outbound: invalid outbound.allow_hosts entry")
                && text.contains(reason),
            "{allow}: {text}"
        );
        // Fails closed: even a public address is refused.
        assert!(p.check_addr("x.example", ip("8.8.8.8")).is_err());
    }
    let p = policy(
        &[
            "[::1]",
            "fd00::/8",
            "*.x.example",
            "x.example.",
            "10.0.0.0/8",
        ],
        &["0.0.0.0/0"],
        false,
    );
    assert!(p.validate().is_ok());
}

#[test]
fn config_section_deserialises_with_defaults_and_refuses_unknown_keys() {
    let p: OutboundPolicy = toml::from_str("").expect("empty section");
    assert_eq!(p, OutboundPolicy::default());
    assert!(!p.allow_private && p.allow_hosts.is_empty() && p.deny_hosts.is_empty());
    let p: OutboundPolicy = toml::from_str(
        "allow_hosts = [\"git.internal.example\", \"10.1.0.0/16\"]\nallow_private = true\ndeny_hosts = [\"*.evil.example\"]",
    )
    .expect("full section");
    assert_eq!(p.allow_hosts, ["git.internal.example", "10.1.0.0/16"]);
    assert!(p.allow_private);
    assert_eq!(p.deny_hosts, ["*.evil.example"]);
    let err = toml::from_str::<OutboundPolicy>("allow_host = []").expect_err("typo");
    assert!(err.to_string().contains("unknown field"), "{err}");
}

// ---------------------------------------------------------------------------
// check_url: IP literals and localhost only.

#[test]
fn error_message_names_range_and_setting() {
    let rules = Rules::new(&OutboundPolicy::default()).expect("rules");
    let err = rules
        .check(
            Purpose::Callback,
            "https://internal.example/x",
            "internal.example",
            ip("10.0.0.1"),
        )
        .expect_err("private");
    assert_eq!(
        err.to_string(),
        "outbound: callback URL https://internal.example/x resolves to 10.0.0.1 (private range 10.0.0.0/8); refused. Allow it with outbound.allow_hosts = [\"internal.example\"] or outbound.allow_private = true"
    );
}

#[test]
fn check_url_refuses_internal_literals_and_localhost() {
    let p = OutboundPolicy::default();
    let cases: &[(&str, &str, &str)] = &[
        (
            "http://127.0.0.1:1/",
            "is 127.0.0.1 (loopback range 127.0.0.0/8)",
            "outbound.allow_hosts = [\"127.0.0.1\"] or outbound.allow_private = true",
        ),
        (
            "http://169.254.169.254/latest/meta-data",
            "is 169.254.169.254 (cloud metadata range 169.254.169.254/32)",
            "outbound.allow_hosts = [\"169.254.169.254\"] (outbound.allow_private does not open",
        ),
        (
            "http://10.0.0.1/",
            "(private range 10.0.0.0/8)",
            "outbound.allow_private = true",
        ),
        (
            "http://[::1]/",
            "is ::1 (loopback range ::1/128)",
            "outbound.allow_hosts = [\"::1\"]",
        ),
        (
            "http://[::ffff:127.0.0.1]/",
            "embedded in IPv4-mapped IPv6 ::ffff:0:0/96",
            "outbound.allow_hosts = [\"::ffff:127.0.0.1\"]",
        ),
        (
            "http://localhost:1/",
            "resolves to 127.0.0.1 (loopback",
            "outbound.allow_hosts = [\"localhost\"]",
        ),
        // A decimal IPv4 address still resolves to loopback.
        ("http://2130706433/", "resolves to 127.0.0.1", "allow_hosts"),
    ];
    for (url, what, setting) in cases {
        let err = p.check_url(url, Purpose::Callback).expect_err(url);
        let text = err.to_string();
        assert!(
            matches!(err, OutboundError::Refused { .. }),
            "{url}: {text}"
        );
        assert!(text.starts_with("outbound: callback URL "), "{text}");
        assert!(text.contains(what), "{url}: {text}");
        assert!(text.contains(setting), "{url}: {text}");
    }
}

#[test]
fn check_url_allows_what_the_policy_allows() {
    let by_address = policy(&["127.0.0.1"], &[], false);
    let checked = by_address
        .check_url("http://127.0.0.1:1/x", Purpose::Forge)
        .expect("allowed by address");
    assert_eq!(checked.host, "127.0.0.1");
    assert_eq!(checked.port, 1);
    assert_eq!(checked.addrs, [SocketAddr::from(([127, 0, 0, 1], 1))]);
    // The address pattern matches whatever name resolves to it.
    assert!(
        by_address
            .check_url("http://localhost:1/", Purpose::Forge)
            .is_ok()
    );

    let private = policy(&[], &[], true);
    for url in [
        "http://127.0.0.1:1/",
        "http://[::1]/",
        "http://localhost/",
        "http://10.0.0.1/",
    ] {
        assert!(private.check_url(url, Purpose::Forge).is_ok(), "{url}");
    }
    assert!(
        private
            .check_url("http://169.254.169.254/", Purpose::Forge)
            .is_err()
    );

    let public = OutboundPolicy::default()
        .check_url("https://8.8.8.8/x?y", Purpose::Forge)
        .expect("public");
    assert_eq!(public.port, 443);
    let public = OutboundPolicy::default()
        .check_url("HTTP://[2606:4700::1111]:8080", Purpose::Forge)
        .expect("public v6");
    assert_eq!(
        (public.host.as_str(), public.port),
        ("2606:4700::1111", 8080)
    );
}

#[test]
fn check_url_refuses_what_it_cannot_parse_unambiguously() {
    let p = OutboundPolicy::default();
    for (url, unsupported) in [
        ("ftp://8.8.8.8/x", true),
        ("file:///etc/passwd", true),
        ("gopher://8.8.8.8/", true),
        ("not a url", false),
        ("8.8.8.8/x", false),
        ("http:///x", false),
        ("http://a@b@8.8.8.8/", false),
        ("http://8.8.8.8\\@127.0.0.1/", false),
        ("http://exa mple.com/", false),
        ("http://8.8.8.8:99999/", false),
        ("http://8.8.8.8:0/", false),
        ("http://8.8.8.8:+80/", false),
        ("http://-x.example/", false),
        ("http://[::1/", false),
        ("http://[zz::1]/", false),
        ("http://bücher.example/", false),
        ("http://a%2e.example/", false),
    ] {
        let err = p.check_url(url, Purpose::Other).expect_err(url);
        match err {
            OutboundError::UnsupportedTransport { .. } => assert!(unsupported, "{url}: {err}"),
            OutboundError::BadUrl { .. } => assert!(!unsupported, "{url}: {err}"),
            other => panic!("{url}: {other}"),
        }
    }
}

#[test]
fn messages_elide_passwords_and_queries() {
    let err = OutboundPolicy::default()
        .check_url(
            "http://user:hunter2@10.0.0.1/hook?token=s3cret#frag",
            Purpose::Callback,
        )
        .expect_err("private");
    let text = err.to_string();
    assert!(text.contains("http://user:***@10.0.0.1/hook?…"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}

#[test]
fn resolve_error_reads_well() {
    let err = OutboundError::Resolve {
        purpose: Purpose::Git,
        target: "https://nowhere.example/x".into(),
        host: "nowhere.example".into(),
        source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    };
    assert_eq!(
        err.to_string(),
        "outbound: cannot resolve nowhere.example for git repository https://nowhere.example/x: no addresses"
    );
    assert!(!err.is_refusal());
}

// ---------------------------------------------------------------------------
// check_git_url: IP literals, names decided without DNS, local paths.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Git {
    Ok,
    Refused(&'static str),
    Unsupported,
    Bad,
}

#[test]
fn git_url_forms() {
    use Git::*;
    let table: &[(&str, Git)] = &[
        ("https://8.8.8.8/org/repo.git", Ok),
        ("https://x-access-token:t0k@8.8.8.8/org/repo.git", Ok),
        ("http://8.8.8.8:8080/repo", Ok),
        ("ssh://git@8.8.8.8/org/repo.git", Ok),
        ("ssh://git@8.8.8.8:2222/org/repo.git", Ok),
        ("git+ssh://8.8.8.8/org/repo.git", Ok),
        ("ssh://[2606:4700::1111]:22/repo", Ok),
        ("git://8.8.8.8/repo.git", Ok),
        ("git@8.8.8.8:org/repo.git", Ok),
        ("8.8.8.8:org/repo.git", Ok),
        ("git@[2606:4700::1111]:org/repo.git", Ok),
        ("[git@8.8.8.8:2222]:org/repo.git", Ok),
        ("  https://8.8.8.8/org/repo.git  ", Ok),
        // Local: the caller's allow_local_paths rule decides.
        ("file:///srv/git/repo.git", Ok),
        ("/srv/git/repo.git", Ok),
        ("./repo", Ok),
        ("repo", Ok),
        ("../a:b", Ok),
        // Internal addresses in every form.
        ("https://127.0.0.1/org/repo.git", Refused("loopback")),
        ("http://localhost:3000/org/repo.git", Refused("loopback")),
        ("ssh://git@[::1]/repo", Refused("loopback")),
        ("git@10.0.0.1:org/repo.git", Refused("private")),
        ("git://169.254.169.254/repo", Refused("cloud metadata")),
        ("git@[::ffff:127.0.0.1]:repo", Refused("loopback")),
        ("[git@127.0.0.1:2222]:repo", Refused("loopback")),
        ("192.168.1.1:repo", Refused("private")),
        (
            "ssh://git@[fd00::1]:22/repo",
            Refused("unique-local (private)"),
        ),
        // Transport helpers and other schemes.
        ("ext::sh -c touch% /tmp/pwned", Unsupported),
        ("fd::17", Unsupported),
        ("EXT::sh", Unsupported),
        ("git-remote-x::y", Unsupported),
        ("ftp://8.8.8.8/repo", Unsupported),
        ("ftps://8.8.8.8/repo", Unsupported),
        ("foo://8.8.8.8/repo", Unsupported),
        // ssh option injection and ambiguity.
        ("ssh://-oProxyCommand=touch%20x/repo", Bad),
        ("ssh://-oProxyCommand=x@8.8.8.8/repo", Bad),
        ("-oProxyCommand=x:repo", Bad),
        ("git@-oProxyCommand=x:repo", Bad),
        ("@8.8.8.8:repo", Bad),
        ("git@8.8.8.8 -oX:repo", Bad),
        ("https://a@b@8.8.8.8/repo", Bad),
        ("", Bad),
    ];
    let p = OutboundPolicy::default();
    let mut wrong = Vec::new();
    for (source, expected) in table {
        let got = match p.check_git_url(source) {
            Result::Ok(()) => Ok,
            Err(OutboundError::Refused { refusal, .. }) => Refused(refusal.range.name),
            Err(OutboundError::UnsupportedTransport { .. }) => Unsupported,
            Err(OutboundError::BadUrl { .. }) => Bad,
            Err(other) => {
                wrong.push(format!("{source:?}: {other}"));
                continue;
            }
        };
        if got != *expected {
            wrong.push(format!("{source:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn git_names_allowed_or_denied_without_dns() {
    // Neither name exists; both are decided by name alone, so no lookup.
    let p = policy(&["git.internal.example"], &["*.evil.example"], false);
    assert!(
        p.check_git_url("git@git.internal.example:org/repo.git")
            .is_ok()
    );
    assert!(
        p.check_git_url("https://git.internal.example/org/repo")
            .is_ok()
    );
    let err = p
        .check_git_url("https://a.evil.example/org/repo")
        .expect_err("denied");
    assert!(matches!(err, OutboundError::DeniedName { .. }), "{err}");
    assert!(err.is_refusal());
    let err = p.check_git_url("ext::sh -c id").expect_err("helper");
    assert_eq!(
        err.to_string(),
        "outbound: git repository `ext::sh -c id` uses the unsupported transport `ext::`; use https://, http://, ssh://, git:// or user@host:path"
    );
}

// ---------------------------------------------------------------------------
// The guarded agent, end to end, on loopback only.

/// A config for the tests: no proxy from the environment, IPv4 (so
/// `localhost` is 127.0.0.1), short timeouts.
fn config(max_redirects: u32) -> Config {
    ureq::Agent::config_builder()
        .proxy(None)
        .ip_family(IpFamily::Ipv4Only)
        .max_redirects(max_redirects)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

/// Whether no connection reached `listener` (a completed handshake would
/// be queued for accept even though nothing accepted it).
fn untouched(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).expect("nonblocking");
    matches!(listener.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Accepts one connection within 10 s.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking");
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                return stream;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection: {e}"),
        }
    }
}

/// Reads one request head.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading the request: {e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Serves one request with `response` on a thread; returns the request.
fn serve_once(listener: TcpListener, response: String) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut stream = accept(&listener);
        let head = read_head(&mut stream);
        stream.write_all(response.as_bytes()).expect("respond");
        head
    })
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

fn redirect_to(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn agent_refuses_loopback_before_connecting() {
    let (server, port) = listener();
    let agent = OutboundPolicy::default().agent(config(0), Purpose::Callback);
    let err = agent
        .get(&format!("http://127.0.0.1:{port}/hook"))
        .call()
        .expect_err("refused");
    let refusal = policy_refusal(&err).expect("a policy refusal");
    assert!(
        matches!(refusal, OutboundError::Refused { .. }),
        "{refusal}"
    );
    assert!(
        matches!(&err, ureq::Error::Io(io) if io.kind() == io::ErrorKind::PermissionDenied),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("loopback range 127.0.0.0/8"), "{text}");
    assert!(
        text.contains("outbound.allow_hosts = [\"127.0.0.1\"] or outbound.allow_private = true"),
        "{text}"
    );
    assert!(untouched(&server), "the server saw a connection");
}

#[test]
fn agent_reaches_an_allowed_host() {
    let (server, port) = listener();
    let served = serve_once(server, OK.into());
    let agent = policy(&["127.0.0.1"], &[], false).agent(config(0), Purpose::Callback);
    let mut response = agent
        .get(&format!("http://127.0.0.1:{port}/hook"))
        .call()
        .expect("allowed");
    assert_eq!(response.status(), 200);
    assert_eq!(response.body_mut().read_to_string().expect("body"), "ok");
    let head = served.join().expect("server thread");
    assert!(head.starts_with("GET /hook HTTP/1.1"), "{head}");
}

#[test]
fn agent_refuses_a_redirect_to_a_refused_host() {
    // The first hop is allowed by name (`localhost`); the redirect names
    // 127.0.0.1, which no entry allows, so the second hop is refused.
    let (first, first_port) = listener();
    let (second, second_port) = listener();
    let served = serve_once(
        first,
        redirect_to(&format!("http://127.0.0.1:{second_port}/")),
    );
    let agent = policy(&["localhost"], &[], false).agent(config(5), Purpose::Forge);
    let err = agent
        .get(&format!("http://localhost:{first_port}/"))
        .call()
        .expect_err("second hop refused");
    let refusal = policy_refusal(&err).expect("a policy refusal");
    let text = refusal.to_string();
    assert!(
        text.starts_with(&format!(
            "outbound: forge API URL http://127.0.0.1:{second_port}/ is 127.0.0.1 (loopback"
        )),
        "{text}"
    );
    assert!(served.join().expect("server").starts_with("GET / "));
    assert!(untouched(&second), "the redirect target saw a connection");
}

#[test]
fn agent_follows_a_redirect_to_an_allowed_host() {
    let (first, first_port) = listener();
    let (second, second_port) = listener();
    let first_served = serve_once(
        first,
        redirect_to(&format!("http://127.0.0.1:{second_port}/next")),
    );
    let second_served = serve_once(second, OK.into());
    let agent = policy(&["localhost", "127.0.0.1"], &[], false).agent(config(5), Purpose::Forge);
    let mut response = agent
        .get(&format!("http://localhost:{first_port}/"))
        .call()
        .expect("both hops allowed");
    assert_eq!(response.body_mut().read_to_string().expect("body"), "ok");
    assert!(first_served.join().expect("first").starts_with("GET / "));
    assert!(
        second_served
            .join()
            .expect("second")
            .starts_with("GET /next ")
    );
}

#[test]
fn agent_refuses_a_denied_name_before_resolving() {
    let (server, port) = listener();
    let agent = policy(&[], &["localhost"], true).agent(config(0), Purpose::Callback);
    let err = agent
        .get(&format!("http://localhost:{port}/"))
        .call()
        .expect_err("denied");
    assert!(
        matches!(policy_refusal(&err), Some(OutboundError::DeniedName { .. })),
        "{err}"
    );
    assert!(untouched(&server));
}

#[test]
fn agent_with_an_invalid_policy_refuses_everything() {
    let (server, port) = listener();
    let agent = policy(&["10.0.0.0/99"], &[], true).agent(config(0), Purpose::Callback);
    let err = agent
        .get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .expect_err("invalid policy");
    assert!(
        matches!(policy_refusal(&err), Some(OutboundError::Pattern(_))),
        "{err}"
    );
    assert!(untouched(&server));
}

#[test]
fn policy_refusal_ignores_other_errors() {
    // Nothing listens on the port once the listener is dropped.
    let (server, port) = listener();
    drop(server);
    let agent = policy(&["127.0.0.1"], &[], false).agent(config(0), Purpose::Callback);
    let err = agent
        .get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .expect_err("connection refused");
    assert!(policy_refusal(&err).is_none(), "{err:?}");
}

/// A config sending through an HTTP proxy on loopback.
fn proxied(proxy_port: u16) -> Config {
    let proxy = ureq::Proxy::new(&format!("http://127.0.0.1:{proxy_port}")).expect("proxy");
    ureq::Agent::config_builder()
        .proxy(Some(proxy))
        .ip_family(IpFamily::Ipv4Only)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
}

#[test]
fn through_a_proxy_the_target_is_checked_before_the_proxy_is_asked() {
    let (proxy, proxy_port) = listener();
    // The proxy itself is allowed; the target is not.
    let agent = policy(&["127.0.0.1"], &[], false).agent(proxied(proxy_port), Purpose::Callback);
    for target in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let err = agent.get(target).call().expect_err(target);
        assert!(
            matches!(policy_refusal(&err), Some(OutboundError::Refused { .. })),
            "{target}: {err}"
        );
    }
    assert!(untouched(&proxy), "the proxy was asked");
}

#[test]
fn through_a_proxy_an_allowed_target_is_tunnelled() {
    let (proxy, proxy_port) = listener();
    let served = thread::spawn(move || {
        let mut stream = accept(&proxy);
        let connect = read_head(&mut stream);
        stream
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .expect("established");
        let request = read_head(&mut stream);
        stream.write_all(OK.as_bytes()).expect("respond");
        (connect, request)
    });
    // `localhost` resolves to 127.0.0.1, which the policy allows; the proxy
    // (a stand-in that answers itself) is 127.0.0.1 too.
    let agent = policy(&["127.0.0.1"], &[], false).agent(proxied(proxy_port), Purpose::Callback);
    let mut response = agent
        .get("http://localhost:9/hook")
        .call()
        .expect("tunnelled");
    assert_eq!(response.body_mut().read_to_string().expect("body"), "ok");
    let (connect, request) = served.join().expect("proxy thread");
    assert!(
        connect.starts_with("CONNECT localhost:9 HTTP/1.1"),
        "{connect}"
    );
    assert!(request.starts_with("GET /hook HTTP/1.1"), "{request}");
}

#[test]
fn a_proxy_at_a_refused_address_is_refused() {
    let (proxy, proxy_port) = listener();
    // The target is allowed by name; the proxy's address is not allowed.
    let agent = policy(&["localhost"], &[], false).agent(proxied(proxy_port), Purpose::Callback);
    let err = agent
        .get("http://localhost:9/hook")
        .call()
        .expect_err("proxy refused");
    let text = policy_refusal(&err).expect("a policy refusal").to_string();
    assert!(text.contains(&format!("127.0.0.1:{proxy_port}")), "{text}");
    assert!(untouched(&proxy), "the proxy was contacted");
}
