//! The scheduler: fires due timers (reminders, escalations, window openings and closings)
//! through [`Service`], safely when several processes share one database.
//!
//! A pass ([`run_once`]) claims due `pending` timers with one conditional `UPDATE` that sets a
//! lease (`lease_owner`, `lease_until`) only on rows still pending, due and not leased by
//! someone else (on PostgreSQL the candidate rows are picked `FOR UPDATE SKIP LOCKED`, on
//! SQLite the single writer lock serialises claims), then reads back exactly the rows it
//! leased. Each claimed timer is fired in one transaction that marks it `fired` *and* applies
//! [`Event::Timer`] to its renewal, so the timer's status and the step's effects commit
//! together. A refusal (the renewal finished, the step is gone) marks the timer `stale`; a
//! transient failure (database error, a concurrent change) gives the lease back with a short
//! back-off so a later pass retries; after [`MAX_ATTEMPTS`] the timer is marked `failed`.
//!
//! Even if a lease expired while its holder was still working and a second process fired the
//! same timer, nothing would happen twice: marking the timer `fired` is conditional on the
//! lease still being held, and the engine honours a timer only when it is due and not yet
//! acted on (a second reminder at the same instant is ignored).
//!
//! Time comes in as an argument; only [`run_loop`] reads the clock.

use chrono::{DateTime, Duration, Utc};
use rekey_engine::{Event, TimerKind};
use rekey_store::entity::timer;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
    Value,
};
use serde::Serialize;
use uuid::Uuid;

use crate::shell::commit;
use crate::{Result, Service, ServiceError};

/// How long a claimed timer stays reserved for its claimer.
pub const LEASE: Duration = Duration::minutes(5);
/// How long a timer whose firing failed transiently waits before the next attempt.
pub const RETRY_AFTER: Duration = Duration::seconds(30);
/// Attempts after which a timer is marked `failed` instead of retried.
pub const MAX_ATTEMPTS: i32 = 10;
/// Timers claimed per statement.
pub const BATCH: u64 = 50;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Timers this pass leased.
    pub claimed: usize,
    /// Fired and committed with their renewal's step.
    pub fired: usize,
    /// Refused by the engine (renewal finished, unknown renewal) or unreadable: marked stale.
    pub stale: usize,
    /// Failed transiently; the lease was given back for a later pass.
    pub released: usize,
    /// Failed [`MAX_ATTEMPTS`] times: marked failed.
    pub failed: usize,
    /// The lease was lost to another process before firing (nothing was done).
    pub lost: usize,
    /// Emails queued by the fired timers.
    pub mail: usize,
    /// Why timers were released or failed.
    pub errors: Vec<String>,
}

/// A name for this process as a lease owner: host and pid.
pub fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rekey".into());
    format!("{host}:{}", std::process::id())
}

/// Fires every timer due at `now` (claiming in batches until none is left), as `owner`.
pub async fn run_once(service: &Service, now: DateTime<Utc>, owner: &str) -> Result<Report> {
    let mut report = Report::default();
    // Firing may schedule timers due at `now` (a window agreed to open right away); a bound
    // keeps a faulty definition from spinning.
    for _ in 0..1000 {
        let (token, claimed) = claim(service, now, owner, BATCH).await?;
        if claimed.is_empty() {
            break;
        }
        report.claimed += claimed.len();
        for t in &claimed {
            fire(service, t, &token, now, &mut report).await;
        }
    }
    Ok(report)
}

