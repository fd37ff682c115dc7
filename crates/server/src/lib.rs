//! rekey's HTTP side: the JSON API (bearer tokens), its OpenAPI document, the web inbox
//! (sign-in by emailed action link, due tasks, a renewal's swimlane, CSRF-protected forms),
//! `/healthz` and `/metrics`.
//!
//! By job: [`api`] holds the JSON handlers by resource and the route table; [`openapi`] the
//! document utoipa derives from them; [`web`] the page handlers, with sessions and CSRF in
//! [`web::session`]; [`pages`] the maud templates; [`metrics`] the Prometheus text;
//! [`limits`] the timeouts, body limit and rate limits `rekey serve` puts around [`app`].
//!
//! [`app`] builds the router from a [`AppState`]; binding a socket is the caller's business, so
//! tests drive the router with `tower::ServiceExt::oneshot`.
//!
//! Invariants, stated as absences: no handler decides who may act on a renewal — every change
//! goes through [`rekey_service::Service`], whose engine checks the role; no error response
//! carries a database, crypto or internal message (those become `500 internal error`); no page
//! interpolates text without HTML escaping (maud escapes every value); no page carries inline
//! script or style (the CSP is `default-src 'self'`); no log line carries a request's path,
//! headers or body (a link's token is part of its path, bearer tokens and session cookies are
//! headers): a request's span names its route's template.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use rekey_service::Service;
use tracing::Instrument as _;

pub use error::ApiError;

/// Everything a handler needs: the service and where people reach rekey. Web sessions and the
/// secret link pages' CSRF tokens derive from live in the database, shared by every instance.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    service: Service,
    base_url: String,
    secure_cookies: bool,
    secret: tokio::sync::OnceCell<Vec<u8>>,
    metrics_token: Option<String>,
    metrics_names: bool,
}

impl AppState {
    /// State for a server reached under `base_url` (cookies are `Secure` when it is https).
    /// Infallible today; the `Result` is kept for callers.
    pub fn new(service: Service, base_url: &str) -> Result<AppState, String> {
        let base_url = base_url.trim_end_matches('/').to_string();
        Ok(AppState {
            inner: Arc::new(Inner {
                service,
                secure_cookies: base_url.starts_with("https://"),
                base_url,
                secret: tokio::sync::OnceCell::new(),
                metrics_token: None,
                metrics_names: false,
            }),
        })
    }

    /// This state with `/metrics` answering only `Authorization: Bearer <token>` when a token
    /// is given, and labelling certificates with tenant names and aliases when `names`
    /// (otherwise it counts them without naming anyone's).
    pub fn with_metrics(mut self, token: Option<String>, names: bool) -> AppState {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics_token = token.filter(|t| !t.is_empty());
            inner.metrics_names = names;
        }
        self
    }

    pub(crate) fn metrics_token(&self) -> Option<&str> {
        self.inner.metrics_token.as_deref()
    }

    pub(crate) fn metrics_names(&self) -> bool {
        self.inner.metrics_names
    }

    /// The service.
    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    pub(crate) fn secure_cookies(&self) -> bool {
        self.inner.secure_cookies
    }

    /// The secret every instance on this database shares (made by the first to ask, then
    /// read from the database once per process).
    pub(crate) async fn secret(&self) -> Result<&[u8], ApiError> {
        self.inner
            .secret
            .get_or_try_init(|| web::session::shared_secret(self))
            .await
            .map(Vec::as_slice)
    }
}

/// Runs a write (a service call that changes a renewal) as its own task and waits for it: once
/// started it finishes, committing or rolling back, even if the client goes away and the
/// handler's future is dropped. The CPU-heavy crypto inside it (RSA key generation, signing)
/// runs on the blocking pool where the service calls it, so the write does not stall the
/// workers serving other requests.
pub(crate) async fn detached<T: Send + 'static>(
    write: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    // In the request's span, so what the write logs is the request's.
    tokio::spawn(write.in_current_span())
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// The wall clock, at the store's precision.
pub(crate) fn now() -> DateTime<Utc> {
    rekey_store::db::now()
}

/// The whole router: API routes from [`api::routes`], the web inbox, security headers, a
/// span per request.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for r in api::routes() {
        router = router.route(&r.path, r.handler);
    }
    router
        .merge(web::routes())
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_host,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state)
}

/// Runs the request inside a `request` span with its method, its route's template (`path`:
/// `/tasks/{token}`, never the token), and once answered its status and latency; the span's
/// end is logged with them.
async fn trace_request(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str)
        .to_string();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let res = next.run(req).instrument(span.clone()).await;
    span.record("status", res.status().as_u16());
    span.record(
        "latency_ms",
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    res
}

/// Answers every plain-text error (an extractor's or a layer's own: a form that does not
/// parse, a body over the limit) as JSON like the handlers' errors, naming the field serde
/// names; the status is kept.
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let plain = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain"));
    if !(plain && (res.status().is_client_error() || res.status().is_server_error())) {
        return res;
    }
    let status = res.status();
    let text = match axum::body::to_bytes(res.into_body(), 64 << 10).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut e = ApiError::new(status, text.clone());
    if let Some(field) = text.split('`').nth(1) {
        e = e.with_field(field);
    }
    axum::response::IntoResponse::into_response(e)
}

/// Refuses (421) a request whose `Host` is not the base URL's: links, cookies and the origin
/// check are made for that name, and a request for another one (DNS rebinding, a
/// misconfigured proxy) is not rekey's to answer. A request without `Host` (HTTP/1.0, tests
/// driving the router) and a base URL on an unspecified address (`0.0.0.0`, `[::]`) are not
/// checked.
async fn check_host(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let authority = st
        .base_url()
        .split_once("://")
        .map_or(st.base_url(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let unspecified = authority.starts_with("0.0.0.0") || authority.starts_with("[::]");
    let host = req.headers().get(header::HOST).map(|h| h.to_str());
    match host {
        Some(Ok(h)) if unspecified || h.eq_ignore_ascii_case(&authority) => next.run(req).await,
        None => next.run(req).await,
        _ => axum::response::IntoResponse::into_response(ApiError::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            format!("this server answers for {authority} only (its base_url)"),
        )),
    }
}

/// Headers every response carries: no framing, no referrer, no inline script or style; and
/// under an https base URL, HSTS.
async fn security_headers(
    axum::extract::State(st): axum::extract::State<AppState>,
    mut res: Response,
) -> Response {
    let h = res.headers_mut();
    if st.secure_cookies() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The axum this crate is built on, for callers that bind and serve [`app`].
pub use axum;
