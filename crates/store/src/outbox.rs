//! The `outbox` table: mail written in the same transaction as the change that causes it, and
//! delivered later by the notifier's dispatcher.
//!
//! Every mail is queued through [`enqueue`] with a stable Message-ID made by [`message_id`]
//! from what the mail is about: the same notice to the same person is queued once, and a
//! retried delivery carries the same Message-ID. The dispatcher claims due rows with
//! [`crate::lease::claim`] ([`crate::lease::Queue::Outbox`]), reads them back with [`leased`],
//! confirms it still holds a row just before sending ([`still_leased`]) and records the outcome
//! ([`record`]); `rekey mail retry` re-queues a row ([`requeue`]).
//!
//! A row's content is an [`OutboxMail`] (its `state` column); nothing here renders or sends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::outbox;
use crate::error::{Result, StoreError};
use crate::lease::Lease;
use crate::mail::OutboxMail;
use rekey_model::{OutboxStatus, TenantId};

/// One outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Row id.
    pub id: Uuid,
    /// Tenant.
    pub tenant_id: Uuid,
    /// The renewal the mail is about, if any.
    pub renewal_id: Option<Uuid>,
    /// The stable Message-ID header, unique.
    pub message_id: String,
    /// The recipient's address.
    pub recipients: String,
    /// Subject.
    pub subject: String,
    /// The [`OutboxMail`], JSON.
    pub state: String,
    /// Where it stands.
    pub status: OutboxStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// Not sent before this.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Bumped on every change.
    pub version: i64,
    /// Claim token while leased.
    pub lease_owner: Option<String>,
    /// Lease end.
    pub lease_until: Option<DateTime<Utc>>,
    /// Queued.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Delivered.
    pub sent_at: Option<DateTime<Utc>>,
}

impl TryFrom<outbox::Model> for OutboxRow {
    type Error = StoreError;
    fn try_from(m: outbox::Model) -> Result<Self> {
        let status = m
            .status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("outbox row {}: {e}", m.id)))?;
        Ok(OutboxRow {
            id: m.id,
            tenant_id: m.tenant_id,
            renewal_id: m.renewal_id,
            message_id: m.message_id,
            recipients: m.recipients,
            subject: m.subject,
            state: m.state,
            status,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            version: m.version,
            lease_owner: m.lease_owner,
            lease_until: m.lease_until,
            created_at: m.created_at,
            updated_at: m.updated_at,
            sent_at: m.sent_at,
        })
    }
}

fn rows(models: Vec<outbox::Model>) -> Result<Vec<OutboxRow>> {
    models.into_iter().map(OutboxRow::try_from).collect()
}

/// One mail to queue.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    /// Tenant.
    pub tenant: TenantId,
    /// The renewal it is about, if any.
    pub renewal: Option<Uuid>,
    /// From [`message_id`].
    pub message_id: String,
    /// The one recipient's address.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Content.
    pub mail: OutboxMail,
}

/// The stable Message-ID of the mail identified by `parts` (renewal, step, kind, recipient, …):
/// `<hex of the first 16 bytes of SHA-256 over each part followed by a NUL byte>@rekey>`.
pub fn message_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("<{}@rekey>", hex::encode(&h.finalize()[..16]))
}

/// Whether a row with this Message-ID was ever queued.
async fn exists(conn: &impl ConnectionTrait, message_id: &str) -> Result<bool> {
    Ok(outbox::Entity::find()
        .filter(outbox::Column::MessageId.eq(message_id))
        .one(conn)
        .await?
        .is_some())
}

