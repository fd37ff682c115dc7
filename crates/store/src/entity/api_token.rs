//! Table `api_tokens`: an API token (its SHA-256 only).

use sea_orm::entity::prelude::*;

/// An API token (its SHA-256 only).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `token_sha256`.
    pub token_sha256: String,
    /// Column `user_id`.
    pub user_id: Uuid,
    /// Column `label`.
    pub label: String,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `revoked_at`.
    pub revoked_at: Option<DateTimeUtc>,
    /// Column `expires_at`.
    pub expires_at: Option<DateTimeUtc>,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
