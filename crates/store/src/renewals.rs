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
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
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

/// Which renewals a read covers: all of them (the system's own passes, an operator's CLI), or
/// those of some tenants and receivers — a person's grants — so that what a person's inbox or
/// task list costs grows with what they hold a role in, not with everything ever stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every renewal.
    All,
    /// The renewals of these tenants, and those that reach these receivers.
    Of {
        /// Tenants (a tenant role in them).
        tenants: Vec<TenantId>,
        /// Receivers (their receiver administrator).
        receivers: Vec<ReceiverId>,
    },
}

impl Scope {
    /// The renewals a holder of `grants` may see: those of the tenants they hold a tenant role
    /// in and those of the receivers they administer (`signer` sees none).
    pub fn of_grants(grants: &[rekey_model::Grant]) -> Scope {
        let mut tenants = Vec::new();
        let mut receivers = Vec::new();
        for g in grants {
            match g {
                rekey_model::Grant::TenantAdmin { tenant }
                | rekey_model::Grant::IntegrationDeveloper { tenant } => tenants.push(*tenant),
                rekey_model::Grant::ReceiverAdmin { receiver } => receivers.push(*receiver),
                rekey_model::Grant::Signer { .. } => {}
            }
        }
        Scope::Of { tenants, receivers }
    }
}

/// The running renewals in `scope`, newest first — what task lists and reminders read. Served
/// by the `(status, created_at)` index: finished renewals are not read at all.
pub async fn running_in(conn: &impl ConnectionTrait, scope: &Scope) -> Result<Vec<Renewal>> {
    page(conn, scope, Some(RenewalStatus::Running), None, None).await
}

/// One page of the renewals in `scope` (of `status` when given), newest first: at most
/// `limit`, starting after the renewal `after` (the last one of the previous page) when given.
/// An `after` that names no renewal in the table gives an empty page.
pub async fn page(
    conn: &impl ConnectionTrait,
    scope: &Scope,
    status: Option<RenewalStatus>,
    after: Option<Uuid>,
    limit: Option<u64>,
) -> Result<Vec<Renewal>> {
    let cursor = match after {
        Some(id) => match renewal::Entity::find_by_id(id).one(conn).await? {
            Some(last) => Some((last.created_at, last.id)),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    // One indexed query per tenant and per receiver of the scope (each reads only its own
    // renewals, newest first, at most `limit`), merged: an `OR` of them would let the database
    // walk every renewal of the status instead.
    let parts: Vec<Condition> = match scope {
        Scope::All => vec![Condition::all()],
        Scope::Of { tenants, receivers } => tenants
            .iter()
            .map(|t| Condition::all().add(renewal::Column::TenantId.eq(t.as_uuid())))
            .chain(
                receivers
                    .iter()
                    .map(|r| Condition::all().add(renewal::Column::ReceiverId.eq(r.as_uuid()))),
            )
            .collect(),
    };
    let mut models: Vec<renewal::Model> = Vec::new();
    for part in parts {
        let mut q = renewal::Entity::find()
            .filter(part)
            .order_by_desc(renewal::Column::CreatedAt)
            .order_by_desc(renewal::Column::Id);
        if let Some(s) = status {
            q = q.filter(renewal::Column::Status.eq(s.as_str()));
        }
        if let Some((at, id)) = cursor {
            // Keyset pagination: strictly after the cursor in (created_at, id) descending order.
            q = q.filter(
                Condition::any().add(renewal::Column::CreatedAt.lt(at)).add(
                    Condition::all()
                        .add(renewal::Column::CreatedAt.eq(at))
                        .add(renewal::Column::Id.lt(id)),
                ),
            );
        }
        if let Some(n) = limit {
            q = q.limit(n);
        }
        for m in q.all(conn).await? {
            if !models.iter().any(|x| x.id == m.id) {
                models.push(m);
            }
        }
    }
    models.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    if let Some(n) = limit {
        models.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    models.iter().map(|m| from_json(&m.state)).collect()
}

/// How many renewals there are per (status, procedure), counted by the database.
pub async fn count_by_status(conn: &impl ConnectionTrait) -> Result<Vec<(String, String, i64)>> {
    Ok(renewal::Entity::find()
        .select_only()
        .column(renewal::Column::Status)
        .column(renewal::Column::Procedure)
        .column_as(renewal::Column::Id.count(), "n")
        .group_by(renewal::Column::Status)
        .group_by(renewal::Column::Procedure)
        .into_tuple::<(String, String, i64)>()
        .all(conn)
        .await?)
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
