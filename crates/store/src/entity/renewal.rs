//! Table `renewals`: a renewal (engine).

use sea_orm::entity::prelude::*;

/// A renewal (engine).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "renewals")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `receiver_id`.
    pub receiver_id: Option<Uuid>,
    /// Column `alias`.
    pub alias: String,
    /// Column `procedure`.
    pub procedure: String,
    /// Column `status`.
    pub status: String,
    /// Column `state`.
    pub state: String,
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
