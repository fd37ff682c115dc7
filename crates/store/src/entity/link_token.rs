//! Table `link_tokens`: a single-use link token (its SHA-256 only).

use sea_orm::entity::prelude::*;

/// A single-use link token (its SHA-256 only).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "link_tokens")]
pub struct Model {
    /// Column `token_sha256`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_sha256: String,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `user_id`.
    pub user_id: Option<Uuid>,
    /// Column `purpose`.
    pub purpose: String,
    /// Column `expires_at`.
    pub expires_at: DateTimeUtc,
    /// Column `used_at`.
    pub used_at: Option<DateTimeUtc>,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
