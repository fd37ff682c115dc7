//! Tenants: every other record belongs to one.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder,
};

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::tenant;
use crate::error::{Result, StoreError};
use rekey_model::{TenantId, TenantName};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name.
    pub name: TenantName,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

fn from_model(m: tenant::Model) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::from_uuid(m.id),
        name: TenantName::parse(&m.name)
            .map_err(|e| StoreError::Corrupt(format!("tenant {}: {e}", m.id)))?,
        created_at: m.created_at,
    })
}

/// Creates a tenant; refuses a name already taken.
pub async fn create(txn: &DatabaseTransaction, name: &TenantName, actor: &str) -> Result<Tenant> {
    audit::lock_head(txn).await?;
    let taken = tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name.as_str()))
        .one(txn)
        .await?;
    if taken.is_some() {
        return Err(StoreError::DuplicateTenant(name.to_string()));
    }
    let at = now();
    let id = TenantId::random();
    tenant::Entity::insert(tenant::ActiveModel {
        id: Set(id.as_uuid()),
        name: Set(name.to_string()),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec_without_returning(txn)
    .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "tenant.create",
            tenant: Some(id),
            subject: format!("tenant {name}"),
            before: String::new(),
            after: format!("id {id}"),
        },
    )
    .await?;
    Ok(Tenant {
        id,
        name: name.clone(),
        created_at: at,
    })
}

/// The tenant with this id.
pub async fn get(conn: &impl ConnectionTrait, id: TenantId) -> Result<Tenant> {
    let m = tenant::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownTenant(id.to_string()))?;
    from_model(m)
}

/// The tenant with this name.
pub async fn by_name(conn: &impl ConnectionTrait, name: &TenantName) -> Result<Tenant> {
    let m = tenant::Entity::find()
        .filter(tenant::Column::Name.eq(name.as_str()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::UnknownTenant(format!("{:?}", name.as_str())))?;
    from_model(m)
}

/// Every tenant, by name.
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<Tenant>> {
    tenant::Entity::find()
        .order_by_asc(tenant::Column::Name)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Fails with [`StoreError::UnknownTenant`] unless the tenant exists.
pub(crate) async fn ensure(conn: &impl ConnectionTrait, id: TenantId) -> Result<()> {
    get(conn, id).await.map(|_| ())
}
