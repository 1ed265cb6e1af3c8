//! Bearer-token authentication and authorization for everything under
//! `/api/`: who calls ([`Caller`]), whether their scope allows the request
//! ([`crate::token::required_scope`]), the audit log of every request that
//! changes something, and a limit on failed authentications per client.
//!
//! Failed authentications are limited per client address: past
//! [`FAILURES_PER_WINDOW`] (configurable: `auth_failure_limit`) in
//! [`FAILURE_WINDOW`], a bad token is answered
//! `429` instead of `401`. A valid token always works: tokens are 256-bit
//! random values, so the limit is not what stops guessing; it keeps a flood
//! of bad requests visible and cheap to refuse.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::job::now_ms;
use crate::token::{AuditEntry, Scope};

/// Failed authentications one client address may make per window before
/// its failures are answered `429`, unless configured otherwise.
pub const FAILURES_PER_WINDOW: u32 = 20;
/// The window of [`FAILURES_PER_WINDOW`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Log streams (`follow=true`) one token may hold open at once.
pub const STREAMS_PER_TOKEN: usize = 64;

/// Who made a request, for the handlers (a request extension).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id (`tok-…`), or `configured`.
    pub token: String,
    /// What it may do.
    pub scope: Scope,
}

/// Per-process counters of the guard: failed authentications by client
/// address, open log streams by token.
#[derive(Debug)]
pub struct AuthGuard {
    failure_limit: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    streams: Mutex<HashMap<String, usize>>,
}

impl Default for AuthGuard {
    fn default() -> Self {
        AuthGuard::new(FAILURES_PER_WINDOW)
    }
}

impl AuthGuard {
    /// A guard that answers `429` past `failure_limit` failures per window.
    pub fn new(failure_limit: u32) -> AuthGuard {
        AuthGuard {
            failure_limit,
            failures: Mutex::default(),
            streams: Mutex::default(),
        }
    }

    /// Count a failure of `client`; whether it is now over the limit.
    fn fail(&self, client: IpAddr) -> bool {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Forget finished windows now and then, so the map stays small.
        if map.len() > 4096 {
            map.retain(|_, (start, _)| now.duration_since(*start) < FAILURE_WINDOW);
        }
        let (start, count) = map.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= FAILURE_WINDOW {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count > self.failure_limit
    }

    /// Count a failed login of `client` (the dashboard's); whether it is
    /// now over the limit.
    pub fn count_failure(&self, client: IpAddr) -> bool {
        self.fail(client)
    }

    /// Open one log stream for `token`; `None` when it holds
    /// [`STREAMS_PER_TOKEN`] already. The stream is counted until the
    /// returned guard is dropped.
    pub fn open_stream(self: &std::sync::Arc<Self>, token: &str) -> Option<StreamSlot> {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let open = map.entry(token.to_owned()).or_default();
        if *open >= STREAMS_PER_TOKEN {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            guard: self.clone(),
            token: token.to_owned(),
        })
    }
}

/// One open log stream of a token; closing it (drop) frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    guard: std::sync::Arc<AuthGuard>,
    token: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut map = self.guard.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = map.get_mut(&self.token) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                map.remove(&self.token);
            }
        }
    }
}

/// Compare in time independent of where the inputs differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who holds the token whose hash is `hash` (a dashboard session's
/// token, checked again on each request): `None` once it is revoked or
/// expired.
pub(crate) async fn identify_hash(state: &AppState, hash: &str) -> Option<Caller> {
    if constant_time_eq(hash.as_bytes(), crate::token::hash(&state.token).as_bytes()) {
        return Some(Caller {
            token: "configured".into(),
            scope: Scope::Admin,
        });
    }
    match state.store.get_token(hash).await {
        Ok(Some(t)) if t.usable(now_ms()) => Some(Caller {
            token: t.id,
            scope: t.scope,
        }),
        _ => None,
    }
}

/// Who `presented` is: the configured token (admin), or a stored one
/// that is neither revoked nor expired.
pub(crate) async fn identify(state: &AppState, presented: &str) -> Option<Caller> {
    if constant_time_eq(presented.as_bytes(), state.token.as_bytes()) {
        return Some(Caller {
            token: "configured".into(),
            scope: Scope::Admin,
        });
    }
    if !presented.starts_with(crate::token::PREFIX) {
        return None;
    }
    // Hashed first: the lookup's timing says nothing about the token.
    match state.store.get_token(&crate::token::hash(presented)).await {
        Ok(Some(t)) if t.usable(now_ms()) => Some(Caller {
            token: t.id,
            scope: t.scope,
        }),
        _ => None,
    }
}

