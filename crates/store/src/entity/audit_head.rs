//! Table `audit_head`: the audit chain head (one row).

use sea_orm::entity::prelude::*;

/// The audit chain head (one row).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_head")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    /// Column `seq`.
    pub seq: i64,
    /// Column `hash`.
    pub hash: String,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
