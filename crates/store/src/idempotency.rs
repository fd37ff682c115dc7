//! The `idempotency_keys` table: the first answer to each creating API call made with an
//! `Idempotency-Key`, per user and key, with the SHA-256 of the request it answered.
//!
//! [`record`] is called inside the transaction that did the work, so an answer is stored
//! exactly when the work committed; a retry [`find`]s it and is answered with it. What a
//! request is, and what its answer looks like, are the server's business: this module stores
//! text.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use uuid::Uuid;

use crate::entity::idempotency_key;
use crate::error::Result;

/// A stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// SHA-256 (hex) of the request it answered.
    pub request_sha256: String,
    /// HTTP status.
    pub status: u16,
    /// The body, as sent.
    pub response: String,
    /// When the work was done.
    pub created_at: DateTime<Utc>,
}

/// The answer stored for `user`'s `key`, if any.
pub async fn find(conn: &impl ConnectionTrait, user: Uuid, key: &str) -> Result<Option<Answer>> {
    Ok(idempotency_key::Entity::find_by_id((user, key.to_string()))
        .one(conn)
        .await?
        .map(|m| Answer {
            request_sha256: m.request_sha256,
            status: u16::try_from(m.status).unwrap_or(500),
            response: m.response,
            created_at: m.created_at,
        }))
}

/// Stores `answer` for `user`'s `key`. A second answer for the same key fails on the primary
/// key, rolling back the caller's transaction: two concurrent requests with one key do the
/// work once.
pub async fn record(
    conn: &impl ConnectionTrait,
    user: Uuid,
    key: &str,
    answer: &Answer,
) -> Result<()> {
    idempotency_key::ActiveModel {
        user_id: Set(user),
        idempotency_key: Set(key.to_string()),
        request_sha256: Set(answer.request_sha256.clone()),
        status: Set(i32::from(answer.status)),
        response: Set(answer.response.clone()),
        created_at: Set(answer.created_at),
    }
    .insert(conn)
    .await?;
    Ok(())
}
