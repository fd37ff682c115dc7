//! Table `server_secrets`: secrets every server instance shares, by name.

use sea_orm::entity::prelude::*;

/// A shared secret.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "server_secrets")]
pub struct Model {
    /// Column `name`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// Column `secret`.
    pub secret: Vec<u8>,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
