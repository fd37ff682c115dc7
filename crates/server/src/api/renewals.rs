//! `/api/renewals`: start, list and show renewals; cancel and roll back; the downtime window;
//! a CA-signed renewal's certificate request and the upload of its chain.

use axum::Json;
use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rekey_engine::{Event, ProcedureId, Renewal, RenewalStatus};
use rekey_model::{Alias, ReceiverName, TenantName};
use rekey_service::StartRequest;
use rekey_store::StoreError;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    ApiBytes, ApiUser, act, body, idempotency, may_see, outcome_json, parse_id, schema, visible,
};
use crate::{ApiError, AppState, detached, now};

/// What starting a renewal takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// Tenant name.
    tenant: String,
    /// Receiver name.
    receiver: String,
    /// The alias whose key is renewed.
    alias: String,
    /// The alias the new key goes under, for procedures that use a second alias; by default
    /// the old alias with the date, replacing a date an earlier renewal appended. An alias too
    /// long to take the date is refused (400) naming it: name one here.
    new_alias: Option<String>,
    /// The procedure; when absent, the receiver's profile chooses.
    #[schema(value_type = Option<schema::Procedure>)]
    procedure: Option<String>,
    /// RSA key size in bits.
    #[schema(value_type = Option<schema::Bits>)]
    bits: Option<u32>,
    /// Whether a CA signs the new key (rekey makes a certificate request) instead of rekey
    /// self-signing it.
    #[serde(default)]
    #[schema(default = false)]
    ca_signed: bool,
    /// Whether rekey's own steps run without the owner's approval.
    #[serde(default)]
    #[schema(default = false)]
    auto_approve: bool,
}

#[utoipa::path(
    post,
    path = "/api/renewals",
    tag = "renewals",
    summary = "Start a renewal (tenant administrator); 409 naming the running renewal when the alias already has one",
    request_body = StartBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A key the client makes up for this request (1 to 255 visible ASCII characters, e.g. a UUID). A retry with the same key and the same body gets the first answer again and starts nothing; the same key with another body is refused (422). Keys are each user's own."),
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Started; the renewal and what rekey did (with an Idempotency-Key already used for this request: the first answer again, nothing started)", body = schema::Outcome),
        (status = 400, description = "Bad body, or a tenant, receiver, alias or procedure that is not well-formed", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 403, description = "The user does not hold the role this takes", body = schema::Error),
        (status = 404, description = "Unknown tenant, receiver or alias", body = schema::Error),
        (status = 409, description = "The alias already has a running renewal (named)", body = schema::Error),
        (status = 413, description = "Body over the size limit", body = schema::Error),
        (status = 422, description = "The Idempotency-Key was used for another request (named)", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn start(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    headers: HeaderMap,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let idem = idempotency::Key::of(&headers, &u, "POST /api/renewals", &bytes)?;
    if let Some(k) = &idem
        && let Some(answer) = k.answered(&st).await?
    {
        return Ok(answer);
    }
    let b: StartBody = body(&bytes)?;
    let store = st.service().store();
    let tname = TenantName::parse(&b.tenant).map_err(|e| ApiError::field("tenant", e))?;
    let rname = ReceiverName::parse(&b.receiver).map_err(|e| ApiError::field("receiver", e))?;
    let procedure = b
        .procedure
        .as_deref()
        .map(str::parse::<ProcedureId>)
        .transpose()
        .map_err(|e| ApiError::field("procedure", e))?;
    let alias = |field: &str, a: &str| Alias::parse(a).map_err(|e| ApiError::field(field, e));
    let (old, new_alias) = (
        alias("alias", &b.alias)?,
        b.new_alias
            .as_deref()
            .map(|a| alias("new_alias", a))
            .transpose()?,
    );
    // A tenant the user holds no role in is answered as one that does not exist, whichever
    // receiver the request names.
    let unknown_tenant = || {
        ApiError::from(StoreError::UnknownTenant(format!("{:?}", tname.as_str())))
            .with_field("tenant")
    };
    let tenant = match store.tenant_by_name(&tname).await {
        Ok(t) => t,
        Err(StoreError::UnknownTenant(_)) => return Err(unknown_tenant()),
        Err(e) => return Err(e.into()),
    };
    let receiver = store.receiver(tenant.id, &rname).await;
    let actor = rekey_engine::Actor::new(u.email.to_string(), u.grants.clone());
    let receiver_id = receiver.as_ref().ok().map(|r| r.id);
    if !rekey_engine::access::may_see_scope(&actor, tenant.id, receiver_id) {
        return Err(unknown_tenant());
    }
    let receiver = receiver.map_err(|e| ApiError::from(e).with_field("receiver"))?;
    let req = StartRequest {
        tenant: tenant.id,
        receiver: receiver.id,
        alias: old,
        new_alias,
        procedure,
        bits: b.bits.unwrap_or(3072),
        ca_signed: b.ca_signed,
        auto_approve: b.auto_approve,
    };
    let (svc, email) = (st.service().clone(), u.email.to_string());
    let record = idem.as_ref().map(|k| {
        k.recorded(Box::new(|o| {
            (StatusCode::CREATED.as_u16(), outcome_json(o).to_string())
        }))
    });
    let started =
        detached(async move { svc.start_recorded(req, &email, now(), record).await }).await?;
    match started {
        Ok(o) => Ok((StatusCode::CREATED, Json(outcome_json(&o))).into_response()),
        Err(e) => match &idem {
            // A concurrent request with the same key did the work first: its answer.
            Some(k) => match k.answered(&st).await? {
                Some(answer) => Ok(answer),
                None => Err(e.into()),
            },
            None => Err(e.into()),
        },
    }
}

/// The most renewals one page of `GET /api/renewals` holds, and how many it holds by default.
pub(crate) const PAGE_MAX: u64 = 500;
const PAGE_DEFAULT: u64 = 100;

/// `GET /api/renewals`'s query: `status`, `after` (the last id of the previous page), `limit`.
/// Each is checked and a wrong one named, as body fields are.
fn list_query(
    q: &HashMap<String, String>,
) -> Result<(Option<RenewalStatus>, Option<Uuid>, u64), ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "status" | "after" | "limit"))
    {
        return Err(ApiError::field(
            k,
            "unknown query parameter (status, after and limit are known)",
        ));
    }
    let status = q
        .get("status")
        .map(|s| {
            s.parse::<RenewalStatus>()
                .map_err(|e| ApiError::field("status", e))
        })
        .transpose()?;
    let after = q
        .get("after")
        .map(|s| {
            Uuid::parse_str(s)
                .map_err(|_| ApiError::field("after", format!("{s:?} is not a renewal id")))
        })
        .transpose()?;
    let limit = match q.get("limit") {
        None => PAGE_DEFAULT,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=PAGE_MAX).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("{s:?} is not a number from 1 to {PAGE_MAX}"),
                ));
            }
        },
    };
    Ok((status, after, limit))
}

