//! The dispatcher: claims due outbox rows, renders and sends them, records what happened.
//!
//! Claiming is safe when several rekey processes share one database: the store's one lease
//! claim ([`rekey_store::lease::claim`]) sets `lease_owner` (unique per claim) and
//! `lease_until` on rows that are queued, due, and not leased by anyone else (or whose lease
//! ran out — a lease ending exactly now has), and the claimer then reads back the rows it owns
//! ([`rekey_store::outbox::leased`]); a row is never claimed twice while its lease holds.
//!
//! A row leaves `queued` only as `sent` (with `sent_at`) or `failed` (5xx address rejected, a
//! message that cannot be built, or no success after [`RetryPolicy::give_up_after`] of
//! retries); a failure is reported to the tenant's administrators by a new outbox row. A row
//! whose content cannot be read or rendered is a bug: it is marked failed with
//! `internal error: unreadable outbox row <id>`, reported as [`Outcome::Internal`], and never
//! turned into an "undeliverable" report about the recipient's address. A
//! process that dies between sending and recording leaves the row leased; when the lease runs
//! out it is sent again with the same Message-ID, so receivers can recognise the duplicate.
//!
//! Time comes in as an argument; nothing here reads the clock.

use chrono::{DateTime, Duration, Utc};
use rekey_model::{Alias, Grant, OutboxStatus, TenantId};
use rekey_store::lease::{self, Queue};
use rekey_store::outbox::{self, Delivery, OutboxMessage, OutboxRow};
use rekey_store::{ConnectionTrait, DatabaseConnection, keystore, users};
use serde::Serialize;
use uuid::Uuid;

use crate::links::{self, Task};
use crate::render::{self, Envelope, RenderInput};
use crate::{NotifierError, Result, SendError, Transport};
use rekey_store::mail::{FailedMail, OutboxMail};

/// Retry timing: the first retry after about [`first`](Self::first), doubling up to
/// [`cap`](Self::cap), each delay varied by ±[`jitter`](Self::jitter) so that many failed
/// rows do not retry in lockstep; the row fails once the nominal delays add up to
/// [`give_up_after`](Self::give_up_after).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub first: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Stop retrying after this much back-off.
    pub give_up_after: Duration,
    /// Fraction by which a delay is varied at random (0 = none).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::minutes(1),
            cap: Duration::minutes(30),
            give_up_after: Duration::days(5),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The nominal delay after the `failures`-th failure (1-based), without jitter.
    pub fn nominal(&self, failures: i32) -> Duration {
        let exp = failures.clamp(1, 31) - 1;
        let first = self.first.num_seconds().max(1);
        let secs = first.saturating_mul(1i64 << exp.min(30));
        Duration::seconds(secs.min(self.cap.num_seconds().max(first)))
    }

    /// The delay after the `failures`-th failure, with `unit` (in `[0, 1)`) choosing the
    /// jitter.
    pub fn delay(&self, failures: i32, unit: f64) -> Duration {
        let n = self.nominal(failures).num_milliseconds() as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::milliseconds((n * factor).round().max(1000.0) as i64)
    }

    /// Has a row that failed `failures` times been retried for long enough?
    pub fn gives_up(&self, failures: i32) -> bool {
        let mut total = Duration::zero();
        for i in 1..failures {
            total += self.nominal(i);
            if total >= self.give_up_after {
                return true;
            }
        }
        false
    }
}

/// What became of one row in a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Delivered.
    Sent,
    /// Failed for now; tried again at `at`.
    Retry {
        /// Next attempt.
        at: DateTime<Utc>,
        /// Why.
        error: String,
    },
    /// Given up.
    Failed {
        /// Why.
        error: String,
    },
    /// The row cannot be read or rendered: a bug in rekey, to be reported loudly.
    Internal {
        /// What is wrong with it.
        error: String,
    },
}

/// One row handled by a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    /// Outbox row.
    pub id: Uuid,
    /// Its Message-ID.
    pub message_id: String,
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DispatchReport {
    /// Every row handled, in order.
    pub items: Vec<Dispatched>,
}

impl DispatchReport {
    /// Rows sent.
    pub fn sent(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Sent))
    }

    /// Rows to be retried.
    pub fn retried(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Retry { .. }))
    }

    /// Rows given up.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }

    /// Rows that could not be read or rendered (bugs).
    pub fn internal(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Internal { .. }))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.items.iter().filter(|d| f(&d.outcome)).count()
    }
}

