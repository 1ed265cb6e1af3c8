//! Which addresses an outbound request must not reach by default, and why.
//!
//! [`classify`] is pure: it looks at one address, never at DNS. Ranges are
//! tried in order, so a specific entry (a metadata endpoint, the broadcast
//! address) is listed before the wider range that holds it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How far a refused range may be opened by configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// Internal but real destinations (loopback, private, link-local, shared
    /// address space, unique-local): `outbound.allow_private` opens them.
    Private,
    /// Never a legitimate destination of a URL a token holder names
    /// (unspecified, broadcast, multicast, documentation, benchmarking,
    /// reserved, cloud metadata): only an `outbound.allow_hosts` entry opens
    /// them.
    Reserved,
}

/// A range of addresses refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// What the range is, e.g. `loopback` or `private`.
    pub name: &'static str,
    /// The range in CIDR notation, e.g. `127.0.0.0/8`.
    pub cidr: &'static str,
    /// Whether `outbound.allow_private` opens it.
    pub kind: RangeKind,
}

/// Why an address is refused by default: the range it is in and, for an
/// IPv6 address that carries an IPv4 one, the form that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The refused range (of the embedded IPv4 address where there is one).
    pub range: Range,
    /// The IPv6 form the IPv4 address was embedded in (IPv4-mapped, NAT64,
    /// 6to4), with the embedded address.
    pub embedded: Option<(Range, Ipv4Addr)>,
}

impl Refusal {
    /// Whether `outbound.allow_private` opens this address.
    pub fn is_private(&self) -> bool {
        self.range.kind == RangeKind::Private
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} range {}", self.range.name, self.range.cidr)?;
        if let Some((form, v4)) = &self.embedded {
            write!(f, ", as {v4} embedded in {} {}", form.name, form.cidr)?;
        }
        Ok(())
    }
}

const fn private(name: &'static str, cidr: &'static str) -> Range {
    Range {
        name,
        cidr,
        kind: RangeKind::Private,
    }
}

const fn reserved(name: &'static str, cidr: &'static str) -> Range {
    Range {
        name,
        cidr,
        kind: RangeKind::Reserved,
    }
}

/// IPv4 ranges refused by default: (network, prefix length, range).
const V4_RANGES: &[(Ipv4Addr, u8, Range)] = &[
    // Cloud instance metadata (AWS, GCP, Azure, OCI...): hands out the
    // machine's credentials. The prime SSRF target, so not opened by
    // `allow_private` even though it is link-local.
    (
        Ipv4Addr::new(169, 254, 169, 254),
        32,
        reserved("cloud metadata", "169.254.169.254/32"),
    ),
    // AWS ECS task metadata: the task role's credentials.
    (
        Ipv4Addr::new(169, 254, 170, 2),
        32,
        reserved("cloud metadata", "169.254.170.2/32"),
    ),
    // Alibaba Cloud metadata, inside the shared address space below.
    (
        Ipv4Addr::new(100, 100, 100, 200),
        32,
        reserved("cloud metadata", "100.100.100.200/32"),
    ),
    // Limited broadcast: every host on the local segment.
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        reserved("broadcast", "255.255.255.255/32"),
    ),
    // "This network"; 0.0.0.0 itself reaches the local host on Linux.
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        reserved("unspecified (this network)", "0.0.0.0/8"),
    ),
    // RFC 1918 private networks: the operator's internal services.
    (
        Ipv4Addr::new(10, 0, 0, 0),
        8,
        private("private", "10.0.0.0/8"),
    ),
    // Shared address space (carrier-grade NAT); also used inside clusters
    // and overlay networks (Kubernetes, Tailscale).
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        private("shared address space (CGNAT)", "100.64.0.0/10"),
    ),
    // Loopback: the engine's own API and whatever else listens locally.
    (
        Ipv4Addr::new(127, 0, 0, 0),
        8,
        private("loopback", "127.0.0.0/8"),
    ),
    // Link-local: unrouted, the segment's own devices.
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        private("link-local", "169.254.0.0/16"),
    ),
    (
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        private("private", "172.16.0.0/12"),
    ),
    // IETF protocol assignments (DS-Lite, NAT64 discovery...): not hosts.
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        reserved("IETF protocol assignments", "192.0.0.0/24"),
    ),
    // Documentation ranges: never real hosts.
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        reserved("documentation (TEST-NET-1)", "192.0.2.0/24"),
    ),
    // Deprecated 6to4 relay anycast: a tunnel, not a host.
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        reserved("6to4 relay anycast", "192.88.99.0/24"),
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        private("private", "192.168.0.0/16"),
    ),
    // Benchmarking between devices in a lab: not the internet.
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        reserved("benchmarking", "198.18.0.0/15"),
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        reserved("documentation (TEST-NET-2)", "198.51.100.0/24"),
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        reserved("documentation (TEST-NET-3)", "203.0.113.0/24"),
    ),
    // Multicast: groups, not a server.
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        reserved("multicast", "224.0.0.0/4"),
    ),
    // Reserved for future use ("class E").
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        reserved("reserved", "240.0.0.0/4"),
    ),
];

/// What an IPv6 range means for the check.
enum V6Rule {
    /// The range itself is refused.
    Refuse(Range),
    /// The range carries an IPv4 address (in the low 32 bits, or in bits
    /// 16..48 for 6to4); that address is checked instead.
    Embeds(Range),
}

