//! Table `outbox`: a mail in the outbox (engine/notifier).

use sea_orm::entity::prelude::*;

/// A mail in the outbox (engine/notifier).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `renewal_id`.
    pub renewal_id: Option<Uuid>,
    /// Column `message_id`.
    pub message_id: String,
    /// Column `recipients`.
    pub recipients: String,
    /// Column `subject`.
    pub subject: String,
    /// Column `state`.
    pub state: String,
    /// Column `status`.
    pub status: String,
    /// Column `attempts`.
    pub attempts: i32,
    /// Column `next_attempt_at`.
    pub next_attempt_at: DateTimeUtc,
    /// Column `last_error`.
    pub last_error: Option<String>,
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
    /// Column `sent_at`.
    pub sent_at: Option<DateTimeUtc>,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
