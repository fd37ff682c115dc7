//! The `link_tokens` table: the SHA-256 of every action-link token the notifier issued, with
//! the tenant, the recipient's user id (when they have an account), what the link opens
//! (`purpose`, JSON the notifier writes and reads) and when it expires or was used.
//!
//! No token is stored here, only its hash; making and checking tokens is the notifier's
//! (`rekey_notifier::links`). Using a link is one conditional update ([`mark_used`]) that two
//! concurrent requests cannot both win.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use crate::entity::link_token;
use crate::error::Result;

/// One stored link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// Tenant.
    pub tenant_id: Uuid,
    /// The recipient's user id, when they have an account.
    pub user_id: Option<Uuid>,
    /// What the link opens (the notifier's JSON).
    pub purpose: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was used (or revoked).
    pub used_at: Option<DateTime<Utc>>,
    /// Issued.
    pub created_at: DateTime<Utc>,
}

impl From<link_token::Model> for LinkRow {
    fn from(m: link_token::Model) -> Self {
        LinkRow {
            token_sha256: m.token_sha256,
            tenant_id: m.tenant_id,
            user_id: m.user_id,
            purpose: m.purpose,
            expires_at: m.expires_at,
            used_at: m.used_at,
            created_at: m.created_at,
        }
    }
}

/// A link to store.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// SHA-256 of the token, hex.
    pub token_sha256: String,
    /// Tenant.
    pub tenant: Uuid,
    /// The recipient's user id, when they have an account.
    pub user: Option<Uuid>,
    /// What the link opens.
    pub purpose: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Stores a new link issued at `now`.
pub async fn insert(conn: &impl ConnectionTrait, link: NewLink, now: DateTime<Utc>) -> Result<()> {
    link_token::ActiveModel {
        token_sha256: Set(link.token_sha256),
        tenant_id: Set(link.tenant),
        user_id: Set(link.user),
        purpose: Set(link.purpose),
        expires_at: Set(link.expires_at),
        used_at: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// The link with this token hash.
pub async fn find(conn: &impl ConnectionTrait, token_sha256: &str) -> Result<Option<LinkRow>> {
    Ok(link_token::Entity::find_by_id(token_sha256.to_string())
        .one(conn)
        .await?
        .map(LinkRow::from))
}

/// Marks the link used at `now` if it is unused and has not expired (a link that expires
/// exactly at `now` has); `false` when another use came first or it expired.
pub async fn mark_used(
    conn: &impl ConnectionTrait,
    token_sha256: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = link_token::Entity::update_many()
        .col_expr(link_token::Column::UsedAt, Expr::value(now))
        .filter(link_token::Column::TokenSha256.eq(token_sha256))
        .filter(link_token::Column::UsedAt.is_null())
        .filter(link_token::Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Makes the link unusable: marks it used at `now`, if it was not.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    token_sha256: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    link_token::Entity::update_many()
        .col_expr(link_token::Column::UsedAt, Expr::value(now))
        .filter(link_token::Column::TokenSha256.eq(token_sha256))
        .filter(link_token::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes a link that never reached anyone.
pub async fn delete(conn: &impl ConnectionTrait, token_sha256: &str) -> Result<()> {
    link_token::Entity::delete_by_id(token_sha256.to_string())
        .exec(conn)
        .await?;
    Ok(())
}

/// Every stored link, oldest first (to check what is stored: hashes only).
pub async fn all(conn: &impl ConnectionTrait) -> Result<Vec<LinkRow>> {
    Ok(link_token::Entity::find()
        .order_by_asc(link_token::Column::CreatedAt)
        .all(conn)
        .await?
        .into_iter()
        .map(LinkRow::from)
        .collect())
}
