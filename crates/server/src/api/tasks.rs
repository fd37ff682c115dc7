//! `/api/tasks`: the due steps a token's user may act on, and acting on one (approve, or
//! complete with the fingerprint of the certificate now installed).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rekey_engine::Event;
use serde::Deserialize;

use super::{ApiUser, act, body};
use crate::{ApiError, AppState};

pub(crate) async fn list(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
) -> Result<Response, ApiError> {
    let t = st.service().tasks(Some(u.email.as_str()), None).await?;
    Ok(Json(t).into_response())
}

pub(crate) async fn approve(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path((renewal, step)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    act(&st, &u, &renewal, Event::Approve { step }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    fingerprint: Option<String>,
}

pub(crate) async fn complete(
    State(st): State<AppState>,
    ApiUser(u): ApiUser,
    Path((renewal, step)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: CompleteBody = body(&bytes)?;
    let event = rekey_service::complete_event(step, b.fingerprint.as_deref())?;
    act(&st, &u, &renewal, event).await
}
