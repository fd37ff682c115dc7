//! The routes without a user: `/healthz` (the database answers), `/metrics` (rendered by
//! [`crate::metrics`], behind its own token when one is configured) and `/openapi.json`
//! (built by [`crate::openapi`]).

use axum::extract::State;
use axum::response::IntoResponse;

use super::schema;
use crate::{ApiError, AppState};

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness: the database answers",
    responses(
        (status = 200, description = "`ok` and a newline", body = String, content_type = "text/plain"),
        (status = 500, description = "The database does not answer", body = schema::Error),
    )
)]
pub(crate) async fn healthz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    st.service().store().db().ping().await?;
    Ok("ok\n")
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus text: renewals by state and procedure, tasks due and overdue, outbox depth by status, certificates expiring (per tenant and alias when [server] metrics_names is set); behind a bearer token when [server] metrics_token is set",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
        (status = 401, description = "A metrics token is configured ([server] metrics_token) and the request does not carry it as a bearer token", body = schema::Error),
        (status = 500, description = "The database failed", body = schema::Error),
    )
)]
pub(crate) async fn metrics(
    st: State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    crate::metrics::metrics(st, headers).await
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This document",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", body = Object),
    )
)]
pub(crate) async fn document() -> axum::Json<serde_json::Value> {
    axum::Json(crate::openapi::build())
}
