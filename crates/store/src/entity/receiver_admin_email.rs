//! Table `receiver_admin_emails`: an administrator contact of a receiver.

use sea_orm::entity::prelude::*;

/// An administrator contact of a receiver.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receiver_admin_emails")]
pub struct Model {
    /// Column `receiver_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub receiver_id: Uuid,
    /// Column `email`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub email: String,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