/// IPv6 ranges with a rule: (network, prefix length, rule).
const V6_RANGES: &[(Ipv6Addr, u8, V6Rule)] = &[
    // The unspecified address: like 0.0.0.0, may reach the local host.
    (
        Ipv6Addr::UNSPECIFIED,
        128,
        V6Rule::Refuse(reserved("unspecified", "::/128")),
    ),
    (
        Ipv6Addr::LOCALHOST,
        128,
        V6Rule::Refuse(private("loopback", "::1/128")),
    ),
    // IPv4-mapped: the socket connects to the IPv4 address itself.
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        V6Rule::Embeds(reserved("IPv4-mapped IPv6", "::ffff:0:0/96")),
    ),
    // IPv4-compatible (deprecated): may still reach the IPv4 address.
    (
        Ipv6Addr::UNSPECIFIED,
        96,
        V6Rule::Embeds(reserved("IPv4-compatible IPv6", "::/96")),
    ),
    // NAT64 well-known prefix: a translator forwards to the IPv4 address.
    (
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        V6Rule::Embeds(reserved("NAT64", "64:ff9b::/96")),
    ),
    // Local-use NAT64: translates into the operator's own IPv4 networks,
    // with the IPv4 address at a position the prefix does not tell.
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        V6Rule::Refuse(private("local-use NAT64", "64:ff9b:1::/48")),
    ),
    // Discard-only prefix: traffic is dropped by design.
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        V6Rule::Refuse(reserved("discard-only", "100::/64")),
    ),
    // Teredo: a tunnel to an (obfuscated) IPv4 client; never a server here.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        V6Rule::Refuse(reserved("Teredo tunnelling", "2001::/32")),
    ),
    (
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        V6Rule::Refuse(reserved("benchmarking", "2001:2::/48")),
    ),
    // ORCHID (v1 deprecated, v2): identifiers, not routable addresses.
    (
        Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        V6Rule::Refuse(reserved("ORCHID", "2001:10::/28")),
    ),
    (
        Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        V6Rule::Refuse(reserved("ORCHIDv2", "2001:20::/28")),
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        V6Rule::Refuse(reserved("documentation", "2001:db8::/32")),
    ),
    // 6to4: a relay forwards to the IPv4 address in bits 16..48.
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        V6Rule::Embeds(reserved("6to4", "2002::/16")),
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        V6Rule::Refuse(reserved("documentation", "3fff::/20")),
    ),
    // AWS instance metadata over IPv6, inside the unique-local range.
    (
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        128,
        V6Rule::Refuse(reserved("cloud metadata", "fd00:ec2::254/128")),
    ),
    // Unique-local addresses: IPv6's private networks.
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        V6Rule::Refuse(private("unique-local (private)", "fc00::/7")),
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refuse(private("link-local", "fe80::/10")),
    ),
    // Site-local (deprecated): private networks of old.
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refuse(private("site-local (private)", "fec0::/10")),
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        V6Rule::Refuse(reserved("multicast", "ff00::/8")),
    ),
];

/// Everything outside global unicast `2000::/3` not listed above is
/// unassigned or special (e.g. IPv4-translated `::ffff:0:0:0/96`).
const V6_OUTSIDE_GLOBAL: Range = reserved("reserved (outside global unicast)", "2000::/3");

fn in_v4(addr: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    len == 0 || (u32::from(addr) ^ u32::from(net)) >> (32 - u32::from(len)) == 0
}

fn in_v6(addr: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    len == 0 || (u128::from(addr) ^ u128::from(net)) >> (128 - u32::from(len)) == 0
}

/// Whether `addr` is in `net/len` (false when the families differ).
pub(crate) fn in_net(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => in_v4(a, n, len),
        (IpAddr::V6(a), IpAddr::V6(n)) => in_v6(a, n, len),
        _ => false,
    }
}

/// The IPv4 address an IPv6 address carries, if it is IPv4-mapped,
/// IPv4-compatible, NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
pub fn embedded_ipv4(addr: Ipv6Addr) -> Option<Ipv4Addr> {
    for (net, len, rule) in V6_RANGES {
        if let V6Rule::Embeds(_) = rule
            && in_v6(addr, *net, *len)
        {
            return Some(extract_v4(addr, *net));
        }
    }
    None
}

fn extract_v4(addr: Ipv6Addr, net: Ipv6Addr) -> Ipv4Addr {
    let bits = u128::from(addr);
    let v4 = if net.segments()[0] == 0x2002 {
        bits >> 80
    } else {
        bits
    };
    // Truncation to the 32 embedded bits is the point.
    Ipv4Addr::from(v4 as u32)
}

fn classify_v4(addr: Ipv4Addr) -> Option<Range> {
    V4_RANGES
        .iter()
        .find(|(net, len, _)| in_v4(addr, *net, *len))
        .map(|(_, _, range)| *range)
}

/// Why `addr` is refused by default, or `None` for a public address.
pub fn classify(addr: IpAddr) -> Option<Refusal> {
    match addr {
        IpAddr::V4(v4) => classify_v4(v4).map(|range| Refusal {
            range,
            embedded: None,
        }),
        IpAddr::V6(v6) => {
            for (net, len, rule) in V6_RANGES {
                if !in_v6(v6, *net, *len) {
                    continue;
                }
                return match rule {
                    V6Rule::Refuse(range) => Some(Refusal {
                        range: *range,
                        embedded: None,
                    }),
                    V6Rule::Embeds(form) => {
                        let v4 = extract_v4(v6, *net);
                        classify_v4(v4).map(|range| Refusal {
                            range,
                            embedded: Some((*form, v4)),
                        })
                    }
                };
            }
            if !in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
                return Some(Refusal {
                    range: V6_OUTSIDE_GLOBAL,
                    embedded: None,
                });
            }
            None
        }
    }
}
