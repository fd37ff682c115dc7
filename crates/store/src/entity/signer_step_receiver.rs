//! Table `signer_step_receivers`: a receiver that a signer step's messages reach.

use sea_orm::entity::prelude::*;

/// A receiver that a signer step's messages reach.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signer_step_receivers")]
pub struct Model {
    /// Column `step_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_id: Uuid,
    /// Column `receiver_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub receiver_id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
