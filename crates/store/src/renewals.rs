//! The `renewals` table: one row per renewal, holding the engine's [`Renewal`] as JSON with a
//! `version` for optimistic concurrency. The shell inserts a renewal when it starts, loads it
//! for each event and saves it with [`save_if_version`] in the event's transaction; at most one
//! renewal per tenant and alias is `running` (a partial unique index, migration 3).
//!
//! Nothing here decides a step: the engine does.

use chrono::{DateTime, Utc};
use rekey_engine::{Renewal, RenewalStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use crate::entity::renewal;
use crate::error::{Result, StoreError};
use rekey_model::{Alias, ReceiverId, TenantId};

/// A renewal as loaded, with the version a save must still find.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The engine's state.
    pub renewal: Renewal,
    /// Its row's version.
    pub version: i64,
}

fn to_json(r: &Renewal) -> Result<String> {
    serde_json::to_string(r).map_err(|e| StoreError::Corrupt(format!("renewal state: {e}")))
}

fn from_json(s: &str) -> Result<Renewal> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("renewal state: {e}")))
}

/// Inserts the new renewal `r` at version 0. `Ok(false)`: the database refused it because the
/// alias already has a running renewal (the one-live-renewal index); on PostgreSQL the
/// transaction is then aborted and must be dropped.
pub async fn insert(
    conn: &impl ConnectionTrait,
    r: &Renewal,
    tenant: TenantId,
    receiver: ReceiverId,
    now: DateTime<Utc>,
) -> Result<bool> {
    let inserted = renewal::ActiveModel {
        id: Set(r.id),
        tenant_id: Set(tenant.as_uuid()),
        receiver_id: Set(Some(receiver.as_uuid())),
        alias: Set(r.alias.to_string()),
        procedure: Set(r.procedure.to_string()),
        status: Set(r.status.as_str().into()),
        state: Set(to_json(r)?),
        version: Set(0),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await;
    match inserted {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The running renewal of `alias`, if there is one.
pub async fn running(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &Alias,
) -> Result<Option<Uuid>> {
    Ok(renewal::Entity::find()
        .filter(renewal::Column::TenantId.eq(tenant.as_uuid()))
        .filter(renewal::Column::Alias.eq(alias.as_str()))
        .filter(renewal::Column::Status.eq(RenewalStatus::Running.as_str()))
        .one(conn)
        .await?
        .map(|m| m.id))
}

/// Renewal `id` with its version; `None` when there is no such renewal.
pub async fn load(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Loaded>> {
    match renewal::Entity::find_by_id(id).one(conn).await? {
        Some(m) => Ok(Some(Loaded {
            renewal: from_json(&m.state)?,
            version: m.version,
        })),
        None => Ok(None),
    }
}

/// Saves `r` if its row still has `version` (and bumps it); `false` when someone else changed
/// the renewal since it was loaded.
pub async fn save_if_version(
    conn: &impl ConnectionTrait,
    r: &Renewal,
    version: i64,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = renewal::Entity::update_many()
        .col_expr(renewal::Column::State, Expr::value(to_json(r)?))
        .col_expr(renewal::Column::Status, Expr::value(r.status.as_str()))
        .col_expr(renewal::Column::Version, Expr::value(version + 1))
        .col_expr(renewal::Column::UpdatedAt, Expr::value(now))
        .filter(renewal::Column::Id.eq(r.id))
        .filter(renewal::Column::Version.eq(version))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every renewal of a tenant (or all), newest first.
pub async fn list(conn: &impl ConnectionTrait, tenant: Option<TenantId>) -> Result<Vec<Renewal>> {
    let mut q = renewal::Entity::find().order_by_desc(renewal::Column::CreatedAt);
    if let Some(t) = tenant {
        q = q.filter(renewal::Column::TenantId.eq(t.as_uuid()));
    }
    q.all(conn)
        .await?
        .iter()
        .map(|m| from_json(&m.state))
        .collect()
}

/// Every renewal of `alias` in `tenant`, in no particular order.
pub async fn of_alias(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    alias: &str,
) -> Result<Vec<Renewal>> {
    renewal::Entity::find()
        .filter(renewal::Column::TenantId.eq(tenant.as_uuid()))
        .filter(renewal::Column::Alias.eq(alias))
        .all(conn)
        .await?
        .iter()
        .map(|m| from_json(&m.state))
        .collect()
}
