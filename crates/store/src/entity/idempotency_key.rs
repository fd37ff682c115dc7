//! Table `idempotency_keys`: the first answer to a creating API call made with a key.

use sea_orm::entity::prelude::*;

/// The first answer to a creating API call made with an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// Column `user_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Column `idempotency_key`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub idempotency_key: String,
    /// Column `request_sha256`.
    pub request_sha256: String,
    /// Column `status`.
    pub status: i32,
    /// Column `response`.
    pub response: String,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
