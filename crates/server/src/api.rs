//! The JSON API: the route table the router and the OpenAPI document are both built from, the
//! bearer-token extractor, and what every handler shares (body parsing, ids, visibility, acting
//! through the service). The handlers live by resource in [`tasks`], [`renewals`] and [`ops`].
//!
//! Every `/api/` route authenticates with `Authorization: Bearer <token>` (an API token from
//! `rekey user token --email EMAIL`); the person acting is the token's user, and the engine decides
//! whether they may. Renewals a user holds no role in are answered as unknown (404).

use axum::Json;
use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use rekey_engine::{Event, ProcedureId, Renewal};
use rekey_service::Outcome;
use rekey_store::User;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{ApiError, AppState, metrics, now, offload, openapi};

pub(crate) mod ops;
pub(crate) mod renewals;
pub(crate) mod tasks;

/// One route: what the OpenAPI document says about it and how the router serves it.
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path with `{param}` placeholders (axum and OpenAPI share the syntax).
    pub path: &'static str,
    /// One line for the document.
    pub summary: &'static str,
    /// Whether a bearer token is required.
    pub auth: bool,
    /// JSON schema of the request body, when there is one.
    pub body: Option<fn() -> Value>,
    /// Media type of a successful response.
    pub produces: &'static str,
    /// The handler.
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Every route of the API, health, metrics and the document itself.
pub fn routes() -> Vec<Route> {
    const JSON: &str = "application/json";
    vec![
        Route {
            method: "GET",
            path: "/healthz",
            summary: "Liveness: the database answers",
            auth: false,
            body: None,
            produces: "text/plain",
            handler: || get(ops::healthz),
        },
        Route {
            method: "GET",
            path: "/metrics",
            summary: "Prometheus text: renewals by state and procedure, tasks due and overdue, outbox depth by status, days to expiry per alias",
            auth: false,
            body: None,
            produces: "text/plain",
            handler: || get(metrics::metrics),
        },
        Route {
            method: "GET",
            path: "/openapi.json",
            summary: "This document",
            auth: false,
            body: None,
            produces: JSON,
            handler: || get(openapi::document),
        },
        Route {
            method: "GET",
            path: "/api/tasks",
            summary: "Due steps the token's user may act on",
            auth: true,
            body: None,
            produces: JSON,
            handler: || get(tasks::list),
        },
        Route {
            method: "POST",
            path: "/api/tasks/{renewal}/{step}/approve",
            summary: "Approve an action step (the owner's go-ahead)",
            auth: true,
            body: None,
            produces: JSON,
            handler: || post(tasks::approve),
        },
        Route {
            method: "POST",
            path: "/api/tasks/{renewal}/{step}/complete",
            summary: "Confirm a task with the SHA-256 fingerprint of the certificate now installed",
            auth: true,
            body: Some(
                || json!({"type": "object", "properties": {"fingerprint": {"type": "string", "description": "SHA-256 of the certificate installed: 64 hex digits, any case, plain or with one ':' or space between bytes, optionally after 'sha256 Fingerprint='"}}}),
            ),
            produces: JSON,
            handler: || post(tasks::complete),
        },
        Route {
            method: "GET",
            path: "/api/renewals",
            summary: "Renewals of the tenants and receivers the user holds a role in, newest first",
            auth: true,
            body: None,
            produces: JSON,
            handler: || get(renewals::list_renewals),
        },
        Route {
            method: "POST",
            path: "/api/renewals",
            summary: "Start a renewal (tenant administrator); 409 naming the running renewal when the alias already has one",
            auth: true,
            body: Some(|| {
                json!({"type": "object", "required": ["tenant", "receiver", "alias"], "properties": {
                    "tenant": {"type": "string", "description": "tenant name"},
                    "receiver": {"type": "string", "description": "receiver name"},
                    "alias": {"type": "string"},
                    "new_alias": {"type": "string"},
                    "procedure": {"type": "string", "enum": ProcedureId::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>()},
                    "bits": {"type": "integer", "enum": [2048, 3072, 4096], "default": 3072},
                    "ca_signed": {"type": "boolean", "default": false},
                    "auto_approve": {"type": "boolean", "default": false}
                }})
            }),
            produces: JSON,
            handler: || post(renewals::start),
        },
        Route {
            method: "GET",
            path: "/api/renewals/{id}",
            summary: "One renewal: steps, who did them, what is due",
            auth: true,
            body: None,
            produces: JSON,
            handler: || get(renewals::show_renewal),
        },
        Route {
            method: "GET",
            path: "/api/renewals/{id}/certificate-request",
            summary: "The certificate signing request (PEM) of a CA-signed renewal's new key, while it waits for the chain; 409 naming why when none is waiting (no request yet, chain already uploaded, not a CA-signed renewal)",
            auth: true,
            body: None,
            produces: "application/pkcs10",
            handler: || get(renewals::certificate_request),
        },
        Route {
            method: "POST",
            path: "/api/renewals/{id}/certificate",
            summary: "Upload the CA-signed chain (PEM, leaf first) for a CA-signed renewal's new key",
            auth: true,
            body: Some(|| {
                json!({"type": "object", "required": ["chain_pem"], "properties": {
                    "chain_pem": {"type": "string", "description": "PEM certificates, the new key's first, then its issuers"}
                }})
            }),
            produces: JSON,
            handler: || post(renewals::upload_certificate),
        },
        Route {
            method: "POST",
            path: "/api/renewals/{id}/window/propose",
            summary: "Propose (or counter-propose) the downtime window",
            auth: true,
            body: Some(|| {
                json!({"type": "object", "required": ["start", "end"], "properties": {
                    "start": {"type": "string", "format": "date-time"},
                    "end": {"type": "string", "format": "date-time"}
                }})
            }),
            produces: JSON,
            handler: || post(renewals::propose_window),
        },
        Route {
            method: "POST",
            path: "/api/renewals/{id}/window/accept",
            summary: "Accept the window the other party proposed",
            auth: true,
            body: None,
            produces: JSON,
            handler: || post(renewals::accept_window),
        },
        Route {
            method: "POST",
            path: "/api/renewals/{id}/cancel",
            summary: "Cancel before the point of no return; rekey's changes are undone",
            auth: true,
            body: None,
            produces: JSON,
            handler: || post(renewals::cancel),
        },
        Route {
            method: "POST",
            path: "/api/renewals/{id}/rollback",
            summary: "After the exchange: restore the previous keystore entries",
            auth: true,
            body: None,
            produces: JSON,
            handler: || post(renewals::rollback),
        },
    ]
}

