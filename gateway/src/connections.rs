//! Client connections, plain or TLS: how many are served at once, how long one may take
//! to send a request or sit idle between requests, and the drain at shutdown.
//!
//! An unauthenticated client can hold a connection without sending a whole request; the
//! limits here bound what that costs, before any request reaches the router and its
//! signature check.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// In-flight requests get this long to finish after the shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);
/// An HTTP/2 connection is pinged this often while it has requests in flight, so a peer
/// that vanished mid-request does not hold its connection for the request's lifetime.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// What one connection may cost the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The TLS handshake and a request's headers must each arrive within this, counted
    /// from when the server starts waiting for them; a connection with no request in
    /// flight is also closed after this long (the keep-alive idle timeout).
    pub header_read_timeout: Duration,
    /// Connections served at once. Further clients wait in the kernel's listen backlog
    /// until one closes, holding no file handle of this process.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }
}

impl ConnectionLimits {
    /// The most connections a [`ConnectionLimits`] may allow (the semaphore's bound).
    pub const MAX_CONNECTIONS: usize = 1 << 24;
}

/// Accepts connections on `listener` and serves `router` on each after `handshake`
/// (identity for plain HTTP, TLS otherwise), until `shutdown` resolves; then lets
/// in-flight requests finish for up to [`DRAIN`].
///
/// At most `max_connections` are served at once: the accept loop waits for a free slot
/// rather than accepting and closing. Shedding would turn a flood of stalled clients
/// into errors for everyone else; waiting leaves the excess in the kernel's backlog,
/// and since every stalled connection is closed within `header_read_timeout`, a real
/// client waits at most about that long for a slot.
pub(crate) async fn serve<H, Fut, S>(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    handshake: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    H: Fn(TcpStream, SocketAddr) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = limits
        .max_connections
        .clamp(1, ConnectionLimits::MAX_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(max));
    let (closing, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let handshake = handshake.clone();
        let router = router.clone();
        let closing = closing_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(
                limits.header_read_timeout,
                handshake(tcp, peer),
            )
            .await
            {
                Ok(Some(stream)) => stream,
                Ok(None) | Err(_) => return,
            };
            connection(stream, peer, router, limits, closing).await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    // Every connection holds a slot until it ends: all slots back means all drained.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}

/// Serves one connection until the client closes it, it stays without a request for
/// `header_read_timeout`, or the server drains.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut closing: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let idle = activity.idle_for(limits.header_read_timeout, Instant::now());
    let requests = activity.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = requests.begin();
            let mut request = request.map(axum::body::Body::new);
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let response = router.clone().oneshot(request);
            async move {
                let response = response.await?;
                // The request counts as in flight until its response body is fully sent.
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    axum::body::Body::new(body.map_frame(move |frame| {
                        let _keep = &in_flight;
                        frame
                    }))
                }))
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper starts the header-read timer whenever an HTTP/1 connection waits for a
    // request, so it bounds a half-sent header and a keep-alive idle connection alike.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(limits.header_read_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn, idle);
    // hyper has no idle limit before it knows the protocol or on HTTP/2; `idle` covers
    // those. A connection asked to close finishes what is in flight; one that is still
    // open a further idle period later (an HTTP/2 peer that never answers the GOAWAY's
    // ping) is dropped.
    let mut closing_since = None;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut idle => {
                if closing_since.is_some() {
                    tracing::debug!(%peer, "dropping a connection that did not close");
                    return;
                }
                tracing::debug!(%peer, "closing a connection without requests");
                conn.as_mut().graceful_shutdown();
                let now = Instant::now();
                closing_since = Some(now);
                idle.set(activity.idle_for(limits.header_read_timeout, now));
            }
            _ = closing.wait_for(|c| *c), if closing_since.is_none() => {
                conn.as_mut().graceful_shutdown();
                let now = Instant::now();
                closing_since = Some(now);
                idle.set(activity.idle_for(limits.header_read_timeout, now));
            }
        }
    }
}

/// Requests in flight on one connection, and since when it has had none. Kept in
/// atomics and read by the watchdog when its timer fires, so a request costs two atomic
/// updates and wakes no task.
#[derive(Clone)]
struct Activity(Arc<Busy>);

struct Busy {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Microseconds from `opened` to when the last request ended.
    idle_since_us: AtomicU64,
}

/// One request in flight; dropping it ends the request.
struct InFlight(Activity);

impl Activity {
    fn new() -> Self {
        Activity(Arc::new(Busy {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_us: AtomicU64::new(0),
        }))
    }

    fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `limit`, counting
    /// from `not_before` at the earliest.
    fn idle_for(
        &self,
        limit: Duration,
        not_before: Instant,
    ) -> impl Future<Output = ()> + Send + 'static {
        let busy = self.0.clone();
        async move {
            loop {
                if busy.in_flight.load(Ordering::Acquire) > 0 {
                    // Checked again a period later; a request ending meanwhile restarts
                    // the count from its end.
                    tokio::time::sleep(limit).await;
                    continue;
                }
                let idle_since =
                    busy.opened + Duration::from_micros(busy.idle_since_us.load(Ordering::Acquire));
                let deadline = idle_since.max(not_before) + limit;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let busy = &(self.0).0;
        let ended = u64::try_from(busy.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Stored before the count drops, so the watchdog never sees zero in flight with
        // an older end.
        busy.idle_since_us.fetch_max(ended, Ordering::AcqRel);
        busy.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time, in short steps: paused time would need tokio's test-util for the
    // whole workspace.
    const LIMIT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Activity::new();
        let idle = activity.idle_for(LIMIT, Instant::now());
        tokio::pin!(idle);
        tokio::time::sleep(LIMIT / 2).await;
        let request = activity.begin();
        // A request in flight for longer than the limit keeps the connection.
        tokio::select! {
            _ = &mut idle => panic!("idle with a request in flight"),
            _ = tokio::time::sleep(LIMIT * 2) => {}
        }
        let ended = Instant::now();
        drop(request);
        (&mut idle).await;
        let waited = ended.elapsed();
        assert!(waited >= LIMIT && waited < LIMIT * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn a_connection_without_requests_is_idle_after_the_limit() {
        let activity = Activity::new();
        let started = Instant::now();
        activity.idle_for(LIMIT, Instant::now()).await;
        let waited = started.elapsed();
        assert!(waited >= LIMIT && waited < LIMIT * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn a_connection_asked_to_close_gets_a_further_period() {
        let activity = Activity::new();
        let started = Instant::now();
        // Long idle already: the grace still counts from when it was asked to close.
        activity.idle_for(LIMIT, started + LIMIT).await;
        let waited = started.elapsed();
        assert!(waited >= LIMIT * 2 && waited < LIMIT * 6, "{waited:?}");
    }
}
