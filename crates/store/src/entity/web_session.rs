//! Table `web_sessions`: a signed-in browser (the SHA-256 of its session id only).

use sea_orm::entity::prelude::*;

/// A web session.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "web_sessions")]
pub struct Model {
    /// Column `id_sha256`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_sha256: String,
    /// Column `email`.
    pub email: String,
    /// Column `csrf`.
    pub csrf: String,
    /// Column `expires_at`.
    pub expires_at: DateTimeUtc,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
