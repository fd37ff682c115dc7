//! Table `audit_log`: an audit log entry.

use sea_orm::entity::prelude::*;

/// An audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    /// Column `seq`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// Column `at`.
    pub at: DateTimeUtc,
    /// Column `actor`.
    pub actor: String,
    /// Column `action`.
    pub action: String,
    /// Column `tenant_id`.
    pub tenant_id: Option<Uuid>,
    /// Column `subject`.
    pub subject: String,
    /// Column `before_text`.
    pub before_text: String,
    /// Column `after_text`.
    pub after_text: String,
    /// Column `prev_hash`.
    pub prev_hash: String,
    /// Column `hash`.
    pub hash: String,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