/// Sends due outbox rows through a [`Transport`].
#[derive(Debug, Clone)]
pub struct Dispatcher {
    db: DatabaseConnection,
    transport: Transport,
    from: String,
    base_url: String,
    owner: String,
    lease: Duration,
    link_ttl: Duration,
    policy: RetryPolicy,
    batch: u64,
}

impl Dispatcher {
    /// A dispatcher over `db` sending from `from`, with links under `base_url`.
    pub fn new(
        db: DatabaseConnection,
        transport: Transport,
        from: impl Into<String>,
        base_url: impl Into<String>,
    ) -> Dispatcher {
        Dispatcher {
            db,
            transport,
            from: from.into(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            owner: format!("rekey:{}", std::process::id()),
            // Short, and renewed while a batch is sent: a dead dispatcher's rows are taken
            // over within seconds.
            lease: lease::DEFAULT_LENGTH,
            link_ttl: links::DEFAULT_TTL,
            policy: RetryPolicy::default(),
            batch: 10,
        }
    }

    /// With another retry policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// With a name for this process in `lease_owner` (a unique suffix is added per claim).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// With another lease length: how long a claimed row is left to this dispatcher.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// With another lifetime for action links.
    pub fn with_link_ttl(mut self, ttl: Duration) -> Self {
        self.link_ttl = ttl;
        self
    }

    /// With another number of rows claimed at a time.
    pub fn with_batch(mut self, batch: u64) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Claims up to `limit` due rows for this dispatcher; returns the rows it now owns.
    pub async fn claim(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<OutboxRow>> {
        Ok(self.claim_lease(now, limit).await?.1)
    }

    async fn claim_lease(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> Result<(lease::Lease, Vec<OutboxRow>)> {
        let lease =
            lease::claim(&self.db, Queue::Outbox, &self.owner, now, self.lease, limit).await?;
        let rows = outbox::leased(&self.db, &lease).await?;
        Ok((lease, rows))
    }

    /// One pass: claims and sends due rows, batch after batch, until none is due at `now`.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<DispatchReport> {
        let mut report = DispatchReport::default();
        // Every row handled leaves `queued`-and-due, so each round makes progress; the bound
        // only guards against a clock that lets rows come due again within the pass.
        for _ in 0..1000 {
            let (held, rows) = self.claim_lease(now, self.batch).await?;
            if rows.is_empty() {
                break;
            }
            // Renewed while this batch is sent; dropped (renewals stop) when it is done.
            let _kept = lease::keep(self.db.clone(), Queue::Outbox, held.token, now, self.lease);
            for row in rows {
                if !self.still_own(&row, now).await? {
                    continue; // our lease ran out and another dispatcher took the row
                }
                let outcome = self.deliver(&row, now).await?;
                report.items.push(Dispatched {
                    id: row.id,
                    message_id: row.message_id.clone(),
                    to: row.recipients.clone(),
                    subject: row.subject.clone(),
                    outcome,
                });
            }
        }
        Ok(report)
    }

    /// Confirms (and marks) that the row is still ours just before sending it.
    async fn still_own(&self, row: &OutboxRow, now: DateTime<Utc>) -> Result<bool> {
        Ok(outbox::still_leased(&self.db, row, now).await?)
    }

    /// Renders and sends one claimed row, then records the outcome.
    #[tracing::instrument(
        name = "mail",
        skip_all,
        fields(mail = %row.id, renewal = row.renewal_id.map(tracing::field::display))
    )]
    async fn deliver(&self, row: &OutboxRow, now: DateTime<Utc>) -> Result<Outcome> {
        let mut token = None;
        let result = self.attempt(row, now, &mut token).await;
        if result.is_err()
            && let Some(t) = &token
        {
            // Nobody got this link; do not leave it valid.
            links::discard(&self.db, t).await?;
        }
        self.record(row, result, now).await
    }

