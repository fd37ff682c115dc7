//! The `Idempotency-Key` header of creating calls (`POST /api/renewals`): a client that lost
//! the answer retries with the same key and gets the first answer, and nothing is done twice.
//!
//! The answer is stored by the service in the transaction that does the work
//! (`rekey_store::idempotency`), so it exists exactly when the work committed. Keys are each
//! user's own; the same key with another request (route and body bytes) is refused with 422
//! rather than answered with what another request got.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rekey_service::{Recorded, RenderAnswer};
use rekey_store::{User, idempotency};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// The header, as the document and the refusals name it.
pub(crate) const HEADER: &str = "Idempotency-Key";

/// A request's idempotency key, with what it identifies.
pub(crate) struct Key {
    user: Uuid,
    key: String,
    request_sha256: String,
}

impl Key {
    /// The key `headers` carry for `user`'s request to `route` with `body`, if any; a key that
    /// is not 1 to 255 visible ASCII characters is refused naming the header.
    pub(crate) fn of(
        headers: &HeaderMap,
        user: &User,
        route: &str,
        body: &[u8],
    ) -> Result<Option<Key>, ApiError> {
        let Some(v) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = v
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::field(
                    HEADER,
                    "give 1 to 255 visible ASCII characters, new for each request (a UUID, for example)",
                )
            })?;
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(body);
        Ok(Some(Key {
            user: user.id.as_uuid(),
            key: key.to_string(),
            request_sha256: hex::encode(h.finalize()),
        }))
    }

    /// The first answer given under this key, if the work was done; 422 when the key was used
    /// for another request.
    pub(crate) async fn answered(&self, st: &AppState) -> Result<Option<Response>, ApiError> {
        let Some(a) = idempotency::find(st.service().store().db(), self.user, &self.key).await?
        else {
            return Ok(None);
        };
        if a.request_sha256 != self.request_sha256 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{HEADER} {:?} was used at {} for another request; give this request a new key",
                    self.key,
                    a.created_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )
            .with_field(HEADER));
        }
        let status = StatusCode::from_u16(a.status).map_err(|e| ApiError::internal(&e))?;
        let mut res = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            a.response,
        )
            .into_response();
        res.headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
        Ok(Some(res))
    }

    /// What the service stores with the work: this key, and the answer `render` makes.
    pub(crate) fn recorded(&self, render: RenderAnswer) -> Recorded {
        Recorded {
            user: self.user,
            key: self.key.clone(),
            request_sha256: self.request_sha256.clone(),
            render,
        }
    }
}
