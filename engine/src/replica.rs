//! Several engines on one shared store (PostgreSQL).
//!
//! Every replica leases and runs jobs: the queue shares them out
//! (`FOR UPDATE SKIP LOCKED`). What needs one owner at a time (managed
//! services, deployments, workspaces, watches and their polling, the
//! callbacks outbox) is done by the replica holding the *duties*: a
//! session-level advisory lock in PostgreSQL, taken by whichever replica
//! asks first and released when its connection ends, so another takes
//! over. No membership or election logic of our own: PostgreSQL's lock is
//! the election. Any replica answers any request; one for a route the
//! duties own (an API route or a dashboard page of that state) is
//! forwarded to the holder's `advertise_url`, so clients need one address.
//! Dashboard sessions are in the store, so the holder knows the browser's.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::queue::PostgresStore;

/// This replica's place among the replicas of its store.
pub struct Replica {
    store: Arc<PostgresStore>,
    node: String,
    holds_duties: AtomicBool,
    /// Forwards to `http://` and `https://` advertise URLs alike.
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// The API routes whose work the duties holder does.
const OWNED_ROUTES: &[&str] = &[
    "/api/v1/services",
    "/api/v1/deployments",
    "/api/v1/workspaces",
    "/api/v1/watches",
    "/api/v1/system",
];

/// The dashboard's pages whose state the duties holder keeps in memory
/// (the supervisor's live status and logs, open workspaces).
const OWNED_PAGES: &[&str] = &["/ui/services", "/ui/workspaces"];

/// Whether `path` is `route` or below it.
fn under(path: &str, route: &str) -> bool {
    path.strip_prefix(route)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Set on a forwarded request, so a request is forwarded once at most
/// (two replicas that both think the other holds the duties answer 503).
const FORWARDED: &str = "x-slipway-forwarded-by";

impl Replica {
    /// Replica `node` of `store`; it forwards to an `https://`
    /// advertise URL trusting `roots` (chain and host name verified).
    pub fn new(
        store: Arc<PostgresStore>,
        node: String,
        roots: rustls::RootCertStore,
    ) -> Arc<Replica> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(roots))
            .https_or_http()
            .enable_http1()
            .build();
        Arc::new(Replica {
            store,
            node,
            holds_duties: AtomicBool::new(false),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Whether this replica holds the duties now.
    pub fn holds_duties(&self) -> bool {
        self.holds_duties.load(Ordering::Acquire)
    }

    /// Do the duties whenever this replica holds them: wait for the lock,
    /// run `duties` with a token that is cancelled when the lock is lost
    /// (its connection ended: another replica may hold it now), then wait
    /// for the lock again; until `shutdown`.
    pub async fn run_duties<F, Fut>(self: Arc<Self>, shutdown: CancellationToken, duties: F)
    where
        F: Fn(CancellationToken) -> Fut,
        Fut: Future<Output = ()>,
    {
        while !shutdown.is_cancelled() {
            match self.store.try_duties(&self.node).await {
                Ok(Some(lock)) => {
                    tracing::info!(node = %self.node, "this replica holds the duties (services, deployments, workspaces, watches, callbacks)");
                    self.holds_duties.store(true, Ordering::Release);
                    let token = shutdown.child_token();
                    let lost = lock.lost();
                    let watch = token.clone();
                    let lose = async move {
                        lost.cancelled().await;
                        tracing::error!("the duties lock's connection ended: stopping the duties");
                        watch.cancel();
                    };
                    tokio::select! {
                        _ = duties(token.clone()) => {}
                        _ = lose => {}
                    }
                    token.cancel();
                    self.holds_duties.store(false, Ordering::Release);
                    drop(lock);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot ask for the duties lock"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Where a request for an owned route goes: `None` to answer it here.
    async fn owner_of(&self, path: &str) -> Result<Option<String>, Response> {
        // A job's log is a file on the replica that ran its last attempt.
        if let Some(id) = path
            .strip_prefix("/api/v1/jobs/")
            .and_then(|rest| rest.strip_suffix("/logs"))
            .and_then(|id| id.parse::<u64>().ok())
        {
            return Ok(self.log_owner(id).await);
        }
        let owned = OWNED_ROUTES
            .iter()
            .chain(OWNED_PAGES)
            .any(|r| under(path, r));
        if !owned || self.holds_duties() {
            return Ok(None);
        }
        let unavailable = |why: String| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({
                    "error": "no_owner",
                    "message": why,
                })),
            )
                .into_response()
        };
        match self.store.duties_holder().await {
            Ok(Some((node, Some(url)))) if node != self.node => Ok(Some(url)),
            Ok(Some((node, None))) => Err(unavailable(format!(
                "replica {node} does this work but recorded no advertise_url to forward to; set SLIPWAY_ADVERTISE_URL on every replica"
            ))),
            Ok(_) => Err(unavailable(
                "no replica holds the duties yet; retry in a few seconds".into(),
            )),
            Err(e) => Err(unavailable(format!("the store did not answer: {e}"))),
        }
    }
}

impl Replica {
    /// The URL of the replica whose disk holds job `id`'s log, when that is
    /// another replica (the node of its last lease, from its events).
    async fn log_owner(&self, id: u64) -> Option<String> {
        use crate::queue::JobQueue;
        let record = self.store.get(id).await.ok()??;
        let node = record
            .events
            .iter()
            .rev()
            .find_map(|e| e.reason.split(" leased by ").nth(1))?
            .split('/')
            .next()?
            .to_owned();
        if node == self.node {
            return None;
        }
        self.store.node_url(&node).await.ok()?
    }
}

/// Middleware: forward a request for an owned route to the replica
/// holding the duties, as it came (method, path, headers, body), and
/// stream its answer back.
pub async fn forward_owned(
    State(replica): State<Arc<Replica>>,
    mut request: Request,
    next: Next,
) -> Response {
    let target = match replica.owner_of(request.uri().path()).await {
        Ok(None) => return next.run(request).await,
        Ok(Some(url)) => url,
        Err(refusal) => return refusal,
    };
    if request.headers().contains_key(FORWARDED) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": "no_owner",
                "message": "forwarded twice: the replicas disagree on who holds the duties; retry",
            })),
        )
            .into_response();
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let uri: Uri = match format!("{}{path}", target.trim_end_matches('/')).parse() {
        Ok(u) => u,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("the owner's advertise_url {target} is not usable: {e}"),
            )
                .into_response();
        }
    };
    *request.uri_mut() = uri;
    request.headers_mut().remove(axum::http::header::HOST);
    if let Ok(v) = replica.node.parse() {
        request.headers_mut().insert(FORWARDED, v);
    }
    match replica.client.request(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(serde_json::json!({
                "error": "owner_unreachable",
                "message": format!(
                    "the replica holding the duties ({target}) did not answer: {}",
                    crate::error_chain::with_causes(&e)
                ),
            })),
        )
            .into_response(),
    }
}
