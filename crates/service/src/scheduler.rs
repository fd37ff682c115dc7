//! The scheduler: fires due timers (reminders, escalations, window openings and closings)
//! through [`Service`], safely when several processes share one database.
//!
//! A pass ([`run_once`]) claims due `pending` timers with the store's one lease claim
//! ([`rekey_store::lease::claim`]: a conditional `UPDATE` that leases only rows still pending,
//! due and not leased by someone else — a lease ending exactly now has run out), then reads
//! back exactly the rows it leased ([`rekey_store::timers::leased`]). Each claimed timer is fired in one transaction that marks it `fired` *and* applies
//! [`Event::Timer`] to its renewal, so the timer's status and the step's effects commit
//! together. A refusal (the renewal finished, the step is gone) marks the timer `stale`; a
//! transient failure (database error, a concurrent change) gives the lease back with a short
//! back-off so a later pass retries; after [`MAX_ATTEMPTS`] the timer is marked `failed`.
//!
//! Leases are short ([`Service::lease`], 30 s unless configured) and renewed in the background
//! while a batch is fired ([`rekey_store::lease::keep`]), so timers claimed by a process that
//! died are fired by another within about one lease length.
//!
//! Even if a lease expired while its holder was still working and a second process fired the
//! same timer, nothing would happen twice: marking the timer `fired` is conditional on the
//! lease still being held, and the engine honours a timer only when it is due and not yet
//! acted on (a second reminder at the same instant is ignored).
//!
//! Time comes in as an argument; only [`run_loop`] reads the clock.

use chrono::{DateTime, Duration, Utc};
use rekey_model::TimerStatus;
use rekey_store::lease::{self, Queue};
use rekey_store::timers::{self, Timer};
use serde::Serialize;

use crate::shell::commit;
use crate::{Result, Service, ServiceError};

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
        let _kept = lease::keep(
            service.store().db().clone(),
            Queue::Timers,
            token.clone(),
            now,
            service.lease(),
        );
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
        let now = rekey_store::db::now();
        let r = run_once(service, now, owner).await;
        on_pass(&r);
        // Then the receivers' AS2 systems confirm what they can (`Service::as2_pass`); its
        // outcomes are recorded and logged there, a failed pass is tried again next time.
        if let Err(e) = service.as2_pass(now, crate::as2::DEFAULT_TIMEOUT).await {
            tracing::warn!(error = %e, "AS2 pass failed");
        }
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
) -> Result<(String, Vec<Timer>)> {
    let db = service.store().db();
    let lease = lease::claim(db, Queue::Timers, owner, now, service.lease(), limit).await?;
    if lease.rows == 0 {
        return Ok((lease.token, Vec::new()));
    }
    let rows = timers::leased(db, &lease).await?;
    Ok((lease.token, rows))
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
async fn fire(service: &Service, t: &Timer, token: &str, now: DateTime<Utc>, report: &mut Report) {
    let (Some(renewal), Some(event)) = (t.renewal_id, t.event()) else {
        settle(service, t, token, TimerStatus::Stale, now, report).await;
        return;
    };
    let attempt = async {
        let txn = service.store().begin().await?;
        if !timers::mark_fired(&txn, t.id, token, now).await? {
            return Ok::<_, ServiceError>(Fired::Lost);
        }
        let outcome = service
            .act_in(
                &txn,
                renewal,
                rekey_engine::machine::SYSTEM,
                event,
                now,
                &crate::shell::TestSignatures::inside(),
            )
            .await?;
        commit(txn).await?;
        service.after_commit(outcome.renewal.tenant).await;
        Ok(Fired::Done(outcome.mail.len()))
    };
    match attempt.await {
        Ok(Fired::Done(mail)) => {
            report.fired += 1;
            report.mail += mail;
        }
        Ok(Fired::Lost) => report.lost += 1,
        Err(ServiceError::Refused(_) | ServiceError::UnknownRenewal(_)) => {
            settle(service, t, token, TimerStatus::Stale, now, report).await;
        }
        Err(e) => {
            report
                .errors
                .push(format!("timer {} of renewal {renewal}: {e}", t.id));
            if t.attempts + 1 >= MAX_ATTEMPTS {
                settle(service, t, token, TimerStatus::Failed, now, report).await;
            } else {
                settle(service, t, token, TimerStatus::Pending, now, report).await;
            }
        }
    }
}

/// Gives the lease back with a new status (`pending` again means: retry after a back-off).
async fn settle(
    service: &Service,
    t: &Timer,
    token: &str,
    status: TimerStatus,
    now: DateTime<Utc>,
    report: &mut Report,
) {
    let retry_at = (status == TimerStatus::Pending).then_some(now + RETRY_AFTER);
    let res = timers::settle(service.store().db(), t.id, token, status, retry_at, now).await;
    match (res, status) {
        (Ok(false), _) => report.lost += 1,
        (Ok(true), TimerStatus::Stale) => report.stale += 1,
        (Ok(true), TimerStatus::Failed) => report.failed += 1,
        (Ok(true), _) => report.released += 1,
        // The lease runs out by itself; a later pass retries.
        (Err(e), _) => {
            report.released += 1;
            report.errors.push(format!(
                "timer {}: cannot record {}: {e}",
                t.id,
                status.as_str()
            ));
        }
    }
}
