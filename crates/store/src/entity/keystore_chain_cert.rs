//! Table `keystore_chain_certs`: one certificate of a keystore entry's chain.

use sea_orm::entity::prelude::*;

/// One certificate of a keystore entry's chain.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "keystore_chain_certs")]
pub struct Model {
    /// Column `entry_id`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub entry_id: Uuid,
    /// Column `position`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub position: i32,
    /// Column `der`.
    pub der: Vec<u8>,
}

/// No relations are declared: the store joins by hand.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