    async fn attempt(
        &self,
        row: &OutboxRow,
        now: DateTime<Utc>,
        token: &mut Option<links::LinkToken>,
    ) -> std::result::Result<(), SendError> {
        let permanent = |e: NotifierError| SendError::Permanent(e.to_string());
        let internal = |e: NotifierError| {
            let reason = match e {
                NotifierError::BadRow { reason, .. } => reason,
                other => other.to_string(),
            };
            SendError::Internal(format!("unreadable outbox row {}: {reason}", row.id))
        };
        let mail = render::parse(row.id, &row.state).map_err(internal)?;
        // Checked before trimming: a trailing "\n" is as much an injection as an inner one.
        render::check_header("to", &row.recipients).map_err(permanent)?;
        let recipient = row.recipients.trim();
        let expiry = self
            .certificate_expiry(row.tenant_id, &mail)
            .await
            .map_err(|e| SendError::Retryable(e.to_string()))?;
        let mut link = None;
        let mut link_expires_at = None;
        if let Some((renewal, step)) = render::link_target(&mail) {
            let task = Task {
                tenant: row.tenant_id,
                renewal,
                step,
                recipient,
            };
            let (t, exp) = links::issue(&self.db, task, now, self.link_ttl)
                .await
                .map_err(|e| SendError::Retryable(e.to_string()))?;
            link = Some(format!("{}/tasks/{}", self.base_url, t.expose()));
            link_expires_at = Some(exp);
            *token = Some(t);
        }
        let rendered = render::render(&RenderInput {
            mail: &mail,
            subject: &row.subject,
            recipient,
            link: link.as_deref(),
            link_expires_at,
            base_url: &self.base_url,
            certificate_expires_at: expiry,
            now,
        })
        .map_err(internal)?;
        let msg = render::message(
            Envelope {
                from: &self.from,
                to: recipient,
                message_id: &row.message_id,
                date: now,
            },
            &rendered,
        )
        .map_err(|e| match e {
            // A bad sender is this installation's configuration, not the row.
            NotifierError::Address { field: "from", .. }
            | NotifierError::HeaderInjection { field: "from", .. } => {
                SendError::Retryable(e.to_string())
            }
            other => permanent(other),
        })?;
        self.transport.send(msg, &row.message_id).await
    }

    async fn certificate_expiry(
        &self,
        tenant: Uuid,
        mail: &OutboxMail,
    ) -> Result<Option<DateTime<Utc>>> {
        let (a, new) = match mail {
            OutboxMail::Notice(m) => (m.alias.as_str(), m.new_certificate_fingerprint.as_deref()),
            // The watch's mail carries its own notAfter; a failure report has no certificate.
            OutboxMail::ExpiryWatch(_)
            | OutboxMail::DeliveryFailed(_)
            | OutboxMail::As2Refused(_)
            | OutboxMail::AtRisk(_)
            | OutboxMail::TenantChanged(_) => return Ok(None),
        };
        let Ok(alias) = Alias::parse(a) else {
            return Ok(None);
        };
        // The certificate being renewed: the alias's newest entry that is not the renewal's
        // new certificate (after an exchange the new one is current, the old one history).
        let tenant = TenantId::from_uuid(tenant);
        let mut entries = keystore::history(&self.db, tenant, &alias).await?;
        entries.extend(keystore::find_current(&self.db, tenant, &alias).await?);
        Ok(entries
            .into_iter()
            .filter(|e| Some(e.fingerprint.to_string().as_str()) != new)
            .max_by_key(|e| e.created_at)
            .map(|e| e.not_after))
    }

    async fn record(
        &self,
        row: &OutboxRow,
        result: std::result::Result<(), SendError>,
        now: DateTime<Utc>,
    ) -> Result<Outcome> {
        let failures = row.attempts.saturating_add(1);
        let outcome = match result {
            Ok(()) => Outcome::Sent,
            Err(SendError::Retryable(error)) if !self.policy.gives_up(failures) => Outcome::Retry {
                at: now + self.policy.delay(failures, unit_random()),
                error,
            },
            Err(SendError::Retryable(error)) => Outcome::Failed {
                error: format!("gave up after {failures} attempts: {error}"),
            },
            Err(SendError::Permanent(error)) => Outcome::Failed { error },
            Err(SendError::Internal(error)) => Outcome::Internal {
                error: format!("internal error: {error}"),
            },
        };
        let delivery = match &outcome {
            Outcome::Sent => Delivery::Sent,
            Outcome::Retry { at, error } => Delivery::Retry {
                at: *at,
                error: error.clone(),
            },
            Outcome::Failed { error } | Outcome::Internal { error } => Delivery::Failed {
                error: error.clone(),
            },
        };
        // A write transaction from its first statement (`BEGIN IMMEDIATE` on SQLite), like
        // every other that changes something: with several connections to one file, a
        // deferred one that reads before it writes could fail instead of waiting its turn.
        let txn = rekey_store::db::begin_write(&self.db).await?;
        // Only while we still hold the lease: if it ran out and someone else took the row,
        // their outcome stands.
        let recorded = outbox::record(&txn, row, failures, &delivery, now).await?;
        if recorded && let Outcome::Failed { error } = &outcome {
            report_failure(&txn, row, error, now).await?;
        }
        txn.commit().await?;
        Ok(outcome)
    }
}

fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Queues one row per tenant administrator saying that `row` could not be delivered (not for
/// such a report itself, so a bad administrator address cannot loop).
async fn report_failure(
    conn: &impl ConnectionTrait,
    row: &OutboxRow,
    error: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    // Only called for a row that was read: an unreadable one is an internal error.
    let original = rekey_store::mail::parse(&row.state).ok();
    let (renewal, alias) = match &original {
        Some(OutboxMail::DeliveryFailed(_)) => return Ok(()),
        Some(OutboxMail::Notice(m)) => (Some(m.renewal), Some(m.alias.clone())),
        Some(OutboxMail::ExpiryWatch(w)) => (None, Some(w.alias.clone())),
        Some(OutboxMail::As2Refused(a)) => (Some(a.renewal), Some(a.alias.clone())),
        Some(OutboxMail::AtRisk(a)) => (Some(a.renewal), Some(a.alias.clone())),
        Some(OutboxMail::TenantChanged(t)) => (Some(t.renewal), Some(t.alias.clone())),
        None => (row.renewal_id, None),
    };
    let tenant = TenantId::from_uuid(row.tenant_id);
    let admins = users::holders(conn, &Grant::TenantAdmin { tenant }).await?;
    let subject = one_line(&format!("[rekey] Undeliverable: {}", row.subject));
    for admin in admins {
        let email = admin.email.to_string();
        let message_id = outbox::message_id(&[row.message_id.as_str(), "delivery_failed", &email]);
        let state = OutboxMail::DeliveryFailed(FailedMail {
            recipient: email.clone(),
            message_id: row.message_id.clone(),
            failed_recipient: one_line(&row.recipients),
            subject: one_line(&row.subject),
            error: error.to_string(),
            renewal,
            alias: alias.clone(),
        });
        let message = OutboxMessage {
            tenant,
            renewal: row.renewal_id,
            message_id,
            recipient: email,
            subject: subject.clone(),
            mail: state,
        };
        outbox::enqueue(conn, message, now).await?;
    }
    Ok(())
}

/// Outbox rows, newest first, optionally only those with `status`, optionally of one tenant.
pub async fn list(
    conn: &impl ConnectionTrait,
    status: Option<OutboxStatus>,
    tenant: Option<Uuid>,
) -> Result<Vec<OutboxRow>> {
    Ok(outbox::list(conn, status, tenant).await?)
}

/// Queues a failed (or waiting) row to be sent at the next pass, with a fresh retry period.
/// Refuses rows already sent.
pub async fn retry(conn: &impl ConnectionTrait, id: Uuid, now: DateTime<Utc>) -> Result<OutboxRow> {
    let row = outbox::get(conn, id)
        .await?
        .ok_or(NotifierError::UnknownMail(id))?;
    if row.status == OutboxStatus::Sent {
        return Err(NotifierError::BadRow {
            id,
            reason: format!(
                "already sent{}; it is not sent twice",
                row.sent_at
                    .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            ),
        });
    }
    Ok(outbox::requeue(conn, &row, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_capped_at_thirty() {
        let p = RetryPolicy::default();
        let mins: Vec<i64> = (1..=7).map(|i| p.nominal(i).num_minutes()).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 30, 30]);
        for i in 1..=40 {
            for u in [0.0, 0.3, 0.999] {
                let d = p.delay(i, u);
                let n = p.nominal(i);
                assert!(d >= n * 8 / 10 && d <= n * 12 / 10, "{i} {u} {d}");
            }
        }
        assert!(p.delay(1, 0.0) < p.delay(1, 0.99));
    }

    #[test]
    fn gives_up_after_five_days_of_backoff() {
        let p = RetryPolicy::default();
        let n = (1..10_000).find(|&i| p.gives_up(i)).unwrap_or(0);
        let total: Duration = (1..n - 1).map(|i| p.nominal(i)).sum();
        assert!(total < Duration::days(5), "{n}");
        assert!(total + p.nominal(n - 1) >= Duration::days(5), "{n}");
        assert!(!p.gives_up(1));
    }
}
