//! The one lease claim every worker uses: the scheduler on `timers`, the mail dispatcher on
//! `outbox`, the expiry watch on its row of `worker_leases` (a whole pass that one instance at
//! a time runs, released by [`release`] when the pass ends).
//!
//! A claim is one conditional `UPDATE` that sets `lease_owner` (a token unique to the claim)
//! and `lease_until` on rows that are waiting, due, and not leased — or whose lease has run
//! out. On PostgreSQL the candidate rows are picked `FOR UPDATE SKIP LOCKED`, so concurrent
//! claimers skip each other's rows instead of waiting; SQLite's single writer serialises
//! claims. The outer `WHERE` repeats the conditions, so a row is never claimed twice while its
//! lease holds. The claimer then reads back the rows its token holds
//! ([`crate::timers::leased`], [`crate::outbox::leased`]).
//!
//! **A lease that ends exactly at `now` has run out** ([`expired`]: `lease_until <= now`): the
//! holder was given the time up to `lease_until`, not the instant itself, so at that instant
//! another worker may take the row. Every claim uses this one comparison.
//!
//! Leases are short (seconds, [`DEFAULT_LENGTH`]) so that rows held by a process that died are
//! taken over quickly; a holder that is still working keeps them by renewing ([`renew`], or
//! [`keep`] in the background while a batch runs). A holder whose lease was lost nevertheless
//! commits nothing: every write that settles a row is conditional on its token still holding it.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, Value};
use uuid::Uuid;

use crate::error::Result;
use rekey_model::{OutboxStatus, TimerStatus};

/// A table workers claim rows of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `timers`: `pending` rows whose `due_at` has come, earliest first.
    Timers,
    /// `outbox`: `queued` rows whose `next_attempt_at` has come, earliest first (then oldest).
    Outbox,
    /// `worker_leases`: the job of this name (e.g. [`WATCH`]), one row, always due; a claim
    /// creates the row the first time.
    Job(&'static str),
}

/// How long a claim holds unless configured otherwise: long enough for a few renewals to fail
/// in a row, short enough that another instance takes over a dead one's rows within seconds.
pub const DEFAULT_LENGTH: Duration = Duration::seconds(30);

/// The expiry watch's job: one pass at a time over all instances.
pub const WATCH: &str = "watch";

/// The AS2 check pass's job (test messages to receivers' AS2 endpoints): one at a time.
pub const AS2: &str = "as2";

impl Queue {
    /// (table, waiting status, due column, order)
    fn shape(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Queue::Timers => ("timers", TimerStatus::Pending.as_str(), "due_at", "due_at"),
            Queue::Outbox => (
                "outbox",
                OutboxStatus::Queued.as_str(),
                "next_attempt_at",
                "next_attempt_at, created_at",
            ),
            Queue::Job(_) => ("worker_leases", "waiting", "due_at", "id"),
        }
    }
}

/// A claim: the token written into `lease_owner` of every row it took, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `{owner}#{unique}`: names the process and this claim.
    pub token: String,
    /// When the lease runs out.
    pub until: DateTime<Utc>,
    /// Rows taken.
    pub rows: u64,
}

/// Whether a lease ending at `lease_until` has run out at `now` (no lease: yes). A lease
/// that ends exactly at `now` has.
pub fn expired(lease_until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    lease_until.is_none_or(|until| until <= now)
}

