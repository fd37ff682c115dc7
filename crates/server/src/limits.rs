//! What a client may cost the server: how long it may take to send a request's headers and to
//! be answered, how large a body it may send, and how often it may knock on the
//! token-authenticated API and on emailed links.
//!
//! [`serve`] runs a router on a listener with a header-read timeout, so a client trickling its
//! headers cannot hold a connection; [`layer`] wraps the router with the whole-request timeout
//! (408), the body limit (413) and the rate limits (429 with `Retry-After`), each answered as
//! the API's JSON error. Rate limits are token buckets kept in this process: per client address
//! and per API token on `/api/...`, per client address and per link on `/tasks/{token}`.
//! Tokens and links are kept only as hashes. Behind a reverse proxy every client has the
//! proxy's address; the per-address limit then applies to all of them together.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::ApiError;

/// The limits; [`Limits::default`] is what `rekey serve` uses when nothing is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has to send a request's headers; slower, the connection is closed.
    pub header_read_timeout: Duration,
    /// Time a request may take from its headers to its answer, reading the body included;
    /// longer, it is answered 408. A change already under way still completes (see
    /// [`crate::detached`]), so a retry with the same `Idempotency-Key` gets its answer.
    pub request_timeout: Duration,
    /// Largest request body, in bytes; larger, 413.
    pub max_body_bytes: usize,
    /// Requests a minute to `/api/...` per client address and per API token (0: no limit).
    pub api_per_minute: u32,
    /// Requests a minute to an emailed link per client address and per link (0: no limit).
    pub link_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_body_bytes: 1 << 20,
            api_per_minute: 600,
            link_per_minute: 30,
        }
    }
}

/// `router` behind the whole-request timeout, the body limit and the rate limits of `limits`.
/// Handlers see the client's address only through [`serve`], which records it; a request
/// without one (a test driving the router) is limited per token or link only.
pub fn layer(router: Router, limits: &Limits) -> Router {
    let st = Arc::new(Guard {
        limits: limits.clone(),
        buckets: Mutex::new(HashMap::new()),
    });
    router
        .layer(axum::middleware::from_fn_with_state(st.clone(), rate_limit))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(st, body_and_time))
}

struct Guard {
    limits: Limits,
    buckets: Mutex<HashMap<[u8; 16], Bucket>>,
}

/// A token bucket: `tokens` left at `at`; it refills at the limit's rate up to the limit.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most buckets kept before full ones (clients quiet for a minute) are forgotten.
const MAX_BUCKETS: usize = 10_000;

impl Guard {
    /// Takes one request from each bucket of `keys` at `per_minute`; when one is empty, the
    /// seconds until it has a request again (and nothing is taken from any).
    fn take(&self, keys: &[[u8; 16]], per_minute: u32, now: Instant) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        let cap = f64::from(per_minute);
        let rate = cap / 60.0;
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_BUCKETS {
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < cap);
        }
        let mut wait = 0.0f64;
        for k in keys {
            let b = map.entry(*k).or_insert(Bucket {
                tokens: cap,
                at: now,
            });
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(cap);
            b.at = now;
            if b.tokens < 1.0 {
                wait = wait.max((1.0 - b.tokens) / rate);
            }
        }
        if wait > 0.0 {
            // Whole seconds, at least one: Retry-After has no fractions.
            return Err(((wait - 1e-6).ceil() as u64).max(1));
        }
        for k in keys {
            if let Some(b) = map.get_mut(k) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// The bucket key of `what` in `kind`: a hash, so no token or link is kept in memory.
fn key(kind: &str, what: &[u8]) -> [u8; 16] {
    let d = Sha256::new()
        .chain_update(kind.as_bytes())
        .chain_update([0])
        .chain_update(what)
        .finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// The client address [`serve`] recorded, if any.
fn client(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

async fn rate_limit(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let addr = client(&req).map(|ip| ip.to_string());
    let (kind, per_minute, subject) = if let Some(link) = path.strip_prefix("/tasks/") {
        (
            "link",
            g.limits.link_per_minute,
            Some(link.as_bytes().to_vec()),
        )
    } else if path.starts_with("/api/") {
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        ("api", g.limits.api_per_minute, bearer)
    } else {
        return next.run(req).await;
    };
    let mut keys = Vec::with_capacity(2);
    if let Some(a) = &addr {
        keys.push(key(&format!("{kind} address"), a.as_bytes()));
    }
    if let Some(s) = &subject {
        keys.push(key(kind, s));
    }
    match g.take(&keys, per_minute, Instant::now()) {
        Ok(()) => next.run(req).await,
        Err(secs) => {
            tracing::info!(kind, retry_after = secs, "rate limited");
            let what = if kind == "link" {
                "this link"
            } else {
                "the API"
            };
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many requests to {what}; try again in {secs} s"),
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            res
        }
    }
}

/// Refuses a declared body over the limit before reading it (413) and answers a request not
/// done within the request timeout with 408.
async fn body_and_time(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let max = g.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut res = too_large(max);
        // The body is not read: the connection cannot carry another request.
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let secs = g.limits.request_timeout.as_secs();
    match tokio::time::timeout(g.limits.request_timeout, next.run(req)).await {
        Ok(res) if res.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            // A body without a length found over the limit while read: the extractor's
            // plain answer, said the same way as above.
            too_large(max)
        }
        Ok(res) => res,
        Err(_) => {
            let mut res = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not done within {secs} s"),
            )
            .into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

fn too_large(max: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max} bytes"),
    )
    .into_response()
}

/// Serves `router` on `listener` (HTTP/1.1) until `shutdown` resolves, then lets the requests
/// in flight finish. Each connection has `limits`' header-read timeout; each request carries
/// the client's address (`ConnectInfo<SocketAddr>`) for the per-address rate limits.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    let header_timeout = limits.header_read_timeout;
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = signal_tx.closed() => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                let req = req.map(Body::new);
                let router = router.clone();
                async move { router.oneshot(req).await.map_err(|e: Infallible| e) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut conn = pin!(
                builder
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
            );
            let mut closing = false;
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    () = signal_tx.closed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_and_refills_at_its_rate() {
        let g = Guard {
            limits: Limits::default(),
            buckets: Mutex::new(HashMap::new()),
        };
        let t = Instant::now();
        let k = [key("link", b"a")];
        for _ in 0..3 {
            assert_eq!(g.take(&k, 3, t), Ok(()));
        }
        // Three a minute: one every 20 s.
        assert_eq!(g.take(&k, 3, t), Err(20));
        assert_eq!(g.take(&k, 3, t + Duration::from_secs(15)), Err(5));
        assert_eq!(g.take(&k, 3, t + Duration::from_secs(20)), Ok(()));
        // Another key has its own bucket; 0 is no limit.
        assert_eq!(g.take(&[key("link", b"b")], 3, t), Ok(()));
        assert_eq!(g.take(&k, 0, t), Ok(()));
    }
}
