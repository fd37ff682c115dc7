//! A receiver's optional AS2 endpoint (table `receiver_as2_endpoints`): where rekey sends test
//! messages that the receiver's own AS2 system answers with signed MDNs. The tenant
//! administrator sets and removes it (audited); anyone who may see the receiver may read it.
//! The store keeps the URL as text: checking it is the HTTP client's job, not the store's.

use chrono::{DateTime, Utc};
use rekey_crypto::{Certificate, DigestAlg};
use rekey_model::{As2Id, ReceiverName, TenantId};
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait};

use crate::audit::{self, AuditRecord};
use crate::db::now;
use crate::entity::receiver_as2_endpoint as row;
use crate::error::{Result, StoreError};
use crate::receivers;

/// A receiver's AS2 endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As2Config {
    /// Where test messages are POSTed.
    pub url: String,
    /// The identifier the receiver knows the sender by (`AS2-From`).
    pub as2_from: As2Id,
    /// The receiver's identifier (`AS2-To`).
    pub as2_to: As2Id,
    /// The certificate the receiver's system signs its MDNs with.
    pub mdn_certificate: Certificate,
    /// The MIC algorithm asked for.
    pub mic: DigestAlg,
}

impl std::fmt::Display for As2Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "url={} as2_from={} as2_to={} mdn_certificate=SHA-256 {} mic={}",
            self.url,
            self.as2_from,
            self.as2_to,
            self.mdn_certificate.fingerprint(),
            self.mic.name()
        )
    }
}

/// A stored endpoint and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As2Endpoint {
    /// The configuration.
    pub config: As2Config,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("receiver_as2_endpoints: {what}"))
}

fn from_row(m: row::Model) -> Result<As2Endpoint> {
    Ok(As2Endpoint {
        config: As2Config {
            url: m.url,
            as2_from: As2Id::parse(&m.as2_from).map_err(corrupt)?,
            as2_to: As2Id::parse(&m.as2_to).map_err(corrupt)?,
            mdn_certificate: Certificate::from_der(&m.mdn_cert_der).map_err(corrupt)?,
            mic: m.mic_alg.parse().map_err(corrupt)?,
        },
        updated_at: m.updated_at,
    })
}

/// The receiver's AS2 endpoint, if it has one.
pub async fn get(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
    name: &ReceiverName,
) -> Result<Option<As2Endpoint>> {
    let r = receivers::model(conn, tenant, name).await?;
    by_receiver(conn, r.id).await
}

/// The AS2 endpoint of the receiver with this id, if it has one.
pub async fn by_receiver(
    conn: &impl ConnectionTrait,
    receiver: uuid::Uuid,
) -> Result<Option<As2Endpoint>> {
    row::Entity::find_by_id(receiver)
        .one(conn)
        .await?
        .map(from_row)
        .transpose()
}

/// Sets (or replaces) the receiver's AS2 endpoint.
pub async fn set(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    config: &As2Config,
    actor: &str,
) -> Result<As2Endpoint> {
    audit::lock_head(txn).await?;
    let r = receivers::model(txn, tenant, name).await?;
    let before = by_receiver(txn, r.id).await?;
    let at = now();
    let model = row::ActiveModel {
        receiver_id: Set(r.id),
        url: Set(config.url.clone()),
        as2_from: Set(config.as2_from.to_string()),
        as2_to: Set(config.as2_to.to_string()),
        mdn_cert_der: Set(config.mdn_certificate.to_der().to_vec()),
        mic_alg: Set(config.mic.name().to_string()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    if before.is_some() {
        row::Entity::delete_by_id(r.id).exec(txn).await?;
    }
    row::Entity::insert(model)
        .exec_without_returning(txn)
        .await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.as2.set",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: before.map(|b| b.config.to_string()).unwrap_or_default(),
            after: config.to_string(),
        },
    )
    .await?;
    Ok(As2Endpoint {
        config: config.clone(),
        updated_at: at,
    })
}

/// Removes the receiver's AS2 endpoint; refuses when it has none.
pub async fn remove(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    name: &ReceiverName,
    actor: &str,
) -> Result<()> {
    audit::lock_head(txn).await?;
    let r = receivers::model(txn, tenant, name).await?;
    let Some(before) = by_receiver(txn, r.id).await? else {
        return Err(StoreError::NoAs2Endpoint {
            receiver: name.clone(),
        });
    };
    row::Entity::delete_by_id(r.id).exec(txn).await?;
    audit::append(
        txn,
        AuditRecord {
            actor,
            action: "receiver.as2.remove",
            tenant: Some(tenant),
            subject: format!("receiver {name}"),
            before: before.config.to_string(),
            after: String::new(),
        },
    )
    .await?;
    Ok(())
}

