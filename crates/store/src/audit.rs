//! The append-only, hash-chained audit log.
//!
//! Every mutating operation of the store appends one entry in the same transaction as the
//! change. Entry `n` stores `prev_hash` (the hash of entry `n-1`, or 64 zeros for the first)
//! and `hash = SHA-256(prev_hash, seq, at, actor, action, tenant, subject, before, after)`
//! over a length-prefixed canonical encoding ([`entry_hash`]). The `audit_head` row holds the
//! last sequence number and hash; writers lock it (`SELECT ... FOR UPDATE` on PostgreSQL, the
//! single writer lock on SQLite) so appends are serialised and the chain cannot fork.
//!
//! [`verify`] walks the chain and names the first entry that was modified, deleted or
//! reordered. A hash chain inside the database detects edits made without recomputing every
//! later hash; anchoring the head hash outside the database is left to its operators.

use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use sha2::{Digest, Sha256};

use crate::db::now;
use crate::entity::{audit_head, audit_log};
use crate::error::{Result, StoreError};
use rekey_model::TenantId;

/// `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest `before`/`after` text kept, in characters (longer text is cut and marked).
pub const MAX_TEXT: usize = 1000;

/// What is wrong with an audit entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditProblem {
    /// The entry is missing (deleted); the chain jumps over it.
    #[error("the entry is missing (deleted)")]
    Missing,
    /// The entry does not follow the one before it.
    #[error(
        "its prev_hash does not match the hash of the entry before it (entries deleted, reordered or replaced)"
    )]
    OutOfOrder,
    /// The entry's content does not match its hash.
    #[error("its content does not match its hash (modified)")]
    Modified,
    /// The chain head does not match the last entry.
    #[error("the chain head records seq {head_seq}, hash {head_hash}, but the log ends here")]
    HeadMismatch {
        /// Sequence number in the head row.
        head_seq: i64,
        /// Hash in the head row.
        head_hash: String,
    },
}

/// What to record about one change.
#[derive(Debug, Clone)]
pub struct AuditRecord<'a> {
    /// Who did it (user email, `system`, `engine`, ...).
    pub actor: &'a str,
    /// What was done, as a dotted verb (`keystore.add`, `flow.row.remove`, ...).
    pub action: &'a str,
    /// The tenant concerned, if any.
    pub tenant: Option<TenantId>,
    /// What it was done to (alias, flow/step, receiver, user, ...).
    pub subject: String,
    /// Short description of the state before (empty if none).
    pub before: String,
    /// Short description of the state after (empty if none).
    pub after: String,
}

/// One audit log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Tenant concerned.
    pub tenant: Option<TenantId>,
    /// To what.
    pub subject: String,
    /// State before.
    pub before: String,
    /// State after.
    pub after: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl From<audit_log::Model> for AuditEntry {
    fn from(m: audit_log::Model) -> Self {
        AuditEntry {
            seq: m.seq,
            at: m.at,
            actor: m.actor,
            action: m.action,
            tenant: m.tenant_id.map(TenantId::from_uuid),
            subject: m.subject,
            before: m.before_text,
            after: m.after_text,
            prev_hash: m.prev_hash,
            hash: m.hash,
        }
    }
}

/// Result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSummary {
    /// Number of entries checked.
    pub entries: i64,
    /// Hash of the last entry (the chain head).
    pub head_hash: String,
}

fn cut(text: String) -> String {
    if text.chars().count() <= MAX_TEXT {
        text
    } else {
        let mut t: String = text.chars().take(MAX_TEXT).collect();
        t.push('…');
        t
    }
}

/// The canonical hash of an entry: SHA-256 over a label, `prev_hash` and every field, each
/// prefixed with its length in bytes (u32, big-endian) so that no two entries share an
/// encoding. Time is RFC 3339 in UTC with microseconds.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    tenant: Option<TenantId>,
    subject: &str,
    before: &str,
    after: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"rekey audit v1\0");
    let tenant = tenant.map(|t| t.to_string()).unwrap_or_default();
    let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    let seq = seq.to_string();
    for field in [
        prev_hash, &seq, &at, actor, action, &tenant, subject, before, after,
    ] {
        h.update((field.len() as u32).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Locks the chain head for the rest of the transaction.
///
/// Mutating store functions call this first, so that all writers are serialised on
/// PostgreSQL as they are on SQLite: their check-then-write sequences cannot interleave.
pub async fn lock_head(txn: &DatabaseTransaction) -> Result<()> {
    locked_head(txn).await.map(|_| ())
}

/// Locks the chain head and returns it.
async fn locked_head(txn: &DatabaseTransaction) -> Result<audit_head::Model> {
    audit_head::Entity::find_by_id(1)
        .lock_exclusive()
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))
}

