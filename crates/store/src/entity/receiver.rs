//! Table `receivers`: a receiver and its profile.

use sea_orm::entity::prelude::*;

/// A receiver and its profile.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receivers")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `name`.
    pub name: String,
    /// Column `verifies_multiple_keys`.
    pub verifies_multiple_keys: bool,
    /// Column `accepts_multiple_signatures`.
    pub accepts_multiple_signatures: bool,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
