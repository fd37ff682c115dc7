//! `/api/tasks`: the due steps a token's user may act on, and acting on one (approve, or
//! complete with the fingerprint of the certificate now installed).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rekey_engine::Event;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{ApiBytes, ApiUser, act, body, schema};
use crate::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/api/tasks",
    tag = "tasks",
    summary = "Due steps the token's user may act on",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The due steps", body = Vec<schema::Task>),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn list(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
) -> Result<Response, ApiError> {
    let t = st.service().tasks(Some(u.email.as_str()), None).await?;
    Ok(Json(t).into_response())
}

#[utoipa::path(
    post,
    path = "/api/tasks/{renewal}/{step}/approve",
    tag = "tasks",
    summary = "Approve an action step (the owner's go-ahead)",
    params(
        ("renewal" = String, Path, description = "Renewal id (a UUID)"),
        ("step" = String, Path, description = "Step id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Approved; what rekey did", body = schema::Outcome),
        (status = 400, description = "Not a renewal id, or the engine finds the input invalid", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 403, description = "The user does not hold the step's role", body = schema::Error),
        (status = 404, description = "Unknown renewal or step", body = schema::Error),
        (status = 409, description = "Not due, already done, finished, or changed concurrently", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn approve(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path((renewal, step)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&st, &u, &renewal, Event::Approve { step }).await
}

/// What confirming a task takes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// SHA-256 of the certificate installed: 64 hex digits, any case, plain or with one ':' or
    /// space between bytes, optionally after 'sha256 Fingerprint='. Refused when absent.
    #[schema(value_type = String, required = true)]
    fingerprint: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/tasks/{renewal}/{step}/complete",
    tag = "tasks",
    summary = "Confirm a task with the SHA-256 fingerprint of the certificate now installed",
    params(
        ("renewal" = String, Path, description = "Renewal id (a UUID)"),
        ("step" = String, Path, description = "Step id"),
    ),
    request_body = CompleteBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Confirmed; what rekey did", body = schema::Outcome),
        (status = 400, description = "Bad body, not a renewal id, or a fingerprint that is malformed or not the new certificate's", body = schema::Error),
        (status = 401, description = "No or unknown bearer token", body = schema::Error),
        (status = 403, description = "The user does not hold the step's role", body = schema::Error),
        (status = 404, description = "Unknown renewal or step", body = schema::Error),
        (status = 409, description = "Not due, already done, finished, or changed concurrently", body = schema::Error),
        (status = 413, description = "Body over the size limit", body = schema::Error),
        (status = 500, description = "Internal error (logged, not described)", body = schema::Error),
    )
)]
pub(crate) async fn complete(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path((renewal, step)): Path<(String, String)>,
    ApiBytes(bytes): ApiBytes,
) -> Result<Response, ApiError> {
    let b: CompleteBody = body(&bytes)?;
    let event = rekey_service::complete_event(step, b.fingerprint.as_deref())?;
    act(&st, &u, &renewal, event).await
}