/// Runs [`run_once`] every `interval` with the wall clock until `stop` turns true (or its
/// sender is dropped). A pass in progress finishes first. `on_pass` sees every pass's result.
pub async fn run_loop(
    service: &Service,
    owner: &str,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut on_pass: impl FnMut(&Result<Report>),
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let r = run_once(service, rekey_store::db::now(), owner).await;
        on_pass(&r);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Leases up to `limit` due timers; returns the lease token and the rows it now holds.
async fn claim(
    service: &Service,
    now: DateTime<Utc>,
    owner: &str,
    limit: u64,
) -> Result<(String, Vec<timer::Model>)> {
    let db = service.store().db();
    let backend = db.get_database_backend();
    let token = format!("{owner}#{}", Uuid::new_v4().simple());
    let mut values: Vec<Value> = Vec::new();
    let mut p = |v: Value| {
        values.push(v);
        match backend {
            DatabaseBackend::Postgres => format!("${}", values.len()),
            _ => "?".to_string(),
        }
    };
    let set_owner = p(token.clone().into());
    let set_until = p((now + LEASE).into());
    let inner_due = p(now.into());
    let inner_lease = p(now.into());
    let outer_lease = p(now.into());
    let lock = match backend {
        DatabaseBackend::Postgres => " FOR UPDATE SKIP LOCKED",
        _ => "",
    };
    let sql = format!(
        "UPDATE timers SET lease_owner = {set_owner}, lease_until = {set_until}, \
         version = version + 1 \
         WHERE id IN (SELECT id FROM timers WHERE status = 'pending' AND due_at <= {inner_due} \
         AND (lease_until IS NULL OR lease_until <= {inner_lease}) \
         ORDER BY due_at LIMIT {limit}{lock}) \
         AND status = 'pending' AND (lease_until IS NULL OR lease_until <= {outer_lease})"
    );
    let res = db
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    if res.rows_affected() == 0 {
        return Ok((token, Vec::new()));
    }
    let rows = timer::Entity::find()
        .filter(timer::Column::LeaseOwner.eq(token.clone()))
        .filter(timer::Column::Status.eq("pending"))
        .order_by_asc(timer::Column::DueAt)
        .all(db)
        .await?;
    Ok((token, rows))
}

/// The event a timer row stands for: `{"step": …, "kind": …}`.
fn event_of(t: &timer::Model) -> Option<Event> {
    #[derive(serde::Deserialize)]
    struct State {
        step: Option<String>,
        kind: TimerKind,
    }
    let s: State = serde_json::from_str(&t.state).ok()?;
    Some(Event::Timer {
        step: s.step,
        kind: s.kind,
    })
}

enum Fired {
    /// Committed; this many emails were queued.
    Done(usize),
    Lost,
}

#[tracing::instrument(
    name = "timer",
    skip_all,
    fields(
        timer = %t.id,
        renewal = t.renewal_id.map(tracing::field::display),
        kind = %t.kind,
    )
)]
async fn fire(
    service: &Service,
    t: &timer::Model,
    token: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) {
    let (Some(renewal), Some(event)) = (t.renewal_id, event_of(t)) else {
        settle(service, t, token, "stale", now, report).await;
        return;
    };
    let attempt = async {
        let txn = service.store().begin().await?;
        let res = timer::Entity::update_many()
            .col_expr(timer::Column::Status, Expr::value("fired"))
            .col_expr(
                timer::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                timer::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(
                timer::Column::Attempts,
                Expr::col(timer::Column::Attempts).add(1),
            )
            .col_expr(
                timer::Column::Version,
                Expr::col(timer::Column::Version).add(1),
            )
            .col_expr(timer::Column::UpdatedAt, Expr::value(now))
            .filter(timer::Column::Id.eq(t.id))
            .filter(timer::Column::LeaseOwner.eq(token))
            .filter(timer::Column::Status.eq("pending"))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Ok::<_, ServiceError>(Fired::Lost);
        }
        let outcome = service
            .act_in(&txn, renewal, rekey_engine::machine::SYSTEM, event, now)
            .await?;
        commit(txn).await?;
        Ok(Fired::Done(outcome.mail.len()))
    };
    match attempt.await {
        Ok(Fired::Done(mail)) => {
            report.fired += 1;
            report.mail += mail;
        }
        Ok(Fired::Lost) => report.lost += 1,
        Err(ServiceError::Refused(_) | ServiceError::UnknownRenewal(_)) => {
            settle(service, t, token, "stale", now, report).await;
        }
        Err(e) => {
            report
                .errors
                .push(format!("timer {} of renewal {renewal}: {e}", t.id));
            if t.attempts + 1 >= MAX_ATTEMPTS {
                settle(service, t, token, "failed", now, report).await;
            } else {
                settle(service, t, token, "pending", now, report).await;
            }
        }
    }
}

/// Gives the lease back with a new status (`pending` again means: retry after a back-off).
async fn settle(
    service: &Service,
    t: &timer::Model,
    token: &str,
    status: &str,
    now: DateTime<Utc>,
    report: &mut Report,
) {
    let retry_at = (status == "pending").then_some(now + RETRY_AFTER);
    let res = timer::Entity::update_many()
        .col_expr(timer::Column::Status, Expr::value(status))
        .col_expr(
            timer::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(timer::Column::LeaseUntil, Expr::value(retry_at))
        .col_expr(
            timer::Column::Attempts,
            Expr::col(timer::Column::Attempts).add(1),
        )
        .col_expr(
            timer::Column::Version,
            Expr::col(timer::Column::Version).add(1),
        )
        .col_expr(timer::Column::UpdatedAt, Expr::value(now))
        .filter(timer::Column::Id.eq(t.id))
        .filter(timer::Column::LeaseOwner.eq(token))
        .filter(timer::Column::Status.eq("pending"))
        .exec(service.store().db())
        .await;
    match (res, status) {
        (Ok(r), _) if r.rows_affected != 1 => report.lost += 1,
        (Ok(_), "stale") => report.stale += 1,
        (Ok(_), "failed") => report.failed += 1,
        (Ok(_), _) => report.released += 1,
        // The lease runs out by itself; a later pass retries.
        (Err(e), _) => {
            report.released += 1;
            report
                .errors
                .push(format!("timer {}: cannot record {status}: {e}", t.id));
        }
    }
}