#[utoipa::path(
    get,
    path = "/api/renewals",
    tag = "renewals",
    summary = "Renewals of the tenants and receivers the user holds a role in, newest first, one page at a time",
    description = "A full page carries a `Link: <...>; rel=\"next\"` header naming the next page.",
    params(
        ("status" = Option<String>, Query, description = "Only renewals in this state: running, completed, cancelled, rolled_back"),
        ("after" = Option<String>, Query, description = "The id of the last renewal of the previous page"),
        ("limit" = Option<u64>, Query, description = "At most this many (1 to 500, default 100)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The renewals", body = Vec<schema::Renewal>),
        (status = 400, description = "A query parameter is wrong (named in `field`)", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn list_renewals(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (status, after, limit) = list_query(&q)?;
    let page: Vec<Renewal> = st
        .service()
        .renewals_for(&u.grants, status, after, limit)
        .await?
        .into_iter()
        .filter(|r| may_see(&u, r))
        .collect();
    let next = match page.last() {
        Some(last) if page.len() as u64 == limit => {
            let mut link = format!("</api/renewals?after={}&limit={limit}", last.id);
            if let Some(s) = status {
                link.push_str(&format!("&status={}", s.as_str()));
            }
            link.push_str(">; rel=\"next\"");
            Some(link)
        }
        _ => None,
    };
    let mut resp = Json(page).into_response();
    if let Some(link) = next
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        resp.headers_mut().insert(header::LINK, v);
    }
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/api/renewals/{id}",
    tag = "renewals",
    summary = "One renewal: steps, who did them, what is due",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The renewal", body = schema::Renewal),
        (status = 400, description = "Not a renewal id", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 404, description = "Unknown renewal, or one the user holds no role in", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn show_renewal(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = visible(&st, &u, parse_id(&id)?).await?;
    Ok(Json(r).into_response())
}

/// A proposed downtime window.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WindowBody {
    /// Opens.
    start: DateTime<Utc>,
    /// Closes.
    end: DateTime<Utc>,
}

#[utoipa::path(
    post,
    path = "/api/renewals/{id}/window/propose",
    tag = "renewals",
    summary = "Propose (or counter-propose) the downtime window",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    request_body = WindowBody,
    security(("bearer" = [])),
    responses(
        schema::RenewalEventResponses,
        (status = 413, description = "Body over the size limit", body = schema::Error),
    )
)]
pub(crate) async fn propose_window(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let b: WindowBody = body(&bytes)?;
    act(
        &st,
        &u,
        &id,
        Event::ProposeWindow {
            start: b.start,
            end: b.end,
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/api/renewals/{id}/window/accept",
    tag = "renewals",
    summary = "Accept the window the other party proposed",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    security(("bearer" = [])),
    responses(schema::RenewalEventResponses)
)]
pub(crate) async fn accept_window(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::AcceptWindow).await
}

