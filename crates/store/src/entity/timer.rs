//! Table `timers`: a timer (engine).

use sea_orm::entity::prelude::*;

/// A timer (engine).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timers")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `renewal_id`.
    pub renewal_id: Option<Uuid>,
    /// Column `kind`.
    pub kind: String,
    /// Column `due_at`.
    pub due_at: DateTimeUtc,
    /// Column `status`.
    pub status: String,
    /// Column `state`.
    pub state: String,
    /// Column `attempts`.
    pub attempts: i32,
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
