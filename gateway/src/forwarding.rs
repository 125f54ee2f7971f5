//! Sending a synchronous Invoke to the node routing chose ([`scheduler::routing`]), and
//! what this node learns doing it: which peers answer, how many requests it has sent each
//! that are still running, and what a hop costs.
//!
//! The request is sent on as the client signed it (method, path, headers and body
//! untouched, `Host` included), so the node that serves it checks the client's signature
//! itself and answers exactly as it would have answered the client; this node relays the
//! answer. The hop is marked with [`FORWARDED_BY`], and a marked request is always served
//! where it lands. When the hop fails (the peer died and is not yet dead to the
//! membership, or it cannot be reached), the request is served here, as a client's retry
//! would be, and the peer takes no forwarded requests for [`UNREACHABLE_FOR`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Uri};
use axum::response::Response;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use scheduler::{Ask, CostBook, LocalReason, PeerState, PoolKey, Route, Routes, RoutingPolicy};
use sha2::Sha256;
use store::VersionRecord;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::{AppState, Resolved};

/// Marks a forwarded request with the id of the node that forwarded it.
pub const FORWARDED_BY: &str = "x-lamina-forwarded-by";
/// On the answer to a forwarded request: the microseconds the serving node spent on it,
/// so that the forwarding node can tell the hop's own cost. Never reaches the client.
pub const SERVED_IN: &str = "x-lamina-served-in-us";
/// On a forwarded function-URL request: the client's address as the forwarding node saw
/// it, which the URL's event reports as `sourceIp`.
pub const SOURCE_IP: &str = "x-lamina-source-ip";
/// Proves that [`SOURCE_IP`] comes from a node of the cluster: `<unix seconds>.<hex
/// HMAC-SHA256>` over the forwarding node, the address and the time, under a key derived
/// from the server key every node shares. Without a valid proof the header is ignored.
pub const HOP_PROOF: &str = "x-lamina-hop-proof";
/// How old a proof may be.
const PROOF_WINDOW_SECS: u64 = 60;

/// How long a peer that failed a hop takes no forwarded requests.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(2);
/// A hop waits for the function's timeout and this much more before it gives up.
const HOP_GRACE: Duration = Duration::from_secs(10);

/// The decisions about a hop, beside the [`LocalReason`]s for serving here.
const HOPS: [&str; 2] = ["forwarded", "forward_failed"];

/// The values of `lamina_routing_decisions_total`'s `decision` label.
fn decisions() -> impl Iterator<Item = &'static str> {
    LocalReason::ALL.iter().map(|r| r.as_str()).chain(HOPS)
}

/// Headers that belong to one connection, never sent on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Debug, Default)]
struct PeerBook {
    outstanding: u64,
    unreachable_until: Option<Instant>,
}

/// Where this node sends requests: the routes as of the last membership read, and the
/// client that carries them.
pub struct Forwarder {
    node_id: String,
    /// Signs and checks [`HOP_PROOF`]s.
    hop_key: [u8; 32],
    client: Client<HttpConnector, Full<Bytes>>,
    routes: RwLock<Arc<Routes>>,
    peers: Mutex<HashMap<String, PeerBook>>,
    costs: Mutex<CostBook>,
    /// The counter of each of [`decisions`], in its order, looked up once.
    counters: Vec<IntCounter>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What routing decided for one request.
#[derive(Debug)]
pub enum Routed {
    /// Serve it here; `forwarded` when another node sent it.
    Here { forwarded: bool },
    /// The serving node's answer, to relay as it is.
    There(Response),
}

impl Forwarder {
    /// A forwarder for node `node_id` that counts its decisions in `registry` (or, when a
    /// gateway registered them there already, in a registry of its own).
    pub fn new(
        node_id: String,
        policy: RoutingPolicy,
        hop_key: [u8; 32],
        registry: &Registry,
    ) -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(
                "lamina_routing_decisions_total",
                "Synchronous invocations by where routing sent them: served here (and why) or forwarded to a home node.",
            ),
            &["decision"],
        )
        .expect("a valid metric");
        if let Err(e) = registry.register(Box::new(decisions.clone())) {
            tracing::warn!(error = %e, "routing metrics already registered; not exported twice");
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        Forwarder {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            routes: RwLock::new(Arc::new(Routes::new(node_id.clone(), Vec::new(), policy))),
            node_id,
            hop_key,
            peers: Mutex::new(HashMap::new()),
            costs: Mutex::new(CostBook::default()),
            counters: self::decisions()
                .map(|d| decisions.with_label_values(&[d]))
                .collect(),
        }
    }

