//! Table `keystore_entries`: a keystore entry, current or in history.

use sea_orm::entity::prelude::*;

/// A keystore entry, current or in history.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "keystore_entries")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `alias`.
    pub alias: String,
    /// Column `is_current`.
    pub is_current: bool,
    /// Column `key_nonce`.
    pub key_nonce: Vec<u8>,
    /// Column `key_ciphertext`.
    pub key_ciphertext: Vec<u8>,
    /// Column `token_key_id`: hex CKA_ID of a key kept on a PKCS#11 token.
    pub token_key_id: Option<String>,
    /// Column `kek_id`.
    pub kek_id: String,
    /// Column `key_bits`.
    pub key_bits: i32,
    /// Column `fingerprint`.
    pub fingerprint: String,
    /// Column `subject`.
    pub subject: String,
    /// Column `not_before`.
    pub not_before: DateTimeUtc,
    /// Column `not_after`.
    pub not_after: DateTimeUtc,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
    /// Column `archived_at`.
    pub archived_at: Option<DateTimeUtc>,
    /// Column `archived_reason`.
    pub archived_reason: Option<String>,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
