//! Table `as2_checks`: the AS2 check of a receiver step of a running renewal.

use sea_orm::entity::prelude::*;

/// One step's AS2 check.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "as2_checks")]
pub struct Model {
    /// Column `renewal_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub renewal_id: Uuid,
    /// Column `step`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub step: String,
    /// Column `attempts`.
    pub attempts: i64,
    /// Column `next_at`.
    pub next_at: DateTimeUtc,
    /// Column `outcome`.
    pub outcome: String,
    /// Column `detail`.
    pub detail: String,
    /// Column `mdn`.
    pub mdn: Option<Vec<u8>>,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
