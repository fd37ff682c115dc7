//! Table `renewal_steps`: a step of a renewal (engine).

use sea_orm::entity::prelude::*;

/// A step of a renewal (engine).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "renewal_steps")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `renewal_id`.
    pub renewal_id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `step_key`.
    pub step_key: String,
    /// Column `seed_step`.
    pub seed_step: String,
    /// Column `kind`.
    pub kind: String,
    /// Column `status`.
    pub status: String,
    /// Column `state`.
    pub state: String,
    /// Column `due_at`.
    pub due_at: Option<DateTimeUtc>,
    /// Column `done_by`.
    pub done_by: Option<String>,
    /// Column `done_at`.
    pub done_at: Option<DateTimeUtc>,
    /// Column `version`.
    pub version: i64,
    /// Column `lease_owner`.
    pub lease_owner: Option<String>,
    /// Column `lease_until`.
    pub lease_until: Option<DateTimeUtc>,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
