//! The `timers` table: things a renewal's engine asked to happen at a time (reminders,
//! escalations, window openings and closings). The shell schedules and cancels them in the
//! step's transaction; the scheduler claims due ones ([`crate::lease::claim`] with
//! [`crate::lease::Queue::Timers`]), fires each in one transaction with [`mark_fired`], and
//! gives failed ones back with [`settle`].
//!
//! A row's `state` is `{"step": …, "kind": …}`: the engine's [`Event::Timer`] it stands for.
//! Nothing here decides what a timer does.

use chrono::{DateTime, Utc};
use rekey_engine::{Event, TimerKind};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use crate::entity::timer;
use crate::error::{Result, StoreError};
use crate::lease::Lease;
use rekey_model::{TenantId, TimerStatus};

/// One timer row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Row id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// The renewal it belongs to.
    pub renewal_id: Option<Uuid>,
    /// `reminder`, `escalation`, `window_open`, …
    pub kind: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Where it stands.
    pub status: TimerStatus,
    /// JSON `{"step": …, "kind": …}`.
    pub state: String,
    /// Times firing was attempted.
    pub attempts: i32,
    /// Bumped on every change.
    pub version: i64,
    /// Claim token while leased.
    pub lease_owner: Option<String>,
    /// Lease end; after a transient failure, when the retry may happen.
    pub lease_until: Option<DateTime<Utc>>,
    /// Written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<timer::Model> for Timer {
    type Error = StoreError;
    fn try_from(m: timer::Model) -> Result<Self> {
        let status = m
            .status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("timer {}: {e}", m.id)))?;
        Ok(Timer {
            id: m.id,
            tenant_id: m.tenant_id,
            renewal_id: m.renewal_id,
            kind: m.kind,
            due_at: m.due_at,
            status,
            state: m.state,
            attempts: m.attempts,
            version: m.version,
            lease_owner: m.lease_owner,
            lease_until: m.lease_until,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

#[derive(serde::Deserialize)]
struct State {
    step: Option<String>,
    kind: TimerKind,
}

impl Timer {
    /// The engine event this timer stands for; `None` when its state cannot be read.
    pub fn event(&self) -> Option<Event> {
        let s: State = serde_json::from_str(&self.state).ok()?;
        Some(Event::Timer {
            step: s.step,
            kind: s.kind,
        })
    }
}

/// Schedules [`Event::Timer`] `{step, kind}` for `renewal` at `at`, in the caller's
/// transaction.
pub async fn schedule(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    renewal: Uuid,
    step: Option<String>,
    kind: TimerKind,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    let kind_name = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let state = serde_json::json!({ "step": step, "kind": kind }).to_string();
    timer::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant.as_uuid()),
        renewal_id: Set(Some(renewal)),
        kind: Set(kind_name),
        due_at: Set(at),
        status: Set(TimerStatus::Pending.as_str().into()),
        state: Set(state),
        attempts: Set(0),
        version: Set(0),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

/// Cancels every pending timer of `renewal`.
pub async fn cancel_pending(
    conn: &impl ConnectionTrait,
    renewal: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    timer::Entity::update_many()
        .col_expr(
            timer::Column::Status,
            Expr::value(TimerStatus::Cancelled.as_str()),
        )
        .col_expr(timer::Column::UpdatedAt, Expr::value(now))
        .filter(timer::Column::RenewalId.eq(renewal))
        .filter(timer::Column::Status.eq(TimerStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(())
}

/// The pending rows `lease` holds, earliest due first.
pub async fn leased(conn: &impl ConnectionTrait, lease: &Lease) -> Result<Vec<Timer>> {
    timer::Entity::find()
        .filter(timer::Column::LeaseOwner.eq(lease.token.clone()))
        .filter(timer::Column::Status.eq(TimerStatus::Pending.as_str()))
        .order_by_asc(timer::Column::DueAt)
        .all(conn)
        .await?
        .into_iter()
        .map(Timer::try_from)
        .collect()
}

/// Marks timer `id` fired and gives its lease back, only while `token` still holds it;
/// `false` when the lease was lost. Call it in the transaction that applies the timer's
/// event, so that both commit together.
pub async fn mark_fired(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    release(conn, id, token, TimerStatus::Fired, None, now).await
}

/// Gives the lease of timer `id` back with `status` (`Pending` again means: retry, not
/// before `retry_at`), only while `token` still holds it; `false` when the lease was lost.
pub async fn settle(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    status: TimerStatus,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool> {
    release(conn, id, token, status, retry_at, now).await
}

async fn release(
    conn: &impl ConnectionTrait,
    id: Uuid,
    token: &str,
    status: TimerStatus,
    lease_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = timer::Entity::update_many()
        .col_expr(timer::Column::Status, Expr::value(status.as_str()))
        .col_expr(
            timer::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(timer::Column::LeaseUntil, Expr::value(lease_until))
        .col_expr(
            timer::Column::Attempts,
            Expr::col(timer::Column::Attempts).add(1),
        )
        .col_expr(
            timer::Column::Version,
            Expr::col(timer::Column::Version).add(1),
        )
        .col_expr(timer::Column::UpdatedAt, Expr::value(now))
        .filter(timer::Column::Id.eq(id))
        .filter(timer::Column::LeaseOwner.eq(token))
        .filter(timer::Column::Status.eq(TimerStatus::Pending.as_str()))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Every timer of `renewal`, earliest due first.
pub async fn of_renewal(conn: &impl ConnectionTrait, renewal: Uuid) -> Result<Vec<Timer>> {
    timer::Entity::find()
        .filter(timer::Column::RenewalId.eq(renewal))
        .order_by_asc(timer::Column::DueAt)
        .all(conn)
        .await?
        .into_iter()
        .map(Timer::try_from)
        .collect()
}

/// Every timer, earliest due first (for inspection: `rekey` has no user path that lists them
/// all, the tests and crash checks do).
pub async fn all(conn: &impl ConnectionTrait) -> Result<Vec<Timer>> {
    timer::Entity::find()
        .order_by_asc(timer::Column::DueAt)
        .all(conn)
        .await?
        .into_iter()
        .map(Timer::try_from)
        .collect()
}