    /// Routes over `peers` (the live members, this node included) from now on.
    pub fn set_members(&self, peers: Vec<scheduler::Peer>) {
        let policy = self.routes().policy();
        let routes = Arc::new(Routes::new(self.node_id.clone(), peers, policy));
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = routes;
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Decides where `ask` goes and, when it is a hop, counts it outstanding at its peer
    /// under the same lock, so requests deciding at once never all see the same free room
    /// at a home and overfill it.
    fn decide(&self, routes: &Routes, ask: &Ask<'_>) -> (Route, Option<Outstanding<'_>>) {
        let now = Instant::now();
        let mut peers = lock(&self.peers);
        let route = routes.route(ask, |node_id| {
            peers
                .get(node_id)
                .map_or_else(PeerState::default, |p| PeerState {
                    outstanding: p.outstanding,
                    unreachable: p.unreachable_until.is_some_and(|until| now < until),
                })
        });
        let outstanding = match &route {
            Route::Forward { node_id, .. } => {
                peers.entry(node_id.clone()).or_default().outstanding += 1;
                Some(Outstanding {
                    forwarder: self,
                    node_id: node_id.clone(),
                })
            }
            Route::Local(_) => None,
        };
        (route, outstanding)
    }

    /// Decides where a synchronous invocation of `version` runs and, when elsewhere,
    /// sends it there. On a node that is its own cluster this costs one read of the
    /// routes and nothing else. A hop that fails before the request left this node is
    /// routed again without that home (to the other home, or here); one that fails
    /// after is a ServiceException (500, which SDKs retry), since the function may have
    /// run: this node never runs it a second time on its own.
    pub async fn route(
        &self,
        state: &AppState,
        r: &Resolved,
        version: &VersionRecord,
        request: ForwardedRequest<'_>,
    ) -> Result<Routed, ApiError> {
        let forwarded = request.headers.contains_key(FORWARDED_BY);
        let routes = self.routes();
        if !forwarded && !routes.spans_cluster() {
            self.count(LocalReason::Alone.as_str());
            return Ok(Routed::Here { forwarded: false });
        }
        let function = function_of(r);
        let warm_here = !forwarded && state.scheduler.has_idle(&PoolKey::of(&r.entry, version));
        // A home that cannot be reached is marked so, and the request routed again: to
        // the other home, or here once none is left.
        for _ in 0..=routes.policy().home_nodes {
            let (forward_cost, cold_cost) = {
                let costs = lock(&self.costs);
                (costs.hop_cost(), costs.cold_cost(&function))
            };
            let ask = Ask {
                function: &function,
                forwarded,
                warm_here,
                forward_cost,
                cold_cost,
            };
            let (node_id, url, outstanding) = match self.decide(&routes, &ask) {
                (Route::Local(reason), _) => {
                    self.count(reason.as_str());
                    return Ok(Routed::Here {
                        forwarded: reason == LocalReason::Forwarded,
                    });
                }
                (Route::Forward { node_id, url }, outstanding) => (node_id, url, outstanding),
            };
            let timeout = state.catalog.spec(&r.entry, version).timeout;
            let forwarded = self.forward(&node_id, &url, timeout, request).await;
            drop(outstanding);
            match forwarded {
                Ok(response) => {
                    self.count("forwarded");
                    return Ok(Routed::There(response));
                }
                Err(e) if e.nothing_sent() => {
                    tracing::warn!(peer = %node_id, error = %e, "cannot reach a home node; routing again");
                    self.count("forward_failed");
                }
                Err(e) => {
                    self.count("forward_failed");
                    return Err(ApiError::service(format!(
                        "the node serving the request failed before it answered ({e}); the invocation may have run"
                    )));
                }
            }
        }
        Ok(Routed::Here { forwarded: false })
    }

    /// A cold start of the function `r` names took `took` here.
    pub fn cold_start(&self, r: &Resolved, took: Duration) {
        lock(&self.costs).cold_start(&function_of(r), took);
    }

    fn count(&self, decision: &'static str) {
        if let Some(i) = self::decisions().position(|d| d == decision) {
            self.counters[i].inc();
        }
    }

    async fn forward(
        &self,
        node_id: &str,
        base_url: &str,
        timeout: Duration,
        request: ForwardedRequest<'_>,
    ) -> Result<Response, ForwardError> {
        let mut outgoing = request.to(base_url, &self.node_id)?;
        if let Some(ip) = request.source_ip {
            let proof = self.proof(&self.node_id, ip, unix_secs());
            let headers = outgoing.headers_mut();
            for (name, value) in [(SOURCE_IP, ip), (HOP_PROOF, proof.as_str())] {
                let value = HeaderValue::from_str(value)
                    .map_err(|e| ForwardError::Address(e.to_string()))?;
                headers.insert(name, value);
            }
        }
        let started = Instant::now();
        let sent = tokio::time::timeout(timeout + HOP_GRACE, self.client.request(outgoing)).await;
        let answer = match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.is_connect() => {
                return Err(self.unreachable(node_id, ForwardError::Connect(e.to_string())));
            }
            Ok(Err(e)) => return Err(self.unreachable(node_id, ForwardError::Hop(e.to_string()))),
            Err(_) => return Err(self.unreachable(node_id, ForwardError::TimedOut)),
        };
        let round_trip = started.elapsed();
        let (mut parts, body) = answer.into_parts();
        if let Some(served) = parts
            .headers
            .remove(SERVED_IN)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            let hop = round_trip.saturating_sub(Duration::from_micros(served));
            lock(&self.costs).hop(hop);
        }
        for name in HOP_BY_HOP {
            parts.headers.remove(*name);
        }
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    fn proof(&self, forwarded_by: &str, ip: &str, at: u64) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.hop_key)
            .expect("HMAC takes a key of any length");
        mac.update(format!("{forwarded_by}\n{ip}\n{at}").as_bytes());
        format!("{at}.{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The client's address a cluster node vouched for when it forwarded this request;
    /// `None` for a request that was not forwarded or whose proof does not hold.
    pub fn vouched_source_ip(&self, headers: &HeaderMap) -> Option<String> {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let (by, ip, proof) = (get(FORWARDED_BY)?, get(SOURCE_IP)?, get(HOP_PROOF)?);
        let (at, _) = proof.split_once('.')?;
        let at: u64 = at.parse().ok()?;
        if unix_secs().abs_diff(at) > PROOF_WINDOW_SECS {
            return None;
        }
        let expected = self.proof(by, ip, at);
        bool::from(expected.as_bytes().ct_eq(proof.as_bytes())).then(|| ip.to_owned())
    }

    fn unreachable(&self, node_id: &str, e: ForwardError) -> ForwardError {
        lock(&self.peers)
            .entry(node_id.to_owned())
            .or_default()
            .unreachable_until = Some(Instant::now() + UNREACHABLE_FOR);
        e
    }
}

