//! Table `signer_rows`: a row of a signer step's Signer Parameters table.

use sea_orm::entity::prelude::*;

/// A row of a signer step's Signer Parameters table.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signer_rows")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `step_id`.
    pub step_id: Uuid,
    /// Column `position`.
    pub position: i32,
    /// Column `alias`.
    pub alias: String,
    /// Column `digest`.
    pub digest: String,
    /// Column `include_certs`.
    pub include_certs: bool,
    /// Column `include_signing_time`.
    pub include_signing_time: bool,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
