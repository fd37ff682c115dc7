//! **For tests only.** Reads of whole tables and writes the application never makes — a
//! crashed process's lease, a tampered audit entry, an outbox row of an unknown shape, a
//! renewal whose state cannot be read — so that the tests of this workspace can set up and
//! check such states without naming a table's entity. No command, handler or worker calls
//! anything here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::{
    api_token, audit_head, audit_log, keystore_entry, outbox, pending_key, receiver_trusted_cert,
    renewal, signer_row, timer,
};
use crate::error::Result;
use rekey_model::{EntryId, OutboxStatus, TimerStatus};

/// An outbox row written as it is, whatever its content.
#[derive(Debug, Clone)]
pub struct RawOutbox {
    /// Row id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: Uuid,
    /// Renewal.
    pub renewal: Option<Uuid>,
    /// Message-ID.
    pub message_id: String,
    /// Recipient.
    pub recipients: String,
    /// Subject.
    pub subject: String,
    /// The `state` column, as it is.
    pub state: String,
    /// Queued at (and due from).
    pub at: DateTime<Utc>,
}

/// Queues `row` without checking its content; returns its id.
pub async fn queue_raw(conn: &impl ConnectionTrait, row: RawOutbox) -> Result<Uuid> {
    let id = row.id;
    outbox::Entity::insert(outbox::ActiveModel {
        id: Set(id),
        tenant_id: Set(row.tenant),
        renewal_id: Set(row.renewal),
        message_id: Set(row.message_id),
        recipients: Set(row.recipients),
        subject: Set(row.subject),
        state: Set(row.state),
        status: Set(OutboxStatus::Queued.as_str().into()),
        attempts: Set(0),
        next_attempt_at: Set(row.at),
        last_error: Set(None),
        version: Set(0),
        lease_owner: Set(None),
        lease_until: Set(None),
        created_at: Set(row.at),
        updated_at: Set(row.at),
        sent_at: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(id)
}

/// Marks outbox row `id` failed with `error`, as the dispatcher would have.
pub async fn set_outbox_failed(conn: &impl ConnectionTrait, id: Uuid, error: &str) -> Result<()> {
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Status,
            Expr::value(OutboxStatus::Failed.as_str()),
        )
        .col_expr(outbox::Column::LastError, Expr::value(error))
        .filter(outbox::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sets timer `id` back to `pending`, as if a crash had left it.
pub async fn set_timer_pending(conn: &impl ConnectionTrait, id: Uuid) -> Result<()> {
    set_timer_status(conn, id, TimerStatus::Pending.as_str()).await
}

/// Writes `status` into timer `id`'s status column as it is.
pub async fn set_timer_status(conn: &impl ConnectionTrait, id: Uuid, status: &str) -> Result<()> {
    timer::Entity::update_many()
        .col_expr(timer::Column::Status, Expr::value(status))
        .filter(timer::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Writes `status` into outbox row `id`'s status column as it is.
pub async fn set_outbox_status(conn: &impl ConnectionTrait, id: Uuid, status: &str) -> Result<()> {
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Status, Expr::value(status))
        .filter(outbox::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Leases timer `id` to `owner` until `until`, as a process that claimed it and died.
pub async fn set_timer_lease(
    conn: &impl ConnectionTrait,
    id: Uuid,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<()> {
    timer::Entity::update_many()
        .col_expr(timer::Column::LeaseOwner, Expr::value(owner))
        .col_expr(timer::Column::LeaseUntil, Expr::value(until))
        .filter(timer::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// A renewal row written as it is, whatever its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRenewal {
    /// Id.
    pub id: Uuid,
    /// Tenant.
    pub tenant: Uuid,
    /// Alias.
    pub alias: String,
    /// Procedure.
    pub procedure: String,
    /// Status.
    pub status: String,
    /// The `state` column, as it is.
    pub state: String,
    /// Version.
    pub version: i64,
    /// Lease owner.
    pub lease_owner: Option<String>,
    /// Lease end.
    pub lease_until: Option<DateTime<Utc>>,
    /// Created and updated at.
    pub at: DateTime<Utc>,
}

/// Inserts `r` without checking its state.
pub async fn insert_raw_renewal(conn: &impl ConnectionTrait, r: &RawRenewal) -> Result<()> {
    renewal::Entity::insert(renewal::ActiveModel {
        id: Set(r.id),
        tenant_id: Set(r.tenant),
        receiver_id: Set(None),
        alias: Set(r.alias.clone()),
        procedure: Set(r.procedure.clone()),
        status: Set(r.status.clone()),
        state: Set(r.state.clone()),
        version: Set(r.version),
        lease_owner: Set(r.lease_owner.clone()),
        lease_until: Set(r.lease_until),
        created_at: Set(r.at),
        updated_at: Set(r.at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Renewal row `id` as stored (`at` is its `created_at`).
pub async fn raw_renewal(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<RawRenewal>> {
    Ok(renewal::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(|m| RawRenewal {
            id: m.id,
            tenant: m.tenant_id,
            alias: m.alias,
            procedure: m.procedure,
            status: m.status,
            state: m.state,
            version: m.version,
            lease_owner: m.lease_owner,
            lease_until: m.lease_until,
            at: m.created_at,
        }))
}

/// Overwrites renewal `id`'s stored state with `state` (e.g. unreadable JSON).
pub async fn overwrite_renewal_state(
    conn: &impl ConnectionTrait,
    id: Uuid,
    state: &str,
) -> Result<()> {
    renewal::Entity::update_many()
        .col_expr(renewal::Column::State, Expr::value(state))
        .filter(renewal::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sets the actor of audit entry `seq` (and, when given, its hash), as a forger would.
pub async fn tamper_audit_actor(
    conn: &impl ConnectionTrait,
    seq: i64,
    actor: &str,
    hash: Option<String>,
) -> Result<()> {
    let mut q =
        audit_log::Entity::update_many().col_expr(audit_log::Column::Actor, Expr::value(actor));
    if let Some(h) = hash {
        q = q.col_expr(audit_log::Column::Hash, Expr::value(h));
    }
    q.filter(audit_log::Column::Seq.eq(seq)).exec(conn).await?;
    Ok(())
}

/// Deletes the audit entries with `from <= seq <= to`.
pub async fn delete_audit(conn: &impl ConnectionTrait, from: i64, to: i64) -> Result<()> {
    audit_log::Entity::delete_many()
        .filter(audit_log::Column::Seq.gte(from))
        .filter(audit_log::Column::Seq.lte(to))
        .exec(conn)
        .await?;
    Ok(())
}

/// Renumbers audit entry `from` to `to`.
pub async fn renumber_audit(conn: &impl ConnectionTrait, from: i64, to: i64) -> Result<()> {
    audit_log::Entity::update_many()
        .col_expr(audit_log::Column::Seq, Expr::value(to))
        .filter(audit_log::Column::Seq.eq(from))
        .exec(conn)
        .await?;
    Ok(())
}

/// Copies keystore entry `from`'s encrypted key (ciphertext and nonce) into entry `to`.
pub async fn copy_key_ciphertext(
    conn: &impl ConnectionTrait,
    from: EntryId,
    to: EntryId,
) -> Result<()> {
    let Some(src) = keystore_entry::Entity::find_by_id(from.as_uuid())
        .one(conn)
        .await?
    else {
        return Err(crate::StoreError::Corrupt(format!(
            "no keystore entry {from}"
        )));
    };
    keystore_entry::Entity::update_many()
        .col_expr(keystore_entry::Column::KeyNonce, Expr::value(src.key_nonce))
        .col_expr(
            keystore_entry::Column::KeyCiphertext,
            Expr::value(src.key_ciphertext),
        )
        .filter(keystore_entry::Column::Id.eq(to.as_uuid()))
        .exec(conn)
        .await?;
    Ok(())
}

/// Every stored API token row, printed in full (`Debug` of every column): to show that no
/// token is stored, only its SHA-256. Pairs of (token id, `token_sha256`, whole row).
pub async fn api_token_rows(conn: &impl ConnectionTrait) -> Result<Vec<(Uuid, String, String)>> {
    Ok(api_token::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, m.token_sha256.clone(), format!("{m:?}")))
        .collect())
}

/// How many rows the tables a crash could leave half-written hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Current keystore entries.
    pub keystore_current: u64,
    /// Keystore entries, current and history.
    pub keystore_total: u64,
    /// Pending keys.
    pub pending_keys: u64,
    /// Pending timers.
    pub pending_timers: u64,
    /// Outbox rows.
    pub outbox: u64,
}

/// The row counts.
pub async fn counts(conn: &impl ConnectionTrait) -> Result<Counts> {
    Ok(Counts {
        keystore_current: keystore_entry::Entity::find()
            .filter(keystore_entry::Column::IsCurrent.eq(true))
            .count(conn)
            .await?,
        keystore_total: keystore_entry::Entity::find().count(conn).await?,
        pending_keys: pending_key::Entity::find().count(conn).await?,
        pending_timers: timer::Entity::find()
            .filter(timer::Column::Status.eq(TimerStatus::Pending.as_str()))
            .count(conn)
            .await?,
        outbox: outbox::Entity::find().count(conn).await?,
    })
}

/// Everything a refused event must leave as it was, for one renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Audit entries.
    pub audit: u64,
    /// The audit chain's head: sequence and hash.
    pub audit_head: Vec<(i64, String)>,
    /// alias, fingerprint, current, archived reason — current and history.
    pub keystore: BTreeSet<(String, String, bool, Option<String>)>,
    /// step, position, alias, digest, certs, signing time.
    pub signer_rows: BTreeSet<(Uuid, i32, String, String, bool, bool)>,
    /// receiver, fingerprint.
    pub trust: BTreeSet<(Uuid, String)>,
    /// Outbox rows.
    pub outbox: u64,
    /// id, status, state.
    pub timers: BTreeSet<(Uuid, String, String)>,
    /// renewal, alias, fingerprint.
    pub pending: BTreeSet<(Uuid, String, Option<String>)>,
    /// The renewal's state, status, version.
    pub renewal: Option<(String, String, i64)>,
}

/// The state of the whole store as far as renewal `id` can change it.
pub async fn snapshot(conn: &impl ConnectionTrait, id: Uuid) -> Result<Snapshot> {
    Ok(Snapshot {
        audit: audit_log::Entity::find().count(conn).await?,
        audit_head: audit_head::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| (m.seq, m.hash))
            .collect(),
        keystore: keystore_entry::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| (m.alias, m.fingerprint, m.is_current, m.archived_reason))
            .collect(),
        signer_rows: signer_row::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| {
                (
                    m.step_id,
                    m.position,
                    m.alias,
                    m.digest,
                    m.include_certs,
                    m.include_signing_time,
                )
            })
            .collect(),
        trust: receiver_trusted_cert::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| (m.receiver_id, m.fingerprint))
            .collect(),
        outbox: outbox::Entity::find().count(conn).await?,
        timers: timer::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| (m.id, m.status, m.state))
            .collect(),
        pending: pending_key::Entity::find()
            .all(conn)
            .await?
            .into_iter()
            .map(|m| (m.renewal_id, m.alias, m.fingerprint))
            .collect(),
        renewal: renewal::Entity::find_by_id(id)
            .one(conn)
            .await?
            .map(|m| (m.state, m.status, m.version)),
    })
}

/// Inserts a current keystore entry row for `alias` in `tenant` whose certificate expires at
/// `not_after`, with placeholder key bytes that decrypt to nothing: for benchmarks that need
/// many entries to read past (expiry queries, `/metrics`), never for one that signs with them.
pub async fn insert_placeholder_entry(
    conn: &impl ConnectionTrait,
    tenant: Uuid,
    alias: &str,
    not_after: DateTime<Utc>,
) -> Result<()> {
    let now = crate::db::now();
    let id = Uuid::new_v4();
    keystore_entry::Entity::insert(keystore_entry::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant),
        alias: Set(alias.into()),
        is_current: Set(true),
        key_nonce: Set(vec![0; 12]),
        key_ciphertext: Set(vec![0; 16]),
        kek_id: Set("placeholder".into()),
        key_bits: Set(2048),
        fingerprint: Set(hex::encode(Sha256::digest(id.as_bytes()))),
        subject: Set(format!("CN={alias}")),
        not_before: Set(now),
        not_after: Set(not_after),
        created_at: Set(now),
        updated_at: Set(now),
        archived_at: Set(None),
        archived_reason: Set(None),
        token_key_id: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Seeds a database for the scale benchmarks: `n` renewals cloned from `template` under
/// `max(n / 10, 1)` new tenants (`t0`, `t1`, …) and aliases `alias-<i>`, every other one
/// completed, renewal `i` made `i` seconds before `at`; each with ten keystore placeholder
/// entries (`key-<i>-<k>`) valid until `not_after`. Written in transactions of 500 renewals.
pub async fn seed_renewals(
    store: &crate::Store,
    template: &rekey_engine::Renewal,
    n: usize,
    at: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<()> {
    let tenants = (n / 10).max(1);
    let mut ids = Vec::with_capacity(tenants);
    for i in 0..tenants {
        let name = rekey_model::TenantName::parse(&format!("t{i}"))?;
        ids.push(store.create_tenant(&name, "bench").await?.id);
    }
    let mut txn = store.begin().await?;
    for i in 0..n {
        let mut r = template.clone();
        r.id = Uuid::new_v4();
        r.tenant = ids[i % tenants];
        r.alias = rekey_model::Alias::parse(&format!("alias-{i}"))?;
        if i % 2 == 1 {
            r.status = rekey_engine::RenewalStatus::Completed;
        }
        let state = serde_json::to_string(&r)
            .map_err(|e| crate::StoreError::Corrupt(format!("renewal state: {e}")))?;
        insert_raw_renewal(
            &txn,
            &RawRenewal {
                id: r.id,
                tenant: r.tenant.as_uuid(),
                alias: r.alias.to_string(),
                procedure: r.procedure.to_string(),
                status: r.status.as_str().into(),
                state,
                version: 0,
                lease_owner: None,
                lease_until: None,
                at: at - chrono::Duration::seconds(i as i64),
            },
        )
        .await?;
        for k in 0..10 {
            insert_placeholder_entry(&txn, r.tenant.as_uuid(), &format!("key-{i}-{k}"), not_after)
                .await?;
        }
        if i % 500 == 499 {
            txn.commit().await?;
            txn = store.begin().await?;
        }
    }
    txn.commit().await?;
    Ok(())
}