/// Leases up to `limit` due rows of `queue` to `owner` for `length` from `now`.
pub async fn claim(
    conn: &impl ConnectionTrait,
    queue: Queue,
    owner: &str,
    now: DateTime<Utc>,
    length: Duration,
    limit: u64,
) -> Result<Lease> {
    let (table, waiting, due, order) = queue.shape();
    let backend = conn.get_database_backend();
    if let Queue::Job(name) = queue {
        ensure_job(conn, name, now).await?;
    }
    let token = format!("{owner}#{}", Uuid::new_v4().simple());
    let until = now + length;
    let mut values: Vec<Value> = Vec::new();
    let mut p = |v: Value| {
        values.push(v);
        match backend {
            DatabaseBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_string(),
        }
    };
    let set_owner = p(token.clone().into());
    let set_until = p(until.into());
    let set_updated = p(now.into());
    let inner_due = p(now.into());
    let inner_lease = p(now.into());
    let inner_job = match queue {
        Queue::Job(name) => format!(" AND id = {}", p(name.into())),
        _ => String::new(),
    };
    let outer_due = p(now.into());
    let outer_lease = p(now.into());
    let lock = match backend {
        DatabaseBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    // The lease comparison is `expired` written in SQL: `lease_until <= now`.
    let sql = format!(
        "UPDATE {table} SET lease_owner = {set_owner}, lease_until = {set_until}, \
         version = version + 1, updated_at = {set_updated} \
         WHERE id IN (SELECT id FROM {table} WHERE status = '{waiting}' AND {due} <= {inner_due} \
         AND (lease_until IS NULL OR lease_until <= {inner_lease}){inner_job} \
         ORDER BY {order} LIMIT {limit}{lock}) \
         AND status = '{waiting}' AND {due} <= {outer_due} \
         AND (lease_until IS NULL OR lease_until <= {outer_lease})"
    );
    let res = conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(Lease {
        token,
        until,
        rows: res.rows_affected(),
    })
}

/// Creates the row of job `name` if it is missing: waiting, due since the Unix epoch (so a
/// pass at any `now` finds it due), not leased.
async fn ensure_job(conn: &impl ConnectionTrait, name: &str, now: DateTime<Utc>) -> Result<()> {
    let backend = conn.get_database_backend();
    let (a, b, c, d) = match backend {
        DatabaseBackend::Postgres => ("$1", "$2", "$3", "$4"),
        _ => ("?", "?", "?", "?"),
    };
    let sql = format!(
        "INSERT INTO worker_leases (id, status, due_at, version, updated_at) \
         VALUES ({a}, {b}, {c}, 0, {d}) ON CONFLICT (id) DO NOTHING"
    );
    let values: Vec<Value> = vec![
        name.into(),
        "waiting".into(),
        DateTime::<Utc>::UNIX_EPOCH.into(),
        now.into(),
    ];
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// Gives job `name`'s lease back when its holder `token` is done, so the next pass need not
/// wait for it to run out. Does nothing if the lease ran out and someone else holds it now.
pub async fn release(conn: &impl ConnectionTrait, name: &str, token: &str) -> Result<()> {
    let backend = conn.get_database_backend();
    let (a, b) = match backend {
        DatabaseBackend::Postgres => ("$1", "$2"),
        _ => ("?", "?"),
    };
    let sql = format!(
        "UPDATE worker_leases SET lease_owner = NULL, lease_until = NULL, version = version + 1 \
         WHERE id = {a} AND lease_owner = {b}"
    );
    let values: Vec<Value> = vec![name.into(), token.into()];
    conn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

/// Extends to `until` the lease `token` holds on `queue`'s rows, only where it still holds
/// (has not run out at `now`); returns how many rows it renewed. A lease that ran out is not
/// revived: another worker may have taken the row, or may take it. On PostgreSQL rows locked
/// by a transaction (the holder's own, firing that timer) are skipped rather than waited for,
/// so a renewal never deadlocks with the work it keeps.
pub async fn renew(
    conn: &impl ConnectionTrait,
    queue: Queue,
    token: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<u64> {
    let (table, ..) = queue.shape();
    let backend = conn.get_database_backend();
    // `NOT expired` written in SQL: `lease_until > now`.
    let sql = match backend {
        DatabaseBackend::Postgres => format!(
            "UPDATE {table} SET lease_until = $1 WHERE id IN (SELECT id FROM {table} \
             WHERE lease_owner = $2 AND lease_until > $3 FOR UPDATE SKIP LOCKED)"
        ),
        _ => {
            format!("UPDATE {table} SET lease_until = ? WHERE lease_owner = ? AND lease_until > ?")
        }
    };
    let values: Vec<Value> = vec![until.into(), token.into(), now.into()];
    let res = conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(res.rows_affected())
}

/// Renews a claim in the background while it is alive; dropping it stops the renewals (the
/// lease then runs out by itself unless settled or released).
#[derive(Debug)]
pub struct Keeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the lease `token` took on `queue` at `claimed_at` for `length` alive: every third of
/// `length` it is renewed to `length` past the claim's clock moved on by the time elapsed
/// (measured monotonically, so a pass running on a simulated clock renews on that clock), until
/// the keeper is dropped. Rows whose lease was lost are left alone ([`renew`]).
pub fn keep(
    db: DatabaseConnection,
    queue: Queue,
    token: String,
    claimed_at: DateTime<Utc>,
    length: Duration,
) -> Keeper {
    let every = (length / 3)
        .to_std()
        .unwrap_or(std::time::Duration::from_secs(1));
    let started = std::time::Instant::now();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let elapsed = Duration::from_std(started.elapsed()).unwrap_or(Duration::zero());
            let now = claimed_at + elapsed;
            if let Err(e) = renew(&db, queue, &token, now, now + length).await {
                tracing::warn!(error = %e, "renewing a lease failed; trying again");
            }
        }
    });
    Keeper { task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ending_now_has_run_out() {
        let now = chrono::DateTime::<Utc>::UNIX_EPOCH + Duration::days(1);
        assert!(expired(None, now));
        assert!(expired(Some(now), now));
        assert!(expired(Some(now - Duration::seconds(1)), now));
        assert!(!expired(Some(now + Duration::microseconds(1)), now));
    }
}