/// Appends one entry in `txn`; returns its sequence number.
pub async fn append(txn: &DatabaseTransaction, rec: AuditRecord<'_>) -> Result<i64> {
    let head = locked_head(txn).await?;
    let seq = head.seq + 1;
    let at = now();
    let before = cut(rec.before);
    let after = cut(rec.after);
    let hash = entry_hash(
        &head.hash,
        seq,
        at,
        rec.actor,
        rec.action,
        rec.tenant,
        &rec.subject,
        &before,
        &after,
    );
    audit_log::Entity::insert(audit_log::ActiveModel {
        seq: Set(seq),
        at: Set(at),
        actor: Set(rec.actor.to_string()),
        action: Set(rec.action.to_string()),
        tenant_id: Set(rec.tenant.map(|t| t.as_uuid())),
        subject: Set(rec.subject),
        before_text: Set(before),
        after_text: Set(after),
        prev_hash: Set(head.hash.clone()),
        hash: Set(hash.clone()),
    })
    .exec_without_returning(txn)
    .await?;
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::value(seq))
        .col_expr(audit_head::Column::Hash, Expr::value(hash))
        .filter(audit_head::Column::Id.eq(1))
        .exec(txn)
        .await?;
    Ok(seq)
}

/// Entries with `seq > after_seq`, oldest first, at most `limit`.
pub async fn entries(
    conn: &impl ConnectionTrait,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<AuditEntry>> {
    Ok(audit_log::Entity::find()
        .filter(audit_log::Column::Seq.gt(after_seq))
        .order_by_asc(audit_log::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(AuditEntry::from)
        .collect())
}

/// Entries concerning one tenant, oldest first.
pub async fn tenant_entries(
    conn: &impl ConnectionTrait,
    tenant: TenantId,
) -> Result<Vec<AuditEntry>> {
    Ok(audit_log::Entity::find()
        .filter(audit_log::Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(audit_log::Column::Seq)
        .all(conn)
        .await?
        .into_iter()
        .map(AuditEntry::from)
        .collect())
}

/// Checks the whole chain; on the first bad entry returns [`StoreError::AuditTampered`]
/// naming it.
pub async fn verify(conn: &impl ConnectionTrait) -> Result<AuditSummary> {
    const BATCH: u64 = 1000;
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut expected = 1i64;
    let tampered = |seq, problem| StoreError::AuditTampered { seq, problem };
    loop {
        let batch = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.gte(expected))
            .order_by_asc(audit_log::Column::Seq)
            .limit(BATCH)
            .all(conn)
            .await?;
        let n = batch.len();
        for e in batch {
            if e.seq != expected {
                return Err(tampered(expected, AuditProblem::Missing));
            }
            if e.prev_hash != prev_hash {
                return Err(tampered(e.seq, AuditProblem::OutOfOrder));
            }
            let tenant = e.tenant_id.map(TenantId::from_uuid);
            let hash = entry_hash(
                &e.prev_hash,
                e.seq,
                e.at,
                &e.actor,
                &e.action,
                tenant,
                &e.subject,
                &e.before_text,
                &e.after_text,
            );
            if hash != e.hash {
                return Err(tampered(e.seq, AuditProblem::Modified));
            }
            prev_hash = e.hash;
            expected += 1;
        }
        if (n as u64) < BATCH {
            break;
        }
    }
    let last = expected - 1;
    let head = audit_head::Entity::find_by_id(1)
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    if head.seq > last {
        // Entries at the end were deleted.
        return Err(tampered(last + 1, AuditProblem::Missing));
    }
    if head.seq != last || head.hash != prev_hash {
        return Err(tampered(
            last,
            AuditProblem::HeadMismatch {
                head_seq: head.seq,
                head_hash: head.hash,
            },
        ));
    }
    Ok(AuditSummary {
        entries: last,
        head_hash: prev_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_length_prefixed() {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        let a = entry_hash(GENESIS_HASH, 1, t, "ab", "c", None, "", "", "");
        let b = entry_hash(GENESIS_HASH, 1, t, "a", "bc", None, "", "", "");
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            a,
            entry_hash(GENESIS_HASH, 1, t, "ab", "c", None, "", "", "")
        );
    }

    #[test]
    fn long_text_is_cut() {
        let s = cut("x".repeat(MAX_TEXT + 5));
        assert_eq!(s.chars().count(), MAX_TEXT + 1);
        assert!(s.ends_with('…'));
        assert_eq!(cut("short".into()), "short");
    }
}