/// The answer for a path no route serves.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

/// The answer for a known path asked with a method it does not serve.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here; see /openapi.json",
    )
}

/// The user a bearer token authenticates.
pub struct ApiUser(pub User);

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("give Authorization: Bearer <API token>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("give Authorization: Bearer <API token>"))?;
        Ok(ApiUser(st.service().store().user_for_token(token).await?))
    }
}

/// Whether `user` may see `r`: the engine's rule ([`rekey_engine::access::may_see`]), any
/// role in its tenant or receiver.
pub fn may_see(user: &User, r: &Renewal) -> bool {
    let actor = rekey_engine::Actor::new(user.email.to_string(), user.grants.clone());
    rekey_engine::access::may_see(&actor, r)
}

pub(crate) fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s).map_err(|_| ApiError::bad_request(format!("{s:?} is not a renewal id")))
}

pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

/// A renewal as JSON, with its procedure's title.
pub(crate) fn outcome_json(o: &Outcome) -> Value {
    json!({
        "renewal": o.renewal,
        "completed": o.completed,
        "mail": o.mail,
    })
}

pub(crate) async fn act(
    st: &AppState,
    user: &User,
    id: &str,
    event: Event,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    let (svc, email) = (st.service().clone(), user.email.to_string());
    let o = offload(async move { svc.act(id, &email, event, now()).await }).await??;
    Ok(Json(outcome_json(&o)).into_response())
}

/// A renewal `user` may see, or 404 (unknown and not-yours look the same).
pub(crate) async fn visible(st: &AppState, user: &User, id: Uuid) -> Result<Renewal, ApiError> {
    let r = st.service().renewal(id).await?;
    if !may_see(user, &r) {
        return Err(ApiError::not_found(format!("no renewal {id}")));
    }
    Ok(r)
}
