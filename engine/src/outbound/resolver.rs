//! The check at connect time: a ureq resolver that resolves as ureq does,
//! then refuses what the policy refuses. It runs for every connection ureq
//! opens, redirects included, and ureq connects only to the addresses it
//! returns, so a name cannot resolve to something else between check and
//! connect (DNS rebinding).
//!
//! Through an HTTP (CONNECT) or SOCKS5 proxy ureq does not resolve the
//! target (the proxy does), so a connector ahead of ureq's checks the
//! target by resolving it here first; the proxy resolves it again, so it
//! should refuse internal addresses too. The proxy's own address is checked
//! like any target: an internal proxy needs an `outbound.allow_hosts` entry.

use std::io;
use std::sync::Arc;

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{ConnectionDetails, Connector, DefaultConnector, NextTimeout};

use super::error::{OutboundError, PatternError, Purpose};
use super::parse;
use super::policy::{ByName, OutboundPolicy, Rules};

/// A [`Resolver`] that delegates to ureq's [`DefaultResolver`] and refuses
/// the request when the host or any address it resolved to is refused by
/// the policy. The refusal is a [`ureq::Error::Io`] of kind
/// [`io::ErrorKind::PermissionDenied`] wrapping the [`OutboundError`];
/// [`policy_refusal`] finds it.
#[derive(Debug)]
pub struct GuardedResolver {
    rules: Result<Arc<Rules>, PatternError>,
    purpose: Purpose,
    inner: DefaultResolver,
}

impl GuardedResolver {
    /// A resolver checking against `policy`; requests are named as being
    /// for `purpose` in refusals. An invalid policy refuses every request.
    pub fn new(policy: &OutboundPolicy, purpose: Purpose) -> GuardedResolver {
        GuardedResolver {
            rules: Rules::new(policy).map(Arc::new),
            purpose,
            inner: DefaultResolver::default(),
        }
    }

    fn check(&self, uri: &Uri, addrs: &ResolvedSocketAddrs) -> Result<(), OutboundError> {
        let rules = self.rules.as_ref().map_err(|e| e.clone())?;
        let shown = parse::redact(&uri.to_string());
        let raw_host = uri.host().unwrap_or_default();
        let host = parse::host(raw_host).map_err(|reason| OutboundError::BadUrl {
            purpose: self.purpose,
            url: shown.clone(),
            reason,
        })?;
        match rules.by_name(&host) {
            ByName::Denied(pattern) => Err(OutboundError::DeniedName {
                purpose: self.purpose,
                target: shown,
                host: parse::normalise(&host),
                pattern,
            }),
            ByName::Allowed | ByName::Undecided => {
                for addr in addrs.iter() {
                    rules.check(self.purpose, &shown, &host, addr.ip())?;
                }
                Ok(())
            }
        }
    }
}

/// The error ureq returns for a refusal.
fn to_ureq(err: OutboundError) -> ureq::Error {
    ureq::Error::Io(io::Error::new(io::ErrorKind::PermissionDenied, err))
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // Refuse a denied name or an invalid policy before asking DNS.
        if let Err(e) = self.check(uri, &self.inner.empty()) {
            return Err(to_ureq(e));
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.check(uri, &addrs).map_err(to_ureq)?;
        Ok(addrs)
    }

    fn empty(&self) -> ResolvedSocketAddrs {
        self.inner.empty()
    }
}

/// First in the connector chain: when a proxy will resolve the target
/// (ureq then skips the resolver for it), resolve and check it here.
#[derive(Debug)]
struct ProxiedTargetCheck {
    rules: Option<Arc<Rules>>,
}

impl ProxiedTargetCheck {
    /// Whether an `allow_hosts` name allows the target whatever it resolves
    /// to (no need to resolve it here, where the proxy may be the only way
    /// to resolve names).
    fn allowed_by_name(&self, uri: &Uri) -> bool {
        self.rules.as_ref().is_some_and(|rules| {
            !rules.denies_addresses()
                && rules.by_name(uri.host().unwrap_or_default()) == ByName::Allowed
        })
    }
}

impl Connector<()> for ProxiedTargetCheck {
    type Out = ();

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<()>, ureq::Error> {
        if let Some(proxy) = details.config.proxy()
            && !proxy.resolve_target()
            && !proxy.is_no_proxy(details.uri)
            && !self.allowed_by_name(details.uri)
        {
            details
                .resolver
                .resolve(details.uri, details.config, details.timeout)?;
        }
        Ok(chained)
    }
}

/// The [`OutboundError`] behind a ureq error, when the policy refused the
/// request (through an agent from [`OutboundPolicy::agent`]).
pub fn policy_refusal(err: &ureq::Error) -> Option<&OutboundError> {
    match err {
        ureq::Error::Io(io) if io.kind() == io::ErrorKind::PermissionDenied => {
            io.get_ref()?.downcast_ref::<OutboundError>()
        }
        _ => None,
    }
}

impl OutboundPolicy {
    /// A ureq agent with `config` whose every connection, redirects
    /// included, is checked against this policy after DNS resolution (see
    /// [`GuardedResolver`]). A refused request fails with a
    /// [`ureq::Error::Io`] that [`policy_refusal`] recognises.
    ///
    /// `config` keeps its proxy (by default ureq takes one from
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`): targets are then checked
    /// before the proxy is asked (the proxy resolves again), and the proxy's
    /// own address must pass the policy too.
    pub fn agent(&self, config: Config, purpose: Purpose) -> ureq::Agent {
        let resolver = GuardedResolver::new(self, purpose);
        let check = ProxiedTargetCheck {
            rules: resolver.rules.as_ref().ok().cloned(),
        };
        ureq::Agent::with_parts(config, check.chain(DefaultConnector::new()), resolver)
    }
}
