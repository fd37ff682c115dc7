//! Table `receiver_trusted_certs`: a certificate a receiver trusts.

use sea_orm::entity::prelude::*;

/// A certificate a receiver trusts.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receiver_trusted_certs")]
pub struct Model {
    /// Column `receiver_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub receiver_id: Uuid,
    /// Column `fingerprint`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub fingerprint: String,
    /// Column `der`.
    pub der: Vec<u8>,
    /// Column `subject`.
    pub subject: String,
    /// Column `not_after`.
    pub not_after: DateTimeUtc,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
