//! The unauthenticated routes: `/healthz` (the database answers) and `/openapi.json`.

use axum::extract::State;

use crate::{ApiError, AppState};

pub(crate) async fn healthz(State(st): State<AppState>) -> Result<&'static str, ApiError> {
    st.service().store().db().ping().await?;
    Ok("ok\n")
}
