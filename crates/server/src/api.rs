//! The JSON API: the route table (built from the handlers' `#[utoipa::path]` annotations, from
//! which the OpenAPI document is derived too), the bearer-token extractor, and what every
//! handler shares (body parsing, ids, visibility, acting through the service). The handlers
//! live by resource in [`tasks`], [`renewals`], [`users`], [`sign`] and [`ops`]; [`schema`]
//! describes the response bodies.
//!
//! Every `/api/` route authenticates with `Authorization: Bearer <token>` (an API token from
//! `rekey user token --email EMAIL`); the person acting is the token's user, and the engine decides
//! whether they may. An unknown, revoked or expired token is answered 401 saying which. Renewals a user holds no role in are answered as unknown (404).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use rekey_engine::{Event, Renewal};
use rekey_service::Outcome;
use rekey_store::User;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa::openapi::path::HttpMethod;
use uuid::Uuid;

use crate::{ApiError, AppState, detached, now};

pub(crate) mod idempotency;
pub(crate) mod ops;
pub(crate) mod renewals;
pub mod schema;
pub(crate) mod sign;
pub(crate) mod tasks;
pub(crate) mod users;

/// One route as the router serves it. Method and path come from the handler's
/// `#[utoipa::path]` annotation, so a handler cannot be routed without being annotated; the
/// server's tests check that the document lists exactly these routes.
pub struct Route {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path with `{param}` placeholders (axum and OpenAPI share the syntax).
    pub path: String,
    /// The handler, for this method only.
    pub handler: MethodRouter<AppState>,
}

/// The routes of `handler`, annotated by `P` (the `__path_*` type `#[utoipa::path]` makes).
fn route<P: utoipa::Path, H: Handler<T, AppState>, T: 'static>(handler: H) -> Vec<Route> {
    P::methods()
        .into_iter()
        .map(|m| {
            let (method, filter) = match m {
                HttpMethod::Get => ("GET", MethodFilter::GET),
                HttpMethod::Post => ("POST", MethodFilter::POST),
                HttpMethod::Put => ("PUT", MethodFilter::PUT),
                HttpMethod::Delete => ("DELETE", MethodFilter::DELETE),
                HttpMethod::Options => ("OPTIONS", MethodFilter::OPTIONS),
                HttpMethod::Head => ("HEAD", MethodFilter::HEAD),
                HttpMethod::Patch => ("PATCH", MethodFilter::PATCH),
                HttpMethod::Trace => ("TRACE", MethodFilter::TRACE),
            };
            Route {
                method,
                path: P::path(),
                handler: on(filter, handler.clone()),
            }
        })
        .collect()
}

/// Every route of the API, health, metrics and the document itself.
pub fn routes() -> Vec<Route> {
    [
        route::<ops::__path_healthz, _, _>(ops::healthz),
        route::<ops::__path_metrics, _, _>(ops::metrics),
        route::<ops::__path_document, _, _>(ops::document),
        route::<tasks::__path_list, _, _>(tasks::list),
        route::<tasks::__path_approve, _, _>(tasks::approve),
        route::<tasks::__path_complete, _, _>(tasks::complete),
        route::<renewals::__path_list_renewals, _, _>(renewals::list_renewals),
        route::<renewals::__path_start, _, _>(renewals::start),
        route::<renewals::__path_show_renewal, _, _>(renewals::show_renewal),
        route::<renewals::__path_certificate_request, _, _>(renewals::certificate_request),
        route::<renewals::__path_upload_certificate, _, _>(renewals::upload_certificate),
        route::<renewals::__path_propose_window, _, _>(renewals::propose_window),
        route::<renewals::__path_accept_window, _, _>(renewals::accept_window),
        route::<renewals::__path_cancel, _, _>(renewals::cancel),
        route::<renewals::__path_rollback, _, _>(renewals::rollback),
        route::<users::__path_list_tokens, _, _>(users::list_tokens),
        route::<users::__path_revoke_token, _, _>(users::revoke_token),
        route::<users::__path_revoke_role, _, _>(users::revoke_role),
        route::<users::__path_remove_user, _, _>(users::remove_user),
        route::<sign::__path_sign, _, _>(sign::sign),
    ]
    .into_iter()
    .flatten()
    .collect()
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
            // The scheme is case-insensitive (RFC 7235 §2.1): `bearer` and `BEARER` are it too.
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token)
            })
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

/// A request body as bytes; a body over the size limit is answered as JSON like every other
/// error (413), not with the extractor's plain text.
pub(crate) struct ApiBytes(pub Bytes);

impl FromRequest<AppState> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        Bytes::from_request(req, st)
            .await
            .map(ApiBytes)
            .map_err(|e| ApiError::new(e.status(), e.body_text()))
    }
}

/// The body as `T`; an empty (or all-whitespace) body is read as `{}`. A refusal names the
/// field that is wrong (`field` in the answer): the one of the wrong type, the one missing,
/// the one not known.
pub(crate) fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde names a missing or unknown field in backquotes; any other error sits at a path.
        if path != "." {
            return ApiError::bad_request(format!("request body: {path}: {inner}"))
                .with_field(&path);
        }
        let err = ApiError::bad_request(format!("request body: {inner}"));
        match inner.to_string().split('`').nth(1) {
            Some(f) => err.with_field(f),
            None => err,
        }
    })
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
    let o = detached(async move { svc.act(id, &email, event, now()).await }).await??;
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