/// The middleware: identify the caller, check its scope against the
/// request, run it, and record it in the audit log when it changes
/// something.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    // The dashboard's session cookie reads (its live log), never changes:
    // a cookie rides along on any request a browser makes, so a change
    // needs the bearer header.
    let reads = matches!(request.method().as_str(), "GET" | "HEAD");
    let from_session = match presented {
        None if reads => crate::dashboard::session_caller(&state, request.headers()).await,
        _ => None,
    };
    let identified = match presented {
        Some(p) => Some((p, identify(&state, p).await)),
        None => None,
    };
    let caller = match identified {
        _ if from_session.is_some() => from_session.expect("checked"),
        Some((_, Some(caller))) => caller,
        Some(_) if state.auth_guard.fail(client) => {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                format!(
                    "more than {} failed authentications from {client} within {} s",
                    state.auth_guard.failure_limit,
                    FAILURE_WINDOW.as_secs()
                ),
            )
            .hint("check the token; requests with a valid token are not limited")
            .into_response();
        }
        Some(_) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the bearer token is not valid",
            )
            .hint("use the token from the server's token file or SLIPWAY_TOKEN, or one made with `slipway tokens create` that is neither revoked nor expired")
            .into_response();
        }
        None => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing `Authorization: Bearer <token>`",
            )
            .hint("set SLIPWAY_TOKEN for the client commands")
            .into_response();
        }
    };
    let method = request.method().as_str().to_owned();
    let target = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.0.path().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let needed = crate::token::required_scope(&method, &target);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| target.clone());
    let route = if route.starts_with("/api/v1") {
        route
    } else {
        format!("/api/v1{route}")
    };
    if caller.scope < needed {
        let refused = ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} has scope `{}`; {method} {target} needs `{}`",
                caller.token,
                caller.scope.name(),
                needed.name()
            ),
        )
        .hint("create a token with the scope it needs: `slipway tokens create --name NAME --scope run|admin`")
        .into_response();
        // A refused change is audited too: someone tried.
        if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
            audit(&state, &caller, method, route, target, refused.status()).await;
        }
        return refused;
    }
    request.extensions_mut().insert(caller.clone());
    let response = next.run(request).await;
    if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") {
        audit(&state, &caller, method, route, target, response.status()).await;
    }
    response
}

/// Record a change made through the dashboard, as the API's are.
pub(crate) async fn audit_dashboard(
    state: &AppState,
    caller: &Caller,
    method: &str,
    route: &str,
    target: &str,
    status: StatusCode,
) {
    audit(
        state,
        caller,
        method.to_owned(),
        route.to_owned(),
        target.to_owned(),
        status,
    )
    .await;
}

/// Record one state-changing request (a failure to is logged, not fatal:
/// the request was answered already).
async fn audit(
    state: &AppState,
    caller: &Caller,
    method: String,
    route: String,
    target: String,
    status: StatusCode,
) {
    let entry = AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        token: caller.token.clone(),
        method,
        route,
        target,
        status: status.as_u16(),
    };
    if let Err(e) = state.store.append_audit(entry).await {
        tracing::warn!(error = %e, "audit: the request could not be recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn failures_are_limited_per_client_and_window() {
        let guard = AuthGuard::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(!guard.fail(a));
        }
        assert!(guard.fail(a), "the next failure is over the limit");
        assert!(!guard.fail(b), "another client has its own count");
    }

    #[test]
    fn streams_are_capped_per_token_and_freed_on_drop() {
        let guard = std::sync::Arc::new(AuthGuard::default());
        let slots: Vec<_> = (0..STREAMS_PER_TOKEN)
            .map(|_| guard.open_stream("tok-a").expect("under the cap"))
            .collect();
        assert!(guard.open_stream("tok-a").is_none());
        assert!(guard.open_stream("tok-b").is_some(), "per token");
        drop(slots);
        assert!(guard.open_stream("tok-a").is_some(), "freed on drop");
    }
}
