//! Table `user_roles`: a role held by a user in a scope.

use sea_orm::entity::prelude::*;

/// A role held by a user in a scope.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_roles")]
pub struct Model {
    /// Column `user_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// Column `role`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub role: String,
    /// Column `scope_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope_id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `receiver_id`.
    pub receiver_id: Option<Uuid>,
    /// Column `flow_id` (a `signer` grant's flow).
    pub flow_id: Option<Uuid>,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