#[utoipa::path(
    post,
    path = "/api/renewals/{id}/cancel",
    tag = "renewals",
    summary = "Cancel before the point of no return; rekey's changes are undone",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    security(("bearer" = [])),
    responses(schema::RenewalEventResponses)
)]
pub(crate) async fn cancel(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::Cancel).await
}

#[utoipa::path(
    post,
    path = "/api/renewals/{id}/rollback",
    tag = "renewals",
    summary = "After the exchange: restore the previous keystore entries",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    security(("bearer" = [])),
    responses(schema::RenewalEventResponses)
)]
pub(crate) async fn rollback(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::Rollback).await
}

#[utoipa::path(
    get,
    path = "/api/renewals/{id}/certificate-request",
    tag = "renewals",
    summary = "The certificate signing request (PEM) of a CA-signed renewal's new key, while it waits for the chain; 409 naming why when none is waiting (no request yet, chain already uploaded, not a CA-signed renewal)",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The PKCS #10 request, PEM", body = String, content_type = "application/pkcs10"),
        (status = 400, description = "Not a renewal id", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 404, description = "Unknown renewal, or one the user holds no role in", body = schema::Error),
        (status = 409, description = "No request is waiting (named why)", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn certificate_request(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = visible(&st, &u, parse_id(&id)?).await?;
    let pem = st.service().certificate_request(r.id).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/pkcs10"),
        )],
        pem,
    )
        .into_response())
}

/// A CA-signed chain for the new key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateBody {
    /// PEM certificates, the new key's first, then its issuers.
    chain_pem: String,
}

#[utoipa::path(
    post,
    path = "/api/renewals/{id}/certificate",
    tag = "renewals",
    summary = "Upload the CA-signed chain (PEM, leaf first) for a CA-signed renewal's new key",
    params(("id" = String, Path, description = "Renewal id (a UUID)")),
    request_body = CertificateBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Done; what rekey did", body = schema::Outcome),
        (status = 400, description = "Bad body, not a renewal id, or a chain that does not fit the new key", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 403, description = "The user does not hold the role this takes", body = schema::Error),
        (status = 404, description = "Unknown renewal, or one the user holds no role in", body = schema::Error),
        (status = 409, description = "Refused in the renewal's current state, or changed concurrently", body = schema::Error),
        (status = 413, description = "Body over the size limit", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn upload_certificate(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    // Someone who may not see the renewal learns that, not what is wrong with the chain.
    let id = visible(&st, &u, parse_id(&id)?).await?.id;
    let b: CertificateBody = body(&bytes)?;
    if !b.chain_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ApiError::field(
            "chain_pem",
            "give PEM certificates (-----BEGIN CERTIFICATE-----), the new key's first",
        ));
    }
    let chain = rekey_crypto::Certificate::parse_any(b.chain_pem.as_bytes())
        .map_err(|e| ApiError::field("chain_pem", e))?;
    let (svc, email) = (st.service().clone(), u.email.to_string());
    let o =
        detached(async move { svc.upload_certificate(id, &email, &chain, now()).await }).await??;
    Ok(Json(outcome_json(&o)).into_response())
}
