//! Table `signer_steps`: a CMS signer step of a flow.

use sea_orm::entity::prelude::*;

/// A CMS signer step of a flow.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signer_steps")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `flow_id`.
    pub flow_id: Uuid,
    /// Column `name`.
    pub name: String,
    /// Column `detached`.
    pub detached: bool,
    /// Column `base64`.
    pub base64: bool,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
