//! Table `receiver_as2_endpoints`: a receiver's optional AS2 endpoint.

use sea_orm::entity::prelude::*;

/// A receiver's AS2 endpoint.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "receiver_as2_endpoints")]
pub struct Model {
    /// Column `receiver_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub receiver_id: Uuid,
    /// Column `url`.
    pub url: String,
    /// Column `as2_from`.
    pub as2_from: String,
    /// Column `as2_to`.
    pub as2_to: String,
    /// Column `mdn_cert_der`.
    pub mdn_cert_der: Vec<u8>,
    /// Column `mic_alg`.
    pub mic_alg: String,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
