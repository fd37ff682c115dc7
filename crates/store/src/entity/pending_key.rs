//! Table `pending_keys`: a renewal's new key before it enters the keystore.

use sea_orm::entity::prelude::*;

/// A renewal's new key before it enters the keystore.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_keys")]
pub struct Model {
    /// Column `id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Column `tenant_id`.
    pub tenant_id: Uuid,
    /// Column `renewal_id`.
    pub renewal_id: Uuid,
    /// Column `alias`.
    pub alias: String,
    /// Column `kek_id`.
    pub kek_id: String,
    /// Column `key_nonce`.
    pub key_nonce: Vec<u8>,
    /// Column `key_ciphertext`.
    pub key_ciphertext: Vec<u8>,
    /// Column `token_key_id`: hex CKA_ID of a key kept on a PKCS#11 token.
    pub token_key_id: Option<String>,
    /// Column `chain_pem`.
    pub chain_pem: String,
    /// Column `csr_pem`.
    pub csr_pem: Option<String>,
    /// Column `fingerprint`.
    pub fingerprint: Option<String>,
    /// Column `created_at`.
    pub created_at: DateTimeUtc,
    /// Column `updated_at`.
    pub updated_at: DateTimeUtc,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
