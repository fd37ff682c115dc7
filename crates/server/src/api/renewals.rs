//! `/api/renewals`: start, list and show renewals; cancel and roll back; the downtime window;
//! a CA-signed renewal's certificate request and the upload of its chain.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rekey_engine::{Event, ProcedureId, Renewal};
use rekey_service::StartRequest;
use rekey_store::{ReceiverName, TenantName};
use serde::Deserialize;

use super::{ApiUser, act, body, may_see, outcome_json, parse_id, visible};
use crate::{ApiError, AppState, now, offload};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    tenant: String,
    receiver: String,
    alias: String,
    new_alias: Option<String>,
    procedure: Option<String>,
    bits: Option<u32>,
    #[serde(default)]
    ca_signed: bool,
    #[serde(default)]
    auto_approve: bool,
}

pub(crate) async fn start(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: StartBody = body(&bytes)?;
    let store = st.service().store();
    let tname = TenantName::parse(&b.tenant).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tenant = store.tenant_by_name(&tname).await?;
    let rname =
        ReceiverName::parse(&b.receiver).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let receiver = store.receiver(tenant.id, &rname).await?;
    let procedure = b
        .procedure
        .as_deref()
        .map(str::parse::<ProcedureId>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("procedure: {e}")))?;
    for a in [Some(&b.alias), b.new_alias.as_ref()].into_iter().flatten() {
        rekey_store::Alias::parse(a).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let req = StartRequest {
        tenant: tenant.id,
        receiver: receiver.id,
        alias: b.alias,
        new_alias: b.new_alias,
        procedure,
        bits: b.bits.unwrap_or(3072),
        ca_signed: b.ca_signed,
        auto_approve: b.auto_approve,
    };
    let (svc, email) = (st.service().clone(), u.email.to_string());
    let o = offload(async move { svc.start(req, &email, now()).await }).await??;
    Ok((StatusCode::CREATED, Json(outcome_json(&o))).into_response())
}

pub(crate) async fn list_renewals(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
) -> Result<Response, ApiError> {
    let all: Vec<Renewal> = st
        .service()
        .renewals(None)
        .await?
        .into_iter()
        .filter(|r| may_see(&u, r))
        .collect();
    Ok(Json(all).into_response())
}

pub(crate) async fn show_renewal(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = visible(&st, &u, parse_id(&id)?).await?;
    Ok(Json(r).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowBody {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

pub(crate) async fn propose_window(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
    bytes: Bytes,
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

pub(crate) async fn accept_window(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::AcceptWindow).await
}

pub(crate) async fn cancel(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::Cancel).await
}

pub(crate) async fn rollback(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act(&st, &u, &id, Event::Rollback).await
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateBody {
    chain_pem: String,
}

pub(crate) async fn upload_certificate(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let b: CertificateBody = body(&bytes)?;
    if !b.chain_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ApiError::bad_request(
            "chain_pem: give PEM certificates (-----BEGIN CERTIFICATE-----), the new key's first",
        ));
    }
    let chain = rekey_crypto::Certificate::parse_any(b.chain_pem.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("chain_pem: {e}")))?;
    let (svc, email) = (st.service().clone(), u.email.to_string());
    let o =
        offload(async move { svc.upload_certificate(id, &email, &chain, now()).await }).await??;
    Ok(Json(outcome_json(&o)).into_response())
}