/// Queues `msg` to be sent from `now`, in the caller's transaction; `false` (and nothing
/// written) when a row with its Message-ID was queued before: the same mail is sent once.
pub async fn enqueue(
    conn: &impl ConnectionTrait,
    msg: OutboxMessage,
    now: DateTime<Utc>,
) -> Result<bool> {
    if exists(conn, &msg.message_id).await? {
        return Ok(false);
    }
    outbox::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(msg.tenant.as_uuid()),
        renewal_id: Set(msg.renewal),
        message_id: Set(msg.message_id),
        recipients: Set(msg.recipient),
        subject: Set(msg.subject),
        state: Set(msg.mail.to_json()),
        status: Set(OutboxStatus::Queued.as_str().into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_error: Set(None),
        version: Set(0),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(true)
}

/// The queued rows `lease` holds, in sending order.
pub async fn leased(conn: &impl ConnectionTrait, lease: &Lease) -> Result<Vec<OutboxRow>> {
    rows(
        outbox::Entity::find()
            .filter(outbox::Column::LeaseOwner.eq(lease.token.clone()))
            .filter(outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
            .order_by_asc(outbox::Column::NextAttemptAt)
            .order_by_asc(outbox::Column::CreatedAt)
            .all(conn)
            .await?,
    )
}

/// Confirms (and marks, in `updated_at`) that `row` is still queued and leased as it was
/// claimed, just before it is sent.
pub async fn still_leased(
    conn: &impl ConnectionTrait,
    row: &OutboxRow,
    now: DateTime<Utc>,
) -> Result<bool> {
    let res = outbox::Entity::update_many()
        .col_expr(outbox::Column::UpdatedAt, Expr::value(now))
        .filter(outbox::Column::Id.eq(row.id))
        .filter(outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
        .filter(outbox::Column::LeaseOwner.eq(row.lease_owner.clone()))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// What became of a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Sent: the row becomes `sent`.
    Sent,
    /// Not yet: tried again from `at`.
    Retry {
        /// Next attempt.
        at: DateTime<Utc>,
        /// Why.
        error: String,
    },
    /// Given up: the row becomes `failed`.
    Failed {
        /// Why.
        error: String,
    },
}

/// Records the outcome of attempt number `attempts` on `row` and gives its lease back — only
/// while the lease it was claimed with still holds (if it ran out and someone else took the
/// row, their outcome stands); `false` then.
pub async fn record(
    conn: &impl ConnectionTrait,
    row: &OutboxRow,
    attempts: i32,
    outcome: &Delivery,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut q = outbox::Entity::update_many()
        .col_expr(outbox::Column::Attempts, Expr::value(attempts))
        .col_expr(outbox::Column::LeaseOwner, Expr::value(None::<String>))
        .col_expr(
            outbox::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .col_expr(
            outbox::Column::Version,
            Expr::col(outbox::Column::Version).add(1),
        )
        .col_expr(outbox::Column::UpdatedAt, Expr::value(now));
    q = match outcome {
        Delivery::Sent => q
            .col_expr(
                outbox::Column::Status,
                Expr::value(OutboxStatus::Sent.as_str()),
            )
            .col_expr(outbox::Column::SentAt, Expr::value(now))
            .col_expr(outbox::Column::LastError, Expr::value(None::<String>)),
        Delivery::Retry { at, error } => q
            .col_expr(outbox::Column::NextAttemptAt, Expr::value(*at))
            .col_expr(outbox::Column::LastError, Expr::value(error.clone())),
        Delivery::Failed { error } => q
            .col_expr(
                outbox::Column::Status,
                Expr::value(OutboxStatus::Failed.as_str()),
            )
            .col_expr(outbox::Column::LastError, Expr::value(error.clone())),
    };
    let res = q
        .filter(outbox::Column::Id.eq(row.id))
        .filter(outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
        .filter(outbox::Column::LeaseOwner.eq(row.lease_owner.clone()))
        .exec(conn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// One row by id.
pub async fn get(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<OutboxRow>> {
    outbox::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(OutboxRow::try_from)
        .transpose()
}

/// Queues `row` again to be sent from `now` with a fresh retry period (attempts reset, lease
/// dropped); returns it as stored. Whether it may be re-queued is the caller's decision.
pub async fn requeue(
    conn: &impl ConnectionTrait,
    row: &OutboxRow,
    now: DateTime<Utc>,
) -> Result<OutboxRow> {
    let m = outbox::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(row.id),
        status: Set(OutboxStatus::Queued.as_str().into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_owner: Set(None),
        lease_until: Set(None),
        version: Set(row.version + 1),
        updated_at: Set(now),
        ..Default::default()
    };
    m.update(conn).await?.try_into()
}

/// Rows, newest first, optionally only those with `status`, optionally of one tenant.
pub async fn list(
    conn: &impl ConnectionTrait,
    status: Option<OutboxStatus>,
    tenant: Option<Uuid>,
) -> Result<Vec<OutboxRow>> {
    let mut q = outbox::Entity::find()
        .order_by_desc(outbox::Column::CreatedAt)
        .order_by_asc(outbox::Column::MessageId);
    if let Some(s) = status {
        q = q.filter(outbox::Column::Status.eq(s.as_str()));
    }
    if let Some(t) = tenant {
        q = q.filter(outbox::Column::TenantId.eq(t));
    }
    rows(q.all(conn).await?)
}

/// The rows about `renewal`, oldest first.
pub async fn of_renewal(conn: &impl ConnectionTrait, renewal: Uuid) -> Result<Vec<OutboxRow>> {
    rows(
        outbox::Entity::find()
            .filter(outbox::Column::RenewalId.eq(renewal))
            .order_by_asc(outbox::Column::CreatedAt)
            .all(conn)
            .await?,
    )
}

/// How many rows there are in each status (every [`OutboxStatus`] always listed).
pub async fn count_by_status(conn: &impl ConnectionTrait) -> Result<BTreeMap<String, u64>> {
    let statuses: Vec<String> = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::Status)
        .into_tuple()
        .all(conn)
        .await?;
    let mut depth: BTreeMap<String, u64> = OutboxStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for s in statuses {
        *depth.entry(s).or_default() += 1;
    }
    Ok(depth)
}