/// What the receiver's system last answered a step's test message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// `processed`, MDN and MIC verified: the step was confirmed.
    Accepted,
    /// A verified MDN refusing the message (`processed/error: ...`).
    Refused,
    /// No answer, or an HTTP error instead of an MDN.
    Unreachable,
    /// An answer that does not verify (signature, MIC, other message).
    Unverified,
    /// The receiver's system accepted, but rekey's engine refused to complete the step.
    NotCompleted,
}

impl CheckOutcome {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckOutcome::Accepted => "accepted",
            CheckOutcome::Refused => "refused",
            CheckOutcome::Unreachable => "unreachable",
            CheckOutcome::Unverified => "unverified",
            CheckOutcome::NotCompleted => "not_completed",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        [
            CheckOutcome::Accepted,
            CheckOutcome::Refused,
            CheckOutcome::Unreachable,
            CheckOutcome::Unverified,
            CheckOutcome::NotCompleted,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| corrupt(format!("unknown outcome {s:?}")))
    }
}

impl std::fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The AS2 check of one receiver step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// The renewal.
    pub renewal: uuid::Uuid,
    /// The step.
    pub step: String,
    /// Test messages sent so far.
    pub attempts: i64,
    /// When the next may be sent.
    pub next_at: DateTime<Utc>,
    /// The last outcome.
    pub outcome: CheckOutcome,
    /// The receiver's words, or what went wrong.
    pub detail: String,
    /// The last verified MDN as received (`Content-Type`, blank line, body): the evidence.
    #[serde(skip)]
    pub mdn: Option<Vec<u8>>,
    /// When it was recorded.
    pub updated_at: DateTime<Utc>,
}

fn check_from(m: crate::entity::as2_check::Model) -> Result<Check> {
    Ok(Check {
        renewal: m.renewal_id,
        step: m.step,
        attempts: m.attempts,
        next_at: m.next_at,
        outcome: CheckOutcome::parse(&m.outcome)?,
        detail: m.detail,
        mdn: m.mdn,
        updated_at: m.updated_at,
    })
}

/// The AS2 check of `step` of `renewal`, if one was made.
pub async fn check(
    conn: &impl ConnectionTrait,
    renewal: uuid::Uuid,
    step: &str,
) -> Result<Option<Check>> {
    crate::entity::as2_check::Entity::find_by_id((renewal, step.to_string()))
        .one(conn)
        .await?
        .map(check_from)
        .transpose()
}

/// Every AS2 check of `renewal`, by step.
pub async fn checks(conn: &impl ConnectionTrait, renewal: uuid::Uuid) -> Result<Vec<Check>> {
    use crate::entity::as2_check::{Column, Entity};
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    Entity::find()
        .filter(Column::RenewalId.eq(renewal))
        .order_by_asc(Column::Step)
        .all(conn)
        .await?
        .into_iter()
        .map(check_from)
        .collect()
}

/// Records the outcome of a test message: one more attempt, the next allowed at `next_at`;
/// `mdn` is the verified MDN it got, if any (an earlier one is kept when this one has none).
pub async fn record_check(
    conn: &impl ConnectionTrait,
    renewal: uuid::Uuid,
    step: &str,
    outcome: CheckOutcome,
    detail: &str,
    mdn: Option<&[u8]>,
    next_at: DateTime<Utc>,
) -> Result<Check> {
    use crate::entity::as2_check::{ActiveModel, Entity};
    let before = check(conn, renewal, step).await?;
    let attempts = before.as_ref().map_or(0, |c| c.attempts) + 1;
    let mdn = mdn
        .map(<[u8]>::to_vec)
        .or_else(|| before.and_then(|c| c.mdn));
    Entity::delete_by_id((renewal, step.to_string()))
        .exec(conn)
        .await?;
    let at = now();
    Entity::insert(ActiveModel {
        renewal_id: Set(renewal),
        step: Set(step.to_string()),
        attempts: Set(attempts),
        next_at: Set(crate::db::to_micros(next_at)),
        outcome: Set(outcome.as_str().to_string()),
        detail: Set(detail.to_string()),
        mdn: Set(mdn.clone()),
        updated_at: Set(at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(Check {
        renewal,
        step: step.to_string(),
        attempts,
        next_at: crate::db::to_micros(next_at),
        outcome,
        detail: detail.to_string(),
        mdn,
        updated_at: at,
    })
}