/// The key a function's homes are ranked by: all its versions share them.
fn function_of(r: &Resolved) -> String {
    format!("{}/{}", r.entry.account_id, r.entry.name)
}

/// Counts a request as outstanding at a peer, from the decision to send it there until
/// its answer's head arrives or the hop is abandoned.
struct Outstanding<'a> {
    forwarder: &'a Forwarder,
    node_id: String,
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if let Some(p) = lock(&self.forwarder.peers).get_mut(&self.node_id) {
            p.outstanding = p.outstanding.saturating_sub(1);
        }
    }
}

/// The client's request as received, to be sent on unchanged.
#[derive(Clone, Copy)]
pub struct ForwardedRequest<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    /// For a function URL: the client's address, vouched for to the serving node.
    pub source_ip: Option<&'a str>,
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ForwardedRequest<'_> {
    fn to(&self, base_url: &str, me: &str) -> Result<Request<Full<Bytes>>, ForwardError> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("{}{path}", base_url.trim_end_matches('/'))
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| ForwardError::Address(e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(ForwardError::Address(format!(
                "{base_url} is not a plain HTTP address"
            )));
        }
        let mut outgoing = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .body(Full::new(self.body.clone()))
            .map_err(|e| ForwardError::Address(e.to_string()))?;
        let headers = outgoing.headers_mut();
        for (name, value) in self.headers {
            // What only a node may say about a hop is never taken from the client.
            let ours = [FORWARDED_BY, SOURCE_IP, HOP_PROOF].contains(&name.as_str());
            if !ours && !HOP_BY_HOP.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        // An HTTP/2 client names the host in the request's authority, not in a header; the
        // signature covers it, so it must reach the serving node as the client gave it.
        if !headers.contains_key(axum::http::header::HOST)
            && let Some(authority) = self.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            headers.insert(axum::http::header::HOST, host);
        }
        let me = HeaderValue::from_str(me).map_err(|e| ForwardError::Address(e.to_string()))?;
        headers.insert(FORWARDED_BY, me);
        Ok(outgoing)
    }
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("the peer's address cannot carry the request: {0}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("{0}")]
    Hop(String),
    #[error("no answer within the function's timeout")]
    TimedOut,
}

impl ForwardError {
    /// The request never left this node, so serving it here cannot run it twice.
    fn nothing_sent(&self) -> bool {
        matches!(self, ForwardError::Address(_) | ForwardError::Connect(_))
    }
}

/// Marks the answer to a forwarded request with the time this node spent on it.
pub fn mark_served_in(response: &mut Response, took: Duration) {
    if let Ok(v) = HeaderValue::from_str(&took.as_micros().to_string()) {
        response.headers_mut().insert(SERVED_IN, v);
    }
}
